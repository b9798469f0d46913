#!/usr/bin/env python3
"""Disk-full test for Ferry: a PATCH that fills the disk answers 507, keeps what it stored,
and the upload resumes to a SHA-256-identical file once space returns.

Usage (root: it mounts a small tmpfs): python3 Tests/system/disk_full_test.py --ferry PATH
"""
import argparse
import hashlib
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
results = {"passed": 0, "failed": 0}


def check(condition, what):
    results["passed" if condition else "failed"] += 1
    print(("ok    " if condition else "FAIL  ") + what)
    return condition


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={**TUS, **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    except (ConnectionError, http.client.HTTPException) as error:
        return None, {}, str(error).encode()
    finally:
        conn.close()


def wait_healthy(port, proc):
    for _ in range(200):
        if proc.poll() is not None:
            raise SystemExit("ferry exited during start-up")
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("ferry did not become healthy")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ferry", required=True)
    args = parser.parse_args()
    mount = tempfile.mkdtemp(prefix="ferry-diskfull-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mount], check=True)
    port = free_port()
    proc = subprocess.Popen(
        [args.ferry, "serve", "--port", str(port), "--data-dir", mount + "/data", "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(port, proc)
        payload = os.urandom(40 * MiB)
        status, headers, _ = request(port, "POST", "/files/", {"Upload-Length": str(len(payload))})
        path = urlsplit(headers.get("location", "")).path
        check(status == 201, "an upload larger than the free space is created")
        # One PATCH far larger than the free space: the disk fills mid-body. The bytes that fit
        # must be acknowledged (the catalog, on the same file system, still commits: upload
        # writes leave a reserve free), not cut at the next request.
        status, headers, body = request(
            port, "PATCH", path,
            {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, payload,
        )
        check(status in (507, None), f"a PATCH that fills the disk answers 507 or is cut (got {status} {body[:80]!r})")
        status, headers, _ = request(port, "HEAD", path)
        kept = int(headers.get("upload-offset", "-1"))
        check(status == 200 and kept >= 4 * MiB, f"the bytes of it that fit are kept ({kept} bytes)")
        # Send 1 MiB PATCHes until the disk fills: the request that hits ENOSPC is read whole,
        # so its 507 reaches the client.
        offset, status, headers = kept, 204, {}
        while status == 204 and offset < len(payload):
            status, headers, body = request(
                port, "PATCH", path,
                {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
                payload[offset:offset + MiB],
            )
            if status == 204:
                offset = int(headers["upload-offset"])
        check(status == 507, f"filling the disk answers 507 (got {status} {body[:80]!r})")
        check(headers.get("ferry-error") == "ERR_STORAGE_FULL", "with ERR_STORAGE_FULL")
        acknowledged = offset
        status, headers, _ = request(port, "HEAD", path)
        offset = int(headers.get("upload-offset", "-1"))
        check(status == 200 and acknowledged <= offset < len(payload),
              f"the upload stays resumable with every acknowledged byte (offset {offset} >= {acknowledged})")
        subprocess.run(["mount", "-o", "remount,size=256m", mount], check=True)
        status, headers, _ = request(
            port, "PATCH", path,
            {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}, payload[offset:],
        )
        check(status == 204 and headers.get("upload-offset") == str(len(payload)), "it resumes once space returns")
        status, _, data = request(port, "GET", path)
        check(status == 200 and hashlib.sha256(data).digest() == hashlib.sha256(payload).digest(),
              "the stored file is SHA-256-identical")
    finally:
        proc.kill()
        proc.wait()
        subprocess.run(["umount", mount], check=False)
        os.rmdir(mount)
    print(f"disk-full test: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
