import NIOCore
import NIOHTTP2

/// Joins a stream's DATA frames into body parts of up to `limit` bytes, across reads.
///
/// A client sends an upload over HTTP/2 in 16 KiB DATA frames; carried one by one through the
/// codec, Ferry's handlers, the async channel and the engine, each would cost as much as a
/// 64 KiB HTTP/1.1 read. And each part handed on at the end of a read wakes the request's task:
/// on a loaded connection that is once per socket read, a futex wake-up that cost more CPU than
/// the frames' bytes. So frames are copied into one part until it holds `limit` bytes, or until
/// `hold` has passed since the first read that left bytes waiting: a fast body goes on in large
/// parts, a slow one at most `hold` later than it arrived.
///
/// The frames are copied at once, never kept: they share the storage of NIOHTTP2's decoder
/// buffer, and a frame still held when the next read arrives makes the decoder copy that whole
/// buffer (see `HTTP2ConnectionGuard`).
///
/// What waits goes on before any other frame (the end of the stream, trailers, a reset), before
/// the stream reports an error or closes, and before this handler leaves the pipeline, so a
/// reset stream still hands on every byte it received. Flow control is not affected: the
/// stream's window opens as its channel hands the frames to this handler.
final class HTTP2DataCoalescer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTP2Frame.FramePayload

    static let limit = 256 * 1024
    static let hold = TimeAmount.milliseconds(1)

    private var pending: ByteBuffer?
    private var timer: Scheduled<Void>?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .data(let payload) = unwrapInboundIn(data), !payload.endStream, case .byteBuffer(var buffer) = payload.data {
            var part = pending ?? context.channel.allocator.buffer(capacity: max(Self.limit, buffer.readableBytes))
            pending = nil
            part.writeBuffer(&buffer)
            pending = part
            if part.readableBytes >= Self.limit { flush(context) }
            return
        }
        flush(context)
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if pending != nil, timer == nil {
            timer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.hold) { [self] in
                timer = nil
                flush(context)
                context.fireChannelReadComplete()
            }
        }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        flush(context)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        flush(context)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        flush(context)
        context.fireUserInboundEventTriggered(event)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        flush(context)
    }

    private func flush(_ context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        guard let buffer = pending else { return }
        pending = nil
        context.fireChannelRead(wrapInboundOut(.data(.init(data: .byteBuffer(buffer)))))
    }
}
