import FerryCore
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// POSTs to `http://` business URLs over kept-alive HTTP/1.1 connections: NIO's HTTP codec and
/// one small handler per connection, nothing else. A callback or webhook POST is the one
/// exchange every upload of a business scenario pays for; through AsyncHTTPClient's request
/// and pool machinery it cost Ferry about 0.1 ms of CPU (docs/internals.md, "Business
/// callbacks"). `CallbackHTTP` sends `https://` URLs (and anything this cannot parse) through
/// AsyncHTTPClient.
public final class KeptAliveHTTP1: Sendable {
    struct Origin: Hashable, Sendable {
        var host: String
        var port: Int
    }

    /// A parsed `http://` URL: where to connect, what to ask for.
    struct Target: Sendable {
        var origin: Origin
        var path: String
        var hostHeader: String
    }

    let group: any EventLoopGroup
    let connectTimeout: TimeAmount
    /// Idle connections kept per origin beyond this are closed.
    let maxIdlePerOrigin: Int
    /// An idle connection is not reused after this long (the server may have dropped it).
    let idleTimeout: TimeAmount
    private let idle = NIOLockedValueBox<[Origin: [Connection]]>([:])
    private let targets = NIOLockedValueBox<[String: Target]>([:])

    public init(
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, connectTimeout: TimeAmount = .seconds(10),
        maxIdlePerOrigin: Int = 256, idleTimeout: TimeAmount = .seconds(50)
    ) {
        self.group = group
        self.connectTimeout = connectTimeout
        self.maxIdlePerOrigin = maxIdlePerOrigin
        self.idleTimeout = idleTimeout
    }

    /// The target of `url` when it is plain `http://` with a host (nil: not for this client).
    func target(_ url: String) -> Target? {
        if let known = targets.withLockedValue({ $0[url] }) { return known }
        guard let components = URLComponents(string: url), components.scheme?.lowercased() == "http", let host = components.host, !host.isEmpty,
            components.user == nil, components.password == nil
        else { return nil }
        let port = components.port ?? 80
        // An IPv6 literal comes back in brackets on some platforms: connect without them.
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        var path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        if let query = components.percentEncodedQuery { path += "?" + query }
        let literal = bare.contains(":") ? "[\(bare)]" : bare
        let target = Target(origin: Origin(host: bare, port: port), path: path, hostHeader: port == 80 ? literal : "\(literal):\(port)")
        targets.withLockedValue { known in
            // Scenarios name a handful of URLs; never let a stream of others grow the cache.
            if known.count < 1024 { known[url] = target }
        }
        return target
    }

    /// POSTs `body` and returns the status and at most `maxAnswer` bytes of the answer (a
    /// longer answer fails); with `maxAnswer` nil only the status matters: the answer is read
    /// and dropped, and a connection lost after the status still answers it. A kept-alive
    /// connection the server closed while it was idle fails before any answer arrives: the POST
    /// is sent once more on a new connection (callbacks and webhooks are at least once anyway).
    func post(
        _ target: Target, headers: HTTPHeaders, body: ByteBuffer, timeout: TimeAmount, maxAnswer: Int?
    ) async throws -> (status: Int, answer: ByteBuffer) {
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: target.path, headers: headers)
        head.headers.replaceOrAdd(name: "Host", value: target.hostHeader)
        head.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        let deadline = NIODeadline.now() + timeout
        if let reused = takeIdle(target.origin) {
            do {
                return try await exchange(on: reused, head, body, deadline: deadline, maxAnswer: maxAnswer)
            } catch let error as KeptAliveHTTP1Error where error.kind == .closedBeforeAnswer {
                // Fall through to a new connection.
            }
        }
        let connection = try await connect(target.origin, deadline: deadline)
        return try await exchange(on: connection, head, body, deadline: deadline, maxAnswer: maxAnswer)
    }

    /// Closes every idle connection (at shutdown).
    public func closeIdle() {
        let all = idle.withLockedValue { idle in
            defer { idle.removeAll() }
            return idle.values.flatMap { $0 }
        }
        for connection in all { connection.channel.close(promise: nil) }
    }

    private func exchange(
        on connection: Connection, _ head: HTTPRequestHead, _ body: ByteBuffer, deadline: NIODeadline, maxAnswer: Int?
    ) async throws -> (status: Int, answer: ByteBuffer) {
        let channel = connection.channel
        let promise = channel.eventLoop.makePromise(of: ExchangeHandler.Answer.self)
        let handler = connection.handler
        channel.eventLoop.execute {
            handler.value.begin(promise, maxAnswer: maxAnswer, deadline: deadline, on: channel, handler: handler)
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if body.readableBytes > 0 { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        let answer = try await promise.futureResult.get()
        if answer.keepAlive {
            putIdle(connection)
        } else {
            channel.close(promise: nil)
        }
        return (answer.status, answer.body)
    }

    private func connect(_ origin: Origin, deadline: NIODeadline) async throws -> Connection {
        let remaining = deadline - .now()
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(min(connectTimeout, max(remaining, .milliseconds(1))))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ExchangeHandler())
                }
            }
            .connect(host: origin.host, port: origin.port).get()
        let handler = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ExchangeHandler.self), eventLoop: channel.eventLoop)
        }.get()
        return Connection(origin: origin, channel: channel, handler: handler, idleSince: .now())
    }

    private func takeIdle(_ origin: Origin) -> Connection? {
        let now = NIODeadline.now()
        var stale: [Connection] = []
        let found = idle.withLockedValue { idle -> Connection? in
            while var list = idle[origin], let last = list.popLast() {
                idle[origin] = list
                if last.channel.isActive, now - last.idleSince < idleTimeout { return last }
                stale.append(last)
            }
            return nil
        }
        for connection in stale { connection.channel.close(promise: nil) }
        return found
    }

    private func putIdle(_ connection: Connection) {
        var kept = connection
        kept.idleSince = .now()
        let overflow = idle.withLockedValue { idle -> Bool in
            guard idle[connection.origin, default: []].count < maxIdlePerOrigin else { return true }
            idle[connection.origin, default: []].append(kept)
            return false
        }
        if overflow { connection.channel.close(promise: nil) }
    }

    struct Connection: Sendable {
        var origin: Origin
        var channel: any Channel
        var handler: NIOLoopBound<ExchangeHandler>
        var idleSince: NIODeadline
    }
}

extension KeptAliveHTTP1: Service {
    /// Closes the idle connections at shutdown.
    public func run() async throws {
        try? await gracefulShutdown()
        closeIdle()
    }
}

/// Why an exchange failed; `closedBeforeAnswer` on a reused connection is worth one more try.
public struct KeptAliveHTTP1Error: Error, CustomStringConvertible {
    public enum Kind: Sendable { case closedBeforeAnswer, closedDuringAnswer, answerTooLarge, timedOut, unexpectedAnswer }
    public var kind: Kind
    public var description: String {
        switch kind {
        case .closedBeforeAnswer: "the connection closed before an answer"
        case .closedDuringAnswer: "the connection closed during the answer"
        case .answerTooLarge: "the answer is too large"
        case .timedOut: "no answer in time"
        case .unexpectedAnswer: "an answer nobody asked for"
        }
    }
}

/// One exchange at a time on its connection: collects the answer to the request in flight.
final class ExchangeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    struct Answer: Sendable {
        var status: Int
        var body: ByteBuffer
        var keepAlive: Bool
    }

    private var promise: EventLoopPromise<Answer>?
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()
    /// nil: only the status matters (the answer is dropped).
    private var maxAnswer: Int?
    private var timeout: Scheduled<Void>?

    /// Starts waiting for the answer to a request about to be written on `channel`, whose
    /// handler this is (`handler`, for the timeout).
    func begin(
        _ promise: EventLoopPromise<Answer>, maxAnswer: Int?, deadline: NIODeadline, on channel: any Channel, handler: NIOLoopBound<ExchangeHandler>
    ) {
        guard channel.isActive else {
            promise.fail(KeptAliveHTTP1Error(kind: .closedBeforeAnswer))
            return
        }
        self.promise = promise
        self.maxAnswer = maxAnswer
        head = nil
        body.clear()
        timeout = channel.eventLoop.scheduleTask(deadline: deadline) {
            handler.value.fail(KeptAliveHTTP1Error(kind: .timedOut))
            channel.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let received):
            guard promise != nil else {
                fail(KeptAliveHTTP1Error(kind: .unexpectedAnswer))
                context.close(promise: nil)
                return
            }
            // An interim answer (100 Continue) is followed by the real one.
            if received.status.code >= 200 || received.status.code < 100 { head = received }
        case .body(var part):
            guard head != nil, let maxAnswer else { return }
            if body.readableBytes + part.readableBytes > maxAnswer {
                fail(KeptAliveHTTP1Error(kind: .answerTooLarge))
                context.close(promise: nil)
                return
            }
            body.writeBuffer(&part)
        case .end:
            guard let head, let promise else { return }
            let answer = Answer(status: Int(head.status.code), body: body, keepAlive: head.isKeepAlive)
            finish()
            body = ByteBuffer()
            promise.succeed(answer)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        endedEarly(KeptAliveHTTP1Error(kind: head == nil ? .closedBeforeAnswer : .closedDuringAnswer))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        endedEarly(head == nil ? KeptAliveHTTP1Error(kind: .closedBeforeAnswer) : error)
        context.close(promise: nil)
    }

    /// The connection broke or closed with an exchange in flight: an answer whose status is
    /// all that matters is complete once its head came; anything else fails.
    private func endedEarly(_ error: any Error) {
        if let head, maxAnswer == nil, let promise {
            finish()
            promise.succeed(Answer(status: Int(head.status.code), body: ByteBuffer(), keepAlive: false))
        } else {
            fail(error)
        }
    }

    func fail(_ error: any Error) {
        guard let promise else { return }
        finish()
        promise.fail(error)
    }

    private func finish() {
        timeout?.cancel()
        timeout = nil
        promise = nil
        head = nil
    }
}
