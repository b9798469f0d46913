import FerryCore
import FerryProtocol
import HTTPTypes
import NIOCore
import NIOHTTPTypes
import Synchronization

/// What the HTTP connection knows about the current request body that Hummingbird does
/// not expose: whether the client ended it properly, its trailers, and `Expect: 100-continue`.
final class RequestBodyState: Sendable {
    struct Snapshot {
        var expectsContinue = false
        var continueSent = false
        var endSeen = false
        var trailers: HTTPFields?
    }

    let snapshot = Mutex(Snapshot())
}

/// A channel handler between the HTTP codec and Hummingbird.
///
/// - Answers `Expect: 100-continue` only when the route asks (after it validated the
///   headers), so a doomed request is refused before its body is sent.
/// - Records the end of each request body and its trailers (`checksum-trailer`).
/// - Closes the connection after a response sent while the request body was still
///   unread, instead of draining (possibly gigabytes of) a rejected or abandoned body. On
///   HTTP/1.1 that response says `Connection: close`, so that a client does not send its next
///   request on a connection about to close (on an HTTP/2 stream, closing resets the stream only).
final class BodyChannelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let state = RequestBodyState()
    private var context: ChannelHandlerContext?
    /// HTTP/1.1: a final response that leaves the body unread announces the close.
    private let announcesClose: Bool
    /// The final response said `Connection: close`: the connection closes after it.
    private var closeAnnounced = false

    init(announcesClose: Bool = false) {
        self.announcesClose = announcesClose
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            let expects = head.headerFields[.expect]?.lowercased() == "100-continue"
            state.snapshot.withLock { $0 = RequestBodyState.Snapshot(expectsContinue: expects) }
        case .body:
            break
        case .end(let trailers):
            state.snapshot.withLock {
                $0.endSeen = true
                $0.trailers = trailers
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where announcesClose && head.status.kind != .informational:
            closeAnnounced = state.snapshot.withLock { !$0.endSeen }
            guard closeAnnounced else { break }
            head.headerFields[.connection] = "close"
            context.write(wrapOutboundOut(.head(head)), promise: promise)
            return
        case .head, .body:
            break
        case .end:
            writeEnd(context: context, data: data, promise: promise)
            return
        }
        context.write(data, promise: promise)
    }

    /// Writes the end of a response, and closes the connection if the request body is unread.
    private func writeEnd(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let unread = closeAnnounced || state.snapshot.withLock { !$0.endSeen }
        closeAnnounced = false
        guard unread else {
            context.write(data, promise: promise)
            return
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(data, promise: written)
        let channel = context.channel
        written.futureResult.whenComplete { result in
            promise?.completeWith(result)
            channel.close(promise: nil)
        }
    }

    /// Sends an informational response (RUFH's `104 Upload Resumption Supported`) ahead of the
    /// final one. Runs on the event loop.
    func sendInformational(_ response: HTTPResponse) {
        context?.writeAndFlush(wrapOutboundOut(.head(response)), promise: nil)
    }

    /// Sends `100 Continue` if the client waits for it. Runs on the event loop.
    func sendContinueIfExpected() {
        guard let context else { return }
        let send = state.snapshot.withLock { snapshot -> Bool in
            guard snapshot.expectsContinue, !snapshot.continueSent, !snapshot.endSeen else { return false }
            snapshot.continueSent = true
            return true
        }
        if send {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        }
    }
}

/// `BodyTransport` over a Hummingbird connection that has a `BodyChannelHandler`.
///
/// Without the handler (HummingbirdTesting's router transport runs no channel handlers; a closed
/// connection's pipeline has lost them) the end of a body is not seen, nor are `100 Continue` and
/// the informational responses sent. A body framed by `Content-Length` is then taken as ended
/// properly: the engine already refuses one whose byte count differs from the declared length.
/// Any other body (chunked, whose trailers only the handler sees) stays incomplete.
struct ChannelBodyTransport: BodyTransport, InterimResponder {
    let channel: any Channel
    /// The request declared its body's length (`Content-Length`).
    var framedByLength = false

    var clientAddress: String? { channel.remoteAddress?.ipAddress }

    func sendInterim(_ response: HTTPResponse) async {
        let channel = self.channel
        try? await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: BodyChannelHandler.self).sendInformational(response)
        }.get()
    }

    func willReadBody() async {
        let channel = self.channel
        try? await channel.eventLoop.submit {
            try? channel.pipeline.syncOperations.handler(type: ConnectionGuardHandler.self).bodyReadingStarted()
            try channel.pipeline.syncOperations.handler(type: BodyChannelHandler.self).sendContinueIfExpected()
        }.get()
    }

    func bodyEnded() async -> BodyEnd {
        let channel = self.channel
        let state = try? await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: BodyChannelHandler.self).state
        }.get()
        guard let state else { return BodyEnd(complete: framedByLength) }
        return state.snapshot.withLock { snapshot in
            BodyEnd(complete: snapshot.endSeen, trailerChecksum: snapshot.trailers?[HTTPField.Name("Upload-Checksum")!])
        }
    }
}
