#!/usr/bin/env python3
"""System test of Ferry's business integration (docs/business.md) against the real binary.

Usage: python3 Tests/system/business_test.py --ferry PATH [--case NAME ...] [--crash-rounds 20]
                                             [--seed N] [--keep]

Starts three copies of Tests/system/webhook_receiver.py (A: callbacks and webhooks of scenario
`biz`; B: webhooks of scenario `retry`, --fail-first 2; C: callbacks and webhooks of scenario
`crash`, answering events 0-150 ms after committing them) and `ferry serve --config <generated
file>` with an HS256 secret, an RS256 public key and a JWKS (ES256 + RS256 keys by kid), all
generated here. Cases (--case runs a subset; pre-finish feeds webhooks):

  config      a broken configuration file stops the start, naming the file, line and key.
  scenarios   per-scenario Tus-Max-Size, unknown scenario, max size, required metadata, allowed
              types, content sniffing (a declared JPEG that is a PNG or random bytes is refused
              and nothing is stored; a real JPEG header passes), checksum=required, the default
              scenario and the `scenario` metadata key.
  auth        every operation on an owned upload (POST, HEAD, PATCH, GET, DELETE, a final
              concatenation naming it) with no token, expired / malformed / wrongly signed /
              wrong aud, iss, nbf tokens, another principal's token and a token without the
              scenario; afterwards the owner's upload is untouched. Anonymous uploads: the URL is
              the capability.
  quotas      open uploads, open bytes, creations per minute (429 + Retry-After), max size (also
              of a deferred length).
  pre-create  reject (403 and other 4xx) with ERR_REJECTED and the message; a 4xx answer; a 5xx
              answer or a timeout -> 503 ERR_CALLBACK_FAILED; added metadata in HEAD.
  pre-finish  Ferry-Business-Status/-Result on the completing PATCH, creation-with-upload and
              final concatenation, on HEAD and GET; the business system failing, slow, answering
              garbage or over 4 KiB -> pending, then done by a HEAD poll; tuspy's last response;
              `ferry put`'s business-result line (one stream and two).
  webhooks    signatures, per-upload order, ids `<upload>-<sequence>`, payloads, termination,
              retries with --fail-first 2 (ordered, every event delivered), two webhooks with
              their own secrets and events (progress, expiry), the admin endpoint.
  crash       --crash-rounds times: concurrent uploads, kill -9 ferry at a random moment around
              the last PATCH (sometimes the receiver too), restart, clients resume; then every
              complete upload has exactly one `upload.completed` event id (however often it was
              delivered) and its business result with the right SHA-256.

Needs the Python package `cryptography` (RSA / EC keys); tuspy (`tusclient`) for one check.
Every process it starts is killed by PID; all traffic stays on 127.0.0.1. Prints one line per
check and ends with `business test: N passed, M failed`; exits non-zero on any failure.
"""
import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from urllib.parse import urlsplit

from support import CaseError, Procs, check, free_port, results, skip, tail

try:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
except ImportError:
    rsa = None

try:
    from tusclient.client import TusClient
except ImportError:
    TusClient = None

HERE = os.path.dirname(os.path.abspath(__file__))
KiB, MiB = 1024, 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
ISSUER = "https://login.ferry.test"
AUDIENCE = "ferry"
ADMIN_TOKEN = "admin-" + "7f3a9c" * 6
WEBHOOK_SECRET = {"A": "webhook secret A #1", "B": "webhook secret B", "C": "webhook secret C"}
JPEG = bytes.fromhex("ffd8ffe000104a46494600010101004800480000")  # SOI + JFIF APP0
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452")           # signature + IHDR
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00"
FERRY = None
ENV = None  # the Env of the run


class Transient(Exception):
    """A crash-case client error that is recovered by re-HEADing."""


# ---------------------------------------------------------------------------------------------
# HTTP


class Resp:
    def __init__(self, status, headers, body, elapsed):
        self.status, self.headers, self.body, self.elapsed = status, headers, body, elapsed

    @property
    def error(self):
        return self.headers.get("ferry-error")

    @property
    def path(self):
        loc = self.headers.get("location")
        return urlsplit(loc).path if loc else None

    def offset(self):
        return int(self.headers["upload-offset"]) if "upload-offset" in self.headers else None

    def __repr__(self):
        keep = {k: v for k, v in self.headers.items()
                if k.startswith(("ferry-", "upload-", "www-", "retry-", "location", "tus-max"))}
        return f"{self.status} {keep} {self.body[:200]!r}"


def call(method, path, headers=None, body=None, token=None, port=None, timeout=30):
    """One request on a fresh connection to 127.0.0.1; lower-cased headers (repeats joined)."""
    h = dict(TUS)
    h.update(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    if body is not None and not isinstance(body, (bytes, str)):
        body = bytes(body)
    conn = http.client.HTTPConnection("127.0.0.1", port or ENV.port, timeout=timeout)
    start = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        headers_out = {}
        for k, v in r.getheaders():
            k = k.lower()
            headers_out[k] = f"{headers_out[k]}, {v}" if k in headers_out else v
        return Resp(r.status, headers_out, data, time.monotonic() - start)
    finally:
        conn.close()


def metadata_header(metadata):
    return ",".join(f"{k} {base64.b64encode(str(v).encode()).decode()}" if v is not None else k
                    for k, v in metadata.items())


def parse_metadata(header):
    result = {}
    for pair in filter(None, (p.strip() for p in (header or "").split(","))):
        key, _, value = pair.partition(" ")
        result[key] = base64.b64decode(value).decode("utf-8") if value else ""
    return result


def create(scenario, length, token=None, metadata=None, body=None, headers=None):
    """POST /files/<scenario>/ (scenario None: POST /files/)."""
    h = {"Upload-Length": str(length)} if length is not None else {}
    if metadata:
        h["Upload-Metadata"] = metadata_header(metadata)
    if body is not None:
        h["Content-Type"] = "application/offset+octet-stream"
    h.update(headers or {})
    path = f"/files/{scenario}/" if scenario else "/files/"
    return call("POST", path, h, body, token)


def patch(path, offset, data, token=None, headers=None):
    h = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)}
    h.update(headers or {})
    return call("PATCH", path, h, data, token)


def head(path, token=None):
    return call("HEAD", path, token=token)


def get(path, token=None):
    return call("GET", path, token=token)


def delete(path, token=None):
    return call("DELETE", path, token=token)


def create_final(scenario, parts, token=None, metadata=None):
    h = {"Upload-Concat": "final;" + " ".join(parts)}
    if metadata:
        h["Upload-Metadata"] = metadata_header(metadata)
    return call("POST", f"/files/{scenario}/", h, None, token)


def upload_id(path):
    return path.rstrip("/").rsplit("/", 1)[-1]


def expect(resp, status, error, what):
    """Checks a response's status and Ferry-Error (error None: not checked)."""
    ok = resp.status == status and (error is None or resp.error == error)
    want = f"{status}" + (f" {error}" if error else "")
    return check(ok, f"{what} -> {want}", f"got {resp!r}")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def random_bytes(rng, n, first=None):
    data = bytearray(rng.randbytes(n))
    if data:
        data[0] = 0x00  # never a known signature by accident
    if first:
        data[:len(first)] = first
    return bytes(data)


def business(resp):
    """(status, parsed result or None, raw result header) of a response."""
    raw = resp.headers.get("ferry-business-result")
    parsed = None
    if raw is not None:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
    return resp.headers.get("ferry-business-status"), parsed, raw


def check_business_done(resp, upload, digest, what):
    status, result, raw = business(resp)
    ok = (status == "done" and isinstance(result, dict) and result.get("businessId") == f"biz-{upload}"
          and result.get("sha256") == digest)
    check(ok, f"{what}: Ferry-Business-Status done, businessId biz-<id>, sha256 of the file",
          f"status {status!r}, result {raw!r}, want businessId biz-{upload} sha256 {digest}")
    if ok:
        check(all(ord(c) < 128 for c in raw) and result.get("note") == "Grüße ✓" and "\\u" in raw,
              f"{what}: Ferry-Business-Result is ASCII JSON with \\uXXXX escapes", repr(raw))
    return ok


def poll_business(path, token, timeout=30.0):
    """HEADs until Ferry-Business-Status is no longer pending (or the timeout); returns the Resp."""
    deadline = time.monotonic() + timeout
    while True:
        r = head(path, token)
        if r.headers.get("ferry-business-status") not in ("pending", None) or time.monotonic() > deadline:
            return r
        time.sleep(0.25)


# ---------------------------------------------------------------------------------------------
# tokens


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_int(n):
    return b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class Keys:
    """The test's signing keys: the configured ones and impostors."""

    def __init__(self, tmp):
        self.hs = "hs256-" + os.urandom(24).hex()  # 54 bytes
        self.hs_other = "hs256-" + os.urandom(24).hex()
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_jwks = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec_jwks = ec.generate_private_key(ec.SECP256R1())
        self.rsa_pem = self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.pem_path = os.path.join(tmp, "jwt-rs256.pem")
        with open(self.pem_path, "wb") as f:
            f.write(self.rsa_pem)
        rn = self.rsa_jwks.public_key().public_numbers()
        en = self.ec_jwks.public_key().public_numbers()
        jwks = {"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256", "use": "sig",
             "x": b64u(en.x.to_bytes(32, "big")), "y": b64u(en.y.to_bytes(32, "big"))},
            {"kty": "RSA", "kid": "rsa-jwks-1", "alg": "RS256", "use": "sig", "n": b64u_int(rn.n), "e": b64u_int(rn.e)},
        ]}
        self.jwks_path = os.path.join(tmp, "jwks.json")
        with open(self.jwks_path, "w") as f:
            json.dump(jwks, f)

    def sign(self, key, signing_input):
        """(JOSE header fields, signature) for `key`."""
        if key == "hs":
            return {"alg": "HS256"}, hmac.new(self.hs.encode(), signing_input, hashlib.sha256).digest()
        if key == "hs-other":
            return {"alg": "HS256"}, hmac.new(self.hs_other.encode(), signing_input, hashlib.sha256).digest()
        if key == "hs-rsa-pub":  # algorithm confusion: the public key as an HMAC secret
            return {"alg": "HS256"}, hmac.new(self.rsa_pem, signing_input, hashlib.sha256).digest()
        if key in ("rs", "rs-other", "rs-jwks"):
            k = {"rs": self.rsa, "rs-other": self.rsa_other, "rs-jwks": self.rsa_jwks}[key]
            header = {"alg": "RS256"}
            if key == "rs-jwks":
                header["kid"] = "rsa-jwks-1"
            return header, k.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        if key == "es-jwks":
            r, s = decode_dss_signature(self.ec_jwks.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            return {"alg": "ES256", "kid": "ec-1"}, r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if key == "none":
            return {"alg": "none"}, b""
        raise ValueError(key)

    def token(self, sub="alice", scenarios=("*",), ttl=3600, limits=None, key="hs", extra=None, drop=()):
        now = int(time.time())
        claims = {"sub": sub, "iat": now, "exp": now + ttl, "iss": ISSUER, "aud": AUDIENCE,
                  "scenarios": list(scenarios)}
        if limits:
            claims["limits"] = limits
        claims.update(extra or {})
        for k in drop:
            claims.pop(k, None)
        # The JOSE header is signed too, so it is fixed before signing: sign once to learn it.
        header = {"typ": "JWT", **self.sign(key, b"probe")[0]}
        signing_input = (b64u(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64u(json.dumps(claims, separators=(",", ":")).encode())).encode()
        _, signature = self.sign(key, signing_input)
        return signing_input.decode() + "." + b64u(signature)


# ---------------------------------------------------------------------------------------------
# processes


def wait_http(port, path, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if call("GET", path, port=port, timeout=2).status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.03)
    return False


class Receiver:
    """One webhook_receiver.py process; restartable on the same port and database."""

    def __init__(self, env, name, fail_first=0, mode="ok", event_delay_ms=0):
        self.env, self.name, self.fail_first, self.mode = env, name, fail_first, mode
        self.event_delay_ms = event_delay_ms
        self.port = free_port()
        self.db = os.path.join(env.tmp, f"receiver-{name}.db")
        self.log_path = os.path.join(env.tmp, f"receiver-{name}.log")
        self.proc = None

    def start(self):
        for _ in range(3):
            with open(self.log_path, "ab") as log:
                self.proc = self.env.procs.spawn(
                    [sys.executable, os.path.join(HERE, "webhook_receiver.py"), "--port", str(self.port),
                     "--secret", WEBHOOK_SECRET[self.name], "--db", self.db, "--fail-first", str(self.fail_first),
                     "--pre-finish-mode", self.mode, "--slow-seconds", "6",
                     "--event-delay-ms", str(self.event_delay_ms)],
                    stdout=log, stderr=subprocess.STDOUT)
            if wait_http(self.port, "/healthz", self.proc):
                return
            self.env.procs.kill(self.proc)
            time.sleep(0.5)
        raise CaseError(f"receiver {self.name} did not start; see {self.log_path}:\n      {self.log_tail()}")

    def kill(self):
        if self.proc is not None:
            self.env.procs.kill(self.proc)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def control(self, **settings):
        r = call("POST", "/control", {"Content-Type": "application/json"}, json.dumps(settings), port=self.port)
        if r.status != 200:
            raise CaseError(f"receiver {self.name} refused control {settings}: {r!r}")

    def state(self, upload=None, summary=False):
        q = []
        if upload:
            q.append(f"upload={upload}")
        if summary:
            q.append("summary=1")
        r = call("GET", "/state" + ("?" + "&".join(q) if q else ""), port=self.port, timeout=60)
        if r.status != 200:
            raise CaseError(f"receiver {self.name} /state answered {r!r}")
        return json.loads(r.body)

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return tail(f.read().decode("utf-8", "replace"), 15)
        except OSError:
            return ""


class Ferry:
    """`ferry serve --config`, restartable on the same port and data dir."""

    def __init__(self, env):
        self.env = env
        self.port = free_port()
        self.data = os.path.join(env.tmp, "data")
        os.makedirs(self.data, exist_ok=True)
        self.log_path = os.path.join(env.tmp, "ferry.log")
        self.proc = None

    def spawn(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [FERRY, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", self.data,
                 "--config", self.env.config_path, "--log-level", "warning", "--expiry-interval", "1s"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.env.procs.procs.append(self.proc)

    def start(self):
        for attempt in range(3):
            self.spawn()
            if wait_http(self.port, "/healthz", self.proc, timeout=60):
                return
            code = self.proc.poll()
            self.kill()
            print(f"      ferry serve did not become healthy (attempt {attempt + 1}, exit code {code})", flush=True)
            time.sleep(0.5)
        raise CaseError(f"ferry serve did not become healthy on {self.port}:\n      {self.log_tail()}")

    def kill(self):
        if self.proc is not None:
            self.env.procs.kill(self.proc)

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return tail(f.read().decode("utf-8", "replace"), n)
        except OSError:
            return ""


def config_text(env):
    a, b, c = env.receivers["A"], env.receivers["B"], env.receivers["C"]
    return f"""# generated by Tests/system/business_test.py
[server]
default-scenario = images          # POST /files/ without a scenario
admin-token = "{ADMIN_TOKEN}"

[auth]
hs256-secret = "{env.keys.hs}"
public-key-file = {env.keys.pem_path}
jwks-file = {env.keys.jwks_path}
issuer = {ISSUER}
audience = {AUDIENCE}
open-uploads = 1000
open-bytes = 10GiB
creations-per-minute = 100000

[events]
retry-base = 200ms
retry-cap = 2s
delivery-timeout = 5s
concurrency = 16

[scenario voice]
max-size = 1MiB
content-types = audio/mpeg, audio/mp4, audio/ogg, audio/wav
required-metadata = filename
ttl = 1h

[scenario images]
max-size = 2MiB
content-types = image/jpeg, image/png
anonymous = true

[scenario strict]
checksum = required
anonymous = true

[scenario private]
max-size = 8MiB
anonymous = false

[scenario biz]
max-size = 64MiB
pre-create = {a.url('/ferry/pre-create')}
pre-finish = {a.url('/ferry/pre-finish')}
callback-timeout = 2s
webhook = {a.url('/ferry/events')}
webhook-secret = "{WEBHOOK_SECRET['A']}"   # a quoted value with a '#'
events = upload.created, upload.completed, upload.terminated

[scenario retry]
webhook = {b.url('/ferry/events')}
webhook-secret = "{WEBHOOK_SECRET['B']}"
events = upload.created, upload.completed

[scenario fanout]                  # two webhooks, each with its own secret and events
anonymous = true
ttl = 2s
progress-interval = 300ms
webhook = {a.url('/ferry/events')}
webhook-secret = "{WEBHOOK_SECRET['A']}"
events = upload.completed
webhook = {b.url('/ferry/events')}
webhook-secret = "{WEBHOOK_SECRET['B']}"
events = upload.created, upload.progress, upload.completed, upload.expired

[scenario crash]
pre-finish = {c.url('/ferry/pre-finish')}
callback-timeout = 5s
webhook = {c.url('/ferry/events')}
webhook-secret = "{WEBHOOK_SECRET['C']}"
events = upload.created, upload.completed
"""


class Env:
    def __init__(self, tmp, seed):
        self.tmp, self.rng = tmp, random.Random(seed)
        self.procs = Procs()
        self.keys = Keys(tmp)
        self.receivers = {"A": Receiver(self, "A"), "B": Receiver(self, "B", fail_first=2),
                          "C": Receiver(self, "C", mode="jitter", event_delay_ms=150)}
        self.config_path = os.path.join(tmp, "ferry.conf")
        self.ferry = Ferry(self)
        self.port = self.ferry.port
        self.biz_uploads = {}  # upload id -> (sha256, length): completed uploads of scenario biz
        self.biz_terminated = []
        self.biz_partials = set()  # partial uploads of concatenations in biz

    def token(self, *args, **kwargs):
        return self.keys.token(*args, **kwargs)

    def start(self):
        for r in self.receivers.values():
            r.start()
        with open(self.config_path, "w") as f:
            f.write(config_text(self))
        self.ferry.start()


# ---------------------------------------------------------------------------------------------
# the configuration file


def case_config(env):
    """A mistake in the file stops the start, naming the file, the line and the reason."""
    bad = [
        ("a size with a space", "[scenario s]\nanonymous = true\nmax-size = 50 MB\n", 3, "max-size"),
        ("an unknown key", "[scenario s]\nanonymous = true\nbogus-key = 1\n", 3, "bogus-key"),
        ("a bad scenario name", "[scenario Bad!]\nanonymous = true\n", 1, "scenario"),
        ("a short hs256-secret", "[auth]\nhs256-secret = \"short\"\n", 2, "hs256-secret"),
        ("a webhook without a secret", "[scenario s]\nanonymous = true\nwebhook = http://127.0.0.1:9/x\n", 3, "webhook"),
        ("an unknown event", "[scenario s]\nanonymous = true\nwebhook = http://127.0.0.1:9/x\nwebhook-secret = 0123456789abcdef0123\n"
                             "events = upload.created, upload.bogus\n", 5, "upload.bogus"),
        ("a bad duration", "[scenario s]\nanonymous = true\nttl = 5 minutes\n", 3, "ttl"),
        ("a bad checksum value", "[scenario s]\nanonymous = true\nchecksum = maybe\n", 3, "checksum"),
    ]
    data = os.path.join(env.tmp, "config-data")
    for label, text, line, word in bad:
        path = os.path.join(env.tmp, "bad.conf")
        with open(path, "w") as f:
            f.write("# a deliberately broken configuration\n" + text)
        try:
            proc = subprocess.run([FERRY, "serve", "--host", "127.0.0.1", "--port", str(free_port()), "--data-dir", data,
                                   "--config", path], capture_output=True, text=True, timeout=15)
            out, rc = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:  # it started: subprocess.run killed it
            out, rc = f"still running after 15 s: {e.stdout!r} {e.stderr!r}", None
        check(rc not in (0, None) and f"{path}:{line + 1}:" in out and word in out,
              f"config with {label}: the start fails naming bad.conf:{line + 1} and {word}",
              f"rc {rc}: {tail(out, 3)}")


# ---------------------------------------------------------------------------------------------
# a. scenarios


def case_scenarios(env):
    rng = env.rng
    alice = env.token("alice")
    r = call("OPTIONS", "/files/voice/", headers={})
    check(r.status in (200, 204) and r.headers.get("tus-max-size") == str(MiB),
          "OPTIONS /files/voice/ reports Tus-Max-Size 1048576", repr(r))
    r = call("OPTIONS", "/files/images/")
    check(r.status in (200, 204) and r.headers.get("tus-max-size") == str(2 * MiB),
          "OPTIONS /files/images/ reports Tus-Max-Size 2097152", repr(r))
    expect(call("OPTIONS", "/files/nope/"), 404, "ERR_SCENARIO_NOT_FOUND", "OPTIONS /files/nope/")
    expect(create("nope", 10, alice), 404, "ERR_SCENARIO_NOT_FOUND", "POST /files/nope/")
    expect(create(None, 10, alice, metadata={"scenario": "nope"}), 404, "ERR_SCENARIO_NOT_FOUND",
           "POST /files/ with metadata scenario=nope")

    expect(create("images", 2 * MiB + 1, metadata={"filename": "big.jpg", "filetype": "image/jpeg"}),
           413, "ERR_MAX_SIZE_EXCEEDED", "images: Upload-Length 2 MiB + 1")
    r = create("images", 2 * MiB, metadata={"filename": "max.jpg", "filetype": "image/jpeg"})
    expect(r, 201, None, "images: Upload-Length of exactly max-size")
    if r.path:
        check(re.fullmatch(r"/files/[^/]+", r.path) is not None, "upload URL stays /files/<id>", r.path)
    expect(create("voice", 1000, alice, metadata={"filetype": "audio/mpeg"}), 400, "ERR_METADATA_REQUIRED",
           "voice without the required filename")
    expect(create("images", 1000, metadata={"filename": "a.pdf", "filetype": "application/pdf"}),
           415, "ERR_CONTENT_TYPE_NOT_ALLOWED", "images with filetype application/pdf")
    expect(create(None, 1000, metadata={"filename": "a.pdf", "filetype": "application/pdf"}),
           415, "ERR_CONTENT_TYPE_NOT_ALLOWED", "POST /files/ (default scenario images) with application/pdf")

    # Content sniffing on PATCH: the declared JPEG is a PNG, or random bytes.
    jpeg_meta = {"filename": "photo.jpg", "filetype": "image/jpeg"}
    r = create("images", 4096, metadata=jpeg_meta)
    if expect(r, 201, None, "images: create a 4 KiB image/jpeg"):
        for label, data in (("PNG bytes", random_bytes(rng, 4096, PNG)), ("random bytes", random_bytes(rng, 4096))):
            expect(patch(r.path, 0, data), 415, "ERR_CONTENT_MISMATCH", f"PATCH of {label} to a declared image/jpeg")
            h = head(r.path)
            check(h.status in (200, 204) and h.offset() == 0, f"after the refused {label}: HEAD offset still 0", repr(h))
        data = random_bytes(rng, 4096, JPEG)
        p = patch(r.path, 0, data)
        if expect(p, 204, None, "PATCH of a real JPEG header to a declared image/jpeg"):
            check(p.offset() == 4096, "the JPEG upload is complete", repr(p))
            g = get(r.path)
            check(g.status == 200 and g.body == data, "GET returns the JPEG bytes", f"{g.status}, {len(g.body)} bytes")
    # ... and on a creation-with-upload.
    r = create("images", 4096, metadata=jpeg_meta, body=random_bytes(rng, 4096, PNG))
    expect(r, 415, "ERR_CONTENT_MISMATCH", "creation-with-upload of PNG bytes declared image/jpeg")
    if r.path:
        h = head(r.path)
        check(h.status in (404, 410) or h.offset() == 0, "the refused creation-with-upload stored no byte", repr(h))
    # Without a declared type the bytes must be an allowed type.
    r = create("images", 2048, metadata={"filename": "nodecl"})
    if expect(r, 201, None, "images: create without filetype"):
        expect(patch(r.path, 0, random_bytes(rng, 2048)), 415, "ERR_CONTENT_MISMATCH",
               "PATCH of random bytes without a declared type")
        expect(patch(r.path, 0, random_bytes(rng, 2048, PNG)), 204, None, "PATCH of a PNG without a declared type")
    # A small file: the whole file is the prefix.
    r = create("images", 3, metadata={"filename": "tiny.jpg", "filetype": "image/jpeg"}, body=JPEG[:3])
    expect(r, 201, None, "a 3-byte JPEG (shorter than 16 bytes) in one creation-with-upload")
    # voice: a token and an MP3.
    data = random_bytes(rng, 50 * KiB, MP3)
    r = create("voice", len(data), alice, metadata={"filename": "v.mp3", "filetype": "audio/mpeg"}, body=data)
    expect(r, 201, None, "voice: an MP3 with a filename and a token")

    # checksum = required
    r = create("strict", 1000)
    if expect(r, 201, None, "strict: create"):
        data = random_bytes(rng, 1000)
        expect(patch(r.path, 0, data), 400, "ERR_CHECKSUM_REQUIRED", "strict: PATCH without Upload-Checksum")
        h = head(r.path)
        check(h.offset() == 0, "strict: HEAD offset still 0 after the refused PATCH", repr(h))
        digest = base64.b64encode(hashlib.sha1(data).digest()).decode()
        expect(patch(r.path, 0, data, headers={"Upload-Checksum": f"sha1 {digest}"}), 204, None,
               "strict: PATCH with Upload-Checksum sha1")
    r = create(None, 100, metadata={"scenario": "strict"})
    if expect(r, 201, None, "POST /files/ with metadata scenario=strict"):
        expect(patch(r.path, 0, random_bytes(rng, 100)), 400, "ERR_CHECKSUM_REQUIRED",
               "the upload created via the scenario metadata follows strict's rules")


# ---------------------------------------------------------------------------------------------
# b. authentication and authorization


def www_authenticate_ok(resp, invalid):
    value = resp.headers.get("www-authenticate", "")
    if not re.match(r'\s*Bearer\s+realm="ferry"', value):
        return False
    return ('error="invalid_token"' in value) == invalid


def case_auth(env):
    rng, keys = env.rng, env.keys
    owner = env.token("alice")
    r_open = create("private", 1000, owner, metadata={"filename": "open.bin"})
    if not expect(r_open, 201, None, "owner creates an upload in private"):
        return
    u_open = r_open.path
    first = random_bytes(rng, 300)
    expect(patch(u_open, 0, first, owner), 204, None, "owner PATCHes 300 of 1000 bytes")
    done_data = random_bytes(rng, 500)
    r = create("private", 500, owner, body=done_data)
    if not expect(r, 201, None, "owner creates a complete upload (creation-with-upload)"):
        return
    u_done = r.path
    part_data = random_bytes(rng, 200)
    r = create("private", 200, owner, body=part_data, headers={"Upload-Concat": "partial"})
    if not expect(r, 201, None, "owner creates a complete partial upload"):
        return
    u_part = r.path

    now = int(time.time())
    creds = [
        ("no token", None, 401, "ERR_UNAUTHORIZED", False),
        ("an expired token", env.token("alice", ttl=-120), 401, "ERR_UNAUTHORIZED", True),
        ("a malformed token", "not-a.jwt", 401, "ERR_UNAUTHORIZED", True),
        ("HS256 signed with another secret", env.token("alice", key="hs-other"), 401, "ERR_UNAUTHORIZED", True),
        ("RS256 signed by another key", env.token("alice", key="rs-other"), 401, "ERR_UNAUTHORIZED", True),
        ("alg none", env.token("alice", key="none"), 401, "ERR_UNAUTHORIZED", True),
        ("HS256 keyed with the RSA public key", env.token("alice", key="hs-rsa-pub"), 401, "ERR_UNAUTHORIZED", True),
        ("a wrong audience", env.token("alice", extra={"aud": "someone-else"}), 401, "ERR_UNAUTHORIZED", True),
        ("a wrong issuer", env.token("alice", extra={"iss": "https://evil.test"}), 401, "ERR_UNAUTHORIZED", True),
        ("nbf in the future", env.token("alice", extra={"nbf": now + 600}), 401, "ERR_UNAUTHORIZED", True),
        ("no exp", env.token("alice", drop=("exp",)), 401, "ERR_UNAUTHORIZED", True),
        ("no sub", env.token("alice", drop=("sub",)), 401, "ERR_UNAUTHORIZED", True),
        ("another principal (HS256)", env.token("bob"), 404, "ERR_UPLOAD_NOT_FOUND", None),
        ("another principal (RS256)", env.token("bob", key="rs"), 404, "ERR_UPLOAD_NOT_FOUND", None),
        ("another principal (ES256 via JWKS)", env.token("bob", key="es-jwks"), 404, "ERR_UPLOAD_NOT_FOUND", None),
        ("the owner's token without the scenario", env.token("alice", scenarios=("biz",)), 403, "ERR_FORBIDDEN", None),
    ]
    ops = [
        ("POST /files/private/", lambda t: create("private", 10, t)),
        ("HEAD", lambda t: head(u_open, t)),
        ("PATCH", lambda t: patch(u_open, 300, random_bytes(rng, 100), t)),
        ("GET of a complete upload", lambda t: get(u_done, t)),
        ("DELETE", lambda t: delete(u_open, t)),
        ("final concatenation naming it", lambda t: create_final("private", [u_part], t)),
    ]
    for label, tok, status, error, invalid in creds:
        for op, fn in ops:
            if status == 404 and op.startswith("POST"):
                continue  # another principal may create uploads of its own
            r = fn(tok)
            if status == 404 and op.startswith("final"):
                # Another principal's partial is reported exactly like a missing one (checked below).
                status_, error_ = 400, "ERR_INVALID_CONCAT"
            else:
                status_, error_ = status, error
            ok = r.status == status_ and r.error == error_
            if ok and invalid is not None:
                ok = www_authenticate_ok(r, invalid)
            want = f"{status_} {error_}" + ("" if invalid is None else
                                           ' + WWW-Authenticate: Bearer realm="ferry"' + (', error="invalid_token"' if invalid else ""))
            check(ok, f"{op} with {label} -> {want}", f"got {r!r}")

    # A final concatenation naming another principal's upload must not reveal that it exists.
    bob = env.token("bob")
    theirs = create_final("private", [u_part], bob)
    missing = create_final("private", ["/files/" + os.urandom(16).hex()], bob)
    check((theirs.status, theirs.error, theirs.body) == (missing.status, missing.error, missing.body),
          "a final concatenation naming another principal's upload answers like one naming no upload",
          f"theirs {theirs!r}\n      missing {missing!r}")
    # ... nor may an anonymous final in an anonymous scenario take the owner's bytes.
    theirs = create_final("images", [u_part])
    missing = create_final("images", ["/files/" + os.urandom(16).hex()])
    check(400 <= theirs.status < 500 and (theirs.status, theirs.error, theirs.body) == (missing.status, missing.error, missing.body),
          "an anonymous final concatenation in an anonymous scenario naming the owner's upload is refused"
          " like one naming no upload", f"theirs {theirs!r}\n      missing {missing!r}")

    # The owner's uploads are untouched.
    h = head(u_open, owner)
    check(h.status in (200, 204) and h.offset() == 300 and h.headers.get("upload-length") == "1000",
          "afterwards the owner's HEAD shows offset 300 of 1000", repr(h))
    g = get(u_done, owner)
    check(g.status == 200 and g.body == done_data, "afterwards the owner's GET returns the same bytes",
          f"{g.status}, sha {sha256(g.body)[:12]} vs {sha256(done_data)[:12]}")
    for label, tok in (("RS256 (public-key-file)", env.token("alice", key="rs")),
                       ("ES256 (JWKS kid ec-1)", env.token("alice", key="es-jwks")),
                       ("RS256 (JWKS kid rsa-jwks-1), aud as a list",
                        env.token("alice", key="rs-jwks", extra={"aud": [AUDIENCE, "other"]})),
                       ("a token listing the scenario by name", env.token("alice", scenarios=("private",)))):
        h = head(u_open, tok)
        check(h.status in (200, 204) and h.offset() == 300, f"the owner's {label} token may HEAD it", repr(h))
    rest = random_bytes(rng, 700)
    p = patch(u_open, 300, rest, env.token("alice", key="rs"))
    check(p.status == 204 and p.offset() == 1000, "the owner completes the upload (RS256 token)", repr(p))
    g = get(u_open, owner)
    check(g.status == 200 and g.body == first + rest, "the completed upload holds exactly the owner's bytes",
          f"{g.status}, {len(g.body)} bytes")
    r = create_final("private", [u_part], owner)
    if expect(r, 201, None, "the owner's final concatenation of the partial"):
        g = get(r.path, owner)
        check(g.status == 200 and g.body == part_data, "GET of the final upload returns the partial's bytes",
              f"{g.status}, {len(g.body)} bytes")
        expect(head(r.path, env.token("bob")), 404, "ERR_UPLOAD_NOT_FOUND", "another principal HEADs the final upload")
    expect(delete(u_done, owner), 204, None, "the owner DELETEs its complete upload")
    h = head(u_done, owner)
    check(h.status in (404, 410), "after DELETE the upload is gone", repr(h))

    # Anonymous uploads: no owner, the URL is the capability.
    r = create("images", len(JPEG), body=JPEG, metadata={"filetype": "image/jpeg"})
    if expect(r, 201, None, "an anonymous creation in images"):
        h = head(r.path)
        check(h.status in (200, 204) and h.offset() == len(JPEG), "HEAD of the anonymous upload without a token", repr(h))
        h = head(r.path, env.token("bob"))
        check(h.status in (200, 204) and h.offset() == len(JPEG), "HEAD of the anonymous upload with any token", repr(h))


# ---------------------------------------------------------------------------------------------
# quotas


def retry_after_ok(r):
    value = r.headers.get("retry-after", "")
    return value.isdigit() and 1 <= int(value) <= 60


def case_quotas(env):
    carol = env.token("carol", limits={"openUploads": 2})
    a = create("private", 100, carol)
    b = create("private", 100, carol)
    check(a.status == 201 and b.status == 201, "openUploads 2: two creations pass", f"{a!r} / {b!r}")
    c = create("private", 100, carol)
    check(c.status == 429 and c.error == "ERR_QUOTA_EXCEEDED" and retry_after_ok(c),
          "openUploads 2: the third -> 429 ERR_QUOTA_EXCEEDED + Retry-After", repr(c))
    if a.path:
        expect(delete(a.path, carol), 204, None, "openUploads 2: DELETE one")
        expect(create("private", 100, carol), 201, None, "openUploads 2: a creation passes again after the DELETE")
    if b.path:
        expect(patch(b.path, 0, bytes(100), carol), 204, None, "openUploads 2: complete another")
        expect(create("private", 100, carol), 201, None, "openUploads 2: a complete upload frees its slot")

    dave = env.token("dave", limits={"creationsPerMinute": 3})
    statuses = [create("private", 10, dave).status for _ in range(3)]
    check(statuses == [201, 201, 201], "creationsPerMinute 3: three creations pass", repr(statuses))
    r = create("private", 10, dave)
    check(r.status == 429 and r.error == "ERR_QUOTA_EXCEEDED" and retry_after_ok(r),
          "creationsPerMinute 3: the fourth -> 429 ERR_QUOTA_EXCEEDED + Retry-After (1-60 s)", repr(r))

    erin = env.token("erin", limits={"openBytes": 1000})
    expect(create("private", 600, erin), 201, None, "openBytes 1000: 600 bytes pass")
    r = create("private", 600, erin)
    check(r.status == 429 and r.error == "ERR_QUOTA_EXCEEDED" and retry_after_ok(r),
          "openBytes 1000: another 600 -> 429 ERR_QUOTA_EXCEEDED + Retry-After", repr(r))
    expect(create("private", 400, erin), 201, None, "openBytes 1000: 400 more pass")

    frank = env.token("frank", limits={"maxSize": 100})
    expect(create("private", 101, frank), 413, "ERR_MAX_SIZE_EXCEEDED", "token maxSize 100: 101 bytes")
    expect(create("private", 100, frank), 201, None, "token maxSize 100: 100 bytes")
    r = create("private", None, frank, headers={"Upload-Defer-Length": "1"})
    if expect(r, 201, None, "token maxSize 100: a deferred length"):
        expect(patch(r.path, 0, bytes(10), frank, headers={"Upload-Length": "200"}), 413, "ERR_MAX_SIZE_EXCEEDED",
               "token maxSize 100: declaring 200 on the first PATCH")
        h = head(r.path, frank)
        check(h.offset() == 0, "the refused deferred-length PATCH stored nothing", repr(h))
    big = env.token("gina", limits={"maxSize": 100 * MiB})
    expect(create("images", 3 * MiB, big, metadata={"filetype": "image/png"}), 413, "ERR_MAX_SIZE_EXCEEDED",
           "a token's larger maxSize does not raise the scenario's")


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
        proc = subprocess.run([FERRY, "put", path, f"http://127.0.0.1:{env.port}/files/biz/", "--no-resume",
                               "--parallel", parallel, "--deadline", "120s", "--metadata", "filename=put.bin",
                               "--header", f"Authorization: Bearer {alice}"],
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
    mismatched = [a for a in state["attempts"] if a["upload"] in uploads and a["status"] != 401
                  and (a["headerId"] != a["id"] or a["headerType"] != a["type"])]
    check(not mismatched, f"{what}: Ferry-Event-Id / Ferry-Event-Type headers match the body", repr(mismatched[:3]))


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


# ---------------------------------------------------------------------------------------------

CASES = [("config", case_config), ("scenarios", case_scenarios), ("auth", case_auth), ("quotas", case_quotas),
         ("pre-create", case_pre_create), ("pre-finish", case_pre_finish), ("webhooks", case_webhooks),
         ("crash", None)]


def run(args, tmp):
    global ENV
    env = ENV = Env(tmp, args.seed)
    start = time.monotonic()
    try:
        env.start()
        print(f"business test: seed {args.seed}, ferry on {env.port}, receivers "
              + ", ".join(f"{k} :{r.port}" for k, r in env.receivers.items()), flush=True)
        for name, fn in CASES:
            if args.case and name not in args.case:
                continue
            print(f"== {name}", flush=True)
            t0 = time.monotonic()
            try:
                if name == "crash":
                    case_crash(env, args.crash_rounds)
                else:
                    fn(env)
            except Exception as e:
                check(False, f"{name}: ran to the end", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
                if env.ferry.proc is not None and env.ferry.proc.poll() is not None:
                    print("      ferry is not running; restarting it", flush=True)
                    try:
                        env.ferry.start()
                    except CaseError as e2:
                        check(False, "ferry restarts", str(e2))
                        break
            print(f"   ({name}: {time.monotonic() - t0:.1f}s)", flush=True)
    except CaseError as e:
        check(False, "setup", str(e))
    finally:
        env.procs.kill_all()
    if results["failed"]:
        print("--- ferry log tail ---\n      " + env.ferry.log_tail(40))
    print(f"({time.monotonic() - start:.0f}s)")
    return 0 if results["failed"] == 0 else 1


def main():
    global FERRY
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ferry", required=True, help="path to the ferry binary")
    p.add_argument("--case", action="append", choices=[n for n, _ in CASES], help="run only this case (repeatable)")
    p.add_argument("--crash-rounds", type=int, default=20)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases, config)")
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    FERRY = os.path.abspath(args.ferry)
    problem = None
    if rsa is None:
        problem = "the Python package cryptography is not installed (python3 -m pip install cryptography)"
    elif not os.access(FERRY, os.X_OK):
        problem = f"ferry binary not found or not executable: {FERRY}"
    else:
        helptext = subprocess.run([FERRY, "serve", "--help"], capture_output=True, text=True).stdout
        if "--config" not in helptext:
            problem = f"{FERRY} serve has no --config option (built before the business features?)"
    if problem:
        print(f"business test: {problem}")
        print("business test: 0 passed, 1 failed")
        return 2
    tmp = tempfile.mkdtemp(prefix="ferry-business-")
    try:
        rc = run(args, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"business test: {results['passed']} passed, {results['failed']} failed"
          + (f", {results['skipped']} skipped" if results["skipped"] else ""), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
