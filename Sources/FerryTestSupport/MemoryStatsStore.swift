import FerryCore
import Foundation
import Synchronization

/// An in-memory `StatsStore`: the reference the SQL stores are checked against.
public final class MemoryStatsStore: StatsStore {
    private struct State {
        var stats: [UploadID: UploadStats] = [:]
        var requests: [UploadID: [RequestEntry]] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    public func apply(_ events: [StatsEvent]) async throws(FerryError) {
        state.withLock { state in
            for event in events {
                switch event {
                case .created(let stats):
                    if state.stats[stats.id] == nil { state.stats[stats.id] = stats }
                case .request(let entry):
                    guard state.stats[entry.upload] != nil else { continue }
                    state.stats[entry.upload]?.apply(event)
                    state.requests[entry.upload, default: []].append(entry)
                case .timeline(let entry):
                    guard state.stats[entry.upload] != nil else { continue }
                    state.requests[entry.upload, default: []].append(entry)
                case .completed(let id, _, _), .ended(let id, _, _), .telemetry(let id, _), .instant(let id):
                    state.stats[id]?.apply(event)
                }
            }
        }
    }

    public func uploads(_ query: StatsQuery) async throws(FerryError) -> StatsPage {
        let sorted = state.withLock { Array($0.stats.values) }
            .filter { query.matches($0) && (query.cursor?.precedes($0) ?? true) }
            .sorted { (StatsCursor.micros($0.createdAt), $0.id.rawValue) > (StatsCursor.micros($1.createdAt), $1.id.rawValue) }
        let page = Array(sorted.prefix(query.limit))
        return StatsPage(uploads: page, next: sorted.count > query.limit ? page.last.map(StatsCursor.init(after:)) : nil)
    }

    public func stats(of id: UploadID) async throws(FerryError) -> UploadStats? {
        state.withLock { $0.stats[id] }
    }

    public func requests(of id: UploadID, limit: Int) async throws(FerryError) -> [RequestEntry] {
        state.withLock { Array(($0.requests[id] ?? []).suffix(limit)) }
    }

    public func aggregate(from: Date, to: Date, by dimensions: [StatsDimension]) async throws(FerryError) -> [StatsAggregate] {
        let window = state.withLock { Array($0.stats.values) }.filter { $0.createdAt >= from && $0.createdAt < to }
        return StatsAggregate.of(window, by: dimensions)
    }

    public func active(since: Date) async throws(FerryError) -> Int {
        state.withLock { $0.stats.values.filter { $0.state == .incomplete && ($0.lastRequestAt ?? .distantPast) >= since }.count }
    }

    public func prune(before date: Date) async throws(FerryError) {
        state.withLock { state in
            for (id, stats) in state.stats where stats.createdAt < date {
                state.stats[id] = nil
                state.requests[id] = nil
            }
        }
    }
}
