import Foundation
import NIOCore

/// Where an upload's bytes live. Writes are sequential appends at the durable offset.
///
/// Durability contract: bytes count as stored only once `ByteWriter.sync()` returned them;
/// after a crash a store may hold fewer bytes than were written, never fewer than were synced.
public protocol ByteStore: Sendable {
    /// A short name for logs and metrics ("disk", "memory", "s3").
    var name: String { get }

    /// Prepares empty storage for a new upload, durably (its record's scenario may pick where
    /// the bytes go, for a `ScenarioRoutedStore`).
    func create(for record: UploadRecord) async throws(FerryError)

    /// Opens a writer that appends at `record.offset`, discarding any bytes the store holds past
    /// it (written but never acknowledged before a crash or a rejected chunk). `record` is the
    /// committed record: its `storeState` is what the last sync that was committed returned.
    /// `fence` is the fence of the cross-node lock the writes are made under (nil: a lock one
    /// process keeps); a shared store refuses writes once it is no longer valid.
    func openWriter(for record: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> any ByteWriter

    /// Opens the writer of the request that created the upload (its creation-with-upload body):
    /// no earlier request can have left bytes behind, so a store may skip looking for them.
    func openFirstWriter(for record: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> any ByteWriter

    /// How many bytes the store holds for the upload; nil or 0 when it holds nothing at all.
    func storedLength(of record: UploadRecord) async throws(FerryError) -> Int64?

    /// Deletes every byte of the upload. Idempotent.
    func delete(_ id: UploadID) async throws(FerryError)

    /// Where the upload's bytes are, for business systems (`file:///…`, `s3://bucket/key`).
    func location(of record: UploadRecord) -> String
}

extension ByteStore {
    public func location(of record: UploadRecord) -> String { "\(name):\(record.id.rawValue)" }

    /// Stores without leftovers to look for open the first writer like any other.
    public func openFirstWriter(for record: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> any ByteWriter {
        try await openWriter(for: record, fence: fence)
    }
}

/// A sequential writer for one upload, used by one request at a time.
public protocol ByteWriter: Sendable {
    /// Appends bytes. They may stay buffered until `sync()`.
    func write(_ buffer: ByteBuffer) async throws(FerryError)

    /// Makes everything written so far durable and returns the durable end offset.
    func sync() async throws(FerryError) -> Int64

    /// Saves, during a long request, what can be saved without waiting (the periodic checkpoint);
    /// returns the durable end offset, never less than the last one returned.
    func checkpoint() async throws(FerryError) -> Int64

    /// The store's state after the last `sync()` or `checkpoint()`, to commit with its offset
    /// (`UploadRecord.storeState`).
    func syncedState() async -> String?

    /// The engine committed the offset and state of the last `sync()`: a store may keep what it
    /// needs to continue from there on this node (a copy, never the only one).
    func committed() async

    /// Releases the writer. Unsynced bytes may be discarded.
    func close() async
}

extension ByteWriter {
    /// Stores that find an upload's bytes by its id alone keep no state.
    public func syncedState() async -> String? { nil }

    /// Stores that keep nothing for the next request ignore commits.
    public func committed() async {}

    /// Stores whose sync is cheap checkpoint by syncing.
    public func checkpoint() async throws(FerryError) -> Int64 { try await sync() }
}

/// A store that can serve an upload's bytes back (GET).
public protocol ReadableByteStore: ByteStore {
    /// Calls `consume` with successive chunks of `range` of a complete upload, in order.
    func read(
        _ record: UploadRecord,
        range: Range<Int64>,
        consume: (ByteBuffer) async throws -> Void
    ) async throws
}

/// A store that can build one upload from others server-side (tus `concatenation`).
public protocol ConcatenatingByteStore: ByteStore {
    /// Writes the bytes of `parts` (complete uploads, each `offset` bytes long), in order, into
    /// `target`, durably, replacing whatever `target` held; returns the target's store state.
    /// `fence`: as for `openWriter`.
    func concatenate(_ parts: [UploadRecord], into target: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> String?

    /// True when `concatenate` copies the partials' bytes (object storage), so a client gains
    /// nothing by splitting a file it could send in one stream (`Ferry-Concatenation: copy`).
    var concatenationCopiesBytes: Bool { get }
}

extension ConcatenatingByteStore {
    /// Stores that link or reference the partials' bytes.
    public var concatenationCopiesBytes: Bool { false }
}

/// A store that can give an upload the bytes of a complete one without receiving them again
/// (instant upload, docs/instant-upload.md): a hard link on disk, a server-side copy on S3.
public protocol ReferencingByteStore: ByteStore {
    /// Makes `target` hold exactly the bytes of `holder` (a complete upload, `offset` bytes
    /// long), durably, replacing whatever `target` held; returns the target's store state.
    /// Deleting either afterwards never changes the other's bytes. `fence`: as for `openWriter`.
    func reference(_ holder: UploadRecord, into target: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> String?
}

/// A store that can list what it holds, so bytes left behind by a crash (stored, but never
/// recorded in the catalog) can be swept.
public protocol EnumerableByteStore: ByteStore {
    /// Every upload the store holds bytes for, with when it was last written.
    func storedUploads() async throws(FerryError) -> [(id: UploadID, modified: Date)]

    /// Removes what an operation a crash interrupted left beside the uploads' bytes (a
    /// temporary name), untouched since before `cutoff`; how many it removed.
    func sweepLeftovers(before cutoff: Date) async throws(FerryError) -> Int
}

extension EnumerableByteStore {
    /// Stores whose operations leave nothing beside the uploads' bytes.
    public func sweepLeftovers(before cutoff: Date) async throws(FerryError) -> Int { 0 }
}
