/// When each stream of a parallel upload had its bytes acknowledged, and the total rate that
/// follows from it (what `ParallelismProbe` compares). Pure.
///
/// Acknowledgements come a request (seconds) at a time, and bytes handed to a socket mean
/// nothing (kernel buffers take a whole request at once), so a stream's progress between two
/// acknowledgements is taken as linear. The rate is measured from the moment every running
/// stream has had an acknowledgement after `since` (each has then finished a request begun
/// after the change that is being judged, or nearly) to the last moment every running stream's
/// progress is known, which must be at least `span` later.
public struct AcknowledgementLog: Sendable {
    struct Stream {
        var events: [(at: Duration, offset: Int64)] = []
        var finished = false

        /// Bytes acknowledged at `time`, interpolated between acknowledgements.
        func offset(at time: Duration) -> Int64 {
            guard let first = events.first else { return 0 }
            if time <= first.at { return first.offset }
            for (previous, next) in zip(events, events.dropFirst()) where time <= next.at {
                let fraction = (time - previous.at).seconds / max((next.at - previous.at).seconds, 1e-9)
                return previous.offset + Int64(Double(next.offset - previous.offset) * fraction)
            }
            return events[events.count - 1].offset
        }
    }

    private var streams: [Int: Stream] = [:]
    static let kept = 256

    public init() {}

    /// Stream `index` has `offset` bytes acknowledged at `time` (repeats are ignored).
    public mutating func record(_ index: Int, offset: Int64, at time: Duration) {
        var stream = streams[index] ?? Stream()
        guard stream.events.last?.offset != offset else { return }
        stream.events.append((time, offset))
        if stream.events.count > Self.kept { stream.events.removeFirst() }
        streams[index] = stream
    }

    public mutating func finished(_ index: Int) {
        streams[index, default: Stream()].finished = true
    }

    /// Bytes acknowledged over all streams.
    public var acknowledged: Int64 {
        streams.values.reduce(0) { $0 + ($1.events.last?.offset ?? 0) }
    }

    /// The total rate since `since` (see the type's description); nil while not measurable.
    public func rate(since: Duration, span: Duration) -> Double? {
        let running = streams.values.filter { !$0.finished }
        guard !running.isEmpty else { return nil }
        var start = since
        var end: Duration?
        for stream in running {
            guard let first = stream.events.first(where: { $0.at >= since }), let last = stream.events.last else { return nil }
            start = max(start, first.at)
            end = min(end ?? last.at, last.at)
        }
        guard let end, end - start >= span else { return nil }
        let total = { (time: Duration) in self.streams.values.reduce(Int64(0)) { $0 + $1.offset(at: time) } }
        return Double(total(end) - total(start)) / (end - start).seconds
    }
}
