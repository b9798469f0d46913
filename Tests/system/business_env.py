"""The environment of the business system test (business_test.py) and its HTTP helpers.

- HTTP: `call` (one request on a fresh connection to 127.0.0.1, by default to the Ferry of the
  run), the tus operations (`create`, `patch`, `head`, `get`, `delete`, `create_final`),
  Upload-Metadata encoding, `expect` and the Ferry-Business-Status/-Result helpers.
- tokens: `Keys`, the generated HS256 secret, RS256 key and JWKS (ES256 + RS256) plus impostor
  keys, and JWT signing.
- processes: `Receiver` (one webhook_receiver.py), `Ferry` (`ferry serve --config`), the
  generated configuration file (`config_text`) and `Env`, which owns them all.

The entry script sets the module globals FERRY (the binary) and ENV (the Env of the run) before
any case runs; the case modules read them as `business_env.FERRY` / `business_env.ENV`.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import subprocess
import sys
import time
from urllib.parse import urlsplit

from support import CaseError, Procs, check, free_port, tail

try:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
except ImportError:
    rsa = None

HAVE_CRYPTOGRAPHY = rsa is not None  # Keys needs it (RSA / EC keys)
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
FERRY = None  # absolute path of the ferry binary; set by business_test.main
ENV = None  # the Env of the run; set by business_test.run

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
                [FERRY, "serve", "--creation-rate", "0", "--anonymous-open-uploads", "0", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", self.data,
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

[scenario batched]                 # events in POSTs of up to 5 (a JSON array)
anonymous = true
webhook = {a.url('/ferry/events?batched')}
webhook-secret = "{WEBHOOK_SECRET['A']}"
events = upload.created, upload.completed
webhook-batch = 5

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

