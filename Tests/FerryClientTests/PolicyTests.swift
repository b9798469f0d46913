@testable import FerryClient
import Testing

@Suite("Chunk sizer")
struct ChunkSizerTests {
    @Test func startsFromTheNetworkDefault() {
        #expect(ChunkSizer(network: .cellular).size == 1 << 20)
        #expect(ChunkSizer(network: .wifi).size == 4 << 20)
    }

    @Test func growsWhileFastAndAimsAtTheTargetDuration() {
        var sizer = ChunkSizer(network: .wifi)
        // 4 MiB in 0.1 s: far faster than the 3 s target, grows by the maximum factor.
        sizer.succeeded(bytes: 4 << 20, in: .milliseconds(100))
        #expect(sizer.size == 16 << 20)
        // A slow link: 1 MiB/s measured, aims at ~3 s of transfer.
        var slow = ChunkSizer(network: .wifi)
        slow.succeeded(bytes: 4 << 20, in: .seconds(4))
        #expect(slow.size == 4 << 20)
    }

    @Test func shrinksOnStallsWithinBounds() {
        var sizer = ChunkSizer(network: .wifi)
        sizer.stalledOrFailed()
        #expect(sizer.size == 1 << 20)
        for _ in 0..<10 { sizer.stalledOrFailed() }
        #expect(sizer.size == sizer.configuration.minimum)
    }

    @Test func neverExceedsTheMaximum() {
        var sizer = ChunkSizer(configuration: .init(maximum: 64 << 20), network: .wired)
        for _ in 0..<10 { sizer.succeeded(bytes: sizer.size, in: .milliseconds(10)) }
        #expect(sizer.size == 64 << 20)
    }

    @Test func aShortLastChunkDoesNotGrowIt() {
        var sizer = ChunkSizer(network: .wifi)
        sizer.succeeded(bytes: 1000, in: .milliseconds(1))
        #expect(sizer.size == 4 << 20)
    }

    @Test func resetsOnNetworkChange() {
        var sizer = ChunkSizer(network: .wifi)
        sizer.succeeded(bytes: 4 << 20, in: .milliseconds(100))
        sizer.networkChanged(to: .cellular)
        #expect(sizer.size == 1 << 20)
        #expect(sizer.goodput == nil)
    }

    @Test func aLongRoundTripLengthensRequests() {
        var sizer = ChunkSizer(network: .cellular)
        sizer.answered(in: .milliseconds(600))
        sizer.answered(in: .milliseconds(500))
        #expect(sizer.roundTrip == .milliseconds(500))
        #expect(sizer.targetDuration == .seconds(10))
        // 500 KB/s: aims at 10 s of it (within the growth limit).
        for _ in 0..<6 { sizer.succeeded(bytes: sizer.size, in: Duration(seconds: Double(sizer.size) / 500_000)) }
        #expect(abs(Double(sizer.size) - 5_000_000) < 100_000)
        // A short round trip keeps the configured target.
        var near = ChunkSizer(network: .cellular)
        near.answered(in: .milliseconds(20))
        #expect(near.targetDuration == .seconds(3))
        near.networkChanged(to: .wifi)
        #expect(near.roundTrip == nil)
    }

    @Test func fixedNeverAdapts() {
        var sizer = ChunkSizer(configuration: .fixed(5 << 20))
        sizer.succeeded(bytes: 5 << 20, in: .milliseconds(10))
        sizer.stalledOrFailed()
        #expect(sizer.size == 5 << 20)
    }
}

@Suite("Backoff")
struct BackoffTests {
    @Test func firstRetryAtOnceThenFullJitterGrowsExponentiallyUpToTheCap() {
        var backoff = Backoff(policy: RetryPolicy(base: .seconds(1), cap: .seconds(30)))
        let delays = (0..<9).map { _ in backoff.nextDelay(unit: 0.999_999)!.seconds.rounded() }
        #expect(delays == [0, 1, 2, 4, 8, 16, 30, 30, 30])
        var low = Backoff(policy: RetryPolicy())
        #expect(low.nextDelay(unit: 0) == .zero)
    }

    @Test func progressResetsTheCounter() {
        var backoff = Backoff(policy: RetryPolicy(base: .seconds(1)))
        _ = backoff.nextDelay(unit: 0.5)
        _ = backoff.nextDelay(unit: 0.5)
        backoff.progressed()
        #expect(backoff.attempt == 0)
        #expect(backoff.nextDelay(unit: 0.999_999) == .zero)
        #expect(backoff.nextDelay(unit: 0.999_999)!.seconds.rounded() == 1)
    }

    @Test func retryAfterIsHonoured() {
        var backoff = Backoff(policy: RetryPolicy(base: .milliseconds(100)))
        #expect(backoff.nextDelay(retryAfter: .seconds(7), unit: 0.1) == .seconds(7))
    }

    @Test func theTypicalTusScheduleGivesUp() {
        var backoff = Backoff(policy: .typicalTusClient)
        let delays = (0..<5).map { _ in backoff.nextDelay(unit: 0.5) }
        #expect(delays == [.zero, .seconds(1), .seconds(3), .seconds(5), nil])
    }

    @Test func neverGivesUpByDefault() {
        var backoff = Backoff(policy: RetryPolicy())
        for _ in 0..<1000 { #expect(backoff.nextDelay(unit: 0.5) != nil) }
    }
}

@Suite("Stall policy")
struct StallPolicyTests {
    @Test func firstProgressScalesWithSize() {
        let policy = StallPolicy(network: .cellular)
        #expect(policy.firstProgressTimeout(bytes: 0) == .seconds(15))
        #expect(policy.firstProgressTimeout(bytes: 4096 * 10) == .seconds(25))
    }

    @Test func requestDeadlineFollowsTheGoodput() {
        let policy = StallPolicy(network: .wifi)
        // 4 MB at 1 MB/s: expected 4 s; twice that, plus a second.
        #expect(policy.requestDeadline(bytes: 4_000_000, goodput: 1_000_000) == .seconds(9))
        // A tiny request still gets the idle timeout.
        #expect(policy.requestDeadline(bytes: 1000, goodput: 1_000_000) == .milliseconds(5001))
        #expect(policy.requestDeadline(bytes: 12 * 1024, goodput: nil) == .seconds(13))
    }

    @Test func idleTimeoutShortensOnceTheLinkProvedGood() {
        let policy = StallPolicy(network: .wifi)
        #expect(policy.idleTimeout(goodput: nil) == .seconds(8))
        #expect(policy.idleTimeout(goodput: 100_000) == .seconds(8))
        #expect(policy.idleTimeout(goodput: 10_000_000) == .seconds(4))
    }
}
