"""Scenarios a, b, c of Tests/system/multinode_test.py: a large upload over the nodes, kill -9
mid-body, racing requests on two nodes."""
import collections
import http.client
import math
import os
import random
import threading
import time

from support import CaseError, MiB, check
from multinode_env import (
    Blob, KiB, RACE_RATE, SLOW_RATE, Stream, Tracked, create, delete, describe, finish, get_digest,
    head, mib, out_of_time, patch, persist, remaining, scaled, verify,
)


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
