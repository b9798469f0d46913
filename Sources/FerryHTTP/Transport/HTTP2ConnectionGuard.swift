import Logging
import NIOCore

/// What NIOHTTP2 leaves to its user on a server connection:
///
/// - **WINDOW_UPDATE floods.** NIOHTTP2 rate-limits resets, pings, settings, priority frames,
///   empty DATA frames and CONTINUATION runs, but not WINDOW_UPDATE: each costs the server a
///   little work and no client needs thousands a second. The frame headers are read here,
///   between the TLS handler (or the socket) and NIOHTTP2, and every byte passes on unchanged.
/// - **A client that closed its side.** The server allows half-closure (an HTTP/1.1 client may
///   send its request and shut down writing); NIOHTTP2 does not close the connection then, which
///   would leave it open until the idle timeout. HTTP/2 has no use for half-closure: its
///   streams end themselves, and an unfinished body keeps what arrived, as after a reset.
final class HTTP2ConnectionGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// The client connection preface, 24 bytes before the first frame.
    static let prefaceLength = 24
    static let frameHeaderLength = 9
    static let windowUpdateType: UInt8 = 0x8
    /// The span over which the rate is judged.
    static let window = TimeAmount.seconds(10)

    private let limit: Int
    private let logger: Logger
    /// Bytes still to skip: the preface, then the payload of the current frame.
    private var skip = HTTP2ConnectionGuard.prefaceLength
    /// A frame header split across reads.
    private var header: [UInt8] = []
    private var windowStart = NIODeadline.now()
    private var count = 0
    private var closed = false

    init(maxPerSecond: Int, logger: Logger) {
        self.limit = maxPerSecond * Int(Self.window.nanoseconds / 1_000_000_000)
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closed else { return }
        let buffer = unwrapInboundIn(data)
        if inspect(buffer.readableBytesView) {
            context.fireChannelRead(data)
        } else {
            closed = true
            logger.notice("http2.window_update_flood", metadata: ["remote": "\(context.remoteAddress?.description ?? "-")"])
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Walks the frame headers in `bytes`; false once the rate is exceeded.
    private func inspect(_ bytes: ByteBufferView) -> Bool {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if skip > 0 {
                let step = min(skip, bytes.endIndex - index)
                skip -= step
                index += step
                continue
            }
            header.append(bytes[index])
            index += 1
            guard header.count == Self.frameHeaderLength else { continue }
            let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
            let type = header[3]
            header.removeAll(keepingCapacity: true)
            skip = length
            if type == Self.windowUpdateType, !counted() { return false }
        }
        return true
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
