/// A mobile uplink as the emulator plays it: a rate schedule, latency, and connection fates.
public struct NetworkProfile: Sendable, Equatable {
    /// A stretch of time at one uplink rate (bytes per second; 0 is a vacuum).
    public struct Segment: Sendable, Equatable {
        public var duration: Duration
        public var rate: Double

        public init(duration: Duration, rate: Double) {
            self.duration = duration
            self.rate = rate
        }
    }

    public var name: String
    /// Repeats from the start when it runs out.
    public var schedule: [Segment]
    /// Added one-way delay, each direction.
    public var latency: Duration
    /// Each connection is reset (RST) after a byte count drawn from this range, if set.
    public var resetAfter: ClosedRange<Int64>?
    /// Each connection is closed after a byte count drawn from this range (a middlebox), if set.
    public var cutAfter: ClosedRange<Int64>?
    /// Each connection goes silent for good (never forwards, never closes) after a byte count
    /// drawn from this range, if set.
    public var blackholeAfter: ClosedRange<Int64>?
    /// Every `interval`, all live connections are reset and nothing passes for `blackout`.
    public var handover: (interval: Duration, blackout: Duration)?
    /// Each connection on its own passes at most this many bytes per second (per-flow policing,
    /// or one TCP connection that cannot fill a long, lossy path); nil: no such limit.
    public var perConnectionRate: Double?

    public init(
        name: String,
        schedule: [Segment],
        latency: Duration = .zero,
        resetAfter: ClosedRange<Int64>? = nil,
        cutAfter: ClosedRange<Int64>? = nil,
        blackholeAfter: ClosedRange<Int64>? = nil,
        handover: (interval: Duration, blackout: Duration)? = nil,
        perConnectionRate: Double? = nil
    ) {
        self.name = name
        self.schedule = schedule
        self.latency = latency
        self.resetAfter = resetAfter
        self.cutAfter = cutAfter
        self.blackholeAfter = blackholeAfter
        self.handover = handover
        self.perConnectionRate = perConnectionRate
    }

    public static func == (lhs: NetworkProfile, rhs: NetworkProfile) -> Bool {
        lhs.name == rhs.name && lhs.schedule == rhs.schedule && lhs.latency == rhs.latency && lhs.resetAfter == rhs.resetAfter
            && lhs.cutAfter == rhs.cutAfter && lhs.blackholeAfter == rhs.blackholeAfter
            && lhs.handover?.interval == rhs.handover?.interval && lhs.handover?.blackout == rhs.handover?.blackout
            && lhs.perConnectionRate == rhs.perConnectionRate
    }

    /// The uplink rate `elapsed` after the start.
    public func rate(at elapsed: Duration) -> Double {
        let period = schedule.reduce(Duration.zero) { $0 + $1.duration }
        guard period > .zero else { return schedule.first?.rate ?? 0 }
        var position = Duration.nanoseconds(elapsed.nanoseconds % period.nanoseconds)
        if let handover, elapsed.nanoseconds % handover.interval.nanoseconds >= (handover.interval - handover.blackout).nanoseconds {
            return 0
        }
        for segment in schedule {
            if position < segment.duration { return segment.rate }
            position -= segment.duration
        }
        return schedule.last?.rate ?? 0
    }

    /// The average rate over one schedule period (what an ideal transfer would get).
    public var meanRate: Double {
        let period = schedule.reduce(0.0) { $0 + $1.duration.secondsValue }
        guard period > 0 else { return 0 }
        var mean = schedule.reduce(0.0) { $0 + $1.duration.secondsValue * $1.rate } / period
        if let handover { mean *= 1 - handover.blackout.secondsValue / handover.interval.secondsValue }
        return mean
    }

    /// All rates multiplied by `factor` (to run a profile faster in tests, keeping its outages),
    /// and with `fates`, the byte counts after which connections die too.
    public func scaled(by factor: Double, fates: Bool = true) -> NetworkProfile {
        var copy = self
        copy.schedule = schedule.map { Segment(duration: $0.duration, rate: $0.rate * factor) }
        copy.perConnectionRate = perConnectionRate.map { $0 * factor }
        func scale(_ range: ClosedRange<Int64>?) -> ClosedRange<Int64>? {
            guard fates else { return range }
            return range.map { Int64(Double($0.lowerBound) * factor)...Int64(Double($0.upperBound) * factor) }
        }
        copy.resetAfter = scale(resetAfter)
        copy.cutAfter = scale(cutAfter)
        copy.blackholeAfter = scale(blackholeAfter)
        return copy
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let parts = components
        return parts.seconds * 1_000_000_000 + parts.attoseconds / 1_000_000_000
    }

    var secondsValue: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
