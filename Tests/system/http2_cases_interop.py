"""Case `interop` of the HTTPS and HTTP/2 lane: real clients against the real server. curl
(HTTP/2 over TLS, HTTP/2 with prior knowledge on an --h2c port, HTTP/1.1 over TLS) through a
whole tus upload's life, httpx with http2=True, the official tus client (tuspy) over HTTPS, and
RUFH's 104 interim response as curl sees it on HTTP/2."""
import hashlib
import os
import socket
import ssl
import subprocess
import tempfile

import httpx

from http2_env import MiB, TUS, h1, path_of
from support import check

try:
    from tusclient.client import TusClient
except ImportError:
    TusClient = None


def curl(env, *args, data=None):
    """Runs curl; returns (HTTP code, HTTP version, final response headers, body, stderr)."""
    with tempfile.TemporaryDirectory(dir=env.tmp) as d:
        head, body = os.path.join(d, "head"), os.path.join(d, "body")
        cmd = ["curl", "-sS", "--max-time", "30", "--cacert", env.ca, "-D", head, "-o", body,
               "-w", "%{http_code} %{http_version}"] + list(args)
        if data is not None:
            with open(os.path.join(d, "data"), "wb") as f:
                f.write(data)
            cmd += ["--data-binary", "@" + os.path.join(d, "data")]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        code, _, version = done.stdout.strip().partition(" ")
        headers = {}
        try:
            with open(head, errors="replace") as f:
                blocks = [b for b in f.read().replace("\r\n", "\n").split("\n\n") if b.strip()]
            for line in (blocks[-1].splitlines()[1:] if blocks else []):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            with open(body, "rb") as f:
                content = f.read()
        except OSError:
            content = b""
        return int(code or 0), version, headers, content, done.stderr


def curl_lifecycle(env, server, mode, want_version):
    """creation-with-upload, PATCH, HEAD, GET with Range, DELETE with curl `mode`."""
    data = os.urandom(300_000)
    base = [mode, "-H", "Tus-Resumable: 1.0.0"]
    code, version, headers, _, err = curl(env, *base, "-X", "POST", server.url("/files/"), "-H", "Upload-Length: 300000",
                                          "-H", "Content-Type: application/offset+octet-stream", data=data[:100_000])
    location = headers.get("location", "")
    check(code == 201 and version == want_version and headers.get("upload-offset") == "100000",
          f"{mode}: creation-with-upload 201 over HTTP/{version}, offset 100000",
          f"code {code}, version {version}, headers {headers}, {err.strip()}")
    if not location:
        return
    url = server.url(path_of(location))
    code, version, headers, _, err = curl(env, *base, "-X", "PATCH", url, "-H", "Upload-Offset: 100000",
                                          "-H", "Content-Type: application/offset+octet-stream", data=data[100_000:])
    check(code == 204 and version == want_version and headers.get("upload-offset") == "300000",
          f"{mode}: PATCH 204, offset 300000", f"code {code}, version {version}, headers {headers}, {err.strip()}")
    code, version, headers, _, err = curl(env, *base, "-I", url)
    check(code == 200 and headers.get("upload-offset") == "300000" and headers.get("upload-length") == "300000",
          f"{mode}: HEAD 200, offset and length 300000", f"code {code}, headers {headers}, {err.strip()}")
    code, version, headers, body, err = curl(env, *base, url, "-H", "Range: bytes=1000-99999")
    check(code == 206 and body == data[1000:100_000] and version == want_version,
          f"{mode}: GET with Range 206, the 99,000 bytes match",
          f"code {code}, {len(body)} bytes, equal {body == data[1000:100_000]}, {err.strip()}")
    code, version, headers, body, err = curl(env, *base, url)
    check(code == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest(),
          f"{mode}: GET 200, the whole upload matches", f"code {code}, {len(body)} bytes")
    code, version, _, _, err = curl(env, *base, "-X", "DELETE", url)
    check(code == 204, f"{mode}: DELETE 204", f"code {code}, {err.strip()}")
    code, _, _, _, _ = curl(env, *base, "-I", url)
    check(code in (404, 410), f"{mode}: HEAD after DELETE is {code}")


def httpx_upload(env, server):
    """tus POST + 1 MiB PATCHes with httpx over HTTP/2."""
    size = 3 * MiB
    data = os.urandom(size)
    ctx = env.certs.context(["h2", "http/1.1"])
    with httpx.Client(http2=True, verify=ctx, timeout=30) as client:
        r = client.post(server.url("/files/"), headers={**TUS, "Upload-Length": str(size)})
        versions = {r.http_version}
        check(r.status_code == 201, f"httpx: POST 201 ({r.http_version})", f"{r.status_code} {r.text[:200]}")
        url = server.url(path_of(r.headers.get("location", "/")))
        offset = 0
        while offset < size and r.status_code in (201, 204):
            r = client.patch(url, content=data[offset:offset + MiB],
                             headers={**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
            versions.add(r.http_version)
            offset = int(r.headers.get("upload-offset", -1)) if r.status_code == 204 else -1
        check(offset == size, f"httpx: 3 PATCHes of 1 MiB reach offset {size}", f"offset {offset}, last {r.status_code}")
        check(versions == {"HTTP/2"}, f"httpx: every response came over HTTP/2 ({sorted(versions)})")
        r = client.get(url)
        check(r.status_code == 200 and r.content == data, "httpx: GET returns the file byte for byte",
              f"{r.status_code}, {len(r.content)} bytes")


def tuspy_upload(env, server):
    if TusClient is None:
        check(False, "tuspy over HTTPS", "tusclient is not installed (pip install tuspy)")
        return
    path = env.file("tuspy.bin", 3 * MiB + 12345, seed=7)
    saved = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = env.ca
    try:
        uploader = TusClient(server.url("/files/")).uploader(file_path=path, chunk_size=MiB, metadata={"filename": "t.bin"})
        uploader.upload()
    except Exception as error:  # the client's own exception types
        check(False, "tuspy: uploads over HTTPS with the test CA", f"{type(error).__name__}: {error}")
        return
    finally:
        if saved is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = saved
    status, _, body = h1(server, "GET", path_of(uploader.url), TUS)
    with open(path, "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    check(status == 200 and hashlib.sha256(body).hexdigest() == want,
          "tuspy: uploads over HTTPS (CA via REQUESTS_CA_BUNDLE); GET's SHA-256 matches",
          f"GET {status}, {len(body)} bytes")


def rufh_interim_with_curl(env, server):
    data = os.urandom(200_000)
    code, version, headers, _, err = curl(env, "-v", "--http2", "-X", "POST", server.url("/files/"),
                                          "-H", "Upload-Draft-Interop-Version: 6", "-H", "Upload-Complete: ?1", data=data)
    statuses = [line[2:].strip() for line in err.splitlines() if line.startswith("< HTTP/")]
    check(statuses[:2] == ["HTTP/2 104", "HTTP/2 201"] and code == 201,
          "RUFH with curl --http2: `HTTP/2 104` interim, then the final 201",
          f"status lines {statuses}, code {code}")
    location = headers.get("location")
    if location:
        status, _, body = h1(server, "GET", path_of(location))
        check(status == 200 and body == data, "RUFH with curl: the upload's bytes match", f"GET {status}, {len(body)} bytes")


def no_alpn(env, server):
    """A TLS client that offers no ALPN at all gets HTTP/1.1."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with ssl.create_default_context(cafile=env.ca).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        check(sock.selected_alpn_protocol() is None and answer.startswith(b"HTTP/1.1 200"),
              "a TLS client offering no ALPN is served HTTP/1.1", repr(answer[:60]))


def operations_over_h2(env):
    """The console, /metrics, /healthz and the admin API over HTTP/2 (a server with an admin token)."""
    config = os.path.join(env.tmp, "admin.conf")
    with open(config, "w") as f:
        f.write("[server]\nadmin-token = lane-admin-token\n")
    server = env.server("ops", extra=["--config", config])
    try:
        for path, want in (("/console", b"<html"), ("/console/config", b"{"), ("/healthz", b"ok"),
                           ("/metrics", b"ferry_http_connections_total")):
            code, version, headers, body, err = curl(env, "--http2", server.url(path))
            check(code == 200 and version == "2" and want in body.lower() if want == b"<html" else code == 200 and version == "2" and want in body,
                  f"GET {path} over HTTP/2: 200", f"code {code}, version {version}, {body[:120]!r}, {err.strip()}")
        code, version, headers, _, _ = curl(env, "--http2", "-X", "POST", server.url("/files/"), "-H", "Tus-Resumable: 1.0.0",
                                            "-H", "Upload-Length: 10")
        location = headers.get("location", "")
        upload_id = location.rstrip("/").rsplit("/", 1)[-1]
        auth = ["-H", "Authorization: Bearer lane-admin-token"]
        for path in (f"/admin/uploads/{upload_id}/events", f"/admin/uploads/{upload_id}", "/admin/stats"):
            code, version, _, body, err = curl(env, "--http2", *auth, server.url(path))
            # An upload's statistics may still be on their way (202 pending): either is an answer.
            check(code in (200, 202) and version == "2", f"GET {path.replace(upload_id, '<id>')} (admin token) over HTTP/2: answered",
                  f"code {code}, version {version}, {body[:160]!r}, {err.strip()}")
        code, version, _, _, _ = curl(env, "--http2", server.url("/admin/stats"))
        check(code == 401 and version == "2", "the admin API without its token over HTTP/2: 401", f"code {code}")
    finally:
        server.stop()


def case_interop(env, servers):
    main, h2c = servers["main"], servers["h2c"]
    operations_over_h2(env)
    curl_lifecycle(env, main, "--http2", "2")
    curl_lifecycle(env, h2c, "--http2-prior-knowledge", "2")
    curl_lifecycle(env, main, "--http1.1", "1.1")
    httpx_upload(env, main)
    tuspy_upload(env, main)
    rufh_interim_with_curl(env, main)
    no_alpn(env, main)
