#!/usr/bin/env python3
"""SIGTERM test for Ferry: the real process stops within its bound while a PATCH is in
flight, and that PATCH's bytes are saved.

Usage: python3 Tests/system/shutdown_test.py --ferry PATH
"""
import argparse
import http.client
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

MiB = 1024 * 1024
results = {"passed": 0, "failed": 0}


def check(condition, what):
    results["passed" if condition else "failed"] += 1
    print(("ok    " if condition else "FAIL  ") + what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(ferry, port, data):
    proc = subprocess.Popen(
        [ferry, "serve", "--port", str(port), "--data-dir", data, "--shutdown-timeout", "10s", "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("ferry did not start")


def tus(port, method, path, headers):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, headers={"Tus-Resumable": "1.0.0", **headers})
    response = conn.getresponse()
    response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ferry", required=True)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="ferry-shutdown-")
    port = free_port()
    proc = start(args.ferry, port, data)
    try:
        status, headers = tus(port, "POST", "/files/", {"Upload-Length": str(10 * MiB)})
        path = urlsplit(headers["location"]).path
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(
            f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nContent-Length: {10 * MiB}\r\n\r\n".encode()
        )
        slow.sendall(b"\x05" * (3 * MiB))
        idle = socket.create_connection(("127.0.0.1", port))
        time.sleep(0.5)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        slow.settimeout(10)
        answer = b""
        try:
            while chunk := slow.recv(4096):
                answer += chunk
        except OSError:
            pass
        code = proc.wait(timeout=30)
        elapsed = time.monotonic() - began
        check(code == 0, f"ferry exits cleanly on SIGTERM (exit {code})")
        check(elapsed < 10, f"within the shutdown bound ({elapsed:.2f}s)")
        check(answer == b"" or b" 503 " in answer.split(b"\r\n")[0], f"the in-flight PATCH is answered 503 or closed ({answer[:40]!r})")
        slow.close()
        idle.close()
        proc = start(args.ferry, port, data)
        status, headers = tus(port, "HEAD", path, {})
        check(status == 200 and headers.get("upload-offset") == str(3 * MiB),
              f"the PATCH's bytes were saved (offset {headers.get('upload-offset')})")
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)
    print(f"shutdown test: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
