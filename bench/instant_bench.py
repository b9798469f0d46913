#!/usr/bin/env python3
"""Instant-upload benchmark: forwards of a file the server holds, through an emulated 3G link.

Usage: python3 bench/instant_bench.py --ferry PATH [--profile 3g] [--forwards 499] [--normals 5]
                                      [--size BYTES] [--seed N] [--runs N]

Per run: a fresh `ferry serve` (disk + SQLite, the defaults) behind `ferry netem --profile 3g`,
and one file of 1-4 MiB (random content, size from --size or the seed). Then, all with
`ferry put` through the emulator:
  1. the first upload (one `ferry put`, a fresh process, as a phone sending a new file);
  2. the baseline: --normals copies under other names sent the ordinary way, each by its own
     `ferry put --instant-limit 0` (a fresh process, as the first);
  3. the forwards: --forwards copies under other names (`ferry put --concurrency 1 copy… URL`),
     each announced, challenged, proven and stored instantly;
  4. over loopback, without the emulator: --direct ordinary uploads and 4x as many forwards, for
     the server's CPU per completion without a trickling body's per-segment reads.
For each phase: wall time per upload, bytes on the wire counted at the emulator (both
directions), requests per upload by method (from `--verbose`), TCP connections, and the
server's CPU (utime + stime of its process, /proc) per upload. Checks that every forward was
stored instantly and reads back whole. Prints medians over --runs.
Targets (issue 18): a forward costs <= 2 round trips (requests, discovery excepted) and <= 1 % of
the file's bytes on the wire.
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import free_port  # noqa: E402
from business_bench import cpu_seconds  # noqa: E402


def wait_http(port, path="/healthz", timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on {port}")


class Run:
    def __init__(self, args, tmp, size, seed):
        self.args, self.tmp, self.size = args, tmp, size
        self.port, self.netem_port = free_port(), free_port()
        self.stats_file = os.path.join(tmp, "netem.json")
        data = random.Random(seed).randbytes(size)
        self.digest = hashlib.sha256(data).hexdigest()
        self.files = os.path.join(tmp, "files")
        os.makedirs(self.files)
        self.original = os.path.join(self.files, "original.jpg")
        with open(self.original, "wb") as f:
            f.write(data)
        self.procs = []

    def start(self):
        log = open(os.path.join(self.tmp, "ferry.log"), "wb")
        self.server = subprocess.Popen([self.args.ferry, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir",
                                        os.path.join(self.tmp, "data"), "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(self.server)
        wait_http(self.port)
        self.netem = subprocess.Popen([self.args.ferry, "netem", "--listen", f"127.0.0.1:{self.netem_port}", "--target", f"127.0.0.1:{self.port}",
                                       "--profile", self.args.profile, "--stats-file", self.stats_file],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(self.netem)
        for _ in range(100):
            if os.path.exists(self.stats_file):
                break
            time.sleep(0.05)

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def wire(self):
        """(connections, bytes up + down) at the emulator, once its once-a-second file caught up."""
        time.sleep(1.2)
        with open(self.stats_file) as f:
            stats = json.load(f)
        return stats["connections"], stats["bytes_up"] + stats["bytes_down"]

    def copies(self, prefix, count):
        paths = []
        for index in range(count):
            path = os.path.join(self.files, f"{prefix}-{index:04d}.jpg")
            shutil.copyfile(self.original, path)
            paths.append(path)
        return paths

    def put(self, paths, extra, direct=False):
        url = f"http://127.0.0.1:{self.port if direct else self.netem_port}/files/"
        cmd = [self.args.ferry, "put", *paths, url, "--verbose", "--no-resume", "--state-dir", os.path.join(self.tmp, "state"), *extra]
        if len(paths) > 1:
            cmd += ["--concurrency", "1", "--queue-dir", os.path.join(self.tmp, f"queue-{time.monotonic_ns()}")]
        connections, wire = self.wire()
        before = requests_by_method(self.port)
        cpu = cpu_seconds(self.server.pid)
        began = time.monotonic()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=7200)
        seconds = time.monotonic() - began
        cpu = cpu_seconds(self.server.pid) - cpu
        after = requests_by_method(self.port)
        connections2, wire2 = self.wire()
        if out.returncode != 0:
            raise RuntimeError(f"ferry put failed: {out.stderr[-800:]}")
        methods = {m: after[m] - before.get(m, 0) for m in after if after[m] - before.get(m, 0) > 0}
        self.hashing = [float(x) for x in re.findall(r"hashed \d+ bytes for the announcement in ([\d.e-]+) seconds", out.stderr)]
        instantly = out.stderr.count("stored instantly") if len(paths) == 1 else out.stdout.count("\tstored instantly")
        n = len(paths)
        return {"uploads": n, "seconds_per_upload": seconds / n, "wire_bytes_per_upload": (wire2 - wire) / n,
                "connections": connections2 - connections, "requests_per_upload": {m: c / n for m, c in sorted(methods.items())},
                "server_cpu_ms_per_upload": cpu * 1000 / n, "stored_instantly": instantly, "stdout": out.stdout,
                "hash_seconds": self.hashing}


def verify(run, stdout):
    """Every URL printed reads back with the original's digest (directly, not through netem)."""
    bad = 0
    for url in re.findall(r"http://\S+/files/[0-9a-f]+", stdout):
        conn = http.client.HTTPConnection("127.0.0.1", run.port, timeout=60)
        conn.request("GET", "/files/" + url.rsplit("/", 1)[-1], headers={"Tus-Resumable": "1.0.0"})
        response = conn.getresponse()
        if response.status != 200 or hashlib.sha256(response.read()).hexdigest() != run.digest:
            bad += 1
    return bad


def requests_by_method(port):
    """The server's own count of upload requests by method (`ferry_http_requests_total`)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("ferry_http_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if labels.get("route") in ("/healthz", "/metrics"):
                continue
            # A client's report after an upload (`POST /telemetry/<id>`) is not one of its requests.
            method = labels["method"] + (" telemetry" if labels.get("route") == "/telemetry" else "")
            counts[method] = counts.get(method, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def merge(phases):
    """Several one-file phases as one: per-upload figures averaged, counts added."""
    n = len(phases)
    methods = {}
    for phase in phases:
        for method, count in phase["requests_per_upload"].items():
            methods[method] = methods.get(method, 0) + count / n
    return {"uploads": n, "seconds_per_upload": sum(p["seconds_per_upload"] for p in phases) / n,
            "wire_bytes_per_upload": sum(p["wire_bytes_per_upload"] for p in phases) / n,
            "connections": sum(p["connections"] for p in phases), "requests_per_upload": methods,
            "server_cpu_ms_per_upload": sum(p["server_cpu_ms_per_upload"] for p in phases) / n,
            "stored_instantly": sum(p["stored_instantly"] for p in phases), "stdout": "".join(p["stdout"] for p in phases),
            "hash_seconds": sum((p["hash_seconds"] for p in phases), [])}


def one_run(args, index):
    rng = random.Random(args.seed + index)
    size = args.size or rng.randint(1 << 20, 4 << 20)
    tmp = tempfile.mkdtemp(prefix="ferry-instant-bench-")
    run = Run(args, tmp, size, args.seed + index)
    try:
        run.start()
        first = run.put([run.original], [])
        # Each ordinary upload is its own `ferry put`, like the first: in one queue, a file of up to
        # 4 MiB travels in its creation request, which a 3G link cannot finish before the
        # client's stall detection gives up on it (bench/README.md).
        normals = merge([run.put([path], ["--instant-limit", "0"]) for path in run.copies("normal", args.normals)])
        forwards = run.put(run.copies("forward", args.forwards), [])
        # The server's CPU per completion without the emulator's trickle (a slow body costs the
        # server a read per small segment): the same file over loopback, ordinary and instant.
        normals_direct = run.put(run.copies("normal-direct", args.direct), ["--instant-limit", "0"], direct=True)
        forwards_direct = run.put(run.copies("forward-direct", args.direct * 4), [], direct=True)
        phases = {"first": first, "normal": normals, "forward": forwards, "normal-direct": normals_direct, "forward-direct": forwards_direct}
        bad = verify(run, "".join(phase["stdout"] for phase in phases.values()))
        for phase in phases.values():
            phase.pop("stdout")
        return {"size": size, **phases, "unreadable": bad}
    finally:
        run.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ferry", default=".build/release/ferry")
    parser.add_argument("--profile", default="3g")
    parser.add_argument("--forwards", type=int, default=499)
    parser.add_argument("--normals", type=int, default=5)
    parser.add_argument("--direct", type=int, default=50, help="ordinary uploads over loopback (and 4x as many forwards) for the CPU figures")
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    args.ferry = os.path.abspath(args.ferry)
    results = []
    for index in range(args.runs):
        result = one_run(args, index)
        results.append(result)
        size = result["size"]
        print(f"run {index + 1}: a {size} byte file through netem {args.profile}", flush=True)
        for name in ("first", "normal", "forward", "normal-direct", "forward-direct"):
            phase = result[name]
            requests = ", ".join(f"{m} {c:.2f}" for m, c in phase["requests_per_upload"].items())
            print(f"  {name:14} x{phase['uploads']:<4} {phase['seconds_per_upload']:8.3f} s/upload  "
                  f"{phase['wire_bytes_per_upload']:11.0f} B on the wire/upload ({phase['wire_bytes_per_upload'] / size * 100:6.2f} % of the file)  "
                  f"requests/upload: {requests}  connections {phase['connections']}  server CPU {phase['server_cpu_ms_per_upload']:.2f} ms/upload  "
                  f"stored instantly {phase['stored_instantly']}", flush=True)
        print(f"  unreadable uploads: {result['unreadable']}; the first upload's hashing took {result['first']['hash_seconds']} s", flush=True)

    def med(name, key):
        return statistics.median(r[name][key] for r in results)

    forward_requests = statistics.median(
        sum(c for m, c in r["forward"]["requests_per_upload"].items() if m != "OPTIONS" and not m.endswith("telemetry")) for r in results
    )
    wire_share = statistics.median(r["forward"]["wire_bytes_per_upload"] / r["size"] * 100 for r in results)
    instant_all = all(r["forward"]["stored_instantly"] == r["forward"]["uploads"] for r in results)
    print("summary (medians over runs)")
    print(f"  first upload      {med('first', 'seconds_per_upload'):8.3f} s, {med('first', 'server_cpu_ms_per_upload'):.2f} ms server CPU")
    print(f"  normal            {med('normal', 'seconds_per_upload'):8.3f} s, {med('normal', 'server_cpu_ms_per_upload'):.2f} ms server CPU")
    print(f"  forward (queue)   {med('forward', 'seconds_per_upload'):8.3f} s, {med('forward', 'server_cpu_ms_per_upload'):.2f} ms server CPU")
    print(f"  forward requests (discovery excepted) {forward_requests:.2f} per forward: {'PASS' if forward_requests <= 2 else 'FAIL'} (<= 2)")
    print(f"  forward bytes on the wire {wire_share:.3f} % of the file: {'PASS' if wire_share <= 1 else 'FAIL'} (<= 1 %)")
    print(f"  every forward stored instantly and readable: {'PASS' if instant_all and all(r['unreadable'] == 0 for r in results) else 'FAIL'}")
    print(f"  server CPU, instant completion vs normal: {med('forward', 'server_cpu_ms_per_upload') / med('normal', 'server_cpu_ms_per_upload'):.3f}x "
          f"through the emulator; over loopback {med('forward-direct', 'server_cpu_ms_per_upload'):.2f} ms vs "
          f"{med('normal-direct', 'server_cpu_ms_per_upload'):.2f} ms: "
          f"{med('forward-direct', 'server_cpu_ms_per_upload') / med('normal-direct', 'server_cpu_ms_per_upload'):.3f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
