import Foundation

/// Filters of the upload list; nil matches anything. Newest first, by (createdAt, id).
public struct StatsQuery: Sendable, Equatable {
    public var state: StatsState?
    public var scenario: String?
    public var owner: String?
    public var network: String?
    public var dialect: String?
    public var client: String?
    /// Created at or after.
    public var from: Date?
    /// Created before.
    public var to: Date?
    /// Where the previous page ended (`StatsPage.next`).
    public var cursor: StatsCursor?
    public var limit: Int

    public init(
        state: StatsState? = nil, scenario: String? = nil, owner: String? = nil, network: String? = nil, dialect: String? = nil,
        client: String? = nil, from: Date? = nil, to: Date? = nil, cursor: StatsCursor? = nil, limit: Int = 50
    ) {
        self.state = state
        self.scenario = scenario
        self.owner = owner
        self.network = network
        self.dialect = dialect
        self.client = client
        self.from = from
        self.to = to
        self.cursor = cursor
        self.limit = max(1, min(limit, 1000))
    }

    /// Whether a record passes the filters (the cursor aside); stores filter in SQL, this is the
    /// reference they are tested against.
    public func matches(_ stats: UploadStats) -> Bool {
        if let state, stats.state != state { return false }
        if let scenario, stats.scenario != scenario { return false }
        if let owner, stats.owner != owner { return false }
        if let network, stats.info.network != network { return false }
        if let dialect, stats.info.dialect != dialect { return false }
        if let client, stats.info.client != client { return false }
        if let from, stats.createdAt < from { return false }
        if let to, stats.createdAt >= to { return false }
        return true
    }
}

/// A stable position in the newest-first list: the last item's creation time (microseconds)
/// and id. Items created later never shift the pages after it.
public struct StatsCursor: Sendable, Equatable {
    public var createdMicros: Int64
    public var id: String

    public init(createdMicros: Int64, id: String) {
        self.createdMicros = createdMicros
        self.id = id
    }

    public init(after stats: UploadStats) {
        self.init(createdMicros: Self.micros(stats.createdAt), id: stats.id.rawValue)
    }

    public static func micros(_ date: Date) -> Int64 { Int64(clamping: (date.timeIntervalSince1970 * 1_000_000).rounded()) }

    /// `<micros>.<id>`, opaque to clients.
    public var token: String { "\(createdMicros).\(id)" }

    public init?(token: String) {
        let parts = token.split(separator: ".", maxSplits: 1)
        guard parts.count == 2, let micros = Int64(parts[0]), UploadID(parts[1]) != nil else { return nil }
        self.init(createdMicros: micros, id: String(parts[1]))
    }

    /// Whether `stats` comes after this position in the newest-first order.
    public func precedes(_ stats: UploadStats) -> Bool {
        let micros = Self.micros(stats.createdAt)
        return micros < createdMicros || (micros == createdMicros && stats.id.rawValue < id)
    }
}

public struct StatsPage: Sendable, Equatable {
    public var uploads: [UploadStats]
    /// Pass it back for the next page; nil on the last one.
    public var next: StatsCursor?

    public init(uploads: [UploadStats], next: StatsCursor?) {
        self.uploads = uploads
        self.next = next
    }
}

/// What aggregates can be grouped by.
public enum StatsDimension: String, Sendable, CaseIterable {
    case scenario, network, dialect, client

    func value(_ stats: UploadStats) -> String {
        switch self {
        case .scenario: stats.scenario
        case .network: stats.info.network
        case .dialect: stats.info.dialect
        case .client: stats.info.client
        }
    }
}

/// Percentiles of one measure (nil without samples).
public struct Percentiles: Sendable, Equatable {
    public var p50: Double?
    public var p90: Double?
    public var p99: Double?

    public init(p50: Double?, p90: Double?, p99: Double?) {
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
    }

    /// Nearest-rank percentiles (the smallest value with at least p % of the samples at or below it).
    public init(_ samples: [Double]) {
        let sorted = samples.sorted()
        func rank(_ p: Double) -> Double? {
            guard !sorted.isEmpty else { return nil }
            let index = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
            return sorted[min(max(index, 0), sorted.count - 1)]
        }
        self.init(p50: rank(50), p90: rank(90), p99: rank(99))
    }
}

/// The statistics of one group of uploads created in a window.
public struct StatsAggregate: Sendable, Equatable {
    public var key: [String: String]
    public var created: Int
    public var completed: Int
    public var expired: Int
    public var terminated: Int
    /// Still incomplete.
    public var open: Int
    /// Completed among those that ended (completed, expired, terminated); nil if none ended.
    public var successRate: Double?
    public var timeToComplete: Percentiles
    public var goodput: Percentiles
    public var bytes: Int64
    public var resumptionsPerUpload: Double
    public var interruptedPerUpload: Double
    /// Completed by instant upload, and the bytes those did not send.
    public var instant: Int = 0
    public var bytesSaved: Int64 = 0

    /// Aggregates `uploads` grouped by `dimensions` (one group, key [:], without dimensions).
    public static func of(_ uploads: some Sequence<UploadStats>, by dimensions: [StatsDimension]) -> [StatsAggregate] {
        var grouper = StatsGrouper(dimensions)
        for stats in uploads { grouper.add(stats) }
        return grouper.aggregates
    }

    /// Sums one group; kept small per upload (two doubles), so a day of uploads fits.
    public struct Accumulator: Sendable {
        var created = 0, completed = 0, expired = 0, terminated = 0, open = 0
        var durations: [Double] = []
        var goodputs: [Double] = []
        var bytes: Int64 = 0
        var resumptions = 0, interrupted = 0
        var instant = 0, bytesSaved: Int64 = 0

        public init() {}

        public mutating func add(_ stats: UploadStats) {
            created += 1
            switch stats.state {
            case .complete: completed += 1
            case .expired: expired += 1
            case .terminated: terminated += 1
            case .incomplete: open += 1
            }
            if let seconds = stats.timeToComplete { durations.append(seconds) }
            if let rate = stats.goodput { goodputs.append(rate) }
            bytes += stats.bytes
            resumptions += stats.resumptions
            interrupted += stats.interrupted
            if stats.instant {
                instant += 1
                bytesSaved += stats.length ?? 0
            }
        }

        public func aggregate(key: [String: String]) -> StatsAggregate {
            let ended = completed + expired + terminated
            return StatsAggregate(
                key: key, created: created, completed: completed, expired: expired, terminated: terminated, open: open,
                successRate: ended > 0 ? Double(completed) / Double(ended) : nil,
                timeToComplete: Percentiles(durations), goodput: Percentiles(goodputs), bytes: bytes,
                resumptionsPerUpload: created > 0 ? Double(resumptions) / Double(created) : 0,
                interruptedPerUpload: created > 0 ? Double(interrupted) / Double(created) : 0,
                instant: instant, bytesSaved: bytesSaved
            )
        }
    }
}
