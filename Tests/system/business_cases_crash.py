"""The crash case of the business system test (see business_test.py): --crash-rounds rounds of
concurrent uploads of scenario `crash`, kill -9 of ferry at a random moment around the last
PATCH (sometimes of receiver C too), restart, clients resume; then every complete upload has
exactly one `upload.completed` event id (however often it was delivered) and its business
result with the right SHA-256.
"""
import http.client
import random
import threading
import time

from business_cases_callbacks import check_admin, check_order, events_by_upload, wait_events
from business_env import KiB, business, create, get, head, patch, poll_business, random_bytes, sha256, upload_id
from support import check, skip


class Transient(Exception):
    """A crash-case client error that is recovered by re-HEADing."""


# ---------------------------------------------------------------------------------------------
# f. crash


class CrashUpload:
    def __init__(self, round_no, index, data, with_upload):
        self.round, self.index, self.data, self.with_upload = round_no, index, data, with_upload
        self.sha = sha256(data)
        self.path = None
        self.done = False
        self.error = None
        self.last_request = threading.Event()
        self.retries = 0


def crash_client(ctx, up):
    """Creates, then PATCHes in 128 KiB pieces; any error: wait for the server, HEAD, resume."""
    deadline = time.monotonic() + 120
    offset = None
    size = len(up.data)
    while time.monotonic() < deadline:
        ctx.server_up.wait(30)
        try:
            if up.path is None:
                body = up.data if up.with_upload else None
                if body is not None:
                    up.last_request.set()
                r = create("crash", size, ctx.token, metadata={"filename": f"crash-{up.round}-{up.index}.bin"}, body=body)
                if r.status != 201 or not r.path:
                    raise Transient(f"POST {r!r}")
                up.path = r.path
                offset = r.offset() or 0
            elif offset is None:
                r = head(up.path, ctx.token)
                if r.status in (404, 410):
                    up.error = f"HEAD answered {r.status} for an acknowledged upload"
                    return
                if r.status not in (200, 204):
                    raise Transient(f"HEAD {r!r}")
                offset = r.offset()
            if offset >= size:
                up.done = True
                return
            n = min(128 * KiB, size - offset)
            if offset + n == size:
                up.last_request.set()
            r = patch(up.path, offset, up.data[offset:offset + n], ctx.token)
            if r.status != 204:
                raise Transient(f"PATCH {r!r}")
            offset = r.offset()
        except (OSError, http.client.HTTPException, Transient, ValueError, KeyError, TypeError):
            up.retries += 1
            offset = None
            time.sleep(0.05)
    up.error = "did not complete in 120 s"


def overlapping_calls(callbacks, epochs):
    """Pairs of pre-finish calls of one upload started by the same ferry process (between two
    kills) whose [start, answer] intervals overlap: allowed (the endpoint is idempotent), but
    worth knowing."""
    found = []
    calls = {}
    for c in callbacks:
        if c["kind"] == "pre-finish" and c.get("startedAt"):
            calls.setdefault(c["upload"], []).append(c)
    for uid, cs in calls.items():
        cs.sort(key=lambda c: c["startedAt"])
        for a, b in zip(cs, cs[1:]):
            same = sum(1 for e in epochs if e <= a["startedAt"]) == sum(1 for e in epochs if e <= b["startedAt"])
            if same and b["startedAt"] < a["at"]:
                found.append(f"{uid[:8]}: [{a['startedAt'] - epochs[-1]:+.3f}, {a['at'] - epochs[-1]:+.3f}] and "
                             f"[{b['startedAt'] - epochs[-1]:+.3f}, {b['at'] - epochs[-1]:+.3f}] s from the last kill")
    return found


def case_crash(env, rounds):
    class Ctx:
        pass

    ctx = Ctx()
    ctx.server_up = threading.Event()
    ctx.server_up.set()
    ctx.token = env.token("crash-user", scenarios=("crash",), ttl=7200)
    rng = random.Random(env.rng.getrandbits(32))
    rcv = env.receivers["C"]
    uploads = []
    t_start = time.monotonic()
    receiver_kills = 0
    epochs = [0.0]  # wall-clock boundaries between ferry processes
    for rnd in range(rounds):
        batch = []
        for i in range(3):
            size = rng.randint(64 * KiB, 768 * KiB)
            batch.append(CrashUpload(rnd, i, random_bytes(rng, size), with_upload=(i == 2 and rnd % 2 == 0)))
        uploads.extend(batch)
        threads = [threading.Thread(target=crash_client, args=(ctx, up), daemon=True) for up in batch]
        for t in threads:
            t.start()
        # Kill around completion: once one upload sent its last request, after a random delay
        # (the request, the pre-finish callback's 0-200 ms, the commit, the answer).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(u.last_request.is_set() for u in batch):
            time.sleep(0.002)
        delay = rng.uniform(0, 0.3)
        time.sleep(delay)
        ctx.server_up.clear()
        epochs.append(time.time())  # a ferry process ends here
        env.ferry.kill()
        kill_receiver = rnd % 7 == 3
        if kill_receiver:
            rcv.kill()
            receiver_kills += 1
        t0 = time.monotonic()
        env.ferry.start()
        if kill_receiver:
            time.sleep(0.5)  # deliveries meet a closed port for a while
            rcv.start()
        ctx.server_up.set()
        for t in threads:
            t.join(120)
        print(f"      round {rnd + 1}/{rounds}: kill -9 {delay * 1000:.0f} ms after a last request"
              f"{' (and the receiver)' if kill_receiver else ''}; restart {time.monotonic() - t0:.2f}s;"
              f" {sum(u.retries for u in batch)} client retries", flush=True)
    failed = [u for u in uploads if not u.done]
    check(not failed, f"crash: all {len(uploads)} uploads complete after {rounds} kill -9 rounds "
                      f"({receiver_kills} also of the receiver; {time.monotonic() - t_start:.0f}s)",
          "; ".join(f"#{u.round}.{u.index} {u.path}: {u.error}" for u in failed[:5]))
    done = {upload_id(u.path): u for u in uploads if u.done}

    # Every complete upload ends with its business result, computed over the whole file.
    bad = []
    for uid, up in done.items():
        h = poll_business(up.path, ctx.token, 30)
        status, result, raw = business(h)
        if not (h.offset() == len(up.data) and status == "done" and result and result.get("businessId") == f"biz-{uid}"
                and result.get("sha256") == up.sha):
            bad.append(f"{uid}: offset {h.offset()}/{len(up.data)} status {status} result {raw}")
            continue
        g = get(up.path, ctx.token)
        if g.status != 200 or sha256(g.body) != up.sha:
            bad.append(f"{uid}: GET {g.status}, sha256 {sha256(g.body)[:12]} != {up.sha[:12]}")
    check(not bad, "crash: every upload is complete, GETs back its bytes, and its business result has its sha256",
          "; ".join(bad[:4]))

    def drained(state):
        have = {(e["upload"], e["type"]) for e in state["events"]}
        return all((u, "upload.completed") in have for u in done)

    t0 = time.monotonic()
    state = wait_events(rcv, drained, 60)
    check(drained(state), f"crash: the receiver got upload.completed of every complete upload ({time.monotonic() - t0:.1f}s)",
          f"missing {[u for u in done if (u, 'upload.completed') not in {(e['upload'], e['type']) for e in state['events']}][:5]}")
    by = events_by_upload(state)
    completed_attempts = {}
    for a in state["attempts"]:
        if a["type"] == "upload.completed" and a["status"] != 401:
            completed_attempts.setdefault(a["upload"], set()).add(a["id"])
    bad = []
    for uid in done:
        ids = {e["id"] for e in by.get(uid, []) if e["type"] == "upload.completed"}
        created = {e["id"] for e in by.get(uid, []) if e["type"] == "upload.created"}
        if len(ids) != 1 or completed_attempts.get(uid, set()) != ids or len(created) != 1:
            bad.append(f"{uid}: completed ids {sorted(ids)}, in attempts {sorted(completed_attempts.get(uid, []))},"
                       f" created ids {sorted(created)}")
    check(not bad, "crash: each complete upload has exactly one upload.completed id (every attempt used it)"
                   " and one upload.created id", "; ".join(bad[:4]))
    twice = {u: ids for u, ids in completed_attempts.items() if len(ids) > 1}
    check(not twice, "crash: no upload (known or orphaned) has two different upload.completed ids", repr(twice)[:400])
    check_order(state, set(done), "crash receiver")
    dups = state["duplicates"]
    prefinish = {}
    for c in state["callbacks"]:
        if c["kind"] == "pre-finish":
            prefinish[c["upload"]] = prefinish.get(c["upload"], 0) + 1
    overlaps = overlapping_calls(state["callbacks"], epochs)
    if overlaps:
        print(f"      note: {len(overlaps)} times one ferry process had two pre-finish calls of the same upload"
              f" in flight at once, e.g. {overlaps[0]}", flush=True)
    orphans = set(by) - set(done)
    if not dups:
        skip("crash: a redelivered event is deduplicated by its id", "no event was delivered twice this run")
    print(f"      {sum(dups.values())} duplicate deliveries of {len(dups)} events (all deduplicated by id);"
          f" pre-finish repeated for {sum(1 for n in prefinish.values() if n > 1)} uploads;"
          f" {len(orphans)} uploads the clients lost track of", flush=True)
    for uid in list(done)[:3]:
        check_admin(env, uid, 2, 1, f"crash upload {uid[:8]}")

