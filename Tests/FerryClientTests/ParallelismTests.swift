@testable import FerryClient
import Foundation
import Testing

@Suite("Parallelism probe")
struct ParallelismProbeTests {
    /// Feeds a sample every half second from `from` to `to` at `rate` bytes/s; returns the decisions.
    static func feed(
        _ probe: inout ParallelismProbe, from: Double, to: Double, rate: Double, base: inout Int64,
        running: Int, remaining: Int64 = 1 << 40
    ) -> [(Double, ParallelismProbe.Decision)] {
        var decisions: [(Double, ParallelismProbe.Decision)] = []
        var time = from
        while time <= to + 0.001 {
            base += Int64(rate * 0.5)
            let decision = probe.observe(at: .milliseconds(Int64(time * 1000)), acknowledged: base, running: running, remaining: remaining)
            if decision != .none { decisions.append((time, decision)) }
            time += 0.5
        }
        return decisions
    }

    @Test func probesOnceSettledAndKeepsAStreamThatRaisesTheRate() {
        var probe = ParallelismProbe()
        var acknowledged: Int64 = 0
        // One stream at 1 MB/s: the first probe once `settle` passed with a full window.
        let first = Self.feed(&probe, from: 0.5, to: 5, rate: 1e6, base: &acknowledged, running: 1)
        #expect(first.map(\.1) == [.addStream(probe: true)])
        #expect(first.first?.0 == 5)
        // Two streams at 2 MB/s: the gain is measured after `settle`, the stream is kept.
        let second = Self.feed(&probe, from: 5.5, to: 10, rate: 2e6, base: &acknowledged, running: 2)
        #expect(second.isEmpty)
        #expect(probe.target == 2)
        #expect(probe.helps == true)
        // And it probes again for a third.
        let third = Self.feed(&probe, from: 10.5, to: 15, rate: 2e6, base: &acknowledged, running: 2)
        #expect(third.map(\.1) == [.addStream(probe: true)])
    }

    @Test func aStreamThatDoesNotRaiseTheRateEndsProbing() {
        var probe = ParallelismProbe()
        var acknowledged: Int64 = 0
        _ = Self.feed(&probe, from: 0.5, to: 5, rate: 1e6, base: &acknowledged, running: 1)
        // A shared link: two streams still get 1 MB/s together.
        let after = Self.feed(&probe, from: 5.5, to: 60, rate: 1e6, base: &acknowledged, running: 2)
        #expect(after.isEmpty)
        #expect(probe.helps == false)
        #expect(probe.target == 1)
    }

    @Test func aFinishedStreamIsReplacedOnlyOnceMoreStreamsProvedUseful() {
        var probe = ParallelismProbe()
        var acknowledged: Int64 = 0
        _ = Self.feed(&probe, from: 0.5, to: 5, rate: 1e6, base: &acknowledged, running: 1)
        _ = Self.feed(&probe, from: 5.5, to: 10, rate: 2e6, base: &acknowledged, running: 2)
        // One of the two finished: refill at once, without a probe.
        let refill = probe.observe(at: .milliseconds(10_500), acknowledged: acknowledged, running: 1, remaining: 1 << 30)
        #expect(refill == .addStream(probe: false))

        var unproven = ParallelismProbe()
        acknowledged = 0
        let early = Self.feed(&unproven, from: 0.5, to: 4.5, rate: 1e6, base: &acknowledged, running: 1)
        #expect(early.isEmpty)
        #expect(unproven.observe(at: .milliseconds(4_600), acknowledged: acknowledged, running: 0, remaining: 1 << 30) == .none)
    }

    @Test func doesNotProbeNearTheEndOrBeyondTheMaximum() {
        var probe = ParallelismProbe()
        var acknowledged: Int64 = 0
        // 1 MB/s with 5 MB left: 5 s, less than `worthwhile`.
        let near = Self.feed(&probe, from: 0.5, to: 20, rate: 1e6, base: &acknowledged, running: 1, remaining: 5_000_000)
        #expect(near.isEmpty)

        var capped = ParallelismProbe(configuration: .init(maximumStreams: 2), streams: 2)
        acknowledged = 0
        let none = Self.feed(&capped, from: 0.5, to: 20, rate: 1e6, base: &acknowledged, running: 2)
        #expect(none.isEmpty)
    }

    @Test func aNetworkChangeAllowsProbingAgain() {
        var probe = ParallelismProbe()
        var acknowledged: Int64 = 0
        _ = Self.feed(&probe, from: 0.5, to: 5, rate: 1e6, base: &acknowledged, running: 1)
        _ = Self.feed(&probe, from: 5.5, to: 10, rate: 1e6, base: &acknowledged, running: 2)
        #expect(probe.helps == false)
        probe.networkChanged(at: .seconds(10))
        #expect(probe.helps == nil)
        let again = Self.feed(&probe, from: 10.5, to: 15, rate: 1e6, base: &acknowledged, running: 2)
        #expect(again.map(\.0) == [15])
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
