import NIOCore
import NIOPosix

/// The shared uplink and every proxied connection.
///
/// `@unchecked Sendable`: all state is touched only on `eventLoop` (a one-thread group owned
/// by the emulator); every entry point runs there (handlers, scheduled tasks, `submit`).
final class Radio: @unchecked Sendable {
    let eventLoop: any EventLoop
    let configuration: NetworkEmulator.Configuration
    var statistics = NetworkEmulator.Statistics()
    private var random: SeededRandom
    private var connections: [Connection] = []
    private var started = NIODeadline.now()
    private var lastTick = NIODeadline.now()
    private var tokens = 0.0
    private var ticker: RepeatedTask?
    private var handoversDone = 0
    private var roundRobin = 0

    static let tick = TimeAmount.milliseconds(5)
    static let highWater = 256 * 1024

    init(eventLoop: any EventLoop, configuration: NetworkEmulator.Configuration) {
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.random = SeededRandom(seed: configuration.seed)
    }

    var profile: NetworkProfile { configuration.profile }
    var latency: TimeAmount { .nanoseconds(profile.latency.nanoseconds) }

    func begin() {
        started = .now()
        lastTick = started
        ticker = eventLoop.scheduleRepeatedTask(initialDelay: Self.tick, delay: Self.tick) { [self] _ in tick() }
    }

    func shutdown() {
        ticker?.cancel()
        for connection in connections {
            connection.client.close(promise: nil)
            connection.server?.close(promise: nil)
        }
        connections.removeAll()
    }

    var elapsed: Duration { .nanoseconds(NIODeadline.now().uptimeNanoseconds - started.uptimeNanoseconds) }

    // MARK: Connections

    func accept(_ client: any Channel) -> Connection {
        let connection = Connection(client: client)
        connection.resetAt = profile.resetAfter.map { random.within($0) }
        connection.cutAt = profile.cutAfter.map { random.within($0) }
        connection.blackholeAt = profile.blackholeAfter.map { random.within($0) }
        connections.append(connection)
        statistics.connections += 1
        let target = (configuration.targetHost, configuration.targetPort)
        ClientBootstrap(group: eventLoop)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ServerSide(radio: self, connection: connection))
                }
            }
            .connect(host: target.0, port: target.1)
            .whenComplete { [self] result in
                switch result {
                case .success(let server):
                    connection.server = server
                    if connection.closed { server.close(promise: nil) } else { requestRead(connection) }
                case .failure:
                    close(connection)
                }
            }
        return connection
    }

    func enqueue(_ connection: Connection, _ buffer: ByteBuffer) {
        guard !connection.blackholed, !connection.closed else { return }
        connection.queue.append(buffer)
        connection.queued += buffer.readableBytes
    }

    func readComplete(_ connection: Connection) {
        connection.reading = false
        requestRead(connection)
    }

    func requestRead(_ connection: Connection) {
        guard !connection.reading, !connection.blackholed, !connection.closed, connection.server != nil,
            connection.queued < Self.highWater
        else { return }
        connection.reading = true
        connection.client.read()
    }

    func clientClosed(_ connection: Connection) {
        guard !connection.blackholed else { return }
        connection.closed = true
        let server = connection.server
        eventLoop.scheduleTask(in: latency) { server?.close(promise: nil) }
        remove(connection)
    }

    func serverSent(_ connection: Connection, _ buffer: ByteBuffer) {
        guard !connection.blackholed, !connection.closed else { return }
        statistics.bytesDown += Int64(buffer.readableBytes)
        let client = connection.client
        deliver(after: latency) { client.writeAndFlush(buffer, promise: nil) }
    }

    func serverClosed(_ connection: Connection) {
        guard !connection.blackholed else { return }
        connection.closed = true
        let client = connection.client
        deliver(after: latency) { client.close(promise: nil) }
        remove(connection)
    }

    private func deliver(after delay: TimeAmount, _ work: @escaping @Sendable () -> Void) {
        if delay == .zero { work() } else { eventLoop.scheduleTask(in: delay, work) }
    }

    private func remove(_ connection: Connection) {
        connections.removeAll { $0 === connection }
    }

    func close(_ connection: Connection) {
        connection.closed = true
        connection.client.close(promise: nil)
        connection.server?.close(promise: nil)
        remove(connection)
    }

    func reset(_ connection: Connection) {
        connection.closed = true
        for channel in [connection.client, connection.server].compactMap({ $0 }) {
            // SO_LINGER 0: close sends a RST, as a NAT rebinding would look to each side.
            if let provider = channel as? any SocketOptionProvider {
                provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
            } else {
                channel.close(promise: nil)
            }
        }
        remove(connection)
        statistics.resets += 1
    }

    func resetAll() {
        for connection in connections { reset(connection) }
    }

    // MARK: The uplink

    private func tick() {
        let now = NIODeadline.now()
        let seconds = Double(now.uptimeNanoseconds - lastTick.uptimeNanoseconds) / 1e9
        lastTick = now
        let elapsed = self.elapsed
        if let handover = profile.handover {
            let due = Int(elapsed.nanoseconds / handover.interval.nanoseconds)
            let blackoutStart = handover.interval - handover.blackout
            if due > handoversDone || (elapsed.nanoseconds % handover.interval.nanoseconds >= blackoutStart.nanoseconds && handoversDone == due) {
                if elapsed.nanoseconds % handover.interval.nanoseconds >= blackoutStart.nanoseconds {
                    handoversDone = due + 1
                    statistics.handovers += 1
                    resetAll()
                }
            }
        }
        let rate = profile.rate(at: elapsed)
        // At most 50 ms of burst.
        tokens = min(tokens + rate * seconds, max(rate * 0.05, 1500))
        if rate == 0 { tokens = 0 }
        if let flow = profile.perConnectionRate {
            for connection in connections {
                connection.tokens = rate == 0 ? 0 : min(connection.tokens + flow * seconds, max(flow * 0.05, 1500))
            }
        }
        let limited = profile.perConnectionRate != nil
        var active = connections.filter { $0.queued > 0 && !$0.blackholed && $0.server != nil && (!limited || $0.tokens >= 1) }
        while tokens >= 1, !active.isEmpty {
            let share = max(1, Int(tokens) / active.count)
            roundRobin = (roundRobin + 1) % active.count
            let ordered = Array(active[roundRobin...] + active[..<roundRobin])
            for connection in ordered where tokens >= 1 {
                let allowed = limited ? min(share, Int(tokens), Int(connection.tokens)) : min(share, Int(tokens))
                let sent = forward(connection, max: allowed)
                tokens -= Double(sent)
                if limited { connection.tokens -= Double(sent) }
            }
            active.removeAll { $0.queued == 0 || $0.blackholed || $0.closed || (limited && $0.tokens < 1) }
        }
        for connection in connections { requestRead(connection) }
    }

    /// Sends up to `limit` queued bytes of `connection` to the server; returns how many.
    private func forward(_ connection: Connection, max limit: Int) -> Int {
        guard let server = connection.server else { return 0 }
        var budget = limit
        // The fate that comes first cuts the budget to land exactly on it.
        let fates = [connection.resetAt, connection.cutAt, connection.blackholeAt].compactMap { $0 }
        if let next = fates.min() { budget = min(budget, Int(max(0, next - connection.forwarded))) }
        var sent = 0
        while budget > 0, var head = connection.queue.first {
            let take = min(budget, head.readableBytes)
            guard let slice = head.readSlice(length: take) else { break }
            if head.readableBytes == 0 { connection.queue.removeFirst() } else { connection.queue[0] = head }
            connection.queued -= take
            budget -= take
            sent += take
            deliver(after: latency) { server.writeAndFlush(slice, promise: nil) }
        }
        connection.forwarded += Int64(sent)
        statistics.bytesUp += Int64(sent)
        applyFate(connection)
        return sent
    }

    private func applyFate(_ connection: Connection) {
        if let at = connection.resetAt, connection.forwarded >= at {
            reset(connection)
        } else if let at = connection.cutAt, connection.forwarded >= at {
            statistics.cuts += 1
            close(connection)
        } else if let at = connection.blackholeAt, connection.forwarded >= at {
            statistics.blackholes += 1
            connection.blackholed = true
            connection.queue.removeAll()
            connection.queued = 0
        }
    }
}

/// One proxied connection.
///
/// `@unchecked Sendable`: confined to the radio's event loop like `Radio` itself.
final class Connection: @unchecked Sendable {
    let client: any Channel
    var server: (any Channel)?
    var queue: [ByteBuffer] = []
    var queued = 0
    var forwarded: Int64 = 0
    var reading = false
    var closed = false
    var blackholed = false
    var resetAt: Int64?
    var cutAt: Int64?
    var blackholeAt: Int64?
    /// This connection's own bucket, when the profile limits each connection.
    var tokens = 0.0

    init(client: any Channel) { self.client = client }
}

/// The client's side: reads only when the uplink has room (backpressure into the client's TCP).
final class ClientSide: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let radio: Radio
    var connection: Connection?

    init(radio: Radio) { self.radio = radio }

    func channelActive(context: ChannelHandlerContext) {
        connection = radio.accept(context.channel)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let connection { radio.enqueue(connection, unwrapInboundIn(data)) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let connection { radio.readComplete(connection) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let connection { radio.clientClosed(connection) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// The server's side: everything downstream passes, after the latency.
final class ServerSide: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let radio: Radio
    let connection: Connection

    init(radio: Radio, connection: Connection) {
        self.radio = radio
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        radio.serverSent(connection, unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        radio.serverClosed(connection)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
