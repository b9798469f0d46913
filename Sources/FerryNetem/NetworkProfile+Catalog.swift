/// The profiles of docs `mobile-networks.md`, deterministic from a seed.
extension NetworkProfile {
    public static let names = ["wifi", "lte-good", "lte-driving", "3g", "cliff", "vacuum", "handover", "middlebox", "blackhole", "per-flow"]

    static let mbit = 1_000_000.0 / 8

    public static func named(_ name: String, seed: UInt64 = 1) -> NetworkProfile? {
        var random = SeededRandom(seed: seed)
        switch name {
        case "wifi":
            return NetworkProfile(name: name, schedule: [.init(duration: .seconds(60), rate: 50 * mbit)], latency: .milliseconds(15))
        case "lte-good":
            return NetworkProfile(name: name, schedule: [.init(duration: .seconds(60), rate: 13 * mbit)], latency: .milliseconds(50))
        case "3g":
            return NetworkProfile(name: name, schedule: [.init(duration: .seconds(60), rate: 1 * mbit)], latency: .milliseconds(250))
        case "lte-driving":
            // ~2 Mbit/s wandering by ±50 % each second, with dips to near zero for 1-4 s.
            var schedule: [Segment] = []
            while schedule.count < 300 {
                if random.unit() < 0.08 {
                    schedule.append(.init(duration: .seconds(Int64(1 + random.below(4))), rate: 2 * mbit * 0.02))
                } else {
                    schedule.append(.init(duration: .seconds(1), rate: 2 * mbit * (0.5 + random.unit())))
                }
            }
            return NetworkProfile(name: name, schedule: schedule, latency: .milliseconds(80))
        case "cliff":
            return NetworkProfile(
                name: name,
                schedule: [.init(duration: .seconds(15), rate: 10 * mbit), .init(duration: .seconds(5), rate: 10 * mbit * 0.03)],
                latency: .milliseconds(50)
            )
        case "vacuum":
            // 5 Mbit/s with blackouts of 2-30 s about every 30 s.
            var schedule: [Segment] = []
            for _ in 0..<20 {
                schedule.append(.init(duration: .seconds(Int64(20 + random.below(20))), rate: 5 * mbit))
                schedule.append(.init(duration: .seconds(Int64(2 + random.below(29))), rate: 0))
            }
            return NetworkProfile(name: name, schedule: schedule, latency: .milliseconds(60))
        case "handover":
            return NetworkProfile(
                name: name,
                schedule: [.init(duration: .seconds(60), rate: 10 * mbit)],
                latency: .milliseconds(50),
                handover: (interval: .seconds(60), blackout: .milliseconds(1500))
            )
        case "middlebox":
            return NetworkProfile(
                name: name,
                schedule: [.init(duration: .seconds(60), rate: 10 * mbit)],
                latency: .milliseconds(40),
                cutAfter: 1_000_000...8_000_000
            )
        case "blackhole":
            // Connections go silent for good after 1-8 MB: only a client that notices recovers.
            return NetworkProfile(
                name: name,
                schedule: [.init(duration: .seconds(60), rate: 10 * mbit)],
                latency: .milliseconds(40),
                blackholeAfter: 1_000_000...8_000_000
            )
        case "per-flow":
            // A 20 Mbit/s uplink on which one connection gets at most 5 Mbit/s (per-flow policing,
            // or a long lossy path one TCP connection cannot fill): parallel streams pay off here.
            return NetworkProfile(
                name: name,
                schedule: [.init(duration: .seconds(60), rate: 20 * mbit)],
                latency: .milliseconds(50),
                perConnectionRate: 5 * mbit
            )
        default:
            return nil
        }
    }
}

/// SplitMix64: small, fast, deterministic.
public struct SeededRandom: Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// Uniform in [0, bound).
    public mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(max(1, bound))) }

    public mutating func within(_ range: ClosedRange<Int64>) -> Int64 {
        range.lowerBound + Int64(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }
}
