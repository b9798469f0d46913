#!/usr/bin/env python3
"""Hardening figures (issue 14): quota overshoot under concurrent creations, an owner's PATCH
under hostile requests, and whether the known crash requests still kill the server.

Usage: python3 bench/hardening.py --ferry PATH [--ferry PATH ...] [--trials 3]

Each binary is measured in the same run, alternately, on a fresh data folder:
  quota      40 concurrent creations by one principal against open-uploads = 5, open-bytes =
             5 x the length, creations-per-minute = 3, and by one anonymous address against
             [anonymous] open-uploads = 5: how many were accepted (goal: the limit; builds
             without per-address quotas show what they let through);
  hostile    an owner's PATCH mid-body while 10 anonymous HEADs (and another principal's
             PATCH/DELETE) name the upload: was it interrupted (goal: never);
  crashes    the four requests that crashed the process before: is it still up after each.
Prints one table per binary and medians over the trials.
"""
import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SECRET = "hardening-bench-secret-0123456789abcdef"
ADMIN = "hardening-admin-token-0123456789"
TUS = {"Tus-Resumable": "1.0.0"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub: str) -> str:
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": sub, "exp": int(time.time()) + 3600, "scenarios": ["*"]}).encode())
    signature = hmac.new(SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(signature)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, headers=None, body=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    except (OSError, http.client.HTTPException):
        return None, {}
    finally:
        conn.close()


class Server:
    def __init__(self, ferry: str, quotas: str, anonymous: str = ""):
        self.folder = tempfile.mkdtemp(prefix="ferry-hardening-")
        config = os.path.join(self.folder, "ferry.conf")
        # Builds from before issue 14 have no creation rate to switch off, nor per-address quotas.
        help_text = subprocess.run([ferry, "serve", "--help"], capture_output=True, text=True).stdout
        rate = ["--creation-rate", "0"] if "--creation-rate" in help_text else []
        per_address = f"[anonymous]\n{anonymous}\n\n" if anonymous and "--anonymous-open-uploads" in help_text else ""
        with open(config, "w") as f:
            f.write(f'[server]\ndefault-scenario = open\nadmin-token = "{ADMIN}"\n\n[auth]\nhs256-secret = "{SECRET}"\n{quotas}\n\n'
                    f"{per_address}[scenario private]\nanonymous = false\n\n[scenario open]\nanonymous = true\n")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [ferry, "serve", *rate, "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", os.path.join(self.folder, "data"), "--config", config, "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(400):
            if request(self.port, "GET", "/healthz", timeout=1)[0] == 200:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"{ferry} did not start")

    def alive(self) -> bool:
        return self.proc.poll() is None and request(self.port, "GET", "/healthz", timeout=20)[0] == 200

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def concurrent_creations(ferry: str, quota_line: str, length: int, anonymous: bool = False) -> int:
    server = Server(ferry, "", quota_line) if anonymous else Server(ferry, quota_line)
    try:
        auth = {**TUS, "Upload-Length": str(length)} if anonymous else {"Authorization": "Bearer " + token("alice"), **TUS, "Upload-Length": str(length)}
        collection = "/files/open/" if anonymous else "/files/private/"
        statuses, threads = [], []
        barrier = threading.Barrier(40)

        def create():
            barrier.wait()
            statuses.append(request(server.port, "POST", collection, auth)[0])

        for _ in range(40):
            threads.append(threading.Thread(target=create))
            threads[-1].start()
        for thread in threads:
            thread.join()
        return sum(1 for status in statuses if status == 201)
    finally:
        server.stop()


def hostile(ferry: str, rounds: int = 8) -> int:
    """How many of `rounds` owner PATCHes were interrupted by strangers."""
    server = Server(ferry, "")
    interrupted = 0
    try:
        alice = "Bearer " + token("alice")
        bob = "Bearer " + token("bob")
        for _ in range(rounds):
            status, headers = request(server.port, "POST", "/files/private/", {**TUS, "Authorization": alice, "Upload-Length": "20000"})
            path = "/files/" + headers.get("location", "").rsplit("/", 1)[-1]
            owner = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            owner.sendall((f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nAuthorization: {alice}\r\n"
                           "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: 20000\r\n\r\n").encode()
                          + b"a" * 10000)
            time.sleep(0.2)
            for index in range(10):
                request(server.port, "HEAD", path, TUS, timeout=15)
                if index % 3 == 0:
                    request(server.port, "PATCH", path, {**TUS, "Authorization": bob, "Upload-Offset": "0",
                                                         "Content-Type": "application/offset+octet-stream"}, b"x", timeout=15)
                    request(server.port, "DELETE", path, {**TUS, "Authorization": bob}, timeout=15)
            try:
                owner.sendall(b"b" * 10000)
                answer = owner.recv(4096).decode(errors="replace")
            except OSError:
                answer = ""
            owner.close()
            if not (answer.startswith("HTTP/1.1 204") and "Upload-Offset: 20000" in answer.replace("upload-offset", "Upload-Offset")):
                interrupted += 1
        return interrupted
    finally:
        server.stop()


CRASHES = [
    ("RUFH offset + length", "PATCH", "/files/" + "ab" * 16,
     {"Upload-Draft-Interop-Version": "6", "Upload-Complete": "?1", "Upload-Offset": "1",
      "Content-Type": "application/partial-upload", "Content-Length": "9223372036854775807"}),
    ("Range end + 1", "GET", None, {"Range": "bytes=0-9223372036854775807"}),
    ("stats from=1e13", "GET", "/admin/uploads?from=1e13", {"Authorization": "Bearer " + ADMIN}),
    ("stats since=1e400d", "GET", "/admin/stats?since=1e400d", {"Authorization": "Bearer " + ADMIN}),
]


def crashes(ferry: str) -> list:
    outcomes = []
    for name, method, path, headers in CRASHES:
        server = Server(ferry, "")
        try:
            if path is None:
                _, created = request(server.port, "POST", "/files/", {**TUS, "Upload-Length": "3"})
                path = "/files/" + created.get("location", "").rsplit("/", 1)[-1]
                request(server.port, "PATCH", path, {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, b"abc")
            if "Content-Length" in headers:
                raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                raw.sendall((f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode())
                try:
                    status = raw.recv(64).decode(errors="replace").split(" ")[1]
                except (OSError, IndexError):
                    status = "none"
                raw.close()
            else:
                status = request(server.port, method, path, headers, timeout=10)[0]
            time.sleep(0.3)
            outcomes.append((name, status, server.alive()))
        finally:
            server.stop()
    return outcomes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ferry", action="append", required=True)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    quota_cases = [("open-uploads = 5", "open-uploads = 5", 100, 5, False), ("open-bytes = 500", "open-bytes = 500B", 100, 5, False),
                   ("creations-per-minute = 3", "creations-per-minute = 3", 100, 3, False),
                   ("anonymous open-uploads = 5", "open-uploads = 5", 100, 5, True)]
    figures = {ferry: {"quota": {name: [] for name, *_ in quota_cases}, "hostile": []} for ferry in args.ferry}
    for _ in range(args.trials):
        for ferry in args.ferry:
            for name, line, length, _, anonymous in quota_cases:
                figures[ferry]["quota"][name].append(concurrent_creations(ferry, line, length, anonymous))
            figures[ferry]["hostile"].append(hostile(ferry))
    for ferry in args.ferry:
        print(f"\n== {ferry}")
        for name, _, _, limit, _ in quota_cases:
            accepted = figures[ferry]["quota"][name]
            print(f"quota {name:26s} accepted of 40: {accepted} median {statistics.median(accepted)} (limit {limit}, "
                  f"overshoot {statistics.median(accepted) - limit})")
        print(f"owner PATCH under 10 hostile HEADs (+ PATCH/DELETE): interrupted {figures[ferry]['hostile']} of 8 per trial")
        for name, status, alive in crashes(ferry):
            print(f"crash request {name:22s}: answered {status}, server {'up' if alive else 'DOWN'}")


if __name__ == "__main__":
    sys.exit(main())
