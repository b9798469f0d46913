import FerryCore
import FerryProtocol
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import Synchronization

/// Limits on connections that protect the server from clients that hold resources without
/// using them: how many connections may be open, how slowly a request body may trickle, how
/// long a request head may take, and how large it may be.
public struct ConnectionLimits: Sendable {
    /// Connections open at once; a connection past it is answered 503 and closed.
    public var maxConnections: Int
    /// A request body that, while the server waits for it, arrives slower than this many
    /// bytes per second over a whole `rateWindow` is cut (its PATCH keeps what arrived).
    /// Mobile links that stall for seconds pass far more than this on average.
    public var minBodyRate: Int
    /// The span over which `minBodyRate` is judged.
    public var rateWindow: Duration
    /// A request head must be complete this long after the connection opened or the previous
    /// response ended (slow-header attacks keep an idle timer alive byte by byte).
    public var headTimeout: Duration
    /// Largest request head (all fields together); larger heads are answered 431.
    public var maxHeaderBytes: Int

    public init(
        maxConnections: Int = 4096,
        minBodyRate: Int = 64,
        rateWindow: Duration = .seconds(30),
        headTimeout: Duration = .seconds(60),
        maxHeaderBytes: Int = 32 * 1024
    ) {
        self.maxConnections = maxConnections
        self.minBodyRate = minBodyRate
        self.rateWindow = rateWindow
        self.headTimeout = headTimeout
        self.maxHeaderBytes = maxHeaderBytes
    }

    /// Refuses limits the server cannot run with, naming the `ferry serve` flag.
    public func validate() throws(ConfigurationError) {
        guard maxConnections > 0 else { throw ConfigurationError("max-connections", "must be positive") }
        guard minBodyRate >= 0 else { throw ConfigurationError("min-body-rate", "must not be negative") }
        guard (4096...(1 << 20)).contains(maxHeaderBytes) else { throw ConfigurationError("max-header-size", "must be 4K to 1M") }
        guard rateWindow > .zero, headTimeout > .zero else { throw ConfigurationError("connection-limits", "windows must be positive") }
    }
}

/// The number of open connections, shared by every connection's guard.
public final class ConnectionCounter: Sendable {
    private let open = Atomic<Int>(0)

    public init() {}

    public var current: Int { open.load(ordering: .relaxed) }

    func enter(limit: Int) -> Bool {
        let now = open.wrappingAdd(1, ordering: .relaxed).newValue
        if now > limit {
            open.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func leave() { open.wrappingSubtract(1, ordering: .relaxed) }
}

/// Enforces `ConnectionLimits` on one connection (between the HTTP codec and Hummingbird).
///
/// The body rate counts only the time the server *asked* for bytes (an outbound `read` was
/// pending): a body the server is not reading (waiting for a lock, backpressure from a slow
/// disk, `Expect: 100-continue` not yet answered) is never the client's fault.
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limits: ConnectionLimits
    /// Counts this connection (HTTP/1.1); nil on an HTTP/2 stream, whose connection is counted
    /// by its `ConnectionAdmission`.
    private let counter: ConnectionCounter?
    private var entered = false
    private var inBody = false
    /// The engine is reading this body (`bodyReadingStarted`): only then is its rate judged.
    private var armed = false
    private var waitingForHead = true
    private var headDeadline: NIODeadline = .distantFuture
    /// Time with a read pending during the current window, and the bytes it brought.
    private var demandSince: NIODeadline?
    private var demandTime: TimeAmount = .zero
    private var windowBytes = 0
    private var timer: Scheduled<Void>?
    private var closing = false
    /// Past `maxConnections`: the first request is refused and the connection closed.
    private var overCapacity = false

    /// Guards an HTTP/1.1 connection, counted in `counter`.
    init(limits: ConnectionLimits, counter: ConnectionCounter) {
        self.limits = limits
        self.counter = counter
    }

    /// Guards one stream of an HTTP/2 connection: its body rate and head time; a stream of a
    /// connection past `maxConnections` is answered 503.
    init(limits: ConnectionLimits, admission: ConnectionAdmission) {
        self.limits = limits
        self.counter = nil
        self.overCapacity = !admission.admitted
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard let counter else {
            if !overCapacity {
                headDeadline = .now() + TimeAmount(limits.headTimeout)
                scheduleTick(context)
            }
            return
        }
        guard counter.enter(limit: limits.maxConnections) else {
            // Answered (503) when its request head arrives, so the client reads a response
            // rather than a reset; closed after a few seconds whatever it sends.
            overCapacity = true
            let channel = context.channel
            context.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
            return
        }
        entered = true
        headDeadline = .now() + TimeAmount(limits.headTimeout)
        scheduleTick(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        if entered {
            entered = false
            counter?.leave()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if overCapacity {
            if case .head = unwrapInboundIn(data) {
                refuse(context, status: .serviceUnavailable, code: .rateLimited, "too many connections; retry shortly", retryAfter: "2")
            }
            return
        }
        switch unwrapInboundIn(data) {
        case .head:
            waitingForHead = false
            inBody = true
            armed = false
            resetWindow()
        case .body(let buffer):
            windowBytes += buffer.readableBytes
        case .end:
            inBody = false
            armed = false
        }
        if let since = demandSince {
            demandTime = demandTime + (.now() - since)
            demandSince = nil
        }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if demandSince == nil { demandSince = .now() }
        context.read()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            // The next request's head is awaited from now on.
            waitingForHead = true
            headDeadline = .now() + TimeAmount(limits.headTimeout)
        }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let parser = error as? HTTPParserError, parser == .headerOverflow {
            refuse(context, status: .init(code: 431, reasonPhrase: "Request Header Fields Too Large"), code: .headersTooLarge, "the request head is larger than \(limits.maxHeaderBytes) bytes")
            return
        }
        context.fireErrorCaught(error)
    }

    /// The handler started reading the body (after every check and lock): from now on the
    /// client is waited for. Runs on the event loop.
    func bodyReadingStarted() {
        guard inBody else { return }
        armed = true
        resetWindow()
    }

    // MARK: Checks

    private func resetWindow() {
        demandTime = .zero
        windowBytes = 0
        if demandSince != nil { demandSince = .now() }
    }

    private func scheduleTick(_ context: ChannelHandlerContext) {
        let interval = TimeAmount.seconds(1)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: interval) {
            let (handler, context) = bound.value
            handler.tick(context)
        }
    }

    private func tick(_ context: ChannelHandlerContext) {
        guard !closing, context.channel.isActive else { return }
        let now = NIODeadline.now()
        if waitingForHead, !inBody, now > headDeadline {
            // Nothing useful arrived in time: close quietly (a half-sent head gets no answer).
            closing = true
            context.close(promise: nil)
            return
        }
        if inBody, armed, limits.minBodyRate > 0 {
            var demand = demandTime
            if let since = demandSince { demand = demand + (now - since) }
            let window = TimeAmount(limits.rateWindow)
            if demand >= window {
                let seconds = Double(demand.nanoseconds) / 1e9
                if Double(windowBytes) < Double(limits.minBodyRate) * seconds {
                    closing = true
                    context.close(promise: nil)
                    return
                }
                resetWindow()
            }
        }
        scheduleTick(context)
    }

    private func refuse(_ context: ChannelHandlerContext, status: HTTPResponse.Status, code: FerryError.Code, _ message: String, retryAfter: String? = nil) {
        guard !closing else { return }
        closing = true
        let body = ByteBuffer(string: "\(code.rawValue): \(message)\n")
        var head = HTTPResponse(status: status)
        head.headerFields[.ferryError] = code.rawValue
        head.headerFields[.contentType] = "text/plain; charset=utf-8"
        head.headerFields[.contentLength] = String(body.readableBytes)
        if counter != nil { head.headerFields[.connection] = "close" }  // HTTP/2 has no such field
        if let retryAfter { head.headerFields[.retryAfter] = retryAfter }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}

/// Counts an HTTP/2 connection once, whatever the number of its streams: admitted while fewer
/// than `maxConnections` are open; the streams of a connection past it are answered 503 and the
/// connection is closed after a few seconds.
final class ConnectionAdmission: Sendable {
    let admitted: Bool

    init(counter: ConnectionCounter, limit: Int, channel: any Channel) {
        admitted = counter.enter(limit: limit)
        if admitted {
            channel.closeFuture.whenComplete { _ in counter.leave() }
        } else {
            channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
        }
    }
}
