#!/usr/bin/env python3
"""Many-node test of Ferry: N stateless `ferry serve` nodes on one S3 bucket behind nginx.

Usage: python3 Tests/system/multinode_test.py --ferry PATH [--nodes 3] [--catalog URL]
           [--scale 1.0] [--scenario a ...] [--kills 10] [--race-rounds 4] [--profiles P,...]
           [--netem-seed 32] [--timeout 900] [--keep] [--seed N]

Needs an S3 endpoint in the environment (scripts/services/rgw.sh start DIR prints it):
FERRY_TEST_S3_ENDPOINT, FERRY_TEST_S3_ACCESS_KEY, FERRY_TEST_S3_SECRET_KEY (FERRY_TEST_S3_REGION
optional). Several nodes need a shared catalog: --catalog postgres://... (default: sqlite for one
node, $FERRY_TEST_POSTGRES_URL for more when it is set). Every node gets its own data dir and port,
the same bucket and a fresh random key prefix per run, --trust-forwarded-headers, --read-timeout 10s
and --lock-timeout 10s. nginx (scripts/services/nginx.sh) spreads requests round-robin over them.
--nodes defaults to 1. With several nodes, an upload created on one must first be visible on all
(the shared catalog), or no scenario runs.

Scenarios (all requests through nginx unless said otherwise):
  a  a 200 MiB upload: POST, then 8 MiB PATCHes, each on its own connection (nginx's access log
     shows which node took each); every node reports the full offset; GET's SHA-256 matches.
  b  kill -9 mid-body: a PATCH streamed at 8 MiB/s straight to one node, which is kill -9'ed while
     the body is in flight and restarted on the same port and data dir; meanwhile the client
     resumes through nginx (HEAD: acknowledged <= offset <= bytes sent; PATCH the rest).
     --kills uploads of 20-80 MiB (two kills for those over 50 MiB); "acknowledged bytes lost"
     (a HEAD below an offset any response returned) must be 0; every GET matches.
  c  two clients race on one upload through two nodes (direct ports): A streams slowly, then B
     either PATCHes from the same offset or HEADs first and PATCHes from there. The later one
     wins: A is stopped (409 ERR_REQUEST_SUPERSEDED or cut off), B's PATCH gets 204 or, when A
     saved bytes past the offset B sent, 409 ERR_OFFSET_MISMATCH; offsets never go back, the
     final SHA-256 matches.
  d  100 concurrent 5 MiB uploads (half creation-with-upload, half POST + PATCH); all GET back
     identical; reports uploads/s.
  e  `ferry put FILE http://127.0.0.1:NGINX/files/` of 64 MiB; GET matches.
  f  (with 2+ nodes) the node receiving a PATCH is SIGSTOPped (a long
     pause, or a node cut off from PostgreSQL); another node answers HEAD once the lease lapses and
     takes the rest; the frozen node, SIGCONTed, must answer 409 ERR_REQUEST_SUPERSEDED or cut the
     connection, and must not write: every node reports the length, GET matches.
  g  the mobile client completes its emulator profiles against the cluster: for each of cliff,
     vacuum, handover, middlebox, lte-driving, 3g, blackhole, per-flow (--profiles picks some), a
     `ferry netem --profile P --seed 32 --rate-scale 4 --rates-only` in front of nginx and
     `ferry put FILE http://127.0.0.1:NETEM/files/ --network cellular` of 12-96 MiB (each ideally
     7-30 s at that scale; G_PROFILES has the sizes and why); ferry put must exit 0 within
     3 x ideal + 60 s (as bench/client_bench.py) and its upload URL (the last line of stdout) must
     GET back through nginx, not netem, with the file's SHA-256. Reports seconds, MiB/s and the
     requests per node (nginx round-robins the client's requests over the nodes).
  i  IETF Resumable Uploads across the cluster (Tests/system/multinode_rufh.py): a URLSession-style
     creation through nginx gets its 104 through the proxy, every node is killed -9 mid-body
     and restarted, HEAD and the resuming PATCH go through nginx, the file matches; then
     `ferry put --protocol rufh` through nginx.
--scale multiplies every size (and the upload count of d) for quick local runs.

Every process it starts (nodes, nginx, ferry put, ferry netem) is stopped by PID at the end; everything is
bounded in time (--timeout overall, socket timeouts per request). Prints "N passed, M failed".
"""
import argparse
import collections
import hashlib
import http.client
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from urllib.parse import urlsplit

import support
from multinode_rufh import scenario_i
from support import CaseError, MiB, Procs, check, free_port, random_file, results, sha256, skip, tail

KiB = 1024
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
TRANSIENT = {423, 502, 503, 504}  # locked, node down behind nginx, shutting down, proxy timeout
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NGINX_SH = os.path.join(REPO, "scripts", "services", "nginx.sh")
SLOW_RATE = 8 * MiB  # bytes/s of a PATCH whose node is killed mid-body (scenario b)
RACE_RATE = 4 * MiB  # bytes/s of the earlier of two racing PATCHes (scenario c)

STOP = threading.Event()  # set by the watchdog when the global timeout passes
DEADLINE = [math.inf]


def remaining():
    return DEADLINE[0] - time.monotonic()


def out_of_time():
    return STOP.is_set() or remaining() <= 0


def mib(n):
    return f"{n / MiB:.1f} MiB"


# --- content ---------------------------------------------------------------------------------

class Blob:
    """The bytes of one upload: a random file (large) or bytes in memory (small)."""

    def __init__(self, size, path=None, data=None):
        self.size, self.path, self.data, self.fd = size, path, data, None
        if data is None:
            random_file(path, size)
            self.fd = os.open(path, os.O_RDONLY)
            self.digest = sha256(path)
        else:
            self.digest = hashlib.sha256(data).hexdigest()

    def read(self, start, end):
        if self.data is not None:
            return self.data[start:end]
        return os.pread(self.fd, end - start, start)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.path and os.path.exists(self.path):
            os.remove(self.path)


class StartFailed(Exception):
    """The nodes or nginx did not start (already reported)."""


class Tracked:
    """An upload's URL path and the highest offset any response acknowledged for it. A HEAD
    below that is a loss of acknowledged bytes."""

    def __init__(self, blob):
        self.blob, self.path, self.max_acked = blob, None, 0
        self.losses = []
        self.lock = threading.Lock()

    def ack(self, offset, who):
        with self.lock:
            if offset < self.max_acked:
                self.losses.append(f"{who}: offset {offset} < acknowledged {self.max_acked}")
                print(f"      LOSS {self.path}: {who} reports {offset} after {self.max_acked} was acknowledged",
                      flush=True)
            self.max_acked = max(self.max_acked, offset)


# --- HTTP ------------------------------------------------------------------------------------

def request(port, method, path, headers=None, body=None, timeout=60):
    """One request on a fresh connection; returns (status, lower-cased headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={**TUS, **(headers or {})})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def describe(status, headers, data):
    code = headers.get("ferry-error") or data[:120].decode("utf-8", "replace").strip()
    return f"{status} {code}".strip()


def persist(port, method, path, headers=None, body=None, ok=(200, 201, 204), patience=90, what=None):
    """A request repeated while it fails in a way a node restart explains (connection refused or
    reset, 423/502/503/504); returns the first other answer, or raises CaseError."""
    give_up = time.monotonic() + min(patience, max(5.0, remaining()))
    last = None
    while True:
        try:
            status, h, data = request(port, method, path, headers, body)
            if status in ok or status not in TRANSIENT:
                return status, h, data
            last = describe(status, h, data)
        except (OSError, http.client.HTTPException) as e:
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() > give_up or STOP.is_set():
            raise CaseError(f"{what or method} {path} kept failing for {patience}s; last: {last}")
        time.sleep(0.1)


def head(port, up, who, patience=90):
    """HEAD (retried through restarts); checks length and feeds the acknowledgement tracker."""
    status, h, data = persist(port, "HEAD", up.path, patience=patience, what=f"HEAD ({who})")
    if status != 200 or "upload-offset" not in h:
        raise CaseError(f"HEAD ({who}) answered {describe(status, h, data)}")
    offset = int(h["upload-offset"])
    if h.get("upload-length") != str(up.blob.size):
        raise CaseError(f"HEAD ({who}): Upload-Length {h.get('upload-length')!r} != {up.blob.size}")
    up.ack(offset, f"HEAD ({who})")
    return offset


def create(port, up, with_body=False, collection="/files/"):
    headers = {"Upload-Length": str(up.blob.size)}
    body = None
    if with_body:
        headers["Content-Type"] = OCTETS
        body = up.blob.read(0, up.blob.size)
    status, h, data = persist(port, "POST", collection, headers, body, what="POST")
    if status != 201 or "location" not in h:
        raise CaseError(f"POST answered {describe(status, h, data)}")
    up.location = h["location"]
    up.path = urlsplit(h["location"]).path
    offset = int(h.get("upload-offset", "0"))
    up.ack(offset, "POST")
    return offset


def patch(port, up, start, end, timeout=120):
    """One PATCH of [start, end) sent in one go; returns (status, headers, data)."""
    headers = {"Content-Type": OCTETS, "Upload-Offset": str(start), "Content-Length": str(end - start)}
    status, h, data = request(port, "PATCH", up.path, headers, up.blob.read(start, end), timeout=timeout)
    if status == 204:
        up.ack(int(h["upload-offset"]), "PATCH 204")
    return status, h, data


def finish(port, up, who, piece=None, patience=120):
    """HEAD and PATCH until the upload is complete (the client loop of a tus client); returns the
    failed attempts on the way (status and error code, or exception name)."""
    give_up = time.monotonic() + min(patience, max(5.0, remaining()))
    failures = []
    while True:
        offset = head(port, up, who)
        if offset == up.blob.size:
            return failures
        end = up.blob.size if piece is None else min(up.blob.size, offset + piece)
        try:
            status, h, data = patch(port, up, offset, end)
            if status == 204:
                if int(h["upload-offset"]) != end:
                    raise CaseError(f"PATCH [{offset}, {end}) answered 204 with Upload-Offset {h['upload-offset']}")
                continue
            failures.append(describe(status, h, data))
            if status not in TRANSIENT and status != 409:
                raise CaseError(f"PATCH ({who}) answered {describe(status, h, data)}")
        except (OSError, http.client.HTTPException) as e:
            failures.append(f"{type(e).__name__}")
        if time.monotonic() > give_up or STOP.is_set():
            raise CaseError(f"{who}: upload not complete after {patience}s: {failures[-5:]}")
        time.sleep(0.1)


def get_digest(port, path, timeout=120):
    """GETs an upload; returns (status, sha256 hex, bytes, seconds)."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=TUS)
        resp = conn.getresponse()
        h, n = hashlib.sha256(), 0
        while True:
            block = resp.read(MiB)
            if not block:
                break
            h.update(block)
            n += len(block)
        return resp.status, h.hexdigest(), n, time.monotonic() - t0
    finally:
        conn.close()


def verify(port, up, what):
    status, digest, n, secs = get_digest(port, up.path)
    return check(status == 200 and digest == up.blob.digest and n == up.blob.size,
                 f"{what}: GET through nginx matches the file's SHA-256",
                 f"GET {status}, {n}/{up.blob.size} bytes, sha256 {digest[:16]} vs {up.blob.digest[:16]}"), secs


def delete(port, up):
    try:
        request(port, "DELETE", up.path, timeout=30)
    except (OSError, http.client.HTTPException):
        pass


class Stream:
    """One PATCH whose body is streamed in a thread, optionally at a limited rate; `sent` counts
    the bytes handed to the socket (an upper bound of what the server can have received)."""

    def __init__(self, port, up, start, end, rate=None, piece=256 * KiB, timeout=60):
        self.port, self.up, self.start_offset, self.end = port, up, start, end
        self.rate, self.piece, self.timeout = rate, piece, timeout
        self.sent = 0
        self.status, self.headers, self.data, self.error = None, {}, b"", None
        self.began = self.ended = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.began = time.monotonic()
        self.thread.start()
        return self

    def _run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.putrequest("PATCH", self.up.path, skip_accept_encoding=True)
            for k, v in {**TUS, "Content-Type": OCTETS, "Upload-Offset": str(self.start_offset),
                         "Content-Length": str(self.end - self.start_offset)}.items():
                conn.putheader(k, v)
            conn.endheaders()
            t0, pos = time.monotonic(), self.start_offset
            while pos < self.end:
                if STOP.is_set():
                    raise TimeoutError("global timeout")
                n = min(self.piece, self.end - pos)
                conn.send(self.up.blob.read(pos, pos + n))
                pos += n
                self.sent += n
                if self.rate:
                    delay = t0 + self.sent / self.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            self._response(conn)
        except (OSError, http.client.HTTPException) as e:
            self.error = f"{type(e).__name__}: {e}"
            try:  # the server may have answered before it stopped reading
                self._response(conn)
            except (OSError, http.client.HTTPException, ValueError):
                pass
        finally:
            conn.close()
            self.ended = time.monotonic()

    def _response(self, conn):
        resp = conn.getresponse()
        self.data = resp.read()
        self.headers = {k.lower(): v for k, v in resp.getheaders()}
        self.status = resp.status
        if self.status == 204 and "upload-offset" in self.headers:
            self.up.ack(int(self.headers["upload-offset"]), "PATCH 204")

    def wait(self, timeout=90):
        self.thread.join(max(0.1, min(timeout, remaining() + 30)))
        return not self.thread.is_alive()

    @property
    def code(self):
        return self.headers.get("ferry-error", "")

    def outcome(self):
        if self.thread.is_alive():
            return "still running"
        parts = []
        if self.status is not None:
            parts.append(f"{self.status} {self.code}".strip())
            if "upload-offset" in self.headers:
                parts.append(f"Upload-Offset {self.headers['upload-offset']}")
        if self.error:
            parts.append(f"cut off ({self.error})")
        return ", ".join(parts) + f" after {mib(self.sent)} sent"


# --- processes -------------------------------------------------------------------------------

class Node:
    """One `ferry serve` node; restarted on the same port and data dir after a kill."""

    def __init__(self, ctx, index):
        self.ctx, self.index = ctx, index
        self.port = free_port()
        self.data_dir = os.path.join(ctx.tmp, f"node{index}")
        self.log_path = os.path.join(ctx.tmp, f"node{index}.log")
        os.makedirs(self.data_dir, exist_ok=True)
        self.proc = None
        self.starts = 0

    def command(self):
        a = self.ctx.args
        cmd = [a.ferry, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", self.data_dir,
               "--storage", f"s3://{self.ctx.bucket}/{self.ctx.prefix}", "--s3-endpoint", self.ctx.s3_endpoint,
               "--s3-create-bucket", "--catalog", a.catalog, "--trust-forwarded-headers",
               "--read-timeout", "10s", "--lock-timeout", "10s", "--log-level", "info", "--config", self.ctx.config]
        if self.ctx.s3_region:
            cmd += ["--s3-region", self.ctx.s3_region]
        return cmd

    def healthy(self):
        try:
            return request(self.port, "GET", "/healthz", timeout=2)[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    def start(self, timeout=60):
        """Spawns the node and waits for /healthz 200; retries a start that exits (e.g. bind)."""
        for attempt in range(3):
            with open(self.log_path, "ab") as log:
                log.write(f"=== start {self.starts + 1} at {time.strftime('%H:%M:%S')}\n".encode())
                log.flush()
                self.proc = self.ctx.procs.spawn(self.command(), stdout=log, stderr=subprocess.STDOUT)
            self.starts += 1
            t0 = time.monotonic()
            while time.monotonic() - t0 < timeout and self.proc.poll() is None and not STOP.is_set():
                if self.healthy():
                    return time.monotonic() - t0
                time.sleep(0.05)
            code = self.proc.poll()
            self.ctx.procs.kill(self.proc)
            print(f"      node {self.index} (port {self.port}) not ready, attempt {attempt + 1}, exit {code}",
                  flush=True)
            if STOP.is_set():
                raise CaseError(f"node {self.index} not restarted: global timeout")
            time.sleep(1)
        raise CaseError(f"node {self.index} did not start; log:\n      {tail(self.log(), 15)}")

    def kill9(self):
        if self.proc is not None:
            self.ctx.procs.kill(self.proc, signal.SIGKILL)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class Proxy:
    """nginx in front of the nodes, through scripts/services/nginx.sh."""

    def __init__(self, ctx):
        self.dir = os.path.join(ctx.tmp, "nginx")
        self.port = free_port()
        self.pid = None

    def start(self, ports):
        out = subprocess.run(["bash", NGINX_SH, "start", self.dir, str(self.port)] + [str(p) for p in ports],
                             capture_output=True, text=True, timeout=120)
        try:
            with open(os.path.join(self.dir, "nginx.pid")) as f:
                self.pid = int(f.read().strip())
        except (OSError, ValueError):
            pass
        m = re.search(r"export FERRY_TEST_NGINX_URL=(\S+)", out.stdout)
        if out.returncode != 0 or not m:
            raise CaseError(f"nginx.sh start failed ({out.returncode}):\n      {tail(out.stderr)}")
        self.url = m.group(1)
        print(f"      nginx {self.pid} at {self.url} -> {', '.join(str(p) for p in ports)}", flush=True)

    def stop(self, keep_dir):
        if keep_dir and os.path.isdir(self.dir):
            shutil.copytree(self.dir, self.dir + "-kept", ignore=shutil.ignore_patterns("tmp"), dirs_exist_ok=True)
        try:
            subprocess.run(["bash", NGINX_SH, "stop", self.dir], capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            pass
        if self.pid and os.path.exists(f"/proc/{self.pid}"):
            try:
                with open(f"/proc/{self.pid}/cmdline", "rb") as f:
                    if b"nginx" in f.read():
                        os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass

    def upstreams(self, method, path_prefix):
        """The node (address) that answered each `METHOD path_prefix...` request, from the access log."""
        found = []
        try:
            with open(os.path.join(self.dir, "access.log")) as f:
                for line in f:
                    m = re.search(r'"(\S+) (\S+) HTTP/[\d.]+" .* upstream=(.*?) upstream_status=', line)
                    if m and m.group(1) == method and m.group(2).startswith(path_prefix):
                        found.append(m.group(3).split(", ")[-1])  # the last node tried answered
        except OSError:
            pass
        return found

    def error_log(self):
        try:
            with open(os.path.join(self.dir, "error.log")) as f:
                return f.read()
        except OSError:
            return ""


# --- scenarios -------------------------------------------------------------------------------

def scaled(ctx, n, least=256 * KiB):
    return max(least, int(n * ctx.args.scale))


def scenario_a(ctx):
    """a 200 MiB upload in 8 MiB PATCHes through nginx, spread over the nodes."""
    size, chunk = scaled(ctx, 200 * MiB), 8 * MiB
    print(f"== a: {mib(size)} upload, {chunk // MiB} MiB PATCHes each on its own connection through nginx", flush=True)
    blob = Blob(size, path=os.path.join(ctx.tmp, "a.bin"))
    up = Tracked(blob)
    try:
        t0 = time.monotonic()
        create(ctx.proxy.port, up)
        check(up.location.startswith(ctx.proxy.url + "/files/"),
              "a: Location names the proxy (X-Forwarded-Host/-Proto trusted)", up.location)
        offset, retries, failures = 0, 0, []
        while offset < size and not out_of_time():
            end = min(size, offset + chunk)
            try:
                status, h, data = patch(ctx.proxy.port, up, offset, end)
                if status == 204 and int(h["upload-offset"]) == end:
                    offset = end
                    continue
                failures.append(f"PATCH at {offset}: {describe(status, h, data)}")
            except (OSError, http.client.HTTPException) as e:
                failures.append(f"PATCH at {offset}: {type(e).__name__}: {e}")
            retries += 1
            if retries > 5:
                break
            offset = head(ctx.proxy.port, up, "retry")
        secs = time.monotonic() - t0
        check(offset == size and retries == 0, f"a: {math.ceil(size / chunk)} PATCHes of {chunk // MiB} MiB all answered 204",
              "; ".join(failures[:5]))
        print(f"      upload {secs:.1f}s, {size / MiB / secs:.1f} MiB/s", flush=True)
        final = head(ctx.proxy.port, up, "final")
        check(final == size, f"a: HEAD offset {final} == length {size}")
        spread = collections.Counter(ctx.node_names.get(u, u) for u in ctx.proxy.upstreams("PATCH", up.path))
        print(f"      PATCHes per node: {dict(spread)}", flush=True)
        want = min(len(ctx.nodes), math.ceil(size / chunk))
        check(len(spread) == want, f"a: nginx spread the PATCHes over {want} node(s)", f"{dict(spread)}")
        offsets = {}
        for node in ctx.nodes:
            try:
                offsets[node.index] = head(node.port, up, f"node {node.index}")
            except CaseError as e:
                offsets[node.index] = str(e)
        check(all(v == size for v in offsets.values()), "a: every node reports the full offset", f"{offsets}")
        ok, get_secs = verify(ctx.proxy.port, up, "a")
        print(f"      GET {get_secs:.1f}s, {size / MiB / get_secs:.1f} MiB/s", flush=True)
        check(not up.losses, "a: no acknowledged bytes lost", "; ".join(up.losses[:3]))
        delete(ctx.proxy.port, up)
    finally:
        blob.close()


def join_restarts(restarters, secs):
    """Waits for the restarts in flight; records their times; raises if one failed."""
    errors = []
    while restarters:
        thread, holder = restarters.pop()
        thread.join(max(1.0, remaining() + 30))
        if "error" in holder:
            errors.append(holder["error"])
        elif "secs" in holder:
            secs.append(holder["secs"])
    if errors:
        raise CaseError("; ".join(errors))


def scenario_b(ctx):
    """kill -9 of the node receiving a PATCH mid-body; resume through nginx while it restarts."""
    rng = random.Random(ctx.args.seed * 31 + 2)
    n_uploads = ctx.args.kills
    print(f"== b: kill -9 mid-body, {n_uploads} uploads of {mib(scaled(ctx, 20 * MiB))}-{mib(scaled(ctx, 80 * MiB))}, "
          f"PATCH at {SLOW_RATE // MiB} MiB/s straight to the node that is killed", flush=True)
    kills = mid_body = 0
    lost, bad_heads, bad_statuses, mismatches, incomplete = [], [], [], [], []
    restart_secs, resume_secs = [], []
    for i in range(n_uploads):
        if out_of_time():
            incomplete.append(f"upload {i}: not started before the deadline")
            continue
        size = scaled(ctx, rng.randint(20 * MiB, 80 * MiB))
        blob = Blob(size, path=os.path.join(ctx.tmp, f"b{i}.bin"))
        up = Tracked(blob)
        restarters = []
        try:
            create(ctx.proxy.port, up)
            for k in range(2 if size > scaled(ctx, 50 * MiB) else 1):
                join_restarts(restarters, restart_secs)  # one node down at a time
                victim = ctx.nodes[kills % len(ctx.nodes)]
                start = head(ctx.proxy.port, up, "before the PATCH")
                floor = up.max_acked
                stream = Stream(victim.port, up, start, size, rate=SLOW_RATE).start()
                # kill once a random share of the body is sent (at least 1 MiB, before its end)
                body = size - start
                threshold = min(body - 256 * KiB, max(MiB, int(body * rng.uniform(0.15, 0.6))))
                while stream.sent < threshold and stream.thread.is_alive() and not out_of_time():
                    time.sleep(0.005)
                in_flight = stream.thread.is_alive() and stream.sent < body
                victim.kill9()
                t_kill = time.monotonic()
                kills += 1
                mid_body += in_flight
                holder = {}

                def restart(node=victim, holder=holder):
                    # with several nodes the others serve the resume while this one is down
                    if len(ctx.nodes) > 1:
                        time.sleep(1.0)
                    try:
                        holder["secs"] = node.start()
                    except CaseError as e:
                        holder["error"] = str(e)

                r = threading.Thread(target=restart, daemon=True)
                r.start()
                restarters.append((r, holder))
                stream.wait(30)
                if stream.status == 204:
                    bad_statuses.append(f"upload {i}: PATCH answered 204 though its node was killed mid-body")
                # meanwhile, through nginx: HEAD, then the rest from there
                offset = head(ctx.proxy.port, up, f"after kill {kills}")
                if not floor <= offset <= start + stream.sent:
                    bad_heads.append(f"upload {i} kill {kills}: HEAD {offset} outside [{floor}, {start + stream.sent}]")
                resume_secs.append(time.monotonic() - t_kill)
                served = ctx.proxy.upstreams("HEAD", up.path)[-1:] or ["?"]
                print(f"      kill {kills}: node {victim.index} at {mib(stream.sent)} of {mib(body)} sent "
                      f"({'mid-body' if in_flight else 'NOT mid-body'}); PATCH: {stream.outcome()}; "
                      f"HEAD through nginx ({ctx.node_names.get(served[0], served[0])}) "
                      f"{time.monotonic() - t_kill:.2f}s later: {offset} "
                      f"(acknowledged before: {floor}, sent up to {start + stream.sent})", flush=True)
            failures = finish(ctx.proxy.port, up, "resume through nginx")
            failures = [f for f in failures if not f.startswith("502")]  # nginx while the only node restarts
            if failures:
                print(f"      upload {i}: resumed after {failures}", flush=True)
            join_restarts(restarters, restart_secs)
            status, digest, n, _ = get_digest(ctx.proxy.port, up.path)
            if status != 200 or digest != blob.digest:
                mismatches.append(f"upload {i} ({size} bytes): GET {status}, {n} bytes, sha256 {digest[:16]}")
            delete(ctx.proxy.port, up)
        except CaseError as e:
            incomplete.append(f"upload {i}: {e}")
            try:
                join_restarts(restarters, restart_secs)
            except CaseError as e2:
                incomplete.append(f"upload {i}: {e2}")
        finally:
            lost += up.losses
            blob.close()
        for node in ctx.nodes:  # a failed restart leaves a node down: bring it back for what follows
            if not node.healthy() and not out_of_time():
                node.start()
    if restart_secs:
        print(f"      restart to healthy: median {sorted(restart_secs)[len(restart_secs) // 2]:.2f}s, "
              f"max {max(restart_secs):.2f}s; kill to resumed HEAD: median "
              f"{sorted(resume_secs)[len(resume_secs) // 2]:.2f}s, max {max(resume_secs):.2f}s", flush=True)
    print(f"      acknowledged bytes lost: {len(lost)}", flush=True)
    want = n_uploads
    check(kills >= want and mid_body == kills, f"b: {kills} kills -9, {mid_body} with the body in flight (want >= {want})")
    check(not lost, "b: acknowledged bytes lost == 0", "; ".join(lost[:5]))
    check(not bad_heads, "b: every HEAD after a kill is >= the acknowledged offset and <= the bytes sent",
          "; ".join(bad_heads[:5]))
    check(not bad_statuses, "b: no killed PATCH was acknowledged", "; ".join(bad_statuses[:5]))
    check(not incomplete, f"b: all {n_uploads} uploads completed after the kills", "\n      ".join(incomplete[:5]))
    check(not mismatches, "b: every GET matches its file's SHA-256", "; ".join(mismatches[:5]))


def scenario_c(ctx):
    """Two clients race PATCHes on one upload through two nodes; the later one wins."""
    rounds = ctx.args.race_rounds
    # A streams slowly enough that it is still sending when B comes, and that what a stopped
    # request still reads (ferry drains it for up to 2 s) cannot complete its body: every
    # round's segment holds the lead, 2 s of A, and a margin.
    rate = max(MiB, int(RACE_RATE * min(1.0, ctx.args.scale)))
    size = max(scaled(ctx, 64 * MiB), rounds * (2 * MiB + 3 * rate))
    nodes = ctx.nodes
    print(f"== c: {rounds} races on one {mib(size)} upload, A at {mib(rate)}/s vs B "
          f"({'nodes differ' if len(nodes) > 1 else 'one node: the local lock'})", flush=True)
    blob = Blob(size, path=os.path.join(ctx.tmp, "c.bin"))
    up = Tracked(blob)
    problems, takeovers = [], []
    try:
        create(ctx.proxy.port, up)
        for r in range(rounds):
            if out_of_time():
                problems.append(f"round {r}: not run before the deadline")
                break
            a_node, b_node = nodes[r % len(nodes)], nodes[(r + 1) % len(nodes)]
            seg_end = size if r == rounds - 1 else (r + 1) * size // rounds
            x = head(ctx.proxy.port, up, f"round {r} start")
            if x >= seg_end:
                continue
            variant = "same offset" if r % 2 == 0 else "HEAD first"
            a = Stream(a_node.port, up, x, size, rate=rate).start()
            lead = min(max(256 * KiB, (seg_end - x) // 8), 2 * MiB)
            while a.sent < lead and a.thread.is_alive() and not out_of_time():
                time.sleep(0.005)
            if not a.thread.is_alive():
                problems.append(f"round {r}: A ended before B started: {a.outcome()}")
                continue
            t_b = time.monotonic()
            if variant == "same offset":
                b = Stream(b_node.port, up, x, seg_end).start()
                b.wait(60)
                a.wait(60)
                b_ok = b.status == 204 or (b.status == 409 and b.code == "ERR_OFFSET_MISMATCH")
                if not b_ok:
                    problems.append(f"round {r} ({variant}): B answered {b.outcome()}")
                if b.status == 409 and a.status == 409 and a.code == "ERR_OFFSET_MISMATCH":
                    problems.append(f"round {r}: both refused with mismatch")
                b_desc = b.outcome()
            else:
                status, h, data = persist(b_node.port, "HEAD", up.path, what="B's HEAD")
                head_secs = time.monotonic() - t_b
                sent_then = a.sent
                if status != 200:
                    problems.append(f"round {r} ({variant}): B's HEAD answered {describe(status, h, data)}")
                    a.wait(60)
                    continue
                y = int(h["upload-offset"])
                up.ack(y, "B's HEAD")
                if not x <= y <= x + sent_then:
                    problems.append(f"round {r}: B's HEAD {y} outside [{x}, {x + sent_then}]")
                b = Stream(b_node.port, up, y, seg_end).start() if y < seg_end else None
                if b:
                    b.wait(60)
                    if b.status != 204 or int(b.headers.get("upload-offset", -1)) != seg_end:
                        problems.append(f"round {r} ({variant}): B's PATCH from {y} answered {b.outcome()}")
                a.wait(60)
                b_desc = f"HEAD {y} after {head_secs:.2f}s, PATCH " + (b.outcome() if b else "not needed")
            # A was first: it must have been stopped, not acknowledged
            if a.status == 204:
                problems.append(f"round {r} ({variant}): A was acknowledged although B came later: {a.outcome()}")
            elif a.status not in (None, 409) or (a.status == 409 and a.code != "ERR_REQUEST_SUPERSEDED"):
                problems.append(f"round {r} ({variant}): A ended with {a.outcome()}")
            if a.ended:
                takeovers.append(a.ended - t_b)
            # offsets never go back, also once both requests are over
            z = head(ctx.proxy.port, up, f"round {r} after both")
            print(f"      round {r} ({variant}) A@node{a_node.index} from {x}: {a.outcome()}; "
                  f"B@node{b_node.index}: {b_desc}; HEAD after: {z}", flush=True)
            if z < seg_end:  # B finishes its segment (after a mismatch it re-HEADs, as a client does)
                while True:
                    off = head(b_node.port, up, f"round {r} B resumes")
                    if off >= seg_end:
                        break
                    status, h, data = patch(b_node.port, up, off, seg_end)
                    if status != 204:
                        problems.append(f"round {r}: B's resume PATCH from {off} answered {describe(status, h, data)}")
                        break
        final = head(ctx.proxy.port, up, "final")
        check(final == size, f"c: HEAD after the races == length ({final} of {size})")
        check(not problems, f"c: {rounds} races: A stopped, B took over, no unexpected answer",
              "\n      ".join(problems[:6]))
        if takeovers:
            print(f"      B's arrival to A's end: median {sorted(takeovers)[len(takeovers) // 2]:.2f}s, "
                  f"max {max(takeovers):.2f}s", flush=True)
        check(not up.losses, "c: offsets never went back (no acknowledged bytes lost)", "; ".join(up.losses[:3]))
        if final == size:
            verify(ctx.proxy.port, up, "c")
        delete(ctx.proxy.port, up)
    finally:
        blob.close()


def scenario_d(ctx):
    """Concurrent 5 MiB uploads through nginx."""
    count = max(4, int(round(100 * min(1.0, ctx.args.scale)))) if ctx.args.scale < 1 else 100
    size = scaled(ctx, 5 * MiB, least=64 * KiB) if ctx.args.scale < 1 else 5 * MiB
    print(f"== d: {count} concurrent uploads of {mib(size)} through nginx "
          "(even: creation-with-upload, odd: POST + PATCH)", flush=True)
    ups = [None] * count
    errors = [None] * count
    retried = collections.Counter()
    barrier = threading.Barrier(count + 1)

    def one(i):
        try:
            data = random.Random(ctx.args.seed * 1009 + i).randbytes(size)
            up = Tracked(Blob(size, data=data))
            ups[i] = up
            barrier.wait(60)
            offset = create(ctx.proxy.port, up, with_body=(i % 2 == 0))
            if offset != size:
                if i % 2 == 0:
                    retried["creation-with-upload stored less than the body"] += 1
                status, h, d = patch(ctx.proxy.port, up, offset, size)
                if status != 204:
                    retried[describe(status, h, d)] += 1
                    finish(ctx.proxy.port, up, f"upload {i}")
            up.blob.data = None  # keep the digest only
        except Exception as e:  # reported below
            errors[i] = f"{type(e).__name__}: {e}"
            try:
                barrier.abort()
            except threading.BrokenBarrierError:
                pass

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    try:
        barrier.wait(120)
    except threading.BrokenBarrierError:
        pass
    t0 = time.monotonic()
    for t in threads:
        t.join(max(1.0, remaining() + 30))
    secs = time.monotonic() - t0
    done = sum(1 for i in range(count) if errors[i] is None and ups[i] and ups[i].max_acked == size)
    print(f"      {done}/{count} uploads in {secs:.2f}s: {done / secs:.1f} uploads/s, "
          f"{done * size / MiB / secs:.1f} MiB/s", flush=True)
    if retried:
        print(f"      non-204 answers on the way: {dict(retried)}", flush=True)
    spread = collections.Counter(ctx.node_names.get(u, u) for u in ctx.proxy.upstreams("POST", "/files/")[-count:])
    print(f"      POSTs per node: {dict(spread)}", flush=True)
    if len(ctx.nodes) > 1:
        check(len(spread) == len(ctx.nodes), f"d: nginx spread the POSTs over all {len(ctx.nodes)} nodes", f"{dict(spread)}")
    check(done == count, f"d: all {count} concurrent uploads acknowledged complete",
          "; ".join(e for e in errors if e)[:800])
    bad, lock = [], threading.Lock()

    def verify_some(batch):
        for up in batch:
            try:
                status, digest, n, _ = get_digest(ctx.proxy.port, up.path)
                if status != 200 or digest != up.blob.digest:
                    with lock:
                        bad.append(f"{up.path}: GET {status}, {n} bytes")
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    bad.append(f"{up.path}: {type(e).__name__}: {e}")
            delete(ctx.proxy.port, up)

    created = [u for u in ups if u and u.path]
    workers = [threading.Thread(target=verify_some, args=(created[k::8],), daemon=True) for k in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(max(1.0, remaining() + 30))
    check(not bad and len(created) == count, f"d: all {count} GETs match their SHA-256", "; ".join(bad[:5]))
    check(not any(u.losses for u in created), "d: no acknowledged bytes lost")


def scenario_e(ctx):
    """`ferry put` through nginx."""
    size = scaled(ctx, 64 * MiB)
    print(f"== e: ferry put of {mib(size)} through nginx", flush=True)
    blob = Blob(size, path=os.path.join(ctx.tmp, "e.bin"))
    try:
        state = os.path.join(ctx.tmp, "put-state")
        out_path, err_path = os.path.join(ctx.tmp, "put.out"), os.path.join(ctx.tmp, "put.err")
        t0 = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = ctx.procs.spawn([ctx.args.ferry, "put", blob.path, ctx.proxy.url + "/files/", "--state-dir", state,
                                    "--deadline", "3m"], stdout=out, stderr=err)
        try:
            proc.wait(timeout=max(5.0, min(200, remaining())))
        except subprocess.TimeoutExpired:
            ctx.procs.kill(proc)
        secs = time.monotonic() - t0
        stdout = open(out_path, "rb").read().decode("utf-8", "replace")
        stderr = open(err_path, "rb").read().decode("utf-8", "replace")
        lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
        url = lines[-1] if lines else ""
        if not check(proc.returncode == 0 and url.startswith(ctx.proxy.url + "/files/"),
                     "e: ferry put exits 0 and prints an upload URL on the proxy",
                     f"exit {proc.returncode}, last line {url!r}\n      {tail(stderr, 10)}"):
            return
        print(f"      ferry put {secs:.1f}s, {size / MiB / secs:.1f} MiB/s", flush=True)
        path = urlsplit(url).path
        status, digest, n, _ = get_digest(ctx.proxy.port, path)
        check(status == 200 and digest == blob.digest, "e: GET through nginx matches the file's SHA-256",
              f"GET {status}, {n}/{size} bytes")
        try:
            request(ctx.proxy.port, "DELETE", path, timeout=30)
        except (OSError, http.client.HTTPException):
            pass
    finally:
        blob.close()


def shared_catalog(ctx):
    """An upload created on the first node must be known, at offset 0, to every node."""
    if len(ctx.nodes) < 2:
        return True
    up = Tracked(Blob(1, data=b"x"))
    create(ctx.nodes[0].port, up)
    seen = {}
    for node in ctx.nodes:
        try:
            status, h, _ = request(node.port, "HEAD", up.path, timeout=30)
            seen[node.index] = f"{status} offset {h.get('upload-offset')}"
        except (OSError, http.client.HTTPException) as e:
            seen[node.index] = f"{type(e).__name__}"
    delete(ctx.nodes[0].port, up)
    return check(all(v == "200 offset 0" for v in seen.values()),
                 f"every node knows an upload created on node 0 (shared catalog)",
                 f"HEAD per node: {seen} — does `ferry serve --catalog {ctx.args.catalog.split(':')[0]}://...` "
                 "use the shared catalog?")


def scenario_f(ctx):
    """A frozen holder (SIGSTOP, as a long pause or a node cut off from PostgreSQL would be): another
    node takes the upload over once the lease lapses; the holder, woken, must not write or win."""
    if len(ctx.nodes) < 2:
        skip("f: frozen holder", "needs --nodes 2 or more")
        return
    rng = random.Random(ctx.args.seed * 31 + 6)
    rounds = ctx.args.race_rounds
    print(f"== f: {rounds} rounds: the node receiving a PATCH is SIGSTOPped; another node takes over "
          "after the lease lapses; the frozen one is SIGCONTed (while or after the other receives the rest)",
          flush=True)
    problems, mismatches, lost, lapse = [], [], [], []
    for r in range(rounds):
        if out_of_time():
            problems.append(f"round {r}: not run before the deadline")
            break
        zombie, other = ctx.nodes[r % len(ctx.nodes)], ctx.nodes[(r + 1) % len(ctx.nodes)]
        size = scaled(ctx, rng.randint(30 * MiB, 60 * MiB), least=4 * MiB)
        blob = Blob(size, path=os.path.join(ctx.tmp, f"f{r}.bin"))
        up = Tracked(blob)
        frozen = False
        try:
            create(other.port, up)
            pre = rng.choice([0, min(size // 4, 8 * MiB + 12345)])  # a committed state with parts and a tail
            if pre and patch(other.port, up, 0, pre)[0] != 204:
                raise CaseError("the first PATCH failed")
            floor = up.max_acked
            a = Stream(zombie.port, up, pre, size, rate=SLOW_RATE).start()
            freeze_at = min(size - pre - 256 * KiB, max(MiB, int(rng.uniform(0.1, 0.5) * (size - pre))))
            while a.sent < freeze_at and a.thread.is_alive() and not out_of_time():
                time.sleep(0.002)
            os.kill(zombie.proc.pid, signal.SIGSTOP)
            frozen = True
            t0 = time.monotonic()
            offset = head(other.port, up, f"node {other.index} while node {zombie.index} is frozen")
            lapse.append(time.monotonic() - t0)
            if not floor <= offset <= pre + a.sent:
                problems.append(f"round {r}: HEAD {offset} outside [{floor}, {pre + a.sent}]")
            wake_mid = r % 2 == 0
            if wake_mid:
                b = Stream(other.port, up, offset, size, rate=2 * SLOW_RATE).start()
                time.sleep(rng.uniform(0.1, 1.0))
                os.kill(zombie.proc.pid, signal.SIGCONT)
                frozen = False
                b.wait(120)
                if b.status != 204:
                    problems.append(f"round {r}: the taking-over PATCH answered {b.outcome()}")
            else:
                finish(other.port, up, f"node {other.index} takes over")
                os.kill(zombie.proc.pid, signal.SIGCONT)
                frozen = False
            a.wait(60)
            if a.status == 204:
                problems.append(f"round {r}: the frozen holder acknowledged its PATCH: {a.outcome()}")
            elif a.status is not None and not (a.status == 409 and a.code == "ERR_REQUEST_SUPERSEDED"):
                problems.append(f"round {r}: the frozen holder answered {a.outcome()} "
                                "(want 409 ERR_REQUEST_SUPERSEDED or a cut connection)")
            time.sleep(1)  # whatever the woken node still does, it does now
            finish(other.port, up, "after the wake-up")
            heads = {n.index: head(n.port, up, f"node {n.index} at the end") for n in ctx.nodes}
            if any(v != size for v in heads.values()):
                problems.append(f"round {r}: HEAD per node {heads}, length {size}")
            status, digest, n, _ = get_digest(other.port, up.path)
            if status != 200 or digest != blob.digest:
                mismatches.append(f"round {r}: GET {status}, {n} bytes, sha256 {digest[:16]}")
            print(f"      round {r}: node {zombie.index} frozen at {mib(a.sent)} sent; node {other.index} HEAD "
                  f"{offset} after {lapse[-1]:.1f}s; woken {'while the rest streamed' if wake_mid else 'after completion'}; "
                  f"frozen PATCH: {a.outcome()}", flush=True)
            delete(ctx.proxy.port, up)
        except CaseError as e:
            problems.append(f"round {r}: {e}")
        finally:
            if frozen and zombie.proc.poll() is None:
                os.kill(zombie.proc.pid, signal.SIGCONT)
            lost += up.losses
            blob.close()
    if lapse:
        print(f"      freeze to HEAD on another node: median {sorted(lapse)[len(lapse) // 2]:.1f}s, max {max(lapse):.1f}s",
              flush=True)
    check(not lost, "f: acknowledged bytes lost == 0", "; ".join(lost[:3]))
    check(not mismatches, "f: every GET matches its file's SHA-256", "; ".join(mismatches[:3]))
    check(not problems, f"f: {rounds} frozen holders: taken over, not acknowledged, answered 409 or cut off",
          "\n      ".join(problems[:6]))


# Scenario g: `ferry put --network cellular` through `ferry netem` (rate scale 4, byte-count fates
# as the profiles define them: --rates-only), the emulator in front of nginx. Sizes in MiB at
# --scale 1, chosen so each profile takes roughly 10-40 s and the whole scenario ~3.5 minutes:
# the ideal seconds (bandwidth only, from t=0, netem seed 32; bench/client_bench.py's Profile
# computes them) are in the comments. bench/client_bench.py uses cliff=80, vacuum=80,
# per-flow=128 and 20 for the rest; here vacuum is smaller (seed 32 has its first blackout early),
# 3g and per-flow too, and handover/middlebox/blackhole larger (more cut connections; 32 MiB and
# more also let ferry put add parallel streams, i.e. tus concatenation across the nodes).
G_PROFILES = [
    ("cliff", 80),        # 21.6 s: 15 s at 40 Mbit/s, then 5 s at 1.2 Mbit/s (crossed at ~72 MiB)
    ("vacuum", 56),       # 29.5 s: 21 s at 20 Mbit/s, then 6 s of nothing (seed 32; crossed at ~50 MiB)
    ("handover", 40),     # 8.4 s at 40 Mbit/s; the first handover comes at 58.5 s: NOT reached
    ("middlebox", 40),    # 8.4 s at 40 Mbit/s; every connection cut after 1-8 MB
    ("lte-driving", 20),  # 25.5 s at ~6.6 Mbit/s; dips to near zero from 12 s (seed 32)
    ("3g", 12),           # 25.2 s at 4 Mbit/s, 250 ms latency
    ("blackhole", 32),    # 6.7 s at 40 Mbit/s; every connection goes silent after 1-8 MB, and each
                          # silence costs ferry put ~6 s until it calls the request stalled: ~40 s
    ("per-flow", 96),     # 10.1 s with 4 streams (80 Mbit/s uplink), 40 s with one (20 Mbit/s per connection)
]
G_RATE_SCALE = 4
G_CAP_FACTOR, G_CAP_EXTRA = 3, 60  # wall-clock cap = 3 x ideal (size / mean rate) + 60 s, as bench/client_bench.py


def start_netem(ctx, profile, seed, seconds, tag):
    """`ferry netem` in front of nginx; returns (process, port, mean uplink in bytes/s, stats path).
    Waits for its start line (a probe connection would draw one of the profile's per-connection
    fates); retries a start that exits (a port taken between free_port and bind)."""
    log_path = os.path.join(ctx.tmp, f"netem-{tag}.log")
    stats_path = os.path.join(ctx.tmp, f"netem-{tag}.json")
    for attempt in range(3):
        port = free_port()
        with open(log_path, "ab") as log:
            proc = ctx.procs.spawn([ctx.args.ferry, "netem", "--listen", f"127.0.0.1:{port}",
                                    "--target", f"127.0.0.1:{ctx.proxy.port}", "--profile", profile,
                                    "--seed", str(seed), "--rate-scale", str(G_RATE_SCALE), "--rates-only",
                                    "--seconds", str(int(seconds) + 1), "--stats-file", stats_path],
                                   stdout=log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 15
        while time.monotonic() < end and proc.poll() is None and not STOP.is_set():
            m = re.search(rf"on 127\.0\.0\.1:{port} .*mean uplink (\d+) kbit/s", read_text(log_path))
            if m:
                return proc, port, int(m.group(1)) * 1000 / 8, stats_path
            time.sleep(0.02)
        ctx.procs.kill(proc)
        if STOP.is_set():
            break
    raise CaseError(f"ferry netem --profile {profile} did not start:\n      {tail(read_text(log_path), 5)}")


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def netem_stats(path, since):
    """netem's statistics written after `since` (monotonic; it rewrites the file every second)."""
    wall_since = time.time() - (time.monotonic() - since)
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        try:
            if os.stat(path).st_mtime > wall_since:
                break
        except OSError:
            pass
        time.sleep(0.05)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def put_summary(stderr):
    """`ferry put`'s closing line: (requests, failed, bytes sent twice) or None."""
    found = re.findall(r"uploaded \d+ bytes in (\d+) requests \((\d+) failed, (\d+) bytes sent twice\)", stderr)
    return tuple(int(x) for x in found[-1]) if found else None


def scenario_g(ctx):
    """The mobile client against the cluster: `ferry put --network cellular` through `ferry netem`
    playing each mobile profile, in front of nginx (its requests land on different nodes)."""
    wanted = [p for p in (ctx.args.profiles.split(",") if ctx.args.profiles else []) if p]
    profiles = [(p, n) for p, n in G_PROFILES if not wanted or p in wanted]
    unknown = sorted(set(wanted) - {p for p, _ in G_PROFILES})
    if unknown:
        check(False, f"g: unknown profile(s) {', '.join(unknown)}; known: {', '.join(p for p, _ in G_PROFILES)}")
    seed = ctx.args.netem_seed
    print(f"== g: ferry put --network cellular through ferry netem (rate scale {G_RATE_SCALE}, --rates-only, seed {seed}) "
          f"in front of nginx: {', '.join(f'{p} {mib(scaled(ctx, n * MiB))}' for p, n in profiles)}", flush=True)
    rows = []
    for profile, size_mib in profiles:
        if out_of_time():
            rows.append((profile, "-", "-", "-", "-", "FAIL (not run: global timeout)"))
            check(False, f"g: {profile}: not run before the global timeout")
            continue
        size = scaled(ctx, size_mib * MiB)
        blob = Blob(size, path=os.path.join(ctx.tmp, f"g-{profile}.bin"))
        netem = put = None
        out_path = os.path.join(ctx.tmp, f"put-{profile}.out")
        err_path = os.path.join(ctx.tmp, f"put-{profile}.err")
        try:
            # netem stops by itself 30 s after the global deadline at the latest; its schedule starts
            # when it does
            netem, port, mean, stats_path = start_netem(ctx, profile, seed, max(30.0, remaining()) + 30, profile)
            ideal = size / mean
            cap = min(G_CAP_FACTOR * ideal + G_CAP_EXTRA, max(5.0, remaining()))
            before = {m: len(ctx.proxy.upstreams(m, "/files/")) for m in ("POST", "HEAD", "PATCH")}
            endpoint = f"http://127.0.0.1:{port}/files/"
            t0 = time.monotonic()
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                put = ctx.procs.spawn([ctx.args.ferry, "put", blob.path, endpoint, "--network", "cellular",
                                       "--no-resume", "--verbose", "--deadline", f"{cap:.0f}s"], stdout=out, stderr=err)
            # ferry gives up at its --deadline; it is killed 10 s after that
            while put.poll() is None and time.monotonic() - t0 < cap + 10 and not STOP.is_set():
                time.sleep(0.05)
            secs = time.monotonic() - t0
            timed_out = put.poll() is None
            if timed_out:
                ctx.procs.kill(put)
            stats = netem_stats(stats_path, t0 + secs)
            ctx.procs.kill(netem)
            netem = None
            stdout, stderr = read_text(out_path), read_text(err_path)
            lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
            url = lines[-1] if lines else ""
            nodes = collections.Counter()
            for m in before:
                nodes.update(ctx.node_names.get(u, u) for u in ctx.proxy.upstreams(m, "/files/")[before[m]:])
            summary = put_summary(stderr)
            faults = ", ".join(f"{k} {stats[k]}" for k in ("resets", "cuts", "blackholes", "handovers") if stats.get(k))
            # what crossed netem beyond the file (headers included); ferry put's own "sent twice"
            # also counts bytes that were still in socket buffers when a connection died
            resent = f"{mib(max(0, stats['bytes_up'] - size))} re-sent" if "bytes_up" in stats else "re-sent ?"
            print(f"      {profile}: {mib(size)} in {secs:.1f}s ({size / MiB / secs:.2f} MiB/s; ideal {ideal:.1f}s at "
                  f"{mean * 8 / 1e6:.1f} Mbit/s, cap {cap:.0f}s); exit {'timeout' if timed_out else put.returncode}; "
                  + (f"{summary[0]} requests, {summary[1]} failed ({mib(summary[2])} 'sent twice' by its count); "
                     if summary else "")
                  + f"netem: {stats.get('connections', '?')} connections, {resent}, faults: {faults or 'none'}; "
                  f"requests per node: {dict(sorted(nodes.items()))}", flush=True)
            if profile == "handover" and not stats.get("handovers"):
                print("      (handover: netem's first handover comes 58.5 s after it starts; this upload ended before it)",
                      flush=True)
            problem = None
            if timed_out:
                problem = ("stopped by the global timeout" if STOP.is_set() else
                           f"still running {cap + 10:.0f}s after its start (cap {cap:.0f}s + 10 s): killed")
            elif put.returncode != 0:
                problem = f"exit {put.returncode}"
            elif not url.startswith(endpoint):
                problem = f"last line of stdout {url!r} is not an upload URL under {endpoint}"
            else:
                status, digest, n, _ = get_digest(ctx.proxy.port, urlsplit(url).path)
                if status != 200 or digest != blob.digest:
                    problem = f"GET {urlsplit(url).path} through nginx: {status}, {n}/{size} bytes, sha256 {digest[:16]} vs {blob.digest[:16]}"
                try:
                    request(ctx.proxy.port, "DELETE", urlsplit(url).path, timeout=30)
                except (OSError, http.client.HTTPException):
                    pass
            ok = check(problem is None,
                       f"g: {profile}: ferry put of {mib(size)} exits 0 within {cap:.0f}s and its upload GETs back "
                       "with the file's SHA-256",
                       f"{problem}\n      ferry put stderr (--verbose) tail:\n      {tail(stderr, 15)}")
            rows.append((profile, mib(size), f"{secs:.1f}", f"{size / MiB / secs:.2f}", f"{ideal:.1f}",
                         "pass" if ok else "FAIL"))
        except CaseError as e:
            check(False, f"g: {profile}: {e}")
            rows.append((profile, mib(size), "-", "-", "-", "FAIL"))
        finally:
            for proc in (put, netem):
                if proc is not None:
                    ctx.procs.kill(proc)
            blob.close()
    table = [("profile", "size", "seconds", "MiB/s", "size/mean rate s", "")] + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("      " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), flush=True)


WEBHOOK_SECRET = "multinode webhook secret 0123"


def start_receiver(ctx):
    """The business system of scenario h (Tests/system/webhook_receiver.py): pre-finish callback
    and webhook, dedupe by event id. Started before the nodes, whose configuration names it."""
    ctx.receiver_port = free_port()
    log = open(os.path.join(ctx.tmp, "receiver.log"), "ab")
    ctx.receiver = ctx.procs.spawn([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "webhook_receiver.py"), "--port", str(ctx.receiver_port),
                                    "--secret", WEBHOOK_SECRET, "--db", os.path.join(ctx.tmp, "receiver.db"), "--quiet"],
                                   stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{ctx.receiver_port}"
    ctx.config = os.path.join(ctx.tmp, "ferry.conf")
    with open(ctx.config, "w") as f:
        f.write(f"""[server]
default-scenario = default

[scenario default]
anonymous = true

[scenario events]
anonymous = true
directory = events
pre-finish = {base}/ferry/pre-finish
callback-timeout = 10s
webhook = {base}/ferry/events
webhook-secret = "{WEBHOOK_SECRET}"
events = upload.created, upload.completed
""")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        try:
            if request(ctx.receiver_port, "GET", "/state?summary=1", timeout=2)[0] == 200:
                return
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
    raise StartFailed("the webhook receiver did not start")


def receiver_state(ctx):
    status, _, data = request(ctx.receiver_port, "GET", "/state", timeout=30)
    return json.loads(data) if status == 200 else {}


def scenario_h(ctx):
    """Business results and events across nodes: uploads of a scenario with a pre-finish callback
    and a webhook, their PATCHes spread over the nodes by nginx, one node killed -9 mid-way.
    Every upload gets its business result (SHA-256 of the whole file, read back when its
    requests ran on different nodes) and exactly one `upload.completed` id, delivered once the
    outbox (PostgreSQL) is drained by whichever nodes are alive."""
    count, size = 9, scaled(ctx, 12 * MiB, least=MiB)
    piece = max(size // 3, 256 * KiB)
    print(f"== h: {count} uploads of {mib(size)} in the events scenario, PATCHes over the nodes, one kill -9", flush=True)
    ups = [Tracked(Blob(size, data=os.urandom(size))) for _ in range(count)]
    for up in ups:
        create(ctx.proxy.port, up, collection="/files/events/")
    failures = []

    def run(up, i):
        try:
            failures.extend(finish(ctx.proxy.port, up, f"h upload {i}", piece=piece))
        except CaseError as e:
            failures.append(f"upload {i}: {e}")

    threads = [threading.Thread(target=run, args=(up, i)) for i, up in enumerate(ups)]
    for t in threads:
        t.start()
    victim = ctx.nodes[-1]
    time.sleep(0.5)
    victim.kill9()
    time.sleep(1)
    victim.start()
    for t in threads:
        t.join(timeout=max(5.0, remaining()))
    errors = [f for f in failures if f.startswith("upload ")]
    if not check(not errors, "h: every upload completes through the kill", "; ".join(errors[:3])):
        return
    results_ok, bad = 0, []
    for up in ups:
        deadline = time.monotonic() + 60
        while True:
            status, h, _ = persist(ctx.proxy.port, "HEAD", up.path, what="HEAD h")
            if h.get("ferry-business-status") == "done" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        try:
            result = json.loads(h.get("ferry-business-result", "{}"))
        except ValueError:
            result = {}
        uid = up.path.rsplit("/", 1)[-1]
        if h.get("ferry-business-status") == "done" and result.get("sha256") == up.blob.digest:
            results_ok += 1
        else:
            bad.append(f"{uid}: {h.get('ferry-business-status')} {str(result)[:120]}")
    check(results_ok == count, "h: every upload has its business result, with the SHA-256 of the whole file", "; ".join(bad[:3]))
    ids = {up.path.rsplit("/", 1)[-1] for up in ups}
    deadline = time.monotonic() + 90
    while True:
        state = receiver_state(ctx)
        completed = {}
        for e in state.get("events", []):
            if e["upload"] in ids and e["type"] == "upload.completed":
                completed.setdefault(e["upload"], set()).add(e["id"])
        if len(completed) == count or time.monotonic() > deadline:
            break
        time.sleep(1)
    check(len(completed) == count and all(len(v) == 1 for v in completed.values()),
          "h: each upload's upload.completed arrives, with one event id", f"{len(completed)}/{count}: {completed}")
    order_bad = []
    for uid in ids:
        seqs = [(e["sequence"], e["type"]) for e in state.get("events", []) if e["upload"] == uid]
        if [t for _, t in sorted(seqs)] != ["upload.created", "upload.completed"]:
            order_bad.append(f"{uid}: {sorted(seqs)}")
    check(not order_bad, "h: per upload, created (1) then completed (2), nothing else", "; ".join(order_bad[:3]))
    dups = sum(v for k, v in state.get("duplicates", {}).items() if k.rsplit("-", 1)[0] in ids)
    print(f"      {dups} duplicate deliveries (deduplicated by event id); {len(failures)} failed requests on the way",
          flush=True)
    for up in ups:
        up.blob.close()


SCENARIOS = {"a": scenario_a, "b": scenario_b, "c": scenario_c, "d": scenario_d, "e": scenario_e, "f": scenario_f,
             "g": scenario_g, "h": scenario_h, "i": lambda ctx: scenario_i(ctx, sys.modules[__name__])}
DEFAULT = ["a", "b", "c", "d", "e", "f", "g", "h", "i"]


# --- main ------------------------------------------------------------------------------------

def watchdog(ctx, timeout):
    """Sets STOP at the deadline; 60 s later stops everything and exits, whatever still hangs."""
    if not STOP.wait(timeout):
        print(f"FAIL  global timeout of {timeout:.0f}s reached: stopping", flush=True)
        results["failed"] += 1
        STOP.set()
        time.sleep(60)
        print("      still not finished 60 s after the timeout: killing everything", flush=True)
        cleanup(ctx)
        print(f"multinode test: {results['passed']} passed, {results['failed']} failed", flush=True)
        os._exit(1)


def cleanup(ctx):
    if ctx.proxy is not None:
        ctx.proxy.stop(ctx.args.keep)
    ctx.procs.kill_all()


def s3_settings():
    env = os.environ
    missing = [k for k in ("FERRY_TEST_S3_ENDPOINT", "FERRY_TEST_S3_ACCESS_KEY", "FERRY_TEST_S3_SECRET_KEY")
               if not env.get(k)]
    return missing, env.get("FERRY_TEST_S3_ENDPOINT"), env.get("FERRY_TEST_S3_REGION")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ferry", required=True, help="path to the ferry binary")
    p.add_argument("--nodes", type=int, default=1, help="ferry nodes behind nginx (default 1)")
    p.add_argument("--catalog", default=None,
                   help="sqlite (one node only) or postgres://...; default: sqlite for one node, "
                        "$FERRY_TEST_POSTGRES_URL for more")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every size (0.1 for a quick run)")
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="run only these (repeatable)")
    p.add_argument("--kills", type=int, default=10, help="scenario b: uploads, each with >= 1 kill -9 (default 10)")
    p.add_argument("--race-rounds", type=int, default=4, help="scenario c: races (default 4)")
    p.add_argument("--profiles", default="",
                   help=f"scenario g: only these netem profiles, comma-separated (default: all of "
                        f"{','.join(name for name, _ in G_PROFILES)})")
    p.add_argument("--netem-seed", type=int, default=32,
                   help="scenario g: ferry netem --seed (default 32: vacuum's first blackout comes after 21 s)")
    p.add_argument("--timeout", type=float, default=900,
                   help="overall time limit in seconds (default 900; the default set takes ~400 s)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (node logs, nginx logs)")
    args = p.parse_args()
    args.ferry = os.path.abspath(args.ferry)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    if args.catalog is None:
        args.catalog = os.environ.get("FERRY_TEST_POSTGRES_URL", "sqlite") if args.nodes > 1 else "sqlite"

    missing, endpoint, region = s3_settings()
    problem = None
    if missing:
        problem = f"{', '.join(missing)} not set: start S3 first, e.g. eval \"$(scripts/services/rgw.sh start DIR)\""
    elif args.nodes < 1:
        problem = "--nodes must be at least 1"
    elif args.nodes > 1 and not args.catalog.startswith("postgres"):
        problem = f"{args.nodes} nodes need a shared catalog: pass --catalog postgres://... (or set FERRY_TEST_POSTGRES_URL)"
    elif not os.access(args.ferry, os.X_OK):
        problem = f"ferry binary not found or not executable: {args.ferry}"
    if problem:
        print(f"multinode test: {problem}")
        print("multinode test: 0 passed, 1 failed")
        return 2

    # The nodes read the S3 keys from the environment (not the command line); nothing else of
    # the caller's FERRY_* settings may reach them.
    for key in [k for k in os.environ if k.startswith("FERRY_") and not k.startswith("FERRY_TEST_")]:
        del os.environ[key]
    os.environ["FERRY_S3_ACCESS_KEY"] = os.environ["FERRY_TEST_S3_ACCESS_KEY"]
    os.environ["FERRY_S3_SECRET_KEY"] = os.environ["FERRY_TEST_S3_SECRET_KEY"]

    tmp = tempfile.mkdtemp(prefix="ferry-multinode-")
    os.chmod(tmp, 0o755)  # nginx's workers (nobody) reach their temp paths
    ctx = type("Context", (), {})()
    ctx.args, ctx.tmp, ctx.procs, ctx.proxy, ctx.nodes = args, tmp, Procs(), None, []
    ctx.bucket, ctx.prefix = "ferry-multinode", f"run-{secrets.token_hex(6)}"
    ctx.s3_endpoint, ctx.s3_region = endpoint, region
    catalog_shown = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", args.catalog)
    print(f"multinode test: {args.nodes} node(s), catalog {catalog_shown}, S3 {endpoint} "
          f"s3://{ctx.bucket}/{ctx.prefix}, scale {args.scale}, seed {args.seed}", flush=True)
    started = time.monotonic()
    DEADLINE[0] = started + args.timeout
    threading.Thread(target=watchdog, args=(ctx, args.timeout), daemon=True).start()
    try:
        try:
            start_receiver(ctx)
            for i in range(args.nodes):
                ctx.nodes.append(Node(ctx, i))
            for node in ctx.nodes:
                secs = node.start()
                print(f"      node {node.index} on port {node.port}, healthy after {secs:.2f}s", flush=True)
            ctx.node_names = {f"127.0.0.1:{n.port}": f"node {n.index}" for n in ctx.nodes}
            ctx.proxy = Proxy(ctx)
            ctx.proxy.start([n.port for n in ctx.nodes])
        except Exception as e:
            check(False, f"start-up: {type(e).__name__}: {e}")
            raise StartFailed() from e
        try:
            shared = shared_catalog(ctx)
        except Exception as e:
            shared = check(False, f"shared catalog: {type(e).__name__}: {e}")
        for name in args.scenario or DEFAULT:
            if not shared:
                check(False, f"{name}: not run (the nodes do not share the catalog)")
                continue
            if STOP.is_set():
                check(False, f"{name}: not run (global timeout)")
                continue
            before = results["failed"]
            t0 = time.monotonic()
            try:
                SCENARIOS[name](ctx)
            except Exception as e:  # a harness failure or a hard server failure counts as a failed check
                check(False, f"{name}: {type(e).__name__}: {e}", traceback.format_exc().strip().replace("\n", "\n      "))
            print(f"      ({name}: {time.monotonic() - t0:.1f}s)", flush=True)
            if results["failed"] > before:
                for node in ctx.nodes:
                    print(f"      --- node {node.index} log tail ---\n      {tail(node.log(), 12)}", flush=True)
                print(f"      --- nginx error.log tail ---\n      {tail(ctx.proxy.error_log(), 8)}", flush=True)
            for node in ctx.nodes:  # the next scenario starts with every node up
                if not node.healthy() and not STOP.is_set():
                    try:
                        node.start()
                    except CaseError as e:
                        check(False, f"node {node.index} could not be restarted: {e}")
    except StartFailed:
        pass
    finally:
        STOP.set()
        cleanup(ctx)
        if args.keep:
            print(f"      kept {tmp} (nginx logs in {os.path.join(tmp, 'nginx-kept')})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"({time.monotonic() - started:.0f} s)")
    print(f"multinode test: {results['passed']} passed, {results['failed']} failed", flush=True)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
