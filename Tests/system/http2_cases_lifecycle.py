"""Cases `reload` and `shutdown` of the HTTPS and HTTP/2 lane: a renewed certificate read on
SIGHUP while an h2 upload runs, bad certificate files at reload and at start-up, and SIGTERM
during an h2 PATCH."""
import hashlib
import os
import signal
import subprocess
import threading
import time

from http2_clients import H2, RawH2, data_frame, error_name, header_block, headers_frame, ping_frame, settings_frame
from http2_env import MiB, TUS, Ferry, copy_cert, free_port, h1, path_of, poll_offset
from support import check

OCTETS = "application/offset+octet-stream"


def slow_upload(server, path, data, result):
    """PATCHes `data` in 64 KiB pieces ~90 ms apart on one h2 connection (run in a thread)."""
    try:
        with H2(server) as c:
            result["cert"] = hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest()
            s = c.request("PATCH", path, {**TUS, "upload-offset": "0", "content-type": OCTETS,
                                          "content-length": str(len(data))}, end=False)
            c.send_body(s.id, data, chunk=64 * 1024, chunk_delay=0.09)
            c.response(s, timeout=20)
            result["status"], result["headers"], result["reset"] = s.status, s.headers, s.reset
    except Exception as error:  # reported by the check that reads `result`
        result["error"] = f"{type(error).__name__}: {error}"


def start_fails(env, label, args, needle):
    """`ferry serve` with bad TLS settings exits non-zero and names the setting."""
    port = free_port()
    log = os.path.join(env.tmp, f"start-{port}.log")
    with open(log, "wb") as out:
        proc = env.procs.spawn([env.ferry, "serve", "--host", "127.0.0.1", "--port", str(port),
                                "--data-dir", os.path.join(env.tmp, f"data-start-{port}")] + args,
                               stdout=out, stderr=subprocess.STDOUT)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        env.procs.kill(proc)
        code = None
    with open(log, errors="replace") as f:
        text = f.read().strip()
    message = next((line for line in text.splitlines() if needle in line), text[-300:])
    check(code not in (None, 0) and needle in text, f"start-up with {label}: exits {code}, naming {needle}: {message.strip()[:150]}",
          text[-600:])


def case_reload(env, servers):
    pki = os.path.join(env.tmp, "served")
    os.makedirs(pki, exist_ok=True)
    cert, key = os.path.join(pki, "cert.pem"), os.path.join(pki, "key.pem")
    copy_cert(env.cert_a, env.key_a, cert, key)
    server = servers["reload"] = Ferry(env, "reload", cert=cert, key=key).start()
    check(server.peer_certificate_sha256() == env.sha_a, "the server starts with certificate A")

    size = 2 * MiB
    data = os.urandom(size)
    status, headers, _ = h1(server, "POST", "/files/", {**TUS, "upload-length": str(size)})
    path = path_of(headers["location"])
    result = {}
    uploader = threading.Thread(target=slow_upload, args=(server, path, data, result))
    uploader.start()
    time.sleep(1.0)
    copy_cert(env.cert_b, env.key_b, cert, key)
    server.proc.send_signal(signal.SIGHUP)
    reloaded = server.wait_log("tls.certificate_reloaded", timeout=5)
    mid = uploader.is_alive()
    seen = server.peer_certificate_sha256()
    check(reloaded and seen == env.sha_b and mid,
          "SIGHUP with renewed files mid-upload: logged tls.certificate_reloaded; a new connection sees certificate B",
          f"reloaded {reloaded}, new connection sees {'B' if seen == env.sha_b else 'A' if seen == env.sha_a else seen}, "
          f"upload still running {mid}")
    uploader.join(timeout=30)
    check(result.get("status") == 204 and result.get("headers", {}).get("upload-offset") == str(size)
          and result.get("cert") == env.sha_a,
          "the h2 upload begun under certificate A completes on its connection (204, 2 MiB)",
          f"{result}")
    status, _, body = h1(server, "GET", path, TUS)
    check(status == 200 and body == data, "...and its bytes match", f"GET {status}, {len(body)} bytes")

    with open(key, "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nnot a key at all\n-----END PRIVATE KEY-----\n")
    server.proc.send_signal(signal.SIGHUP)
    failed = server.wait_log("tls.certificate_reload_failed", timeout=5)
    seen = server.peer_certificate_sha256() if server.alive() else None
    check(failed and server.alive() and seen == env.sha_b,
          "garbage key file at SIGHUP: logged tls.certificate_reload_failed, still running, new connections get B",
          f"logged {failed}, alive {server.alive()}, cert {'B' if seen == env.sha_b else seen}")
    copy_cert(env.cert_b, env.key_a, cert, key)  # a key that does not fit the certificate
    server.proc.send_signal(signal.SIGHUP)
    failed = server.wait_log("tls.certificate_reload_failed", count=2, timeout=5)
    seen = server.peer_certificate_sha256() if server.alive() else None
    check(failed and seen == env.sha_b and h1(server, "GET", "/healthz")[0] == 200,
          "a key that does not fit the certificate at SIGHUP: refused the same way, B still served",
          f"logged twice {failed}, cert {'B' if seen == env.sha_b else seen}")
    line = next((l for l in server.log_text().splitlines() if "tls.certificate_reload_failed" in l), "")
    check("tls-key" in line, "the reload failure names tls-key in its log line", line[:300])
    server.stop()
    del servers["reload"]

    missing = os.path.join(env.tmp, "missing.pem")
    garbage = os.path.join(env.tmp, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("garbage\n")
    start_fails(env, "a missing certificate file", ["--tls-cert", missing, "--tls-key", env.key_a], "tls-cert")
    start_fails(env, "a garbage certificate file", ["--tls-cert", garbage, "--tls-key", env.key_a], "tls-cert")
    start_fails(env, "a garbage key file", ["--tls-cert", env.cert_a, "--tls-key", garbage], "tls-key")
    start_fails(env, "a key that does not fit", ["--tls-cert", env.cert_a, "--tls-key", env.key_b], "tls-key")
    start_fails(env, "--tls-cert without --tls-key", ["--tls-cert", env.cert_a], "tls-key")
    start_fails(env, "--tls-key without --tls-cert", ["--tls-key", env.key_a], "tls-cert")


def case_shutdown(env, servers):
    """Driven frame by frame (RawH2): hyper-h2 drops every frame that follows a GOAWAY, and the
    point here is what the server sends after its first one."""
    timeout = 10
    server = servers["shutdown"] = Ferry(env, "shutdown", extra=["--shutdown-timeout", f"{timeout}s"]).start()
    size = 10 * MiB
    status, headers, _ = h1(server, "POST", "/files/", {**TUS, "upload-length": str(size)})
    path = path_of(headers["location"])
    r = RawH2(server)
    r.wait(lambda: r.server_settings() is not None and r.connection_window() > 65_535, 2)
    r.send(settings_frame({}, ack=True))
    stream_window = (r.server_settings() or {}).get(0x4, 65_535)
    sent = min(3 * MiB, stream_window, r.connection_window()) // 16_384 * 16_384
    r.send(headers_frame(1, header_block(r.fields([("tus-resumable", "1.0.0"), ("upload-offset", "0"),
                                                    ("content-type", OCTETS), ("content-length", str(size))],
                                                   method="PATCH", path=path)), end_stream=False)
           + b"".join(data_frame(1, os.urandom(16_384)) for _ in range(sent // 16_384)))
    r.send(ping_frame(b"barrier!"))
    r.wait(lambda: any(f.type == 0x6 and "ACK" in f.flags for f in r.frames), 5)
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    r.wait(lambda: r.status(1) is not None or r.closed, timeout)
    answered = time.monotonic() - began
    check(r.goaways[:1] == [(0, 2 ** 31 - 1)], f"SIGTERM during an h2 PATCH: GOAWAY NO_ERROR at once ({r.outcome()})",
          f"GOAWAYs {r.goaways}")
    status, headers = r.response(1)
    check(status == 503 and headers.get("ferry-error") == "ERR_SHUTTING_DOWN",
          f"...and the PATCH's stream is answered 503 ERR_SHUTTING_DOWN ({answered:.2f}s), as on HTTP/1.1",
          f"status {status}, headers {headers}, RST_STREAM {error_name(r.resets().get(1))}")
    r.drain(timeout)
    check([g for g in r.goaways[1:] if g == (0, 1)] != [], "...then a second GOAWAY naming stream 1 the last one processed "
          "(after the PING round trip)", f"GOAWAYs {r.goaways}")
    try:
        code = server.proc.wait(timeout=timeout + 10)
    except subprocess.TimeoutExpired:
        code = None
    elapsed = time.monotonic() - began
    check(code == 0 and elapsed < timeout, f"ferry exits cleanly within --shutdown-timeout {timeout}s (exit {code} after {elapsed:.2f}s)")
    r.close()
    server.stop()
    server = servers["shutdown"] = Ferry(env, "shutdown", extra=["--shutdown-timeout", f"{timeout}s"], data=server.data).start()
    offset = poll_offset(server, path, sent, timeout=1)
    check(offset == sent, f"after a restart on the same data dir, HEAD says Upload-Offset {sent} (the bytes sent before SIGTERM)",
          f"Upload-Offset {offset}")
    server.stop()
    del servers["shutdown"]
