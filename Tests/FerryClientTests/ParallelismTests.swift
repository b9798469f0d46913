@testable import FerryClient
import Foundation
import Testing

@Suite("Parallelism probe")
struct ParallelismProbeTests {
    /// Pinned, so the tables do not follow the defaults.
    static let configuration = ParallelismProbe.Configuration(
        warmup: .seconds(1), span: .seconds(2), settle: .seconds(4), worthwhile: .seconds(10)
    )

    /// Observes every half second from `from` to `to`; the rate is known from `measuredAfter`
    /// seconds past the probe's `measuringFrom`. Returns the decisions.
    static func feed(
        _ probe: inout ParallelismProbe, from: Double, to: Double, rate: Double, measuredAfter: Double = 2,
        running: Int, remaining: Int64 = 1 << 40
    ) -> [(Double, ParallelismProbe.Decision)] {
        var decisions: [(Double, ParallelismProbe.Decision)] = []
        var time = from
        while time <= to + 0.001 {
            let now = Duration.milliseconds(Int64(time * 1000))
            let known = now >= probe.measuringFrom + .milliseconds(Int64(measuredAfter * 1000))
            let decision = probe.observe(at: now, rate: known ? rate : nil, running: running, remaining: remaining)
            if decision != .none { decisions.append((time, decision)) }
            time += 0.5
        }
        return decisions
    }

    @Test func probesOnceSettledAndKeepsAStreamThatRaisesTheRate() {
        var probe = ParallelismProbe(configuration: Self.configuration)
        // One stream at 1 MB/s: the first probe once `settle` passed with a measured rate.
        let first = Self.feed(&probe, from: 0.5, to: 5, rate: 1e6, running: 1)
        #expect(first.map(\.1) == [.addStream(probe: true)])
        #expect(first.first?.0 == 4)
        // Two streams at 2 MB/s, measured again after the change: the stream is kept, and that
        // measurement is the baseline of the next probe, asked for at once.
        let second = Self.feed(&probe, from: 5.5, to: 8, rate: 2e6, running: 2)
        #expect(second.map(\.1) == [.addStream(probe: true)])
        #expect(probe.target == 2)
        #expect(probe.helps == true)
        // Three at 2.2 MB/s: not enough gain; probing ends with two worth running.
        let third = Self.feed(&probe, from: 8.5, to: 20, rate: 2.2e6, running: 3)
        #expect(third.isEmpty)
        #expect(probe.target == 2)
        #expect(probe.helps == false)
    }

    @Test func waitsForAMeasurementHoweverLongRequestsTake() {
        var probe = ParallelismProbe(configuration: Self.configuration)
        // Requests of 20 s: no rate for the first 25 s, so no probe.
        let slow = Self.feed(&probe, from: 0.5, to: 25, rate: 1e6, measuredAfter: 25, running: 1)
        #expect(slow.isEmpty)
        let then = Self.feed(&probe, from: 25.5, to: 27, rate: 1e6, measuredAfter: 25, running: 1)
        #expect(then.map(\.0) == [26])
    }

    @Test func aStreamThatDoesNotRaiseTheRateEndsProbing() {
        var probe = ParallelismProbe(configuration: Self.configuration)
        _ = Self.feed(&probe, from: 0.5, to: 4, rate: 1e6, running: 1)
        // A shared link: two streams still get 1 MB/s together.
        let after = Self.feed(&probe, from: 4.5, to: 60, rate: 1e6, running: 2)
        #expect(after.isEmpty)
        #expect(probe.helps == false)
        #expect(probe.target == 1)
    }

    @Test func aFinishedStreamIsReplacedOnlyOnceMoreStreamsProvedUseful() {
        var probe = ParallelismProbe(configuration: Self.configuration)
        _ = Self.feed(&probe, from: 0.5, to: 4, rate: 1e6, running: 1)
        _ = Self.feed(&probe, from: 4.5, to: 8, rate: 2e6, running: 2, remaining: 10_000_000)
        #expect(probe.helps == true)
        #expect(probe.target == 2)
        // One of the two finished: refill at once, without a probe.
        let refill = probe.observe(at: .milliseconds(8_500), rate: nil, running: 1, remaining: 1 << 30)
        #expect(refill == .addStream(probe: false))

        var unproven = ParallelismProbe(configuration: Self.configuration)
        #expect(unproven.observe(at: .milliseconds(4_600), rate: 1e6, running: 0, remaining: 1 << 30) == .none)
        var refused = ParallelismProbe(configuration: Self.configuration)
        _ = Self.feed(&refused, from: 0.5, to: 4, rate: 1e6, running: 1)
        _ = Self.feed(&refused, from: 4.5, to: 8, rate: 1e6, running: 2)
        #expect(refused.observe(at: .milliseconds(8_500), rate: 1e6, running: 0, remaining: 1 << 30) == .none)
    }

    @Test func doesNotProbeNearTheEndOrBeyondTheMaximum() {
        var probe = ParallelismProbe(configuration: Self.configuration)
        // 1 MB/s with 5 MB left: 5 s, less than `worthwhile`.
        let near = Self.feed(&probe, from: 0.5, to: 20, rate: 1e6, running: 1, remaining: 5_000_000)
        #expect(near.isEmpty)

        var capped = ParallelismProbe(configuration: .init(maximumStreams: 2, worthwhile: .seconds(10)), streams: 2)
        let none = Self.feed(&capped, from: 0.5, to: 20, rate: 1e6, running: 2)
        #expect(none.isEmpty)
    }

    @Test func aNetworkChangeAllowsProbingAgain() {
        var probe = ParallelismProbe(configuration: Self.configuration)
        _ = Self.feed(&probe, from: 0.5, to: 4, rate: 1e6, running: 1)
        _ = Self.feed(&probe, from: 4.5, to: 8, rate: 1e6, running: 2)
        #expect(probe.helps == false)
        probe.networkChanged(at: .seconds(10))
        #expect(probe.helps == nil)
        let again = Self.feed(&probe, from: 10.5, to: 14, rate: 1e6, running: 2)
        #expect(again.map(\.0) == [14])
    }
}

@Suite("Split bound and plan")
struct SplitBoundTests {
    @Test func grantsRoomOneRequestAtATimeAndFreezesAtTheEnd() {
        let bound = SplitBound(start: 100, limit: 1100)
        let first = bound.grant(acknowledged: 0, size: 300)
        #expect(first.available == 300 && !first.finished)
        // Room already granted is never taken back, even for a smaller request size.
        #expect(bound.grant(acknowledged: 0, size: 100).available == 300)
        let last = bound.grant(acknowledged: 800, size: 300)
        #expect(last.available == 1000 && last.finished)
        #expect(bound.snapshot.frozen)
        #expect(bound.split(at: 600, minimum: 1) == nil)
    }

    @Test func aSplitTakesOnlyTheUnclaimedTail() {
        let bound = SplitBound(start: 0, limit: 1000)
        _ = bound.grant(acknowledged: 0, size: 400)
        // Proposed inside the claimed part: cut right after it.
        #expect(bound.split(at: 100, minimum: 100) == 400..<1000)
        // Until the new end is persisted, reaching it does not finish (declare) the stream.
        let pending = bound.grant(acknowledged: 0, size: 1000)
        #expect(pending.available == 400 && !pending.finished)
        bound.persisted()
        #expect(bound.grant(acknowledged: 0, size: 1000).finished)
    }

    @Test func aTooShortTailIsNotSplitAndAFailedSaveIsUndone() {
        let bound = SplitBound(start: 0, limit: 1000)
        #expect(bound.split(at: 950, minimum: 100) == nil)
        #expect(bound.split(at: 500, minimum: 100) == 500..<1000)
        bound.restore(limit: 1000)
        #expect(bound.snapshot.limit == 1000)
        #expect(bound.grant(acknowledged: 0, size: 2000).finished)
    }

    @Test func planConsistencyAndPersistence() throws {
        let plan = SplitPlan(
            fingerprint: "f", endpoint: "http://x/files/", length: 100,
            segments: [.init(start: 0, limit: 40, uploadURL: "http://x/files/a"), .init(start: 70, limit: 100), .init(start: 40, limit: 70, complete: true)]
        )
        #expect(plan.isConsistent)
        var gap = plan
        gap.segments[1].start = 71
        #expect(!gap.isConsistent)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-plan-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = ResumeStore(directory: directory)
        try store.savePlan(plan)
        #expect(store.loadPlan("f")?.segments == plan.segments)
        store.remove("f")
        #expect(store.loadPlan("f") == nil)
    }
}

@Suite("Acknowledgement log")
struct AcknowledgementLogTests {
    static func at(_ seconds: Double) -> Duration { .milliseconds(Int64(seconds * 1000)) }

    @Test func measuresFromWhenEveryStreamAcknowledgedAfterTheChange() {
        var log = AcknowledgementLog()
        // Stream 0 alone at 2 MB/s, requests of 3 s; stream 1 joins at t=6 and both get 1 MB/s.
        for (t, offset) in [(0.0, 0), (3, 6_000_000), (6, 12_000_000), (9, 15_000_000), (12, 18_000_000)] {
            log.record(0, offset: Int64(offset), at: Self.at(t))
        }
        for (t, offset) in [(6.2, 0), (9.5, 3_300_000), (12.5, 6_300_000)] {
            log.record(1, offset: Int64(offset), at: Self.at(t))
        }
        // Since t=7: from 9.5 (both acknowledged after 7) to 12 (stream 0's last): 2.5 s.
        let rate = log.rate(since: Self.at(7), span: .seconds(2))
        #expect(rate.map { abs($0 - 2_000_000) < 1_000 } == true, "rate \(String(describing: rate))")
        // Not yet measurable with a longer span.
        #expect(log.rate(since: Self.at(7), span: .seconds(3)) == nil)
        // A stream without an acknowledgement since then makes it unmeasurable...
        log.record(2, offset: 0, at: Self.at(5))
        #expect(log.rate(since: Self.at(7), span: .seconds(2)) == nil)
        // ...unless it finished.
        log.finished(2)
        #expect(log.rate(since: Self.at(7), span: .seconds(2)) != nil)
        #expect(log.acknowledged == 18_000_000 + 6_300_000)
    }

    @Test func aSoloStretchBeforeTheChangeDoesNotInflateTheRate() {
        var log = AcknowledgementLog()
        // 1 MB/s link: stream 0 alone, then shared with stream 1 from t=3.
        for (t, offset) in [(0.0, 0), (3, 3_000_000), (7, 5_000_000), (11, 7_000_000)] {
            log.record(0, offset: Int64(offset), at: Self.at(t))
        }
        for (t, offset) in [(3.0, 0), (7.2, 2_100_000), (11.2, 4_100_000)] {
            log.record(1, offset: Int64(offset), at: Self.at(t))
        }
        let rate = log.rate(since: Self.at(4), span: .seconds(2))
        #expect(rate.map { abs($0 - 1_000_000) < 20_000 } == true, "rate \(String(describing: rate))")
    }
}
