import Foundation
import NIOCore

/// Where an upload's bytes live. Writes are sequential appends at the durable offset.
///
/// Durability contract: bytes count as stored only once `ByteWriter.sync()` returned them;
/// after a crash a store may hold fewer bytes than were written, never fewer than were synced.
public protocol ByteStore: Sendable {
    /// A short name for logs and metrics ("disk", "memory", "s3").
    var name: String { get }

    /// Prepares empty storage for a new upload, durably.
    func create(_ id: UploadID) async throws(FerryError)

    /// Opens a writer that appends at `offset`, discarding any bytes the store holds past it
    /// (written but never acknowledged before a crash or a rejected chunk).
    func openWriter(_ id: UploadID, at offset: Int64) async throws(FerryError) -> any ByteWriter

    /// How many bytes the store holds for the upload; nil when it holds nothing at all.
    func storedLength(_ id: UploadID) async throws(FerryError) -> Int64?

    /// Deletes every byte of the upload. Idempotent.
    func delete(_ id: UploadID) async throws(FerryError)
}

/// A sequential writer for one upload, used by one request at a time.
public protocol ByteWriter: Sendable {
    /// Appends bytes. They may stay buffered until `sync()`.
    func write(_ buffer: ByteBuffer) async throws(FerryError)

    /// Makes everything written so far durable and returns the durable end offset.
    func sync() async throws(FerryError) -> Int64

    /// Releases the writer. Unsynced bytes may be discarded.
    func close() async
}

/// A store that can serve an upload's bytes back (GET).
public protocol ReadableByteStore: ByteStore {
    /// Calls `consume` with successive chunks of `range`, in order.
    func read(
        _ id: UploadID,
        range: Range<Int64>,
        consume: (ByteBuffer) async throws -> Void
    ) async throws
}

/// A store that can build one upload from others server-side (tus `concatenation`).
public protocol ConcatenatingByteStore: ByteStore {
    /// Writes the bytes of `parts` (first `lengths[i]` bytes of each), in order, into `target`,
    /// durably, replacing whatever `target` held.
    func concatenate(_ parts: [UploadID], lengths: [Int64], into target: UploadID) async throws(FerryError)
}

/// A store that can list what it holds, so bytes left behind by a crash (stored, but never
/// recorded in the catalog) can be swept.
public protocol EnumerableByteStore: ByteStore {
    /// Every upload the store holds bytes for, with when it was last written.
    func storedUploads() async throws(FerryError) -> [(id: UploadID, modified: Date)]
}
