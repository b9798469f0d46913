import NIOCore
import NIOHTTP2

/// Joins the DATA frames of one read into larger body parts, as HTTP/1.1 reads arrive.
///
/// A client sends an upload over HTTP/2 in 16 KiB DATA frames; carried one by one through the
/// codec, Ferry's handlers, the async channel and the engine, each costs as much as a 64 KiB
/// HTTP/1.1 read. Frames that arrive in the same read are joined up to `limit` bytes; the
/// joined part goes on at the end of the read, before any other frame, and before the stream
/// reports an error or closes, so a reset stream still hands on every byte it received. Flow
/// control is not affected: the stream's window opens as its channel reads the frames.
final class HTTP2DataCoalescer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTP2Frame.FramePayload

    static let limit = 64 * 1024

    private var pending: ByteBuffer?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .data(let payload) = unwrapInboundIn(data), !payload.endStream, case .byteBuffer(let buffer) = payload.data {
            if var joined = pending {
                joined.writeImmutableBuffer(buffer)
                pending = joined
            } else {
                pending = buffer
            }
            if let joined = pending, joined.readableBytes >= Self.limit { flush(context) }
            return
        }
        flush(context)
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flush(context)
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
        guard let buffer = pending else { return }
        pending = nil
        context.fireChannelRead(wrapInboundOut(.data(.init(data: .byteBuffer(buffer)))))
    }
}
