#!/usr/bin/env python3
"""Interop test: Ferry against the official Python tus client, tuspy (import tusclient).

Usage: python3 Tests/system/interop_test.py --ferry PATH [--seed N]

Uploads files of 0 B, 1 B, 1 MiB and 64 MiB whole and in 5 MiB chunks, checks each via HEAD
(offset, length, echoed Upload-Metadata) and GET + SHA-256; then kills a tuspy client process
mid-upload and resumes with a new tuspy Uploader from its FileStorage url_storage.
Needs `pip install tuspy`; installs nothing itself.
"""
import argparse
import base64
import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import requests

from support import sha256 as sha256_file

try:
    from tusclient.client import TusClient
    from tusclient.storage.filestorage import FileStorage
except ImportError:
    TusClient = None

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
CASE_TIMEOUT = 300  # seconds per case

# The resumable client, run as its own process so it can be kill -9'ed mid-upload.
CHILD = r'''
import sys, time
from tusclient.client import TusClient
from tusclient.storage.filestorage import FileStorage
endpoint, path, db, name = sys.argv[1:5]
uploader = TusClient(endpoint).uploader(
    file_path=path, chunk_size=1024 * 1024, store_url=True,
    url_storage=FileStorage(db), metadata={"filename": name})
size = uploader.get_file_size()
uploader.upload_chunk()  # creates the upload (stored in FileStorage), then sends 1 MiB
print("url", uploader.url, flush=True)
print("offset", uploader.offset, flush=True)
while uploader.offset < size:
    time.sleep(0.05)
    uploader.upload_chunk()
    print("offset", uploader.offset, flush=True)
print("done", flush=True)
'''


class CaseTimeout(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ferry(binary, data_dir, port, log):
    """Starts ferry and waits until /healthz answers 200; returns the Popen."""
    proc = subprocess.Popen(
        [binary, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", data_dir,
         "--log-level", "warning"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.05)
    code = proc.poll()
    kill(proc)
    raise RuntimeError(f"ferry did not become ready on port {port} (exit code {code})")


def kill(proc):
    """kill -9 a process we started (by PID) and reap it."""
    if proc is not None and proc.poll() is None:
        proc.kill()
    if proc is not None:
        proc.wait()


def make_file(directory, name, size, seed):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(random.Random(seed).randbytes(size))
    return path


def parse_metadata(header):
    """Upload-Metadata 'k b64,k2 b64' -> {k: decoded str}."""
    result = {}
    for pair in filter(None, (p.strip() for p in (header or "").split(","))):
        key, _, value = pair.partition(" ")
        result[key] = base64.b64decode(value).decode("utf-8")
    return result


def head(url):
    """HEAD an upload; returns (offset, length, metadata dict)."""
    r = requests.head(url, headers=TUS, timeout=30)
    assert r.status_code in (200, 204), f"HEAD {url} answered {r.status_code}"
    assert r.headers.get("Tus-Resumable") == "1.0.0", f"HEAD lacks Tus-Resumable: {dict(r.headers)}"
    offset = int(r.headers["Upload-Offset"])
    length = r.headers.get("Upload-Length")
    return offset, (int(length) if length is not None else None), parse_metadata(r.headers.get("Upload-Metadata"))


def verify_upload(url, path, name):
    """Checks HEAD (complete, metadata echoed) and that GET returns exactly the file."""
    size = os.path.getsize(path)
    offset, length, metadata = head(url)
    assert (offset, length) == (size, size), f"HEAD offset/length {offset}/{length}, expected {size}/{size}"
    assert metadata.get("filename") == name, f"HEAD Upload-Metadata {metadata!r} lacks filename {name!r}"
    with requests.get(url, headers=TUS, stream=True, timeout=60) as r:
        assert r.status_code == 200, f"GET answered {r.status_code}"
        h, got = hashlib.sha256(), 0
        for block in r.iter_content(MiB):
            h.update(block)
            got += len(block)
    assert got == size, f"GET returned {got} bytes, expected {size}"
    assert h.hexdigest() == sha256_file(path), f"GET SHA-256 {h.hexdigest()} differs from the file"


def upload_case(endpoint, path, name, chunk_size):
    """Uploads a file with tuspy in chunks of `chunk_size`, then verifies it."""
    uploader = TusClient(endpoint).uploader(file_path=path, chunk_size=chunk_size, metadata={"filename": name})
    uploader.upload()
    assert uploader.url, "tuspy got no upload URL"
    assert uploader.offset == os.path.getsize(path), f"tuspy ended at offset {uploader.offset}"
    verify_upload(uploader.url, path, name)


def resume_case(endpoint, tmp, seed):
    """kill -9 a tuspy client process mid-upload, then resume from its FileStorage URL."""
    size, name = 32 * MiB, "resume-ü.bin"
    path = make_file(tmp, "resume.bin", size, seed)
    db = os.path.join(tmp, "tus-urls.json")
    script = os.path.join(tmp, "child.py")
    with open(script, "w") as f:
        f.write(CHILD)
    child = subprocess.Popen([sys.executable, script, endpoint, path, db, name],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url, acked, kill_at = None, 0, random.Random(seed).randint(6, 12) * MiB
    try:
        for line in child.stdout:
            word, _, value = line.strip().partition(" ")
            if word == "url":
                url = value
            elif word == "offset":
                acked = int(value)
                if acked >= kill_at:
                    time.sleep(random.Random(seed).uniform(0, 0.06))  # maybe mid-request
                    break
            elif word == "done":
                break
    finally:
        kill(child)
        stderr = child.stderr.read()
        child.stdout.close()
        child.stderr.close()
    assert url, f"the child client printed no URL; stderr:\n{stderr}"
    assert acked < size, "the child client finished before it could be killed"
    offset, length, metadata = head(url)
    print(f"  killed client at acknowledged offset {acked}; server offset {offset}")
    assert offset > 0, "server offset is 0 after the client uploaded some chunks"
    assert offset >= acked, f"server offset {offset} < offset {acked} it acknowledged to the client"
    assert length == size and metadata.get("filename") == name, f"HEAD length {length}, metadata {metadata!r}"

    storage = FileStorage(db)
    try:
        uploader = TusClient(endpoint).uploader(file_path=path, chunk_size=5 * MiB, store_url=True,
                                                url_storage=storage, metadata={"filename": name})
        assert uploader.url == url, f"FileStorage gave {uploader.url!r}, the child used {url!r}"
        assert uploader.offset == offset, f"tuspy resumed at {uploader.offset}, HEAD said {offset}"
        uploader.upload()
    finally:
        storage.close()
    verify_upload(url, path, name)


def run_case(label, func, *args):
    """Runs one case under a time limit; returns True if it passed."""
    def on_alarm(signum, frame):
        raise CaseTimeout(f"timed out after {CASE_TIMEOUT}s")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(CASE_TIMEOUT)
    start = time.monotonic()
    try:
        func(*args)
        print(f"PASS {label} ({time.monotonic() - start:.1f}s)", flush=True)
        return True
    except Exception as e:
        print(f"FAIL {label}: {type(e).__name__}: {e}", flush=True)
        if not isinstance(e, (AssertionError, CaseTimeout)):
            traceback.print_exc()
        return False
    finally:
        signal.alarm(0)


def run(args, tmp):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/files/"
    data_dir = os.path.join(tmp, "data")
    os.mkdir(data_dir)
    log_path = os.path.join(tmp, "ferry.log")
    results, proc = [], None
    with open(log_path, "wb") as log:
        try:
            proc = start_ferry(args.ferry, data_dir, port, log)
            sizes = [("0B", 0), ("1B", 1), ("1MiB", MiB), ("64MiB", 64 * MiB)]
            for i, (label, size) in enumerate(sizes):
                path = make_file(tmp, f"file-{label}.bin", size, args.seed + i)
                name = f"interop-{label}-größe.bin"
                results.append(run_case(f"{label} whole-file", upload_case, endpoint, path, name, size + 1))
                results.append(run_case(f"{label} 5MiB chunks", upload_case, endpoint, path, name, 5 * MiB))
                os.remove(path)
            results.append(run_case("resume after kill -9 of the client", resume_case, endpoint, tmp, args.seed))
        except Exception as e:
            print(f"FAIL setup: {type(e).__name__}: {e}", flush=True)
            results.append(False)
        finally:
            kill(proc)
    if not all(results):
        with open(log_path, "rb") as f:
            print("--- ferry log tail ---\n" + b"".join(f.readlines()[-40:]).decode("utf-8", "replace"))
    passed = sum(results)
    print(f"interop test: {passed} passed, {len(results) - passed} failed", flush=True)
    return 0 if passed == len(results) else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ferry", required=True, help="path to the ferry binary")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if TusClient is None:
        print("interop test: tuspy is not installed (pip install tuspy)")
        print("interop test: 0 passed, 1 failed")
        return 2
    if not os.access(args.ferry, os.X_OK):
        print(f"interop test: ferry binary not found or not executable: {args.ferry}")
        print("interop test: 0 passed, 1 failed")
        return 2
    tmp = tempfile.mkdtemp(prefix="ferry-interop-")
    try:
        return run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
