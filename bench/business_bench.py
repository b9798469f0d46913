#!/usr/bin/env python3
"""Business-integration benchmark: what JWT auth, a pre-finish callback and webhooks cost.

Normally started by bench/business.sh (which compiles bench/loadgen.c and makes the scratch
directory). Each sample starts a fresh `ferry serve` and runs the small-upload figure of
bench/run.sh: COUNT x SIZE creation-with-upload POSTs from CONC threads with keep-alive
connections (loadgen burst). Two configurations, alternated run by run:

  defaults  no configuration file: the embedded `default` scenario, anonymous.
  business  a configuration with JWT auth (every request carries `Authorization: Bearer`,
            HS256 by default, --alg rs256 for an RSA key), one scenario `bench` with a pre-finish
            callback (called before each 201, so in the measured latency) and one webhook for
            upload.created and upload.completed. The callback and the webhook are two
            Tests/system/webhook_receiver.py processes on 127.0.0.1 (the webhook one stores every
            event in SQLite with synchronous=FULL, deduplicated by id).

For `business` it then waits until the outbox drained (the webhook receiver holds 2 x COUNT
events), prints the delivery rate, and checks one upload's state on GET /admin/uploads/<id>/events.
Prints every sample, the medians, and the ratio business / defaults. CPU seconds of ferry and of
the receivers are printed per sample: the receivers run on the same machine and take CPU from it.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

from bench import fmt, free_port, log, parse_kv, run_interruptibly

HERE = os.path.dirname(os.path.abspath(__file__))
RECEIVER = os.path.join(HERE, "..", "Tests", "system", "webhook_receiver.py")
ADMIN_TOKEN = "bench-admin-" + os.urandom(8).hex()
WEBHOOK_SECRET = "bench-webhook-" + os.urandom(8).hex()
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all threads), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def request(port: int, method: str, path: str, headers: dict | None = None, timeout: float = 10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def wait_healthy(proc: subprocess.Popen, port: int, timeout: float = 30) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        try:
            if request(port, "GET", "/healthz", timeout=2)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM by PID, SIGKILL after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Tokens:
    """The benchmark's signing key and its one principal's token."""

    def __init__(self, workdir: str, alg: str):
        self.alg = alg
        self.auth_lines = []
        if alg == "hs256":
            self.secret = os.urandom(32).hex()
            self.auth_lines.append(f'hs256-secret = "{self.secret}"')
        else:
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import padding, rsa
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self._sign_rs = lambda data: self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
            pem = os.path.join(workdir, "bench-jwt.pem")
            with open(pem, "wb") as f:
                f.write(self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))
            self.auth_lines.append(f"public-key-file = {pem}")

    def token(self, sub: str = "bench-user", ttl: int = 3 * 3600) -> str:
        now = int(time.time())
        header = {"alg": "HS256" if self.alg == "hs256" else "RS256", "typ": "JWT"}
        claims = {"sub": sub, "iat": now, "exp": now + ttl, "scenarios": ["bench"]}
        signing_input = (b64u(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64u(json.dumps(claims, separators=(",", ":")).encode())).encode()
        if self.alg == "hs256":
            sig = hmac.new(self.secret.encode(), signing_input, hashlib.sha256).digest()
        else:
            sig = self._sign_rs(signing_input)
        return signing_input.decode() + "." + b64u(sig)


class Receiver:
    def __init__(self, bench: "Bench", tag: str, extra: list[str]):
        self.port = free_port()
        self.db = os.path.join(bench.a.workdir, f"receiver-{tag}.db")
        self.log_path = os.path.join(bench.a.workdir, f"receiver-{tag}.log")
        for suffix in ("", "-wal", "-shm"):
            try:
                os.remove(self.db + suffix)
            except OSError:
                pass
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, bench.a.receiver, "--port", str(self.port), "--secret", WEBHOOK_SECRET,
                 "--db", self.db, "--quiet", *extra], stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        if not wait_healthy(self.proc, self.port):
            stop(self.proc)
            raise RuntimeError(f"webhook receiver did not start; see {self.log_path}")

    def counts(self) -> dict:
        status, _, body = request(self.port, "GET", "/state?summary=1", timeout=30)
        return json.loads(body)["counts"] if status == 200 else {}

    def one_event(self) -> dict | None:
        status, _, body = request(self.port, "GET", "/state?limit=1", timeout=30)
        events = json.loads(body).get("events") if status == 200 else None
        return events[0] if events else None


class Bench:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.samples: dict[str, list] = {}
        self.notes: list[str] = []
        self.tokens = Tokens(a.workdir, a.alg)
        self.seq = 0

    def add(self, key: str, value) -> None:
        self.samples.setdefault(key, []).append(value)

    def med(self, key: str):
        vals = [v for v in self.samples.get(key, []) if v is not None]
        return statistics.median(vals) if vals else None

    def note(self, msg: str) -> None:
        self.notes.append(msg)
        log(f"    !! {msg}")

    def start_ferry(self, tag: str, config: str | None, extra: tuple = (), binary: str | None = None) -> tuple[subprocess.Popen, int, str]:
        self.seq += 1
        data = os.path.join(self.a.workdir, f"data-{self.seq:02d}-{tag}")
        log_path = os.path.join(self.a.workdir, f"server-{self.seq:02d}-{tag}.log")
        args = []
        if config is not None:
            path = os.path.join(self.a.workdir, f"ferry-{self.seq:02d}.conf")
            with open(path, "w") as f:
                f.write(config)
            args = ["--config", path]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        for _attempt in range(3):
            self.discard(data)
            os.makedirs(data)
            self.fresh_filesystem(data)
            port = free_port()
            with open(log_path, "ab") as logf:
                proc = subprocess.Popen(
                    [binary or self.a.ferry, "serve", "--creation-rate", "0", "--anonymous-open-uploads", "0", "--host", "127.0.0.1", "--port", str(port), "--data-dir", data,
                     "--log-level", "warning", *args, *extra], stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                    env=env)
            if wait_healthy(proc, port):
                return proc, port, data
            stop(proc)
        with open(log_path, "rb") as f:
            raise RuntimeError(f"ferry did not start ({tag}):\n{f.read()[-2000:].decode('utf-8', 'replace')}")

    def fresh_filesystem(self, data: str) -> None:
        """Mounts a new ext4 file system (a sparse loop image) on `data` when --fresh-fs: every run
        starts on the same pristine disk state. Without it, the thousands of files the previous run
        deleted make ext4's inode allocator skip 'recently deleted' inodes for minutes, which cost
        one run several times the CPU of the next (measured with perf: up to 18 % of ferry's CPU)."""
        if not self.a.fresh_fs:
            return
        image = data + ".img"
        subprocess.run(["truncate", "-s", "8G", image], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", image], check=True)
        subprocess.run(["mount", "-o", "loop", image, data], check=True)

    def discard(self, data: str) -> None:
        if self.a.fresh_fs and os.path.ismount(data):
            subprocess.run(["umount", data], check=False)
        if os.path.exists(data + ".img"):
            os.remove(data + ".img")
        shutil.rmtree(data, ignore_errors=True)

    def burst(self, port: int, extra: list[str]) -> tuple[int, dict, str]:
        args = [self.a.loadgen, "burst", str(port), "create", str(self.a.count), str(self.a.size_kib * 1024),
                str(self.a.concurrency), "120", *extra]
        p = subprocess.run(args, capture_output=True, text=True, timeout=900)
        lines = p.stdout.strip().splitlines()
        return p.returncode, parse_kv(lines[-1]) if lines else {}, p.stderr.strip()

    # ---- the two configurations ------------------------------------------------------
    def run_defaults(self, i: int) -> None:
        proc, port, data = self.start_ferry("defaults", None)
        try:
            cpu0 = cpu_seconds(proc.pid)
            rc, r, err = self.burst(port, [])
            cpu = (cpu_seconds(proc.pid) or 0) - (cpu0 or 0)
        finally:
            died = proc.poll()
            stop(proc)
            self.discard(data)
        ok = rc == 0 and r.get("errors") == 0
        if not ok:
            self.note(f"run {i} defaults: rc={rc} {r} {err[:500]}")
        if died is not None:
            self.note(f"run {i} defaults: ferry exited during the run (code {died})")
        rate = r.get("rate") if ok else None
        self.add("defaults_rate", rate)
        self.add("defaults_p50", r.get("p50_ms"))
        self.add("defaults_p99", r.get("p99_ms"))
        log(f"  defaults: {fmt(rate)} uploads/s  p50 {fmt(r.get('p50_ms'))} ms  p99 {fmt(r.get('p99_ms'))} ms"
            f"  [ferry CPU {cpu:.1f}s]")

    def business_config(self, callbacks: Receiver, events: Receiver) -> str:
        auth = "\n".join(self.tokens.auth_lines)
        return f"""# generated by bench/business_bench.py
[server]
default-scenario = bench
admin-token = "{ADMIN_TOKEN}"

[auth]
{auth}
open-uploads = 1000000
open-bytes = 100000GiB
creations-per-minute = 10000000

[events]
concurrency = {self.a.event_concurrency}

[scenario bench]
pre-finish = http://127.0.0.1:{callbacks.port}/ferry/pre-finish
webhook = http://127.0.0.1:{events.port}/ferry/events
webhook-secret = "{WEBHOOK_SECRET}"
events = upload.created, upload.completed
webhook-batch = {self.a.webhook_batch}
"""

    def run_business(self, i: int) -> None:
        callbacks = events = proc = None
        data = None
        try:
            callbacks = Receiver(self, f"callbacks-{i}", ["--no-callback-log"])
            events = Receiver(self, f"events-{i}", ["--synchronous", self.a.receiver_sync])
            proc, port, data = self.start_ferry("business", self.business_config(callbacks, events))
            token = self.tokens.token()
            pids = {"ferry": proc.pid, "callbacks": callbacks.proc.pid, "events": events.proc.pid}
            cpu0 = {k: cpu_seconds(p) or 0 for k, p in pids.items()}
            t0 = time.monotonic()
            rc, r, err = self.burst(port, ["/files/bench/", f"Authorization: Bearer {token}"])
            t_burst = time.monotonic() - t0
            cpu_burst = {k: (cpu_seconds(p) or 0) - cpu0[k] for k, p in pids.items()}
            ok = rc == 0 and r.get("errors") == 0
            if not ok:
                self.note(f"run {i} business: rc={rc} {r} {err[:500]}")
            rate = r.get("rate") if ok else None
            if ok and r.get("business_done") != self.a.count:
                self.note(f"run {i} business: {r.get('business_done')} of {self.a.count} responses carried "
                          f"Ferry-Business-Status: done")
            want = 2 * int(r.get("ok") or 0)
            at_end = events.counts().get("events", 0)
            deadline = time.monotonic() + self.a.drain_timeout
            got = at_end
            while got < want and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
                got = events.counts().get("events", 0)
            t_drain = time.monotonic() - t0
            counts = events.counts()
            cb_counts = callbacks.counts()
            cpu_all = {k: (cpu_seconds(p) or 0) - cpu0[k] for k, p in pids.items()}
            drained = got >= want
            if not drained:
                self.note(f"run {i} business: outbox not drained after {self.a.drain_timeout:.0f}s: {got}/{want} events")
            delivery = got / t_drain if t_drain > 0 else None
            after = (got - at_end) / (t_drain - t_burst) if t_drain > t_burst and got > at_end else None
            admin = self.admin_check(port, events)
        finally:
            died = proc.poll() if proc else None
            stop(proc)
            for rcv in (callbacks, events):
                if rcv is not None:
                    stop(rcv.proc)
            if data:
                self.discard(data)
        if died is not None:
            self.note(f"run {i} business: ferry exited during the run (code {died})")
        self.add("business_rate", rate)
        self.add("business_p50", r.get("p50_ms"))
        self.add("business_p99", r.get("p99_ms"))
        self.add("delivery_rate", delivery if drained else None)
        self.add("backlog_at_burst_end", want - at_end)
        log(f"  business: {fmt(rate)} uploads/s  p50 {fmt(r.get('p50_ms'))} ms  p99 {fmt(r.get('p99_ms'))} ms"
            f"  business done {r.get('business_done')}/{r.get('ok')}; pre-finish calls {cb_counts.get('preFinish')}"
            f"  [CPU during the burst ({t_burst:.1f}s): ferry {cpu_burst['ferry']:.1f}s, pre-finish receiver "
            f"{cpu_burst['callbacks']:.1f}s, webhook receiver {cpu_burst['events']:.1f}s]")
        log(f"            events: {at_end}/{want} delivered when the burst ended; {got}/{want} after {t_drain:.1f}s"
            f" = {fmt(delivery)} events/s from the burst's start ({fmt(after)} events/s after its end);"
            f" duplicates {counts.get('duplicates')},"
            f" refused signatures {counts.get('refused')}; admin: {admin}"
            f"  [CPU to drain: ferry {cpu_all['ferry']:.1f}s, webhook receiver {cpu_all['events']:.1f}s]")

    def admin_check(self, port: int, events: Receiver) -> str:
        """The delivery state of one upload, as GET /admin/uploads/<id>/events reports it."""
        try:
            event = events.one_event()
            if not event:
                return "no event received"
            uid = event["upload"]
            status, _, body = request(port, "GET", f"/admin/uploads/{uid}/events",
                                      {"Authorization": f"Bearer {ADMIN_TOKEN}"})
            if status != 200:
                return f"HTTP {status} {body[:200]!r}"
            states = []

            def walk(o):
                if isinstance(o, dict):
                    if "state" in o and "attempts" in o:
                        states.append(o["state"])
                    for v in o.values():
                        walk(v)
                elif isinstance(o, list):
                    for v in o:
                        walk(v)
            walk(json.loads(body))
            return f"upload {uid[:8]}… states {states}"
        except (OSError, ValueError, KeyError) as e:
            return f"failed: {e!r}"

    # ---- driver ----------------------------------------------------------------------------
    def run(self) -> None:
        a = self.a
        log(f"{a.count} x {a.size_kib} KiB creation-with-upload, c={a.concurrency}; token {a.alg.upper()};"
            f" webhook receiver synchronous={a.receiver_sync}, webhook-batch={a.webhook_batch}; {a.runs} run(s)")
        for i in range(1, a.runs + 1):
            order = ["defaults", "business"] if i % 2 else ["business", "defaults"]
            log(f"== run {i}/{a.runs} ({' then '.join(order)})")
            for name in order:
                try:
                    (self.run_defaults if name == "defaults" else self.run_business)(i)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                    self.note(f"run {i} {name}: {e}")
        self.report()

    def report(self) -> None:
        log()
        log("== samples (median  [all samples])")
        for k, vals in self.samples.items():
            log(f"  {k:22s} {fmt(self.med(k)):>10s}  [{', '.join(fmt(v) for v in vals)}]")
        d, b = self.med("defaults_rate"), self.med("business_rate")
        log()
        log(f"== summary: {self.a.runs} run(s), ferry {self.a.ferry}")
        log(f"  defaults (no config):                 {fmt(d)} uploads/s"
            f"  p50 {fmt(self.med('defaults_p50'))} ms  p99 {fmt(self.med('defaults_p99'))} ms")
        log(f"  business (JWT, pre-finish, webhooks): {fmt(b)} uploads/s"
            f"  p50 {fmt(self.med('business_p50'))} ms  p99 {fmt(self.med('business_p99'))} ms")
        log(f"  ratio business / defaults:            {f'{b / d:.2f}' if d and b else 'n/a'}")
        log(f"  webhook delivery (2 events/upload):   {fmt(self.med('delivery_rate'))} events/s until drained"
            f" (backlog at the burst's end {fmt(self.med('backlog_at_burst_end'))})")
        self.report_notes()

    def report_notes(self) -> None:
        """The observations, and every sample as JSON with --json: the end of each report."""
        if self.notes:
            log()
            log("== observations")
            for n in self.notes:
                log(f"  - {n}")
        if self.a.json:
            with open(self.a.json, "w") as f:
                json.dump({"args": vars(self.a), "samples": self.samples, "notes": self.notes,
                           "medians": {k: self.med(k) for k in self.samples}}, f, indent=2)
            log(f"\n(json written to {self.a.json})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferry", required=True)
    ap.add_argument("--loadgen", required=True, help="compiled bench/loadgen.c")
    ap.add_argument("--workdir", required=True, help="scratch dir (data dirs, receiver databases, logs)")
    ap.add_argument("--receiver", default=os.path.normpath(RECEIVER))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--size-kib", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--alg", choices=["hs256", "rs256"], default="hs256", help="the bearer token's algorithm")
    ap.add_argument("--event-concurrency", type=int, default=16, help="[events] concurrency of the config")
    ap.add_argument("--webhook-batch", type=int, default=1,
                    help="webhook-batch of the webhook: events per POST (1 = each event alone)")
    ap.add_argument("--receiver-sync", choices=["full", "normal", "off"], default="full",
                    help="SQLite synchronous setting of the webhook receiver")
    ap.add_argument("--drain-timeout", type=float, default=600.0, help="seconds to wait for the outbox to drain")
    ap.add_argument("--json", default="", help="also write all samples to this file")
    ap.add_argument("--fresh-fs", dest="fresh_fs", action=argparse.BooleanOptionalAction, default=os.geteuid() == 0,
                    help="run each ferry on a new loop-mounted ext4 (default when root)")
    a = ap.parse_args()
    if a.alg == "rs256":
        try:
            import cryptography  # noqa: F401
        except ImportError:
            print("business_bench: --alg rs256 needs the Python package cryptography", file=sys.stderr)
            return 2
    return run_interruptibly(Bench(a))


if __name__ == "__main__":
    sys.exit(main())
