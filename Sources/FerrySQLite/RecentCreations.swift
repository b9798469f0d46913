import Synchronization

/// The creation times of recent uploads per quota key, kept by the catalog's one writer so that
/// a `creations-per-minute` check counts them without reading the key's history.
///
/// A count over the `(quota_key, created_at)` index grows with the key's creations of the last
/// minute: about 60 µs at 2,000, inside the write transaction that every other write waits on.
/// Here a key's entry is loaded once from that index, then kept by the writes themselves: an
/// insert adds its time, a removal takes it away. It is exact for the transaction it runs in:
/// a write that fails after changing it, or a batch that fails to commit, drops every entry
/// (`forgetAll`), and the next check loads again.
final class RecentCreations: Sendable {
    struct Entry {
        /// Every creation of the key at or after `from` (seconds since 1970), sorted.
        var from: Double
        var times: [Double]
    }

    struct State {
        var entries: [String: Entry] = [:]
        var held = 0
        /// Bumped by every change a write makes (not by loads).
        var version = 0
    }

    private let state = Mutex(State())
    /// Beyond this many times held, everything is dropped and loaded again as needed.
    let capacity: Int
    /// Times older than a check's start are kept this much longer: a claim made a moment before
    /// another may be checked after it.
    static let margin = 10.0

    init(capacity: Int = 200_000) {
        self.capacity = capacity
    }

    var version: Int { state.withLock { $0.version } }

    /// The creations of `key` at or after `since`; nil when they must be loaded (`load`).
    func count(_ key: String, since: Double) -> Int? {
        state.withLock { state in
            guard var entry = state.entries[key], entry.from <= since else { return nil }
            let keep = since - Self.margin
            if entry.from < keep, let first = entry.times.first, first < keep {
                let dropped = entry.times.partitioningIndex { $0 >= keep }
                entry.times.removeFirst(dropped)
                state.held -= dropped
                entry.from = keep
            }
            state.entries[key] = entry
            return entry.times.count - entry.times.partitioningIndex { $0 >= since }
        }
    }

    /// Every creation of `key` at or after `since`, as read in the writer's transaction.
    func load(_ key: String, since: Double, times: [Double]) {
        state.withLock { state in
            if state.held + times.count > capacity {
                state.entries.removeAll()
                state.held = 0
            }
            state.held += times.count - (state.entries[key]?.times.count ?? 0)
            state.entries[key] = Entry(from: since, times: times.sorted())
        }
    }

    func inserted(_ key: String, at time: Double) {
        state.withLock { state in
            state.version += 1
            guard var entry = state.entries[key], time >= entry.from else { return }
            entry.times.insert(time, at: entry.times.partitioningIndex { $0 > time })
            state.entries[key] = entry
            state.held += 1
        }
    }

    func removed(_ key: String, at time: Double) {
        state.withLock { state in
            state.version += 1
            guard var entry = state.entries[key], time >= entry.from else { return }
            let index = entry.times.partitioningIndex { $0 >= time }
            guard index < entry.times.count, entry.times[index] == time else {
                // Not there: the entry no longer describes the table.
                state.entries[key] = nil
                state.held -= entry.times.count
                return
            }
            entry.times.remove(at: index)
            state.entries[key] = entry
            state.held -= 1
        }
    }

    var isEmpty: Bool { state.withLock { $0.entries.isEmpty } }

    func forgetAll() {
        state.withLock { state in
            state.entries.removeAll()
            state.held = 0
            state.version += 1
        }
    }
}

extension Array where Element == Double {
    /// The first index whose element satisfies `predicate`, which holds from some index on.
    func partitioningIndex(where predicate: (Double) -> Bool) -> Int {
        var low = 0
        var high = count
        while low < high {
            let middle = (low + high) / 2
            if predicate(self[middle]) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
