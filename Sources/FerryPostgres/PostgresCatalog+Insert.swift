import FerryCore
import PostgresNIO

extension PostgresCatalog {
    /// Inserts a new upload with its events, in one statement. With a `claim`, the statement
    /// first calls `ferry_locked_usage` (migration 7), which takes the owner's advisory lock
    /// (held to the end of the statement's transaction) and then counts the owner's usage in a
    /// snapshot of its own, taken after the lock was granted: it sees every upload that an earlier
    /// holder inserted, so concurrent creations on any node cannot all take the last slot. The row
    /// is inserted only if the quotas leave room; otherwise the usage decides the error.
    public func insert(_ record: UploadRecord, events: [OutboxEvent], claim: QuotaClaim?) async throws(FerryError) {
        _ = try await insert(record, events: events, claim: claim, lease: nil)
    }

    /// A new upload's lock, claimed by the statement that inserts it (`PostgresUploadLocker`).
    struct NewLease {
        /// The claiming node.
        let holder: String
        /// How long the claim lasts without renewal.
        let seconds: Double
    }

    /// `insert`, with the upload's lease row when `lease` is given; returns its fence token.
    func insert(_ record: UploadRecord, events: [OutboxEvent], claim: QuotaClaim?, lease: NewLease?) async throws(FerryError) -> Int64? {
        guard let claim else {
            let fences = try await rows(Self.insertQuery(record, events, lease: lease), "the catalog rejected an insert") { row in
                try row.decode((String, Int64?).self).1
            }
            return fences.first ?? nil
        }
        let answers = try await rows(Self.claimedInsertQuery(record, events, claim, lease: lease), "the catalog rejected an insert") { row in
            let (open, bytes, recent, inserted, fence) = try row.decode((Int64, Int64, Int64, Bool, Int64?).self)
            return (OwnerUsage(openUploads: Int(open), openBytes: bytes, recentCreations: Int(recent)), inserted, fence)
        }
        guard let (usage, inserted, fence) = answers.first else {
            throw FerryError(.catalogFailure, "the catalog did not answer an insert")
        }
        if inserted { return fence }
        try claim.check(usage)
        // The statement's rule and `QuotaClaim.check` are the same; should they ever differ,
        // the database's refusal stands.
        throw FerryError(.quotaExceeded, "the quotas leave no room for this upload")
    }

    /// The first key of the advisory locks that serialize an owner's claimed inserts ("Fery").
    static let quotaLockSpace: Int32 = 0x4665_7279

    /// One statement, so atomic without a transaction: the row, a final's parts with their
    /// positions (none for other uploads), and the outbox events. A duplicate id fails on
    /// the primary key.
    static func insertQuery(_ record: UploadRecord, _ events: [OutboxEvent], lease: NewLease? = nil) -> PostgresQuery {
        """
            WITH upload AS (
                INSERT INTO uploads (\(unescaped: insertColumns))
                VALUES (\(uploadValuesOf: record))
                RETURNING id
            )\(partsInsertOf: record)\(leaseInsertOf: lease)\(outboxInsertOf: events)
            SELECT id, \(unescaped: lease == nil ? "NULL::bigint" : "(SELECT fence FROM lease)") FROM upload
            """
    }

    /// `insertQuery` behind the owner's quotas (`QuotaClaim.check`'s rule in SQL, bytes saturating
    /// at 2^63 - 1 as there): answers the owner's usage before the insert and whether the row was
    /// inserted.
    static func claimedInsertQuery(_ record: UploadRecord, _ events: [OutboxEvent], _ claim: QuotaClaim, lease: NewLease? = nil) -> PostgresQuery {
        let creations = claim.creating ? claim.quotas.creationsPerMinute.map(Int64.init) : nil
        let open = claim.creating ? claim.quotas.openUploads.map(Int64.init) : nil
        return """
            WITH usage AS MATERIALIZED (
                SELECT * FROM ferry_locked_usage(\(quotaLockSpace), \(claim.owner), \(claim.countsCreationsSince?.timeIntervalSince1970)::float8)
            ),
            upload AS (
                INSERT INTO uploads (\(unescaped: insertColumns))
                SELECT \(uploadValuesOf: record) FROM usage
                WHERE (\(creations)::bigint IS NULL OR usage.recent < \(creations)::bigint)
                AND (\(open)::bigint IS NULL OR usage.open_uploads < \(open)::bigint)
                AND (\(claim.quotas.openBytes)::bigint IS NULL
                    OR least(usage.open_bytes::numeric + \(claim.bytes)::numeric, 9223372036854775807) <= \(claim.quotas.openBytes)::bigint)
                RETURNING id
            )\(partsInsertOf: record)\(leaseInsertOf: lease)\(outboxInsertOf: events)
            SELECT usage.open_uploads, usage.open_bytes, usage.recent, EXISTS (SELECT 1 FROM upload),
                \(unescaped: lease == nil ? "NULL::bigint" : "(SELECT fence FROM lease)") FROM usage
            """
    }

    static let insertColumns = """
        id, length, "offset", metadata, concat, state, created_at, updated_at, expires_at, store_state,
        scenario, owner, sha256, business_status, business_result, business_attempts, business_next_at,
        event_sequence, progress_event_at, quota_key, network, first_byte_at, reserved_to
        """

    /// `ferry_locked_usage(space, key, since)`: the advisory lock of `key`'s claimed inserts, then
    /// the usage `usageQuery` counts. A VOLATILE function takes a fresh snapshot for each query
    /// it runs (READ COMMITTED), so the count comes after the lock. Migration 7 created it
    /// counting a deferred upload's offset; migration 8 replaces it to count the room a running
    /// append holds too (`openBytesColumn`).
    static func lockedUsageFunction(create: String, bytes: String) -> PostgresQuery {
        PostgresQuery(
            unsafeSQL: """
                \(create) ferry_locked_usage(space INTEGER, key TEXT, since DOUBLE PRECISION)
                RETURNS TABLE (open_uploads BIGINT, open_bytes BIGINT, recent BIGINT)
                LANGUAGE plpgsql VOLATILE AS $$
                BEGIN
                    PERFORM pg_advisory_xact_lock(space, hashtext(key));
                    RETURN QUERY
                    SELECT count(*), least(coalesce(sum(\(bytes)), 0), 9223372036854775807)::bigint,
                        CASE WHEN since IS NULL THEN 0::bigint ELSE (SELECT count(*) FROM uploads c
                            WHERE c.quota_key = key AND c.created_at >= since) END
                    FROM uploads u WHERE u.quota_key = key AND u.state = 'incomplete';
                END
                $$
                """
        )
    }

    /// What an incomplete upload counts against `open-bytes` (`UploadRecord.openBytes`), with
    /// `table.` before its columns.
    static func openBytesColumn(_ table: String = "") -> String {
        "CASE WHEN \(table)concat LIKE 'final %' THEN 0 "
            + "ELSE coalesce(\(table)length, greatest(\(table)\"offset\", coalesce(\(table)reserved_to, 0))) END"
    }
}

extension PostgresQuery.StringInterpolation {
    /// The values of `PostgresCatalog.insertColumns` for `record`.
    mutating func appendInterpolation(uploadValuesOf record: UploadRecord) {
        appendInterpolation(record.id.rawValue)
        appendLiteral(", ")
        appendInterpolation(record.length)
        appendLiteral(", ")
        appendInterpolation(record.offset)
        appendLiteral(", ")
        appendInterpolation(record.metadata.tusHeader)
        appendLiteral(", ")
        appendInterpolation(record.concatText)
        appendLiteral(", ")
        appendInterpolation(record.state.rawValue)
        appendLiteral(", ")
        appendInterpolation(record.createdAt.timeIntervalSince1970)
        appendLiteral(", ")
        appendInterpolation(record.updatedAt.timeIntervalSince1970)
        appendLiteral(", ")
        appendInterpolation(record.expiresAt?.timeIntervalSince1970)
        appendLiteral(", ")
        appendInterpolation(record.storeState)
        appendLiteral(", ")
        appendInterpolation(record.scenario)
        appendLiteral(", ")
        appendInterpolation(record.owner)
        appendLiteral(", ")
        appendInterpolation(record.sha256)
        appendLiteral(", ")
        appendInterpolation(record.business?.status.rawValue)
        appendLiteral(", ")
        appendInterpolation(record.business?.json)
        appendLiteral(", ")
        appendInterpolation(Int32(record.business?.attempts ?? 0))
        appendLiteral(", ")
        appendInterpolation(record.business?.nextAttemptAt?.timeIntervalSince1970)
        appendLiteral(", ")
        appendInterpolation(record.eventSequence)
        appendLiteral(", ")
        appendInterpolation(record.progressEventAt?.timeIntervalSince1970)
        appendLiteral(", ")
        appendInterpolation(record.quotaKey)
        appendLiteral(", ")
        appendInterpolation(record.network)
        appendLiteral(", ")
        appendInterpolation(record.firstByteAt?.timeIntervalSince1970)
        appendLiteral(", ")
        appendInterpolation(record.reservedTo)
    }

    /// The `lease` step of an insert (with its leading comma): the new upload's lease row, held
    /// by `lease.holder` with a new fence, written only with the upload's row (none without a `lease`).
    mutating func appendInterpolation(leaseInsertOf lease: PostgresCatalog.NewLease?) {
        guard let lease else { return }
        appendLiteral("""
            ,
            lease AS (
                INSERT INTO upload_leases (upload_id, holder, fence, expires_at, stop_requested)
                SELECT upload.id,
            """)
        appendInterpolation(lease.holder)
        appendLiteral(", nextval('upload_lease_fences'), clock_timestamp() + make_interval(secs => ")
        appendInterpolation(lease.seconds)
        appendLiteral("), false FROM upload RETURNING fence)")
    }

    /// The `parts` step of an insert (with its leading comma): a final's partials with their
    /// positions (none for other uploads).
    mutating func appendInterpolation(partsInsertOf record: UploadRecord) {
        guard !record.partials.isEmpty else { return }
        appendLiteral("""
            ,
            parts AS (
                INSERT INTO concat_parts (final_id, position, partial_id)
                SELECT upload.id, part.position - 1, part.partial_id
                FROM upload, unnest(
            """)
        appendInterpolation(record.partials.map(\.rawValue))
        appendLiteral("::text[]) WITH ORDINALITY AS part (partial_id, position)\n)")
    }
}
