#!/usr/bin/env python3
"""A business system on the other end of Ferry: receives its webhooks and answers its callbacks.

Usage: python3 webhook_receiver.py --port P --secret S --db PATH [--fail-first N]
           [--callback-port Q] [--pre-finish-mode ok|slow|fail|jitter|invalid|huge] [--slow-seconds 10]
           [--event-delay-ms N] [--synchronous full|normal|off] [--no-callback-log] [--quiet]

It is both an example consumer (docs/business.md, "Events") and the counterpart of
Tests/system/business_test.py and bench/business.sh. Everything listens on 127.0.0.1.

  POST /ferry/events      a webhook delivery. The `Ferry-Signature` header
                          (`t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`) is checked in
                          constant time and refused with 401 when wrong or when `t` is more than
                          5 minutes away from now. With --fail-first N the first N deliveries of
                          every event id are answered 500 (to exercise Ferry's retries). Otherwise
                          the event is recorded durably in SQLite, deduplicated by its id, and
                          answered 204 - only after the transaction committed (and, with
                          --event-delay-ms N, a random 0-N ms later: a sender killed meanwhile
                          never sees that 2xx and sends the event again). A JSON array body
                          is a batch (`webhook-batch`): its events are handled in one
                          transaction, all or (500) none.
  POST /ferry/pre-finish  answers {"businessId": "biz-<upload id>", "sha256": <the request's sha256>,
                          "note": "Grüße ✓"} (the note checks the header's \\uXXXX escaping). The mode
                          (--pre-finish-mode, or POST /control at run time): ok; slow (sleep
                          --slow-seconds first); fail (answer 500); jitter (sleep 0-200 ms first);
                          invalid (200 with a body that is not JSON); huge (a result over 4 KiB).
  POST /ferry/pre-create  accepts, adding metadata {"tenant": "t1"}; metadata `block` refuses:
                          `yes` -> {"reject": {"status": 403, "message": "blocked by policy"}},
                          a status 400-499 -> a reject with that status, `answer409` -> a plain
                          409 answer whose body is the message, `answer500` -> a 500 answer,
                          `slow` -> accepts after --slow-seconds.
  POST /control           {"preFinish": mode, "failFirst": N, "slowSeconds": s}; answers the settings.
  GET  /state             JSON of what was received: events (in arrival order), duplicates,
                          attempts, callbacks. `?upload=ID` keeps one upload's rows, `?summary=1`
                          only counts, `?limit=N` at most N rows of each.
  GET  /healthz           200 once serving.

The SQLite database (--db) keeps, across restarts of this process:
  events(event_id PRIMARY KEY, type, upload_id, sequence, received_at, body)  one row per event
  duplicates(event_id PRIMARY KEY, count)   how many times an already-handled event came again
  attempts(n, event_id, attempt, status, ...)  every delivery attempt, in arrival order
  files(upload_id PRIMARY KEY, state, ...)  the "business effect" of the events
  callbacks(n, kind, upload_id, mode, status, ...)  pre-create / pre-finish calls
"""
import argparse
import hashlib
import hmac
import json
import random
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_SKEW = 300  # seconds: a signature older (or further in the future) than this is refused
PRE_FINISH_MODES = ("ok", "slow", "fail", "jitter", "invalid", "huge")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY, type TEXT NOT NULL, upload_id TEXT NOT NULL, sequence INTEGER NOT NULL,
    received_at REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS duplicates (event_id TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    n INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT, header_event_id TEXT, header_type TEXT,
    type TEXT, upload_id TEXT, sequence INTEGER, attempt INTEGER, status INTEGER NOT NULL,
    outcome TEXT, at REAL NOT NULL, batch INTEGER);
CREATE TABLE IF NOT EXISTS files (
    upload_id TEXT PRIMARY KEY, state TEXT NOT NULL, last_sequence INTEGER NOT NULL, sha256 TEXT,
    size INTEGER, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS callbacks (
    n INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, upload_id TEXT, owner TEXT, scenario TEXT,
    mode TEXT, status INTEGER, started_at REAL, at REAL NOT NULL, body TEXT);
"""


def sign(secret, timestamp, body):
    """The `v1` value of a Ferry-Signature: hex HMAC-SHA256(secret, "<t>.<raw body>")."""
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret, body, timestamp=None):
    """A complete `Ferry-Signature` value for `body` (for tests that hand-make a delivery)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={sign(secret, t, body)}"


def verify_signature(header, body, secrets, now=None):
    """Returns None when `header` signs `body` with one of `secrets`, else the reason.

    The HMAC is recomputed over the raw bytes received (never over re-serialised JSON) and
    compared with hmac.compare_digest, which takes the same time wherever the strings differ.
    Several `v1=` values may be present (a sender rotating secrets); one match is enough."""
    if not header:
        return "no Ferry-Signature header"
    timestamp, candidates = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not timestamp.isdigit() or not candidates:
        return f"malformed Ferry-Signature: {header[:100]!r}"
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > MAX_SKEW:
        return f"signature timestamp {timestamp} is more than {MAX_SKEW} s away from now"
    ok = False
    for secret in secrets:
        expected = sign(secret, timestamp, body)
        for candidate in candidates:
            ok |= hmac.compare_digest(expected, candidate)  # no early exit: constant time
    return None if ok else "signature does not match"


class Store:
    """The receiver's SQLite database. One connection, one writer at a time (a lock)."""

    def __init__(self, path, synchronous="full", log_callbacks=True):
        self.log_callbacks = log_callbacks
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")  # FULL: a 204 means on disk
        self.db.executescript(SCHEMA)
        self.callback_counts = {"pre-create": 0, "pre-finish": 0}  # in memory, also with --no-callback-log

    def previous_attempts(self, event_id):
        row = self.db.execute("SELECT COUNT(*) FROM attempts WHERE event_id = ? AND status != 401", (event_id,)).fetchone()
        return row[0]

    def log_attempt(self, event_id, header_id, header_type, event, attempt, status, outcome, batch=None):
        upload = event.get("upload") or {}
        self.db.execute(
            "INSERT INTO attempts (event_id, header_event_id, header_type, type, upload_id, sequence, attempt,"
            " status, outcome, at, batch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event_id, header_id, header_type, event.get("type"), upload.get("id"), event.get("sequence"),
             attempt, status, outcome, time.time(), batch))

    def refuse(self, header_id, header_type, reason):
        with self.lock:
            self.log_attempt(header_id, header_id, header_type, {}, None, 401, reason)

    def deliver(self, events, header_id, header_type, fail_first, batch=None):
        """Handles one verified delivery - one event, or a batch (`webhook-batch`) - and returns
        (status, outcome). `events` is a list of (event, its JSON text).

        The dedupe: the event id is inserted into `events` (its PRIMARY KEY) in the SAME
        transaction as the business effect (the `files` row). Either both commit or neither
        does, so a crash of this receiver between the effect and the answer cannot apply an
        event twice: Ferry redelivers (it never saw the 2xx), the insert finds the id, and
        the effect is skipped - only the duplicate counter moves. Ferry delivers at least
        once, so a consumer without this table would double-count after any retry. A batch (its
        size in `batch`) is one transaction: all of its events are applied, or (a 500) none."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                attempts = [self.previous_attempts(event["id"]) + 1 for event, _ in events]
                if any(attempt <= fail_first for attempt in attempts):
                    for (event, _), attempt in zip(events, attempts):
                        self.log_attempt(event["id"], header_id, header_type, event, attempt, 500, "failed on purpose", batch)
                    self.db.execute("COMMIT")
                    return 500, "failed on purpose"
                outcomes = []
                for (event, text), attempt in zip(events, attempts):
                    event_id = event["id"]
                    upload = event.get("upload") or {}
                    cur = self.db.execute(
                        "INSERT OR IGNORE INTO events (event_id, type, upload_id, sequence, received_at, body)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (event_id, event.get("type"), upload.get("id"), event.get("sequence"), time.time(), text))
                    if cur.rowcount == 0:  # seen before: count it, apply nothing
                        self.db.execute(
                            "INSERT INTO duplicates (event_id, count) VALUES (?, 1)"
                            " ON CONFLICT(event_id) DO UPDATE SET count = count + 1", (event_id,))
                        outcome = "duplicate"
                    else:
                        self.apply(event, upload)
                        outcome = "new"
                    self.log_attempt(event_id, header_id, header_type, event, attempt, 204, outcome, batch)
                    outcomes.append(outcome)
                self.db.execute("COMMIT")
                return 204, ",".join(outcomes)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def apply(self, event, upload):
        """The business effect: the state of each file. An event older than the last one
        applied (lower sequence) is ignored - Ferry delivers an upload's events in order, but
        a consumer that is cautious about it costs one comparison."""
        states = {"upload.created": "uploading", "upload.progress": "uploading", "upload.completed": "complete",
                  "upload.terminated": "terminated", "upload.expired": "expired"}
        state = states.get(event.get("type"), "unknown")
        seq = int(event.get("sequence") or 0)
        self.db.execute(
            "INSERT INTO files (upload_id, state, last_sequence, sha256, size, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(upload_id) DO UPDATE SET state = excluded.state, last_sequence = excluded.last_sequence,"
            " sha256 = COALESCE(excluded.sha256, files.sha256), size = excluded.size, updated_at = excluded.updated_at"
            " WHERE excluded.last_sequence > files.last_sequence",
            (upload.get("id"), state, seq, upload.get("sha256"), upload.get("length"), time.time()))

    def log_callback(self, kind, upload_id, owner, scenario, mode, status, body, started_at=None):
        with self.lock:
            self.callback_counts[kind] = self.callback_counts.get(kind, 0) + 1
            if self.log_callbacks:
                self.db.execute(
                    "INSERT INTO callbacks (kind, upload_id, owner, scenario, mode, status, started_at, at, body)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (kind, upload_id, owner, scenario, mode, status, started_at, time.time(), body))

    def state(self, upload=None, summary=False, limit=None):
        with self.lock:
            counts = {
                "events": self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0],
                "duplicates": self.db.execute("SELECT COALESCE(SUM(count), 0) FROM duplicates").fetchone()[0],
                "attempts": self.db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0],
                "refused": self.db.execute("SELECT COUNT(*) FROM attempts WHERE status = 401").fetchone()[0],
                "failedOnPurpose": self.db.execute("SELECT COUNT(*) FROM attempts WHERE status = 500").fetchone()[0],
                "preCreate": self.callback_counts.get("pre-create", 0),
                "preFinish": self.callback_counts.get("pre-finish", 0),
            }
            if summary:
                return {"counts": counts}
            where, args = ("WHERE upload_id = ?", [upload]) if upload else ("", [])
            tail = f" LIMIT {int(limit)}" if limit else ""
            events = [
                {"id": r[0], "type": r[1], "upload": r[2], "sequence": r[3], "receivedAt": r[4], "arrival": r[5],
                 "body": json.loads(r[6])}
                for r in self.db.execute(
                    f"SELECT event_id, type, upload_id, sequence, received_at, rowid, body FROM events {where}"
                    f" ORDER BY rowid{tail}", args)]
            ids = {e["id"] for e in events} if upload else None
            duplicates = {r[0]: r[1] for r in self.db.execute("SELECT event_id, count FROM duplicates")
                          if ids is None or r[0] in ids}
            attempts = [
                {"n": r[0], "id": r[1], "headerId": r[2], "headerType": r[3], "type": r[4], "upload": r[5],
                 "sequence": r[6], "attempt": r[7], "status": r[8], "outcome": r[9], "at": r[10], "batch": r[11]}
                for r in self.db.execute(
                    "SELECT n, event_id, header_event_id, header_type, type, upload_id, sequence, attempt, status,"
                    f" outcome, at, batch FROM attempts {where} ORDER BY n{tail}", args)]
            callbacks = [
                {"n": r[0], "kind": r[1], "upload": r[2], "owner": r[3], "scenario": r[4], "mode": r[5],
                 "status": r[6], "startedAt": r[7], "at": r[8], "body": r[9]}
                for r in self.db.execute(
                    f"SELECT n, kind, upload_id, owner, scenario, mode, status, started_at, at, body FROM callbacks {where}"
                    f" ORDER BY n{tail}", args)]
            files = {r[0]: {"state": r[1], "lastSequence": r[2], "sha256": r[3], "size": r[4]}
                     for r in self.db.execute(f"SELECT upload_id, state, last_sequence, sha256, size FROM files {where}", args)}
            return {"counts": counts, "events": events, "duplicates": duplicates, "attempts": attempts,
                    "callbacks": callbacks, "files": files}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Ferry's HTTP client reuses its connections
    server_version = "ferry-webhook-receiver"

    # --- plumbing -------------------------------------------------------------------
    def log_message(self, fmt, *args):
        if not self.server.ctx.quiet:
            sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def answer(self, status, payload=None, content_type="application/json"):
        data = b""
        if payload is not None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    # --- routes -----------------------------------------------------------------------
    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/healthz":
            return self.answer(200, {"ok": True})
        if url.path == "/state":
            q = parse_qs(url.query)
            return self.answer(200, self.server.ctx.store.state(
                upload=q.get("upload", [None])[0], summary=q.get("summary", ["0"])[0] not in ("0", ""),
                limit=q.get("limit", [None])[0]))
        return self.answer(404, {"error": "not found"})

    def do_POST(self):
        raw = self.body()
        path = urlsplit(self.path).path
        try:
            if path == "/ferry/events":
                return self.event(raw)
            if path == "/ferry/pre-finish":
                return self.pre_finish(raw)
            if path == "/ferry/pre-create":
                return self.pre_create(raw)
            if path == "/control":
                return self.control(raw)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return self.answer(400, {"error": f"{type(e).__name__}: {e}"})
        return self.answer(404, {"error": "not found"})

    def event(self, raw):
        ctx = self.server.ctx
        header_id, header_type = self.headers.get("Ferry-Event-Id"), self.headers.get("Ferry-Event-Type")
        problem = verify_signature(self.headers.get("Ferry-Signature"), raw, ctx.secrets)
        if problem:
            ctx.store.refuse(header_id, header_type, problem)
            return self.answer(401, {"error": problem})
        body = json.loads(raw)  # only parsed once the signature proved who sent it
        if isinstance(body, list):
            # A batch (`webhook-batch` > 1): an array of events, their count in Ferry-Event-Count.
            count = self.headers.get("Ferry-Event-Count")
            if not body or count != str(len(body)):
                return self.answer(400, {"error": f"a batch of {len(body)} events with Ferry-Event-Count {count}"})
            events = [(event, json.dumps(event, separators=(",", ":"), ensure_ascii=False)) for event in body]
        else:
            events = [(body, raw.decode("utf-8", "replace"))]
        for event, _ in events:
            if not (isinstance(event, dict) and isinstance(event.get("id"), str) and isinstance(event.get("type"), str)
                    and isinstance(event.get("sequence"), int) and isinstance(event.get("upload"), dict)
                    and isinstance(event["upload"].get("id"), str)):
                return self.answer(400, {"error": "an event is a JSON object with id, type, sequence and upload.id"})
        status, outcome = ctx.store.deliver(events, header_id, header_type, ctx.fail_first,
                                            len(events) if isinstance(body, list) else None)
        if status == 204 and ctx.event_delay_ms:
            # Committed, answer not sent yet: a sender killed now never sees the 2xx and
            # delivers again - the duplicate the events table absorbs.
            time.sleep(random.uniform(0, ctx.event_delay_ms) / 1000)
        if not ctx.quiet:
            for event, _ in events:
                print(f"event {event['id']} {event.get('type')}: {status} {outcome}", flush=True)
        return self.answer(status, {"error": outcome} if status >= 300 else None)

    def pre_finish(self, raw):
        ctx = self.server.ctx
        started = time.time()
        request = json.loads(raw)
        upload = request["upload"]
        mode = ctx.pre_finish_mode
        if mode == "slow":
            time.sleep(ctx.slow_seconds)
        elif mode == "jitter":
            time.sleep(random.uniform(0, 0.2))
        status = 500 if mode == "fail" else 200
        ctx.store.log_callback("pre-finish", upload.get("id"), upload.get("owner"), upload.get("scenario"), mode,
                               status, raw.decode("utf-8", "replace"), started)
        if status != 200:
            return self.answer(500, {"error": "pre-finish failing on purpose"})
        if mode == "invalid":
            return self.answer(200, b"this is not JSON", "application/json")
        if mode == "huge":  # more than the 4 KiB a business result may hold
            return self.answer(200, {"businessId": f"biz-{upload['id']}", "padding": "x" * 5000})
        # Idempotent on upload.id: the same upload always gets the same business id.
        return self.answer(200, {"businessId": f"biz-{upload['id']}", "sha256": upload.get("sha256"),
                                 "note": "Grüße ✓"})

    def pre_create(self, raw):
        ctx = self.server.ctx
        started = time.time()
        request = json.loads(raw)
        metadata = request.get("metadata") or {}
        block = metadata.get("block")
        if block == "yes":
            status, reply = 200, {"reject": {"status": 403, "message": "blocked by policy"}}
        elif block and block.isdigit() and 400 <= int(block) <= 499:
            status, reply = 200, {"reject": {"status": int(block), "message": f"blocked with {block}"}}
        elif block == "answer409":
            status, reply = 409, b"conflict from the business system"
        elif block == "answer500":
            status, reply = 500, {"error": "pre-create failing on purpose"}
        elif block == "slow":
            time.sleep(ctx.slow_seconds)
            status, reply = 200, {}
        else:
            status, reply = 200, {"metadata": {"tenant": "t1"}}
        ctx.store.log_callback("pre-create", None, request.get("owner"), request.get("scenario"), block or "ok",
                               status, raw.decode("utf-8", "replace"), started)
        if isinstance(reply, bytes):
            return self.answer(status, reply, "text/plain; charset=utf-8")
        return self.answer(status, reply)

    def control(self, raw):
        ctx = self.server.ctx
        request = json.loads(raw or b"{}")
        if "preFinish" in request:
            if request["preFinish"] not in PRE_FINISH_MODES:
                raise ValueError(f"preFinish is one of {', '.join(PRE_FINISH_MODES)}")
            ctx.pre_finish_mode = request["preFinish"]
        if "failFirst" in request:
            ctx.fail_first = int(request["failFirst"])
        if "slowSeconds" in request:
            ctx.slow_seconds = float(request["slowSeconds"])
        return self.answer(200, {"preFinish": ctx.pre_finish_mode, "failFirst": ctx.fail_first,
                                 "slowSeconds": ctx.slow_seconds})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address, ctx):
        super().__init__(address, Handler)
        self.ctx = ctx


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="port of the webhook (and callbacks)")
    p.add_argument("--callback-port", type=int, default=None,
                   help="also serve every route (callbacks, control, state) on this port")
    p.add_argument("--secret", action="append", required=True,
                   help="webhook secret (repeat while rotating: any one may sign)")
    p.add_argument("--db", required=True, help="SQLite database file (created if missing)")
    p.add_argument("--fail-first", type=int, default=0, help="answer 500 to the first N deliveries of each event id")
    p.add_argument("--pre-finish-mode", default="ok", choices=PRE_FINISH_MODES)
    p.add_argument("--slow-seconds", type=float, default=10.0)
    p.add_argument("--event-delay-ms", type=float, default=0,
                   help="after recording an event, wait 0-N ms before answering (widens the lost-2xx window)")
    p.add_argument("--synchronous", default="full", choices=["full", "normal", "off"],
                   help="SQLite synchronous setting (full: every 204 is on disk)")
    p.add_argument("--no-callback-log", action="store_true", help="only count callbacks, do not store them")
    p.add_argument("--quiet", action="store_true", help="no line per request")
    args = p.parse_args()

    store = Store(args.db, args.synchronous, log_callbacks=not args.no_callback_log)

    class Context:
        pass

    ctx = Context()
    ctx.store, ctx.secrets, ctx.fail_first = store, args.secret, args.fail_first
    ctx.pre_finish_mode, ctx.slow_seconds, ctx.quiet = args.pre_finish_mode, args.slow_seconds, args.quiet
    ctx.event_delay_ms = args.event_delay_ms
    servers = [Server((args.host, args.port), ctx)]
    if args.callback_port:
        servers.append(Server((args.host, args.callback_port), ctx))
    for extra in servers[1:]:
        threading.Thread(target=extra.serve_forever, daemon=True).start()
    print(f"webhook receiver on {args.host}:{args.port}"
          + (f" and :{args.callback_port}" if args.callback_port else "")
          + f", db {args.db}, fail-first {args.fail_first}", flush=True)
    try:
        servers[0].serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
