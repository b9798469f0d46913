#!/usr/bin/env python3
"""Ferry benchmark orchestrator (Python 3.11 stdlib only).

Normally started by bench/run.sh, which raises the fd limit, compiles the C load
generator (bench/loadgen.c) and creates the scratch directory. This script starts a
fresh `ferry serve` per sample, drives the load generator, samples the server's
memory from /proc/PID/status and prints every sample, the medians and a summary table.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

MiB = 1 << 20
KiB = 1 << 10


def log(msg: str = "") -> None:
    print(msg, flush=True)


class Budget:
    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / Threads etc. from /proc/PID/status, memory values in KiB."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "Threads", "RssAnon", "RssFile"):
                    out[k] = int(v.split()[0])
    except (OSError, ValueError):
        pass
    try:
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return out


class ServerError(RuntimeError):
    pass


class Server:
    """One `ferry serve` process with its own fresh data directory."""

    seq = 0

    def __init__(self, ferry: str, workdir: str, tag: str):
        Server.seq += 1
        self.tag = f"{Server.seq:02d}-{tag}"
        self.data = os.path.join(workdir, f"data-{self.tag}")
        self.log_path = os.path.join(workdir, f"server-{self.tag}.log")
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.sigkilled = False
        self.stop_seconds = 0.0
        last = ""
        for _attempt in range(3):
            shutil.rmtree(self.data, ignore_errors=True)
            os.makedirs(self.data)
            self.port = free_port()
            logf = open(self.log_path, "ab")
            # PUT /discard is off by default; FERRY_BENCH_DISCARD (= --bench-discard) turns it on.
            # Other FERRY_* settings from the caller's environment are dropped so every run is alike.
            env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
            env["FERRY_BENCH_DISCARD"] = "1"
            self.proc = subprocess.Popen(
                [ferry, "serve", "--creation-rate", "0", "--anonymous-open-uploads", "0", "--host", "127.0.0.1", "--port", str(self.port),
                 "--data-dir", self.data, "--log-level", "warning"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env)
            logf.close()
            if self._wait_healthy(30.0):
                return
            last = self.log_tail()
            self._kill()
        shutil.rmtree(self.data, ignore_errors=True)
        raise ServerError(f"server did not become healthy (3 attempts); log tail:\n{last}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _wait_healthy(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def log_tail(self, n: int = 15) -> str:
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join("    | " + l for l in lines[-n:])
        except OSError:
            return "    | (no log)"

    def _kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.sigkilled = True
            self.proc.kill()  # by PID
            self.proc.wait(10)
        self.stop_seconds = time.monotonic() - t0

    def stop(self) -> int | None:
        """Stops the server and deletes its data. Returns the exit code if it had already died."""
        died = None if self.alive() else self.proc.returncode
        self._kill()
        shutil.rmtree(self.data, ignore_errors=True)
        return died

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class RssSampler(threading.Thread):
    """Reads VmRSS every `period` seconds and remembers the peak (KiB)."""

    def __init__(self, pid: int, period: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak = 0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        path = f"/proc/{self.pid}/status"
        while not self._stop_evt.is_set():
            try:
                with open(path, "rb") as f:
                    for line in f:
                        if line.startswith(b"VmRSS:"):
                            self.peak = max(self.peak, int(line.split()[1]))
                            break
            except (OSError, ValueError):
                return
            self._stop_evt.wait(self.period)

    def finish(self) -> int:
        self._stop_evt.set()
        self.join()
        return self.peak


def parse_kv(line: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for m in re.finditer(r'(\w+)=("([^"]*)"|\S+)', line):
        k, raw, quoted = m.group(1), m.group(2), m.group(3)
        if quoted is not None:
            out[k] = quoted
            continue
        try:
            out[k] = int(raw)
        except ValueError:
            try:
                out[k] = float(raw)
            except ValueError:
                out[k] = raw
    return out


class Bench:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.size = a.size_mib * MiB
        self.budget = Budget(a.budget)
        self.samples: dict[str, list] = {}
        self.notes: list[str] = []
        self.loadgen = a.loadgen

    # ---- bookkeeping -------------------------------------------------------------
    def add(self, key: str, value) -> None:
        self.samples.setdefault(key, []).append(value)

    def note(self, msg: str) -> None:
        msg = msg.replace("\nloadgen: ", " | loadgen: ")
        self.notes.append(msg)
        log(f"    !! {msg}")

    def med(self, key: str):
        vals = [v for v in self.samples.get(key, []) if v is not None]
        return statistics.median(vals) if vals else None

    def client(self, args: list[str], timeout: float) -> tuple[int, dict, str]:
        t = max(5.0, min(timeout, self.budget.left() + 60))
        try:
            p = subprocess.run([self.loadgen, *args], capture_output=True, text=True, timeout=t)
        except subprocess.TimeoutExpired:
            return 124, {}, f"client timed out after {t:.0f}s"
        lines = p.stdout.strip().splitlines()
        return p.returncode, parse_kv(lines[-1]) if lines else {}, p.stderr.strip()

    def server(self, tag: str) -> Server:
        return Server(self.a.ferry, self.a.workdir, tag)

    def check_server_after(self, srv: Server, what: str) -> None:
        died = srv.stop()
        if died is not None:
            self.note(f"{what}: server exited during the measurement (code {died}); log tail:\n{srv.log_tail()}")
        elif srv.sigkilled:
            self.note(f"{what}: server ignored SIGTERM for 10 s and was SIGKILLed")
        elif srv.stop_seconds > 3:
            self.note(f"{what}: server took {srv.stop_seconds:.1f}s to exit after SIGTERM")

    # ---- measurements ------------------------------------------------------------
    def m_dd(self) -> None:
        path = os.path.join(self.a.workdir, "dd.bin")
        t0 = time.monotonic()
        p = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={self.a.size_mib}",
                            "conv=fdatasync"], capture_output=True, text=True,
                           env={**os.environ, "LC_ALL": "C"}, timeout=max(30, self.budget.left()))
        wall = time.monotonic() - t0
        try:
            os.remove(path)
        except OSError:
            pass
        m = re.search(r"copied, ([\d.]+) s", p.stderr)
        secs = float(m.group(1)) if m else wall
        v = self.a.size_mib / secs if p.returncode == 0 else None
        self.add("dd_mibps", v)
        log(f"  0  dd bs=1M count={self.a.size_mib} conv=fdatasync: {fmt(v)} MiB/s")

    def m_discard_stream(self) -> None:
        with self.server("discard-stream") as srv:
            rc, r, err = self.client(["stream", str(srv.port), "discard", str(self.size), str(self.size), "60"],
                                     timeout=300)
            v = r.get("mibps") if rc == 0 and r.get("ok") == 1 else None
            if v is None:
                self.note(f"PUT /discard stream failed (rc={rc}): {err or r}")
            self.check_server_after(srv, "discard stream")
        self.add("discard_stream_mibps", v)
        log(f"  0  client -> PUT /discard {self.a.size_mib} MiB: {fmt(v)} MiB/s")

    def m_tus_stream(self, key: str, chunk: int, label: str) -> None:
        with self.server(key) as srv:
            base = srv.status()
            sampler = RssSampler(srv.pid)
            sampler.start()
            rc, r, err = self.client(["stream", str(srv.port), "tus", str(self.size), str(chunk), "60"],
                                     timeout=300)
            sampled = sampler.finish()
            st = srv.status()
            ok = rc == 0 and r.get("ok") == 1
            v = r.get("mibps") if ok else None
            if not ok:
                self.note(f"{label} failed (rc={rc}): {err or r}")
            else:
                biggest = 0
                for root, _dirs, files in os.walk(srv.data):
                    for fn in files:
                        try:
                            biggest = max(biggest, os.path.getsize(os.path.join(root, fn)))
                        except OSError:
                            pass
                if biggest < self.size:
                    self.note(f"{label}: no file of {self.size} bytes in the data dir after 204 (largest {biggest})")
            self.check_server_after(srv, label)
        hwm = st.get("VmHWM")
        self.add(f"{key}_mibps", v)
        self.add(f"{key}_hwm_mib", hwm / 1024 if hwm else None)
        self.add(f"{key}_sampled_mib", sampled / 1024 if sampled else None)
        log(f"  {label}: {fmt(v)} MiB/s  peak RSS (VmHWM) {fmt(hwm / 1024 if hwm else None)} MiB"
            f"  [sampled VmRSS max {fmt(sampled / 1024)} MiB, RSS at start {fmt(base.get('VmRSS', 0) / 1024)} MiB,"
            f" {r.get('requests', '?')} requests]")

    def m_burst(self, mode: str) -> None:
        key = "burst_create" if mode == "create" else "burst_discard"
        with self.server(key) as srv:
            rc, r, err = self.client(["burst", str(srv.port), mode, str(self.a.count), str(self.a.small_kib * KiB),
                                      str(self.a.concurrency), "60"], timeout=180)
            self.check_server_after(srv, key)
        errors = r.get("errors", None)
        ok = rc == 0 and errors == 0
        if not ok:
            self.note(f"{key}: rc={rc} ok={r.get('ok')} errors={errors} reconnects={r.get('reconnects')}: {err}")
        if r.get("reconnects"):
            self.note(f"{key}: the server closed keep-alive connections {r['reconnects']} times")
        # a run with errors still yields a rate of *successful* requests; keep it but flag it
        rate = r.get("rate") if r.get("ok") else None
        self.add(f"{key}_rate", rate)
        self.add(f"{key}_p50", r.get("p50_ms"))
        self.add(f"{key}_p99", r.get("p99_ms"))
        what = "POST creation-with-upload" if mode == "create" else "PUT /discard"
        log(f"  3  {self.a.count} x {what} {self.a.small_kib} KiB @ c={self.a.concurrency}: {fmt(rate)} req/s"
            f"  p50 {fmt(r.get('p50_ms'))} ms  p99 {fmt(r.get('p99_ms'))} ms  max {fmt(r.get('max_ms'))} ms"
            f"  errors {errors}")

    def m_slow(self) -> None:
        n = self.a.slow_count
        paths_file = os.path.join(self.a.workdir, "slow-paths.txt")
        with self.server("slow") as srv:
            t0 = time.monotonic()
            with open(paths_file, "w") as out:
                p = subprocess.run([self.loadgen, "create", str(srv.port), str(n), str(self.a.slow_length_kib * KiB)],
                                   stdout=out, stderr=subprocess.PIPE, text=True, timeout=max(30, self.budget.left()))
            if p.returncode != 0:
                self.note(f"slow: creating {n} uploads failed: {p.stderr.strip()}")
                self.check_server_after(srv, "slow")
                return
            create_s = time.monotonic() - t0
            time.sleep(2.0)
            idle = median_rss(srv.pid, 5, 0.2)
            idle_st = srv.status()
            sampler = RssSampler(srv.pid, 0.25)
            sampler.start()
            g = subprocess.Popen([self.loadgen, "slow", str(srv.port), paths_file, str(self.a.slow_length_kib * KiB),
                                  str(self.a.slow_interval_ms)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            rdy: dict = {}
            try:
                ready = read_line_with_timeout(g.stdout, 120)
                rdy = parse_kv(ready or "")
                open_at_ready = rdy.get("open")
                time.sleep(self.a.slow_hold)
                loaded = median_rss(srv.pid, 5, 0.2)
                loaded_st = srv.status()
                g.stdin.write("stop\n")
                g.stdin.flush()
                out, err = g.communicate(timeout=30)
            except (subprocess.TimeoutExpired, OSError, ValueError) as e:
                g.kill()
                out, err = g.communicate()
                self.note(f"slow: client problem: {e!r} {err.strip()}")
                loaded, loaded_st, open_at_ready = None, {}, None
            finally:
                if g.poll() is None:  # interrupted: do not leave 1,000 sockets behind
                    g.kill()
                    g.wait()
            peak = sampler.finish()
            summary = parse_kv((out or "").strip().splitlines()[-1] if (out or "").strip() else "")
            self.check_server_after(srv, "slow")
        try:
            os.remove(paths_file)
        except OSError:
            pass
        per = (loaded - idle) / n if (loaded and idle) else None
        self.add("slow_idle_mib", idle / 1024 if idle else None)
        self.add("slow_loaded_mib", loaded / 1024 if loaded else None)
        self.add("slow_kib_per_upload", per)
        still_open = summary.get("open")
        if open_at_ready != n:
            self.note(f"slow: only {open_at_ready}/{n} sockets opened: {rdy}")
        if summary and (summary.get("closed_by_peer") or summary.get("early_responses") or summary.get("send_errors")):
            self.note(f"slow: during the hold the server closed {summary.get('closed_by_peer')} sockets, answered "
                      f"{summary.get('early_responses')} early (first: {summary.get('first_response')!r}), "
                      f"{summary.get('send_errors')} send errors; {still_open} still open at the end")
        log(f"  4  {n} slow PATCHes: idle {fmt(idle / 1024 if idle else None)} MiB -> loaded "
            f"{fmt(loaded / 1024 if loaded else None)} MiB = {fmt(per)} KiB/upload"
            f"  [created in {create_s:.1f}s; sockets open {still_open}/{n}; threads {idle_st.get('Threads')}->"
            f"{loaded_st.get('Threads')}; fds {idle_st.get('fds')}->{loaded_st.get('fds')};"
            f" sampled max {fmt(peak / 1024)} MiB]")

    # ---- driver -----------------------------------------------------------------
    def run(self) -> None:
        a = self.a
        steps = [
            ("dd", self.m_dd),
            ("discard-stream", self.m_discard_stream),
            ("single", lambda: self.m_tus_stream("single", self.size, f"1  1 x PATCH {a.size_mib} MiB")),
            ("chunked", lambda: self.m_tus_stream("chunked", a.chunk_mib * MiB,
                                                  f"2  PATCHes of {a.chunk_mib} MiB")),
            ("burst-create", lambda: self.m_burst("create")),
            ("burst-discard", lambda: self.m_burst("discard")),
            ("slow", self.m_slow),
        ]
        only = set(a.only.split(",")) if a.only else None
        for i in range(1, a.runs + 1):
            log(f"== run {i}/{a.runs}  (budget left {self.budget.left():.0f}s)")
            for name, fn in steps:
                if only and name not in only:
                    continue
                if self.budget.left() < 20:
                    self.note(f"run {i}: skipped {name} (time budget exhausted)")
                    continue
                try:
                    fn()
                except ServerError as e:
                    self.note(f"{name}: {e}")
                except subprocess.TimeoutExpired as e:
                    self.note(f"{name}: timed out: {e}")
        self.report()

    def report(self) -> None:
        a, s = self.a, self.samples
        log()
        log("== samples (median  [all samples])")
        for k, vals in s.items():
            log(f"  {k:26s} {fmt(self.med(k)):>10s}  [{', '.join(fmt(v) for v in vals)}]")

        dd = self.med("dd_mibps")
        rows = []

        def row(fig, unit, key, base=None, base_txt="", target="", verdict=None, ratio_pct=True):
            m = self.med(key)
            ratio = ""
            if m is not None and base:
                ratio = f"{100 * m / base:.0f} %" if ratio_pct else f"{m / base:.2f}x"
            v = "" if verdict is None or m is None else ("PASS" if verdict(m) else "FAIL")
            rows.append((fig, f"{fmt(m)} {unit}" if m is not None else "n/a", base_txt, ratio, target, v))

        row(f"0 dd {a.size_mib} MiB fdatasync", "MiB/s", "dd_mibps", base_txt="(disk ceiling)")
        row(f"0 PUT /discard {a.size_mib} MiB", "MiB/s", "discard_stream_mibps", base_txt="(HTTP ceiling)")
        row("1 single PATCH", "MiB/s", "single_mibps", dd, f"dd {fmt(dd)} MiB/s", ">= 90 % of dd",
            lambda m: dd is not None and m >= 0.9 * dd)
        ds = self.med("discard_stream_mibps")
        row("1 single PATCH vs discard", "MiB/s", "single_mibps", ds, f"discard {fmt(ds)} MiB/s", "(info)")
        row("1 peak RSS (VmHWM)", "MiB", "single_hwm_mib", target="< 64 MiB", verdict=lambda m: m < 64)
        row(f"2 {a.chunk_mib} MiB PATCHes", "MiB/s", "chunked_mibps", dd, f"dd {fmt(dd)} MiB/s", "(info)")
        row("2 peak RSS (VmHWM)", "MiB", "chunked_hwm_mib", target="< 64 MiB", verdict=lambda m: m < 64)
        dr = self.med("burst_discard_rate")
        row(f"3 {a.count} x {a.small_kib} KiB c={a.concurrency}", "uploads/s", "burst_create_rate", dr,
            f"discard {fmt(dr)} req/s", ">= 900 /s", lambda m: m >= 900)
        d50, d99 = self.med("burst_discard_p50"), self.med("burst_discard_p99")
        row("3 latency p50", "ms", "burst_create_p50", d50, f"discard {fmt(d50)} ms", "(info)", ratio_pct=False)
        row("3 latency p99", "ms", "burst_create_p99", d99, f"discard {fmt(d99)} ms", "(info)", ratio_pct=False)
        idle = self.med("slow_idle_mib")
        row(f"4 RSS per slow PATCH ({a.slow_count})", "KiB", "slow_kib_per_upload",
            base_txt=f"idle {fmt(idle)} MiB", target="<= 64 KiB", verdict=lambda m: m <= 64)
        row("4 RSS holding slow PATCHes", "MiB", "slow_loaded_mib", base_txt=f"idle {fmt(idle)} MiB")

        hdr = ("figure", "median", "baseline", "ratio", "target", "")
        widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
        log()
        log(f"== summary: {a.runs} run(s), size {a.size_mib} MiB, ferry {a.ferry}")
        for r in [hdr] + rows:
            log("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        if self.notes:
            log()
            log("== observations")
            for n in self.notes:
                log(f"  - {n}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"args": vars(a), "samples": s, "notes": self.notes,
                           "medians": {k: self.med(k) for k in s}}, f, indent=2)
            log(f"\n(json written to {a.json})")


def fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


def median_rss(pid: int, n: int, gap: float) -> int | None:
    vals = []
    for i in range(n):
        v = proc_status(pid).get("VmRSS")
        if v:
            vals.append(v)
        if i + 1 < n:
            time.sleep(gap)
    return int(statistics.median(vals)) if vals else None


def read_line_with_timeout(f, timeout: float) -> str | None:
    r, _, _ = select.select([f], [], [], timeout)
    return f.readline() if r else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferry", required=True)
    ap.add_argument("--loadgen", required=True, help="compiled bench/loadgen.c")
    ap.add_argument("--workdir", required=True, help="scratch dir (data dirs and dd file live here)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--chunk-mib", type=int, default=5)
    ap.add_argument("--count", type=int, default=2000, help="uploads in the concurrency test")
    ap.add_argument("--small-kib", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--slow-count", type=int, default=1000)
    ap.add_argument("--slow-length-kib", type=int, default=1024)
    ap.add_argument("--slow-interval-ms", type=int, default=1000)
    ap.add_argument("--slow-hold", type=float, default=15.0)
    ap.add_argument("--budget", type=float, default=900.0, help="seconds; later steps are skipped past it")
    ap.add_argument("--only", default="", help="comma list of: dd,discard-stream,single,chunked,"
                                               "burst-create,burst-discard,slow")
    ap.add_argument("--json", default="", help="also write all samples to this file")
    a = ap.parse_args()
    return run_interruptibly(Bench(a))


def run_interruptibly(b) -> int:
    """Runs a bench (`run()`, `report()`); SIGINT/SIGTERM print the partial results and return 130."""
    def on_term(_sig, _frm):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGTERM, on_term)
    try:
        b.run()
    except KeyboardInterrupt:
        log("\n== interrupted; partial results:")
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        b.report()
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
