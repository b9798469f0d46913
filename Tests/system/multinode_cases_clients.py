"""Scenarios g and h of Tests/system/multinode_test.py: the mobile client through `ferry netem`
in front of the cluster, and business results and events across nodes."""
import collections
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

from support import CaseError, MiB, check, free_port, tail
from multinode_env import (
    Blob, KiB, STOP, StartFailed, Tracked, create, finish, get_digest, mib, out_of_time, persist,
    remaining, request, scaled,
)


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
