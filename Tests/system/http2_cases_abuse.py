"""Case `abuse` of the HTTPS and HTTP/2 lane: what a hostile HTTP/2 client sends, frame by frame,
against a server of its own. Each attack must end with its connection cut (GOAWAY, RST_STREAM or
a close) and leave the server healthy: /healthz on a new connection, RSS under +100 MiB, an
upload still works."""
import os
import time

from http2_clients import (CANCEL, ENHANCE_YOUR_CALM, H2, RawH2, continuation_frame, data_frame, error_name,
                           header_block, headers_frame, ping_frame, rst_frame, settings_frame, window_update_frame)
from http2_env import KiB, MiB, TUS, h1
from support import check

RSS_GROWTH_MIB = 100


def cut(r, timeout=3):
    """Waits for the server to close the connection (RFC 9113 5.4.1: after a GOAWAY for an error,
    the endpoint MUST close it); True once it did."""
    return r.drain(timeout)


def cut_with(r, code):
    """True if the server sent GOAWAY `code` and then closed the connection."""
    return cut(r) and r.goaway is not None and r.goaway[0] == code


def flood(r, one, total, batch):
    """Sends `total` copies of the frame bytes `one`, `batch` at a time, until the server closes
    the connection; returns how many were written."""
    written, chunk = 0, one * batch
    while written < total:
        if not r.send(chunk):
            break
        written += batch
        r.pump(0)
        if r.closed or r.goaway:
            break
    return written


def rapid_reset(server):
    r = RawH2(server)
    block = header_block(r.fields())
    sid, opened, began = 1, 0, time.monotonic()
    while opened < 10_000 and not (r.closed or r.goaway):
        batch = b"".join(headers_frame(sid + 2 * i, block) + rst_frame(sid + 2 * i, CANCEL) for i in range(50))
        if not r.send(batch):
            break
        sid += 100
        opened += 50
        r.pump(0.005)  # lets the server read each batch before the next: `opened` is what it saw
    ended = cut_with(r, ENHANCE_YOUR_CALM)
    check(ended and opened < 10_000,
          f"rapid reset: {r.outcome()}, connection closed, after {opened} HEADERS+RST_STREAM pairs "
          f"({time.monotonic() - began:.2f}s)", f"closed {r.closed}")
    r.close()


def continuation_flood(server):
    r = RawH2(server)
    block = header_block(r.fields([("x-filler", "a" * 4000)]))
    r.send(headers_frame(1, block[:100], end_stream=True, end_headers=False))
    frames = b"".join(continuation_frame(1, b"\x00" * 1000) for _ in range(100))
    written = flood(r, frames, 100 * 1000, 1) * 100
    check(cut_with(r, ENHANCE_YOUR_CALM),
          f"CONTINUATION flood: {r.outcome()}, connection closed, after {written} CONTINUATION frames written",
          f"closed {r.closed}")
    r.close()


def large_header(server):
    r = RawH2(server)
    block = header_block(r.fields([("x-large", "b" * (64 * KiB))]))
    pieces = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    r.send(headers_frame(1, pieces[0], end_headers=len(pieces) == 1)
           + b"".join(continuation_frame(1, p, end_headers=i == len(pieces) - 1) for i, p in enumerate(pieces[1:], 1)))
    r.wait(lambda: r.status(1) or 1 in r.resets() or r.goaway or r.closed, 5)
    status = r.status(1)
    refused = status == 431 or 1 in r.resets() or (r.goaway is not None and cut(r))
    check(status in (None, 431) and refused, "a 64 KiB header (--max-header-size 32K): refused (431, RST_STREAM, or GOAWAY and closed)",
          f"stream 1: status {status}, RST_STREAM {error_name(r.resets().get(1))}; connection: {r.outcome()}, closed {r.closed}")
    print(f"      (the 64 KiB header got: status {status}, RST_STREAM {error_name(r.resets().get(1))}, {r.outcome()})")
    r.close()
    with H2(server) as c:  # SETTINGS exchanged (and acknowledged) first
        c.wait_settings(2)
        s = c.response(c.request("GET", "/healthz", {"x-medium": "c" * (20 * KiB)}))
        check(s.status == 200, "a 20 KiB header (under the limit) after the client acknowledged SETTINGS is served",
              f"{s.status}, goaway {c.goaway}")
    with H2(server) as c:  # the request goes out with the preface, as curl and browsers send it
        # Before the client acknowledges SETTINGS_MAX_HEADER_LIST_SIZE, NIOHTTP2 holds it to its
        # 16 KiB default (README, "Deployment"): a first flight stays under that.
        s = c.response(c.request("GET", "/healthz", {"x-medium": "c" * (12 * KiB)}))
        check(s.status == 200, "a 12 KiB header on a client's first flight (before it saw SETTINGS) is served",
              f"status {s.status}, GOAWAY {c.goaway and (error_name(c.goaway[0]), c.goaway[1])}")


def window_update_flood(server):
    r = RawH2(server)
    began = time.monotonic()
    written = flood(r, window_update_frame(0, 1), 600_000, 5_000)
    ended = cut(r, timeout=15)
    check(ended, f"WINDOW_UPDATE flood: {r.outcome()} after {written} frames written "
                 f"({time.monotonic() - began:.2f}s)")
    r.close()
    return ended


def control_flood(server, label, one):
    r = RawH2(server)
    written = flood(r, one, 20_000, 100)
    check(cut_with(r, ENHANCE_YOUR_CALM), f"{label} flood: {r.outcome()}, connection closed, after {written} frames written",
          f"closed {r.closed}; {len(r.frames)} frames came back")
    r.close()


def empty_data_flood(server):
    status, headers, _ = h1(server, "POST", "/files/", {**TUS, "upload-length": "1000"})
    path = "/" + headers["location"].split("://", 1)[1].split("/", 1)[1]
    r = RawH2(server)
    r.send(headers_frame(1, header_block(r.fields([("tus-resumable", "1.0.0"), ("upload-offset", "0"),
                                                   ("content-type", "application/offset+octet-stream")],
                                                  method="PATCH", path=path)), end_stream=False))
    written = flood(r, data_frame(1, b""), 10_000, 100)
    check(cut_with(r, ENHANCE_YOUR_CALM), f"empty DATA flood: {r.outcome()}, connection closed, after {written} frames written",
          f"closed {r.closed}")
    r.close()


def idle_connections(server, count=200):
    before = server.metric("ferry_http_connections_open", "h2") or 0
    conns = []
    began = time.monotonic()
    try:
        for _ in range(count):
            conns.append(RawH2(server))
        opened = server.metric("ferry_http_connections_open", "h2")
        status = h1(server, "GET", "/healthz")[0]
        # `before` may still count attacked connections the server is closing (TLS shutdown).
        check(status == 200 and opened is not None and opened >= count,
              f"{count} idle h2 connections (preface only) are held ({time.monotonic() - began:.1f}s) "
              f"and /healthz still answers", f"healthz {status}, open h2 {opened} (before {before})")
        with H2(server) as c:
            s = c.response(c.request("GET", "/healthz"))
            check(s.status == 200, "...and a new h2 connection is served beside them", f"{s.status}")
    finally:
        for r in conns:
            r.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (server.metric("ferry_http_connections_open", "h2") or 0) > before:
        time.sleep(0.1)
    after = server.metric("ferry_http_connections_open", "h2")
    check(after is not None and after <= before, f"...and they are counted closed once gone (open h2 {after})")


def upload_works(server, label):
    size = MiB
    data = os.urandom(size)
    with H2(server) as c:
        s = c.response(c.request("POST", "/files/", {**TUS, "upload-length": str(size),
                                                     "content-type": "application/offset+octet-stream",
                                                     "content-length": str(size)}, body=data))
    ok = s.status == 201 and s.headers.get("upload-offset") == str(size)
    if ok:
        path = "/" + s.headers["location"].split("://", 1)[1].split("/", 1)[1]
        ok = h1(server, "GET", path, TUS)[2] == data
    check(ok, f"{label}: a 1 MiB upload over h2 still works", f"{s.status} {s.headers} reset {error_name(s.reset)}")


def healthy(server, label, baseline):
    alive = server.alive()
    status = h1(server, "GET", "/healthz", timeout=10)[0] if alive else None
    rss = server.rss_mib() if alive else 0
    check(alive and status == 200 and rss < baseline + RSS_GROWTH_MIB,
          f"{label}: server healthy after it (/healthz {status}, RSS {rss:.0f} MiB, baseline {baseline:.0f})",
          server.log_tail(10))


def case_abuse(env, servers):
    server = servers["abuse"] = env.server("abuse")
    upload_works(server, "before the attacks")
    baseline = server.rss_mib()
    attacks = [("rapid reset", rapid_reset), ("CONTINUATION flood", continuation_flood),
               ("oversized header", large_header), ("WINDOW_UPDATE flood", window_update_flood),
               ("PING flood", lambda s: control_flood(s, "PING", ping_frame())),
               ("SETTINGS flood", lambda s: control_flood(s, "SETTINGS", settings_frame({}))),
               ("empty DATA flood", empty_data_flood), ("idle connections", idle_connections)]
    for label, attack in attacks:
        began = time.monotonic()
        attack(server)
        healthy(server, label, baseline)
        print(f"      ({label}: {time.monotonic() - began:.1f}s)", flush=True)
    upload_works(server, "after the attacks")
    rss = server.rss_mib()
    check(rss < baseline + RSS_GROWTH_MIB, f"RSS after all attacks {rss:.0f} MiB (baseline {baseline:.0f} MiB, bound +{RSS_GROWTH_MIB})")
    server.stop()
    del servers["abuse"]
