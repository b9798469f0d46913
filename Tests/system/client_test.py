#!/usr/bin/env python3
"""System test of the `ferry put` client against a real `ferry serve`, through `ferry netem`.

Usage: python3 Tests/system/client_test.py --ferry PATH [--case NAME ...] [--keep]

Cases:
  client-restart  a put through a slow link is kill -9'ed after the server acknowledged
                  > 4 MiB; a rerun with the same --state-dir HEADs the stored URL first,
                  prints the same upload URL, sends less than the file, and the download
                  matches by SHA-256.
  client-restart-rufh  the same over IETF Resumable Uploads (`ferry put --protocol rufh`).
  server-restart  the server is kill -9'ed ~2 s into a slow put and restarted on the same
                  port and data dir; the put (--deadline 5m) still succeeds and the download
                  matches.
  split-restart   a 64 MiB put through a per-flow-limited link splits into parallel streams;
                  it is kill -9'ed once the plan lists >= 2 streams with URLs; a rerun HEADs
                  every stream, sends only what the server lacks, and the final upload matches.
  rejected        a 2 MiB put to a server with --max-size 1M fails at once (no retry loop)
                  with a non-zero exit and a message naming 413 / ERR_MAX_SIZE_EXCEEDED.
  status-polling  `ferry status` polled once a second during a slow put must not stall it
                  (a HEAD interrupts the in-flight PATCH; what it received must be kept).
  instant         `ferry put` of a 3 MiB file, then of a copy under another name (tus and
                  RUFH): the copy prints "stored instantly", sends no byte of the file (its
                  requests: the announcing POST and the proof PATCH with no body), gets an
                  upload URL of its own, and the download matches.
  queue-restart   `ferry put DIR URL` with 24 files through a slow link: voice messages go
                  first; kill -9'ed once some are saved done; a rerun prints `PATH<TAB>URL`
                  for all 24 (the same URLs for those done), sends none of those again, and
                  every download matches.

Every process it starts is killed by PID; all traffic stays on 127.0.0.1. Runs in ~2 minutes.
"""
import argparse
import glob
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from urllib.parse import urlsplit, urlunsplit

import support
from support import CaseError, MiB, Procs, check, free_port, random_file, request_lines, results, sha256, tail

FERRY = None


def direct(url, port):
    """The same upload URL, addressed to the server's own port instead of the proxy's."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"127.0.0.1:{port}", parts.path, parts.query, parts.fragment))


def run_ferry(procs, args, timeout, stdout_path=None, stderr_path=None):
    """Runs `ferry ARGS` to completion (killed after `timeout`); returns (rc, stdout, stderr, seconds)."""
    out = open(stdout_path, "wb") if stdout_path else subprocess.PIPE
    err = open(stderr_path, "wb") if stderr_path else subprocess.PIPE
    start = time.monotonic()
    proc = procs.spawn([FERRY] + args, stdout=out, stderr=err)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        procs.kill(proc)
        stdout, stderr = proc.communicate()
    finally:
        for f in (out, err):
            if f is not subprocess.PIPE:
                f.close()
    elapsed = time.monotonic() - start
    if stdout_path:
        stdout = open(stdout_path, "rb").read()
    if stderr_path:
        stderr = open(stderr_path, "rb").read()
    return proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"), elapsed


def healthy(port):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def start_server(procs, port, data_dir, log_path, extra=()):
    """`ferry serve` on 127.0.0.1:port; waits for /healthz (retries a start that exits, e.g. bind)."""
    for _ in range(5):
        with open(log_path, "ab") as log:
            proc = procs.spawn(
                [FERRY, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", data_dir,
                 "--log-level", "warning", *extra], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if healthy(port):
                return proc
            time.sleep(0.05)
        procs.kill(proc)
        time.sleep(1)
    raise CaseError(f"ferry serve did not become healthy on port {port}; see {log_path}")


def start_netem(procs, listen, target, profile, scale, log_path):
    return support.start_netem(procs, FERRY, listen, target, profile, scale, log_path)


def status(procs, url):
    """`ferry status URL` → dict (offset/length as int when known), or None on failure."""
    rc, out, _, _ = run_ferry(procs, ["status", url], timeout=20)
    if rc != 0:
        return None
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition(": ")
        fields[key.strip()] = value.strip()
    for key in ("offset", "length"):
        if fields.get(key, "").isdigit():
            fields[key] = int(fields[key])
    return fields


def fetch_and_compare(procs, url, source, tmp, what):
    target = os.path.join(tmp, "download.bin")
    if os.path.exists(target):
        os.remove(target)
    rc, _, err, _ = run_ferry(procs, ["get", url, target], timeout=120)
    if not check(rc == 0 and os.path.exists(target), f"{what}: ferry get succeeds", err.strip()[-500:]):
        return
    check(sha256(target) == sha256(source), f"{what}: downloaded SHA-256 equals the file's",
          f"{os.path.getsize(target)} bytes downloaded, {os.path.getsize(source)} expected")
    os.remove(target)


def first_json(state_dir, pattern):
    """The first readable JSON file matching `pattern` in the state dir ({} when there is none)."""
    for path in glob.glob(os.path.join(state_dir, pattern)):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            pass
    return {}


def state_record(state_dir):
    """The (single) resume record in the state dir — uploadURL, acknowledged, … — if written yet."""
    return first_json(state_dir, "*.json")


def state_url(state_dir):
    return state_record(state_dir).get("uploadURL")


# --- cases -----------------------------------------------------------------------------------

def case_client_restart(procs, tmp, protocol="tus"):
    print(f"== client killed and restarted resumes (over {protocol})", flush=True)
    flags = ["--protocol", protocol]
    port, proxy = free_port(), free_port()
    data, state = os.path.join(tmp, "data"), os.path.join(tmp, "state")
    start_server(procs, port, data, os.path.join(tmp, "server.log"))
    start_netem(procs, proxy, port, "3g", 16, os.path.join(tmp, "netem.log"))  # ~2 MB/s, 250 ms
    size = 24 * MiB
    source = random_file(os.path.join(tmp, "big.bin"), size)
    endpoint = f"http://127.0.0.1:{proxy}/files/"

    err1 = os.path.join(tmp, "put1.err")
    with open(os.path.join(tmp, "put1.out"), "wb") as out, open(err1, "wb") as err:
        put = procs.spawn([FERRY, "put", source, endpoint, "--state-dir", state, "--verbose", "--deadline", "5m", *flags],
                          stdout=out, stderr=err)
    # The server's acknowledgements are read from the resume record (rewritten on every
    # 201/204); polling `ferry status` is exercised by the status-polling case.
    url, offset, began = None, 0, time.monotonic()
    while time.monotonic() - began < 90 and put.poll() is None:
        record = state_record(state)
        url, offset = record.get("uploadURL", url), record.get("acknowledged", offset)
        if url and offset > 4 * MiB:
            break
        time.sleep(0.2)
    finished_early = put.poll() is not None
    procs.kill(put)  # kill -9
    first_log = open(err1, errors="replace").read()
    print(f"      first run killed after {time.monotonic() - began:.1f} s; acknowledged {offset}; url {url}", flush=True)
    if not check(url is not None and offset > 4 * MiB and not finished_early,
                 "first run: server acknowledged > 4 MiB while the put was still running",
                 f"url={url} offset={offset} exited={finished_early}\n      {tail(first_log)}"):
        return
    check(state_url(state) == url, "first run: the resume record survives kill -9 with the upload URL")

    st = status(procs, direct(url, port))
    after_kill = st.get("offset") if st else None
    check(isinstance(after_kill, int) and offset <= after_kill < size and st.get("state") == "incomplete",
          "after kill: ferry status shows an incomplete upload at offset >= the one seen before", f"status={st}")

    err2 = os.path.join(tmp, "put2.err")
    rc, out, log, took = run_ferry(
        procs, ["put", source, endpoint, "--state-dir", state, "--verbose", "--deadline", "5m", *flags],
        timeout=120, stdout_path=os.path.join(tmp, "put2.out"), stderr_path=err2)
    printed = out.strip().splitlines()[-1] if out.strip() else ""
    print(f"      second run: exit {rc} in {took:.1f} s", flush=True)
    if not check(rc == 0, "second run: ferry put exits 0", tail(log)):
        return
    check(printed == url, "second run: prints the first run's upload URL", f"printed {printed!r}, first {url!r}")
    lines = request_lines(log)
    check(bool(lines) and lines[0][1] == "HEAD", "second run: its first request is a HEAD of the stored URL",
          f"first request lines: {[l[1] for l in lines[:3]]}")
    sent = sum(end - start for _, method, start, end, _ in lines
               if method in ("PATCH", "POST") and start is not None)
    first_patch = next((start for _, method, start, _, _ in lines if method == "PATCH" and start is not None), None)
    print(f"      second run sent {sent} bytes of {size}; first PATCH from {first_patch}", flush=True)
    check(sent < size and first_patch is not None and first_patch >= after_kill,
          "second run: resumes from the server's offset and sends less than the file",
          f"sent={sent} first_patch={first_patch} offset_after_kill={after_kill}")
    check(not glob.glob(os.path.join(state, "*.json")), "second run: the resume record is removed once complete")
    st = status(procs, direct(url, port))
    check(st is not None and st.get("offset") == size and st.get("state") == "complete",
          "the upload is complete on the server", f"status={st}")
    fetch_and_compare(procs, direct(url, port), source, tmp, "client restart")


def case_server_restart(procs, tmp):
    print("== server restarted mid-upload is survived", flush=True)
    port, proxy = free_port(), free_port()
    data, state = os.path.join(tmp, "data"), os.path.join(tmp, "state")
    server_log = os.path.join(tmp, "server.log")
    server = start_server(procs, port, data, server_log)
    start_netem(procs, proxy, port, "3g", 16, os.path.join(tmp, "netem.log"))  # 24 MiB ≈ 12+ s
    size = 24 * MiB
    source = random_file(os.path.join(tmp, "big.bin"), size)
    endpoint = f"http://127.0.0.1:{proxy}/files/"

    err_path, out_path = os.path.join(tmp, "put.err"), os.path.join(tmp, "put.out")
    began = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        put = procs.spawn([FERRY, "put", source, endpoint, "--state-dir", state, "--verbose", "--deadline", "5m"],
                          stdout=out, stderr=err)
    # Kill ~2 s in, once the server has acknowledged some bytes (so it must recover them), and
    # a little later so that the next PATCH is in flight.
    time.sleep(2)
    while time.monotonic() - began < 10 and put.poll() is None and not state_record(state).get("acknowledged"):
        time.sleep(0.1)
    time.sleep(0.7)
    running = put.poll() is None
    acknowledged = state_record(state).get("acknowledged") or 0  # no HEAD: it would supersede the PATCH
    procs.kill(server)  # kill -9
    print(f"      server killed {time.monotonic() - began:.1f} s in; put running={running}; acknowledged then {acknowledged}",
          flush=True)
    time.sleep(1.5)
    start_server(procs, port, data, server_log)
    print(f"      server restarted {time.monotonic() - began:.1f} s in", flush=True)
    try:
        put.wait(timeout=150)
    except subprocess.TimeoutExpired:
        procs.kill(put)
    log = open(err_path, errors="replace").read()
    out = open(out_path, errors="replace").read().strip()
    print(f"      put exit {put.returncode} after {time.monotonic() - began:.1f} s", flush=True)
    if not check(running, "the put was still running when the server was killed", tail(log)):
        return
    if not check(put.returncode == 0, "ferry put exits 0 across the server restart", tail(log)):
        return
    lines = request_lines(log)
    failed = [l for l in lines if "failed after" in l[4] or re.search(r"-> [5]\d\d", l[4])]
    summary = next((l for l in log.splitlines() if l.startswith("uploaded ")), "")
    print(f"      {len(lines)} requests, {len(failed)} failed; {summary}", flush=True)
    check(bool(failed) or (summary and "(0 failed" not in summary),
          "the client saw the outage (at least one failed request)", tail(log))
    heads = [int(m.group(1)) for l in lines if l[1] == "HEAD" for m in [re.search(r"-> 200 offset (\d+)", l[4])] if m]
    check(bool(heads) and min(heads) >= acknowledged,
          "after the restart the server still has every byte it acknowledged before the kill",
          f"acknowledged before kill {acknowledged}; HEAD offsets after {heads}")
    printed = out.splitlines()[-1] if out else ""
    check(printed.startswith("http://"), "ferry put prints the upload URL last", f"stdout: {out[-300:]!r}")
    if printed.startswith("http://"):
        fetch_and_compare(procs, direct(printed, port), source, tmp, "server restart")


def case_rejected(procs, tmp):
    print("== a rejected upload fails clearly", flush=True)
    port = free_port()
    start_server(procs, port, os.path.join(tmp, "data"), os.path.join(tmp, "server.log"), extra=("--max-size", "1M"))
    source = random_file(os.path.join(tmp, "two.bin"), 2 * MiB)
    rc, out, err, took = run_ferry(
        procs, ["put", source, f"http://127.0.0.1:{port}/files/", "--no-resume", "--verbose"], timeout=60)
    print(f"      exit {rc} in {took:.2f} s", flush=True)
    check(rc != 0, "ferry put exits non-zero", f"stdout: {out[-300:]!r}")
    check("413" in err or "ERR_MAX_SIZE_EXCEEDED" in err, "stderr names 413 / ERR_MAX_SIZE_EXCEEDED", tail(err))
    lines = request_lines(err)
    creations = [l for l in lines if l[1] in ("POST", "PATCH")]
    check(took < 10 and len(creations) <= 1, "it fails at once, without a retry loop",
          f"{took:.1f} s, {len(creations)} POST/PATCH requests\n      {tail(err)}")
    check(not out.strip(), "nothing is printed on stdout (no upload URL)", f"stdout: {out!r}")
    if "Usage:" in err:
        print("      note: the failure message is followed by ArgumentParser's usage text "
              f"(exit {rc}, EX_USAGE) although the command line was valid", flush=True)


def case_status_polling(procs, tmp):
    """Opt-in (known failing): a monitor polling `ferry status` once a second must not stall
    an upload. Each HEAD supersedes the in-flight PATCH (409), and the server discards a
    superseded PATCH that carries Upload-Checksum even when its whole body arrived."""
    print("== status polling does not stall an upload (opt-in)", flush=True)
    port, proxy = free_port(), free_port()
    state = os.path.join(tmp, "state")
    start_server(procs, port, os.path.join(tmp, "data"), os.path.join(tmp, "server.log"))
    start_netem(procs, proxy, port, "3g", 16, os.path.join(tmp, "netem.log"))  # unpolled: ~9 s
    size = 16 * MiB
    source = random_file(os.path.join(tmp, "big.bin"), size)
    err_path = os.path.join(tmp, "put.err")
    began = time.monotonic()
    with open(os.path.join(tmp, "put.out"), "wb") as out, open(err_path, "wb") as err:
        put = procs.spawn([FERRY, "put", source, f"http://127.0.0.1:{proxy}/files/", "--state-dir", state,
                           "--verbose", "--deadline", "5m"], stdout=out, stderr=err)
    offsets = []
    while time.monotonic() - began < 45 and put.poll() is None:
        url = state_url(state)
        if url:
            st = status(procs, direct(url, port))
            if st and isinstance(st.get("offset"), int):
                offsets.append((round(time.monotonic() - began, 1), st["offset"]))
        time.sleep(1)
    done = put.poll() is not None
    procs.kill(put)
    log = open(err_path, errors="replace").read()
    conflicts = sum(1 for l in request_lines(log) if l[1] == "PATCH" and "-> 409" in l[4])
    print(f"      {time.monotonic() - began:.1f} s; put finished={done} rc={put.returncode}; "
          f"PATCH 409s: {conflicts}; polled offsets: {offsets[:12]}", flush=True)
    check(done and put.returncode == 0, "the put finishes within 45 s while status is polled every second",
          tail(log, 12))


def split_plan(state_dir):
    """The adaptive parallel upload's plan in the state dir ({} when there is none)."""
    return first_json(state_dir, "*.split.json")


def case_split_restart(procs, tmp):
    print("== an upload split over parallel streams survives kill -9 of the client", flush=True)
    port, proxy = free_port(), free_port()
    data, state = os.path.join(tmp, "data"), os.path.join(tmp, "state")
    start_server(procs, port, data, os.path.join(tmp, "server.log"))
    # 5 MB/s uplink, 1.25 MB/s per connection: adaptive parallelism adds streams.
    start_netem(procs, proxy, port, "per-flow", 2, os.path.join(tmp, "netem.log"))
    size = 64 * MiB
    source = random_file(os.path.join(tmp, "big.bin"), size)
    endpoint = f"http://127.0.0.1:{proxy}/files/"

    err1 = os.path.join(tmp, "put1.err")
    with open(os.path.join(tmp, "put1.out"), "wb") as out, open(err1, "wb") as err:
        put = procs.spawn([FERRY, "put", source, endpoint, "--state-dir", state, "--verbose", "--deadline", "5m"],
                          stdout=out, stderr=err)
    plan, began, split_at = {}, time.monotonic(), None
    while time.monotonic() - began < 60 and put.poll() is None:
        plan = split_plan(state)
        segments = plan.get("segments", [])
        if len(segments) >= 2 and all(s.get("uploadURL") for s in segments):
            split_at = split_at or time.monotonic()
            if time.monotonic() - split_at > 2:
                break
        time.sleep(0.2)
    finished_early = put.poll() is not None
    procs.kill(put)
    first_log = open(err1, errors="replace").read()
    segments = split_plan(state).get("segments", [])
    print(f"      first run killed after {time.monotonic() - began:.1f} s with {len(segments)} streams", flush=True)
    if not check(len(segments) >= 2 and not finished_early,
                 "first run: adaptive parallelism split the upload (plan with >= 2 streams persisted)",
                 f"plan={plan} exited={finished_early}\n      {tail(first_log)}"):
        return
    urls = [s["uploadURL"] for s in segments]
    acknowledged = 0
    for url in urls:
        st = status(procs, direct(url, port))
        acknowledged += st.get("offset", 0) if st else 0
    print(f"      the server holds {acknowledged} bytes over {len(urls)} partial uploads", flush=True)

    err2 = os.path.join(tmp, "put2.err")
    rc, out, log, took = run_ferry(
        procs, ["put", source, endpoint, "--state-dir", state, "--verbose", "--deadline", "5m"],
        timeout=180, stdout_path=os.path.join(tmp, "put2.out"), stderr_path=err2)
    final = out.strip().splitlines()[-1] if out.strip() else ""
    print(f"      second run: exit {rc} in {took:.1f} s", flush=True)
    if not check(rc == 0 and final.startswith("http"), "second run: ferry put exits 0 and prints the final URL", tail(log)):
        return
    lines = request_lines(log)
    heads = sum(1 for l in lines if l[1] == "HEAD")
    sent = sum(end - start for _, method, start, end, _ in lines if method in ("PATCH", "POST") and start is not None)
    print(f"      second run: {heads} HEADs, sent {sent} bytes of {size}", flush=True)
    check(heads >= len(urls), "second run: every persisted stream is continued (a HEAD each)", f"heads={heads} streams={len(urls)}")
    check(sent <= size - acknowledged + 2 * MiB, "second run: sends only what the server did not have",
          f"sent={sent} server had {acknowledged}")
    check(not glob.glob(os.path.join(state, "*.json")), "second run: the plan is removed once complete")
    fetch_and_compare(procs, direct(final, port), source, tmp, "split restart")


QUEUE_LINE = re.compile(r"^(\S+): \[\s*[\d.]+s\] ([A-Z]+)")


def queue_state(state_dir):
    """The members of the (single) queue under the state dir: {file name: item}."""
    found = first_json(state_dir, "queues/*/queue.json")
    return {os.path.basename(item["path"]): item for item in found.get("items", [])}


def case_queue_restart(procs, tmp):
    print("== several files: a killed queue resumes without sending what is done", flush=True)
    port, proxy = free_port(), free_port()
    data, state, folder = os.path.join(tmp, "data"), os.path.join(tmp, "state"), os.path.join(tmp, "album")
    os.makedirs(folder)
    start_server(procs, port, data, os.path.join(tmp, "server.log"))
    start_netem(procs, proxy, port, "3g", 16, os.path.join(tmp, "netem.log"))  # ~2 MB/s, 250 ms
    names = [f"photo{i:02}.jpg" for i in range(18)] + [f"voice{i}.m4a" for i in range(6)]
    for name in names:
        random_file(os.path.join(folder, name), MiB // 2)
    endpoint = f"http://127.0.0.1:{proxy}/files/"
    command = ["put", folder, endpoint, "--state-dir", state, "--verbose", "--deadline", "5m"]

    err1 = os.path.join(tmp, "put1.err")
    with open(os.path.join(tmp, "put1.out"), "wb") as out, open(err1, "wb") as err:
        put = procs.spawn([FERRY] + command, stdout=out, stderr=err)
    done, began = {}, time.monotonic()
    while time.monotonic() - began < 90 and put.poll() is None:
        done = {name: item["url"] for name, item in queue_state(state).items() if item["state"] == "done"}
        if len(done) >= 6:
            break
        time.sleep(0.1)
    finished_early = put.poll() is not None
    procs.kill(put)  # kill -9
    print(f"      first run killed after {time.monotonic() - began:.1f} s with {len(done)} files saved done", flush=True)
    if not check(len(done) >= 6 and not finished_early, "first run: some files saved done while the put still ran",
                 f"done={sorted(done)} exited={finished_early}\n      {tail(open(err1, errors='replace').read())}"):
        return
    posts = [m.group(1) for m in map(QUEUE_LINE.match, open(err1, errors="replace").read().splitlines()) if m and m.group(2) == "POST"]
    check(all(name.endswith(".m4a") for name in posts[:4]), "first run: the voice messages start first", f"first POSTs: {posts[:6]}")

    rc, out, log, took = run_ferry(procs, command, timeout=120, stdout_path=os.path.join(tmp, "put2.out"),
                                   stderr_path=os.path.join(tmp, "put2.err"))
    print(f"      second run: exit {rc} in {took:.1f} s", flush=True)
    if not check(rc == 0, "second run: ferry put exits 0", tail(log)):
        return
    printed = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
    printed = {os.path.basename(path): url for path, url in printed.items()}
    check(sorted(printed) == sorted(names), "second run: one PATH<TAB>URL line per file", f"stdout: {out[-500:]!r}")
    check(all(printed.get(name) == url for name, url in done.items()), "second run: the files done before keep their URLs")
    again = {m.group(1) for m in map(QUEUE_LINE.match, log.splitlines()) if m and m.group(1) in done and m.group(2) in ("POST", "PATCH")}
    check(not again, "second run: sends none of the files done before", f"sent again: {sorted(again)}")
    check(not glob.glob(os.path.join(state, "queues", "*", "queue.json")), "second run: the queue's state is removed once all are done")
    for name in names:
        if name in printed:
            fetch_and_compare(procs, direct(printed[name], port), os.path.join(folder, name), tmp, name)


def case_instant(procs, tmp):
    print("== instant upload: a copy of a file the server holds is stored without sending it", flush=True)
    port = free_port()
    start_server(procs, port, os.path.join(tmp, "data-instant"), os.path.join(tmp, "server-instant.log"))
    source = random_file(os.path.join(tmp, "photo.jpg"), 3 * MiB)
    endpoint = f"http://127.0.0.1:{port}/files/"
    rc, out, err, _ = run_ferry(procs, ["put", source, endpoint, "--no-resume"], timeout=60)
    if not check(rc == 0 and "stored instantly" not in err, "instant: the first upload of the file sends it", tail(err)):
        return
    first = out.strip().splitlines()[-1]
    for protocol in ("tus", "rufh"):
        copy = os.path.join(tmp, f"forward-{protocol}.jpg")
        shutil.copyfile(source, copy)
        rc, out, err, took = run_ferry(procs, ["put", copy, endpoint, "--no-resume", "--verbose", "--protocol", protocol], timeout=60)
        url = out.strip().splitlines()[-1] if out.strip() else ""
        lines = request_lines(err)
        sent = sum(end - start for _, method, start, end, _ in lines if method in ("PATCH", "POST") and start is not None)
        methods = [line[1] for line in lines]
        check(rc == 0 and "stored instantly" in err and sent == 0 and url and url != first,
              f"instant ({protocol}): the copy is stored instantly in {took:.2f} s, with no byte of the file sent",
              f"exit {rc}, sent {sent}, requests {methods}, url {url!r}\n      {tail(err)}")
        fetch_and_compare(procs, url, source, tmp, f"instant ({protocol})")


CASES = {"client-restart": case_client_restart, "instant": case_instant, "queue-restart": case_queue_restart, "client-restart-rufh": lambda procs, tmp: case_client_restart(procs, tmp, "rufh"), "split-restart": case_split_restart, "server-restart": case_server_restart, "rejected": case_rejected,
         "status-polling": case_status_polling}
DEFAULT = ["client-restart", "client-restart-rufh", "split-restart", "server-restart", "rejected", "status-polling", "instant", "queue-restart"]


def main():
    global FERRY
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ferry", required=True, help="path to the ferry binary")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (logs) for inspection")
    args = parser.parse_args()
    FERRY = os.path.abspath(args.ferry)

    started = time.monotonic()
    for name in args.case or DEFAULT:
        procs = Procs()
        tmp = tempfile.mkdtemp(prefix=f"ferry-client-{name}-")
        try:
            CASES[name](procs, tmp)
        except Exception as error:  # a harness failure counts as a failed check
            check(False, f"{name}: {type(error).__name__}: {error}", traceback.format_exc().strip().replace("\n", "\n      "))
        finally:
            procs.kill_all()
            if args.keep:
                print(f"      logs kept in {tmp}", flush=True)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    print(f"({time.monotonic() - started:.0f} s)")
    print(f"client test: {results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
