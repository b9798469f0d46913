"""Business system test cases about the rules Ferry enforces by itself (see business_test.py):

  config      a broken configuration file stops the start, naming the file, line and key.
  scenarios   per-scenario limits, metadata, content types and sniffing, checksum=required,
              the default scenario and the `scenario` metadata key.
  auth        tokens (missing, expired, malformed, wrongly signed, wrong claims, another
              principal's, without the scenario) on every operation; anonymous uploads.
  quotas      open uploads, open bytes, creations per minute (429 + Retry-After), max size.

Each case is a function of the run's Env (business_env.Env).
"""
import base64
import hashlib
import os
import re
import subprocess
import time

import business_env
from business_env import (AUDIENCE, JPEG, MP3, PNG, KiB, MiB, call, create, create_final, delete, expect, get,
                          head, patch, random_bytes, sha256)
from support import check, free_port, tail


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
            proc = subprocess.run([business_env.FERRY, "serve", "--host", "127.0.0.1", "--port", str(free_port()),
                                   "--data-dir", data, "--config", path], capture_output=True, text=True, timeout=15)
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

