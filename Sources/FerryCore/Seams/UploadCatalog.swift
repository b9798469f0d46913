import Foundation

/// Where upload records (lengths, offsets, metadata, state) live.
///
/// Every mutating call is durable when it returns: an offset returned to a client was
/// committed first. Callers hold the upload's lock (`UploadLocker`) while mutating it, and hand
/// its fence to the write. What else a catalog does (quota usage, expiry, business retries, the
/// outbox) are refinements below, each seen only by the code that needs it.
public protocol UploadCatalog: Sendable {
    var name: String { get }

    /// Inserts a new record, and `events` into the outbox, in one transaction; fails if the id exists.
    ///
    /// With a `claim`, the catalog counts the owner's usage and applies `claim.check` in the same
    /// transaction, serialized with every other claimed insert of that owner (on every node
    /// sharing the catalog), and inserts nothing when it throws.
    func insert(_ record: UploadRecord, events: [OutboxEvent], claim: QuotaClaim?) async throws(FerryError)

    /// The record, tombstones included; nil when unknown.
    func get(_ id: UploadID) async throws(FerryError) -> UploadRecord?

    /// Replaces the record with the same id, and adds `events` to the outbox, in one transaction.
    ///
    /// `fence` is the fence of the cross-node lock the write is made under (nil: a lock one
    /// process keeps); a catalog shared between nodes commits only while it is still current
    /// (`ERR_REQUEST_SUPERSEDED` otherwise).
    func update(_ record: UploadRecord, events: [OutboxEvent], fence: LeaseFence?) async throws(FerryError)

    /// Incomplete concatenation finals that list `partial` among their parts.
    func finals(referencing partial: UploadID) async throws(FerryError) -> [UploadID]
}

/// A catalog that counts what an owner holds, for quotas.
public protocol QuotaCatalog: UploadCatalog {
    /// What `owner` holds: incomplete uploads, their declared bytes, creations since `since`
    /// (nil: creations are not counted and read as 0 — the count walks every creation of the
    /// window, so it is made only when a `creations-per-minute` quota needs it).
    func usage(of owner: String, since: Date?) async throws(FerryError) -> OwnerUsage

    /// Replaces the record as `update(_:events:fence:)` does, only if `claim.check` passes on
    /// the owner's usage counted in the same transaction, serialized with every claimed insert
    /// and claimed update of that owner (on every node sharing the catalog): a length declared
    /// after creation takes the owner's last bytes exactly once. Nothing is written when it throws.
    func update(_ record: UploadRecord, events: [OutboxEvent], fence: LeaseFence?, claim: QuotaClaim) async throws(FerryError)
}

/// A catalog that finds uploads past their expiry and tombstones past their retention.
public protocol ExpiryCatalog: UploadCatalog {
    /// Incomplete uploads whose `expiresAt` is before `date`, oldest first.
    func expiring(before date: Date, limit: Int) async throws(FerryError) -> [UploadRecord]

    /// Tombstones last updated before `date`.
    func tombstones(before date: Date, limit: Int) async throws(FerryError) -> [UploadID]

    /// Removes the record entirely (tombstone purge).
    func remove(_ id: UploadID) async throws(FerryError)
}

/// A catalog that finds `pre-finish` results due for a retry.
public protocol BusinessRetryCatalog: UploadCatalog {
    /// Complete uploads whose `pre-finish` result is pending and due before `date`.
    func pendingBusinessResults(before date: Date, limit: Int) async throws(FerryError) -> [UploadRecord]
}

/// The outbox of events written with the records, for the webhook dispatcher and the admin API.
public protocol OutboxCatalog: UploadCatalog {
    /// Claims up to `limit` pending deliveries due at `now`, at most one per upload and webhook
    /// (the lowest sequence not yet delivered or dead: order is kept), and pushes their
    /// `nextAttemptAt` to `leaseUntil` so that no other dispatcher takes them meanwhile.
    func claimDeliveries(now: Date, leaseUntil: Date, limit: Int) async throws(FerryError) -> [EventDelivery]

    /// Records the outcomes of attempts, all or none (one transaction where the catalog has them).
    func recordDeliveries(_ records: [DeliveryRecord]) async throws(FerryError)

    /// Every event of an upload, for every webhook, in sequence order.
    func deliveries(of id: UploadID) async throws(FerryError) -> [EventDelivery]

    /// Forgets delivered and dead events written before `date` (pending ones stay).
    func purgeDeliveries(before date: Date) async throws(FerryError)
}

/// A catalog that finds complete uploads by their content, for instant upload
/// (docs/instant-upload.md): the content index over `contentScope`, `sha256` and `length`.
public protocol ContentIndexCatalog: UploadCatalog {
    /// Complete uploads whose `contentScope` is `scope`, whose SHA-256 is `sha256` (lowercase
    /// hex) and whose length is `length`: at most `limit`, oldest first.
    func holders(scope: String, sha256: String, length: Int64, limit: Int) async throws(FerryError) -> [UploadRecord]
}

/// What the engine needs of a catalog: records, quota usage, expiry, business retries, content.
public typealias EngineCatalog = QuotaCatalog & ExpiryCatalog & BusinessRetryCatalog & ContentIndexCatalog

extension OutboxCatalog {
    /// Records the outcome of one attempt (`attempts` is the new count).
    public func recordDelivery(eventID: String, destination: String, attempts: Int, outcome: DeliveryOutcome) async throws(FerryError) {
        try await recordDeliveries([DeliveryRecord(eventID: eventID, destination: destination, attempts: attempts, outcome: outcome)])
    }
}

extension UploadCatalog {
    /// Inserts a record and its events, with no quota to check.
    public func insert(_ record: UploadRecord, events: [OutboxEvent] = []) async throws(FerryError) {
        try await insert(record, events: events, claim: nil)
    }
}
