import FerryCore
import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// An `UploadCatalog` in PostgreSQL, for several Ferry nodes sharing one database.
///
/// The catalog is a `Service`: put it in the server's `ServiceGroup` (first, so it stops last).
/// `run()` runs the connection pool and applies the schema migrations; calls made before the
/// migrations are done wait for them. Without `run()`, every call waits forever.
///
/// Every mutating call is one autocommit statement, durable when it returns (the server's
/// default `synchronous_commit = on`; start-up fails where it is `off`). Concurrent calls run on up to
/// `Configuration.maximumConnections` pooled connections; PostgreSQL groups their WAL flushes
/// itself, so there is no batching here. Connections are plain TCP, without TLS.
public final class PostgresCatalog: QuotaCatalog, ExpiryCatalog, BusinessRetryCatalog, ContentIndexCatalog, OutboxCatalog, Service {
    public let name = "postgres"
    let client: PostgresClient
    /// For the migrations, which run on a connection of their own, outside the pool.
    let migrationConnection: PostgresConnection.Configuration
    let logger: Logger
    let migrated = MigrationGate()

    /// Builds the catalog; connects only once `run()` runs. Throws on an invalid configuration.
    public init(configuration: Configuration, logger: Logger) throws(FerryError) {
        try configuration.validate()
        let startup = configuration.schema.map { [("search_path", $0)] } ?? []
        var pool = PostgresClient.Configuration(
            host: configuration.host,
            port: configuration.port,
            username: configuration.username,
            password: configuration.password,
            database: configuration.database,
            tls: .disable
        )
        pool.options.maximumConnections = configuration.maximumConnections
        pool.options.connectTimeout = configuration.connectTimeout
        pool.options.additionalStartupParameters = startup
        var single = PostgresConnection.Configuration(
            host: configuration.host,
            port: configuration.port,
            username: configuration.username,
            password: configuration.password,
            database: configuration.database,
            tls: .disable
        )
        single.options.connectTimeout = TimeAmount(configuration.connectTimeout)
        single.options.additionalStartupParameters = startup
        self.client = PostgresClient(configuration: pool, backgroundLogger: logger)
        self.migrationConnection = single
        self.logger = logger
    }

    /// Builds the catalog from `postgres://user:password@host:port/database`.
    public convenience init(url: String, logger: Logger) throws(FerryError) {
        try self.init(configuration: Configuration(url: url), logger: logger)
    }

    /// Runs the connection pool until graceful shutdown or cancellation, and meanwhile applies
    /// the migrations over a connection of their own (the pool opens connections only when
    /// calls need them). Throws, stopping the group, if the migrations fail. Call once.
    public func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            // Started first, so that it runs when the gate opens; leaves on graceful shutdown
            // by itself (`cancelWhenGracefulShutdown` inside).
            group.addTask { await self.client.run() }
            try await applyMigrations()
        }
    }

    private func applyMigrations() async throws(FerryError) {
        do {
            let connection = try await PostgresConnection.connect(configuration: migrationConnection, id: 0, logger: logger)
            do {
                try await Self.migrate(connection, logger: logger)
            } catch {
                try? await connection.close()
                throw error
            }
            try? await connection.close()
            migrated.finish(.success(()))
        } catch {
            let failure = Self.wrap(error, "the catalog could not apply its migrations")
            logger.error("catalog.migration_failed", metadata: ["error": "\(failure)"])
            migrated.finish(.failure(failure))
            throw failure
        }
    }

    /// Under a cross-node lock (`fence`), the update commits only while that lock's fence is
    /// still the upload's current one: a node that lost its claim cannot overwrite what the new
    /// holder committed.
    public func update(_ record: UploadRecord, events: [OutboxEvent], fence: LeaseFence?) async throws(FerryError) {
        // A final's parts never change after creation (like the SQLite catalog, only `concat`
        // is rewritten): the hot path, an offset update, stays one single-row statement.
        try fence?.check()
        let message = "the catalog rejected an update"
        let updated = events.isEmpty
            ? try await rows(UpdateUploadStatement(record: record, events: events, fence: fence?.token), message)
            : try await rows(UpdateUploadWithEventsStatement(record: record, events: events, fence: fence?.token), message)
        try await updateMatched(!updated.isEmpty, record, fence: fence)
    }

    /// The same fenced statement, in a claimed transaction (a length declared after creation).
    public func update(_ record: UploadRecord, events: [OutboxEvent], fence: LeaseFence?, claim: QuotaClaim) async throws(FerryError) {
        try fence?.check()
        let updated = try await claiming(claim, "the catalog rejected an update") { connection -> [String] in
            func ids(_ statement: some UploadUpdateStatement) async throws -> [String] {
                var ids: [String] = []
                for try await id in try await connection.execute(statement, logger: self.logger) {
                    ids.append(id)
                }
                return ids
            }
            return events.isEmpty
                ? try await ids(UpdateUploadStatement(record: record, events: events, fence: fence?.token))
                : try await ids(UpdateUploadWithEventsStatement(record: record, events: events, fence: fence?.token))
        }
        try await updateMatched(!updated.isEmpty, record, fence: fence)
    }

    /// Runs `write` after `claim.check` passed on the owner's usage, in one transaction that
    /// holds the owner's advisory lock to its end (`ferry_locked_usage`, the lock the claimed
    /// inserts take): the count and the write are serialized against every other claimed
    /// insert or update of that owner on every node.
    private func claiming<T: Sendable>(
        _ claim: QuotaClaim,
        _ message: String,
        _ write: @Sendable (PostgresConnection) async throws -> T
    ) async throws(FerryError) -> T {
        try await migrated.wait()
        let result: Result<T, FerryError>
        do {
            result = try await client.withTransaction(logger: logger) { connection -> Result<T, FerryError> in
                var usage = OwnerUsage(openUploads: 0, openBytes: 0, recentCreations: 0)
                let query: PostgresQuery = """
                    SELECT * FROM ferry_locked_usage(\(Self.quotaLockSpace), \(claim.owner), \(claim.countsCreationsSince?.timeIntervalSince1970)::float8)
                    """
                for try await row in try await connection.query(query, logger: logger) {
                    usage = try Self.usage(row)
                }
                do throws(FerryError) {
                    try claim.check(usage)
                } catch {
                    return .failure(error)
                }
                return .success(try await write(connection))
            }
        } catch {
            throw Self.wrap(error, message)
        }
        return try result.get()
    }

    /// After an update statement: nothing matched means a lost fence (the upload is another
    /// node's now) or an unknown upload.
    private func updateMatched(_ matched: Bool, _ record: UploadRecord, fence: LeaseFence?) async throws(FerryError) {
        guard !matched else { return }
        if let fence, try await get(record.id) != nil {
            fence.invalidate()
            throw FerryError(.requestSuperseded, "another node took this upload over; this request's bytes were not committed")
        }
        throw FerryError(.catalogFailure, "updated an upload the catalog does not hold")
    }

    public func remove(_ id: UploadID) async throws(FerryError) {
        // `concat_parts` rows go with it (ON DELETE CASCADE).
        _ = try await rows("DELETE FROM uploads WHERE id = \(id.rawValue)", "the catalog rejected a removal") { _ in () }
    }

    public func get(_ id: UploadID) async throws(FerryError) -> UploadRecord? {
        try await rows(GetUploadStatement(id: id.rawValue), "the catalog could not be read").first
    }

    public func expiring(before date: Date, limit: Int) async throws(FerryError) -> [UploadRecord] {
        try await rows(
            """
            SELECT \(unescaped: Self.columns) FROM uploads WHERE state = 'incomplete' AND expires_at < \(date.timeIntervalSince1970)
            ORDER BY expires_at LIMIT \(limit)
            """,
            "the catalog could not be read",
            Self.record
        )
    }

    public func tombstones(before date: Date, limit: Int) async throws(FerryError) -> [UploadID] {
        try await rows(
            """
            SELECT id FROM uploads WHERE state IN ('terminated', 'expired', 'lost') AND updated_at < \(date.timeIntervalSince1970)
            ORDER BY updated_at LIMIT \(limit)
            """,
            "the catalog could not be read"
        ) { row in try UploadID(row.decode(String.self)) }.compactMap { $0 }
    }

    public func finals(referencing partial: UploadID) async throws(FerryError) -> [UploadID] {
        try await rows(
            """
            SELECT DISTINCT p.final_id FROM concat_parts p JOIN uploads u ON u.id = p.final_id
            WHERE p.partial_id = \(partial.rawValue) AND u.state = 'incomplete'
            """,
            "the catalog could not be read"
        ) { row in try UploadID(row.decode(String.self)) }.compactMap { $0 }
    }

    public func usage(of owner: String, since: Date?) async throws(FerryError) -> OwnerUsage {
        try await rows(Self.usageQuery(of: owner, since: since), "the catalog could not be read", Self.usage).first
            ?? OwnerUsage(openUploads: 0, openBytes: 0, recentCreations: 0)
    }

    /// The sum is numeric in PostgreSQL: held at 2^63 - 1 before the cast, so lengths near the
    /// limit saturate rather than fail the query.
    /// Creations are counted only with a `since` (nil: 0).
    static func usageQuery(of owner: String, since: Date?) -> PostgresQuery {
        """
        SELECT count(*), least(coalesce(sum(\(unescaped: openBytesColumn())), 0), 9223372036854775807)::bigint,
            CASE WHEN \(since?.timeIntervalSince1970)::float8 IS NULL THEN 0::bigint ELSE (SELECT count(*) FROM uploads
                WHERE quota_key = \(owner) AND created_at >= \(since?.timeIntervalSince1970)::float8) END
        FROM uploads WHERE quota_key = \(owner) AND state = 'incomplete'
        """
    }

    static func usage(_ row: PostgresRow) throws -> OwnerUsage {
        let (open, bytes, recent) = try row.decode((Int64, Int64, Int64).self)
        return OwnerUsage(openUploads: Int(open), openBytes: bytes, recentCreations: Int(recent))
    }

    public func pendingBusinessResults(before date: Date, limit: Int) async throws(FerryError) -> [UploadRecord] {
        try await rows(
            """
            SELECT \(unescaped: Self.columns) FROM uploads WHERE business_status = 'pending' AND state = 'complete'
            AND coalesce(business_next_at, 0) <= \(date.timeIntervalSince1970) ORDER BY business_next_at LIMIT \(limit)
            """,
            "the catalog could not be read",
            Self.record
        )
    }

    public func holders(scope: String, sha256: String, length: Int64, limit: Int) async throws(FerryError) -> [UploadRecord] {
        try await rows(
            """
            SELECT \(unescaped: Self.columns) FROM uploads WHERE content_scope = \(scope) AND sha256 = \(sha256) AND length = \(length)
            AND state = 'complete' ORDER BY created_at, id LIMIT \(limit)
            """,
            "the catalog could not be read",
            Self.record
        )
    }

    /// Claims the heads of the (upload, webhook) streams that are due. `FOR UPDATE SKIP LOCKED`
    /// lets nodes claim side by side; a claimed event's later siblings wait behind it because it
    /// is still pending.
    public func claimDeliveries(now: Date, leaseUntil: Date, limit: Int) async throws(FerryError) -> [EventDelivery] {
        try await rows(
            """
            WITH due AS (
                SELECT event_id, destination FROM outbox o
                WHERE o.state = 'pending' AND o.next_attempt_at <= \(now.timeIntervalSince1970)
                AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.upload_id = o.upload_id AND p.destination = o.destination
                    AND p.state = 'pending' AND p.sequence < o.sequence)
                ORDER BY o.next_attempt_at LIMIT \(limit)
                FOR UPDATE SKIP LOCKED
            )
            UPDATE outbox SET next_attempt_at = \(leaseUntil.timeIntervalSince1970) FROM due
            WHERE outbox.event_id = due.event_id AND outbox.destination = due.destination
            RETURNING outbox.event_id, outbox.destination, outbox.upload_id, outbox.sequence, outbox.type, outbox.payload,
                outbox.created_at, outbox.state, outbox.attempts, outbox.next_attempt_at, outbox.last_error, outbox.delivered_at
            """,
            "the outbox could not be read",
            Self.delivery
        )
    }

    /// One transaction (one commit) for the outcomes of a claim's POSTs.
    public func recordDeliveries(_ records: [DeliveryRecord]) async throws(FerryError) {
        guard !records.isEmpty else { return }
        try await migrated.wait()
        do {
            try await client.withTransaction(logger: logger) { connection in
                for record in records {
                    let (state, next, error, delivered) = record.outcome.columns
                    try await connection.query(
                        """
                        UPDATE outbox SET state = \(state), attempts = \(Int32(record.attempts)),
                            next_attempt_at = coalesce(\(next)::float8, next_attempt_at), last_error = \(error), delivered_at = \(delivered)
                        WHERE event_id = \(record.eventID) AND destination = \(record.destination)
                        """,
                        logger: logger
                    )
                }
            }
        } catch {
            throw Self.wrap(error, "the outbox could not be updated")
        }
    }

    public func deliveries(of id: UploadID) async throws(FerryError) -> [EventDelivery] {
        try await rows(
            "SELECT \(unescaped: Self.deliveryColumns) FROM outbox WHERE upload_id = \(id.rawValue) ORDER BY sequence, destination",
            "the catalog could not be read",
            Self.delivery
        )
    }

    public func purgeDeliveries(before date: Date) async throws(FerryError) {
        _ = try await rows(
            "DELETE FROM outbox WHERE state <> 'pending' AND created_at < \(date.timeIntervalSince1970)",
            "the outbox could not be purged"
        ) { _ in () }
    }

    /// Runs `query` once the migrations are applied, reading every row it returns (which also
    /// hands the connection back to the pool). Errors become `FerryError`s saying `message`.
    func rows<T>(
        _ query: PostgresQuery,
        _ message: String,
        _ decode: (PostgresRow) throws -> T
    ) async throws(FerryError) -> [T] {
        try await migrated.wait()
        do {
            var results: [T] = []
            for try await row in try await client.query(query, logger: logger) {
                results.append(try decode(row))
            }
            return results
        } catch {
            throw Self.wrap(error, message)
        }
    }

    /// `rows(_:_:_:)` for a prepared statement: its rows as the statement decodes them.
    func rows<Statement: PostgresPreparedStatement>(
        _ statement: Statement,
        _ message: String
    ) async throws(FerryError) -> [Statement.Row] {
        try await migrated.wait()
        do {
            var results: [Statement.Row] = []
            for try await row in try await client.execute(statement, logger: logger) {
                results.append(row)
            }
            return results
        } catch {
            throw Self.wrap(error, message)
        }
    }
}
