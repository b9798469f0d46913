import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A fault-injecting TCP proxy: what goes from client to server crosses one shared "radio"
/// that follows the profile's rate schedule (so parallel connections share the uplink), with
/// added latency both ways, and connections are reset, cut or silently blackholed as the
/// profile says. Deterministic from its seed; runs on one event loop of its own.
public final class NetworkEmulator: Sendable {
    public struct Configuration: Sendable {
        public var listenHost: String
        /// 0 picks a free port (see `start()`'s result).
        public var listenPort: Int
        public var targetHost: String
        public var targetPort: Int
        public var profile: NetworkProfile
        public var seed: UInt64

        public init(
            listenHost: String = "127.0.0.1",
            listenPort: Int = 0,
            targetHost: String = "127.0.0.1",
            targetPort: Int,
            profile: NetworkProfile,
            seed: UInt64 = 1
        ) {
            self.listenHost = listenHost
            self.listenPort = listenPort
            self.targetHost = targetHost
            self.targetPort = targetPort
            self.profile = profile
            self.seed = seed
        }
    }

    /// What happened so far.
    public struct Statistics: Sendable, Equatable {
        public var connections = 0
        public var resets = 0
        public var cuts = 0
        public var blackholes = 0
        public var handovers = 0
        public var bytesUp: Int64 = 0
        public var bytesDown: Int64 = 0
    }

    let configuration: Configuration
    let group: MultiThreadedEventLoopGroup
    let radio: Radio
    private let listener: NIOLockedValueBox<(any Channel)?> = NIOLockedValueBox(nil)

    public init(configuration: Configuration) {
        self.configuration = configuration
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.radio = Radio(eventLoop: group.next(), configuration: configuration)
    }

    /// Starts listening; returns the port.
    public func start() async throws -> Int {
        let radio = self.radio
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ClientSide(radio: radio))
                }
            }
            .bind(host: configuration.listenHost, port: configuration.listenPort)
            .get()
        listener.withLockedValue { $0 = channel }
        try await radio.eventLoop.submit { radio.begin() }.get()
        return channel.localAddress?.port ?? configuration.listenPort
    }

    public var statistics: Statistics {
        get async {
            let radio = self.radio
            return (try? await radio.eventLoop.submit { radio.statistics }.get()) ?? Statistics()
        }
    }

    /// Resets every live connection now (a handover on demand).
    public func resetAll() async {
        let radio = self.radio
        try? await radio.eventLoop.submit { radio.resetAll() }.get()
    }

    /// Closes everything and stops the event loop.
    public func stop() async {
        let radio = self.radio
        try? await listener.withLockedValue { $0 }?.close()
        try? await radio.eventLoop.submit { radio.shutdown() }.get()
        try? await group.shutdownGracefully()
    }
}
