import FerryCore
import Foundation
import PostgresNIO

/// Upload statistics in the shared database (the same tables and semantics as SQLite's), so
/// every node's requests add up in one record per upload.
extension PostgresCatalog: StatsStore {
    static let statisticsSchema: [PostgresQuery] = [
        """
        CREATE TABLE upload_stats (
            id TEXT PRIMARY KEY,
            scenario TEXT NOT NULL,
            owner TEXT,
            dialect TEXT NOT NULL,
            client TEXT NOT NULL,
            network TEXT NOT NULL,
            created_micros BIGINT NOT NULL,
            first_byte_at DOUBLE PRECISION,
            completed_at DOUBLE PRECISION,
            ended_at DOUBLE PRECISION,
            state TEXT NOT NULL,
            length BIGINT,
            bytes BIGINT NOT NULL DEFAULT 0,
            requests INTEGER NOT NULL DEFAULT 0,
            interrupted INTEGER NOT NULL DEFAULT 0,
            resumptions INTEGER NOT NULL DEFAULT 0,
            telemetry TEXT,
            last_request_at DOUBLE PRECISION,
            awaiting_resume BOOLEAN NOT NULL DEFAULT false
        )
        """,
        "CREATE INDEX upload_stats_created ON upload_stats (created_micros, id)",
        "CREATE INDEX upload_stats_active ON upload_stats (last_request_at) WHERE state = 'incomplete'",
        """
        CREATE TABLE upload_requests (
            n BIGSERIAL PRIMARY KEY,
            upload_id TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            method TEXT NOT NULL,
            start BIGINT NOT NULL,
            bytes BIGINT NOT NULL,
            outcome TEXT NOT NULL,
            seconds DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE INDEX upload_requests_upload ON upload_requests (upload_id, n)",
    ]

    static let statsColumns = """
        id, scenario, owner, dialect, client, network, created_micros, first_byte_at, completed_at, ended_at, state, length, \
        bytes, requests, interrupted, resumptions, telemetry, last_request_at, awaiting_resume, instant
        """

    public func apply(_ events: [StatsEvent]) async throws(FerryError) {
        try await migrated.wait()
        do {
            try await client.withTransaction(logger: logger) { connection in
                for event in events { try await StatsStatements.apply(event, connection, logger) }
            }
        } catch {
            throw Self.wrap(error, "the statistics could not be written")
        }
    }

    /// An upload's timeline keeps this many requests (the most recent).
    static let requestsKept = 200

    public func uploads(_ query: StatsQuery) async throws(FerryError) -> StatsPage {
        // Unset filters compare a column with itself; the cursor defaults to "after everything".
        let cursor = query.cursor ?? StatsCursor(createdMicros: .max, id: "~")
        let rows = try await rows(
            """
            SELECT \(unescaped: Self.statsColumns) FROM upload_stats
            WHERE (\(query.state?.rawValue)::text IS NULL OR state = \(query.state?.rawValue))
              AND (\(query.scenario)::text IS NULL OR scenario = \(query.scenario))
              AND (\(query.owner)::text IS NULL OR owner = \(query.owner))
              AND (\(query.network)::text IS NULL OR network = \(query.network))
              AND (\(query.dialect)::text IS NULL OR dialect = \(query.dialect))
              AND (\(query.client)::text IS NULL OR client = \(query.client))
              AND created_micros >= \(query.from.map(StatsCursor.micros) ?? .min)
              AND created_micros < \(query.to.map(StatsCursor.micros) ?? .max)
              AND (created_micros, id) < (\(cursor.createdMicros), \(cursor.id))
            ORDER BY created_micros DESC, id DESC LIMIT \(Int32(query.limit + 1))
            """,
            "the statistics could not be read",
            Self.stats
        )
        let page = Array(rows.prefix(query.limit))
        return StatsPage(uploads: page, next: rows.count > query.limit ? page.last.map(StatsCursor.init(after:)) : nil)
    }

    public func stats(of id: UploadID) async throws(FerryError) -> UploadStats? {
        try await rows(
            "SELECT \(unescaped: Self.statsColumns) FROM upload_stats WHERE id = \(id.rawValue)",
            "the statistics could not be read",
            Self.stats
        ).first
    }

    public func requests(of id: UploadID, limit: Int) async throws(FerryError) -> [RequestEntry] {
        try await rows(
            """
            SELECT at, method, start, bytes, outcome, seconds FROM (
                SELECT * FROM upload_requests WHERE upload_id = \(id.rawValue) ORDER BY n DESC LIMIT \(Int32(limit))) recent
            ORDER BY n
            """,
            "the statistics could not be read"
        ) { row in
            let (at, method, start, bytes, outcome, seconds) = try row.decode((Double, String, Int64, Int64, String, Double).self)
            return RequestEntry(upload: id, at: Date(timeIntervalSince1970: at), method: method, offset: start, bytes: bytes, outcome: outcome, seconds: seconds)
        }
    }

    public func aggregate(from: Date, to: Date, by dimensions: [StatsDimension]) async throws(FerryError) -> [StatsAggregate] {
        try await migrated.wait()
        var grouper = StatsGrouper(dimensions)
        do {
            let query: PostgresQuery = """
                SELECT \(unescaped: Self.statsColumns) FROM upload_stats
                WHERE created_micros >= \(StatsCursor.micros(from)) AND created_micros < \(StatsCursor.micros(to))
                """
            for try await row in try await client.query(query, logger: logger) {
                grouper.add(try Self.stats(row))
            }
        } catch {
            throw Self.wrap(error, "the statistics could not be read")
        }
        return grouper.aggregates
    }

    public func active(since: Date) async throws(FerryError) -> Int {
        try await rows(
            """
            SELECT count(*) FROM upload_stats WHERE state = 'incomplete' AND last_request_at >= \(since.timeIntervalSince1970)
            """,
            "the statistics could not be read"
        ) { row in Int(try row.decode(Int64.self)) }.first ?? 0
    }

    public func prune(before date: Date) async throws(FerryError) {
        let micros = StatsCursor.micros(date)
        _ = try await rows(
            "DELETE FROM upload_requests WHERE upload_id IN (SELECT id FROM upload_stats WHERE created_micros < \(micros))",
            "the statistics could not be pruned"
        ) { _ in () }
        _ = try await rows("DELETE FROM upload_stats WHERE created_micros < \(micros)", "the statistics could not be pruned") { _ in () }
        // Each timeline keeps its last `requestsKept` requests.
        _ = try await rows(
            """
            DELETE FROM upload_requests WHERE n IN (SELECT n FROM (
                SELECT n, row_number() OVER (PARTITION BY upload_id ORDER BY n DESC) AS position FROM upload_requests) ranked
            WHERE position > \(Int32(Self.requestsKept)))
            """,
            "the statistics could not be pruned"
        ) { _ in () }
    }

    static func stats(_ row: PostgresRow) throws -> UploadStats {
        let columns = try row.decode(
            (String, String, String?, String, String, String, Int64, Double?, Double?, Double?, String, Int64?, Int64, Int32, Int32, Int32, String?, Double?, Bool, Bool).self
        )
        guard let id = UploadID(columns.0), let state = StatsState(rawValue: columns.10) else {
            throw FerryError(.catalogFailure, "the catalog holds a malformed statistics row")
        }
        return UploadStats(
            id: id, scenario: columns.1, owner: columns.2, info: RequestInfo(dialect: columns.3, client: columns.4, network: columns.5),
            createdAt: Date(timeIntervalSince1970: Double(columns.6) / 1_000_000),
            firstByteAt: columns.7.map(Date.init(timeIntervalSince1970:)), completedAt: columns.8.map(Date.init(timeIntervalSince1970:)),
            endedAt: columns.9.map(Date.init(timeIntervalSince1970:)), state: state, length: columns.11, bytes: columns.12,
            requests: Int(columns.13), interrupted: Int(columns.14), resumptions: Int(columns.15), telemetry: columns.16,
            lastRequestAt: columns.17.map(Date.init(timeIntervalSince1970:)), awaitingResume: columns.18, instant: columns.19
        )
    }
}
