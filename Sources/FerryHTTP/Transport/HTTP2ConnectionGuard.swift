import Logging
import NIOCore

/// What NIOHTTP2 leaves to its user on a server connection:
///
/// - **WINDOW_UPDATE floods.** NIOHTTP2 rate-limits resets, pings, settings, priority frames,
///   empty DATA frames and CONTINUATION runs, but not WINDOW_UPDATE: each costs the server a
///   little work and no client needs thousands a second. The frame headers are read here,
///   between the TLS handler (or the socket) and NIOHTTP2, and every byte passes on unchanged.
/// - **Closing after a connection error.** When NIOHTTP2 finds a connection error (one of its
///   flood limits, an oversized header block, a protocol violation) it writes a GOAWAY with the
///   error code and goes on reading: closing is its user's job. RFC 9113 §5.4.1 says the endpoint
///   MUST close the TCP connection after that GOAWAY; without it a PING flood, say, is answered
///   frame for frame after its GOAWAY. The frames written are followed here too, and the
///   connection is closed once a GOAWAY with an error code has been written.
/// - **A client that closed its side.** The server allows half-closure (an HTTP/1.1 client may
///   send its request and shut down writing); NIOHTTP2 does not close the connection then, which
///   would leave it open until the idle timeout. HTTP/2 has no use for half-closure: its
///   streams end themselves, and an unfinished body keeps what arrived, as after a reset.
/// - **Reads that end at the start of a frame.** NIOHTTP2's frame decoder appends each read to
///   one buffer and only rewinds it when a read ends at a frame's end or inside a DATA frame's
///   payload. A read that ends inside a frame header, or just after one, leaves the buffer
///   unrewound, and the next append — while the previous read's DATA frames still share its
///   storage — copies the whole buffer, which grows with every such read. TLS clients that
///   write each frame header and its payload as separate records end reads there about every
///   other time: NIOHTTP2's own client (as in AsyncHTTPClient) cost the server 8.8 s of CPU per
///   GiB, 1.5 s once those bytes are held here (at most 9) and sent on with the next read.
final class HTTP2ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    /// The client connection preface, 24 bytes before the first frame.
    static let prefaceLength = 24
    static let windowUpdateType: UInt8 = 0x8
    static let goAwayType: UInt8 = 0x7
    /// The span over which the rate is judged.
    static let window = TimeAmount.seconds(10)
    /// Room for the next read behind held-back bytes, so that joining them copies it once.
    static let heldCapacity = 64 * 1024

    private let limit: Int
    private let logger: Logger
    private var inbound = HTTP2FrameWalker(skip: HTTP2ConnectionGuard.prefaceLength)
    private var outbound = HTTP2FrameWalker()
    private var windowStart = NIODeadline.now()
    private var count = 0
    private var closed = false
    /// The start of a frame that ended the last read (a partial header, or a header whose payload
    /// has not begun), sent on at the front of the next read.
    private var heldFrameStart: ByteBuffer?

    init(maxPerSecond: Int, logger: Logger) {
        self.limit = maxPerSecond * Int(Self.window.nanoseconds / 1_000_000_000)
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closed else { return }
        let buffer = unwrapInboundIn(data)
        let withinRate = inbound.walk(buffer.readableBytesView, prefix: { _ in 0 }) { type, _ in
            type != Self.windowUpdateType || counted()
        }
        if withinRate {
            forward(buffer, context: context)
        } else {
            closed = true
            logger.notice("http2.window_update_flood", metadata: ["remote": "\(context.remoteAddress?.description ?? "-")"])
            context.close(promise: nil)
        }
    }

    /// Sends `buffer` on, after what the last read held back, and holds back its own end if that
    /// is the start of a frame whose payload has not begun.
    private func forward(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        var bytes = buffer
        if var held = heldFrameStart {
            heldFrameStart = nil
            held.writeImmutableBuffer(bytes)
            bytes = held
        }
        let unstarted = inbound.unstartedFrameBytes
        if unstarted > 0 {
            var held = context.channel.allocator.buffer(capacity: unstarted + Self.heldCapacity)
            held.writeBytes(bytes.readableBytesView.suffix(unstarted))
            heldFrameStart = held
            bytes.moveWriterIndex(to: bytes.writerIndex - unstarted)
        }
        if bytes.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(bytes))
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var errorCode: UInt32?
        switch unwrapOutboundIn(data) {
        case .byteBuffer(let buffer):
            _ = outbound.walk(buffer.readableBytesView, prefix: { $0 == Self.goAwayType ? 8 : 0 }) { type, payload in
                // GOAWAY: last stream ID (4 bytes), then the error code (4 bytes).
                if type == Self.goAwayType, payload.count == 8 {
                    let code = payload[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                    if code != 0 { errorCode = code }
                }
                return true
            }
        case .fileRegion(let region):
            outbound.passPayload(region.readableBytes)
        }
        guard let errorCode, !closed else {
            context.write(data, promise: promise)
            return
        }
        closed = true
        logger.notice(
            "http2.connection_error",
            metadata: ["http2.error_code": "\(errorCode)", "remote": "\(context.remoteAddress?.description ?? "-")"]
        )
        let written = context.eventLoop.makePromise(of: Void.self)
        let channel = context.channel
        written.futureResult.whenComplete { result in
            promise?.completeWith(result)
            channel.close(promise: nil)
        }
        context.writeAndFlush(data, promise: written)
    }

    private func counted() -> Bool {
        let now = NIODeadline.now()
        if now - windowStart > Self.window {
            windowStart = now
            count = 0
        }
        count += 1
        return count <= limit
    }
}
