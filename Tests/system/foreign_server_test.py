#!/usr/bin/env python3
"""Interop test: `ferry put` against tus servers from PyPI that Ferry did not come with.

Usage: python3 Tests/system/foreign_server_test.py --ferry PATH [--server NAME ...] [--keep]

Servers (each run under uvicorn on 127.0.0.1 with a free port; missing packages are
installed with `python3 -m pip install`, and the script says what it installs):
  fastapi-tusd  FastAPI router (TusRouter) storing <store>/<id> + <id>.info. Advertises
                creation-with-upload and md5/sha1/crc32 checksums (verifies none). Its
                OPTIONS handler never sets a status code, so with current FastAPI/uvicorn
                every OPTIONS ends with the connection closed and no response.
  tuspyserver   FastAPI router (create_tus_router) storing <store>/<id> + <id>.info;
                creation, creation-with-upload, creation-defer-length, termination, no checksum.
(flask-tus-cont was looked at and left out: it imports flask._app_ctx_stack /
_request_ctx_stack, which Flask 3 removed, and keeps its state in a Redis server.)

For each server: `ferry put --verbose` of 0 B, 1 KiB, 3 MiB and 20 MiB files; each upload's
stored bytes (read from the server's storage dir) must match by SHA-256. Then, if those
passed, a resume case (with filetype metadata, see META): a put through `ferry netem` is
kill -9'ed after > 2 MiB were
acknowledged and rerun with the same --state-dir; it must HEAD first, print the same URL,
send less than the file, and the stored bytes must match.

When a put fails, the script prints what broke: a summary of the --verbose request lines,
the first failing request, a direct probe of the server's OPTIONS answer, and the server's
last error lines. It does not work around a failure.
"""
import argparse
import collections
import glob
import http.client
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from urllib.parse import urlsplit

from support import MiB, Procs, check, free_port, random_file, request_lines, results, sha256, skip, start_netem, tail

FERRY = None

FASTAPI_TUSD_APP = r'''
import sys, uvicorn
from fastapi import FastAPI
from fastapi_tusd import TusRouter
store, port = sys.argv[1], int(sys.argv[2])
app = FastAPI()
# As its README mounts it: routes at "" and "/{uuid}" under the prefix; Location "/files/<id>".
app.include_router(TusRouter(store_dir=store, location="/files"), prefix="/files")
uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")
'''

TUSPYSERVER_APP = r'''
import sys, uvicorn
from fastapi import FastAPI
from tuspyserver import create_tus_router
store, port = sys.argv[1], int(sys.argv[2])
app = FastAPI()
app.include_router(create_tus_router(prefix="files", files_dir=store))
uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")
'''

SERVERS = {
    "fastapi-tusd": {
        "modules": [("fastapi_tusd", "fastapi-tusd"), ("fastapi", "fastapi"), ("uvicorn", "uvicorn")],
        "app": FASTAPI_TUSD_APP,
        "path": "/files",  # its collection route has no trailing slash ("/files/" is a 307)
    },
    "tuspyserver": {
        "modules": [("tuspyserver", "tuspyserver"), ("fastapi", "fastapi"), ("uvicorn", "uvicorn")],
        "app": TUSPYSERVER_APP,
        "path": "/files/",
    },
}
SIZES = [("0 B", 0), ("1 KiB", 1024), ("3 MiB", 3 * MiB), ("20 MiB", 20 * MiB)]
# The resume case sends a filetype too: tuspyserver answers HEAD with 400 ("Upload-Metadata
# missing required field: filetype") for an upload created without one, though tus makes
# metadata optional. (Without it the rerun fails with "HEAD -> 400", and the resume record
# stays, so every later `ferry put` of that file fails the same way.)
META = ["--metadata", "filetype=application/octet-stream"]


def ensure_packages(modules):
    """Installs the pip packages whose modules are missing; returns an error string or None."""
    missing = []
    for module, package in modules:
        if importlib.util.find_spec(module) is None and package not in missing:
            missing.append(package)
    if not missing:
        return None
    print(f"      installing: {' '.join(missing)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *missing],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    importlib.invalidate_caches()
    if proc.returncode != 0:
        return f"pip install {' '.join(missing)} failed: {tail(proc.stderr, 8)}"
    return None


def start_foreign(procs, name, tmp, store):
    spec = SERVERS[name]
    app = os.path.join(tmp, f"{name}_app.py")
    with open(app, "w") as f:
        f.write(spec["app"])
    port = free_port()
    log_path = os.path.join(tmp, f"{name}.log")
    with open(log_path, "ab") as log:
        proc = procs.spawn([sys.executable, app, store, str(port)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return port, log_path
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not start (exit {proc.poll()}):\n      {tail(open(log_path, errors='replace').read(), 15)}")


def put(procs, args, timeout, tmp, tag):
    """Runs `ferry put ARGS --verbose`; returns (rc, stdout, stderr, seconds)."""
    out_path, err_path = os.path.join(tmp, f"{tag}.out"), os.path.join(tmp, f"{tag}.err")
    began = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = procs.spawn([FERRY, "put", *args, "--verbose"], stdout=out, stderr=err)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            procs.kill(proc)
    return (proc.returncode, open(out_path, errors="replace").read(), open(err_path, errors="replace").read(),
            time.monotonic() - began)


def outcome(rest):
    """'-> 204' / 'failed: transport: …' from the tail of a request line."""
    m = re.match(r"-> (\d+)", rest)
    if m:
        return m.group(1)
    m = re.match(r"failed after [\d.]+ seconds: (.*)", rest)
    return "failed: " + (m.group(1) if m else rest)


def probe_options(port, path):
    """What the server answers to a plain tus OPTIONS, straight from http.client."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("OPTIONS", path, headers={"Tus-Resumable": "1.0.0"})
        resp = conn.getresponse()
        resp.read()
        tus = {k: v for k, v in resp.getheaders() if k.lower().startswith(("tus-", "location"))}
        conn.close()
        return f"{resp.status} {resp.reason} {tus}"
    except Exception as error:  # RemoteDisconnected etc.: that is the finding
        return f"no response: {type(error).__name__}: {error}"


def diagnose(name, port, path, log_path, stderr, shown):
    """Prints what broke, once per server and kind of failure."""
    lines = request_lines(stderr)
    counts = collections.Counter((method, outcome(rest)) for _, method, _, _, rest in lines)
    first_bad = next(((t, m, s, e, r) for t, m, s, e, r in lines
                      if not re.match(r"-> (2\d\d)", r) or (m == "POST" and not r.startswith("-> 201"))), None)
    key = (counts and next(iter(counts)), first_bad and (first_bad[1], outcome(first_bad[4])))
    if key in shown:
        print("      (same failure as above)", flush=True)
        return
    shown.add(key)
    print("      requests: " + ", ".join(f"{m} {o} ×{n}" for (m, o), n in counts.items()), flush=True)
    if first_bad:
        t, m, s, e, r = first_bad
        print(f"      first failing request: [{t:.3f}s] {m}{f' {s}..<{e}' if s is not None else ''} {r}", flush=True)
    if lines and all(m == "OPTIONS" for _, m, _, _, _ in lines):
        print("      ferry never got past discovery: every request was an OPTIONS, retried until --deadline "
              "(a 4xx OPTIONS makes it fall back to core tus; a 5xx or a closed connection does not)", flush=True)
    print(f"      direct probe: OPTIONS {path} -> {probe_options(port, path)}", flush=True)
    log = open(log_path, errors="replace").read().splitlines()
    errors = [l for l in log if re.search(r"Error|Exception|Traceback", l) and "Logging error" not in l]
    if errors:
        print("      server log: " + " | ".join(dict.fromkeys(errors[-4:])), flush=True)
    print("      ferry --verbose:\n      " + tail(stderr, 14), flush=True)


def stored_path(store, url):
    return os.path.join(store, urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])


def run_server(name, procs, tmp, source_files):
    print(f"== {name}", flush=True)
    spec = SERVERS[name]
    error = ensure_packages(spec["modules"])
    if error:
        check(False, f"{name}: install", error)
        return
    store = os.path.join(tmp, f"{name}-store")
    os.makedirs(store, exist_ok=True)
    port, log_path = start_foreign(procs, name, tmp, store)
    endpoint = f"http://127.0.0.1:{port}{spec['path']}"
    print(f"      endpoint {endpoint}; OPTIONS probe: {probe_options(port, spec['path'])}", flush=True)
    shown = set()
    all_ok = True
    for label, size in SIZES:
        source = source_files[size]
        rc, out, err, took = put(procs, [source, endpoint, "--no-resume", "--deadline", "10s"], 60, tmp,
                                 f"{name}-{size}")
        url = out.strip().splitlines()[-1] if out.strip() else ""
        if not check(rc == 0 and url.startswith("http"), f"{name}: ferry put {label} succeeds ({took:.1f} s)",
                     f"exit {rc}; last stderr line: {err.strip().splitlines()[-1] if err.strip() else ''}"):
            diagnose(name, port, spec["path"], log_path, err, shown)
            all_ok = False
            continue
        path = stored_path(store, url)
        ok = os.path.exists(path) and os.path.getsize(path) == size and sha256(path) == sha256(source)
        all_ok &= check(ok, f"{name}: stored bytes of the {label} upload match by SHA-256",
                        f"{path}: {os.path.getsize(path) if os.path.exists(path) else 'missing'} bytes")
    if not all_ok:
        skip(f"{name}: resume after kill -9", "plain uploads fail")
        return
    resume_case(name, procs, tmp, store, port, spec["path"])


def resume_case(name, procs, tmp, store, port, path):
    proxy = free_port()
    start_netem(procs, FERRY, proxy, port, "3g", 16, os.path.join(tmp, f"{name}-netem.log"))  # ~2 MB/s
    size = 16 * MiB
    source = random_file(os.path.join(tmp, f"{name}-resume.bin"), size)
    endpoint = f"http://127.0.0.1:{proxy}{path}"
    state = os.path.join(tmp, f"{name}-state")
    err_path = os.path.join(tmp, f"{name}-resume1.err")
    with open(os.path.join(tmp, f"{name}-resume1.out"), "wb") as out, open(err_path, "wb") as err:
        first = procs.spawn([FERRY, "put", source, endpoint, "--state-dir", state, "--verbose", "--deadline", "2m", *META],
                            stdout=out, stderr=err)
    record, began = {}, time.monotonic()
    while time.monotonic() - began < 60 and first.poll() is None:
        for p in glob.glob(os.path.join(state, "*.json")):
            try:
                record = json.load(open(p))
            except (OSError, ValueError):
                pass
        if record.get("acknowledged", 0) > 2 * MiB:
            break
        time.sleep(0.2)
    finished = first.poll() is not None
    procs.kill(first)
    url = record.get("uploadURL")
    print(f"      first put killed after {time.monotonic() - began:.1f} s, acknowledged {record.get('acknowledged')}", flush=True)
    if not check(url and record.get("acknowledged", 0) > 2 * MiB and not finished,
                 f"{name}: first put acknowledged > 2 MiB and was killed mid-upload",
                 tail(open(err_path, errors="replace").read(), 12)):
        return
    rc, out, err, took = put(procs, [source, endpoint, "--state-dir", state, "--deadline", "2m", *META], 150, tmp,
                             f"{name}-resume2")
    printed = out.strip().splitlines()[-1] if out.strip() else ""
    if not check(rc == 0, f"{name}: the rerun succeeds ({took:.1f} s)", f"exit {rc}"):
        diagnose(name, port, path, os.path.join(tmp, f"{name}.log"), err, set())
        return
    lines = request_lines(err)
    sent = sum(e - s for _, m, s, e, _ in lines if m in ("PATCH", "POST") and s is not None)
    check(printed == url and lines and lines[0][1] == "HEAD" and sent < size,
          f"{name}: the rerun HEADs the stored URL, prints it, and sends less than the file",
          f"printed {printed!r} vs {url!r}; first request {lines[0][1] if lines else None}; sent {sent} of {size}\n      "
          + tail(err, 10))
    stored = stored_path(store, printed or url)
    check(os.path.exists(stored) and sha256(stored) == sha256(source), f"{name}: resumed upload's stored bytes match by SHA-256",
          f"{stored}: {os.path.getsize(stored) if os.path.exists(stored) else 'missing'} bytes of {size}")


def main():
    global FERRY
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ferry", required=True, help="path to the ferry binary")
    parser.add_argument("--server", action="append", choices=sorted(SERVERS), help="run only these servers")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, stores)")
    args = parser.parse_args()
    FERRY = os.path.abspath(args.ferry)

    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="ferry-foreign-")
    try:
        sources = {size: random_file(os.path.join(tmp, f"src-{size}.bin"), size) for _, size in SIZES}
        for name in args.server or list(SERVERS):
            procs = Procs()
            try:
                run_server(name, procs, tmp, sources)
            except Exception as error:
                check(False, f"{name}: {type(error).__name__}: {error}", tail(traceback.format_exc(), 12))
            finally:
                procs.kill_all()
    finally:
        if args.keep:
            print(f"      kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"({time.monotonic() - started:.0f} s)")
    skipped = f", {results['skipped']} skipped" if results["skipped"] else ""
    print(f"foreign server test: {results['passed']} passed, {results['failed']} failed{skipped}")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
