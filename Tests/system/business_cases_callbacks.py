"""Business system test cases about the business system's endpoints (see business_test.py):

  pre-create  the pre-create callback rejecting, failing, timing out or adding metadata.
  pre-finish  Ferry-Business-Status/-Result on the completing request, HEAD and GET; a failing,
              slow or garbage-answering business system (pending, then done by a HEAD poll);
              tuspy's last response; `ferry put`'s business-result line.
  webhooks    signatures, per-upload order and ids, payloads, termination, retries, two webhooks
              of one scenario (fanout), and the admin endpoint.

Also the webhook checks the crash case reuses: wait_events, events_by_upload, check_order and
check_admin. Each case is a function of the run's Env (business_env.Env).
"""
import json
import os
import random
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import business_env
from business_env import (ADMIN_TOKEN, HERE, WEBHOOK_SECRET, KiB, MiB, business, call, check_business_done, create,
                          create_final, delete, expect, get, head, parse_metadata, patch, poll_business,
                          random_bytes, sha256, upload_id)
from support import check, skip, tail

try:
    from tusclient.client import TusClient
except ImportError:
    TusClient = None


# ---------------------------------------------------------------------------------------------
# d. pre-create


def case_pre_create(env):
    alice = env.token("alice")
    rcv = env.receivers["A"]
    r = create("biz", 100, alice, metadata={"filename": "x", "block": "yes"})
    check(r.status == 403 and r.error == "ERR_REJECTED" and b"blocked by policy" in r.body and not r.path,
          "pre-create reject 403 -> 403 ERR_REJECTED with the message, no Location", repr(r))
    r = create("biz", 100, alice, metadata={"filename": "x", "block": "422"})
    check(r.status == 422 and r.error == "ERR_REJECTED" and b"blocked with 422" in r.body,
          "pre-create reject status 422 -> 422 ERR_REJECTED with the message", repr(r))
    r = create("biz", 100, alice, metadata={"filename": "x", "block": "answer409"})
    check(r.status == 409 and r.error == "ERR_REJECTED" and b"conflict from the business system" in r.body,
          "pre-create answering 409 -> 409 ERR_REJECTED with its body as the message", repr(r))
    r = create("biz", 100, alice, metadata={"filename": "x", "block": "answer500"})
    expect(r, 503, "ERR_CALLBACK_FAILED", "pre-create answering 500")
    r = create("biz", 100, alice, metadata={"filename": "x", "block": "slow"})
    check(r.status == 503 and r.error == "ERR_CALLBACK_FAILED" and r.elapsed < 5.5,
          "pre-create slower than callback-timeout 2s -> 503 ERR_CALLBACK_FAILED (in < 5.5 s)",
          f"{r!r} after {r.elapsed:.1f}s")

    data = random_bytes(env.rng, 1000)
    r = create("biz", len(data), alice, metadata={"filename": "accepted.bin", "tenant": "overwritten?"})
    if expect(r, 201, None, "pre-create accepting with added metadata"):
        h = head(r.path, alice)
        meta = parse_metadata(h.headers.get("upload-metadata"))
        check(meta.get("tenant") == "t1" and meta.get("filename") == "accepted.bin",
              "HEAD Upload-Metadata carries tenant=t1 (replaced) and the client's filename", repr(meta))
        p = patch(r.path, 0, data, alice)
        if expect(p, 204, None, "complete the accepted upload"):
            env.biz_uploads[upload_id(r.path)] = (sha256(data), len(data))
    calls = [c for c in rcv.state()["callbacks"] if c["kind"] == "pre-create"]
    seen = [json.loads(c["body"]) for c in calls]
    check(any(s.get("owner") == "alice" and s.get("scenario") == "biz" and s.get("length") == 1000
              and (s.get("metadata") or {}).get("filename") == "accepted.bin" for s in seen),
          "the pre-create request carries scenario, owner, length and metadata", repr(seen[-1:] if seen else seen))
    blocked_ids = [e for e in rcv.state()["events"] if ((e["body"].get("upload") or {}).get("metadata") or {}).get("block")]
    check(not blocked_ids, "no event for a refused creation", repr(blocked_ids[:2]))


# ---------------------------------------------------------------------------------------------
# c. pre-finish


def case_pre_finish(env):
    rng, rcv = env.rng, env.receivers["A"]
    alice = env.token("alice")
    rcv.control(preFinish="ok")

    # 1. Two PATCHes; the second completes.
    data = random_bytes(rng, 300 * KiB)
    digest = sha256(data)
    r = create("biz", len(data), alice, metadata={"filename": "two-patches.bin"})
    if expect(r, 201, None, "biz: create 300 KiB"):
        uid = upload_id(r.path)
        expect(patch(r.path, 0, data[:100 * KiB], alice), 204, None, "biz: first PATCH (100 KiB)")
        p = patch(r.path, 100 * KiB, data[100 * KiB:], alice)
        if expect(p, 204, None, "biz: completing PATCH"):
            env.biz_uploads[uid] = (digest, len(data))
            check_business_done(p, uid, digest, "completing PATCH")
            check_business_done(head(r.path, alice), uid, digest, "a later HEAD")
            g = get(r.path, alice)
            check(g.status == 200 and sha256(g.body) == digest, "GET returns the file", f"{g.status} {len(g.body)}")
            check_business_done(g, uid, digest, "GET")
            calls = [json.loads(c["body"]) for c in rcv.state(upload=uid)["callbacks"] if c["kind"] == "pre-finish"]
            up = calls[0]["upload"] if calls else {}
            check(len(calls) == 1 and up.get("id") == uid and up.get("scenario") == "biz" and up.get("owner") == "alice"
                  and up.get("size") == len(data) and up.get("sha256") == digest
                  and (up.get("metadata") or {}).get("filename") == "two-patches.bin"
                  and up.get("createdAt") and up.get("location"),
                  "one pre-finish request with id, scenario, owner, size, sha256, metadata, location, createdAt",
                  repr(calls)[:600])
            check((up.get("metadata") or {}).get("tenant") == "t1",
                  "the pre-finish metadata includes what pre-create added", repr(up.get("metadata")))

    # 2. The business system fails: pending, then done after it recovers (creation-with-upload completes).
    rcv.control(preFinish="fail")
    data = random_bytes(rng, 64 * KiB)
    digest = sha256(data)
    r = create("biz", len(data), alice, metadata={"filename": "fail-then-ok.bin"}, body=data)
    if expect(r, 201, None, "biz (pre-finish failing): creation-with-upload of the whole file"):
        uid = upload_id(r.path)
        env.biz_uploads[uid] = (digest, len(data))
        status, result, raw = business(r)
        check(r.offset() == len(data) and status == "pending",
              "the completing creation answers Ferry-Business-Status: pending", repr(r))
        h = head(r.path, alice)
        check(business(h)[0] == "pending", "HEAD while the business system fails: pending", repr(h))
        time.sleep(0.3)
        rcv.control(preFinish="ok")
        t0 = time.monotonic()
        h = poll_business(r.path, alice, 30)
        check_business_done(h, uid, digest, f"HEAD poll after the business system recovered ({time.monotonic() - t0:.1f}s)")
        calls = [c for c in rcv.state(upload=uid)["callbacks"] if c["kind"] == "pre-finish"]
        check(len(calls) >= 2 and calls[0]["status"] == 500 and calls[-1]["status"] == 200,
              "pre-finish was retried in the background", repr([(c["mode"], c["status"]) for c in calls]))

    # 3. The business system is slower than callback-timeout (2 s): pending, then done.
    rcv.control(preFinish="slow", slowSeconds=6)
    data = random_bytes(rng, 64 * KiB)
    digest = sha256(data)
    r = create("biz", len(data), alice, metadata={"filename": "slow.bin"})
    if expect(r, 201, None, "biz (pre-finish slow): create"):
        uid = upload_id(r.path)
        p = patch(r.path, 0, data, alice)
        rcv.control(preFinish="ok")
        if expect(p, 204, None, "biz (pre-finish slow): completing PATCH"):
            env.biz_uploads[uid] = (digest, len(data))
            check(business(p)[0] == "pending" and p.elapsed < 5.5,
                  "the completing PATCH answers pending after about callback-timeout", f"{p!r} after {p.elapsed:.1f}s")
            check_business_done(poll_business(r.path, alice, 30), uid, digest, "HEAD poll after the slow answer")

    # 3b. An answer that is not a JSON object, or a result over 4 KiB: pending, then done.
    for mode, label in (("invalid", "a body that is not JSON"), ("huge", "a result over 4 KiB")):
        rcv.control(preFinish=mode)
        data = random_bytes(rng, 10 * KiB)
        r = create("biz", len(data), alice, metadata={"filename": f"{mode}.bin"}, body=data)
        rcv.control(preFinish="ok")
        if expect(r, 201, None, f"biz (pre-finish answering {label}): creation-with-upload"):
            uid = upload_id(r.path)
            env.biz_uploads[uid] = (sha256(data), len(data))
            check(business(r)[0] == "pending" and business(r)[1] is None,
                  f"pre-finish answering {label}: the completing response says pending, without a result", repr(r))
            check_business_done(poll_business(r.path, alice, 30), uid, sha256(data), f"HEAD poll after {label}")

    # 4. A final concatenation completes in its POST: the result covers the concatenated bytes.
    a, b = random_bytes(rng, 70000), random_bytes(rng, 50000)
    pa = create("biz", len(a), alice, body=a, headers={"Upload-Concat": "partial"}, metadata={"filename": "a.part"})
    pb = create("biz", len(b), alice, body=b, headers={"Upload-Concat": "partial"}, metadata={"filename": "b.part"})
    if expect(pa, 201, None, "biz: partial upload 1") and expect(pb, 201, None, "biz: partial upload 2"):
        f = create_final("biz", [pa.path, pb.path], alice, metadata={"filename": "final.bin"})
        if expect(f, 201, None, "biz: final concatenation of the two partials"):
            uid = upload_id(f.path)
            env.biz_uploads[uid] = (sha256(a + b), len(a) + len(b))
            env.biz_partials.update({upload_id(pa.path), upload_id(pb.path)})
            check_business_done(f, uid, sha256(a + b), "the final concatenation's 201")
            check_business_done(head(f.path, alice), uid, sha256(a + b), "HEAD of the final upload")

    # 5. tuspy: its last PATCH response is kept as uploader.request.response_headers (a dict with
    #    lower-cased names, tusclient/request.py), so no wrapping is needed to read the result.
    if TusClient is None:
        skip("tuspy carries the business result", "tusclient is not installed")
    else:
        data = random_bytes(rng, 200 * KiB)
        path = os.path.join(env.tmp, "tuspy.bin")
        with open(path, "wb") as f:
            f.write(data)
        try:
            uploader = TusClient(f"http://127.0.0.1:{env.port}/files/biz/",
                                 headers={"Authorization": f"Bearer {alice}"}).uploader(
                file_path=path, chunk_size=64 * KiB, metadata={"filename": "tuspy.bin"})
            uploader.upload()
            uid = upload_id(urlsplit(uploader.url).path)
            env.biz_uploads[uid] = (sha256(data), len(data))
            last = uploader.request.response_headers
            raw = last.get("ferry-business-result")
            result = json.loads(raw) if raw else {}
            check(last.get("ferry-business-status") == "done" and result.get("businessId") == f"biz-{uid}"
                  and result.get("sha256") == sha256(data),
                  "tuspy: the last PATCH response carries the business result", repr(last))
        except Exception as e:  # tusclient raises its own types
            check(False, "tuspy uploads to biz with a bearer token", f"{type(e).__name__}: {e}")

    # 6. `ferry put` prints `business-result: {...}`: one stream, and two (partials + final).
    for label, size, parallel in (("ferry put", 256 * KiB, "1"), ("ferry put --parallel 2", 40 * MiB, "2")):
        data = random_bytes(rng, size)
        path = os.path.join(env.tmp, "put.bin")
        with open(path, "wb") as f:
            f.write(data)
        proc = subprocess.run([business_env.FERRY, "put", path, f"http://127.0.0.1:{env.port}/files/biz/",
                               "--no-resume", "--parallel", parallel, "--deadline", "120s",
                               "--metadata", "filename=put.bin", "--header", f"Authorization: Bearer {alice}"],
                              capture_output=True, text=True, timeout=180)
        os.remove(path)
        lines = proc.stdout.strip().splitlines()
        result_lines = [l for l in lines if l.startswith("business-result:")]
        if check(proc.returncode == 0 and lines, f"{label} with --header Authorization succeeds",
                 f"rc {proc.returncode}\n      {tail(proc.stdout + proc.stderr, 10)}"):
            urls = [l.strip() for l in lines if l.strip().startswith("http")]
            uid = upload_id(urlsplit(urls[-1] if urls else lines[-1].strip()).path)
            env.biz_uploads[uid] = (sha256(data), len(data))
            try:
                result = json.loads(result_lines[0].split(":", 1)[1]) if result_lines else {}
            except ValueError:
                result = {}
            check(result.get("businessId") == f"biz-{uid}" and result.get("sha256") == sha256(data),
                  f"{label} prints business-result with businessId biz-<id> and the file's sha256",
                  f"stdout:\n      {tail(proc.stdout, 10)}")


# ---------------------------------------------------------------------------------------------
# e. webhooks


def wait_events(rcv, want, timeout):
    """Polls the receiver until want(state) is true; returns the last state."""
    deadline = time.monotonic() + timeout
    while True:
        state = rcv.state()
        if want(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.25)


def events_by_upload(state):
    by = {}
    for e in state["events"]:
        by.setdefault(e["upload"], []).append(e)
    return by


def check_order(state, uploads, what):
    """Per upload: ids <upload>-<sequence>, sequence strictly increasing in arrival order,
    created first; and no attempt of an event before the previous event's 2xx."""
    by = events_by_upload(state)
    bad = []
    for uid in uploads:
        evs = by.get(uid, [])
        seqs = [e["sequence"] for e in evs]
        if any(e["id"] != f"{uid}-{e['sequence']}" or e["body"].get("id") != e["id"] for e in evs):
            bad.append(f"{uid}: ids {[e['id'] for e in evs]}")
        if seqs != sorted(set(seqs)):
            bad.append(f"{uid}: sequences in arrival order {seqs}")
        if not evs or evs[0]["type"] != "upload.created":
            bad.append(f"{uid}: first event {evs[0]['type'] if evs else None}")
    check(not bad, f"{what}: ids are <upload>-<sequence>, sequences strictly increase, created comes first",
          "; ".join(bad[:5]))
    delivered_at = {}  # event id -> attempt number n of its first 2xx
    violations = []
    for a in state["attempts"]:
        if a["upload"] not in uploads or a["status"] == 401:
            continue
        for e in by.get(a["upload"], []):
            if e["sequence"] < a["sequence"] and delivered_at.get(e["id"], 1 << 60) > a["n"]:
                violations.append(f"{a['id']} attempted (#{a['n']}) before {e['id']} was delivered")
        if a["status"] // 100 == 2:
            delivered_at.setdefault(a["id"], a["n"])
    check(not violations, f"{what}: no event is sent before the upload's previous event was delivered",
          "; ".join(violations[:5]))
    # A batch (an array body) names its events in the body only.
    mismatched = [a for a in state["attempts"] if a["upload"] in uploads and a["status"] != 401
                  and ((a["headerId"], a["headerType"]) != ((a["id"], a["type"]) if not a["batch"] else (None, None)))]
    check(not mismatched, f"{what}: Ferry-Event-Id / Ferry-Event-Type headers match the body (none on a batch)",
          repr(mismatched[:3]))


def admin_entries(obj):
    """Every dict in the admin answer that describes a delivery (has `state` and `attempts`)."""
    found = []
    if isinstance(obj, dict):
        if "state" in obj and "attempts" in obj:
            found.append(obj)
        for v in obj.values():
            found.extend(admin_entries(v))
    elif isinstance(obj, list):
        for v in obj:
            found.extend(admin_entries(v))
    return found


def check_admin(env, uid, min_entries, min_attempts, what):
    """GET /admin/uploads/<id>/events until every delivery is `delivered` (a receiver may hold an
    event a moment before ferry records its 2xx), at most 10 s."""
    deadline = time.monotonic() + 10
    while True:
        r = call("GET", f"/admin/uploads/{uid}/events", token=ADMIN_TOKEN)
        try:
            doc = json.loads(r.body)
        except ValueError:
            doc = None
        entries = admin_entries(doc)
        ok = (r.status == 200 and len(entries) >= min_entries and all(e.get("state") == "delivered" for e in entries)
              and all(isinstance(e.get("attempts"), int) and e["attempts"] >= min_attempts for e in entries)
              and all(e.get("deliveredAt") for e in entries))
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    check(ok, f"{what}: GET /admin/uploads/<id>/events lists >= {min_entries} deliveries, all delivered"
              f" (attempts >= {min_attempts}, deliveredAt set)", f"{r.status} {r.body[:600]!r}")
    return doc


def case_webhooks(env):
    rng, a_rcv, b_rcv = env.rng, env.receivers["A"], env.receivers["B"]
    alice = env.token("alice")
    data = random_bytes(rng, 5000)
    r = create("biz", len(data), alice, metadata={"filename": "webhooks.bin"}, body=data)
    if expect(r, 201, None, "biz: one more upload, in one creation-with-upload"):
        env.biz_uploads[upload_id(r.path)] = (sha256(data), len(data))
    # A termination, for the upload.terminated event.
    r = create("biz", 1000, alice, metadata={"filename": "terminated.bin"})
    if expect(r, 201, None, "biz: create an upload to terminate"):
        expect(patch(r.path, 0, random_bytes(rng, 10), alice), 204, None, "biz: PATCH 10 bytes")
        if expect(delete(r.path, alice), 204, None, "biz: DELETE it"):
            env.biz_terminated.append(upload_id(r.path))
    if not env.biz_uploads:
        check(False, "webhooks: there are completed biz uploads to look at (earlier cases failed)")
        return
    uploads = set(env.biz_uploads) | set(env.biz_terminated)

    def all_in(state):
        types = {(e["upload"], e["type"]) for e in state["events"]}
        return (all((u, "upload.completed") in types for u in env.biz_uploads)
                and all((u, "upload.terminated") in types for u in env.biz_terminated))

    t0 = time.monotonic()
    state = wait_events(a_rcv, all_in, 30)
    check(all_in(state), f"receiver A got created+completed of {len(env.biz_uploads)} uploads and "
                         f"terminated of {len(env.biz_terminated)} ({time.monotonic() - t0:.1f}s)",
          f"have {sorted((e['upload'][:8], e['type']) for e in state['events'])}")
    check(state["counts"]["refused"] == 0, "receiver A refused no signature (all verified)",
          repr([a for a in state["attempts"] if a["status"] == 401][:3]))
    check_order(state, uploads, "receiver A")
    by = events_by_upload(state)
    bad = []
    for uid, (digest, length) in env.biz_uploads.items():
        done = [e for e in by.get(uid, []) if e["type"] == "upload.completed"]
        if len(done) != 1:
            bad.append(f"{uid}: {len(done)} completed events")
            continue
        body = done[0]["body"]
        up = body.get("upload") or {}
        if not (body.get("type") == "upload.completed" and up.get("sha256") == digest and up.get("length") == length
                and up.get("offset") == length and up.get("state") == "complete" and up.get("scenario") == "biz"
                and up.get("owner") == "alice" and body.get("createdAt")):
            bad.append(f"{uid}: {json.dumps(body)[:400]}")
    check(not bad, "every upload.completed carries id, sha256, length = offset, state complete, scenario, owner",
          "; ".join(bad[:3]))
    partial_calls = [c for c in state["callbacks"] if c["kind"] == "pre-finish" and c["upload"] in env.biz_partials]
    partial_events = [e for e in state["events"] if e["upload"] in env.biz_partials]
    check(not partial_calls and not partial_events,
          f"the {len(env.biz_partials)} partial uploads of a concatenation get no pre-finish call and no events"
          " of their own (their final does)",
          f"{len(partial_calls)} calls, events {sorted(set(e['type'] for e in partial_events))}")
    for uid in env.biz_terminated:
        types = [e["type"] for e in by.get(uid, [])]
        check(types == ["upload.created", "upload.terminated"], "a DELETEd upload: created, then terminated",
              repr(types))

    # The receiver refuses forged deliveries (the consumer side of the signature).
    forged = json.dumps({"id": "forged-1", "type": "upload.completed", "sequence": 1, "upload": {"id": "forged"}}).encode()
    sys.path.insert(0, HERE)
    from webhook_receiver import signature_header
    for label, sig in (("a wrong secret", signature_header("not the secret", forged)),
                       ("a stale timestamp", signature_header(WEBHOOK_SECRET["A"], forged, time.time() - 400))):
        r = call("POST", "/ferry/events", {"Ferry-Signature": sig, "Content-Type": "application/json"}, forged,
                 port=a_rcv.port)
        check(r.status == 401, f"the receiver refuses a delivery signed with {label}", repr(r))

    # Admin endpoint.
    some = next(iter(env.biz_uploads))
    check_admin(env, some, 2, 1, "biz upload")
    r = call("GET", f"/admin/uploads/{some}/events")
    check(r.status == 401, "the admin endpoint without a token -> 401", repr(r))
    r = call("GET", f"/admin/uploads/{some}/events", token=alice)
    check(r.status in (401, 403), "the admin endpoint with a user's token -> 401/403", repr(r))

    # Retries: receiver B fails the first 2 deliveries of every event.
    results_lock = threading.Lock()
    retry_uploads = {}

    def one(i):
        data = random_bytes(random.Random(i), (i + 1) * 40 * KiB)
        if i == 0:  # two requests
            r = create("retry", len(data), alice)
            if r.status == 201:
                patch(r.path, 0, data[:1000], alice)
                p = patch(r.path, 1000, data[1000:], alice)
                r = p if p.status != 204 else r
        else:       # creation-with-upload: created and completed in one request
            r = create("retry", len(data), alice, body=data)
        with results_lock:
            retry_uploads[i] = (r, data)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ok_uploads = {upload_id(r.path): data for r, data in retry_uploads.values() if r.status in (201, 204) and r.path}
    check(len(ok_uploads) == 4, "retry: 4 uploads complete", repr([r for r, _ in retry_uploads.values()]))

    def all_completed(state):
        types = {(e["upload"], e["type"]) for e in state["events"]}
        return all((u, "upload.completed") in types for u in ok_uploads)

    t0 = time.monotonic()
    state = wait_events(b_rcv, all_completed, 40)
    check(all_completed(state), f"retry: every event delivered despite 2 failures each ({time.monotonic() - t0:.1f}s)",
          repr(sorted((e['upload'][:8], e['type']) for e in state['events'])))
    per_event = {}
    for a in state["attempts"]:
        per_event.setdefault(a["id"], []).append((a["attempt"], a["status"]))
    wrong = {k: v for k, v in per_event.items() if [s for _, s in v][:3] != [500, 500, 204]}
    check(not wrong and per_event, "retry: each event was attempted 500, 500, then 204", repr(wrong)[:500])
    check_order(state, set(ok_uploads), "receiver B (with retries)")
    for uid in list(ok_uploads)[:2]:
        check_admin(env, uid, 2, 3, f"retry upload {uid[:8]}")
    fanout(env)
    batched(env)


def fanout(env):
    """Scenario fanout: webhook A gets upload.completed only, webhook B (its own secret, failing
    twice per event) created, progress, completed and expired - each in order."""
    rng, a_rcv, b_rcv = env.rng, env.receivers["A"], env.receivers["B"]
    data = random_bytes(rng, 3000)
    r = create("fanout", len(data))
    r2 = create("fanout", 1000)
    if not (expect(r, 201, None, "fanout: create an upload") and expect(r2, 201, None, "fanout: create one to expire")):
        return
    expect(patch(r2.path, 0, bytes(100)), 204, None, "fanout: PATCH 100 of 1000 bytes, then nothing (ttl 2s)")
    for i in range(3):
        if i:
            time.sleep(0.5)
        expect(patch(r.path, i * 1000, data[i * 1000:(i + 1) * 1000]), 204, None, f"fanout: PATCH {i + 1} of 3, 0.5 s apart")
    done, expired = upload_id(r.path), upload_id(r2.path)

    def arrived(state):
        types = {(e["upload"], e["type"]) for e in state["events"]}
        return (done, "upload.completed") in types and (expired, "upload.expired") in types

    t0 = time.monotonic()
    b_state = wait_events(b_rcv, arrived, 40)
    check(arrived(b_state), f"fanout: webhook B got upload.completed and upload.expired ({time.monotonic() - t0:.1f}s)",
          repr([(e["upload"][:8], e["type"]) for e in b_state["events"] if e["upload"] in (done, expired)]))
    by = events_by_upload(b_state)
    types = [e["type"] for e in by.get(done, [])]
    check(types[:1] == ["upload.created"] and types[-1:] == ["upload.completed"] and "upload.progress" in types,
          "fanout: webhook B got created, progress, completed for the upload sent in 3 PATCHes", repr(types))
    types = [e["type"] for e in by.get(expired, [])]
    check(types[:1] == ["upload.created"] and types[-1:] == ["upload.expired"],
          "fanout: webhook B got created ... expired for the abandoned upload", repr(types))
    check_order(b_state, {done, expired}, "fanout webhook B")
    h = head(r2.path)
    check(h.status in (404, 410), "fanout: the expired upload is gone", repr(h))
    a_state = wait_events(a_rcv, lambda st: any(e["upload"] == done for e in st["events"]), 20)
    a_types = [e["type"] for e in a_state["events"] if e["upload"] in (done, expired)]
    check(a_types == ["upload.completed"], "fanout: webhook A (events = upload.completed) got only upload.completed",
          repr(a_types))
    check_admin(env, done, 2, 1, "fanout upload (two webhooks)")



def batched(env):
    """webhook-batch = 5: 20 concurrent uploads; their events arrive in POSTs of up to 5 (an array
    body, signed as one, without Ferry-Event-Id), each event once, in order per upload."""
    a_rcv = env.receivers["A"]
    results, lock = {}, threading.Lock()

    def one(i):
        data = random_bytes(random.Random(1000 + i), 2000 + i)
        r = create("batched", len(data), body=data)
        with lock:
            results[i] = r

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    uploads = {upload_id(r.path) for r in results.values() if r.status == 201 and r.path}
    check(len(uploads) == 20, "batched: 20 concurrent creation-with-uploads complete", repr(list(results.values())[:3]))

    def all_completed(state):
        types = {(e["upload"], e["type"]) for e in state["events"]}
        return all((u, "upload.completed") in types for u in uploads)

    t0 = time.monotonic()
    state = wait_events(a_rcv, all_completed, 40)
    check(all_completed(state), f"batched: every upload's created and completed arrived ({time.monotonic() - t0:.1f}s)")
    check_order(state, uploads, "batched webhook")
    mine = [a for a in state["attempts"] if a["upload"] in uploads]
    sizes = [a["batch"] for a in mine]
    check(mine and all(s is not None and 1 <= s <= 5 for s in sizes) and max(sizes) > 1,
          "batched: every POST was an array of 1-5 events, some of more than one",
          repr(sorted(set(s for s in sizes if s is None or s > 0)))[:200])
    counts = {}
    for e in state["events"]:
        if e["upload"] in uploads:
            counts[e["upload"]] = counts.get(e["upload"], 0) + 1
    dups = {k: v for k, v in state["duplicates"].items() if k.rsplit("-", 1)[0] in uploads}
    check(all(counts.get(u) == 2 for u in uploads) and not dups,
          "batched: each upload has exactly its 2 events, none delivered twice", repr(dups)[:200])
