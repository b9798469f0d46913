"""Cases `resets`, `refusals`, `streams` and `flow` of the HTTPS and HTTP/2 lane: what HTTP/2's
streams change for uploads, seen frame by frame with hyper-h2."""
import os
import time

import h2.settings

from http2_clients import (CANCEL, H2, REFUSED_STREAM, RawH2, data_frame, error_name, header_block, headers_frame,
                           settings_frame)
from http2_env import KiB, MiB, RUFH6, TUS, h1, path_of, poll_offset
from support import check

OCTETS = "application/offset+octet-stream"


def tus_create(server, length):
    status, headers, _ = h1(server, "POST", "/files/", {**TUS, "upload-length": str(length)})
    if status != 201:
        raise AssertionError(f"tus POST answered {status}")
    return path_of(headers["location"])


def get_body(server, path):
    status, _, body = h1(server, "GET", path, TUS)
    return body if status == 200 else None


def patch(conn, path, offset, length, headers=None):
    """A tus PATCH's HEADERS on `conn`; its body is sent separately."""
    return conn.request("PATCH", path, {**TUS, "upload-offset": str(offset), "content-type": OCTETS,
                                        "content-length": str(length), **(headers or {})}, end=False)


def resume_and_verify(server, label, path, data, offset, rufh=False):
    """PATCHes data[offset:] on a new h2 connection and checks GET returns `data`."""
    with H2(server) as c:
        if rufh:
            s = c.request("PATCH", path, {**RUFH6, "upload-offset": str(offset), "upload-complete": "?1",
                                          "content-type": "application/partial-upload",
                                          "content-length": str(len(data) - offset)}, end=False)
        else:
            s = patch(c, path, offset, len(data) - offset)
        c.send_body(s.id, data[offset:])
        c.response(s)
    check(s.status in (200, 204) and s.headers.get("upload-offset") == str(len(data)),
          f"{label}: the rest resumes from {offset} to {len(data)}", f"{s.status} {s.headers} reset {error_name(s.reset)}")
    body = get_body(server, path)
    check(body == data, f"{label}: GET returns the whole file byte-identical",
          f"{None if body is None else len(body)} bytes")


def case_resets(env, servers):
    server = servers["main"]
    data = os.urandom(MiB)
    sent = 300 * KiB

    # RUFH creation, reset after 300 KiB and its 104.
    with H2(server) as c:
        s = c.request("POST", "/files/", {**RUFH6, "upload-complete": "?1", "content-length": str(len(data))}, end=False)
        c.send_body(s.id, data[:sent], end_stream=False)
        c.wait(lambda: s.interim or s.done, 5)
        interim = s.interim[0] if s.interim else (None, {})
        location = interim[1].get("location")
        check(interim[0] == 104 and location and not s.done,
              "RUFH creation on h2: 104 with a Location on the stream, before the body ended",
              f"responses {s.responses}, reset {error_name(s.reset)}")
        c.reset(s, CANCEL)
        if location:
            path = path_of(location)
            offset = None
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                h = c.response(c.request("HEAD", path, RUFH6))
                offset = int(h.headers["upload-offset"]) if "upload-offset" in h.headers else None
                if offset == sent:
                    break
                time.sleep(0.1)
            check(offset == sent, f"RUFH reset mid-body: HEAD on the same connection says upload-offset {sent} (the bytes sent)",
                  f"upload-offset {offset}")
    if location:
        resume_and_verify(server, "RUFH reset mid-body", path, data, offset if offset is not None else 0, rufh=True)

    # tus PATCH reset mid-body.
    path = tus_create(server, len(data))
    with H2(server) as c:
        s = patch(c, path, 0, len(data))
        c.send_body(s.id, data[:sent], end_stream=False)
        c.pump(0.2)
        c.reset(s, CANCEL)
        offset = poll_offset(server, path, sent)
        check(offset == sent, f"tus PATCH reset mid-body: HEAD says Upload-Offset {sent}", f"Upload-Offset {offset}")
        h = c.response(c.request("GET", "/healthz"))
        check(h.status == 200, "the connection serves a new stream after the reset", f"{h.status} eof {c.eof}")
    resume_and_verify(server, "tus PATCH reset mid-body", path, data, offset or 0)

    # The connection is lost mid-PATCH: closed without TLS close_notify (FIN), or reset (RST).
    for label, abrupt in (("TCP connection closed (FIN, no TLS close_notify) mid-PATCH on h2", False),
                          ("TCP connection reset (RST) mid-PATCH on h2", True)):
        path = tus_create(server, len(data))
        c = H2(server)
        s = patch(c, path, 0, len(data))
        c.send_body(s.id, data[:sent], end_stream=False)
        c.barrier()
        if abrupt:
            c.close(abrupt=True)
        else:
            c.sock.close()  # Python's SSLSocket.close() sends no close_notify
        offset = poll_offset(server, path, sent)
        check(offset == sent, f"{label}: HEAD says Upload-Offset {sent} (every byte the server read)",
              f"Upload-Offset {offset}")
        resume_and_verify(server, label, path, data, offset or 0)


def refused_early(server, label, method, path, headers, want):
    """Sends HEADERS without END_STREAM and no DATA; the answer must come all the same."""
    with H2(server) as c:
        s = c.request(method, path, headers, end=False)
        began = time.monotonic()
        c.wait(lambda: s.status is not None or s.done, 5)
        took = time.monotonic() - began
        check(s.status == want, f"{label}: {want} while only HEADERS were sent ({took:.2f}s)",
              f"status {s.status}, reset {error_name(s.reset)}, eof {c.eof}")
        c.wait(lambda: s.done, 2)
        h = c.response(c.request("GET", "/healthz"))
        check(h.status == 200 and c.goaway is None, f"{label}: the connection stays usable",
              f"healthz {h.status}, goaway {c.goaway}")


def case_refusals(env, servers):
    main, limits = servers["main"], servers["limits"]
    path = tus_create(main, 1000)
    refused_early(main, "PATCH with a wrong Upload-Offset", "PATCH", path,
                  {**TUS, "upload-offset": "500", "content-type": OCTETS, "content-length": "500"}, 409)
    refused_early(limits, "tus POST over --max-size 1M (Upload-Length 100000000)", "POST", "/files/",
                  {**TUS, "upload-length": "100000000", "content-type": OCTETS, "content-length": "1000"}, 413)
    refused_early(limits, "RUFH POST over --max-size 1M (Content-Length 100000000)", "POST", "/files/",
                  {**RUFH6, "upload-complete": "?1", "content-length": "100000000"}, 413)


def multiplexed_creations(server, count, at_once, size=4096):
    """`count` tus creation-with-upload requests over one connection, `at_once` streams at a time
    (never more than the server advertises). Returns (statuses, offsets, the connection)."""
    c = H2(server)
    c.wait_settings(2)
    limit = min(at_once, c.settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS, at_once))
    body = os.urandom(size)
    waiting, open_streams, done = count, [], []
    while waiting or open_streams:
        while waiting and len(open_streams) < limit:
            open_streams.append(c.request("POST", "/files/", {**TUS, "upload-length": str(size), "content-type": OCTETS,
                                                               "content-length": str(size)}, body=body))
            waiting -= 1
        if not c.pump(5) and c.eof:
            break
        done += [s for s in open_streams if s.done]
        open_streams = [s for s in open_streams if not s.done]
    done += open_streams
    return [s.status for s in done], [s.headers.get("upload-offset") for s in done], c


def creation_headers(r, sid, length):
    """HEADERS of a creation-with-upload POST whose body of `length` bytes follows."""
    return headers_frame(sid, header_block(r.fields([("tus-resumable", "1.0.0"), ("upload-length", str(length)),
                                                      ("content-type", OCTETS), ("content-length", str(length))],
                                                     method="POST", path="/files/")), end_stream=False)


def settled(server, code):
    """A raw connection that has the server's SETTINGS and acknowledged them, and one setting's value."""
    r = RawH2(server)
    r.wait(lambda: r.server_settings() is not None, 5)
    r.send(settings_frame({}, ack=True))
    return r, (r.server_settings() or {}).get(code)


def case_streams(env, servers):
    main, limits = servers["main"], servers["limits"]
    before = main.metric("ferry_http_connections_total", "h2")
    began = time.monotonic()
    statuses, offsets, c = multiplexed_creations(main, 200, 50)
    took = time.monotonic() - began
    check(statuses.count(201) == 200 and offsets.count("4096") == 200,
          f"200 creation-with-upload requests over one h2 connection, 50 streams at a time, all 201 ({took:.1f}s)",
          f"statuses {sorted(set(statuses), key=str)}, {statuses.count(201)} were 201")
    opened = main.metric("ferry_http_connections_open", "h2")
    c.close()
    after = main.metric("ferry_http_connections_total", "h2")
    check(after is not None and before is not None and after - before == 1,
          "ferry_http_connections_total{protocol=\"h2\"} rose by exactly 1 for them", f"before {before}, after {after}")
    check(opened is not None and opened >= 1, f"ferry_http_connections_open{{protocol=\"h2\"}} counted it while open ({opened})")

    statuses, _, c = multiplexed_creations(limits, 12, 50, size=1000)
    c.close()
    check(statuses.count(201) == 12, "--h2-max-streams 4: a client that keeps to the limit gets all 12 creations through",
          f"statuses {statuses}")

    r, frame_size = settled(main, h2.settings.SettingCodes.MAX_FRAME_SIZE)
    check(frame_size == 65536, "SETTINGS_MAX_FRAME_SIZE is 64 KiB by default (--h2-max-frame)", f"SETTINGS {r.server_settings()}")
    body = os.urandom(65536)
    r.send(creation_headers(r, 1, 65536))
    r.send(data_frame(1, body, end_stream=True))
    r.wait(lambda: r.status(1) or r.closed, 5)
    check(r.status(1) == 201, "a 64 KiB DATA frame is taken whole: creation-with-upload 201", f"status {r.status(1)}")
    r.close()

    r, advertised = settled(limits, h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
    check(advertised == 4, "--h2-max-streams 4: SETTINGS_MAX_CONCURRENT_STREAMS is 4", f"SETTINGS {r.server_settings()}")
    body = os.urandom(100)
    for sid in (1, 3, 5, 7):  # four creations whose bodies are held back: four open streams
        r.send(creation_headers(r, sid, 100))
    r.pump(0.3)
    r.send(headers_frame(9, header_block(r.fields())))  # a fifth, beyond the limit
    r.wait(lambda: 9 in r.resets() or r.goaway or r.closed, 3)
    for sid in (1, 3, 5, 7):
        r.send(data_frame(sid, body, end_stream=True))
    r.wait(lambda: all(r.status(sid) for sid in (1, 3, 5, 7)) or r.closed, 3)
    open_ones = [r.status(sid) for sid in (1, 3, 5, 7)]
    refused = r.resets().get(9) == REFUSED_STREAM
    check(refused or r.closed, "a 5th stream while 4 are open is refused (RST_STREAM, or GOAWAY and the connection closed)",
          f"stream 9: RST_STREAM {error_name(r.resets().get(9))}; connection: {r.outcome()}, closed {r.closed}")
    # NIOHTTP2 treats a stream beyond SETTINGS_MAX_CONCURRENT_STREAMS as a connection error
    # (RFC 9113 5.4.1 lets an endpoint escalate a stream error); clients that keep to the SETTINGS
    # they received (as the check above shows) never meet it. README, "Deployment".
    check(refused or (r.goaway is not None and error_name(r.goaway[0]) in ("PROTOCOL_ERROR", "REFUSED_STREAM")),
          "...as NIOHTTP2 does: RST_STREAM REFUSED_STREAM, or GOAWAY PROTOCOL_ERROR for the connection",
          f"stream 9: RST_STREAM {error_name(r.resets().get(9))}; connection: {r.outcome()}; "
          f"the 4 open streams answered {open_ones}")
    r.close()


def case_flow(env, servers):
    for server, stream_window, connection_window in ((servers["main"], 4 * MiB, 8 * MiB),
                                                     (servers["h2c"], 4 * MiB, 8 * MiB),
                                                     (servers["limits"], MiB, 2 * MiB)):
        with H2(server) as c:
            c.wait(lambda: c.settings and c.connection_increments, 2)
            got = c.settings.get(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE)
            check(got == stream_window, f"{server.name}: SETTINGS_INITIAL_WINDOW_SIZE is {stream_window}", f"got {got}")
            window = c.conn.outbound_flow_control_window
            check(window == connection_window,
                  f"{server.name}: a connection-level WINDOW_UPDATE opens the connection window to {connection_window} "
                  f"before any DATA", f"window {window} (WINDOW_UPDATEs on stream 0: {c.connection_increments})")

    # 4 MiB in flight on one stream without reading anything from the server.
    server = servers["main"]
    size = 4 * MiB
    path = tus_create(server, size)
    data = os.urandom(size)
    with H2(server) as c:
        c.wait(lambda: c.settings and c.connection_increments, 2)
        s = patch(c, path, 0, size)
        sent, began = 0, time.monotonic()
        while sent < size:
            window = min(c.conn.local_flow_control_window(s.id), c.conn.max_outbound_frame_size, size - sent)
            if window <= 0:
                break
            c.conn.send_data(s.id, data[sent:sent + window], end_stream=sent + window == size)
            c.flush()
            sent += window
        took = time.monotonic() - began
        check(sent == size, f"4 MiB in flight on one stream without waiting for the server ({took:.2f}s)",
              f"the windows stopped the client after {sent} bytes")
        if sent < size:
            c.send_body(s.id, data[sent:])
        c.response(s)
        check(s.status == 204 and s.headers.get("upload-offset") == str(size), f"...and the PATCH ends 204 at {size}",
              f"{s.status} {s.headers}")
