import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOHTTPTypesHTTP2
import NIOSSL
import NIOTLS

/// Ferry's connections, for Hummingbird's server: HTTP/1.1, HTTP/2 over TLS (ALPN), or plain-text
/// HTTP/2 with prior knowledge beside HTTP/1.1, each request handed to the same responder.
///
/// Hummingbird's own HTTP/2 channel fixes the HTTP/2 settings at the protocol defaults (a 64 KiB
/// window caps an upload at window ÷ RTT), so the HTTP/2 side is set up here with
/// `HTTP2Limits`, NIOHTTP2's connection manager (GOAWAY on graceful shutdown, idle timeout) and
/// its denial-of-service limits, plus `HTTP2ConnectionGuard`.
struct FerryHTTPChannel: HTTPChannelHandler {
    typealias RequestChannel = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>
    typealias Multiplexer = NIOHTTP2Handler.AsyncStreamMultiplexer<RequestChannel>

    enum Negotiated: Sendable {
        case http1(RequestChannel)
        case http2(Multiplexer)
    }

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        let channel: any Channel
    }

    struct Configuration: Sendable {
        var transport: HTTPTransport
        var certificates: CertificateStore?
        var limits: ConnectionLimits
        var idleTimeout: Duration
        var counter: ConnectionCounter
        var census: ConnectionCensus
    }

    let responder: Responder
    let configuration: Configuration

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let negotiated: EventLoopFuture<Negotiated>
        do {
            if let certificates = configuration.certificates {
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: certificates.context))
                let alpn = NIOTypedApplicationProtocolNegotiationHandler<Negotiated> { result in
                    switch result {
                    case .negotiated("h2"):
                        return channel.eventLoop.makeCompletedFuture { try self.configureHTTP2(channel, logger: logger) }
                    case .negotiated("http/1.1"), .fallback:
                        return channel.eventLoop.makeCompletedFuture { try self.configureHTTP1(channel, secure: true, logger: logger) }
                    case .negotiated:
                        return channel.close().flatMapThrowing { throw NIOHTTP2Errors.invalidALPNToken() }
                    }
                }
                try channel.pipeline.syncOperations.addHandler(alpn)
                negotiated = alpn.protocolNegotiationResult
            } else if configuration.transport.h2c {
                let sniffer = PrefaceSniffer(eventLoop: channel.eventLoop) { isHTTP2 in
                    isHTTP2 ? try self.configureHTTP2(channel, logger: logger) : try self.configureHTTP1(channel, secure: false, logger: logger)
                }
                try channel.pipeline.syncOperations.addHandler(sniffer)
                negotiated = sniffer.result
            } else {
                negotiated = channel.eventLoop.makeSucceededFuture(try configureHTTP1(channel, secure: false, logger: logger))
            }
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return channel.eventLoop.makeSucceededFuture(Value(negotiated: negotiated, channel: channel))
    }

    func handle(value: Value, logger: Logger) async {
        let negotiated: Negotiated
        do {
            negotiated = try await value.negotiated.get()
        } catch {
            logger.debug("connection.negotiation_failed", metadata: ["error": "\(error)"])
            return
        }
        switch negotiated {
        case .http1(let requests):
            await handleHTTP(asyncChannel: requests, logger: logger)
        case .http2(let multiplexer):
            // A connection that ends in an error (a reset, TLS cut short) ends its sequence of streams
            // with that error. Its streams' requests must not be cancelled for it: a cancelled append
            // saves nothing, while a body that ends early keeps every byte that arrived. Each stream
            // ends by itself as the connection closes.
            await withDiscardingTaskGroup { group in
                do {
                    for try await stream in multiplexer.inbound {
                        group.addTask { await self.handleHTTP(asyncChannel: stream, logger: logger) }
                    }
                } catch {
                    logger.debug("connection.http2_closed", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    // MARK: Pipelines

    /// HTTP/1.1: the codec, then Ferry's connection guard and body handler.
    private func configureHTTP1(_ channel: any Channel, secure: Bool, logger: Logger) throws -> Negotiated {
        let sync = channel.pipeline.syncOperations
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderFieldSize = configuration.limits.maxHeaderBytes
        decoderLimits.maxHeaderListSize = configuration.limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldCount = 200
        try sync.configureHTTPServerPipeline(
            withPipeliningAssistance: false,
            withErrorHandling: false,
            withOutboundHeaderValidation: false,
            withEncoderConfiguration: .init(),
            withDecoderLimitConfiguration: decoderLimits
        )
        try sync.addHandler(HTTP1ToHTTPServerCodec(secure: secure))
        try sync.addHandler(ConnectionGuardHandler(limits: configuration.limits, counter: configuration.counter))
        try sync.addHandler(BodyChannelHandler(announcesClose: true))
        try sync.addHandler(HTTPConnectionStateHandler(idleTimeout: configuration.idleTimeout, logger: logger))
        configuration.census.opened(.http1, channel: channel)
        return .http1(try RequestChannel(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true)))
    }

    /// HTTP/2: windows and limits from `HTTP2Limits`; each stream gets the same handlers as an
    /// HTTP/1.1 connection, with the connection counted once.
    private func configureHTTP2(_ channel: any Channel, logger: Logger) throws -> Negotiated {
        let sync = channel.pipeline.syncOperations
        let limits = configuration.transport.http2
        let admission = ConnectionAdmission(counter: configuration.counter, limit: configuration.limits.maxConnections, channel: channel)
        try sync.addHandler(HTTP2ConnectionGuard(maxPerSecond: limits.maxWindowUpdatesPerSecond, logger: logger))
        let manager = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(
                maxIdleTime: idleTimeout,
                maxAge: nil,
                // Graceful shutdown is bounded by the service group's own timeout.
                maxGraceTime: nil,
                keepalive: nil
            )
        )
        var http2 = NIOHTTP2Handler.Configuration()
        http2.connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: limits.maxConcurrentStreams),
            HTTP2Setting(parameter: .initialWindowSize, value: limits.streamWindow),
            HTTP2Setting(parameter: .maxHeaderListSize, value: configuration.limits.maxHeaderBytes),
            HTTP2Setting(parameter: .maxFrameSize, value: limits.maxFrameSize),
        ]
        http2.connection.targetWindowSize = limits.connectionWindow
        http2.stream.targetWindowSize = limits.streamWindow
        let streamLimits = configuration.limits
        let multiplexer = try sync.configureAsyncHTTP2Pipeline(
            mode: .server,
            streamDelegate: manager.http2StreamDelegate,
            configuration: http2
        ) { stream in
            stream.eventLoop.makeCompletedFuture {
                let streamSync = stream.pipeline.syncOperations
                try streamSync.addHandler(HTTP2BodyFraming())
                try streamSync.addHandler(HTTP2DataCoalescer())
                try streamSync.addHandler(HTTP2FramePayloadToHTTPServerCodec())
                try streamSync.addHandler(ConnectionGuardHandler(limits: streamLimits, admission: admission))
                try streamSync.addHandler(BodyChannelHandler())
                try streamSync.addHandler(HTTPConnectionStateHandler(idleTimeout: configuration.idleTimeout, logger: logger))
                return try RequestChannel(wrappingChannelSynchronously: stream, configuration: Self.streamChannelConfiguration)
            }
        }
        try sync.addHandler(manager)
        // The connection window starts at 65,535 bytes whatever SETTINGS say (RFC 9113 §6.9.2), and
        // NIOHTTP2 raises it to its target only once DATA arrives: a client could send no more than
        // 64 KiB before its first round trip. It is opened to the configured size right away.
        let opening = limits.connectionWindow - Self.initialConnectionWindow
        if opening > 0 {
            sync.writeAndFlush(NIOAny(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: opening))), promise: nil)
        }
        configuration.census.opened(.http2, channel: channel)
        return .http2(multiplexer)
    }

    /// How many request parts a stream's async channel holds before it stops reading the stream:
    /// with `HTTP2DataCoalescer`'s parts of up to 256 KiB, at most 1 MiB of a stream's body waits
    /// beyond its flow-control window for the request to take it (an HTTP/1.1 connection: ten
    /// reads of up to 64 KiB).
    static let streamChannelConfiguration = RequestChannel.Configuration(
        backPressureStrategy: .init(lowWatermark: 2, highWatermark: 4)
    )

    /// Every HTTP/2 connection's flow-control window when it opens (RFC 9113 §6.9.2).
    static let initialConnectionWindow = 65_535

    private var idleTimeout: TimeAmount { .seconds(max(1, configuration.idleTimeout.components.seconds)) }
}

/// On a plain-text port that also accepts HTTP/2 with prior knowledge: waits for the first
/// bytes, and sets the pipeline up for HTTP/2 if they are its connection preface, for HTTP/1.1
/// otherwise.
final class PrefaceSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private let promise: EventLoopPromise<FerryHTTPChannel.Negotiated>
    private let configure: (Bool) throws -> FerryHTTPChannel.Negotiated
    private var buffered: ByteBuffer?
    private var decided = false

    init(eventLoop: any EventLoop, configure: @escaping (Bool) throws -> FerryHTTPChannel.Negotiated) {
        self.promise = eventLoop.makePromise()
        self.configure = configure
    }

    var result: EventLoopFuture<FerryHTTPChannel.Negotiated> { promise.futureResult }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if var buffered {
            buffered.writeBuffer(&incoming)
            self.buffered = buffered
        } else {
            buffered = incoming
        }
        guard let bytes = buffered else { return }
        let seen = bytes.readableBytesView.prefix(Self.preface.count)
        let matches = seen.elementsEqual(Self.preface.prefix(seen.count))
        guard !matches || seen.count == Self.preface.count else { return }  // wait for more
        decide(context: context, isHTTP2: matches)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !decided {
            decided = true
            promise.fail(ChannelError.eof)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !decided {
            decided = true
            promise.fail(error)
        }
        context.close(promise: nil)
    }

    private func decide(context: ChannelHandlerContext, isHTTP2: Bool) {
        decided = true
        do {
            let negotiated = try configure(isHTTP2)
            promise.succeed(negotiated)
        } catch {
            promise.fail(error)
            context.close(promise: nil)
            return
        }
        if let buffered {
            self.buffered = nil
            context.fireChannelRead(wrapInboundOut(buffered))
            context.fireChannelReadComplete()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
