#!/usr/bin/env python3
"""Socket-level fuzz lane for Ferry: bounded random traffic against a real `ferry serve`.
Usage: python3 Tests/system/fuzz_test.py --ferry PATH [--requests 40000] [--seconds 240] [--seed K]

Up to 8 threads send raw requests, each on a fresh TCP connection: valid-ish tus and RUFH requests on a pool of uploads
really created (anonymous and token-owned, also with another principal's token), statistics API queries, telemetry,
garbage and byte-level mutations. Every ~200 requests ferry must still run and answer GET /healthz 200 within 5 s, else
the run stops and prints the last requests sent; a 5xx other than 503/507 is a finding too. Request i is drawn from
Random(seed, i), so a printed seed replays the mix (the upload URLs depend on the answers)."""
import argparse, base64, collections, contextlib, hashlib, hmac, http.client, json, os, random, re, shutil  # noqa: E401
import signal, socket, subprocess, sys, tempfile, threading, time, traceback, types  # noqa: E401
from urllib.parse import quote, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from business_env import b64u, metadata_header  # noqa: E402  (stdlib-only helpers)
from support import free_port, tail  # noqa: E402

KiB, MiB = 1024, 1024 * 1024
ADMIN = "fuzz-admin-" + os.urandom(12).hex()
SECRET = "fuzz-hs256-" + os.urandom(24).hex()  # 59 bytes
HEALTH_EVERY, IO_TIMEOUT = 200, 5.0
CLASSES = {"tus": 30, "rufh": 15, "admin": 14, "telemetry": 7, "garbage": 20, "mutated": 14}
OCTETS = ("Content-Type", "application/offset+octet-stream")
NUMS = ["9223372036854775807", "9223372036854775808", "-9223372036854775808", "18446744073709551616", "-1", "-0", "0", "00",
        "007", "1e400", "1e3", "nan", "NaN", "inf", "0x10", " 5", "5 ", "+5", "5,5", "5.0", "", "\u0663", "\uff11", "9" * 40,
        "1_000", "\t7", "5\x00", "0 1", "2147483648", "4294967296"]
TIMES = ["24h", "1h", "30m", "7d", "0s", "1e300d", "1e400", "nan", "inf", "-inf", "-1", "-24h", "9223372036854775807", "0",
         "9223372036854775808", "99999999999999999999d", "9223372036854775807s", "1700000000", "1700000000.5", "2026-12-02",
         "2026-12-02T10:00:00Z", "2026-12-02T10:00:00.123+02:00", "2026-02-30T00:00:00Z", "9999-12-31T23:59:59Z", "now", "",
         "0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z", "h", "0x10", " 5", "1.5h", "1h30m", "%ff", "\u00e9", "24H", "1e-400d",
         "-9223372036854775808", "0.000001s", "T", "2026-12-02T25:61:61Z", "106751991167301d", "153722867280913m"]
LIMITS = ["0", "1", "2", "50", "1000", "1001", "-1", "abc", "9223372036854775807", "9223372036854775808", "1e400",
          "nan", "", "0x10", " 5", "2.5", "99999999999999999999"] + ["1", "2", "3"] * 4  # small pages have a next cursor
STATES = ["incomplete", "complete", "terminated", "expired", "", "COMPLETE", "x", "complete,expired"]
BYS = ["scenario", "network", "dialect", "client", "scenario,network", "scenario,network,dialect,client", "", ",",
       "scenario,,network", "owner", "scenario,scenario", "x" * 300, "Scenario", " network"]
NETWORKS = ["wifi", "4g", "LTE", "NR", "5g", "3g", "2g", "cellular", "wired", "unknown", "", "x" * 500, "\u00e9"]
RANGES = ["bytes=0-10", "bytes=5-", "bytes=-5", "bytes=0-0", "bytes=0-9223372036854775807", "bytes=9223372036854775807-",
          "bytes=-9223372036854775808", "bytes=5-1", "bytes=0-1,3-4", "bytes=-0", "bytes=18446744073709551616-", "bytes=",
          "bytes=--1", "items=0-1", "bytes=1e3-", "bytes= 5-6", "bytes=9223372036854775806-9223372036854775807"]
CONTENT_TYPES = ["audio/mp4", "image/jpeg", "application/octet-stream", "text/plain", "", "x/" + "y" * 300]
BAD_CHUNKED = [b"zz\r\nabc\r\n0\r\n\r\n", b"-1\r\nabc\r\n0\r\n\r\n", b"ffffffffffffffffffff\r\nabc\r\n",
               b"7fffffffffffffff\r\nabc\r\n", b"3\r\nabc\r\n", b"2\r\nabcdef\r\n0\r\n\r\n", b"3;a=b\r\nabc\r\n0\r\n\r\n",
               b"3\r\nabc\r\n0\r\nUpload-Checksum: sha1 !!\r\n\r\n", b"3\r\nabc\r\n0\r\n", b"3\nabc\n0\n\n", b"\r\n",
               b"3\r\nabc0\r\n\r\n", b"10000000000000000\r\n", b" 3\r\nabc\r\n0\r\n\r\n", b"0x3\r\nabc\r\n0\r\n\r\n"]
REQUEST_LINES = ["GET http://evil.test{p} HTTP/1.1", "GET /healthz HTTP/1.0", "HEAD {p} HTTP/2.0", "HEAD {p} HTTP/1.1x",
                 "head {p} HTTP/1.1", "BREW {p} HTTP/1.1", "GET * HTTP/1.1", "GET /" + "a" * 40000 + " HTTP/1.1", "HEAD {p}",
                 "GET  /healthz  HTTP/1.1", "", "HEAD {p} HTTP/-1.1", "CONNECT 127.0.0.1:1 HTTP/1.1", "PATCH {p}?%zz HTTP/1.1",
                 "GET /files/\x00 HTTP/1.1", "GET /files/\xff HTTP/1.1", "HEAD {p} HTTP/1.99999999999999999999"]
HEADER_LINES = [b"", b"Upload-Offset : 0\r\n", b"X: a\r\n folded\r\n", b"NoColon\r\n", b"X\x00Y: 1\r\n", b"Bad Name: 1\r\n",
                b"X: \xff\xfe\r\n", b": empty\r\n", b"Tus-Resumable: 1.0.0\n"]
HOSTS = ["", "[::1", "a" * 1000, "127.0.0.1:99999", "\u00e9vil.test", "a b", "host:-1", "evil.test:80", "127.0.0.1:0", "%00",
         "[::1]:8080", "user@host", "http://x/", "x\r\nX-Injected: 1"]
CONFIG = """# generated by Tests/system/fuzz_test.py
[server]
default-scenario = open
admin-token = "{admin}"
[auth]
hs256-secret = "{secret}"
open-uploads = 100000
open-bytes = 100GiB
creations-per-minute = 1000000
[anonymous]
open-uploads = 100000
[scenario open]
anonymous = true
max-size = 4MiB
[scenario private]
max-size = 4MiB
"""

def pick_w(rng, table):
    return rng.choices(list(table), list(table.values()))[0]

def jwt(sub="x", ttl=86400, limits=None, scenarios=("*",), secret=SECRET, raw=None, alg="HS256"):
    """An HS256 JWT (claims sub, exp, scenarios, limits); `raw` gives the claims text verbatim."""
    claims = {"sub": sub, "exp": int(time.time()) + ttl, "scenarios": list(scenarios), **({"limits": limits} if limits else {})}
    signing_input = b64u(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." + b64u((raw or json.dumps(claims)).encode())
    return signing_input + "." + b64u(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())

def enc(value):
    return bytes(value) if isinstance(value, (bytes, bytearray)) else str(value).encode("utf-8", "surrogateescape")

def chunked(data, rng, trailer=b""):
    out, i = bytearray(), 0
    while i < len(data):
        n = rng.randint(1, len(data) - i)
        out += b"%x\r\n" % n + data[i:i + n] + b"\r\n"
        i += n
    return bytes(out + b"0\r\n" + trailer + b"\r\n")

Req = collections.namedtuple("Req", "data half_close abandon after", defaults=(False, False, None))  # `after`: callback

def read_response(f, method):
    """(status, headers, body, [(1xx status, headers)], outcome) of the first response on `f`."""
    info = []
    while True:
        r = http.client.HTTPResponse(types.SimpleNamespace(makefile=lambda *_, **__: f), method=method)  # shares `f`
        r.begin()  # skips 100 Continue itself
        headers = {k.lower(): ", ".join(r.headers.get_all(k)) for k in r.headers}
        if not 100 <= r.status < 200 or r.status == 101:
            break
        info.append((r.status, headers))
        r.fp = None  # else collecting r closes the shared stream
    try:
        return r.status, headers, r.read(), info, "ok"
    except (http.client.HTTPException, OSError):
        return r.status, headers, b"", info, "cut-body"

def exchange(port, data, half_close=False, abandon=False):
    """Sends `data` on a fresh connection, reads one response: (status, headers, body, 1xx list, outcome)."""
    nothing = None, {}, b"", []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
            try:
                sock.sendall(data)
                if half_close:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server may answer (431, 413) and close before it read everything
            if abandon:
                return *nothing, "abandoned"
            with sock.makefile("rb") as f:
                return read_response(f, data.split(b" ", 1)[0].decode("latin-1"))
    except socket.timeout:
        return *nothing, "timeout"
    except (http.client.HTTPException, ValueError) as error:  # RemoteDisconnected is both: a cut
        return *nothing, "cut" if isinstance(error, ConnectionError) else "bad-response"
    except OSError as error:
        return *nothing, "refused" if isinstance(error, ConnectionRefusedError) else "cut"

def healthz(port):
    status, _, _, _, outcome = exchange(port, f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    return status == 200, (f"status {status}" if status else outcome)

def show(data, limit=500):
    return repr(bytes(data[:limit])) + (f" ... ({len(data)} bytes in all)" if len(data) > limit else "")

class Fuzzer:
    def __init__(self, port, seed):
        self.port, self.seed = port, seed
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.pool, self.partials = [], []  # {"path", "owner", "length", "offset"} of uploads really created
        self.cursors, self.admin_ids = collections.deque(maxlen=64), collections.deque(maxlen=64)
        self.next_index = self.sent = self.n_created = self.generator_errors = 0
        self.by_class, self.statuses, self.outcomes = collections.Counter(), collections.Counter(), collections.Counter()
        self.recent, self.inflight, self.findings = collections.deque(maxlen=20), set(), []  # findings: 5xx answers
        limits = {"maxSize": 4096, "openUploads": 3, "openBytes": 10000, "creationsPerMinute": 20}
        self.tokens = {"alice": jwt("alice"), "bob": jwt("bob"), "carol": jwt("carol", limits=limits)}
        exp = int(time.time()) + 9999
        self.bad_tokens = [
            jwt("alice", ttl=-60), jwt("alice", secret="another secret of at least 32 bytes!!"), jwt("dave", scenarios=()),
            jwt("erin", scenarios=("nope",)), "not.a.jwt", "", "a" * 9000, "..", jwt(raw='[1,2,3]'), jwt(raw="{" * 500),
            jwt(raw='{"sub":"x","exp":1e400,"scenarios":["*"]}'), jwt(raw=f'{{"sub":17,"exp":{exp},"scenarios":"*"}}'),
            jwt(raw=f'{{"sub":"x","exp":{exp},"nbf":9223372036854775808,"scenarios":["*"]}}'),
            jwt(raw=f'{{"sub":"x","exp":{exp},"scenarios":["*"],"limits":{{"maxSize":-1,"openUploads":1e400,'
                    '"openBytes":"x","creationsPerMinute":9223372036854775808}}}}'), jwt(raw='{"sub":"x"}', alg="none"),
            b64u(b'{"alg":"none"}') + "." + b64u(b'{"sub":"root","exp":9999999999,"scenarios":["*"]}') + "."]
    def build(self, method, target, headers=(), body=b"", host=True):
        hs, body = list(headers), enc(body)
        if host:
            hs.insert(0, ("Host", f"127.0.0.1:{self.port}"))
        framed = any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hs)
        if not framed and (body or method in ("POST", "PATCH", "PUT")):
            hs.append(("Content-Length", str(len(body))))
        lines = [enc(f"{method} {target} HTTP/1.1")] + [enc(k) + b": " + enc(v) for k, v in hs]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body
    def num(self, rng, good, p=0.8):
        return str(good) if rng.random() < p else rng.choice(NUMS)
    def bearer(self, rng, token):
        return ("Authorization", pick_w(rng, {"Bearer ": 85, "bearer ": 8, "BEARER ": 4, "Bearer  ": 3}) + token)
    def auth_new(self, rng):
        """Authorization of a creation: (headers, principal that will own the upload or None)."""
        who = pick_w(rng, {"anon": 45, "alice": 20, "bob": 15, "carol": 5, "bad": 15})
        token = self.tokens.get(who) or (rng.choice(self.bad_tokens) if who == "bad" else None)
        return ([self.bearer(rng, token)] if token else []), (who if who in self.tokens else None)
    def auth_for(self, rng, entry):
        """Authorization on an existing upload: mostly right, sometimes another principal, none or bad."""
        owner, r = (entry or {}).get("owner"), rng.random()
        if owner is None:
            return [] if r < 0.8 else [self.bearer(rng, rng.choice(list(self.tokens.values()) + self.bad_tokens))]
        if r < 0.8:
            return [self.bearer(rng, self.tokens[owner if r < 0.7 else rng.choice([p for p in self.tokens if p != owner])])]
        return [] if r < 0.9 else [self.bearer(rng, rng.choice(self.bad_tokens))]
    def pick(self, rng):
        with self.lock:
            return rng.choice(self.pool) if self.pool else None
    def upload_path(self, rng, entry):
        if entry is None or rng.random() < 0.08:
            return rng.choice(["/files/" + rng.randbytes(16).hex(), "/files/", "/files/x", "/files/../admin/stats",
                               "/files/%00", "/files/" + "a" * 3000, "/files/%2e%2e/%2e%2e/etc/passwd"])
        path = entry["path"]
        return path if rng.random() < 0.9 else rng.choice([path + "/", path + "?x=1", path.upper(), path + "%20"])
    def created(self, owner, length, partial):
        """Callback of a creation: the Location of a 201 (or of its 104) joins the pool."""
        def after(status, headers, body, info):
            loc = headers.get("location") or next((h["location"] for _, h in info if h.get("location")), None)
            path = urlsplit(loc.split(",")[0].strip()).path if loc and status in (200, 201) else ""
            if path.startswith("/files/") and len(path) > 8:
                entry = {"path": path, "owner": owner, "length": length, "offset": 0}  # a creation's body: learnt later
                with self.lock:
                    self.n_created += 1
                    for lst in ([self.partials, self.pool] if partial else [self.pool]):
                        lst.append(entry) if len(lst) < 300 else lst.__setitem__(random.randrange(len(lst)), entry)
        return after
    def track(self, entry):
        """Callback on an upload: follows its offset; forgets it once it is gone."""
        def after(status, headers, body, info):
            offset = headers.get("upload-offset", "")
            if status in (200, 201, 204) and offset.isdigit():
                entry["offset"] = int(offset)
            entry["misses"] = entry.get("misses", 0) + 1 if status in (404, 410) else 0  # 404 also for others' tokens
            if entry["misses"] > 3 or (status == 204 and "upload-offset" not in headers):
                with self.lock:
                    self.pool[:], self.partials[:] = ([e for e in lst if e is not entry] for lst in (self.pool, self.partials))
        return after
    def admin_seen(self, status, headers, body, info):
        """Callback of the statistics API: keeps cursors and upload ids for later queries."""
        text = body.decode("utf-8", "replace") if status == 200 else ""
        self.cursors.extend(re.findall(r'"next"\s*:\s*"([^"]*)"', text)[:5])
        self.admin_ids.extend(re.findall(r'"id"\s*:\s*"([^"]*)"', text)[:20])
    def gen_tus(self, rng):
        entry = self.pick(rng)
        kind = pick_w(rng, {"options": 1, "create": 4, "patch": 5, "head": 3, "get": 2, "delete": 1})
        kind = kind if entry or kind == "options" else "create"
        tus = [("Tus-Resumable", rng.choice(["1.0.0"] * 12 + ["0.2.2", "", "1.0.0, 1.0.0", "2.0.0"]))] * (rng.random() < 0.93)
        if kind == "options":
            target = rng.choice(["/files/", "/files/private/", "/files/open/", "/files/nope/", "*", self.upload_path(rng, entry)])
            cors = [("Origin", "http://evil.test"), ("Access-Control-Request-Method", "PATCH")] * (rng.random() < 0.3)
            return Req(self.build("OPTIONS", target, tus + cors))
        if kind == "create":
            return self.tus_create(rng, tus)
        h, path = tus + self.auth_for(rng, entry), self.upload_path(rng, entry)
        if kind == "get":
            return Req(self.build("GET", path, h[len(tus):] + [("Range", rng.choice(RANGES))] * (rng.random() < 0.5)))
        if kind in ("head", "delete"):
            return Req(self.build(kind.upper(), path, h), after=self.track(entry))
        length, offset = entry["length"], entry["offset"]
        size = rng.choice([0, 1, 16, rng.randrange(1, 65536)])
        body = rng.randbytes(min(max(0, (4 * MiB if length is None else length) - offset), size) if rng.random() < 0.9 else size)
        offset = offset if rng.random() < 0.7 else rng.choice([0, offset + 1, max(0, offset - 1)])
        h += [("Upload-Offset", self.num(rng, offset, 0.9))] + [rng.choice([OCTETS] * 9 + [("Content-Type", "text/plain")])]
        if length is None and rng.random() < 0.3:
            h.append(("Upload-Length", self.num(rng, offset + len(body) + rng.choice([0, 0, 10, 1000]))))
        trailer = b""
        if rng.random() < 0.15:  # Upload-Checksum, right or wrong, as a header or as a trailer
            algo = rng.choice(["sha1", "md5", "sha256", "crc32", "SHA1", ""])
            known = algo.lower() in ("sha1", "md5", "sha256") and rng.random() < 0.7
            digest = base64.b64encode(hashlib.new(algo.lower(), body).digest() if known else rng.randbytes(20)).decode()
            value = f"{algo} {digest}" if rng.random() < 0.9 else f"{algo} %%%"
            trailer = enc(f"Upload-Checksum: {value}\r\n") if rng.random() < 0.3 else b""
            h.append(("Trailer", "Upload-Checksum") if trailer else ("Upload-Checksum", value))
        if trailer or rng.random() < 0.1:
            h.append(("Transfer-Encoding", "chunked"))
            body = chunked(body, rng, trailer)
        return Req(self.build("PATCH", path, h, body), after=self.track(entry))
    def tus_create(self, rng, tus):
        (auth, owner), mode = self.auth_new(rng), pick_w(rng, {"length": 6, "defer": 2, "partial": 2, "final": 1})
        target = rng.choice(["/files/"] * 4 + ["/files/open/", "/files/private/", "/files/nope/", "/files/open", "/files//"])
        h, length = tus + auth, rng.choice([0, 1, 17, 1000, rng.randrange(1, 1 << 20), 4 * MiB, 4 * MiB + 1])
        if mode == "defer":
            h, length = h + [("Upload-Defer-Length", self.num(rng, 1, 0.85))], None
        elif mode == "final":
            with self.lock:
                parts = [p["path"] for p in rng.sample(self.partials, min(len(self.partials), rng.randint(1, 3)))]
            parts = [p if rng.random() < 0.8 else f"http://127.0.0.1:{self.port}{p}" for p in parts]
            if not parts or rng.random() < 0.2:
                parts.append(rng.choice(["/files/" + rng.randbytes(16).hex(), "/files/", "http://evil/files/x", "x" * 2000]))
            h, length = h + [("Upload-Concat", "final;" + " ".join(parts))], None
        else:
            h.append(("Upload-Length", self.num(rng, length, 0.85)))
        if mode == "partial":
            h.append(("Upload-Concat", rng.choice(["partial"] * 5 + ["PARTIAL", "partial;x", ""])))
        if rng.random() < 0.5:
            meta = {"filename": rng.choice(["a.txt", "voice.m4a", "", "\u00e9\u00e8.jpg", "x" * 3000]),
                    "filetype": rng.choice(CONTENT_TYPES)}
            meta.update({"scenario": rng.choice(["open", "private", "nope", ""])} if rng.random() < 0.3 else {})
            meta.update({"flag": None} if rng.random() < 0.3 else {})
            h.append(("Upload-Metadata", metadata_header(meta) if rng.random() < 0.85 else rng.choice(
                ["filename", "filename !!!", ",,,", "a b c", "k " + "QUFB" * 2000, "filename YQ==,filename Yg==", " "])))
        h += [("Ferry-Network", rng.choice(NETWORKS))] * (rng.random() < 0.3)
        body = b""
        if rng.random() < 0.25 and mode != "final":
            body = rng.randbytes(min(4096 if length is None else length, rng.randrange(0, 32 * KiB)))
            h.append(OCTETS)
        return Req(self.build("POST", target, h, body), after=self.created(owner, length, mode == "partial"))
    def gen_rufh(self, rng):
        version, entry = rng.choice(["6"] * 5 + ["3", "5", "7", "8", "2", "9", "x", "", "6, 7", "-1"]), self.pick(rng)
        kind = pick_w(rng, {"create": 5, "append": 4, "head": 3, "delete": 1, "options": 1}) if entry else "create"
        done = rng.random() < 0.6
        flag = ("?1" if done != (version == "3") else "?0") if rng.random() < 0.9 else rng.choice(["?2", "1", "", "?1, ?0"])
        h = [("Upload-Draft-Interop-Version", version)] * (rng.random() < 0.95)
        h += [("Upload-Incomplete" if version == "3" else "Upload-Complete", flag)] * (rng.random() < 0.92)
        if kind == "create":
            (auth, owner), length = self.auth_new(rng), None
            body = rng.randbytes(rng.choice([0, 1, 100, rng.randrange(1, 48 * KiB)]))
            h += auth + [("Content-Type", rng.choice(CONTENT_TYPES))]
            if rng.random() < 0.4:
                length = len(body) + (0 if done else rng.choice([1, 1000]))
                h.append(("Upload-Length", self.num(rng, length)))
            target = rng.choice(["/files/"] * 4 + ["/files/private/", "/files/open/", "/files/nope/"])
            return Req(self.build("POST", target, h, body), after=self.created(owner, length, False))
        h, path = h + self.auth_for(rng, entry), self.upload_path(rng, entry)
        if kind == "append":
            body = rng.randbytes(rng.choice([0, 1, rng.randrange(1, 32 * KiB)]))
            offset = entry["offset"] if rng.random() < 0.75 else rng.choice([0, entry["offset"] + 3])
            ctype = "application/partial-upload" if version not in ("3", "5") else "application/offset+octet-stream"
            h += [("Upload-Offset", self.num(rng, offset, 0.9)), ("Content-Type", ctype if rng.random() < 0.9 else "text/plain")]
            h += [("Upload-Length", self.num(rng, offset + len(body)))] * (rng.random() < 0.2)
            return Req(self.build("PATCH", path, h, body), after=self.track(entry))
        if kind in ("head", "delete"):
            return Req(self.build(kind.upper(), path, h), after=self.track(entry))
        return Req(self.build("OPTIONS", rng.choice(["/files/", path]), h))
    def gen_admin(self, rng):
        which = pick_w(rng, {"list": 10, "one": 4, "stats": 5, "other": 1})
        keys = {"list": ["state", "scenario", "owner", "network", "dialect", "client", "from", "to", "since", "limit", "cursor"],
                "stats": ["from", "to", "since", "by"]}.get(which, [])
        params = [(k, self.admin_value(rng, k)) for k in rng.sample(keys, rng.randint(0, min(4, len(keys))))]
        params += [rng.choice(params)] if params and rng.random() < 0.15 else []
        params += [(rng.choice(["x", "", "limit[]", "by%00"]), rng.choice(LIMITS))] * (rng.random() < 0.07)
        if which == "one":
            ids = list(self.admin_ids) + [e["path"].rsplit("/", 1)[-1] for e in list(self.pool[-20:])]
            ident = rng.choice(ids) if ids and rng.random() < 0.7 else rng.choice(["x", "", "..", "%00", "a" * 5000, "' OR 1=1"])
            path = "/admin/uploads/" + quote(ident, safe="")
        else:
            path = {"list": "/admin/uploads", "stats": "/admin/stats"}.get(which) or rng.choice(
                ["/admin/", "/admin/uploads/", "/admin/stats/x", "/admin/events", "/admin", "/ADMIN/stats"])
        esc = pick_w(rng, {lambda s: quote(s, safe=""): 75, lambda s: s.replace(" ", "+"): 15,
                           lambda s: quote(quote(s, safe=""), safe=""): 10})
        path += ("?" + "&".join(f"{esc(k)}={esc(v)}" for k, v in params)) if params else ""
        auth = rng.choice(["Bearer " + ADMIN] * 20 + ["bearer " + ADMIN] * 6 + [None] * 4 + [
            "Bearer " + ADMIN[:-1], "Bearer", "Bearer " + self.tokens["alice"], "Basic " + b64u(ADMIN.encode()),
            "BEARER " + ADMIN, "Bearer " + ADMIN + " extra", "Bearer " + ADMIN * 2, "Bearer \x00"])
        auth = [("Authorization", auth)] if auth else []
        return Req(self.build(rng.choice(["GET"] * 12 + ["HEAD", "POST", "DELETE"]), path, auth), after=self.admin_seen)
    def admin_value(self, rng, key):
        if key in ("from", "to", "since"):
            return str(int(time.time()) + rng.randint(-90000, 90000)) if rng.random() < 0.15 else rng.choice(TIMES)
        if key in ("limit", "state", "by"):
            return rng.choice({"limit": LIMITS, "state": STATES, "by": BYS}[key])
        if key != "cursor":
            return rng.choice(NETWORKS + ["tus", "rufh", "open", "private", "ferry", "alice", "'", "%"])
        if self.cursors and rng.random() < 0.6:
            cur = rng.choice(list(self.cursors))
            i = rng.randrange(len(cur) + 1)
            return cur[:i] + rng.choice("A/+=_-~!0") + cur[i + 1:] if rng.random() < 0.3 else cur
        ident = self.admin_ids[-1] if self.admin_ids else "x"
        return rng.choice([f"{rng.choice(NUMS)}.{ident}", f"1.{ident}.{ident}", ".", "", "0", "x", "=" * 10,
                           base64.b64encode(rng.randbytes(rng.randint(1, 64))).decode(), "9" * 400,
                           b64u(b'{"t":9223372036854775808,"id":"x"}'), b64u(b"9223372036854775807|x"), b64u(b"nan|")])
    def rand_json(self, rng, depth=0):
        r = rng.random()
        if depth > 3 or r < 0.3:
            return rng.choice([0, -1, 2 ** 63, 2 ** 64, 1e308, -0.0, 1.5, True, None, "", "x" * rng.randint(0, 300), "\u00e9"])
        if r < 0.65:
            keys = ["stalls", "retries", "requests", "network", "dialect", "client", "chunkSizes", "count", "min", "max", "last"]
            return {rng.choice(keys): self.rand_json(rng, depth + 1) for _ in range(rng.randint(0, 6))}
        return [self.rand_json(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    def gen_telemetry(self, rng):
        entry, r = self.pick(rng), rng.random()
        ident = entry["path"].rsplit("/", 1)[-1] if entry and rng.random() < 0.85 else rng.choice(["", "x", "..", "a" * 2000])
        if r < 0.6:
            body = json.dumps({"stalls": rng.randint(0, 5), "retries": rng.randint(0, 9), "requests": rng.randint(1, 99),
                               "network": rng.choice(NETWORKS), "dialect": rng.choice(["tus", "rufh", "x"]),
                               "client": "ferry-client/1 (fuzz)", "chunkSizes": self.rand_json(rng, 2)})
        else:
            body = json.dumps(self.rand_json(rng)) if r < 0.85 else rng.choice(
                ["{", "nul", "[" * 5000 + "]" * 5000, '{"stalls":1e400}', '{"a":1,"a":2}', "{}" * 3000, "\ufeff{}",
                 '{"retries":-9223372036854775809}', json.dumps({"x": "y" * 5000}), '{"stalls":NaN}'])
        h = self.auth_for(rng, entry) + [("Content-Type", rng.choice(["application/json"] * 8 + ["text/plain", ""]))]
        return Req(self.build(rng.choice(["POST"] * 9 + ["PUT"]), "/telemetry/" + ident, h, body))
    def valid(self, rng):
        return rng.choices([self.gen_tus, self.gen_rufh, self.gen_admin, self.gen_telemetry], [5, 3, 2, 1])[0](rng)
    def gen_mutated(self, rng):
        data = self.valid(rng).data
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data) + 1)
            j = min(len(data), i + rng.randint(1, 64))
            head, sep, body = data.partition(b"\r\n\r\n")
            lines, m = head.split(b"\r\n"), rng.choice(list(re.finditer(rb"\d+", head)) or [re.match(b"", head)])
            k = rng.randrange(1, len(lines)) if len(lines) > 1 else 0
            data = rng.choice([
                lambda: data[:i] + bytes([data[i] ^ 1 << rng.randrange(8)]) + data[i + 1:] if i < len(data) else data,  # bit flip
                lambda: data[:i] + data[j:],  # bytes deleted
                lambda: data[:j] + data[i:j] + data[j:],  # bytes duplicated
                lambda: data[:i] + rng.randbytes(rng.randint(1, 8)) + data[i:],  # bytes inserted
                lambda: b"\r\n".join(lines[:k] + lines[k + 1:]) + sep + body if k else data,  # a header line deleted
                lambda: b"\r\n".join(lines[:k + 1] + lines[k:]) + sep + body if k else data,  # ... or duplicated
                lambda: head[:m.start()] + enc(rng.choice(NUMS)) + head[m.end():] + sep + body,  # a number made odd
                lambda: data.replace(b"\r\n", b"\n", rng.randint(1, 3)),  # bare LF line ends
                lambda: data[:i]])()  # truncated
        return Req(data, half_close=rng.random() < 0.7)
    def gen_garbage(self, rng):
        kind, entry = rng.randrange(11), self.pick(rng)
        path = entry["path"] if entry else "/files/" + rng.randbytes(16).hex()
        offset, auth, tus = str(entry["offset"] if entry else 0), self.auth_for(rng, entry), [("Tus-Resumable", "1.0.0")]
        if kind == 0:  # random bytes
            return Req(rng.randbytes(rng.randint(0, 4096)), half_close=rng.random() < 0.7)
        if kind == 1:  # a truncated request; sometimes closed without reading the answer
            data = self.valid(rng).data
            return Req(data[:rng.randrange(max(1, len(data)))], half_close=rng.random() < 0.7, abandon=rng.random() < 0.3)
        if kind == 2:  # one huge header
            name = rng.choice(["Upload-Metadata", "X-Big", "Authorization", "Host", "Upload-Offset", "Cookie"])
            value = ("9" if name == "Upload-Offset" else "a") * rng.choice([8 * KiB, 31 * KiB, 33 * KiB, 100 * KiB, MiB])
            return Req(self.build(rng.choice(["POST", "HEAD", "GET"]), rng.choice(["/files/", path]), tus + [(name, value)]))
        if kind == 3:  # very many headers
            return Req(self.build("HEAD", path, tus + [(f"X-H{i}", "v" * (i % 9)) for i in range(rng.choice([200, 1000, 5000]))]))
        if kind == 4:  # duplicated or contradicting headers
            dup = rng.choice([[("Content-Length", "3"), ("Content-Length", rng.choice(["3", "4", "0"]))],
                              [("Upload-Offset", "0"), ("Upload-Offset", "5")], [("Upload-Length", "5"), ("Upload-Length", "6")],
                              [("Host", "a"), ("Host", "b")], [("Tus-Resumable", "1.0.0")], [("Content-Length", "3, 3")],
                              [("Transfer-Encoding", "chunked"), ("Content-Length", "3")],
                              [("Upload-Complete", "?1"), ("Upload-Complete", "?0"), ("Upload-Draft-Interop-Version", "6")],
                              [self.bearer(rng, self.tokens["alice"]), self.bearer(rng, self.tokens["bob"])],
                              [("Upload-Defer-Length", "1"), ("Upload-Length", "3")]])
            method, names = rng.choice(["PATCH", "POST"]), " ".join(k for k, _ in dup)
            extra = ("Upload-Offset", offset) if method == "PATCH" else ("Upload-Length", "3")
            h = tus + dup + [OCTETS] + [extra] * ("Upload" not in names)
            return Req(self.build(method, "/files/" if method == "POST" else path, h, b"abc"), half_close=True)
        if kind == 5:  # bad chunked encoding
            te = ("Transfer-Encoding", rng.choice(["chunked", "chunked", "gzip, chunked", "chunked, chunked", "Chunked"]))
            h = tus + auth + [te, ("Upload-Offset", offset), OCTETS]
            return Req(self.build("PATCH", path, h, rng.choice(BAD_CHUNKED)), half_close=rng.random() < 0.8)
        if kind == 6:  # overflow-prone numbers
            admin, n = [("Authorization", "Bearer " + ADMIN)], rng.choice(NUMS)
            method, target, h, body = rng.choice([
                ("PATCH", path, [OCTETS, ("Upload-Offset", "1"), ("Content-Length", "9223372036854775807")], b"x"),
                ("PATCH", path, [OCTETS, ("Upload-Offset", offset), ("Content-Length", rng.choice(NUMS[:4]))], b"xy"),
                ("PATCH", path, [OCTETS, ("Upload-Offset", n), ("Content-Length", "1")], b"x"),
                ("PATCH", path, [OCTETS, ("Upload-Offset", offset), ("Upload-Length", n)], b"x"),
                ("POST", "/files/", [("Upload-Length", n)], b""), ("POST", "/files/", [("Upload-Defer-Length", n)], b""),
                ("POST", "/files/", [("Upload-Length", "9223372036854775807"), ("Upload-Concat", "partial")], b""),
                ("POST", "/files/", [("Upload-Draft-Interop-Version", "6"), ("Upload-Complete", "?0"),
                                     ("Upload-Length", n), ("Content-Length", "1")], b"x"),
                ("PATCH", path, [("Upload-Draft-Interop-Version", "6"), ("Upload-Complete", "?1"), ("Upload-Offset", n),
                                 ("Content-Type", "application/partial-upload")], b"ab"),
                ("GET", path, [("Range", rng.choice(RANGES))], b""), ("GET", "/admin/stats?since=1e300d&to=nan", admin, b""),
                ("GET", "/admin/stats?from=" + quote(rng.choice(TIMES)) + "&to=" + quote(rng.choice(TIMES)), admin, b""),
                ("GET", "/admin/uploads?limit=9223372036854775808&since=" + quote(rng.choice(TIMES)), admin, b"")])
            h = ([] if target.startswith("/admin") else tus + auth) + h
            return Req(self.build(method, target, h, body), half_close=True)
        if kind == 7:  # method override
            h = tus + auth + [("X-HTTP-Method-Override", rng.choice(["PATCH", "DELETE", "HEAD", "OPTIONS", "patch", "BREW", ""]))]
            h += [("Upload-Offset", self.num(rng, offset)), OCTETS] * (rng.random() < 0.5)
            return Req(self.build(rng.choice(["GET", "POST"]), path, h, rng.randbytes(rng.choice([0, 9]))), half_close=True)
        if kind == 8:  # odd Host headers
            h = [("Host", rng.choice(HOSTS))] * (rng.random() < 0.9) + tus + auth
            if rng.random() < 0.5:
                return Req(self.build("POST", "/files/", h + [("Upload-Length", 5)], host=False), after=self.created(None, 5, 0))
            return Req(self.build("HEAD", path, h, host=False))
        if kind == 9:  # odd request lines and header lines
            data = enc(rng.choice(REQUEST_LINES).replace("{p}", path) + f"\r\nHost: 127.0.0.1:{self.port}\r\n")
            return Req(data + rng.choice(HEADER_LINES) + b"\r\n", half_close=rng.random() < 0.5)
        return Req(self.valid(rng).data + self.valid(rng).data, half_close=rng.random() < 0.5)  # pipelined
    def worker(self, total, deadline):
        gens = {c: getattr(self, "gen_" + c) for c in CLASSES}
        while not self.stop.is_set():
            with self.lock:
                if self.next_index >= total or time.monotonic() >= deadline:
                    return
                i, self.next_index = self.next_index, self.next_index + 1
            rng = random.Random(self.seed * 1_000_003 + i)
            cls = pick_w(rng, CLASSES)
            try:
                req = gens[cls](rng)
            except Exception:  # noqa: BLE001 - a bug of this script, not of ferry
                self.generator_errors += 1
                if self.generator_errors <= 3:
                    print(f"      (generator error, request #{i} [{cls}]: {traceback.format_exc()})", flush=True)
                continue
            with self.lock:
                self.sent += 1
                self.by_class[cls] += 1
                self.recent.append((i, cls, req.data))
                self.inflight.add(i)
            status, headers, body, info, outcome = exchange(self.port, req.data, req.half_close, req.abandon)
            with self.lock:
                self.inflight.discard(i)
                self.outcomes[outcome] += 1
                self.statuses[status] += 1  # None: no answer
                if status is not None and 500 <= status <= 599 and status not in (503, 507):
                    self.findings.append((i, cls, status, headers, body, req.data))
            try:
                if status is not None and req.after is not None:
                    req.after(status, headers, body, info)
            except Exception:  # noqa: BLE001 - odd answers must not stop the lane
                pass

def stop_ferry(proc):
    """SIGTERM, then SIGKILL after 10 s; returns how it ended."""
    if proc.poll() is not None:
        return f"had already exited with code {proc.returncode}"
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        return f"exited with code {proc.wait(timeout=10)} {time.monotonic() - start:.1f} s after SIGTERM"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "did not exit within 10 s of SIGTERM; killed"

def log_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")

def log_excerpt(path):
    lines = log_text(path).splitlines()
    i = next((n for n, line in enumerate(lines) if line.endswith(" crashed:")), None)
    return "\n      ".join(lines[:3] + ["..."] + lines[i:i + 16]) if i else tail("\n".join(lines), 30)

def run(args, tmp):
    port, config_path, log_path, data = free_port(), *(os.path.join(tmp, n) for n in ("ferry.conf", "ferry.log", "data"))
    with open(config_path, "w") as f:
        f.write(CONFIG.format(admin=ADMIN, secret=SECRET))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([args.ferry, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", data,
                                 "--config", config_path, "--log-level", "error", "--creation-rate", "0"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not healthz(port)[0]:
        time.sleep(0.1)
    if proc.poll() is not None or not healthz(port)[0]:
        print(f"FAIL  ferry serve did not become healthy on {port} ({stop_ferry(proc)}):\n      {log_excerpt(log_path)}")
        return 0, 1
    fuzz, start = Fuzzer(port, args.seed), time.monotonic()
    threads = [threading.Thread(target=fuzz.worker, args=(args.requests, start + args.seconds), daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    counts, failure, recent, checked, last, marker = collections.Counter(), None, [], 0, time.monotonic(), None
    while failure is None:  # a check every HEALTH_EVERY requests (or 15 s), at once on a crash, and a closing one
        done = not any(t.is_alive() for t in threads)
        marker = marker or re.search(r"(Fatal error|Program crashed).*", log_text(log_path))
        if not (done or marker or proc.poll() is not None or fuzz.sent - checked >= HEALTH_EVERY or time.monotonic() - last > 15):
            time.sleep(0.05)
            continue
        checked, last = fuzz.sent, time.monotonic()
        ok, detail = healthz(port) if proc.poll() is None and not marker else (False, "")
        counts["health_ok"] += ok
        if not ok:
            fuzz.stop.set()
            with fuzz.lock:
                recent, inflight = list(fuzz.recent), set(fuzz.inflight)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)  # a crashing process may spend seconds on its backtrace
            crashed = proc.poll() is not None or marker
            counts["crashes" if crashed else "health_failed"] += 1
            failure = (f"ferry crashed (exit code {proc.poll()}{', ' + marker.group(0) if marker else ''})" if crashed else
                       f"GET /healthz did not answer 200 within {IO_TIMEOUT:g} s ({detail})") + f" after {fuzz.sent} requests"
        if done:
            break
    for t in threads:
        t.join(timeout=3 * IO_TIMEOUT)
    elapsed = time.monotonic() - start
    if failure is not None:
        print(f"FAIL  {failure}\n      the last requests sent, oldest first (* = still in flight when it was noticed):")
        with open(repro := os.path.join(tmp, "last-requests.txt"), "w") as f:
            f.writelines(f"#{i} [{cls}] {'*' * (i in inflight)}{bytes(data[:256 * KiB])!r}\n" for i, cls, data in recent)
        print("\n".join(f"      #{i} [{cls}] {'*' * (i in inflight)}{show(data, 300)}" for i, cls, data in recent))
        print(f"      the full requests are in {repro}; ferry's log:\n      {log_excerpt(log_path)}")
    else:
        print(f"ok    ferry did not crash; /healthz answered 200 {counts['health_ok']} times")
    for i, cls, status, headers, body, data in fuzz.findings[:5]:
        print(f"FAIL  request #{i} [{cls}] answered {status} (Ferry-Error {headers.get('ferry-error')!r}, body {body[:200]!r})"
              f"\n      request: {show(data, 600)}")
    signatures = collections.Counter((s, h.get("ferry-error")) for _, _, s, h, _, _ in fuzz.findings)
    shutdown, cut = stop_ferry(proc), fuzz.outcomes["cut"] + fuzz.outcomes["cut-body"]
    print(f"fuzz: seed {args.seed} (replay: --seed {args.seed} --requests {args.requests} --seconds {args.seconds:g})")
    print(f"fuzz: {fuzz.sent} requests in {elapsed:.1f} s; by class: " + ", ".join(f"{c} {fuzz.by_class[c]}" for c in CLASSES))
    print("fuzz: outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(fuzz.outcomes.items()))
          + f"; connections cut by the server before a full response: {cut}")
    print("fuzz: statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(fuzz.statuses.items(), key=str) if k))
    print(f"fuzz: uploads created {fuzz.n_created}, in the pool at the end {len(fuzz.pool)} ({len(fuzz.partials)} partials);"
          f" statistics cursors seen {len(fuzz.cursors)}; generator errors {fuzz.generator_errors}")
    if signatures:
        print("fuzz: 5xx findings: " + ", ".join(f"{s} {e} x{n}" for (s, e), n in signatures.most_common()))
    print(f"fuzz: ferry {shutdown}")
    return counts["health_ok"] + (counts["crashes"] == 0), counts["crashes"] + len(fuzz.findings) + counts["health_failed"]

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ferry", required=True, type=os.path.abspath, help="path of the ferry binary")
    p.add_argument("--requests", type=int, default=40000, help="most requests to send (40000)")
    p.add_argument("--seconds", type=float, default=240, help="longest run in seconds (240)")
    p.add_argument("--seed", type=int, default=None, help="seed of the request mix (random by default)")
    args = p.parse_args()
    args.seed = random.SystemRandom().randrange(1 << 32) if args.seed is None else args.seed
    print(f"fuzz: seed {args.seed}", flush=True)
    tmp = tempfile.mkdtemp(prefix="ferry-fuzz-")
    try:
        passed, failed = run(args, tmp)
    except Exception:  # noqa: BLE001 - a broken lane fails too
        traceback.print_exc()
        passed, failed = 0, 1
    print(f"fuzz: files kept in {tmp}") if failed else shutil.rmtree(tmp, ignore_errors=True)
    print(f"fuzz: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
