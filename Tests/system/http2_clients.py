"""The HTTP/2 clients of the HTTPS and HTTP/2 lane (http2_test.py): `H2`, one connection driven
with hyper-h2 (requests, flow-controlled bodies, resets, and everything the server sent kept for
checks), and `RawH2`, one written frame by frame for what a client library will not send
(streams beyond the advertised limit, floods, oversized header blocks). Both connect through a
server object's `connect()` (http2_env.Ferry): TLS with ALPN h2, or plain text for h2c."""
import os
import select
import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame

from support import CaseError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# HTTP/2 error codes (RFC 9113, section 7).
NO_ERROR, PROTOCOL_ERROR, CANCEL, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x8, 0x7, 0xB
ERROR_NAMES = {0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", 0x3: "FLOW_CONTROL_ERROR",
               0x5: "STREAM_CLOSED", 0x6: "FRAME_SIZE_ERROR", 0x7: "REFUSED_STREAM", 0x8: "CANCEL",
               0x9: "COMPRESSION_ERROR", 0xB: "ENHANCE_YOUR_CALM"}

def error_name(code):
    return ERROR_NAMES.get(code, hex(code)) if code is not None else "none"


# ---------------------------------------------------------------- HTTP/2 with hyper-h2


def read_available(sock, timeout):
    """What arrives within `timeout` seconds: bytes (b"" when the peer closed or the connection
    failed), None when nothing arrived, True when TLS needs another read."""
    pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
    if not pending and not select.select([sock], [], [], max(0.0, timeout))[0]:
        return None
    try:
        return sock.recv(1 << 20)
    except (ssl.SSLWantReadError, BlockingIOError):
        return True
    except (OSError, ssl.SSLError):
        return b""

class Stream:
    def __init__(self, sid):
        self.id = sid
        self.responses = []  # (status, headers) in order, 1xx included
        self.data = bytearray()
        self.ended = False
        self.reset = None  # the error code of a RST_STREAM from the server

    @property
    def interim(self):
        return [r for r in self.responses if r[0] < 200]

    @property
    def final(self):
        finals = [r for r in self.responses if r[0] >= 200]
        return finals[0] if finals else (None, {})

    @property
    def status(self):
        return self.final[0]

    @property
    def headers(self):
        return self.final[1]

    @property
    def done(self):
        return self.ended or self.reset is not None


class H2:
    """One HTTP/2 connection driven with hyper-h2: requests, flow-controlled bodies, resets, and
    everything the server sent (SETTINGS, connection WINDOW_UPDATEs, GOAWAY) kept for checks."""

    def __init__(self, server, timeout=10):
        self.server = server
        self.sock = server.connect(alpn=("h2",), timeout=timeout)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.streams = {}
        self.settings = {}  # the server's SETTINGS, by code
        self.connection_increments = []  # WINDOW_UPDATE increments on stream 0
        self.goaway = None  # (error code, last stream id)
        self.eof = False
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except (OSError, ssl.SSLError):
                self.eof = True

    def pump(self, timeout):
        """Reads what arrives within `timeout` seconds and handles it; False when nothing did."""
        if self.eof:
            return False
        data = read_available(self.sock, timeout)
        if data is None or data is True:
            return bool(data)
        if not data:
            self.eof = True
            self.sock.close()  # as clients do: the server's TLS shutdown then ends at once
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            self.protocol_error = error
            self.eof = True
            return False
        for event in events:
            self._handle(event)
        self.flush()
        return True

    def _handle(self, event):
        sid = getattr(event, "stream_id", None)
        stream = self.streams.get(sid)
        if isinstance(event, (h2.events.ResponseReceived, h2.events.InformationalResponseReceived)) and stream:
            headers = {k.lower(): v for k, v in event.headers}
            stream.responses.append((int(headers.pop(":status")), headers))
        elif isinstance(event, h2.events.DataReceived):
            if stream:
                stream.data += event.data
            try:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass
        elif isinstance(event, h2.events.StreamEnded) and stream:
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset) and stream:
            if event.remote_reset:
                stream.reset = event.error_code
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            for code, change in event.changed_settings.items():
                self.settings[int(code)] = change.new_value
        elif isinstance(event, h2.events.WindowUpdated) and event.stream_id == 0:
            self.connection_increments.append(event.delta)
        elif isinstance(event, h2.events.PingAckReceived):
            self.acks = getattr(self, "acks", set()) | {event.ping_data}
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = (event.error_code, event.last_stream_id)

    def wait(self, predicate, timeout=10):
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                return predicate()
            self.pump(min(left, 0.2))
        return True

    def wait_settings(self, timeout=5):
        return self.wait(lambda: self.settings and self.connection_increments, timeout)

    def request(self, method, path, headers=None, body=None, end=None):
        """Sends a request's HEADERS (and `body` if given); the stream ends with the body unless
        `end` says otherwise. Returns the Stream."""
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", self.server.scheme), (":authority", self.server.authority),
                  (":path", path)] + [(k.lower(), str(v)) for k, v in (headers or {}).items()]
        end_headers = body is None and end is not False
        self.conn.send_headers(sid, fields, end_stream=end_headers)
        self.streams[sid] = Stream(sid)
        self.flush()
        if body is not None:
            self.send_body(sid, body, end_stream=end is not False)
        return self.streams[sid]

    def send_body(self, sid, data, end_stream=True, chunk_delay=0.0, chunk=None):
        """Sends `data` on a stream within the flow-control windows (waiting for them to open),
        optionally pausing `chunk_delay` seconds after each `chunk` bytes."""
        view = memoryview(data)
        sent_in_chunk = 0
        while len(view):
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                if not self.pump(1.0) and self.eof:
                    raise CaseError(f"connection closed while sending stream {sid}")
                continue
            if chunk:
                window = min(window, chunk - sent_in_chunk)
            n = min(window, len(view))
            self.conn.send_data(sid, view[:n].tobytes())
            view = view[n:]
            sent_in_chunk += n
            self.flush()
            if self.eof:
                raise CaseError(f"connection closed while sending stream {sid}")
            if chunk and sent_in_chunk >= chunk:
                sent_in_chunk = 0
                self.pump(0)
                if chunk_delay:
                    time.sleep(chunk_delay)
        if end_stream:
            self.conn.end_stream(sid)
            self.flush()

    def response(self, stream, timeout=15):
        """Waits for the stream to end; gives up early once the server sent an error GOAWAY."""
        self.wait(lambda: stream.done or (self.goaway is not None and self.goaway[0] != NO_ERROR), timeout)
        return stream

    def barrier(self, timeout=5):
        """A PING round trip: once its ACK is back, the server has read every frame sent before it."""
        opaque = os.urandom(8)
        self.acks = getattr(self, "acks", set())
        self.conn.ping(opaque)
        self.flush()
        return self.wait(lambda: opaque in self.acks, timeout)

    def reset(self, stream, code=CANCEL):
        self.conn.reset_stream(stream.id, error_code=code)
        self.flush()

    def close(self, abrupt=False):
        try:
            if abrupt:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.conn.close_connection()
                self.flush()
        except (OSError, h2.exceptions.ProtocolError):
            pass
        self.sock.close()
        self.eof = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- HTTP/2 frame by frame

def header_block(fields):
    """A stateless HPACK block (literals without indexing), valid on any connection."""
    encoder = hpack.Encoder()
    encoder.header_table_size = 0
    return encoder.encode([hpack.NeverIndexedHeaderTuple(k, v) for k, v in fields], huffman=False)


class RawH2:
    """An HTTP/2 connection written frame by frame (hyperframe), for what a client library will
    not send: streams beyond the advertised limit, floods, oversized header blocks. Reads every
    frame the server sends, even after a GOAWAY (hyper-h2 drops what follows one), acknowledges
    the server's PINGs and closes its socket when the server closed the connection, as clients
    do (`closed`)."""

    def __init__(self, server, settings=None, timeout=10):
        self.server = server
        self.sock = server.connect(alpn=("h2",), timeout=timeout)
        self.buffer = b""
        self.frames = []
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = 1 << 16
        self.closed = False
        self.send(PREFACE + settings_frame(settings or {}))

    def fields(self, extra=(), method="GET", path="/healthz"):
        return [(":method", method), (":scheme", self.server.scheme), (":authority", self.server.authority),
                (":path", path)] + list(extra)

    def send(self, data):
        """Writes bytes; False once the server has closed the connection."""
        if self.closed:
            return False
        try:
            self.sock.sendall(data)
            return True
        except (OSError, ssl.SSLError):
            self.closed = True
            return False

    def pump(self, timeout):
        if self.closed:
            return False
        data = read_available(self.sock, timeout)
        if data is None or data is True:
            return bool(data)
        if not data:
            self.close()  # as clients do: the server's TLS shutdown then ends at once
            return False
        self.buffer += data
        while len(self.buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
            if len(self.buffer) < 9 + length:
                break
            frame.parse_body(memoryview(self.buffer[9:9 + length]))
            self.buffer = self.buffer[9 + length:]
            if isinstance(frame, HeadersFrame):
                frame.decoded = {k.decode().lower() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                                 for k, v in self.decoder.decode(frame.data, raw=True)}
            if frame.type == 0x6 and "ACK" not in frame.flags:
                self.send(ping_frame(frame.opaque_data, ack=True))
            self.frames.append(frame)
        return True

    def wait(self, predicate, timeout=10):
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return bool(predicate())
            self.pump(min(left, 0.2))
        return True

    def drain(self, timeout=5):
        """Reads until the server closes the connection or `timeout`; True if it closed."""
        return self.wait(lambda: self.closed, timeout)

    @property
    def goaway(self):
        frames = self.goaways
        return frames[0] if frames else None

    @property
    def goaways(self):
        return [(f.error_code, f.last_stream_id) for f in self.frames if isinstance(f, GoAwayFrame)]

    def response(self, sid):
        """(status, headers) of the final response on stream `sid`, or (None, {})."""
        status = self.status(sid)
        for f in self.frames:
            if isinstance(f, HeadersFrame) and f.stream_id == sid and f.decoded.get(":status") == str(status):
                return status, f.decoded
        return None, {}

    def connection_window(self):
        """The window the server granted this connection so far (65,535 plus its increments)."""
        return 65_535 + sum(f.window_increment for f in self.frames if f.type == 0x8 and f.stream_id == 0)

    def server_settings(self):
        for frame in self.frames:
            if frame.type == 0x4 and "ACK" not in frame.flags:
                return dict(frame.settings)
        return None

    def resets(self):
        return {f.stream_id: f.error_code for f in self.frames if isinstance(f, RstStreamFrame)}

    def status(self, sid):
        for f in self.frames:
            if isinstance(f, HeadersFrame) and f.stream_id == sid and ":status" in f.decoded:
                if int(f.decoded[":status"]) >= 200:
                    return int(f.decoded[":status"])
        return None

    def outcome(self):
        """How the server ended this connection, for messages."""
        return f"GOAWAY {error_name(self.goaway[0])} (last stream {self.goaway[1]})" if self.goaway else \
            ("closed without GOAWAY" if self.closed else "still open")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True


def settings_frame(settings, ack=False):
    payload = b"".join(struct.pack("!HL", k, v) for k, v in settings.items())
    return frame(0x4, 0x1 if ack else 0x0, 0, payload)


def frame(kind, flags, sid, payload=b""):
    """One frame's bytes: 9-byte header and payload."""
    return struct.pack("!L", len(payload))[1:] + bytes([kind, flags]) + struct.pack("!L", sid & 0x7FFFFFFF) + payload


def headers_frame(sid, block, end_stream=True, end_headers=True):
    return frame(0x1, (0x1 if end_stream else 0) | (0x4 if end_headers else 0), sid, block)


def data_frame(sid, payload, end_stream=False):
    return frame(0x0, 0x1 if end_stream else 0, sid, payload)


def rst_frame(sid, code=CANCEL):
    return frame(0x3, 0, sid, struct.pack("!L", code))


def window_update_frame(sid, increment):
    return frame(0x8, 0, sid, struct.pack("!L", increment))


def ping_frame(opaque=b"ferry-h2", ack=False):
    return frame(0x6, 0x1 if ack else 0x0, 0, opaque)


def continuation_frame(sid, block, end_headers=False):
    return frame(0x9, 0x4 if end_headers else 0, sid, block)
