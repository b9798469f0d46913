"""Shared parts of Tests/system/multinode_test.py: settings, the HTTP helpers, the upload
bookkeeping (Blob, Tracked, Stream) and the processes (Node, Proxy)."""
import hashlib
import http.client
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from urllib.parse import urlsplit

from support import CaseError, MiB, check, free_port, random_file, sha256, tail

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
        cmd = [a.ferry, "serve", "--creation-rate", "0", "--anonymous-open-uploads", "0", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", self.data_dir,
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


def scaled(ctx, n, least=256 * KiB):
    return max(least, int(n * ctx.args.scale))


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
                 "every node knows an upload created on node 0 (shared catalog)",
                 f"HEAD per node: {seen} — does `ferry serve --catalog {ctx.args.catalog.split(':')[0]}://...` "
                 "use the shared catalog?")
