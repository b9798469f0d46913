import FerryCore
import Foundation
import Logging
import PostgresNIO

extension PostgresCatalog {
    /// One step of the schema, applied once per database (recorded in `ferry_migrations`).
    struct Migration: Sendable {
        let version: Int32
        let name: String
        /// One statement each: the extended protocol takes no multi-statement strings.
        let statements: [PostgresQuery]
    }

    /// The schema, in order. Never edit a released step: append a new one.
    ///
    /// The same shape as the SQLite catalog's: dates are seconds since 1970 as DOUBLE PRECISION
    /// (exact round trips), `concat` keeps a final's parts in order, and `concat_parts` indexes
    /// them for `finals(referencing:)`.
    static let migrations: [Migration] = [
        Migration(
            version: 1,
            name: "uploads and concatenation parts",
            statements: [
                """
                CREATE TABLE uploads (
                    id TEXT PRIMARY KEY,
                    length BIGINT,
                    "offset" BIGINT NOT NULL,
                    metadata TEXT NOT NULL,
                    concat TEXT NOT NULL,
                    state TEXT NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL,
                    updated_at DOUBLE PRECISION NOT NULL,
                    expires_at DOUBLE PRECISION,
                    store_state TEXT
                )
                """,
                "CREATE INDEX uploads_expiry ON uploads (expires_at) WHERE state = 'incomplete'",
                "CREATE INDEX uploads_tombstones ON uploads (updated_at) WHERE state IN ('terminated', 'expired', 'lost')",
                """
                CREATE TABLE concat_parts (
                    final_id TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
                    position INTEGER NOT NULL,
                    partial_id TEXT NOT NULL,
                    PRIMARY KEY (final_id, position)
                )
                """,
                "CREATE INDEX concat_parts_partial ON concat_parts (partial_id)",
            ]
        ),
        Migration(
            version: 2,
            name: "cross-node upload leases",
            statements: [
                // Fences come from a sequence: they only grow, even across deleted rows.
                "CREATE SEQUENCE upload_lease_fences",
                """
                CREATE TABLE upload_leases (
                    upload_id TEXT PRIMARY KEY,
                    holder TEXT,
                    fence BIGINT NOT NULL,
                    expires_at TIMESTAMPTZ NOT NULL,
                    stop_requested BOOLEAN NOT NULL DEFAULT false
                )
                """,
            ]
        ),
        Migration(
            version: 3,
            name: "scenarios, owners, business results, outbox",
            statements: [
                """
                ALTER TABLE uploads ADD COLUMN scenario TEXT NOT NULL DEFAULT 'default', ADD COLUMN owner TEXT,
                    ADD COLUMN sha256 TEXT, ADD COLUMN business_status TEXT, ADD COLUMN business_result TEXT,
                    ADD COLUMN business_attempts INTEGER NOT NULL DEFAULT 0, ADD COLUMN business_next_at DOUBLE PRECISION,
                    ADD COLUMN event_sequence BIGINT NOT NULL DEFAULT 0, ADD COLUMN progress_event_at DOUBLE PRECISION
                """,
                "CREATE INDEX uploads_owner ON uploads (owner, state) WHERE owner IS NOT NULL",
                "CREATE INDEX uploads_owner_created ON uploads (owner, created_at) WHERE owner IS NOT NULL",
                "CREATE INDEX uploads_business ON uploads (business_next_at) WHERE business_status = 'pending'",
                """
                CREATE TABLE outbox (
                    event_id TEXT NOT NULL,
                    destination TEXT NOT NULL,
                    upload_id TEXT NOT NULL,
                    sequence BIGINT NOT NULL,
                    type TEXT NOT NULL,
                    payload TEXT NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL,
                    state TEXT NOT NULL DEFAULT 'pending',
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at DOUBLE PRECISION NOT NULL,
                    last_error TEXT,
                    delivered_at DOUBLE PRECISION,
                    PRIMARY KEY (event_id, destination)
                )
                """,
                "CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending'",
                "CREATE INDEX outbox_stream ON outbox (upload_id, destination, sequence) WHERE state = 'pending'",
                "CREATE INDEX outbox_upload ON outbox (upload_id)",
            ]
        ),
        Migration(version: 4, name: "statistics", statements: PostgresCatalog.statisticsSchema),
        // Quotas are counted per key: a token's subject, or an anonymous client's address.
        Migration(
            version: 5,
            name: "quota keys",
            statements: [
                "ALTER TABLE uploads ADD COLUMN quota_key TEXT",
                "UPDATE uploads SET quota_key = 'sub:' || owner WHERE owner IS NOT NULL",
                "DROP INDEX uploads_owner",
                "DROP INDEX uploads_owner_created",
                "CREATE INDEX uploads_quota ON uploads (quota_key, state) WHERE quota_key IS NOT NULL",
                "CREATE INDEX uploads_quota_created ON uploads (quota_key, created_at) WHERE quota_key IS NOT NULL",
            ]
        ),
        // What the completion histograms need, kept with the upload so that any node labels
        // and measures its completion. Older uploads: `unknown`.
        Migration(
            version: 6,
            name: "network and first byte",
            statements: [
                "ALTER TABLE uploads ADD COLUMN network TEXT NOT NULL DEFAULT 'unknown', ADD COLUMN first_byte_at DOUBLE PRECISION"
            ]
        ),
        // A claimed insert is one statement: the owner's lock and count in a function (a fresh
        // snapshot after the lock), the insert behind it (`ClaimedInsertUploadStatement`).
        Migration(
            version: 7,
            name: "quota claims in one statement",
            statements: [PostgresCatalog.lockedUsageFunction(create: "CREATE FUNCTION", bytes: #"coalesce(u.length, u."offset")"#)]
        ),
        // `open-bytes` counts the room a running append to a deferred-length upload holds, and
        // no bytes for a final (its partials hold them).
        Migration(
            version: 8,
            name: "open bytes: reserved room, finals",
            statements: [
                "ALTER TABLE uploads ADD COLUMN reserved_to BIGINT",
                PostgresCatalog.lockedUsageFunction(create: "CREATE OR REPLACE FUNCTION", bytes: PostgresCatalog.openBytesColumn("u.")),
            ]
        ),
        // Instant upload (docs/instant-upload.md): complete uploads found by content.
        Migration(
            version: 9,
            name: "content index",
            statements: [
                "ALTER TABLE uploads ADD COLUMN content_scope TEXT, ADD COLUMN announced_sha256 TEXT, ADD COLUMN instant_challenge TEXT",
                """
                CREATE INDEX uploads_content ON uploads (content_scope, sha256, length, created_at)
                WHERE state = 'complete' AND content_scope IS NOT NULL
                """,
            ]
        ),
        Migration(version: 10, name: "instant statistics", statements: ["ALTER TABLE upload_stats ADD COLUMN instant BOOLEAN NOT NULL DEFAULT false"]),
    ]

    /// The advisory lock that serializes migrations across nodes ("FerryCat" in ASCII).
    static let migrationLock: Int64 = 0x4665_7272_7943_6174

    /// Applies the missing migrations in one transaction. Nodes starting together queue on the
    /// advisory lock (released at commit or rollback); each then reads the version the others
    /// left, so every step runs once and a failed step leaves nothing behind.
    static func migrate(_ connection: PostgresConnection, logger: Logger) async throws {
        // An acknowledged offset must survive a crash of the database server: refuse to start
        // where commits return before their WAL is flushed (a role or database default).
        let rows = try await connection.query("SHOW synchronous_commit", logger: logger)
        for try await setting in rows.decode(String.self) where setting == "off" {
            throw FerryError(.catalogFailure, "the database has synchronous_commit = off: acknowledged uploads could be lost")
        }
        try await connection.withTransaction(logger: logger) { connection in
            _ = try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLock))", logger: logger).collect()
            _ = try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS ferry_migrations (
                    version INTEGER PRIMARY KEY,
                    name TEXT NOT NULL,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                )
                """,
                logger: logger
            ).collect()
            var current: Int32 = 0
            let rows = try await connection.query("SELECT coalesce(max(version), 0) FROM ferry_migrations", logger: logger)
            for try await version in rows.decode(Int32.self) { current = version }
            for migration in migrations where migration.version > current {
                for statement in migration.statements {
                    _ = try await connection.query(statement, logger: logger).collect()
                }
                _ = try await connection.query(
                    "INSERT INTO ferry_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
                    logger: logger
                ).collect()
                logger.info("catalog.migrated", metadata: ["catalog.migration": "\(migration.version)"])
            }
        }
    }

    /// The columns every record query selects, in this order.
    static let columns = """
        id, length, "offset", metadata, concat, state, created_at, updated_at, expires_at, store_state, scenario, owner, sha256,
        business_status, business_result, business_attempts, business_next_at, event_sequence, progress_event_at, quota_key,
        network, first_byte_at, reserved_to, content_scope, announced_sha256, instant_challenge
        """

    static func record(_ row: PostgresRow) throws -> UploadRecord {
        let (
            rawID, length, offset, metadataText, concatText, stateText, createdAt, updatedAt, expiresAt, storeState, scenario, owner,
            sha256, businessStatus, businessResult, businessAttempts, businessNext, eventSequence, progressAt, quotaKey, network,
            firstByteAt, reservedTo, contentScope, announcedSHA256, instantChallenge
        ) = try row.decode(
            (
                String, Int64?, Int64, String, String, String, Double, Double, Double?, String?, String, String?, String?, String?,
                String?, Int32, Double?, Int64, Double?, String?, String, Double?, Int64?, String?, String?, String?
            ).self
        )
        guard let id = UploadID(rawID),
            let state = UploadState(rawValue: stateText),
            let metadata = try? UploadMetadata(tusHeader: metadataText)
        else {
            throw FerryError(.catalogFailure, "the catalog holds a malformed upload row")
        }
        let (concat, concatRequest) = UploadRecord.concat(fromText: concatText)
        return UploadRecord(
            id: id,
            length: length,
            offset: offset,
            metadata: metadata,
            concat: concat,
            state: state,
            createdAt: Date(timeIntervalSince1970: createdAt),
            updatedAt: Date(timeIntervalSince1970: updatedAt),
            expiresAt: expiresAt.map { Date(timeIntervalSince1970: $0) },
            storeState: storeState,
            scenario: scenario,
            owner: owner,
            quotaKey: quotaKey,
            sha256: sha256,
            business: businessStatus.flatMap(BusinessResult.Status.init(rawValue:)).map {
                BusinessResult(
                    status: $0,
                    json: businessResult,
                    attempts: Int(businessAttempts),
                    nextAttemptAt: businessNext.map { Date(timeIntervalSince1970: $0) }
                )
            },
            eventSequence: eventSequence,
            progressEventAt: progressAt.map { Date(timeIntervalSince1970: $0) },
            concatRequest: concatRequest,
            network: network,
            firstByteAt: firstByteAt.map { Date(timeIntervalSince1970: $0) },
            reservedTo: reservedTo,
            contentScope: contentScope,
            announcedSHA256: announcedSHA256,
            instantChallenge: instantChallenge
        )
    }

    static func delivery(_ row: PostgresRow) throws -> EventDelivery {
        let (eventID, destination, rawID, sequence, typeText, payload, createdAt, stateText, attempts, next, lastError, deliveredAt) =
            try row.decode((String, String, String, Int64, String, String, Double, String, Int32, Double, String?, Double?).self)
        guard let id = UploadID(rawID), let type = UploadEventType(rawValue: typeText), let state = EventDelivery.State(rawValue: stateText),
            eventID == "\(rawID)-\(sequence)"
        else {
            throw FerryError(.catalogFailure, "the catalog holds a malformed outbox row")
        }
        return EventDelivery(
            event: OutboxEvent(
                uploadID: id,
                sequence: sequence,
                type: type,
                destination: destination,
                payload: payload,
                createdAt: Date(timeIntervalSince1970: createdAt)
            ),
            state: state,
            attempts: Int(attempts),
            nextAttemptAt: Date(timeIntervalSince1970: next),
            lastError: lastError,
            deliveredAt: deliveredAt.map { Date(timeIntervalSince1970: $0) }
        )
    }

    /// The columns `delivery(_:)` decodes, in this order.
    static let deliveryColumns = """
        event_id, destination, upload_id, sequence, type, payload, created_at, state, attempts, next_attempt_at, last_error, delivered_at
        """

    /// Driver errors become `FerryError`s: a full disk is `ERR_STORAGE_FULL` (507), not a 500;
    /// everything else is a catalog failure carrying the server's reason for the logs.
    static func wrap(_ error: any Error, _ message: String) -> FerryError {
        switch error {
        case let error as FerryError:
            return error
        case let error as PostgresTransactionError:
            let cause = error.beginError ?? error.closureError ?? error.commitError ?? error.rollbackError
            return cause.map { wrap($0, message) } ?? FerryError(.catalogFailure, message)
        case let error as PSQLError:
            let failure = PostgresFailure(error)
            switch failure.sqlState {
            case "53100": return FerryError(.storageFull, "the server's storage is full; retry later", underlying: failure)
            case "23505": return FerryError(.catalogFailure, "the catalog already holds an upload with this id", underlying: failure)
            default: return FerryError(.catalogFailure, message, underlying: failure)
            }
        default:
            return FerryError(.catalogFailure, message, underlying: error)
        }
    }
}

/// A driver error as a log line should show it. `PSQLError`'s own description hides every
/// detail (it may hold bound values); this keeps the SQLSTATE and the server's message only.
struct PostgresFailure: Error, CustomStringConvertible {
    let sqlState: String?
    let description: String

    init(_ error: PSQLError) {
        if let info = error.serverInfo {
            sqlState = info[.sqlState]
            description = "PostgreSQL \(info[.sqlState] ?? "?"): \(info[.message] ?? "no message")"
        } else {
            sqlState = nil
            description = "postgres-nio \(error.code)" + (error.underlying.map { ": \($0)" } ?? "")
        }
    }
}
