import FerryCore
import Foundation

/// The behaviour every `UploadCatalog` must show.
public enum UploadCatalogConformance {
    /// Every check, by name; each runs on a fresh, empty subject.
    public static let checks: [ConformanceCheck<any FullCatalog>] = [
        ConformanceCheck("roundTrips") { try await roundTrips($0) },
        ConformanceCheck("rejectsDuplicatesAndUnknownUpdates") { try await rejectsDuplicatesAndUnknownUpdates($0) },
        ConformanceCheck("listsExpiring") { try await listsExpiring($0) },
        ConformanceCheck("listsTombstonesAndRemoves") { try await listsTombstonesAndRemoves($0) },
        ConformanceCheck("findsFinals") { try await findsFinals($0) },
        ConformanceCheck("concurrentWritesAllLand") { try await concurrentWritesAllLand($0) },
        ConformanceCheck("cancellationDoesNotLeak") { try await cancellationDoesNotLeak($0) },
    ] + BusinessCatalogConformance.checks + ContentIndexConformance.checks

    static let epoch = Date(timeIntervalSince1970: 1_800_000_000)

    static func record(length: Int64? = 10, expiresIn: Double? = 60) -> UploadRecord {
        UploadRecord(
            id: .random(),
            length: length,
            createdAt: epoch,
            expiresAt: expiresIn.map { epoch.addingTimeInterval($0) }
        )
    }

    static func roundTrips(_ catalog: any FullCatalog) async throws {
        var original = record(length: nil)
        original.metadata = try UploadMetadata(tusHeader: "filename aGVsbG8=,empty ,flag")
        original.offset = 7
        original.network = "4g"
        try await catalog.insert(original)
        try require(try await catalog.get(original.id) == original, "a record reads back as written")
        let parts = [UploadID.random(), UploadID.random()]
        let final = UploadRecord(id: .random(), length: nil, concat: .final(parts + [parts[0]]), createdAt: epoch)
        try await catalog.insert(final)
        try require(try await catalog.get(final.id) == final, "a final keeps its parts, in order, repeats included")
        var partial = record()
        partial.concat = .partial
        try await catalog.insert(partial)
        try require(try await catalog.get(partial.id)?.concat == .partial, "a partial stays partial")
        var updated = original
        updated.offset = 10
        updated.length = 10
        updated.state = .complete
        updated.expiresAt = nil
        updated.storeState = #"{"parts":[{"number":1,"size":5242880,"etag":"abc"}]}"#
        updated.firstByteAt = epoch.addingTimeInterval(2.5)
        try await catalog.update(updated, events: [], fence: nil)
        try require(try await catalog.get(original.id) == updated, "an update replaces the record, store state included")
        let back = try await catalog.get(original.id)
        try require(
            back?.network == "4g" && back?.firstByteAt == epoch.addingTimeInterval(2.5),
            "the creator's network and the first byte's time read back (the completion histograms' on any node)"
        )
        try require(try await catalog.get(final.id)?.network == "unknown", "a record without a declared network reads back as unknown")
        try require(try await catalog.get(.random()) == nil, "an unknown id reads as nil")
    }

    static func rejectsDuplicatesAndUnknownUpdates(_ catalog: any FullCatalog) async throws {
        let original = record()
        try await catalog.insert(original)
        try await requireError(.catalogFailure) { try await catalog.insert(original) }
        try await requireError(.catalogFailure) { try await catalog.update(record(), events: [], fence: nil) }
    }

    static func listsExpiring(_ catalog: any FullCatalog) async throws {
        let soon = record(expiresIn: 10)
        let later = record(expiresIn: 100)
        let never = record(expiresIn: nil)
        var done = record(expiresIn: 5)
        done.state = .complete
        for item in [later, soon, never, done] { try await catalog.insert(item) }
        let due = try await catalog.expiring(before: epoch.addingTimeInterval(50), limit: 10).map(\.id)
        try require(due == [soon.id], "only incomplete uploads past their expiry are listed")
        let all = try await catalog.expiring(before: epoch.addingTimeInterval(500), limit: 10).map(\.id)
        try require(all == [soon.id, later.id], "oldest expiry first")
        try require(try await catalog.expiring(before: epoch.addingTimeInterval(500), limit: 1).count == 1, "limit applies")
    }

    static func listsTombstonesAndRemoves(_ catalog: any FullCatalog) async throws {
        var gone = record()
        gone.state = .terminated
        gone.updatedAt = epoch
        let live = record()
        try await catalog.insert(gone)
        try await catalog.insert(live)
        let old = try await catalog.tombstones(before: epoch.addingTimeInterval(1), limit: 10)
        try require(old == [gone.id], "only tombstones are listed")
        try require(try await catalog.tombstones(before: epoch, limit: 10).isEmpty, "newer tombstones are kept")
        try await catalog.remove(gone.id)
        try require(try await catalog.get(gone.id) == nil, "a removed record is gone")
    }

    static func findsFinals(_ catalog: any FullCatalog) async throws {
        let partial = UploadID.random()
        let other = UploadID.random()
        let waiting = UploadRecord(id: .random(), length: nil, concat: .final([other, partial]), createdAt: epoch)
        var finished = UploadRecord(id: .random(), length: 0, concat: .final([partial]), createdAt: epoch)
        finished.state = .complete
        try await catalog.insert(waiting)
        try await catalog.insert(finished)
        try require(try await catalog.finals(referencing: partial) == [waiting.id], "only incomplete finals are listed")
        try require(try await catalog.finals(referencing: .random()).isEmpty, "no final lists an unrelated upload")
    }

    static func concurrentWritesAllLand(_ catalog: any FullCatalog) async throws {
        let records = (0..<200).map { _ in record() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for item in records {
                group.addTask {
                    try await catalog.insert(item)
                    var next = item
                    next.offset = 5
                    try await catalog.update(next, events: [], fence: nil)
                }
            }
            try await group.waitForAll()
        }
        for item in records {
            try require(try await catalog.get(item.id)?.offset == 5, "every concurrent write is committed")
        }
    }
}

extension UploadCatalogConformance {
    /// A cancelled writer must not fail the writes of others committed in the same batch.
    public static func cancellationDoesNotLeak(_ catalog: any FullCatalog) async throws {
        let records = (0..<100).map { _ in record() }
        let cancelled = Task {
            for item in records.prefix(50) { try? await catalog.insert(item) }
        }
        cancelled.cancel()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for item in records.suffix(50) { group.addTask { try await catalog.insert(item) } }
            try await group.waitForAll()
        }
        _ = await cancelled.value
        for item in records.suffix(50) {
            try require(try await catalog.get(item.id) != nil, "writes of live requests commit despite a cancelled one")
        }
    }
}
