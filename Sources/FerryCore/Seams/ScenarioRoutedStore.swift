import Foundation
import NIOCore

/// Keeps each scenario's files in its own place (a folder on disk, a key prefix in a bucket):
/// one store per place, chosen by the upload's scenario. Uploads of scenarios without a place
/// of their own go to the default store.
///
/// Only the id reaches `delete` and the orphan sweep's listing: they visit every store (a
/// handful), which is idempotent.
public final class ScenarioRoutedStore<Store: ReadableByteStore & ConcatenatingByteStore & AnyObject>: ReadableByteStore,
    ConcatenatingByteStore
{
    public let name: String
    let fallback: Store
    let routes: [String: Store]

    /// `routes` maps scenario names to their stores; several scenarios may share one.
    public init(default fallback: Store, routes: [String: Store]) {
        self.name = fallback.name
        self.fallback = fallback
        self.routes = routes
    }

    func store(_ record: UploadRecord) -> Store { routes[record.scenario] ?? fallback }

    /// Each distinct store once, the default first.
    var stores: [Store] {
        var seen = Set<ObjectIdentifier>()
        return ([fallback] + routes.keys.sorted().compactMap { routes[$0] }).filter { store in
            seen.insert(ObjectIdentifier(store)).inserted
        }
    }

    public func create(for record: UploadRecord) async throws(FerryError) { try await store(record).create(for: record) }

    public func openWriter(for record: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> any ByteWriter {
        try await store(record).openWriter(for: record, fence: fence)
    }

    public func openFirstWriter(for record: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> any ByteWriter {
        try await store(record).openFirstWriter(for: record, fence: fence)
    }

    public func storedLength(of record: UploadRecord) async throws(FerryError) -> Int64? {
        try await store(record).storedLength(of: record)
    }

    public func delete(_ id: UploadID) async throws(FerryError) {
        for store in stores { try await store.delete(id) }
    }

    public func location(of record: UploadRecord) -> String { store(record).location(of: record) }

    public func read(_ record: UploadRecord, range: Range<Int64>, consume: (ByteBuffer) async throws -> Void) async throws {
        try await store(record).read(record, range: range, consume: consume)
    }

    /// Every scenario's store is of one kind: the default one speaks for them.
    public var concatenationCopiesBytes: Bool { fallback.concatenationCopiesBytes }

    public func concatenate(_ parts: [UploadRecord], into target: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> String? {
        let destination = store(target)
        guard parts.allSatisfy({ store($0) === destination }) else {
            throw FerryError(.invalidConcat, "partial uploads of another scenario's storage cannot be concatenated here")
        }
        return try await destination.concatenate(parts, into: target, fence: fence)
    }
}

/// Listing (for the orphan sweep) where every store can list.
extension ScenarioRoutedStore: EnumerableByteStore where Store: EnumerableByteStore {
    public func storedUploads() async throws(FerryError) -> [(id: UploadID, modified: Date)] {
        var all: [(id: UploadID, modified: Date)] = []
        for store in stores { all += try await store.storedUploads() }
        return all
    }

    public func sweepLeftovers(before cutoff: Date) async throws(FerryError) -> Int {
        var removed = 0
        for store in stores { removed += try await store.sweepLeftovers(before: cutoff) }
        return removed
    }
}

/// References within one place. A holder kept in another scenario's place (a `deployment`
/// scope spans scenarios) is refused: the caller stores the bytes the usual way instead.
extension ScenarioRoutedStore: ReferencingByteStore where Store: ReferencingByteStore {
    public func reference(_ holder: UploadRecord, into target: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> String? {
        let destination = store(target)
        guard store(holder) === destination else {
            throw FerryError(.storageFailure, "an upload kept in another scenario's storage cannot be referenced here")
        }
        return try await destination.reference(holder, into: target, fence: fence)
    }
}
