import NIOCore
import NIOHPACK
import NIOHTTP2

/// Tells the upload dialects that an HTTP/2 request has a body of undeclared length.
///
/// In HTTP/1.1 such a body is announced by `Transfer-Encoding: chunked`; in HTTP/2 by a HEADERS
/// frame without END_STREAM and without `Content-Length`. The dialects read the request head
/// only, so this handler marks that case with the HTTP/1.1 field (which an HTTP/2 client cannot
/// send itself: NIOHTTP2 refuses connection-specific fields).
final class HTTP2BodyFraming: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTP2Frame.FramePayload

    private var sawHead = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !sawHead, case .headers(var headers) = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        sawHead = true
        if !headers.endStream, !headers.headers.contains(name: "content-length") {
            headers.headers.add(name: "transfer-encoding", value: "chunked")
            context.fireChannelRead(wrapInboundOut(.headers(headers)))
            return
        }
        context.fireChannelRead(data)
    }
}
