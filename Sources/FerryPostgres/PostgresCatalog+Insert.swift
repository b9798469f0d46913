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
    /// With a `claim`, the row is inserted only if the quotas leave room; otherwise the usage
    /// decides the error.
    func insert(_ record: UploadRecord, events: [OutboxEvent], claim: QuotaClaim?, lease: NewLease?) async throws(FerryError) -> Int64? {
        guard let claim else {
            let message = "the catalog rejected an insert"
            let fences = UploadStatements.needsSteps(record, events)
                ? try await rows(InsertUploadWithStepsStatement(record: record, events: events, lease: lease), message)
                : try await rows(InsertUploadStatement(record: record, events: events, lease: lease), message)
            return fences.first ?? nil
        }
        let answers = try await rows(
            ClaimedInsertUploadStatement(record: record, events: events, claim: claim, lease: lease),
            "the catalog rejected an insert"
        )
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
