import Foundation

/// Where upload records (lengths, offsets, metadata, state) live.
///
/// Every mutating call is durable when it returns: an offset returned to a client was
/// committed first. Callers hold the upload's lock (`UploadLocker`) while mutating it.
public protocol UploadCatalog: Sendable {
    var name: String { get }

    /// Inserts a new record; fails if the id exists.
    func insert(_ record: UploadRecord) async throws(FerryError)

    /// The record, tombstones included; nil when unknown.
    func get(_ id: UploadID) async throws(FerryError) -> UploadRecord?

    /// Replaces the record with the same id.
    func update(_ record: UploadRecord) async throws(FerryError)

    /// Removes the record entirely (tombstone purge).
    func remove(_ id: UploadID) async throws(FerryError)

    /// Incomplete uploads whose `expiresAt` is before `date`, oldest first.
    func expiring(before date: Date, limit: Int) async throws(FerryError) -> [UploadRecord]

    /// Tombstones last updated before `date`.
    func tombstones(before date: Date, limit: Int) async throws(FerryError) -> [UploadID]

    /// Incomplete concatenation finals that list `partial` among their parts.
    func finals(referencing partial: UploadID) async throws(FerryError) -> [UploadID]
}
