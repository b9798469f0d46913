"""Scenarios d, e, f of Tests/system/multinode_test.py: 100 concurrent uploads, `ferry put`
through nginx, a frozen lease holder."""
import collections
import http.client
import os
import random
import signal
import subprocess
import threading
import time
from urllib.parse import urlsplit

from support import CaseError, MiB, check, skip, tail
from multinode_env import (
    Blob, KiB, SLOW_RATE, Stream, Tracked, create, delete, describe, finish, get_digest, head, mib,
    out_of_time, patch, remaining, request, scaled,
)


def scenario_d(ctx):
    """Concurrent 5 MiB uploads through nginx."""
    count = max(4, int(round(100 * min(1.0, ctx.args.scale)))) if ctx.args.scale < 1 else 100
    size = scaled(ctx, 5 * MiB, least=64 * KiB) if ctx.args.scale < 1 else 5 * MiB
    print(f"== d: {count} concurrent uploads of {mib(size)} through nginx "
          "(even: creation-with-upload, odd: POST + PATCH)", flush=True)
    ups = [None] * count
    errors = [None] * count
    retried = collections.Counter()
    barrier = threading.Barrier(count + 1)

    def one(i):
        try:
            data = random.Random(ctx.args.seed * 1009 + i).randbytes(size)
            up = Tracked(Blob(size, data=data))
            ups[i] = up
            barrier.wait(60)
            offset = create(ctx.proxy.port, up, with_body=(i % 2 == 0))
            if offset != size:
                if i % 2 == 0:
                    retried["creation-with-upload stored less than the body"] += 1
                status, h, d = patch(ctx.proxy.port, up, offset, size)
                if status != 204:
                    retried[describe(status, h, d)] += 1
                    finish(ctx.proxy.port, up, f"upload {i}")
            up.blob.data = None  # keep the digest only
        except Exception as e:  # reported below
            errors[i] = f"{type(e).__name__}: {e}"
            try:
                barrier.abort()
            except threading.BrokenBarrierError:
                pass

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    try:
        barrier.wait(120)
    except threading.BrokenBarrierError:
        pass
    t0 = time.monotonic()
    for t in threads:
        t.join(max(1.0, remaining() + 30))
    secs = time.monotonic() - t0
    done = sum(1 for i in range(count) if errors[i] is None and ups[i] and ups[i].max_acked == size)
    print(f"      {done}/{count} uploads in {secs:.2f}s: {done / secs:.1f} uploads/s, "
          f"{done * size / MiB / secs:.1f} MiB/s", flush=True)
    if retried:
        print(f"      non-204 answers on the way: {dict(retried)}", flush=True)
    spread = collections.Counter(ctx.node_names.get(u, u) for u in ctx.proxy.upstreams("POST", "/files/")[-count:])
    print(f"      POSTs per node: {dict(spread)}", flush=True)
    if len(ctx.nodes) > 1:
        check(len(spread) == len(ctx.nodes), f"d: nginx spread the POSTs over all {len(ctx.nodes)} nodes", f"{dict(spread)}")
    check(done == count, f"d: all {count} concurrent uploads acknowledged complete",
          "; ".join(e for e in errors if e)[:800])
    bad, lock = [], threading.Lock()

    def verify_some(batch):
        for up in batch:
            try:
                status, digest, n, _ = get_digest(ctx.proxy.port, up.path)
                if status != 200 or digest != up.blob.digest:
                    with lock:
                        bad.append(f"{up.path}: GET {status}, {n} bytes")
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    bad.append(f"{up.path}: {type(e).__name__}: {e}")
            delete(ctx.proxy.port, up)

    created = [u for u in ups if u and u.path]
    workers = [threading.Thread(target=verify_some, args=(created[k::8],), daemon=True) for k in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(max(1.0, remaining() + 30))
    check(not bad and len(created) == count, f"d: all {count} GETs match their SHA-256", "; ".join(bad[:5]))
    check(not any(u.losses for u in created), "d: no acknowledged bytes lost")


def scenario_e(ctx):
    """`ferry put` through nginx."""
    size = scaled(ctx, 64 * MiB)
    print(f"== e: ferry put of {mib(size)} through nginx", flush=True)
    blob = Blob(size, path=os.path.join(ctx.tmp, "e.bin"))
    try:
        state = os.path.join(ctx.tmp, "put-state")
        out_path, err_path = os.path.join(ctx.tmp, "put.out"), os.path.join(ctx.tmp, "put.err")
        t0 = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = ctx.procs.spawn([ctx.args.ferry, "put", blob.path, ctx.proxy.url + "/files/", "--state-dir", state,
                                    "--deadline", "3m"], stdout=out, stderr=err)
        try:
            proc.wait(timeout=max(5.0, min(200, remaining())))
        except subprocess.TimeoutExpired:
            ctx.procs.kill(proc)
        secs = time.monotonic() - t0
        stdout = open(out_path, "rb").read().decode("utf-8", "replace")
        stderr = open(err_path, "rb").read().decode("utf-8", "replace")
        lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
        url = lines[-1] if lines else ""
        if not check(proc.returncode == 0 and url.startswith(ctx.proxy.url + "/files/"),
                     "e: ferry put exits 0 and prints an upload URL on the proxy",
                     f"exit {proc.returncode}, last line {url!r}\n      {tail(stderr, 10)}"):
            return
        print(f"      ferry put {secs:.1f}s, {size / MiB / secs:.1f} MiB/s", flush=True)
        path = urlsplit(url).path
        status, digest, n, _ = get_digest(ctx.proxy.port, path)
        check(status == 200 and digest == blob.digest, "e: GET through nginx matches the file's SHA-256",
              f"GET {status}, {n}/{size} bytes")
        try:
            request(ctx.proxy.port, "DELETE", path, timeout=30)
        except (OSError, http.client.HTTPException):
            pass
    finally:
        blob.close()


def scenario_f(ctx):
    """A frozen holder (SIGSTOP, as a long pause or a node cut off from PostgreSQL would be): another
    node takes the upload over once the lease lapses; the holder, woken, must not write or win."""
    if len(ctx.nodes) < 2:
        skip("f: frozen holder", "needs --nodes 2 or more")
        return
    rng = random.Random(ctx.args.seed * 31 + 6)
    rounds = ctx.args.race_rounds
    print(f"== f: {rounds} rounds: the node receiving a PATCH is SIGSTOPped; another node takes over "
          "after the lease lapses; the frozen one is SIGCONTed (while or after the other receives the rest)",
          flush=True)
    problems, mismatches, lost, lapse = [], [], [], []
    for r in range(rounds):
        if out_of_time():
            problems.append(f"round {r}: not run before the deadline")
            break
        zombie, other = ctx.nodes[r % len(ctx.nodes)], ctx.nodes[(r + 1) % len(ctx.nodes)]
        size = scaled(ctx, rng.randint(30 * MiB, 60 * MiB), least=4 * MiB)
        blob = Blob(size, path=os.path.join(ctx.tmp, f"f{r}.bin"))
        up = Tracked(blob)
        frozen = False
        try:
            create(other.port, up)
            pre = rng.choice([0, min(size // 4, 8 * MiB + 12345)])  # a committed state with parts and a tail
            if pre and patch(other.port, up, 0, pre)[0] != 204:
                raise CaseError("the first PATCH failed")
            floor = up.max_acked
            a = Stream(zombie.port, up, pre, size, rate=SLOW_RATE).start()
            freeze_at = min(size - pre - 256 * KiB, max(MiB, int(rng.uniform(0.1, 0.5) * (size - pre))))
            while a.sent < freeze_at and a.thread.is_alive() and not out_of_time():
                time.sleep(0.002)
            os.kill(zombie.proc.pid, signal.SIGSTOP)
            frozen = True
            t0 = time.monotonic()
            offset = head(other.port, up, f"node {other.index} while node {zombie.index} is frozen")
            lapse.append(time.monotonic() - t0)
            if not floor <= offset <= pre + a.sent:
                problems.append(f"round {r}: HEAD {offset} outside [{floor}, {pre + a.sent}]")
            wake_mid = r % 2 == 0
            if wake_mid:
                b = Stream(other.port, up, offset, size, rate=2 * SLOW_RATE).start()
                time.sleep(rng.uniform(0.1, 1.0))
                os.kill(zombie.proc.pid, signal.SIGCONT)
                frozen = False
                b.wait(120)
                if b.status != 204:
                    problems.append(f"round {r}: the taking-over PATCH answered {b.outcome()}")
            else:
                finish(other.port, up, f"node {other.index} takes over")
                os.kill(zombie.proc.pid, signal.SIGCONT)
                frozen = False
            a.wait(60)
            if a.status == 204:
                problems.append(f"round {r}: the frozen holder acknowledged its PATCH: {a.outcome()}")
            elif a.status is not None and not (a.status == 409 and a.code == "ERR_REQUEST_SUPERSEDED"):
                problems.append(f"round {r}: the frozen holder answered {a.outcome()} "
                                "(want 409 ERR_REQUEST_SUPERSEDED or a cut connection)")
            time.sleep(1)  # whatever the woken node still does, it does now
            finish(other.port, up, "after the wake-up")
            heads = {n.index: head(n.port, up, f"node {n.index} at the end") for n in ctx.nodes}
            if any(v != size for v in heads.values()):
                problems.append(f"round {r}: HEAD per node {heads}, length {size}")
            status, digest, n, _ = get_digest(other.port, up.path)
            if status != 200 or digest != blob.digest:
                mismatches.append(f"round {r}: GET {status}, {n} bytes, sha256 {digest[:16]}")
            print(f"      round {r}: node {zombie.index} frozen at {mib(a.sent)} sent; node {other.index} HEAD "
                  f"{offset} after {lapse[-1]:.1f}s; woken {'while the rest streamed' if wake_mid else 'after completion'}; "
                  f"frozen PATCH: {a.outcome()}", flush=True)
            delete(ctx.proxy.port, up)
        except CaseError as e:
            problems.append(f"round {r}: {e}")
        finally:
            if frozen and zombie.proc.poll() is None:
                os.kill(zombie.proc.pid, signal.SIGCONT)
            lost += up.losses
            blob.close()
    if lapse:
        print(f"      freeze to HEAD on another node: median {sorted(lapse)[len(lapse) // 2]:.1f}s, max {max(lapse):.1f}s",
              flush=True)
    check(not lost, "f: acknowledged bytes lost == 0", "; ".join(lost[:3]))
    check(not mismatches, "f: every GET matches its file's SHA-256", "; ".join(mismatches[:3]))
    check(not problems, f"f: {rounds} frozen holders: taken over, not acknowledged, answered 409 or cut off",
          "\n      ".join(problems[:6]))
