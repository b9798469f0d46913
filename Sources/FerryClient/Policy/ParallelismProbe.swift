/// Decides when one more stream should carry a file: only when adding one measurably raises
/// the total rate (a link one stream cannot fill: per-flow shaping, a long fat pipe, loss that
/// one TCP connection reads as congestion). Pure: fed samples, returns decisions.
///
/// It measures the total acknowledged rate over `window`, once every change has had `settle`
/// to take effect. With a steady rate and enough left to send (`worthwhile` at that rate), it
/// asks for a stream; `settle` later it compares: a gain of at least `gain` keeps the stream
/// and allows another probe, anything less ends probing (the extra stream finishes the part it
/// was given; on a shared link that costs nothing). Once more streams have proven useful, a
/// stream that finishes is replaced, so the count holds until the end.
public struct ParallelismProbe: Sendable, Equatable {
    public struct Configuration: Sendable, Equatable {
        public var maximumStreams: Int
        public var window: Duration
        public var settle: Duration
        public var worthwhile: Duration
        public var gain: Double

        public init(
            maximumStreams: Int = 4, window: Duration = .seconds(3), settle: Duration = .seconds(5),
            worthwhile: Duration = .seconds(10), gain: Double = 1.25
        ) {
            self.maximumStreams = maximumStreams
            self.window = window
            self.settle = max(settle, window)
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
    private var samples: [Sample] = []
    private var lastChange: Duration = .zero
    private var probeBaseline: Double?

    struct Sample: Sendable, Equatable {
        var at: Duration
        var acknowledged: Int64
    }

    public init(configuration: Configuration = Configuration(), streams: Int = 1) {
        self.configuration = configuration
        self.target = max(1, streams)
    }

    /// The total acknowledged rate over the last window, if the samples cover it.
    public func rate(at now: Duration) -> Double? {
        guard let last = samples.last, let before = samples.last(where: { $0.at <= now - configuration.window }) else { return nil }
        let seconds = (last.at - before.at).seconds
        return seconds > 0 ? Double(last.acknowledged - before.acknowledged) / seconds : nil
    }

    /// One sample: the time since the upload began, bytes acknowledged over all streams,
    /// streams still sending, and bytes left to acknowledge.
    public mutating func observe(at now: Duration, acknowledged: Int64, running: Int, remaining: Int64) -> Decision {
        samples.append(Sample(at: now, acknowledged: acknowledged))
        samples.removeAll { $0.at < now - configuration.window * 2 }
        let settled = now - lastChange >= configuration.settle
        if let baseline = probeBaseline {
            guard settled, let rate = rate(at: now) else { return .none }
            probeBaseline = nil
            lastChange = now
            if rate >= baseline * configuration.gain {
                target = min(configuration.maximumStreams, target + 1)
                helps = true
            } else {
                helps = false
            }
            return .none
        }
        guard remaining > 0 else { return .none }
        if running < target, helps == true {
            lastChange = now
            return .addStream(probe: false)
        }
        guard helps != false, settled, running >= target, target < configuration.maximumStreams,
            let rate = rate(at: now), rate > 0,
            Double(remaining) / rate >= configuration.worthwhile.seconds
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
        samples.removeAll()
        lastChange = now
    }
}
