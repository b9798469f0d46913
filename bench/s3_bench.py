#!/usr/bin/env python3
"""Ferry on S3 benchmark orchestrator (Python 3.11 stdlib + boto3).

Normally started by bench/s3.sh, which starts Ceph RGW, PostgreSQL and nginx from
scripts/services, compiles bench/loadgen.c and creates the scratch directory. This script
starts fresh `ferry serve` nodes per sample (S3 storage on RGW; SQLite or PostgreSQL catalog),
drives the load generator, `ferry put` and boto3, samples the servers' memory and spool from
/proc/PID, deletes every object it wrote after each sample, and prints every sample, the
medians and a summary table. Helpers (log, Budget, proc_status, parse_kv, fmt, ...) come from
bench/bench.py.

Internal modes, each in a process of its own, printing one key=value line:
`s3_bench.py --boto3-put FILE BUCKET KEY` uploads FILE with boto3's `upload_file` (default
TransferConfig); `s3_bench.py --boto3-small BUCKET PREFIX COUNT SIZE CONC` sends COUNT
PutObjects of SIZE bytes from CONC threads (the small-uploads ceiling of RGW itself).
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Budget, ServerError, fmt, free_port, log, parse_kv, proc_status, run_interruptibly  # noqa: E402

MiB = 1 << 20
KiB = 1 << 10
BUCKET = "ferry-bench"


def ensure_boto3():
    try:
        import boto3  # noqa: F401
    except ImportError:
        log("boto3 missing: pip install boto3")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "boto3"], check=True)
    import boto3
    return boto3


def s3_env() -> dict[str, str]:
    need = ("FERRY_TEST_S3_ENDPOINT", "FERRY_TEST_S3_ACCESS_KEY", "FERRY_TEST_S3_SECRET_KEY")
    missing = [k for k in need if not os.environ.get(k)]
    if missing:
        raise SystemExit(f"s3_bench.py: {', '.join(missing)} not set (start scripts/services/rgw.sh)")
    return {
        "endpoint": os.environ["FERRY_TEST_S3_ENDPOINT"],
        "access": os.environ["FERRY_TEST_S3_ACCESS_KEY"],
        "secret": os.environ["FERRY_TEST_S3_SECRET_KEY"],
        "region": os.environ.get("FERRY_TEST_S3_REGION", "us-east-1"),
    }


def s3_client(e: dict[str, str]):
    boto3 = ensure_boto3()
    return boto3.client("s3", endpoint_url=e["endpoint"], aws_access_key_id=e["access"],
                        aws_secret_access_key=e["secret"], region_name=e["region"])


# ---- the boto3 baseline, in a process of its own ---------------------------------------------
def boto3_put_main(path: str, bucket: str, key: str) -> int:
    s3 = s3_client(s3_env())  # default TransferConfig: 8 MiB threshold and parts, 10 threads
    size = os.path.getsize(path)
    t0 = time.monotonic()
    s3.upload_file(path, bucket, key)
    dt = time.monotonic() - t0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"ok=1 seconds={dt:.6f} bytes={size} mibps={size / MiB / dt:.3f} maxrss_kib={maxrss}", flush=True)
    return 0


def boto3_small_main(bucket: str, prefix: str, count: str, size: str, conc: str) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from botocore.config import Config
    boto3 = ensure_boto3()
    e = s3_env()
    n, c = int(count), int(conc)
    s3 = boto3.client("s3", endpoint_url=e["endpoint"], aws_access_key_id=e["access"],
                      aws_secret_access_key=e["secret"], region_name=e["region"],
                      config=Config(max_pool_connections=c))
    body = os.urandom(int(size))
    lat: list[float] = []
    errors = 0

    def one(i: int) -> None:
        nonlocal errors
        t = time.monotonic()
        try:
            s3.put_object(Bucket=bucket, Key=f"{prefix}{i}", Body=body)
            lat.append(time.monotonic() - t)
        except Exception:  # noqa: BLE001
            errors += 1

    with ThreadPoolExecutor(c) as ex:  # warm up: one request per connection, not timed
        list(ex.map(one, range(n, n + c)))
    lat.clear()
    t0 = time.monotonic()
    with ThreadPoolExecutor(c) as ex:
        list(ex.map(one, range(n)))
    dt = time.monotonic() - t0
    lat.sort()
    pct = (lambda q: lat[min(len(lat) - 1, int(q * (len(lat) - 1) + 0.5))] * 1e3) if lat else (lambda q: 0.0)
    print(f"ok={len(lat)} errors={errors} seconds={dt:.6f} rate={len(lat) / dt:.2f} p50_ms={pct(0.5):.3f} "
          f"p99_ms={pct(0.99):.3f} max_ms={pct(1.0):.3f}", flush=True)
    return 1 if errors else 0


# ---- servers ---------------------------------------------------------------------------------
class Node:
    """One `ferry serve` process with its own fresh data directory, stopped by PID."""

    seq = 0

    def __init__(self, ferry: str, workdir: str, tag: str, args: list[str], env_extra: dict[str, str],
                 port: int | None = None, health_timeout: float = 60.0):
        Node.seq += 1
        self.tag = f"{Node.seq:03d}-{tag}"
        self.data = os.path.join(workdir, f"data-{self.tag}")
        self.log_path = os.path.join(workdir, f"server-{self.tag}.log")
        self.proc: subprocess.Popen | None = None
        self.sigkilled = False
        self.stop_seconds = 0.0
        fixed = port is not None
        last = ""
        for _attempt in range(3):
            shutil.rmtree(self.data, ignore_errors=True)
            os.makedirs(self.data)
            self.port = port if fixed else free_port()
            # Other FERRY_* settings from the caller's environment are dropped so every run is alike.
            env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
            env.update(env_extra)
            self.argv = [ferry, "serve", "--creation-rate", "0", "--anonymous-open-uploads", "0", "--host", "127.0.0.1", "--port", str(self.port),
                         "--data-dir", self.data, "--log-level", "warning", *args]
            with open(self.log_path, "ab") as logf:
                self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                                             stderr=subprocess.STDOUT, env=env)
            if self._wait_healthy(health_timeout):
                return
            last = self.log_tail()
            self._kill()
            time.sleep(0.5)
        shutil.rmtree(self.data, ignore_errors=True)
        raise ServerError(f"server {self.tag} did not become healthy (3 attempts); log tail:\n{last}")

    @property
    def pid(self) -> int:
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

    def log_lines(self) -> list[str]:
        try:
            with open(self.log_path, "rb") as f:
                return [l for l in f.read().decode("utf-8", "replace").splitlines() if l.strip()]
        except OSError:
            return []

    def log_tail(self, n: int = 15) -> str:
        return "\n".join("    | " + l for l in self.log_lines()[-n:]) or "    | (empty log)"

    def _kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)  # ferry's --shutdown-timeout is 15 s
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


class Sampler(threading.Thread):
    """Every `period` s: VmRSS of the PIDs and the bytes of their open, unlinked spool files
    (sizes of /proc/PID/fd/* whose link is ".../spool/... (deleted)"; the spool files are
    unlinked right after creation, so `du` of the spool folder shows nothing). Keeps the peaks."""

    def __init__(self, pids: list[int], period: float = 0.05):
        super().__init__(daemon=True)
        self.pids, self.period = pids, period
        self.peak_rss = 0           # KiB, largest single process
        self.peak_spool = 0         # bytes, all processes together
        self.peak_spool_files = 0
        self.samples = 0
        self._stop_evt = threading.Event()

    @staticmethod
    def spool_of(pid: int) -> tuple[int, int]:
        total = files = 0
        base = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(base)
        except OSError:
            return 0, 0
        for fd in fds:
            p = f"{base}/{fd}"
            try:
                target = os.readlink(p)
                if "/spool/" in target and target.endswith("(deleted)"):
                    total += os.stat(p).st_size
                    files += 1
            except OSError:
                pass
        return total, files

    def run(self) -> None:
        while not self._stop_evt.is_set():
            spool = files = 0
            for pid in self.pids:
                self.peak_rss = max(self.peak_rss, proc_status(pid).get("VmRSS", 0))
                b, n = self.spool_of(pid)
                spool += b
                files += n
            self.peak_spool = max(self.peak_spool, spool)
            self.peak_spool_files = max(self.peak_spool_files, files)
            self.samples += 1
            self._stop_evt.wait(self.period)

    def finish(self) -> "Sampler":
        self._stop_evt.set()
        self.join()
        return self


def loadgen_pattern_sha256(size: int) -> str:
    """SHA-256 of what `loadgen stream ... tus SIZE SIZE` sends: its 1 MiB xorshift buffer, repeated."""
    x = 2463534242
    buf = bytearray(MiB)
    for i in range(MiB):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        buf[i] = x & 0xFF
    h = hashlib.sha256()
    full, rest = divmod(size, MiB)
    mv = memoryview(bytes(buf))
    for _ in range(full):
        h.update(mv)
    h.update(mv[:rest])
    return h.hexdigest()


def http_sha256(port: int, path: str, timeout: float = 300) -> tuple[int, int, str]:
    """GET path from 127.0.0.1:port: (status, bytes, sha256)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path, headers={"Tus-Resumable": "1.0.0"})
    r = c.getresponse()
    h = hashlib.sha256()
    n = 0
    while True:
        b = r.read(4 * MiB)
        if not b:
            break
        h.update(b)
        n += len(b)
    c.close()
    return r.status, n, h.hexdigest()


def http_head_offset(port: int, path: str) -> tuple[int, int | None]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("HEAD", path, headers={"Tus-Resumable": "1.0.0"})
    r = c.getresponse()
    r.read()
    c.close()
    off = r.getheader("Upload-Offset")
    return r.status, int(off) if off is not None else None


SMALL_VARIANTS = {
    # name: (storage, catalog, behind nginx, description)
    "disk": ("disk", "sqlite", False, "1 node, disk + SQLite, direct"),
    "s3pg": ("s3", "postgres", False, "1 node, S3 + PostgreSQL, direct"),
    "nginx": ("s3", "postgres", True, "nginx -> {n} nodes, S3 + PostgreSQL"),
    # diagnostics (only with --only): which half of S3 + PostgreSQL costs what
    "s3sqlite": ("s3", "sqlite", False, "1 node, S3 + SQLite, direct"),
    "diskpg": ("disk", "postgres", False, "1 node, disk + PostgreSQL, direct"),
}


class Bench:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.size = a.size_mib * MiB
        self.budget = Budget(a.budget)
        self.samples: dict[str, list] = {}
        self.notes: list[str] = []
        self.e = s3_env()
        self.s3 = s3_client(self.e)
        self.prefix_seq = 0
        self.osd_used_max = 0  # bytes, the most RGW's OSD reported before an S3 step
        self.ferry_args = shlex.split(a.ferry_args)
        self.file = os.path.join(a.workdir, f"random-{a.size_mib}MiB.bin")
        self.file_sha: str | None = None
        self.pattern_sha: str | None = None
        self.node_ports = [int(p) for p in a.node_ports.split(",")] if a.node_ports else []
        # "8M:2,8M:4" (part size:concurrency), or ";"-separated option strings
        sep = ";" if (";" in a.explore or "--" in a.explore) else ","
        self.explore = [c.strip() for c in a.explore.split(sep) if c.strip()] if a.explore else []

    # ---- bookkeeping -------------------------------------------------------------
    def add(self, key: str, value) -> None:
        self.samples.setdefault(key, []).append(value)

    def note(self, msg: str) -> None:
        self.notes.append(msg)
        log(f"    !! {msg}")

    def med(self, key: str):
        vals = [v for v in self.samples.get(key, []) if v is not None]
        return statistics.median(vals) if vals else None

    def loadgen(self, args: list[str], timeout: float) -> tuple[int, dict, str]:
        t = max(10.0, min(timeout, self.budget.left() + 60))
        try:
            p = subprocess.run([self.a.loadgen, *args], capture_output=True, text=True, timeout=t)
        except subprocess.TimeoutExpired:
            return 124, {}, f"client timed out after {t:.0f}s"
        lines = p.stdout.strip().splitlines()
        return p.returncode, parse_kv(lines[-1]) if lines else {}, p.stderr.strip()

    def check_after(self, node: Node, what: str) -> None:
        died = node.stop()
        if died is not None:
            self.note(f"{what}: server {node.tag} exited during the measurement (code {died}); log tail:\n{node.log_tail()}")
        elif node.sigkilled:
            self.note(f"{what}: server {node.tag} ignored SIGTERM for 20 s and was SIGKILLed")
        elif node.stop_seconds > 3:
            self.note(f"{what}: server {node.tag} took {node.stop_seconds:.1f}s to exit after SIGTERM")
        lines = node.log_lines()  # --log-level warning: every line is a warning or worse
        if lines:
            self.note(f"{what}: server {node.tag} logged {len(lines)} line(s) at warning or above; "
                      f"first: {lines[0][:300]}")

    # ---- S3 helpers --------------------------------------------------------------
    def new_prefix(self, tag: str) -> str:
        self.prefix_seq += 1
        return f"s{self.prefix_seq:03d}-{tag}/"

    def ensure_bucket(self) -> None:
        try:
            self.s3.head_bucket(Bucket=BUCKET)
        except Exception:  # noqa: BLE001
            self.s3.create_bucket(Bucket=BUCKET)

    def list_prefix(self, prefix: str) -> list[tuple[str, int]]:
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for o in page.get("Contents", []):
                out.append((o["Key"], o["Size"]))
        return out

    def open_multiparts(self, prefix: str) -> list[tuple[str, str]]:
        r = self.s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
        return [(u["Key"], u["UploadId"]) for u in r.get("Uploads", [])]

    def delete_prefix(self, prefix: str, big: bool = False) -> None:
        """Deletes every object and multipart upload under prefix (RGW's memstore keeps them in RAM)."""
        try:
            for key, uid in self.open_multiparts(prefix):
                self.s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid)
            keys = [k for k, _ in self.list_prefix(prefix)]
            for i in range(0, len(keys), 1000):
                self.s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]],
                                                              "Quiet": True})
        except Exception as e:  # noqa: BLE001
            self.note(f"deleting s3://{BUCKET}/{prefix} failed: {e!r}")
        if big:
            self.rgw_gc()

    def rgw_gc(self) -> None:
        """A deleted multipart object's parts wait for RGW's garbage collector; run it now so the
        memstore's RAM comes back before the next sample."""
        if not self.a.rgw_conf:
            return
        try:
            subprocess.run(["radosgw-admin", "-c", self.a.rgw_conf, "gc", "process", "--include-all"],
                           capture_output=True, timeout=120)
        except (subprocess.TimeoutExpired, OSError) as e:
            self.note(f"radosgw-admin gc process: {e!r}")

    def osd_stats(self) -> tuple[int, int] | None:
        """(used, total) bytes of the memstore OSD, from its admin socket next to --rgw-conf."""
        if not self.a.rgw_conf:
            return None
        asok = os.path.join(os.path.dirname(self.a.rgw_conf), "run", "osd.0.asok")
        try:
            p = subprocess.run(["ceph", "--admin-daemon", asok, "perf", "dump"], capture_output=True, text=True,
                               timeout=30)
            osd = json.loads(p.stdout)["osd"]
            return int(osd["stat_bytes_used"]), int(osd["stat_bytes"])
        except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
            return None

    def rgw_check(self, what: str) -> bool:
        """Records the OSD's used bytes; False (and a note) when it reports itself (nearly) full,
        in which case RGW blocks writes and every S3 step would only time out."""
        st = self.osd_stats()
        if st is None:
            return True
        used, total = st
        self.osd_used_max = max(self.osd_used_max, used)
        if used > 0.85 * total:
            self.note(f"{what}: RGW's OSD reports {used} of {total} bytes used (memstore); RGW blocks writes "
                      f"when full, so this step is skipped")
            return False
        return True

    def s3_node_args(self, prefix: str) -> tuple[list[str], dict[str, str]]:
        args = ["--storage", f"s3://{BUCKET}/{prefix}", "--s3-endpoint", self.e["endpoint"],
                "--s3-region", self.e["region"], "--s3-create-bucket"]
        env = {"FERRY_S3_ACCESS_KEY": self.e["access"], "FERRY_S3_SECRET_KEY": self.e["secret"]}
        return args, env

    # ---- 1a: boto3 baseline ------------------------------------------------------
    def prepare_file(self) -> None:
        if self.file_sha and os.path.exists(self.file):
            return
        t0 = time.monotonic()
        h = hashlib.sha256()
        with open("/dev/urandom", "rb") as src, open(self.file, "wb") as dst:
            left = self.size
            while left > 0:
                b = src.read(min(8 * MiB, left))
                h.update(b)
                dst.write(b)
                left -= len(b)
        self.file_sha = h.hexdigest()
        log(f"  (test file {self.file}: {self.a.size_mib} MiB random, sha256 {self.file_sha[:16]}..., "
            f"{time.monotonic() - t0:.1f}s)")

    def m_boto3(self) -> None:
        self.prepare_file()
        prefix = self.new_prefix("boto3")
        key = prefix + "object"
        r: dict = {}
        ok = False
        size = None
        try:
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--boto3-put", self.file, BUCKET, key],
                               capture_output=True, text=True, timeout=max(60, min(900, self.budget.left() + 60)))
            lines = p.stdout.strip().splitlines()
            r = parse_kv(lines[-1]) if lines else {}
            ok = p.returncode == 0 and r.get("ok") == 1
            if not ok:
                self.note(f"1a boto3 upload_file failed (rc={p.returncode}): {p.stderr.strip()[-600:]}")
            else:
                size = self.s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
                if size != self.size:
                    self.note(f"1a boto3: the object holds {size} bytes, not {self.size}")
                    ok = False
        except subprocess.TimeoutExpired:
            self.note("1a boto3 upload_file timed out")
        finally:
            self.delete_prefix(prefix, big=True)
        v = r.get("mibps") if ok else None
        rss = r.get("maxrss_kib")
        self.add("boto3_mibps", v)
        self.add("boto3_client_rss_mib", rss / 1024 if rss else None)
        log(f"  1a boto3 upload_file {self.a.size_mib} MiB -> RGW: {fmt(v)} MiB/s"
            f"  [client peak RSS {fmt(rss / 1024 if rss else None)} MiB; HEAD size {size}]")

    # ---- 1b: one tus upload through ferry --------------------------------------
    def m_ferry_tus(self, run: int, key: str = "ferry_tus", extra: list[str] | None = None,
                    label: str = "1b") -> None:
        prefix = self.new_prefix(key.replace("_", "-"))
        args, env = self.s3_node_args(prefix)
        args += self.ferry_args if extra is None else extra
        node = Node(self.a.ferry, self.a.workdir, key, args, env)
        sha_note = ""
        ok = False
        r: dict = {}
        st: dict = {}
        base: dict = {}
        sm = Sampler([node.pid])
        try:
            base = proc_status(node.pid)
            sm.start()
            rc, r, err = self.loadgen(["stream", str(node.port), "tus", str(self.size), str(self.size),
                                       str(self.a.client_timeout)], timeout=900)
            sm.finish()
            st = proc_status(node.pid)
            ok = rc == 0 and r.get("ok") == 1
            if not ok:
                self.note(f"{label} {key}: loadgen failed (rc={rc}): {err or r}")
            spool_after, _ = Sampler.spool_of(node.pid)
            if spool_after:
                self.note(f"{label} {key}: {spool_after} spool bytes still open after the 204")
            objs = self.list_prefix(prefix)
            mp = self.open_multiparts(prefix)
            if ok and (len(objs) != 1 or objs[0][1] != self.size or mp):
                self.note(f"{label} {key}: after the 204 the prefix holds {objs[:5]} (expected one object of "
                          f"{self.size} bytes) and {len(mp)} open multipart upload(s)")
                ok = False
            if ok and run == 1 and extra is None:
                if self.pattern_sha is None:
                    self.pattern_sha = loadgen_pattern_sha256(self.size)
                upload_id = objs[0][0][len(prefix):]
                t0 = time.monotonic()
                status, n, digest = http_sha256(node.port, f"/files/{upload_id}")
                same = status == 200 and n == self.size and digest == self.pattern_sha
                sha_note = (f"; GET /files/{upload_id[:8]}... {status} {n} bytes, sha256 "
                            f"{'matches' if same else 'DIFFERS'} ({n / MiB / (time.monotonic() - t0):.0f} MiB/s)")
                if not same:
                    self.note(f"{label} {key}: GET through ferry returned {status}, {n} bytes, sha256 {digest}, "
                              f"expected {self.pattern_sha}")
                    ok = False
        finally:
            if sm.is_alive():
                sm.finish()
            self.check_after(node, f"{label} {key}")
            self.delete_prefix(prefix, big=True)
        v = r.get("mibps") if ok else None
        hwm = st.get("VmHWM")
        self.add(f"{key}_mibps", v)
        self.add(f"{key}_hwm_mib", hwm / 1024 if hwm else None)
        self.add(f"{key}_rss_mib", sm.peak_rss / 1024 if sm.peak_rss else None)
        self.add(f"{key}_spool_mib", sm.peak_spool / MiB)
        what = "" if extra is None else f" [{' '.join(extra) or 'defaults'}]"
        log(f"  {label} tus POST + 1 PATCH {self.a.size_mib} MiB -> ferry -> RGW{what}: {fmt(v)} MiB/s"
            f"  peak RSS (VmHWM) {fmt(hwm / 1024 if hwm else None)} MiB [sampled {fmt(sm.peak_rss / 1024)} MiB,"
            f" at start {fmt(base.get('VmRSS', 0) / 1024)} MiB]  peak spool {fmt(sm.peak_spool / MiB)} MiB"
            f" in {sm.peak_spool_files} file(s) ({sm.samples} samples){sha_note}")

    # ---- 1c: ferry put, client end to end -----------------------------------------
    def m_ferry_put(self, run: int) -> None:
        self.prepare_file()
        prefix = self.new_prefix("ferry-put")
        args, env = self.s3_node_args(prefix)
        args += self.ferry_args
        node = Node(self.a.ferry, self.a.workdir, "ferry_put", args, env)
        v, sha_note, detail = None, "", ""
        st: dict = {}
        sm = Sampler([node.pid])
        try:
            sm.start()
            cmd = [self.a.ferry, "put", self.file, f"http://127.0.0.1:{node.port}/files/", "--no-resume",
                   *shlex.split(self.a.put_args)]
            env_put = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
            t0 = time.monotonic()
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, env=env_put,
                                   timeout=max(60, min(900, self.budget.left() + 60)))
                wall = time.monotonic() - t0
                rc, out, err = p.returncode, p.stdout, p.stderr
            except subprocess.TimeoutExpired as e:
                wall, rc, out, err = time.monotonic() - t0, 124, "", f"timed out: {e}"
            sm.finish()
            st = proc_status(node.pid)
            url = out.strip().splitlines()[-1].strip() if out.strip() else ""
            ok = rc == 0 and "/files/" in url
            if not ok:
                self.note(f"1c ferry put failed (rc={rc}): {err.strip()[-600:]}")
            if ok:
                path = url[url.index("/files/"):]
                upload_id = path[len("/files/"):]
                status, off = http_head_offset(node.port, path)
                objs = self.list_prefix(prefix)
                obj_size = dict(objs).get(prefix + upload_id)
                tails = [(k, sz) for k, sz in objs if ".tail/" in k]
                requests = next((l.split(" in ")[1].split()[0] for l in err.splitlines()
                                 if l.startswith("uploaded ") and " in " in l), "?")
                detail = (f"; {requests} requests; HEAD {status} Upload-Offset {off}; object {obj_size} bytes;"
                          f" {len(objs)} object(s) under the prefix, {len(tails)} of them tail objects"
                          f" ({sum(sz for _, sz in tails) / MiB:.1f} MiB)")
                if tails:
                    self.note(f"1c ferry put: {len(tails)} tail object(s) ({sum(sz for _, sz in tails)} bytes) are left "
                              f"under the prefix after the upload completed: {[k[len(prefix):] for k, _ in tails][:6]}")
                if off != self.size or obj_size != self.size:
                    self.note(f"1c ferry put: upload {path}: Upload-Offset {off}, object size {obj_size}, "
                              f"expected {self.size}")
                    ok = False
                elif run == 1:
                    t1 = time.monotonic()
                    status, n, digest = http_sha256(node.port, path)
                    same = status == 200 and n == self.size and digest == self.file_sha
                    sha_note = (f"; GET {status} {n} bytes, sha256 {'matches' if same else 'DIFFERS'}"
                                f" ({n / MiB / (time.monotonic() - t1):.0f} MiB/s)")
                    if not same:
                        self.note(f"1c ferry put: GET through ferry returned {status}, {n} bytes, sha256 {digest}, "
                                  f"expected {self.file_sha}")
                        ok = False
            if ok:
                v = self.size / MiB / wall
        finally:
            if sm.is_alive():
                sm.finish()
            self.check_after(node, "1c ferry put")
            self.delete_prefix(prefix, big=True)
        hwm = st.get("VmHWM")
        self.add("ferry_put_mibps", v)
        self.add("ferry_put_hwm_mib", hwm / 1024 if hwm else None)
        self.add("ferry_put_spool_mib", sm.peak_spool / MiB)
        log(f"  1c ferry put {self.a.size_mib} MiB -> ferry -> RGW: {fmt(v)} MiB/s (client process wall time)"
            f"  server peak RSS {fmt(hwm / 1024 if hwm else None)} MiB  peak spool {fmt(sm.peak_spool / MiB)} MiB"
            f"{detail}{sha_note}")

    # ---- 2: small uploads ------------------------------------------------------------
    def m_small(self, variant: str) -> None:
        a = self.a
        storage, catalog, behind_nginx, desc = SMALL_VARIANTS[variant]
        desc = desc.format(n=len(self.node_ports))
        if catalog == "postgres" and not a.postgres_url:
            self.note(f"2 {variant}: no --postgres-url (FERRY_TEST_POSTGRES_URL); skipped")
            return
        if behind_nginx and not (a.nginx_port and self.node_ports):
            self.note(f"2 {variant}: no --nginx-port / --node-ports; skipped")
            return
        nodes: list[Node] = []
        prefix = None
        lines_before = 0
        access_log = os.path.join(a.nginx_dir, "access.log") if a.nginx_dir else ""
        args: list[str] = []
        env: dict[str, str] = {}
        if storage == "s3":
            prefix = self.new_prefix(f"small-{variant}")
            args, env = self.s3_node_args(prefix)
            args += self.ferry_args
        if catalog == "postgres":
            args += ["--catalog", a.postgres_url]
        r: dict = {}
        rc, err = -1, ""
        hwms: list[int] = []
        spread = stored = ""
        try:
            if behind_nginx:
                for i, np in enumerate(self.node_ports):
                    nodes.append(Node(a.ferry, a.workdir, f"small_{variant}_n{i + 1}",
                                      args + ["--trust-forwarded-headers"], env, port=np))
                port = a.nginx_port
                if access_log and os.path.exists(access_log):
                    with open(access_log, "rb") as f:
                        lines_before = sum(1 for _ in f)
            else:
                nodes.append(Node(a.ferry, a.workdir, f"small_{variant}", args, env))
                port = nodes[0].port
            sm = Sampler([n.pid for n in nodes], period=0.1)
            sm.start()
            rc, r, err = self.loadgen(["burst", str(port), "create", str(a.count), str(a.small_kib * KiB),
                                       str(a.concurrency), str(a.client_timeout)], timeout=300)
            sm.finish()
            hwms = [proc_status(n.pid).get("VmHWM", 0) for n in nodes]
            if behind_nginx and access_log and os.path.exists(access_log):
                counts: dict[str, int] = {}
                statuses: dict[str, int] = {}
                with open(access_log, "rb") as f:
                    for i, raw in enumerate(f):
                        if i < lines_before:
                            continue
                        line = raw.decode("utf-8", "replace")
                        up = line.split("upstream=", 1)[1].split()[0] if "upstream=" in line else "?"
                        counts[up] = counts.get(up, 0) + 1
                        after = line.split('" ', 1)
                        code = after[1].split()[0] if len(after) > 1 else "?"
                        statuses[code] = statuses.get(code, 0) + 1
                per_node = ", ".join(u.rsplit(":", 1)[-1] + "=" + str(c) for u, c in sorted(counts.items()))
                spread = f"  [nginx upstreams: {per_node}; statuses {statuses}]"
            if prefix is not None:
                objs = self.list_prefix(prefix)
                full = sum(1 for _, s in objs if s == a.small_kib * KiB)
                stored = f"  [{full}/{len(objs)} objects of {a.small_kib} KiB under the prefix]"
                if r.get("ok") and full != r.get("ok"):
                    self.note(f"2 {variant}: {r.get('ok')} uploads answered 201 but {full} full-size objects are "
                              f"under the prefix ({len(objs)} objects)")
        finally:
            for n in nodes:
                self.check_after(n, f"2 {variant}")
            if prefix is not None:
                self.delete_prefix(prefix)
        errors = r.get("errors")
        if not (rc == 0 and errors == 0):
            self.note(f"2 {variant}: rc={rc} ok={r.get('ok')} errors={errors} reconnects={r.get('reconnects')}: "
                      f"{err[-600:]}")
        if r.get("reconnects"):
            self.note(f"2 {variant}: connections were closed {r['reconnects']} times")
        rate = r.get("rate") if r.get("ok") else None
        key = f"small_{variant}"
        hwm = max(hwms) / 1024 if hwms and max(hwms) else None
        self.add(f"{key}_rate", rate)
        self.add(f"{key}_p50", r.get("p50_ms"))
        self.add(f"{key}_p99", r.get("p99_ms"))
        self.add(f"{key}_hwm_mib", hwm)
        log(f"  2  {a.count} x {a.small_kib} KiB creation-with-upload @ c={a.concurrency}, {desc}: {fmt(rate)} uploads/s"
            f"  p50 {fmt(r.get('p50_ms'))} ms  p99 {fmt(r.get('p99_ms'))} ms  max {fmt(r.get('max_ms'))} ms"
            f"  errors {errors}  peak RSS/node {fmt(hwm)} MiB{stored}{spread}")

    def m_small_boto3(self) -> None:
        a = self.a
        prefix = self.new_prefix("small-boto3")
        r: dict = {}
        try:
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--boto3-small", BUCKET, prefix,
                                str(a.count), str(a.small_kib * KiB), str(a.concurrency)],
                               capture_output=True, text=True, timeout=max(60, min(600, self.budget.left() + 60)))
            lines = p.stdout.strip().splitlines()
            r = parse_kv(lines[-1]) if lines else {}
            if p.returncode != 0 or r.get("errors"):
                self.note(f"2 boto3 PutObject: rc={p.returncode} {r} {p.stderr.strip()[-600:]}")
        except subprocess.TimeoutExpired:
            self.note("2 boto3 PutObject timed out")
        finally:
            self.delete_prefix(prefix)
        rate = r.get("rate") if r.get("ok") else None
        self.add("small_boto3_rate", rate)
        self.add("small_boto3_p50", r.get("p50_ms"))
        self.add("small_boto3_p99", r.get("p99_ms"))
        log(f"  2  {a.count} x {a.small_kib} KiB boto3 put_object @ {a.concurrency} threads, straight to RGW:"
            f" {fmt(rate)} uploads/s  p50 {fmt(r.get('p50_ms'))} ms  p99 {fmt(r.get('p99_ms'))} ms"
            f"  max {fmt(r.get('max_ms'))} ms  errors {r.get('errors')}")

    # ---- driver ------------------------------------------------------------------------
    @staticmethod
    def explore_args(spec: str) -> list[str]:
        """"8M:4" -> --s3-part-size 8M --s3-part-concurrency 4; a spec with "--" is taken as options."""
        if "--" in spec:
            return shlex.split(spec)
        size, _, conc = spec.partition(":")
        out: list[str] = []
        if size:
            out += ["--s3-part-size", size]
        if conc:
            out += ["--s3-part-concurrency", conc]
        return out

    @staticmethod
    def explore_key(spec: str) -> str:
        return "x_" + "".join(c if c.isalnum() else "_" for c in spec.replace(":", "x")).strip("_")

    def run(self) -> None:
        a = self.a
        self.ensure_bucket()
        # (name, step, part of the default set)
        steps = [
            ("boto3", lambda run: self.m_boto3(), True),
            ("ferry-tus", lambda run: self.m_ferry_tus(run), True),
            ("ferry-put", lambda run: self.m_ferry_put(run), True),
            ("small-disk", lambda run: self.m_small("disk"), True),
            ("small-s3pg", lambda run: self.m_small("s3pg"), True),
            ("small-nginx", lambda run: self.m_small("nginx"), True),
            ("small-boto3", lambda run: self.m_small_boto3(), True),
            ("small-s3sqlite", lambda run: self.m_small("s3sqlite"), False),
            ("small-diskpg", lambda run: self.m_small("diskpg"), False),
        ]
        for spec in self.explore:
            steps.append(("explore", lambda run, spec=spec: self.m_ferry_tus(
                run, key=self.explore_key(spec), extra=self.explore_args(spec), label=f"X {spec}"), True))
        only = set(a.only.split(",")) if a.only else None
        for i in range(1, a.runs + 1):
            log(f"== run {i}/{a.runs}  (budget left {self.budget.left():.0f}s)")
            for name, fn, default in steps:
                if (only and name not in only) or (not only and not default):
                    continue
                if self.budget.left() < 30:
                    self.note(f"run {i}: skipped {name} (time budget exhausted)")
                    continue
                if name not in ("small-disk", "small-diskpg") and not self.rgw_check(f"run {i} {name}"):
                    continue
                try:
                    fn(i)
                except ServerError as e:
                    self.note(f"{name}: {e}")
                except subprocess.TimeoutExpired as e:
                    self.note(f"{name}: timed out: {e}")
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # noqa: BLE001 - one failed step must not end the run
                    self.note(f"{name}: {type(e).__name__}: {e}")
        self.report()

    def report(self) -> None:
        a, s = self.a, self.samples
        log()
        log("== samples (median  [all samples])")
        for k, vals in s.items():
            log(f"  {k:28s} {fmt(self.med(k)):>10s}  [{', '.join(fmt(v) for v in vals)}]")

        rows = []

        def row(fig, unit, key, base=None, base_txt="", target="", verdict=None):
            m = self.med(key)
            if key not in s:
                return
            ratio = f"{100 * m / base:.1f} %" if (m is not None and base) else ""
            v = "" if verdict is None or m is None else ("PASS" if verdict(m) else "FAIL")
            rows.append((fig, f"{fmt(m)} {unit}" if m is not None else "n/a", base_txt, ratio, target, v))

        b3 = self.med("boto3_mibps")
        ex = f" [{a.ferry_args}]" if a.ferry_args else ""
        row(f"1a boto3 upload_file {a.size_mib} MiB", "MiB/s", "boto3_mibps", base_txt="(baseline)")
        row("1a boto3 client peak RSS", "MiB", "boto3_client_rss_mib", base_txt="(info)")
        row(f"1b ferry tus, 1 PATCH{ex}", "MiB/s", "ferry_tus_mibps", b3, f"boto3 {fmt(b3)} MiB/s", ">= 80 %",
            lambda m: b3 is not None and m >= 0.8 * b3)
        row("1b server peak RSS (VmHWM)", "MiB", "ferry_tus_hwm_mib")
        row("1b server peak spool", "MiB", "ferry_tus_spool_mib")
        row(f"1c ferry put{ex}", "MiB/s", "ferry_put_mibps", b3, f"boto3 {fmt(b3)} MiB/s", ">= 90 %",
            lambda m: b3 is not None and m >= 0.9 * b3)
        row("1c server peak RSS (VmHWM)", "MiB", "ferry_put_hwm_mib")
        row("1c server peak spool", "MiB", "ferry_put_spool_mib")
        for spec in self.explore:
            k = self.explore_key(spec)
            row(f"X {spec}", "MiB/s", f"{k}_mibps", b3, f"boto3 {fmt(b3)} MiB/s")
            row(f"X {spec} VmHWM", "MiB", f"{k}_hwm_mib")
            row(f"X {spec} peak spool", "MiB", f"{k}_spool_mib")
        d = self.med("small_disk_rate")
        one = self.med("small_s3pg_rate")
        n = len(self.node_ports)
        row(f"2 {a.count} x {a.small_kib} KiB: disk+SQLite 1 node", "uploads/s", "small_disk_rate",
            base_txt="(baseline)")
        row("2 S3+PG 1 node direct", "uploads/s", "small_s3pg_rate", d, f"disk {fmt(d)} /s")
        row(f"2 nginx + {n} nodes S3+PG", "uploads/s", "small_nginx_rate", d, f"disk {fmt(d)} /s")
        row(f"2 nginx + {n} nodes S3+PG vs 1 node", "uploads/s", "small_nginx_rate", one, f"S3+PG 1 node {fmt(one)} /s")
        row("2 boto3 PutObject straight to RGW", "uploads/s", "small_boto3_rate", base_txt="(RGW ceiling)")
        sb = self.med("small_boto3_rate")
        row("2 S3+PG 1 node vs RGW ceiling", "uploads/s", "small_s3pg_rate", sb, f"boto3 {fmt(sb)} /s", ">= 90 %",
            lambda m: sb is not None and m >= 0.9 * sb)
        row(f"2 nginx + {n} nodes vs RGW ceiling", "uploads/s", "small_nginx_rate", sb, f"boto3 {fmt(sb)} /s", ">= 80 %",
            lambda m: sb is not None and m >= 0.8 * sb)
        row("2 S3+SQLite 1 node direct", "uploads/s", "small_s3sqlite_rate", d, f"disk {fmt(d)} /s")
        row("2 disk+PG 1 node direct", "uploads/s", "small_diskpg_rate", d, f"disk {fmt(d)} /s")
        for v in [*SMALL_VARIANTS, "boto3"]:
            row(f"2 {v} latency p50 (p99)", "ms", f"small_{v}_p50", base_txt=f"p99 {fmt(self.med(f'small_{v}_p99'))} ms")

        hdr = ("figure", "median", "baseline", "ratio", "target", "")
        widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
        log()
        log(f"== summary: {a.runs} run(s), size {a.size_mib} MiB, ferry {a.ferry}{ex}")
        for r in [hdr] + rows:
            log("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        if self.osd_used_max:
            log(f"  (RGW's memstore OSD held at most {self.osd_used_max / MiB:.0f} MiB before an S3 step)")
        if self.notes:
            log()
            log("== observations")
            for note in self.notes:
                log(f"  - {note}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"args": vars(a), "samples": s, "notes": self.notes,
                           "medians": {k: self.med(k) for k in s}}, f, indent=2)
            log(f"\n(json written to {a.json})")


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--boto3-put":
        return boto3_put_main(*sys.argv[2:5])
    if len(sys.argv) == 7 and sys.argv[1] == "--boto3-small":
        return boto3_small_main(*sys.argv[2:7])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferry", required=True)
    ap.add_argument("--loadgen", required=True, help="compiled bench/loadgen.c")
    ap.add_argument("--workdir", required=True, help="scratch dir (data dirs and the test file live here)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--count", type=int, default=2000, help="uploads in the small-uploads test")
    ap.add_argument("--small-kib", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--client-timeout", type=int, default=60, help="loadgen socket timeout, seconds")
    ap.add_argument("--ferry-args", default="", help="extra `ferry serve` options for the S3 nodes, one string")
    ap.add_argument("--put-args", default="", help="extra `ferry put` options, one string")
    ap.add_argument("--explore", default="",
                    help="comma list of PARTSIZE:CONCURRENCY (e.g. 8M:2,16M:4), or a ';'-separated list of "
                         "`ferry serve` option strings; each adds a 1b-style sample per run (--only boto3,explore)")
    ap.add_argument("--postgres-url", default=os.environ.get("FERRY_TEST_POSTGRES_URL", ""))
    ap.add_argument("--nginx-port", type=int, default=0)
    ap.add_argument("--nginx-dir", default="", help="nginx.sh's DIR (its access.log shows the spread over nodes)")
    ap.add_argument("--node-ports", default="", help="comma list: the upstream ports nginx was started with")
    ap.add_argument("--rgw-conf", default="", help="RGW's ceph.conf: run radosgw-admin gc after deleting big objects")
    ap.add_argument("--budget", type=float, default=1800.0, help="seconds; later steps are skipped past it")
    ap.add_argument("--only", default="", help="comma list of: boto3,ferry-tus,ferry-put,small-disk,small-s3pg,"
                                               "small-nginx,small-boto3,explore; diagnostics: small-s3sqlite,small-diskpg")
    ap.add_argument("--json", default="", help="also write all samples to this file")
    a = ap.parse_args()
    return run_interruptibly(Bench(a))


if __name__ == "__main__":
    sys.exit(main())
