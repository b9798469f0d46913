import FerryCore
import Foundation
import Synchronization

/// An in-memory `UploadCatalog` for tests; every write is "durable" at once.
public final class MemoryCatalog: UploadCatalog {
    public let name = "memory"
    private let records = Mutex<[UploadID: UploadRecord]>([:])

    public init() {}

    public func insert(_ record: UploadRecord) async throws(FerryError) {
        try records.withLock { records throws(FerryError) in
            guard records[record.id] == nil else { throw FerryError(.catalogFailure, "the upload exists already") }
            records[record.id] = record
        }
    }

    public func get(_ id: UploadID) async throws(FerryError) -> UploadRecord? {
        records.withLock { $0[id] }
    }

    public func update(_ record: UploadRecord) async throws(FerryError) {
        try records.withLock { records throws(FerryError) in
            guard records[record.id] != nil else { throw FerryError(.catalogFailure, "updated an unknown upload") }
            records[record.id] = record
        }
    }

    public func remove(_ id: UploadID) async throws(FerryError) {
        _ = records.withLock { $0.removeValue(forKey: id) }
    }

    public func expiring(before date: Date, limit: Int) async throws(FerryError) -> [UploadRecord] {
        records.withLock { records in
            records.values
                .filter { $0.state == .incomplete && ($0.expiresAt.map { $0 < date } ?? false) }
                .sorted { ($0.expiresAt ?? date) < ($1.expiresAt ?? date) }
                .prefix(limit)
                .map { $0 }
        }
    }

    public func tombstones(before date: Date, limit: Int) async throws(FerryError) -> [UploadID] {
        records.withLock { records in
            records.values.filter { $0.state.isGone && $0.updatedAt < date }.prefix(limit).map(\.id)
        }
    }

    public func finals(referencing partial: UploadID) async throws(FerryError) -> [UploadID] {
        records.withLock { records in
            records.values.filter { $0.state == .incomplete && $0.partials.contains(partial) }.map(\.id).sorted()
        }
    }
}
