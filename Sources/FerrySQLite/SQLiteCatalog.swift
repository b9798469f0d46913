import FerryCore
import Foundation
import GRDB
import Synchronization

/// An `UploadCatalog` in one SQLite file (GRDB, WAL, `synchronous=FULL`).
///
/// Writes from concurrent requests are grouped: one transaction (one WAL fsync) commits
/// every write that arrived while the previous transaction ran.
public final class SQLiteCatalog: QuotaCatalog, ExpiryCatalog, BusinessRetryCatalog, ContentIndexCatalog, OutboxCatalog {
    public let name = "sqlite"
    let pool: DatabasePool
    private let writes: GroupCommit<Write, Void>
    /// Recent creations per quota key, kept by the writer (`RecentCreations`).
    let recent = RecentCreations()
    /// Outbox claims in flight: "event-id destination" → when the claim ends (`claimDeliveries`).
    private let leases = Mutex<[String: Date]>([:])

    enum Write: Sendable {
        case insert(UploadRecord, [OutboxEvent], QuotaClaim?)
        case update(UploadRecord, [OutboxEvent], QuotaClaim?)
        case remove(UploadID)
        case deliveries([DeliveryRecord])
        case purgeDeliveries(before: Date)
    }

    /// Opens (creating and migrating if needed) the catalog at `path`. Call at start-up.
    public init(path: String) throws(FerryError) {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            // GRDB sets WAL's usual `synchronous = NORMAL` on the writer, which does not sync
            // the WAL at commit. An acknowledged offset must survive power loss: FULL, set on
            // the writer connection after GRDB's own set-up, and checked.
            let level = try pool.writeWithoutTransaction { db -> Int in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                return try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? 0
            }
            guard level == 2 else {
                throw FerryError(.catalogFailure, "SQLite refused synchronous = FULL (got \(level))")
            }
            try Self.migrator.migrate(pool)
        } catch {
            throw FerryError(.catalogFailure, "cannot open the catalog at \(path)", underlying: error)
        }
        let pool = self.pool
        let recent = self.recent
        writes = GroupCommit(maxBatch: 512) { batch in
            var results: [Result<Void, FerryError>] = []
            do {
                results = try await pool.write { db in
                    var results: [Result<Void, FerryError>] = []
                    for write in batch {
                        let version = recent.version
                        do {
                            try db.inSavepoint {
                                try Self.apply(write, db, recent: recent)
                                return .commit
                            }
                            results.append(.success(()))
                        } catch {
                            // Rolled back: what the write told `recent` is not in the table.
                            if recent.version != version { recent.forgetAll() }
                            results.append(.failure(error as? FerryError ?? Self.wrap(error, "the catalog rejected a write")))
                        }
                    }
                    return results
                }
            } catch {
                recent.forgetAll()
                return Array(repeating: .failure(Self.wrap(error, "the catalog could not commit")), count: batch.count)
            }
            return results
        }
    }

    /// A claimed insert counts the owner's usage inside the write transaction: SQLite has one
    /// writer, so no other insert runs between the count and the row.
    public func insert(_ record: UploadRecord, events: [OutboxEvent], claim: QuotaClaim?) async throws(FerryError) {
        try await writes.submit(.insert(record, events, claim))
    }

    /// One process keeps the locks of this catalog: `fence` is checked, never stored.
    public func update(_ record: UploadRecord, events: [OutboxEvent], fence: LeaseFence?) async throws(FerryError) {
        try fence?.check()
        try await writes.submit(.update(record, events, nil))
    }

    /// Like a claimed insert: the usage is counted inside the write transaction.
    public func update(_ record: UploadRecord, events: [OutboxEvent], fence: LeaseFence?, claim: QuotaClaim) async throws(FerryError) {
        try fence?.check()
        try await writes.submit(.update(record, events, claim))
    }

    public func remove(_ id: UploadID) async throws(FerryError) {
        try await writes.submit(.remove(id))
    }

    public func get(_ id: UploadID) async throws(FerryError) -> UploadRecord? {
        try await read { db in
            try Row.fetchCursor(db.cachedStatement(sql: Self.getSQL), arguments: [id.rawValue]).map(Self.record).next()
        }
    }

    static let getSQL = "SELECT \(uploadColumns) FROM uploads WHERE id = ?"

    public func expiring(before date: Date, limit: Int) async throws(FerryError) -> [UploadRecord] {
        try await read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT \(Self.uploadColumns) FROM uploads WHERE state = 'incomplete' AND expires_at IS NOT NULL AND expires_at < ?
                    ORDER BY expires_at LIMIT ?
                    """,
                arguments: [date.timeIntervalSince1970, limit]
            ).map(Self.record)
        }
    }

    public func tombstones(before date: Date, limit: Int) async throws(FerryError) -> [UploadID] {
        try await read { db in
            try String.fetchAll(
                db,
                sql: "SELECT id FROM uploads WHERE state IN ('terminated', 'expired', 'lost') AND updated_at < ? LIMIT ?",
                arguments: [date.timeIntervalSince1970, limit]
            ).compactMap(UploadID.init)
        }
    }

    public func finals(referencing partial: UploadID) async throws(FerryError) -> [UploadID] {
        try await read { db in
            try String.fetchAll(
                db,
                sql: """
                    SELECT DISTINCT p.final_id FROM concat_parts p JOIN uploads u ON u.id = p.final_id
                    WHERE p.partial_id = ? AND u.state = 'incomplete'
                    """,
                arguments: [partial.rawValue]
            ).compactMap(UploadID.init)
        }
    }

    public func usage(of owner: String, since: Date?) async throws(FerryError) -> OwnerUsage {
        try await read { db in try Self.usage(of: owner, since: since, db) }
    }

    /// What an incomplete upload counts against `open-bytes` (`UploadRecord.openBytes`).
    static let openBytesColumn = #"CASE WHEN concat LIKE 'final %' THEN 0 ELSE coalesce(length, max("offset", coalesce(reserved_to, 0))) END"#

    /// The usage of `owner`; with `recent` (the writer's), creations are counted from it.
    static func usage(of owner: String, since: Date?, _ db: Database, recent: RecentCreations? = nil) throws -> OwnerUsage {
        // Index ranges only (quota_key): a key's history of complete uploads is never scanned.
        // `total` sums as a double: lengths near 2^63 saturate rather than fail the query.
        let row = try Row.fetchOne(
            db.cachedStatement(
                sql: """
                    SELECT count(*) AS open, total(\(openBytesColumn)) AS bytes
                    FROM uploads WHERE quota_key = ? AND state = 'incomplete'
                    """
            ),
            arguments: [owner]
        )
        let bytes: Double = row?["bytes"] ?? 0
        var creations = 0
        if let since = since?.timeIntervalSince1970 {
            if let recent, let known = recent.count(owner, since: since) {
                creations = known
            } else if recent == nil {
                creations = try Int.fetchOne(
                    db.cachedStatement(sql: "SELECT count(*) FROM uploads WHERE quota_key = ? AND created_at >= ?"),
                    arguments: [owner, since]
                ) ?? 0
            } else {
                let times = try Double.fetchAll(
                    db.cachedStatement(sql: "SELECT created_at FROM uploads WHERE quota_key = ? AND created_at >= ?"),
                    arguments: [owner, since]
                )
                recent?.load(owner, since: since, times: times)
                creations = times.count
            }
        }
        return OwnerUsage(openUploads: row?["open"] ?? 0, openBytes: Int64(clamping: bytes), recentCreations: creations)
    }

    public func pendingBusinessResults(before date: Date, limit: Int) async throws(FerryError) -> [UploadRecord] {
        try await read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT \(Self.uploadColumns) FROM uploads WHERE business_status = 'pending' AND state = 'complete'
                    AND coalesce(business_next_at, 0) <= ? ORDER BY business_next_at LIMIT ?
                    """,
                arguments: [date.timeIntervalSince1970, limit]
            ).map(Self.record)
        }
    }

    public func holders(scope: String, sha256: String, length: Int64, limit: Int) async throws(FerryError) -> [UploadRecord] {
        try await read { db in
            try Array(
                Row.fetchCursor(
                    db.cachedStatement(sql: """
                        SELECT \(Self.uploadColumns) FROM uploads WHERE content_scope = ? AND sha256 = ? AND length = ?
                        AND state = 'complete' ORDER BY created_at, id LIMIT ?
                        """),
                    arguments: [scope, sha256, length, limit]
                ).map(Self.record)
            )
        }
    }

    /// The due head of each (upload, webhook) stream: no earlier event of it is pending.
    static let claimSQL = """
        SELECT \(outboxColumns) FROM \(outboxRows) WHERE o.state = 'pending' AND o.next_attempt_at <= ?
        AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.upload_id = o.upload_id AND e.destination = o.destination
            AND e.state = 'pending' AND e.sequence < o.sequence)
        ORDER BY o.next_attempt_at LIMIT ?
        """

    static func leaseKey(_ eventID: String, _ destination: String) -> String { eventID + " " + destination }

    /// A claim is a read and a lease in memory: one process owns this catalog (its upload locks
    /// are in-process too), so no other process can claim; a restart forgets the leases, and the
    /// events they held are due again at once (at least once). A write per claimed event, and a
    /// synced transaction per claim, bought nothing here.
    public func claimDeliveries(now: Date, leaseUntil: Date, limit: Int) async throws(FerryError) -> [EventDelivery] {
        let held = leases.withLock { leases in
            leases = leases.filter { $0.value > now }
            return leases.count
        }
        let candidates = try await read { db in
            try Array(Row.fetchCursor(db.cachedStatement(sql: Self.claimSQL), arguments: [now.timeIntervalSince1970, limit + held]).map(Self.delivery))
        }
        // Checked and taken under one lock: two concurrent claims never both take an event.
        return leases.withLock { leases in
            var claimed: [EventDelivery] = []
            for delivery in candidates where claimed.count < limit {
                let key = Self.leaseKey(delivery.event.id, delivery.event.destination)
                if let until = leases[key], until > now { continue }
                leases[key] = leaseUntil
                claimed.append(delivery)
            }
            return claimed
        }
    }

    public func recordDeliveries(_ records: [DeliveryRecord]) async throws(FerryError) {
        // Grouped with the upload writes: one transaction for many outcomes.
        guard !records.isEmpty else { return }
        try await writes.submit(.deliveries(records))
        // Recorded: a retry is due at its own time, not at the end of the claim.
        leases.withLock { leases in
            for record in records { leases.removeValue(forKey: Self.leaseKey(record.eventID, record.destination)) }
        }
    }

    public func purgeDeliveries(before date: Date) async throws(FerryError) {
        try await writes.submit(.purgeDeliveries(before: date))
    }

    public func deliveries(of id: UploadID) async throws(FerryError) -> [EventDelivery] {
        let stored = try await read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT \(Self.outboxColumns) FROM \(Self.outboxRows) WHERE o.upload_id = ? ORDER BY o.sequence, o.destination",
                arguments: [id.rawValue]
            ).map(Self.delivery)
        }
        // A claimed event's next attempt is when its claim ends, as on PostgreSQL.
        return leases.withLock { leases in
            stored.map { delivery in
                guard delivery.state == .pending, let until = leases[Self.leaseKey(delivery.event.id, delivery.event.destination)],
                    until > delivery.nextAttemptAt
                else { return delivery }
                var leased = delivery
                leased.nextAttemptAt = until
                return leased
            }
        }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(FerryError) -> T {
        do {
            return try await pool.read(body)
        } catch let error as FerryError {
            throw error
        } catch {
            throw Self.wrap(error, "the catalog could not be read")
        }
    }

    /// Driver errors become `FerryError`s; a full disk is `ERR_STORAGE_FULL` (507), not a 500.
    static func wrap(_ error: any Error, _ message: String) -> FerryError {
        if let error = error as? FerryError { return error }
        if let error = error as? DatabaseError, error.resultCode == .SQLITE_FULL {
            return FerryError(.storageFull, "the server's storage is full; retry later", underlying: error)
        }
        return FerryError(.catalogFailure, message, underlying: error)
    }
}
