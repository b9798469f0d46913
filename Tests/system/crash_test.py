#!/usr/bin/env python3
"""Crash test for Ferry: concurrent tus uploads while the server is kill -9'ed and restarted.

Usage: python3 Tests/system/crash_test.py --ferry PATH [--kills 20] [--uploads 16] [--seed N]

Each upload runs in its own thread and treats every error as "re-HEAD and resume from the
reported offset". The test tracks the highest offset the server ever acknowledged per upload
(201/204 Upload-Offset and HEAD) and, after every restart, checks that HEAD never reports less
than that (nor more than the length). At the end every upload is GET and compared byte for byte.
"""
import argparse
import base64
import collections
import hashlib
import http.client
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from urllib.parse import urlsplit

KiB, MiB = 1024, 1024 * 1024
BLOCK = MiB
TUS = {"Tus-Resumable": "1.0.0"}
RETRYABLE = {409, 423, 503}  # superseded/offset mismatch, locked, shutting down
STATS = collections.Counter()  # (request kind, status or "error") -> count
STATS_LOCK = threading.Lock()


class Transient(Exception):
    """An error the client recovers from by re-HEADing and resuming."""


class Lost(Exception):
    """The server no longer knows an upload it acknowledged."""


class Source:
    """Deterministic pseudo-random content of one upload, generated 1 MiB block by block."""

    def __init__(self, seed, size):
        self.seed, self.size = seed, size

    def block(self, i):
        return random.Random(self.seed * 1_000_003 + i).randbytes(min(BLOCK, self.size - i * BLOCK))

    def pieces(self, start, end, piece=BLOCK):
        """Yields the bytes [start, end) in slices of at most `piece` bytes."""
        pos = start
        while pos < end:
            i = pos // BLOCK
            data = self.block(i)[pos - i * BLOCK:min(end - i * BLOCK, BLOCK)]
            for j in range(0, len(data), piece):
                yield data[j:j + piece]
            pos += len(data)

    def read(self, start, end):
        return b"".join(self.pieces(start, end))


class Upload:
    """One upload: its source, its URL path and the highest offset the server acknowledged."""

    def __init__(self, index, source, with_upload):
        self.index, self.source, self.with_upload = index, source, with_upload
        self.path = None
        self.max_acked = 0
        self.done = False
        self.retries = 0
        self.violations = []
        self.lock = threading.Lock()

    def ack(self, offset):
        with self.lock:
            self.max_acked = max(self.max_acked, offset)

    def violate(self, message):
        with self.lock:
            self.violations.append(message)
            if len(self.violations) > 3:
                return  # already reported; the rest shows up in the count
        print(f"VIOLATION upload #{self.index} ({self.path}): {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, headers=None, body=None, timeout=60, kind=None):
    """One request on a fresh connection; returns (status, lower-cased headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    status = "error"
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        status = resp.status
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()
        with STATS_LOCK:
            STATS[(kind or method, status)] += 1


def unexpected(up, kind, status, data):
    """A status that neither succeeds nor is a legitimate effect of a crash or a race."""
    if status not in RETRYABLE:
        up.violate(f"{kind} answered {status}: {data[:200]!r}")


class Server:
    """The ferry process; restarted on the same data dir and port after every kill."""

    def __init__(self, binary, data_dir, port, log_path):
        self.binary, self.data_dir, self.port, self.log_path = binary, data_dir, port, log_path
        self.proc = None

    def spawn(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "serve", "--creation-rate", "0", "--anonymous-open-uploads", "0", "--host", "127.0.0.1", "--port", str(self.port),
                 "--data-dir", self.data_dir, "--log-level", "warning"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def start(self, timeout=60):
        """Spawns ferry and waits until /healthz answers 200; retries a failed start twice."""
        for attempt in range(3):
            self.spawn()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if request(self.port, "GET", "/healthz", timeout=2, kind="healthz")[0] == 200:
                        return
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(0.05)
            code = self.proc.poll()
            self.kill()
            print(f"ferry did not become ready (attempt {attempt + 1}, exit code {code})", flush=True)
            time.sleep(1)
        raise RuntimeError("ferry failed to start 3 times; see the log tail below")

    def kill(self):
        """kill -9 the server process (by PID) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""


def check_head(port, up, who):
    """HEADs an upload and checks its offset against every acknowledgement; returns the offset."""
    floor = up.max_acked
    status, headers, data = request(port, "HEAD", up.path, TUS, timeout=30)
    if status in (404, 410):
        up.violate(f"{who}: HEAD answered {status} for an acknowledged upload")
        raise Lost()
    if status not in (200, 204) or "upload-offset" not in headers:
        unexpected(up, "HEAD", status, data)
        raise Transient(f"HEAD answered {status}")
    offset = int(headers["upload-offset"])
    if offset < floor:
        up.violate(f"{who}: HEAD offset {offset} < acknowledged offset {floor}")
    if offset > up.source.size:
        up.violate(f"{who}: HEAD offset {offset} > length {up.source.size}")
    if headers.get("upload-length") != str(up.source.size):
        up.violate(f"{who}: HEAD Upload-Length {headers.get('upload-length')!r} != {up.source.size}")
    up.ack(offset)
    return offset


def create(port, up, rng):
    """POST the upload (sometimes with a first chunk: creation-with-upload); returns its offset."""
    headers = {**TUS, "Upload-Length": str(up.source.size)}
    body = None
    if up.with_upload:
        body = up.source.read(0, min(rng.randint(1, 2 * MiB), up.source.size))
        headers["Content-Type"] = "application/offset+octet-stream"
    kind = "POST" if body is None else "POST with upload"
    status, h, data = request(port, "POST", "/files/", headers, body, kind=kind)
    if "location" in h:
        up.path = urlsplit(h["location"]).path  # an error with a Location: resume it via HEAD
    if status != 201 or "location" not in h:
        unexpected(up, kind, status, data)
        raise Transient(f"POST answered {status}: {data[:200]!r}")
    offset = int(h.get("upload-offset", "0"))
    if body is not None and "upload-offset" not in h:
        up.violate("creation-with-upload answered 201 without Upload-Offset")
    if offset > len(body or b""):
        up.violate(f"POST acknowledged offset {offset} but carried {len(body or b'')} bytes")
    up.ack(offset)
    return offset


def chunk_size(rng):
    """Varied PATCH sizes: small, medium, and larger than 8 MiB."""
    r = rng.random()
    if r < 0.25:
        return rng.randint(1, 256 * KiB)
    if r < 0.7:
        return rng.randint(256 * KiB, 4 * MiB)
    return rng.randint(8 * MiB + 1, 12 * MiB)


def patch(port, up, rng, offset):
    """Sends one chunk from `offset` (fixed length, with checksum, or chunked); returns the new offset."""
    n = min(chunk_size(rng), up.source.size - offset)
    headers = {**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)}
    mode, kind = rng.random(), "PATCH"
    if mode < 0.25:  # Transfer-Encoding: chunked (http.client does it for a generator body)
        body = up.source.pieces(offset, offset + n, rng.choice([4 * KiB, 64 * KiB, 1 * MiB]))
        kind = "PATCH chunked"
    else:
        body = up.source.read(offset, offset + n)
        if mode > 0.85:
            digest = base64.b64encode(hashlib.sha1(body).digest()).decode()
            headers["Upload-Checksum"] = f"sha1 {digest}"
            kind = "PATCH checksum"
    status, h, data = request(port, "PATCH", up.path, headers, body, kind=kind)
    if status in (404, 410):
        up.violate(f"PATCH answered {status} for an acknowledged upload")
        raise Lost()
    if status != 204:
        unexpected(up, kind, status, data)
        raise Transient(f"PATCH answered {status}: {data[:200]!r}")
    if "upload-offset" not in h:
        up.violate("PATCH answered 204 without Upload-Offset")
        raise Transient("no Upload-Offset")
    new = int(h["upload-offset"])
    if new != offset + n:
        up.violate(f"PATCH of {n} bytes at {offset} answered 204 with Upload-Offset {new}")
    up.ack(new)
    return new


def run_upload(ctx, up):
    """Thread body: the client loop, with any bug in it reported rather than lost."""
    try:
        client_loop(ctx, up)
    except Exception as e:
        up.violate(f"client thread crashed: {type(e).__name__}: {e}")


def client_loop(ctx, up):
    """Create, then PATCH until complete; on any error re-HEAD and resume."""
    rng = random.Random(ctx.seed * 7919 + up.index)
    offset = None
    while not ctx.stop.is_set():
        if time.monotonic() > ctx.deadline:
            up.violate(f"did not complete before the deadline (acknowledged {up.max_acked})")
            return
        ctx.server_up.wait()
        try:
            if up.path is None:
                offset = create(ctx.port, up, rng)
            elif offset is None:
                offset = check_head(ctx.port, up, "client")
            if offset == up.source.size:
                up.done = True
                return
            offset = patch(ctx.port, up, rng, offset)
        except Lost:
            return
        except (OSError, http.client.HTTPException, Transient, ValueError, KeyError):
            up.retries += 1
            offset = None
            time.sleep(rng.uniform(0.01, 0.1))


def check_all(ctx, uploads, who):
    """HEADs every created upload (retrying transient errors) and checks it against its acks."""
    for up in uploads:
        for attempt in range(5):
            if up.path is None:
                break
            try:
                check_head(ctx.port, up, who)
                break
            except Lost:
                break
            except (OSError, http.client.HTTPException, Transient, ValueError) as e:
                if attempt == 4:
                    up.violate(f"{who}: HEAD kept failing: {e}")
                time.sleep(0.2)


def verify_content(port, up):
    """GETs a complete upload and compares it with its source; returns an error or None."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", up.path, headers=TUS)
        resp = conn.getresponse()
        if resp.status != 200:
            return f"GET answered {resp.status}"
        got, want, pos, first_diff = hashlib.sha256(), hashlib.sha256(), 0, None
        for i in range(math.ceil(up.source.size / BLOCK)):
            expected = up.source.block(i)
            data = resp.read(len(expected))
            want.update(expected)
            got.update(data)
            if first_diff is None and data != expected:
                k = next((j for j, (a, b) in enumerate(zip(data, expected)) if a != b), min(len(data), len(expected)))
                first_diff = pos + k
            pos += len(data)
        extra = len(resp.read())
        if first_diff is not None or extra or got.digest() != want.digest():
            return (f"content differs: sha256 {got.hexdigest()[:16]} != {want.hexdigest()[:16]}, "
                    f"first differing byte {first_diff}, {extra} extra bytes")
        return None
    finally:
        conn.close()


def make_uploads(rng, count):
    """Uploads of varied sizes (100 KiB-24 MiB; the first one large), some with creation-with-upload."""
    uploads = []
    for i in range(count):
        if i == 0:
            size = rng.randint(20 * MiB, 24 * MiB)
        elif i % 2:
            size = rng.randint(100 * KiB, 24 * MiB)
        else:
            size = int(math.exp(rng.uniform(math.log(100 * KiB), math.log(24 * MiB))))
        uploads.append(Upload(i, Source(rng.getrandbits(32), size), with_upload=rng.random() < 0.3))
    return uploads


def wait_for_kill_moment(ctx, uploads, threshold, rng):
    """Returns once `threshold` bytes are acknowledged or a random uptime passed, plus jitter."""
    until = min(time.monotonic() + rng.uniform(0.3, 3.0), ctx.deadline)
    while time.monotonic() < until and sum(u.max_acked for u in uploads) < threshold:
        time.sleep(0.005)
    time.sleep(rng.uniform(0, 0.02))


def kill_and_restart(server, ctx, rng):
    """kill -9, sometimes also kill a start-up mid-way, then restart; returns kills done."""
    ctx.server_up.clear()
    server.kill()
    kills = 1
    if rng.random() < 0.15:  # kill the next instance during its start-up / recovery
        server.spawn()
        time.sleep(rng.uniform(0, 0.15))
        server.kill()
        kills += 1
    server.start()
    return kills


def crash_phase(args, ctx, server, uploads, rng):
    """Kills and restarts the server --kills times while the uploads run; returns kills done."""
    total = sum(u.source.size for u in uploads)
    kills = in_flight = 0
    # Kill k comes once the acknowledged bytes pass a random fraction of the total (so kills
    # are spread over the uploads however fast the server is) or after a random uptime.
    thresholds = sorted(rng.uniform(0.02, 0.9) * total for _ in range(args.kills))
    while kills < args.kills and time.monotonic() < ctx.deadline:
        wait_for_kill_moment(ctx, uploads, thresholds[kills], rng)
        busy = sum(not u.done for u in uploads)
        in_flight += busy > 0
        t0 = time.monotonic()
        done = kill_and_restart(server, ctx, rng)
        kills += done
        check_all(ctx, uploads, f"after kill {kills}")
        acked = sum(u.max_acked for u in uploads)
        print(f"kill {kills}{' (+1 during start-up)' if done > 1 else ''}: {busy} uploads busy, "
              f"restart+check {time.monotonic() - t0:.2f}s, acknowledged {acked / MiB:.1f}/{total / MiB:.1f} MiB",
              flush=True)
        ctx.server_up.set()
    print(f"{kills} kills, {in_flight} with uploads in flight", flush=True)
    return kills


def verify_phase(ctx, server, uploads, rng):
    """After a last kill -9, every upload must be complete and GET back exactly its source."""
    kill_and_restart(server, ctx, rng)
    ctx.server_up.set()
    check_all(ctx, uploads, "final restart")
    for up in uploads:
        if up.done:  # verified even after a violation, to tell whether the bytes survived
            try:
                err = verify_content(ctx.port, up)
            except (OSError, http.client.HTTPException) as e:
                err = f"GET failed: {e}"
            if err:
                up.violate(err)
        elif not up.violations:
            up.violate(f"never completed (acknowledged {up.max_acked}/{up.source.size})")


def coverage_gap(uploads):
    """Names a request kind tried often that never succeeded (so it went untested), or None."""
    wanted = [("PATCH", 204), ("PATCH chunked", 204), ("PATCH checksum", 204)]
    if any(u.with_upload for u in uploads):
        wanted.append(("POST with upload", 201))
    tries = collections.Counter()
    for (k, _), n in STATS.items():
        tries[k] += n
    missing = [f"{k} -> {s}" for k, s in wanted if STATS[(k, s)] == 0 and tries[k] >= 30]
    return f"never succeeded: {', '.join(missing)}" if missing else None


def run(args, tmp):
    """Runs the whole test; prints the summary and returns the exit code."""
    rng = random.Random(args.seed)
    port = free_port()
    os.mkdir(os.path.join(tmp, "data"))
    server = Server(args.ferry, os.path.join(tmp, "data"), port, os.path.join(tmp, "ferry.log"))
    start = time.monotonic()
    ctx = types.SimpleNamespace(port=port, seed=args.seed, deadline=start + args.timeout,
                                stop=threading.Event(), server_up=threading.Event())
    uploads = make_uploads(rng, args.uploads)
    print(f"crash test: seed {args.seed}, port {port}, {len(uploads)} uploads, "
          f"{sum(u.source.size for u in uploads) / MiB:.1f} MiB, {args.kills} kills", flush=True)
    failed_globally = None
    try:
        server.start()
        ctx.server_up.set()
        threads = [threading.Thread(target=run_upload, args=(ctx, u), daemon=True) for u in uploads]
        for t in threads:
            t.start()
        kills = crash_phase(args, ctx, server, uploads, rng)
        if kills < args.kills:
            failed_globally = f"only {kills} of {args.kills} kills before the deadline"
        for t in threads:
            t.join(max(0.0, ctx.deadline - time.monotonic()))
        ctx.stop.set()
        verify_phase(ctx, server, uploads, rng)
    except Exception as e:  # report, then fall through to the summary
        failed_globally = f"{type(e).__name__}: {e}"
    finally:
        ctx.stop.set()
        ctx.server_up.set()
        server.kill()
    print(f"{sum(u.retries for u in uploads)} client retries; {time.monotonic() - start:.0f}s", flush=True)
    print("requests: " + ", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(STATS.items(), key=str)))
    if failed_globally is None:
        failed_globally = coverage_gap(uploads)
    passed = sum(1 for u in uploads if u.done and not u.violations and failed_globally is None)
    failed = len(uploads) - passed
    for up in uploads:
        if up.violations:
            more = f" (+{len(up.violations) - 1} more)" if len(up.violations) > 1 else ""
            print(f"FAILED upload #{up.index} {up.path} size {up.source.size}: {up.violations[0]}{more}")
    if failed_globally:
        print(f"FAILED: {failed_globally}")
    if failed:
        print("--- ferry log tail ---\n" + server.log_tail())
        print(f"reproduce with: --seed {args.seed} --kills {args.kills} --uploads {args.uploads} (--keep-data keeps the data dir)")
    print(f"crash test: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ferry", required=True, help="path to the ferry binary")
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--uploads", type=int, default=16)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--timeout", type=float, default=300, help="overall time limit in seconds")
    p.add_argument("--keep-data", action="store_true", help="keep the temp dir (data + log)")
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    if not os.access(args.ferry, os.X_OK):
        print(f"crash test: ferry binary not found or not executable: {args.ferry}")
        print(f"crash test: 0 passed, {args.uploads} failed")
        return 2
    tmp = tempfile.mkdtemp(prefix="ferry-crash-")
    try:
        return run(args, tmp)
    finally:
        if args.keep_data:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
