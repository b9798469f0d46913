import Foundation

/// Where upload records (lengths, offsets, metadata, state) live.
///
/// Every mutating call is durable when it returns: an offset returned to a client was
/// committed first. Callers hold the upload's lock (`UploadLocker`) while mutating it.
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
    func update(_ record: UploadRecord, events: [OutboxEvent]) async throws(FerryError)

    /// Removes the record entirely (tombstone purge).
    func remove(_ id: UploadID) async throws(FerryError)

    /// Incomplete uploads whose `expiresAt` is before `date`, oldest first.
    func expiring(before date: Date, limit: Int) async throws(FerryError) -> [UploadRecord]

    /// Tombstones last updated before `date`.
    func tombstones(before date: Date, limit: Int) async throws(FerryError) -> [UploadID]

    /// Incomplete concatenation finals that list `partial` among their parts.
    func finals(referencing partial: UploadID) async throws(FerryError) -> [UploadID]

    // MARK: Business integration

    /// What `owner` holds: incomplete uploads, their declared bytes, creations since `since`
    /// (nil: creations are not counted and read as 0 — the count walks every creation of the
    /// window, so it is made only when a `creations-per-minute` quota needs it).
    func usage(of owner: String, since: Date?) async throws(FerryError) -> OwnerUsage

    /// Complete uploads whose `pre-finish` result is pending and due before `date`.
    func pendingBusinessResults(before date: Date, limit: Int) async throws(FerryError) -> [UploadRecord]

    // MARK: Outbox

    /// Claims up to `limit` pending deliveries due at `now`, at most one per upload and webhook
    /// (the lowest sequence not yet delivered or dead: order is kept), and pushes their
    /// `nextAttemptAt` to `leaseUntil` so that no other dispatcher takes them meanwhile.
    func claimDeliveries(now: Date, leaseUntil: Date, limit: Int) async throws(FerryError) -> [EventDelivery]

    /// Records the outcome of an attempt (`attempts` is the new count).
    func recordDelivery(eventID: String, destination: String, attempts: Int, outcome: DeliveryOutcome) async throws(FerryError)

    /// Every event of an upload, for every webhook, in sequence order.
    func deliveries(of id: UploadID) async throws(FerryError) -> [EventDelivery]

    /// Forgets delivered and dead events written before `date` (pending ones stay).
    func purgeDeliveries(before date: Date) async throws(FerryError)
}

extension UploadCatalog {
    /// Inserts a record and its events, with no quota to check.
    public func insert(_ record: UploadRecord, events: [OutboxEvent]) async throws(FerryError) {
        try await insert(record, events: events, claim: nil)
    }

    /// Inserts a record that produces no event.
    public func insert(_ record: UploadRecord) async throws(FerryError) {
        try await insert(record, events: [])
    }

    /// Updates a record without an event.
    public func update(_ record: UploadRecord) async throws(FerryError) {
        try await update(record, events: [])
    }
}
