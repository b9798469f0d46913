#!/usr/bin/env python3
"""Ferry client benchmark (Python 3.11 stdlib + tuspy). Normally started by bench/client.sh.

For every network profile and run: a fresh `ferry serve`, a fresh `ferry netem` (seed = run
index, so every client faces the same network) and one random file; each client in turn uploads
it through the emulator: (1) `ferry put`, (2) `ferry put --typical-tus-client`, (3) tuspy.
Every attempt has a wall-clock cap; a timeout, a non-zero exit or a SHA-256 mismatch of the
stored upload (GET of the upload URL straight from the server) is a failure.

The `clean` step compares `ferry put` on plain loopback with the server's single-PATCH
throughput measured by bench/loadgen.c in the same run, and reports `ferry put`'s peak RSS.

See bench/CLIENT.md.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

MiB = 1 << 20
MBIT = 1_000_000 / 8
CLIENTS = ("ferry", "typical", "tuspy")
CLIENT_LABEL = {"ferry": "ferry put", "typical": "ferry --typical-tus-client", "tuspy": "tuspy 1.x"}


def log(msg: str = "") -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# The network profiles, replicated from Sources/FerryNetem/NetworkProfile+Catalog.swift (same
# SplitMix64 draws), to know each profile's mean rate and when its outages come.
# ---------------------------------------------------------------------------------------------

M64 = (1 << 64) - 1


class SeededRandom:
    def __init__(self, seed: int):
        self.state = seed & M64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def unit(self) -> float:
        return (self.next() >> 11) / float(1 << 53)

    def below(self, bound: int) -> int:
        return self.next() % max(1, bound)


class Profile:
    def __init__(self, name: str, schedule: list[tuple[float, float]], latency: float,
                 cut=None, blackhole=None, reset=None, handover=None, per_connection=None):
        self.name, self.schedule, self.latency = name, schedule, latency
        self.cut, self.blackhole, self.reset, self.handover = cut, blackhole, reset, handover
        self.per_connection = per_connection

    @staticmethod
    def named(name: str, seed: int) -> "Profile":
        r = SeededRandom(seed)
        if name == "wifi":
            return Profile(name, [(60, 50 * MBIT)], 0.015)
        if name == "lte-good":
            return Profile(name, [(60, 13 * MBIT)], 0.050)
        if name == "3g":
            return Profile(name, [(60, 1 * MBIT)], 0.250)
        if name == "lte-driving":
            s: list[tuple[float, float]] = []
            while len(s) < 300:
                if r.unit() < 0.08:
                    s.append((1 + r.below(4), 2 * MBIT * 0.02))
                else:
                    s.append((1, 2 * MBIT * (0.5 + r.unit())))
            return Profile(name, s, 0.080)
        if name == "cliff":
            return Profile(name, [(15, 10 * MBIT), (5, 10 * MBIT * 0.03)], 0.050)
        if name == "vacuum":
            s = []
            for _ in range(20):
                s.append((20 + r.below(20), 5 * MBIT))
                s.append((2 + r.below(29), 0.0))
            return Profile(name, s, 0.060)
        if name == "handover":
            return Profile(name, [(60, 10 * MBIT)], 0.050, handover=(60.0, 1.5))
        if name == "middlebox":
            return Profile(name, [(60, 10 * MBIT)], 0.040, cut=(1_000_000, 8_000_000))
        if name == "blackhole":
            return Profile(name, [(60, 10 * MBIT)], 0.040, blackhole=(1_000_000, 8_000_000))
        if name == "per-flow":
            return Profile(name, [(60, 20 * MBIT)], 0.050, per_connection=5 * MBIT)
        raise ValueError(f"unknown profile {name}")

    def scaled(self, factor: float, fates: bool = False) -> "Profile":
        """What `ferry netem --rate-scale F` plays: NetworkProfile.scaled(by:fates:). With
        `--rates-only` (this benchmark's default) the byte-count fates (cut/blackhole/reset after
        N bytes) stay as the profile defines them; with fates, they are scaled as well."""
        def f(rng):
            return rng if rng is None or not fates else (int(rng[0] * factor), int(rng[1] * factor))
        return Profile(self.name, [(d, rate * factor) for d, rate in self.schedule], self.latency,
                       f(self.cut), f(self.blackhole), f(self.reset), self.handover,
                       None if self.per_connection is None else self.per_connection * factor)

    @property
    def period(self) -> float:
        return sum(d for d, _ in self.schedule)

    @property
    def mean_rate(self) -> float:
        m = sum(d * rate for d, rate in self.schedule) / self.period
        if self.handover:
            m *= 1 - self.handover[1] / self.handover[0]
        return m

    @property
    def peak_rate(self) -> float:
        return max(rate for _, rate in self.schedule)

    def rate(self, t: float) -> float:
        if self.handover and t % self.handover[0] >= self.handover[0] - self.handover[1]:
            return 0.0
        pos = t % self.period
        for d, rate in self.schedule:
            if pos < d:
                return rate
            pos -= d
        return self.schedule[-1][1]

    def ideal_time(self, size: int, dt: float = 0.005) -> float:
        """Seconds a perfect client starting at t=0 needs to push `size` bytes through this
        exact schedule (bandwidth only: no latency, no protocol overhead)."""
        t, sent = 0.0, 0.0
        while sent < size:
            rate = self.rate(t)
            if sent + rate * dt >= size:
                return t + (size - sent) / rate
            sent += rate * dt
            t += dt
            if t > 36000:
                return float("inf")
        return t

    def first_outage(self, horizon: float) -> float | None:
        """Start of the first stretch below 10 % of the peak rate within `horizon` seconds."""
        t, dt = 0.0, 0.01
        while t < horizon:
            if self.rate(t) < 0.1 * self.peak_rate:
                return t
            t += dt
        return None

    @staticmethod
    def fate_chance(rng, size: int) -> float:
        """Chance that one connection carrying `size` bytes meets a fate drawn from `rng`."""
        lo, hi = rng
        return min(1.0, max(0.0, (size - lo) / (hi - lo + 1)))

    def exercise(self, size: int) -> tuple[bool, str]:
        """Does an ideal transfer of `size` bytes meet this profile's trouble at all?"""
        t = self.ideal_time(size)
        parts, hit = [], False
        for label, rng in (("cut", self.cut), ("blackhole", self.blackhole), ("reset", self.reset)):
            if rng:
                p = self.fate_chance(rng, size)
                hit = hit or p > 0
                parts.append(f"{label} after {rng[0] / 1e6:.1f}-{rng[1] / 1e6:.1f} MB per connection: "
                             f"a one-connection transfer of {size / 1e6:.1f} MB meets it with p={p:.2f}")
        if not parts:
            first = self.first_outage(max(t, 1.0) + 600)
            if first is None:
                hit = True  # nothing to miss: the profile is just slow or far away
                parts.append("no outage in the schedule")
            elif first < t:
                hit = True
                parts.append(f"first outage at {first:.1f} s, inside the ideal transfer ({t:.1f} s)")
            else:
                parts.append(f"first outage at {first:.1f} s, AFTER the ideal transfer ends ({t:.1f} s): "
                             "not exercised")
        return hit, "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A child process with stdout/stderr in files; reaped with wait4 for its peak RSS."""

    def __init__(self, argv: list[str], out: str, err: str, stdin=subprocess.DEVNULL, env=None):
        self.out_path, self.err_path = out, err
        with open(out, "wb") as o, open(err, "wb") as e:
            self.proc = subprocess.Popen(argv, stdin=stdin, stdout=o, stderr=e, env=env)
        self.pid = self.proc.pid
        self.rc: int | None = None
        self.maxrss_kib: int | None = None

    def poll(self) -> int | None:
        if self.rc is None:
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
            if pid == self.pid:
                self._reaped(status, ru)
        return self.rc

    def _reaped(self, status: int, ru) -> None:
        self.rc = os.waitstatus_to_exitcode(status)
        self.maxrss_kib = ru.ru_maxrss
        self.proc.returncode = self.rc  # keep Popen from waiting again

    def wait(self, deadline: float) -> bool:
        """Waits until `deadline` (monotonic); False if still running then."""
        delay = 0.005
        while self.poll() is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; always by this child's PID."""
        if self.poll() is not None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not self.wait(time.monotonic() + grace):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            pid, status, ru = os.wait4(self.pid, 0)
            self._reaped(status, ru)

    def text(self, which: str = "err") -> str:
        try:
            with open(self.err_path if which == "err" else self.out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class RssSampler(threading.Thread):
    """Samples RssAnon / RssFile of a process every `period` s; finish() returns the maxima in MiB."""

    def __init__(self, pid: int, period: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.anon = self.file = 0
        self._stop_evt = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            try:
                with open(f"/proc/{self.pid}/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"RssAnon:"):
                            self.anon = max(self.anon, int(line.split()[1]))
                        elif line.startswith(b"RssFile:"):
                            self.file = max(self.file, int(line.split()[1]))
            except (OSError, ValueError):
                return
            self._stop_evt.wait(self.period)

    def finish(self) -> tuple[float | None, float | None]:
        self._stop_evt.set()
        self.join()
        return (self.anon / 1024 or None, self.file / 1024 or None)


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class ServerError(RuntimeError):
    pass


class Server:
    """A fresh `ferry serve` with its own data directory."""

    seq = 0

    def __init__(self, ferry: str, workdir: str, tag: str):
        Server.seq += 1
        self.tag = f"{Server.seq:03d}-{tag}"
        self.data = os.path.join(workdir, f"data-{self.tag}")
        self.log_path = os.path.join(workdir, f"server-{self.tag}.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        last = ""
        for _ in range(3):
            shutil.rmtree(self.data, ignore_errors=True)
            os.makedirs(self.data)
            self.port = free_port()
            self.child = Child([ferry, "serve", "--creation-rate", "0", "--anonymous-open-uploads", "0", "--host", "127.0.0.1", "--port", str(self.port),
                                "--data-dir", self.data, "--log-level", "warning"],
                               self.log_path, self.log_path + ".err", env=env)
            if self._wait_healthy(30):
                return
            last = self.log_tail()
            self.child.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        raise ServerError(f"server did not become healthy (3 attempts):\n{last}")

    def _wait_healthy(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.child.poll() is not None:
                return False
            try:
                if http_get(self.port, "/healthz", 2)[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.03)
        return False

    def metrics(self) -> dict[str, float]:
        """Sums: requests (ferry_http_requests_total over all labels except the benchmark's own
        /metrics and /healthz), bytes_received, uploads_active."""
        status, body = http_get(self.port, "/metrics")
        if status != 200:
            raise OSError(f"/metrics answered {status}")
        out = {"requests": 0.0, "bytes_received": 0.0, "uploads_active": 0.0}
        by_status: dict[str, float] = {}
        for line in body.decode("utf-8", "replace").splitlines():
            m = re.match(r'^(\w+)(\{[^}]*\})?\s+([0-9.eE+-]+)$', line.strip())
            if not m:
                continue
            name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
            if name == "ferry_http_requests_total":
                if 'route="/metrics"' in labels or 'route="/healthz"' in labels:
                    continue
                out["requests"] += value
                meth = re.search(r'method="([^"]*)"', labels)
                st = re.search(r'status="([^"]*)"', labels)
                key = f"{meth.group(1) if meth else '?'} {st.group(1) if st else '?'}"
                by_status[key] = by_status.get(key, 0) + value
            elif name == "ferry_bytes_received_total":
                out["bytes_received"] += value
            elif name == "ferry_uploads_active":
                out["uploads_active"] += value
        out["by_status"] = by_status  # type: ignore[assignment]
        return out

    def wait_quiet(self, timeout: float) -> None:
        """Waits (up to `timeout`) until no upload has a request in progress, so interrupted
        requests are counted before the 'after' snapshot."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if self.metrics()["uploads_active"] == 0:
                    return
            except OSError:
                return
            time.sleep(0.1)

    def log_tail(self, n: int = 10) -> str:
        text = ""
        for p in (self.log_path, self.log_path + ".err"):
            try:
                with open(p, "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except OSError:
                pass
        return "\n".join("    | " + l for l in text.splitlines()[-n:])

    def stop(self) -> int | None:
        died = self.child.rc if self.child.poll() is not None else None
        self.child.stop(10)
        shutil.rmtree(self.data, ignore_errors=True)
        for p in (self.log_path, self.log_path + ".err"):
            if died is None:
                try:
                    os.remove(p)
                except OSError:
                    pass
        return died


class Netem:
    """A fresh `ferry netem` between the client and the server."""

    LINE = re.compile(r"netem: connections (\d+), up (\d+) B, down (\d+) B, resets (\d+), cuts (\d+), "
                      r"blackholes (\d+), handovers (\d+)")

    def __init__(self, ferry: str, workdir: str, tag: str, target: int, profile: str, seed: int,
                 scale: float, seconds: float, stats_file: bool, rates_only: bool = True):
        self.port = free_port()
        self.stats_path = os.path.join(workdir, f"netem-{tag}.json") if stats_file else None
        argv = [ferry, "netem", "--listen", f"127.0.0.1:{self.port}", "--target", f"127.0.0.1:{target}",
                "--profile", profile, "--seed", str(seed), "--rate-scale", repr(scale),
                "--seconds", str(int(seconds) + 1)]
        if rates_only:
            argv.append("--rates-only")
        if self.stats_path:
            argv += ["--stats-file", self.stats_path]
        self.child = Child(argv, os.path.join(workdir, f"netem-{tag}.out"),
                           os.path.join(workdir, f"netem-{tag}.err"))
        self.mean_kbit: int | None = None
        end = time.monotonic() + 15
        while time.monotonic() < end:
            m = re.search(r"on 127\.0\.0\.1:(\d+) .*mean uplink (\d+) kbit/s", self.child.text("out"))
            if m:
                self.mean_kbit = int(m.group(2))
                self.started = time.monotonic()
                return
            if self.child.poll() is not None:
                break
            time.sleep(0.01)
        err = self.child.text("err")[-500:]
        self.stop()
        raise ServerError(f"netem did not start: {err}")

    def _parse_file(self) -> dict | None:
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError, TypeError):
            return None

    def final_stats(self, since: float) -> dict | None:
        """Statistics written after monotonic time `since` (the client's exit): nothing moves
        after that, so they are final. The stats file is rewritten every second; without it, the
        5-second progress line on standard output is used."""
        if self.stats_path:
            wall_since = time.time() - (time.monotonic() - since)
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                try:
                    if os.stat(self.stats_path).st_mtime > wall_since + 0.01:
                        s = self._parse_file()
                        if s is not None:
                            return s
                except OSError:
                    pass
                time.sleep(0.05)
            return self._parse_file()
        # Fallback: the first progress line printed after `since`.
        def lines():
            return self.LINE.findall(self.child.text("out"))
        n_before = len(lines())
        end = time.monotonic() + 6.0
        while time.monotonic() < end and len(lines()) <= n_before:
            time.sleep(0.1)
        found = lines()
        if not found:
            return None
        v = [int(x) for x in found[-1]]
        return dict(zip(("connections", "bytes_up", "bytes_down", "resets", "cuts", "blackholes", "handovers"), v))

    def stop(self) -> None:
        self.child.stop(3)
        for p in (self.child.out_path, self.child.err_path, self.stats_path):
            if p:
                try:
                    os.remove(p)
                except OSError:
                    pass


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def verify_upload(port: int, url: str, size: int, digest: str, timeout: float = 300) -> str | None:
    """GETs the upload straight from the server; None if it matches, else what is wrong."""
    path = urllib.parse.urlsplit(url).path
    if not path:
        return f"no path in URL {url!r}"
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        if r.status != 200:
            r.read()
            return f"GET {path} answered {r.status}"
        h, n, end = hashlib.sha256(), 0, time.monotonic() + timeout
        while True:
            b = r.read(4 * MiB)
            if not b:
                break
            h.update(b)
            n += len(b)
            if time.monotonic() > end:
                return "GET took too long"
        if n != size:
            return f"GET returned {n} bytes, expected {size}"
        if h.hexdigest() != digest:
            return "SHA-256 mismatch"
        return None
    except OSError as e:
        return f"GET failed: {e!r}"
    finally:
        c.close()


def make_random_file(path: str, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            b = os.urandom(min(4 * MiB, left))
            h.update(b)
            f.write(b)
            left -= len(b)
    return h.hexdigest()


def parse_ferry_summary(stderr: str) -> dict:
    m = None
    for m in re.finditer(r"uploaded (\d+) bytes in (\d+) requests \((\d+) failed, (\d+) bytes sent twice\)", stderr):
        pass
    if not m:
        return {}
    return {"self_bytes": int(m.group(1)), "self_requests": int(m.group(2)),
            "self_failed": int(m.group(3)), "self_twice": int(m.group(4))}


def last_line(text: str) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1].strip() if lines else ""


def parse_kv(line: str) -> dict:
    out: dict = {}
    for k, v in re.findall(r"(\w+)=(\S+)", line):
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.sizes = parse_sizes(a.size_mib)
        self.profiles = [p for p in a.profiles.split(",") if p and p != "none"]
        self.clients = [c for c in a.clients.split(",") if c]
        self.attempts: list[dict] = []
        self.clean: list[dict] = []
        self.notes: list[str] = []
        self.deadline = time.monotonic() + a.budget if a.budget > 0 else float("inf")
        self.stats_file = "--stats-file" in subprocess.run([a.ferry, "netem", "--help"], capture_output=True,
                                                           text=True).stdout
        for p in self.profiles:
            Profile.named(p, 1)  # validates the name
        for c in self.clients:
            if c not in CLIENTS:
                raise SystemExit(f"unknown client {c}; one of {','.join(CLIENTS)}")

    def size(self, profile: str) -> int:
        return int(self.sizes.get(profile, self.sizes["*"]) * MiB)

    def ensure_workdir(self) -> None:
        """Something on this machine has been seen deleting scratch directories under /tmp: put
        back what a run needs (the pinned binary is copied again from its source)."""
        a = self.a
        if not os.path.isdir(a.workdir):
            self.note(f"the scratch directory {a.workdir} disappeared (deleted by another process?); recreated")
            os.makedirs(a.workdir, exist_ok=True)
        if not os.path.exists(a.ferry) and a.ferry_source and os.path.exists(a.ferry_source):
            shutil.copy2(a.ferry_source, a.ferry)
            self.note(f"the pinned ferry binary was gone; copied {a.ferry_source} again (it may be a newer build)")
        if a.loadgen and not os.path.exists(a.loadgen):
            self.note("the compiled loadgen was gone; the clean step has no server baseline from now on")
            a.loadgen = ""

    def note(self, msg: str) -> None:
        self.notes.append(msg)
        log(f"    !! {msg}")

    # ---- one upload through the emulator ------------------------------------------------------
    def attempt(self, profile: str, run: int, client: str, path: str, digest: str) -> dict:
        a = self.a
        seed = a.seed_base + run - 1
        prof = Profile.named(profile, seed).scaled(a.rate_scale, a.scale_fates)
        size = self.size(profile)
        ideal_mean = size / prof.mean_rate
        ideal_sched = prof.ideal_time(size)
        cap = a.cap_factor * max(ideal_mean, ideal_sched) + a.cap_extra
        rec = {"profile": profile, "run": run, "seed": seed, "client": client, "size": size,
               "ideal_mean_s": ideal_mean, "ideal_sched_s": ideal_sched, "cap_s": cap, "ok": False}
        tag = f"{profile}-{run}-{client}"
        srv = Server(a.ferry, a.workdir, tag)
        netem = worker = proc = None
        try:
            before = srv.metrics()
            if client == "tuspy":
                # Imports (aiohttp, requests: ~0.5 s) happen before the clock starts.
                worker = Child([sys.executable, "-u", os.path.abspath(__file__), "--tuspy-worker", path,
                                "--tuspy-chunk", str(int(a.tuspy_chunk_mib * MiB)), "--tuspy-retries", str(a.tuspy_retries),
                                "--tuspy-retry-delay", str(a.tuspy_retry_delay)],
                               os.path.join(a.workdir, f"client-{tag}.out"), os.path.join(a.workdir, f"client-{tag}.err"),
                               stdin=subprocess.PIPE)
                end = time.monotonic() + 30
                while "ready" not in worker.text("out") and worker.poll() is None and time.monotonic() < end:
                    time.sleep(0.01)
                if "ready" not in worker.text("out"):
                    raise ServerError(f"tuspy worker did not start: {worker.text()[-400:]}")
            netem = Netem(a.ferry, a.workdir, tag, srv.port, profile, seed, a.rate_scale, cap + 30, self.stats_file,
                          rates_only=not a.scale_fates)
            rec["netem_mean_kbit"] = netem.mean_kbit
            url = f"http://127.0.0.1:{netem.port}/files/"
            t0 = time.monotonic()
            if client == "tuspy":
                proc = worker
                worker.proc.stdin.write((url + "\n").encode())
                worker.proc.stdin.close()
            else:
                argv = [a.ferry, "put", path, url, "--no-resume", "--verbose", "--network", a.network]
                if client == "typical":
                    argv.append("--typical-tus-client")
                proc = Child(argv, os.path.join(a.workdir, f"client-{tag}.out"),
                             os.path.join(a.workdir, f"client-{tag}.err"))
            finished = proc.wait(t0 + cap)
            t1 = time.monotonic()
            if not finished:
                proc.stop(2)
                t1 = time.monotonic()
            rec["wall_s"] = t1 - t0
            rec["rc"] = proc.rc
            rec["timed_out"] = not finished
            rec["client_rss_mib"] = proc.maxrss_kib / 1024 if proc.maxrss_kib else None
            stats = netem.final_stats(t1) or {}
            rec["netem"] = stats
            netem.stop()
            netem = None
            srv.wait_quiet(3.0)
            after = srv.metrics()
            rec["requests"] = int(after["requests"] - before["requests"])
            rec["requests_by_status"] = {k: int(v - before["by_status"].get(k, 0))
                                         for k, v in after["by_status"].items() if v - before["by_status"].get(k, 0)}
            rec["server_bytes_received"] = int(after["bytes_received"] - before["bytes_received"])
            up = stats.get("bytes_up")
            rec["bytes_up"] = up
            rec["twice"] = max(0, up - size) if up is not None else None
            rec["faults"] = sum(stats.get(k, 0) for k in ("resets", "cuts", "blackholes", "handovers")) if stats else None
            err_text, out_text = proc.text("err"), proc.text("out")
            rec.update(parse_ferry_summary(err_text))
            if not finished:
                rec["failure"] = f"timeout after {cap:.0f}s"
            elif proc.rc != 0:
                rec["failure"] = f"exit {proc.rc}: {last_line(err_text)[:200]}"
            else:
                upload_url = last_line(out_text)
                problem = verify_upload(srv.port, upload_url, size, digest)
                if problem:
                    rec["failure"] = problem
                else:
                    rec["ok"] = True
            if not rec["ok"]:
                rec["stderr_tail"] = err_text.strip().splitlines()[-12:]
            rec["eff"] = ideal_mean / rec["wall_s"] if rec["ok"] else 0.0
            rec["eff_sched"] = ideal_sched / rec["wall_s"] if rec["ok"] else 0.0
            if a.keep_logs:
                keep = os.path.join(a.keep_logs, f"client-{tag}-{'ok' if rec['ok'] else 'FAIL'}.err")
                os.makedirs(a.keep_logs, exist_ok=True)
                shutil.copy(proc.err_path, keep)
                rec["log"] = keep
        finally:
            for c in (proc, worker):
                if c is not None:
                    c.stop(2)
                    for p in (c.out_path, c.err_path):
                        try:
                            os.remove(p)
                        except OSError:
                            pass
            if netem is not None:
                netem.stop()
            died = srv.stop()
            if died is not None:
                self.note(f"{tag}: the server exited during the attempt (code {died}); log tail:\n{srv.log_tail()}")
        return rec

    def print_attempt(self, r: dict) -> None:
        st = r.get("netem") or {}
        faults = ",".join(f"{k}={st[k]}" for k in ("resets", "cuts", "blackholes", "handovers") if st.get(k))
        selfrep = (f"  [self: {r['self_requests']} req, {r['self_failed']} failed, {mb(r['self_twice'])} MB twice]"
                   if "self_requests" in r else "")
        status = "ok  " if r["ok"] else "FAIL"
        log(f"  run {r['run']} {r['profile']:<12} {r['client']:<8} {status} {r['wall_s']:7.1f}s"
            f"  eff {r['eff']:.2f} (sched {r['eff_sched']:.2f})  twice {mb(r.get('twice'))} MB"
            f"  requests {r.get('requests')}  conns {st.get('connections', '?')}"
            f"  faults {faults or '-'}  rss {fmt(r.get('client_rss_mib'))} MiB{selfrep}"
            + (f"\n        -> {r['failure']}" if not r["ok"] else ""))

    # ---- clean: direct loopback ---------------------------------------------------------------
    def clean_loadgen(self, run: int, size: int, rec: dict) -> None:
        srv = Server(self.a.ferry, self.a.workdir, "clean-loadgen")
        try:
            os.sync()  # start from clean page-cache state: the previous step's writeback must not bill this one
            p = subprocess.run([self.a.loadgen, "stream", str(srv.port), "tus", str(size), str(size), "120"],
                               capture_output=True, text=True, timeout=600)
            kv = parse_kv(last_line(p.stdout))
            if p.returncode == 0 and kv.get("ok") == 1:
                rec["server_mibps"] = kv.get("mibps")
            else:
                self.note(f"clean run {run}: loadgen failed (rc {p.returncode}): {p.stderr.strip()[-300:]} {kv}")
        except subprocess.TimeoutExpired:
            self.note(f"clean run {run}: loadgen timed out")
        finally:
            srv.stop()

    def clean_put(self, run: int, path: str, digest: str, size: int, rec: dict) -> None:
        a = self.a
        srv = Server(a.ferry, a.workdir, "clean-put")
        tag = f"clean-{run}"
        proc = None
        try:
            before = srv.metrics()
            os.sync()
            t0 = time.monotonic()
            proc = Child([a.ferry, "put", path, f"http://127.0.0.1:{srv.port}/files/", "--no-resume", "--verbose"],
                         os.path.join(a.workdir, f"client-{tag}.out"), os.path.join(a.workdir, f"client-{tag}.err"))
            sampler = RssSampler(proc.pid)
            finished = proc.wait(t0 + 600)
            t1 = time.monotonic()
            if not finished:
                proc.stop(2)
            rec["rss_anon_mib"], rec["rss_file_mib"] = sampler.finish()
            err = proc.text("err")
            rec.update(parse_ferry_summary(err))
            rec["wall_s"] = t1 - t0
            rec["put_mibps"] = size / MiB / (t1 - t0) if finished and proc.rc == 0 else None
            stamps = re.findall(r"^\[\s*([0-9.]+)s\]", err, re.M)
            if stamps and rec["put_mibps"]:
                rec["put_trace_s"] = float(stamps[-1])
                rec["put_trace_mibps"] = size / MiB / float(stamps[-1])
            rec["rss_mib"] = proc.maxrss_kib / 1024 if proc.maxrss_kib else None
            rec["requests"] = int(srv.metrics()["requests"] - before["requests"])
            if not finished:
                rec["failure"] = "timeout after 600s"
            elif proc.rc != 0:
                rec["failure"] = f"exit {proc.rc}: {last_line(err)[:200]}"
            else:
                problem = verify_upload(srv.port, last_line(proc.text("out")), size, digest)
                if problem:
                    rec["failure"] = problem
                    rec["put_mibps"] = None
        finally:
            if proc is not None:
                proc.stop(2)
                for p in (proc.out_path, proc.err_path):
                    try:
                        os.remove(p)
                    except OSError:
                        pass
            died = srv.stop()
            if died is not None:
                self.note(f"clean run {run}: the server exited (code {died})")

    def clean_run(self, run: int, path: str, digest: str, size: int) -> dict:
        rec: dict = {"run": run, "size": size}
        # Alternate the order so neither side always runs second (after the other's disk writes).
        steps = [lambda: self.clean_put(run, path, digest, size, rec)]
        if self.a.loadgen:
            steps.insert(0 if run % 2 else 1, lambda: self.clean_loadgen(run, size, rec))
        for step in steps:
            step()
        sm, pm = rec.get("server_mibps"), rec.get("put_mibps")
        rec["ratio"] = pm / sm if sm and pm else None
        log(f"  run {run} clean {size // MiB} MiB: ferry put {fmt(pm)} MiB/s (wall {fmt(rec.get('wall_s'))}s; "
            f"{fmt(rec.get('put_trace_mibps'))} MiB/s by its own trace; {rec.get('self_requests', '?')} requests)"
            f"  server single PATCH (loadgen) {fmt(sm)} MiB/s  ratio {pct(rec['ratio'])}"
            f"  ferry put peak RSS {fmt(rec.get('rss_mib'))} MiB (sampled max: anon {fmt(rec.get('rss_anon_mib'))},"
            f" file-backed {fmt(rec.get('rss_file_mib'))})"
            + (f"\n        -> FAIL {rec['failure']}" if rec.get("failure") else ""))
        return rec

    # ---- driver -------------------------------------------------------------------------------
    def run(self) -> None:
        a = self.a
        log(f"profiles: {','.join(self.profiles)}; clients: {','.join(self.clients)}; runs: {a.runs}; "
            f"size: {a.size_mib} MiB; rate scale: {a.rate_scale}{'' if a.scale_fates else ' (rates only)'}; cap: {a.cap_factor} x ideal + {a.cap_extra:.0f}s; "
            f"ferry --network {a.network}")
        if not self.stats_file:
            self.note("this ferry's netem has no --stats-file; netem byte counts come from its 5-second "
                      "progress line instead (slower, same figures)")
        log()
        log(f"== what the profiles do at this size and scale (seed {a.seed_base}; "
            f"{'netem scales byte-count fates too' if a.scale_fates else 'byte-count fates as the profiles define them'})")
        for p in self.profiles:
            prof = Profile.named(p, a.seed_base).scaled(a.rate_scale, a.scale_fates)
            size = self.size(p)
            hit, what = prof.exercise(size)
            log(f"  {p:<12} {size / MiB:5.0f} MiB  mean {prof.mean_rate * 8 / 1e6:6.2f} Mbit/s  ideal {size / prof.mean_rate:6.1f}s by mean rate,"
                f" {prof.ideal_time(size):6.1f}s by schedule; {what}")
        clean_path = clean_digest = None
        if not a.skip_clean:
            clean_size = int(a.clean_size_mib * MiB)
            clean_path = os.path.join(a.workdir, "clean.bin")
            log()
            log(f"== clean: writing a {a.clean_size_mib} MiB random file")
            clean_digest = make_random_file(clean_path, clean_size)
            sha256_file(clean_path)  # reads it back: in the page cache
        for run in range(1, a.runs + 1):
            log()
            log(f"== run {run}/{a.runs} (netem seed {a.seed_base + run - 1})")
            self.ensure_workdir()
            if clean_path and (a.clean_runs <= 0 or run <= a.clean_runs):
                if time.monotonic() < self.deadline:
                    try:
                        if not os.path.exists(clean_path):
                            clean_digest = make_random_file(clean_path, int(a.clean_size_mib * MiB))
                            sha256_file(clean_path)
                        self.clean.append(self.clean_run(run, clean_path, clean_digest, int(a.clean_size_mib * MiB)))
                    except ServerError as e:
                        self.note(f"clean run {run}: {e}")
                else:
                    self.note(f"run {run}: clean skipped (time budget exhausted)")
            for profile in self.profiles:
                path = os.path.join(a.workdir, f"upload-{profile}-{run}.bin")
                self.ensure_workdir()
                digest = make_random_file(path, self.size(profile))
                for client in self.clients:
                    if time.monotonic() >= self.deadline:
                        self.note(f"run {run}: {profile}/{client} skipped (time budget exhausted)")
                        continue
                    try:
                        if not os.path.exists(path):
                            self.ensure_workdir()
                            digest = make_random_file(path, self.size(profile))
                        r = self.attempt(profile, run, client, path, digest)
                    except (ServerError, OSError) as e:
                        self.note(f"run {run} {profile}/{client}: harness problem, attempt not counted: {e}")
                        continue
                    self.attempts.append(r)
                    self.print_attempt(r)
                try:
                    os.remove(path)
                except OSError:
                    pass
        if clean_path:
            try:
                os.remove(clean_path)
            except OSError:
                pass

    # ---- report -------------------------------------------------------------------------------
    def report(self) -> None:
        a = self.a
        log()
        log(f"== results: {a.runs} run(s), sizes {a.size_mib} MiB, rate scale {a.rate_scale}"
            f"{'' if a.scale_fates else ' (rates only)'}, ferry {a.ferry_label}")
        log("   medians over successful attempts, except efficiency (a failure counts 0);")
        log("   eff = (size / (profile mean rate x scale)) / wall time; eff(sched) uses the ideal time through the")
        log("   exact schedule from t=0; twice = netem bytes_up - size; requests = server ferry_http_requests_total delta;")
        log("   faults = netem resets+cuts+blackholes+handovers during the attempt")
        summary_rows = []
        for profile in self.profiles:
            prof = Profile.named(profile, a.seed_base).scaled(a.rate_scale, a.scale_fates)
            size = self.size(profile)
            hit, _what = prof.exercise(size)
            rows = [("client", "success", "time s", "eff", "eff(sched)", "twice MB", "requests", "faults", "RSS MiB")]
            per_client = {}
            for client in self.clients:
                rs = [r for r in self.attempts if r["profile"] == profile and r["client"] == client]
                if not rs:
                    continue
                ok = [r for r in rs if r["ok"]]
                per_client[client] = (len(ok), len(rs), med([r["eff"] for r in rs]))
                rows.append((CLIENT_LABEL[client], f"{len(ok)}/{len(rs)} ({100 * len(ok) / len(rs):.0f} %)",
                             fmt(med([r["wall_s"] for r in ok])), f"{med([r['eff'] for r in rs]):.2f}",
                             f"{med([r['eff_sched'] for r in rs]):.2f}", mb(med([r["twice"] for r in ok])),
                             fmt(med([r["requests"] for r in ok])), fmt(med([r["faults"] for r in rs])),
                             fmt(med([r["client_rss_mib"] for r in ok]))))
            if len(rows) == 1:
                continue
            log()
            log(f"-- {profile}: {size / MiB:.0f} MiB, mean {prof.mean_rate * 8 / 1e6:.2f} Mbit/s (seed {a.seed_base}), ideal {size / prof.mean_rate:.1f}s"
                + ("" if hit else "   ** the profile's outage/fault is NOT exercised at this size and scale **"))
            table(rows)
            failures = [r for r in self.attempts if r["profile"] == profile and not r["ok"]]
            for r in failures:
                log(f"   run {r['run']} {r['client']}: {r['failure']}")
            if "ferry" in per_client:
                n_ok, n, eff = per_client["ferry"]
                summary_rows.append((f"{profile}: ferry put success", f"{n_ok}/{n}", "100 %",
                                     "PASS" if n_ok == n else "FAIL"))
                if profile in ("cliff", "vacuum"):
                    summary_rows.append((f"{profile}: ferry put efficiency", f"{eff:.2f}", ">= 0.85",
                                         ("PASS" if eff >= 0.85 else "FAIL") + ("" if hit else " (vacuous: the outage is not exercised)")))
        if self.clean:
            sm = med([c.get("server_mibps") for c in self.clean])
            pm = med([c.get("put_mibps") for c in self.clean])
            rs = med([c.get("rss_mib") for c in self.clean])
            ratio = med([c.get("ratio") for c in self.clean])
            log()
            log(f"-- clean (direct loopback, {a.clean_size_mib} MiB in the page cache, no netem)")
            table([("figure", "median", "samples"),
                   ("ferry put MiB/s (wall)", fmt(pm), ", ".join(fmt(c.get("put_mibps")) for c in self.clean)),
                   ("ferry put MiB/s (own trace)", fmt(med([c.get("put_trace_mibps") for c in self.clean])),
                    ", ".join(fmt(c.get("put_trace_mibps")) for c in self.clean)),
                   ("server single PATCH MiB/s (loadgen)", fmt(sm),
                    ", ".join(fmt(c.get("server_mibps")) for c in self.clean)),
                   ("ratio put / single PATCH", pct(ratio), ", ".join(pct(c.get("ratio")) for c in self.clean)),
                   ("ferry put requests", fmt(med([c.get("self_requests") for c in self.clean])),
                    ", ".join(str(c.get("self_requests", "?")) for c in self.clean)),
                   ("ferry put peak RSS MiB (ru_maxrss)", fmt(rs), ", ".join(fmt(c.get("rss_mib")) for c in self.clean)),
                   ("  of which anonymous (sampled max)", fmt(med([c.get("rss_anon_mib") for c in self.clean])),
                    ", ".join(fmt(c.get("rss_anon_mib")) for c in self.clean)),
                   ("  of which file-backed (binary text)", fmt(med([c.get("rss_file_mib") for c in self.clean])),
                    ", ".join(fmt(c.get("rss_file_mib")) for c in self.clean))])
            for c in self.clean:
                if c.get("failure"):
                    log(f"   run {c['run']}: FAIL {c['failure']}")
            summary_rows.append(("clean: ferry put vs single PATCH", pct(ratio), ">= 90 %",
                                 "" if ratio is None else ("PASS" if ratio >= 0.9 else "FAIL")))
            summary_rows.append(("clean: ferry put peak RSS", f"{fmt(rs)} MiB", "< 64 MiB",
                                 "" if rs is None else ("PASS" if rs < 64 else "FAIL")))
        log()
        log("== summary (targets)")
        table([("figure", "median", "target", "")] + summary_rows)
        if self.notes:
            log()
            log("== observations")
            for n in self.notes:
                log(f"  - {n}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"args": {k: v for k, v in vars(a).items()}, "attempts": self.attempts,
                           "clean": self.clean, "notes": self.notes}, f, indent=2, default=str)
            log(f"\n(json written to {a.json})")


# Large enough that an ideal transfer at rate scale 4 crosses cliff's and vacuum's first outage,
# and that `ferry put`'s adaptive parallelism (files of 32 MiB and more) has room on per-flow.
DEFAULT_SIZES = "cliff=80,vacuum=80,per-flow=128,*=20"


def parse_sizes(spec: str) -> dict[str, float]:
    """'20' or 'cliff=80,vacuum=80,*=20' -> {profile: MiB, '*': MiB}."""
    sizes: dict[str, float] = {}
    for part in str(spec).split(","):
        name, _, value = part.rpartition("=")
        sizes[name or "*"] = float(value)
    sizes.setdefault("*", 20.0)
    return sizes


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e9:
            return str(int(v))
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


def mb(v) -> str:
    return "n/a" if v is None else f"{v / 1e6:.2f}"


def pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.0f} %"


def table(rows) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        log("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def tuspy_worker(a: argparse.Namespace) -> int:
    """Runs one tuspy upload: imports first, says 'ready', reads the endpoint URL from stdin, uploads,
    prints the upload URL."""
    from tusclient import client  # noqa: the slow import happens before the clock starts

    print("ready", flush=True)
    url = sys.stdin.readline().strip()
    uploader = client.TusClient(url).uploader(a.tuspy_worker, chunk_size=a.tuspy_chunk,
                                              retries=a.tuspy_retries, retry_delay=a.tuspy_retry_delay)
    uploader.upload()
    print(uploader.url, flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferry", help="ferry binary (client.sh passes a pinned copy)")
    ap.add_argument("--ferry-label", default="", help="how to name the binary in the report")
    ap.add_argument("--ferry-source", default="", help="where the pinned --ferry copy came from")
    ap.add_argument("--loadgen", default="", help="compiled bench/loadgen.c (clean step); empty: skip that figure")
    ap.add_argument("--workdir", help="scratch directory")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", default=DEFAULT_SIZES,
                    help="MiB per upload: one number for every profile, or profile=N,...,*=N (default: %(default)s)")
    ap.add_argument("--profiles", default="cliff,vacuum,handover,middlebox,lte-driving,3g,blackhole,per-flow")
    ap.add_argument("--scale-fates", action="store_true",
                    help="--rate-scale also multiplies the byte counts after which connections die (netem without --rates-only)")
    ap.add_argument("--clients", default="ferry,typical,tuspy")
    ap.add_argument("--rate-scale", type=float, default=4)
    ap.add_argument("--seed-base", type=int, default=1, help="run i uses netem seed BASE + i - 1")
    ap.add_argument("--cap-factor", type=float, default=3, help="wall-clock cap = F x ideal + EXTRA")
    ap.add_argument("--cap-extra", type=float, default=60)
    ap.add_argument("--network", default="cellular", help="ferry put --network for the profile runs")
    ap.add_argument("--skip-clean", action="store_true")
    ap.add_argument("--clean-size-mib", type=float, default=1024)
    ap.add_argument("--clean-runs", type=int, default=0, help="clean samples (0: one per run)")
    ap.add_argument("--budget", type=float, default=0, help="seconds; attempts past it are skipped (0: none)")
    ap.add_argument("--tuspy-chunk-mib", type=float, default=5)
    ap.add_argument("--tuspy-retries", type=int, default=4)
    ap.add_argument("--tuspy-retry-delay", type=float, default=1)
    ap.add_argument("--keep-logs", default="", help="copy every client's stderr (ferry put: --verbose trace) here")
    ap.add_argument("--json", default="")
    ap.add_argument("--tuspy-worker", metavar="FILE", help=argparse.SUPPRESS)
    ap.add_argument("--tuspy-chunk", type=int, default=5 * MiB, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.tuspy_worker:
        return tuspy_worker(a)
    if not a.ferry or not a.workdir:
        ap.error("--ferry and --workdir are required")
    a.ferry_label = a.ferry_label or a.ferry

    def on_term(_sig, _frm):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGTERM, on_term)
    b = Bench(a)
    try:
        b.run()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log("\n== interrupted; partial results:")
        b.report()
        return 130
    b.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
