/// Decides when one more stream should carry a file: only when adding one measurably raises
/// the total rate (a link one stream cannot fill: per-flow shaping, a long fat pipe, loss that
/// one TCP connection reads as congestion). Pure: fed measurements, returns decisions.
///
/// The caller measures the total rate from `measuringFrom` on, by acknowledgements (bytes
/// handed to a socket say nothing: kernel buffers take megabytes at once), with an
/// `AcknowledgementLog`; it is nil until every stream completed requests in that time. Once `settle` has passed with a rate, and with enough
/// left to send (`worthwhile` at that rate), the probe asks for a stream; measured again from
/// the change, a gain of at least `gain` keeps the stream and probes for the next one at once
/// (that measurement is its baseline), anything less
/// ends probing (the extra stream finishes the part it was given: on a shared link that costs
/// nothing). Once more streams have proven useful, a stream that finishes is replaced, so the
/// count holds until the end.
public struct ParallelismProbe: Sendable, Equatable {
    public struct Configuration: Sendable, Equatable {
        public var maximumStreams: Int
        /// Left out of each measurement after a change (a new connection's start, buffers filling).
        public var warmup: Duration
        /// The least time a rate is measured over (`AcknowledgementLog.rate(since:span:)`).
        public var span: Duration
        /// The least time between a change and the next decision.
        public var settle: Duration
        public var worthwhile: Duration
        public var gain: Double
        /// The least a new stream is given (and left to the stream it is split from).
        public var minimumSplit: Int64

        public init(
            maximumStreams: Int = 4, warmup: Duration = .seconds(1), span: Duration = .milliseconds(1500), settle: Duration = .seconds(3),
            worthwhile: Duration = .seconds(5), gain: Double = 1.25, minimumSplit: Int64 = 2 << 20
        ) {
            self.maximumStreams = maximumStreams
            self.minimumSplit = minimumSplit
            self.warmup = warmup
            self.span = span
            self.settle = max(settle, warmup)
            self.worthwhile = worthwhile
            self.gain = gain
        }
    }

    public enum Decision: Sendable, Equatable {
        case none
        /// Split a stream: `probe` when measuring whether it helps, else to keep the count.
        case addStream(probe: Bool)
    }

    public let configuration: Configuration
    /// Streams worth running (proven, or the one to start with).
    public private(set) var target: Int
    /// nil until a probe answered; false stops probing.
    public private(set) var helps: Bool?
    private var lastChange: Duration = .zero
    private var probeBaseline: Double?

    public init(configuration: Configuration = Configuration(), streams: Int = 1) {
        self.configuration = configuration
        self.target = max(1, streams)
    }

    /// Where the caller's rate measurement starts.
    public var measuringFrom: Duration { lastChange + configuration.warmup }

    /// One observation: the time since the upload began, the total rate since `measuringFrom`
    /// (nil while not measured), streams still sending, and bytes left to send.
    public mutating func observe(at now: Duration, rate: Double?, running: Int, remaining: Int64) -> Decision {
        let settled = now - lastChange >= configuration.settle
        if let baseline = probeBaseline {
            guard settled, let rate else { return .none }
            probeBaseline = nil
            lastChange = now
            guard rate >= baseline * configuration.gain else {
                helps = false
                return .none
            }
            target = min(configuration.maximumStreams, target + 1)
            helps = true
            // The measurement that proved this stream is the next probe's baseline.
            return probe(at: now, rate: rate, running: running, remaining: remaining)
        }
        guard remaining > 0 else { return .none }
        if running < target, helps == true {
            lastChange = now
            return .addStream(probe: false)
        }
        guard settled else { return .none }
        return probe(at: now, rate: rate, running: running, remaining: remaining)
    }

    private mutating func probe(at now: Duration, rate: Double?, running: Int, remaining: Int64) -> Decision {
        guard helps != false, running >= target, target < configuration.maximumStreams,
            let rate, rate > 0, remaining > 0, Double(remaining) / rate >= configuration.worthwhile.seconds
        else { return .none }
        probeBaseline = rate
        lastChange = now
        return .addStream(probe: true)
    }

    /// No stream could be split after all: forget the pending probe.
    public mutating func splitRefused() {
        probeBaseline = nil
    }

    /// A different network: what was learnt no longer applies.
    public mutating func networkChanged(at now: Duration) {
        helps = nil
        probeBaseline = nil
        lastChange = now
    }
}
