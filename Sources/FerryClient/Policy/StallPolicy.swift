/// Detects dead requests by progress rather than one fixed timeout.
public struct StallPolicy: Sendable, Equatable {
    public var network: NetworkKind
    /// Start a second, staggered connection attempt when the first has not connected by then.
    public var raceAfter: Duration
    /// Give up on connecting at all after this long.
    public var connectTimeout: Duration
    /// The idle timeout once the link has proven good (a request went at ≥ `goodRate`).
    public var provenIdleTimeout: Duration
    /// Bytes per second above which the link counts as proven good.
    public var goodRate: Double
    /// Disabled stall detection (for reproducing clients that have none).
    public var enabled: Bool

    public init(
        network: NetworkKind = .unknown,
        raceAfter: Duration = .milliseconds(2500),
        connectTimeout: Duration = .seconds(15),
        provenIdleTimeout: Duration = .seconds(4),
        goodRate: Double = 256 * 1024,
        enabled: Bool = true
    ) {
        self.network = network
        self.raceAfter = raceAfter
        self.connectTimeout = connectTimeout
        self.provenIdleTimeout = provenIdleTimeout
        self.goodRate = goodRate
        self.enabled = enabled
    }

    /// How long a request of `bytes` may take to show its first progress or its answer.
    public func firstProgressTimeout(bytes: Int64) -> Duration {
        network.firstProgressBase + Duration(seconds: Double(bytes) / network.floorRate)
    }

    /// The longest a whole request may take: twice its expected duration at the measured
    /// goodput (and at least the idle timeout more); without a measurement, the first-progress
    /// allowance at the floor rate.
    public func requestDeadline(bytes: Int64, goodput: Double?) -> Duration {
        guard let goodput, goodput > 0 else { return firstProgressTimeout(bytes: bytes) }
        let expected = Duration(seconds: Double(bytes) / goodput)
        return max(expected * 2, expected + idleTimeout(goodput: goodput)) + .seconds(1)
    }

    /// How long without progress counts as a stall, given the measured goodput.
    public func idleTimeout(goodput: Double?) -> Duration {
        if let goodput, goodput >= goodRate { return min(provenIdleTimeout, network.idleTimeout) }
        return network.idleTimeout
    }
}
