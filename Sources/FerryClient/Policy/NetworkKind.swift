/// What kind of link the app believes it is on; policies start from its defaults.
public enum NetworkKind: String, Sendable, CaseIterable {
    case wifi
    case cellular
    case wired
    case unknown

    /// The request size to start from on this kind of link.
    var initialChunk: Int64 {
        switch self {
        case .wired: 16 << 20
        case .wifi: 4 << 20
        case .cellular: 1 << 20
        case .unknown: 2 << 20
        }
    }

    /// Time allowed before a request shows any progress, before size is counted in.
    var firstProgressBase: Duration {
        switch self {
        case .wired, .wifi: .seconds(12)
        case .cellular, .unknown: .seconds(15)
        }
    }

    /// The slowest rate a working link is assumed to reach (bytes per second).
    var floorRate: Double {
        switch self {
        case .wired, .wifi: 12 * 1024
        case .cellular, .unknown: 4 * 1024
        }
    }

    /// How long without progress counts as a stall, until the network proves good.
    var idleTimeout: Duration {
        switch self {
        case .wired, .wifi: .seconds(8)
        case .cellular, .unknown: .seconds(12)
        }
    }
}
