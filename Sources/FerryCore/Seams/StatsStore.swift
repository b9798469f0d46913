import Foundation

/// Where upload statistics live (docs/statistics.md): the catalog's database, in tables of their
/// own. Writes come in batches from `StatsRecorder`, never on the request path.
public protocol StatsStore: Sendable {
    /// Applies a batch in order, in one transaction. Events about unknown uploads are dropped
    /// (their `created` was pruned, or recorded by no node).
    func apply(_ events: [StatsEvent]) async throws(FerryError)

    /// A page of the newest-first list.
    func uploads(_ query: StatsQuery) async throws(FerryError) -> StatsPage

    func stats(of id: UploadID) async throws(FerryError) -> UploadStats?

    /// The upload's last `limit` requests, oldest first.
    func requests(of id: UploadID, limit: Int) async throws(FerryError) -> [RequestEntry]

    /// Aggregates of the uploads created in `[from, to)`, grouped by `dimensions`
    /// (`StatsGrouper` does the arithmetic; stores stream their rows into it).
    func aggregate(from: Date, to: Date, by dimensions: [StatsDimension]) async throws(FerryError) -> [StatsAggregate]

    /// Incomplete uploads with a request since `since`.
    func active(since: Date) async throws(FerryError) -> Int

    /// Forgets records created before `date`, and their requests.
    func prune(before date: Date) async throws(FerryError)
}

/// Groups records into aggregates as they stream by.
public struct StatsGrouper: Sendable {
    let dimensions: [StatsDimension]
    var groups: [[String: String]: StatsAggregate.Accumulator] = [:]

    public init(_ dimensions: [StatsDimension]) { self.dimensions = dimensions }

    public mutating func add(_ stats: UploadStats) {
        let key = Dictionary(uniqueKeysWithValues: dimensions.map { ($0.rawValue, $0.value(stats)) })
        groups[key, default: StatsAggregate.Accumulator()].add(stats)
    }

    /// The aggregates, largest groups first.
    public var aggregates: [StatsAggregate] {
        groups.map { $0.value.aggregate(key: $0.key) }.sorted { lhs, rhs in
            lhs.created != rhs.created ? lhs.created > rhs.created : lhs.key.description < rhs.key.description
        }
    }
}
