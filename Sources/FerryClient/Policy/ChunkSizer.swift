/// Adapts the request size to the link: aims at requests of `targetDuration` at the measured
/// goodput — longer on a link with a long round trip, where every request costs one round trip
/// of idle link — grows multiplicatively while requests succeed, shrinks on stalls and failures,
/// and starts again from the network kind's default when the network changes.
public struct ChunkSizer: Sendable, Equatable {
    public struct Configuration: Sendable, Equatable {
        public var minimum: Int64
        public var maximum: Int64
        public var targetDuration: Duration
        /// Largest growth factor after one fast request.
        public var maximumGrowth: Double
        /// Factor applied on a stall or failure.
        public var shrink: Double
        /// Requests last at least this many round trips (the idle round trip between two
        /// requests then costs at most its inverse).
        public var roundTrips: Double

        public init(
            minimum: Int64 = 256 << 10,
            maximum: Int64 = 1 << 30,
            targetDuration: Duration = .seconds(3),
            maximumGrowth: Double = 4,
            shrink: Double = 0.25,
            roundTrips: Double = 20
        ) {
            self.minimum = minimum
            self.maximum = max(minimum, maximum)
            self.targetDuration = targetDuration
            self.maximumGrowth = maximumGrowth
            self.shrink = shrink
            self.roundTrips = roundTrips
        }

        /// A fixed size: never adapts (the typical tus-client behaviour, for comparisons).
        public static func fixed(_ size: Int64) -> Configuration {
            Configuration(minimum: size, maximum: size, maximumGrowth: 1, shrink: 1)
        }
    }

    public let configuration: Configuration
    /// The size of the next request.
    public private(set) var size: Int64
    /// Smoothed bytes per second of successful requests; nil until one succeeded.
    public private(set) var goodput: Double?
    /// The shortest answer to a request without a body: about one round trip.
    public private(set) var roundTrip: Duration?

    /// How long a request should take on this link.
    public var targetDuration: Duration {
        guard let roundTrip else { return configuration.targetDuration }
        return max(configuration.targetDuration, roundTrip * configuration.roundTrips)
    }

    public init(configuration: Configuration = Configuration(), network: NetworkKind = .unknown) {
        self.configuration = configuration
        self.size = Self.clamp(network.initialChunk, configuration)
    }

    /// A request of `bytes` succeeded in `duration`.
    public mutating func succeeded(bytes: Int64, in duration: Duration) {
        let seconds = max(duration.seconds, 0.001)
        let rate = Double(bytes) / seconds
        goodput = goodput.map { 0.6 * $0 + 0.4 * rate } ?? rate
        // Only a request that used its whole size says something about a larger one.
        guard bytes >= size / 2 else { return }
        let target = targetDuration.seconds
        let growth = min(configuration.maximumGrowth, max(1, target / seconds))
        let aimed = (goodput ?? rate) * target
        let next = min(Double(size) * growth, max(aimed, Double(size)))
        size = Self.clamp(Int64(next), configuration)
    }

    /// A request without a body was answered after `duration`.
    public mutating func answered(in duration: Duration) {
        roundTrip = min(roundTrip ?? duration, duration)
    }

    /// A request stalled or failed: smaller requests replace a dead one faster.
    public mutating func stalledOrFailed() {
        size = Self.clamp(Int64(Double(size) * configuration.shrink), configuration)
    }

    /// The app reports a different network: measurements no longer apply.
    public mutating func networkChanged(to network: NetworkKind) {
        goodput = nil
        roundTrip = nil
        size = Self.clamp(network.initialChunk, configuration)
    }

    /// Restores a size persisted by an earlier process.
    public mutating func restore(size: Int64) {
        self.size = Self.clamp(size, configuration)
    }

    static func clamp(_ value: Int64, _ configuration: Configuration) -> Int64 {
        min(configuration.maximum, max(configuration.minimum, value))
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }

    init(seconds: Double) {
        self = .nanoseconds(Int64(max(0, seconds) * 1e9))
    }
}
