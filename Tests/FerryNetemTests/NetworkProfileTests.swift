import Testing

@testable import FerryNetem

let mbit = 1_000_000.0 / 8

@Suite("Network profiles: the catalog")
struct NetworkProfileCatalogTests {
    @Test(arguments: NetworkProfile.names)
    func everyNamedProfileIsPlayable(_ name: String) throws {
        let profile = try #require(NetworkProfile.named(name))
        #expect(profile.name == name)
        #expect(!profile.schedule.isEmpty)
        #expect(profile.schedule.allSatisfy { $0.duration > .zero && $0.rate >= 0 && $0.rate.isFinite })
        #expect(profile.latency >= .zero)
        #expect(profile.meanRate > 0, "some bytes pass on average")
        for range in [profile.resetAfter, profile.cutAfter, profile.blackholeAfter].compactMap({ $0 }) {
            #expect(range.lowerBound > 0)
        }
        if let handover = profile.handover {
            #expect(handover.blackout > .zero && handover.blackout < handover.interval)
        }
        if let flow = profile.perConnectionRate {
            #expect(flow > 0 && flow <= profile.schedule.map(\.rate).max()!)
        }
    }

    @Test(arguments: ["", "WiFi", "wifi ", " wifi", "lte", "lte_good", "per_flow", "3G", "edge", "none"])
    func anUnknownNameIsRefused(_ name: String) {
        #expect(NetworkProfile.named(name) == nil)
    }

    @Test func theNamesAreDistinctAndAllKnown() {
        #expect(Set(NetworkProfile.names).count == NetworkProfile.names.count)
        #expect(NetworkProfile.names.count == 10)
    }

    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var latency: Duration
        var meanRate: Double
        var segments: Int
        var period: Double
        var resetAfter: ClosedRange<Int64>? = nil
        var cutAfter: ClosedRange<Int64>? = nil
        var blackholeAfter: ClosedRange<Int64>? = nil
        var handover: (interval: Duration, blackout: Duration)? = nil
        var perConnectionRate: Double? = nil
        var testDescription: String { name }
    }

    /// What docs `mobile-networks.md` promises of each fixed profile.
    static let rows: [Row] = [
        Row(name: "wifi", latency: .milliseconds(15), meanRate: 50 * mbit, segments: 1, period: 60),
        Row(name: "lte-good", latency: .milliseconds(50), meanRate: 13 * mbit, segments: 1, period: 60),
        Row(name: "3g", latency: .milliseconds(250), meanRate: 1 * mbit, segments: 1, period: 60),
        Row(name: "cliff", latency: .milliseconds(50), meanRate: (15 * 10 * mbit + 5 * 10 * mbit * 0.03) / 20, segments: 2, period: 20),
        Row(name: "handover", latency: .milliseconds(50), meanRate: 10 * mbit * (1 - 1.5 / 60), segments: 1, period: 60,
            handover: (interval: .seconds(60), blackout: .milliseconds(1500))),
        Row(name: "middlebox", latency: .milliseconds(40), meanRate: 10 * mbit, segments: 1, period: 60, cutAfter: 1_000_000...8_000_000),
        Row(name: "blackhole", latency: .milliseconds(40), meanRate: 10 * mbit, segments: 1, period: 60, blackholeAfter: 1_000_000...8_000_000),
        Row(name: "per-flow", latency: .milliseconds(50), meanRate: 20 * mbit, segments: 1, period: 60, perConnectionRate: 5 * mbit),
    ]

    @Test(arguments: rows)
    func fixedProfile(_ row: Row) throws {
        let profile = try #require(NetworkProfile.named(row.name))
        #expect(profile.latency == row.latency)
        #expect(abs(profile.meanRate - row.meanRate) < 1e-6)
        #expect(profile.schedule.count == row.segments)
        #expect(profile.schedule.reduce(0.0) { $0 + $1.duration.secondsValue } == row.period)
        #expect(profile.resetAfter == row.resetAfter)
        #expect(profile.cutAfter == row.cutAfter)
        #expect(profile.blackholeAfter == row.blackholeAfter)
        #expect(profile.handover?.interval == row.handover?.interval && profile.handover?.blackout == row.handover?.blackout)
        #expect(profile.perConnectionRate == row.perConnectionRate)
        // A fixed profile does not depend on the seed.
        #expect(NetworkProfile.named(row.name, seed: 99) == profile)
    }

    @Test func lteDrivingWandersAroundTwoMegabitsWithDips() throws {
        let profile = try #require(NetworkProfile.named("lte-driving", seed: 1))
        #expect(profile.latency == .milliseconds(80))
        #expect(profile.schedule.count == 300)
        for segment in profile.schedule {
            if segment.rate == 2 * mbit * 0.02 {
                #expect((1.0...4.0).contains(segment.duration.secondsValue), "a dip lasts 1-4 s")
            } else {
                #expect(segment.duration == .seconds(1))
                #expect(segment.rate >= 2 * mbit * 0.5 && segment.rate < 2 * mbit * 1.5, "±50 % of 2 Mbit/s")
            }
        }
        #expect(profile.schedule.contains { $0.rate == 2 * mbit * 0.02 }, "at least one dip in 300 segments")
        // Computed independently (SplitMix64 in Python) for seed 1.
        #expect(profile.schedule.prefix(3).map(\.rate) == [311445.43931567523, 236089.80426394302, 315723.5979779402])
        #expect(profile.schedule.reduce(0.0) { $0 + $1.duration.secondsValue } == 331)
    }

    @Test func vacuumAlternatesRateAndBlackouts() throws {
        let profile = try #require(NetworkProfile.named("vacuum", seed: 1))
        #expect(profile.schedule.count == 40)
        for (index, segment) in profile.schedule.enumerated() {
            if index.isMultiple(of: 2) {
                #expect(segment.rate == 5 * mbit)
                #expect((20.0...39.0).contains(segment.duration.secondsValue))
            } else {
                #expect(segment.rate == 0)
                #expect((2.0...30.0).contains(segment.duration.secondsValue))
            }
        }
        #expect(profile.schedule.prefix(4).map(\.duration) == [.seconds(25), .seconds(23), .seconds(30), .seconds(17)])
        #expect(profile.schedule.reduce(0.0) { $0 + $1.duration.secondsValue } == 925)
    }

    @Test(arguments: ["lte-driving", "vacuum"])
    func aSeededProfileIsTheSameForItsSeedOnly(_ name: String) {
        #expect(NetworkProfile.named(name, seed: 7) == NetworkProfile.named(name, seed: 7))
        #expect(NetworkProfile.named(name, seed: 7) != NetworkProfile.named(name, seed: 8))
    }
}

@Suite("Network profiles: rates over time")
struct NetworkProfileMathTests {
    /// 2 s at 100 B/s, 1 s of vacuum, 1 s at 400 B/s: a 4 s period.
    static let stepped = NetworkProfile(
        name: "stepped", schedule: [.init(duration: .seconds(2), rate: 100), .init(duration: .seconds(1), rate: 0), .init(duration: .seconds(1), rate: 400)]
    )

    @Test(arguments: [
        (Duration.zero, 100.0), (.milliseconds(1999), 100), (.seconds(2), 0), (.milliseconds(2999), 0), (.seconds(3), 400),
        (.milliseconds(3999), 400), (.seconds(4), 100), (.seconds(6), 0), (.seconds(7), 400), (.seconds(4_000_001), 100),
    ])
    func theScheduleRepeats(_ elapsed: Duration, _ rate: Double) {
        #expect(Self.stepped.rate(at: elapsed) == rate)
    }

    /// 100 B/s, and every 10 s the last 2 s pass nothing.
    static let handover = NetworkProfile(
        name: "handover", schedule: [.init(duration: .seconds(3), rate: 100)], handover: (interval: .seconds(10), blackout: .seconds(2))
    )

    @Test(arguments: [
        (Duration.zero, 100.0), (.milliseconds(7999), 100), (.seconds(8), 0), (.milliseconds(9999), 0), (.seconds(10), 100),
        (.seconds(18), 0), (.seconds(21), 100),
    ])
    func aHandoverBlacksOutTheEndOfEachInterval(_ elapsed: Duration, _ rate: Double) {
        #expect(Self.handover.rate(at: elapsed) == rate)
    }

    @Test func degenerateSchedules() {
        #expect(NetworkProfile(name: "empty", schedule: []).rate(at: .seconds(5)) == 0)
        #expect(NetworkProfile(name: "empty", schedule: []).meanRate == 0)
        // A schedule of no length plays its first rate.
        #expect(NetworkProfile(name: "instant", schedule: [.init(duration: .zero, rate: 7), .init(duration: .zero, rate: 9)]).rate(at: .seconds(5)) == 7)
    }

    /// The mean weighs each rate by its time; a handover's blackouts take their share off.
    static let means: [(NetworkProfile, Double)] = [
        (stepped, 150),
        (handover, 80),
        (NetworkProfile(name: "flat", schedule: [.init(duration: .milliseconds(500), rate: 42)]), 42),
        (NetworkProfile(name: "silent", schedule: [.init(duration: .seconds(1), rate: 0)]), 0),
    ]

    @Test(arguments: means)
    func meanRate(_ profile: NetworkProfile, _ expected: Double) {
        #expect(abs(profile.meanRate - expected) < 1e-9)
    }

    @Test func scalingMultipliesRatesAndKeepsOutages() throws {
        let profile = NetworkProfile(
            name: "p", schedule: [.init(duration: .seconds(2), rate: 100), .init(duration: .seconds(1), rate: 0)], latency: .milliseconds(30),
            resetAfter: 10...20, cutAfter: 100...200, blackholeAfter: 1000...2000, handover: (interval: .seconds(10), blackout: .seconds(1)),
            perConnectionRate: 50
        )
        let scaled = profile.scaled(by: 4)
        #expect(scaled.schedule == [.init(duration: .seconds(2), rate: 400), .init(duration: .seconds(1), rate: 0)])
        #expect(scaled.perConnectionRate == 200)
        #expect(scaled.resetAfter == 40...80 && scaled.cutAfter == 400...800 && scaled.blackholeAfter == 4000...8000)
        #expect(scaled.latency == profile.latency && scaled.name == profile.name)
        #expect(scaled.handover?.interval == .seconds(10) && scaled.handover?.blackout == .seconds(1))
        #expect(abs(scaled.meanRate - 4 * profile.meanRate) < 1e-9)

        let ratesOnly = profile.scaled(by: 4, fates: false)
        #expect(ratesOnly.schedule == scaled.schedule && ratesOnly.perConnectionRate == 200)
        #expect(ratesOnly.resetAfter == 10...20 && ratesOnly.cutAfter == 100...200 && ratesOnly.blackholeAfter == 1000...2000)
        #expect(profile.scaled(by: 1) == profile)
    }

    @Test func equalityComparesHandovers() {
        let base = NetworkProfile(name: "p", schedule: [.init(duration: .seconds(1), rate: 1)], handover: (interval: .seconds(10), blackout: .seconds(1)))
        var other = base
        #expect(other == base)
        other.handover = (interval: .seconds(10), blackout: .seconds(2))
        #expect(other != base)
        other.handover = nil
        #expect(other != base)
    }
}

@Suite("Seeded random numbers (SplitMix64)")
struct SeededRandomTests {
    /// The reference outputs of SplitMix64 (seed 0's first is the published 0xE220A8397B1DCDAF).
    @Test(arguments: [
        (0, [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F]),
        (1, [0x910A_2DEC_8902_5CC1, 0xBEEB_8DA1_658E_EC67, 0xF893_A2EE_FB32_555E]),
        (42, [0xBDD7_3226_2FEB_6E95, 0x28EF_E333_B266_F103, 0x4752_6757_130F_9F52]),
    ] as [(UInt64, [UInt64])])
    func referenceOutputs(_ seed: UInt64, _ expected: [UInt64]) {
        var random = SeededRandom(seed: seed)
        #expect((0..<3).map { _ in random.next() } == expected)
    }

    @Test(arguments: [UInt64(0), 1, 42, .max])
    func drawsStayInTheirRanges(_ seed: UInt64) {
        var random = SeededRandom(seed: seed)
        for _ in 0..<2000 {
            let unit = random.unit()
            #expect(unit >= 0 && unit < 1)
            #expect((0..<7).contains(random.below(7)))
            #expect(random.below(1) == 0 && random.below(0) == 0 && random.below(-3) == 0)
            #expect((5...9).contains(random.within(5...9)))
            #expect(random.within(3...3) == 3)
            #expect((Int64.min...Int64.min + 1).contains(random.within(Int64.min...Int64.min + 1)))
        }
    }

    @Test func withinReachesBothBounds() {
        var random = SeededRandom(seed: 3)
        let draws = Set((0..<500).map { _ in random.within(1...4) })
        #expect(draws == [1, 2, 3, 4])
    }
}
