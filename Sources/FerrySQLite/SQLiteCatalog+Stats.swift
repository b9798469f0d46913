import FerryCore
import Foundation
import GRDB

/// Upload statistics in the catalog's database, in tables of their own (`upload_stats`, one row
/// per upload; `upload_requests`, its recent requests).
extension SQLiteCatalog: StatsStore {
    static let statisticsSchema = """
        CREATE TABLE upload_stats (
            id TEXT PRIMARY KEY NOT NULL,
            scenario TEXT NOT NULL,
            owner TEXT,
            dialect TEXT NOT NULL,
            client TEXT NOT NULL,
            network TEXT NOT NULL,
            created_micros INTEGER NOT NULL,
            first_byte_at REAL,
            completed_at REAL,
            ended_at REAL,
            state TEXT NOT NULL,
            length INTEGER,
            bytes INTEGER NOT NULL DEFAULT 0,
            requests INTEGER NOT NULL DEFAULT 0,
            interrupted INTEGER NOT NULL DEFAULT 0,
            resumptions INTEGER NOT NULL DEFAULT 0,
            telemetry TEXT,
            last_request_at REAL,
            awaiting_resume INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX upload_stats_created ON upload_stats(created_micros, id);
        CREATE INDEX upload_stats_active ON upload_stats(last_request_at) WHERE state = 'incomplete';
        CREATE TABLE upload_requests (
            n INTEGER PRIMARY KEY AUTOINCREMENT,
            upload_id TEXT NOT NULL,
            at REAL NOT NULL,
            method TEXT NOT NULL,
            start INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            seconds REAL NOT NULL
        );
        CREATE INDEX upload_requests_upload ON upload_requests(upload_id, n);
        """

    /// An upload's timeline keeps this many requests (the most recent).
    static let requestsKept = 200

    public func apply(_ events: [StatsEvent]) async throws(FerryError) {
        do {
            try await pool.write { db in
                for event in events { try Self.apply(event, db) }
            }
        } catch {
            throw Self.wrap(error, "the statistics could not be written")
        }
    }

    static func apply(_ event: StatsEvent, _ db: Database) throws {
        switch event {
        case .created(let stats):
            // The whole record: the recorder may have folded later events of the batch into it.
            try db.cachedStatement(
                sql: """
                    INSERT OR IGNORE INTO upload_stats (id, scenario, owner, dialect, client, network, created_micros, first_byte_at,
                        completed_at, ended_at, state, length, bytes, requests, interrupted, resumptions, telemetry, last_request_at,
                        awaiting_resume, instant)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [
                stats.id.rawValue, stats.scenario, stats.owner, stats.info.dialect, stats.info.client, stats.info.network,
                StatsCursor.micros(stats.createdAt), stats.firstByteAt?.timeIntervalSince1970, stats.completedAt?.timeIntervalSince1970,
                stats.endedAt?.timeIntervalSince1970, stats.state.rawValue, stats.length, stats.bytes, stats.requests, stats.interrupted,
                stats.resumptions, stats.telemetry, stats.lastRequestAt?.timeIntervalSince1970, stats.awaitingResume, stats.instant,
            ])
        case .request(let entry):
            let append = entry.isAppend
            try db.cachedStatement(
                sql: """
                    UPDATE upload_stats SET requests = requests + 1, bytes = bytes + ?1,
                        last_request_at = max(coalesce(last_request_at, ?2), ?2),
                        first_byte_at = CASE WHEN ?1 > 0 AND first_byte_at IS NULL THEN ?2 ELSE first_byte_at END,
                        resumptions = resumptions + CASE WHEN ?3 AND ?4 > 0 AND awaiting_resume THEN 1 ELSE 0 END,
                        interrupted = interrupted + CASE WHEN ?3 AND ?5 THEN 1 ELSE 0 END,
                        awaiting_resume = CASE WHEN ?3 THEN ?5 ELSE awaiting_resume END
                    WHERE id = ?6
                    """
            ).execute(arguments: [entry.bytes, entry.at.timeIntervalSince1970, append, entry.offset, entry.wasInterrupted, entry.upload.rawValue])
            guard db.changesCount > 0 else { return }
            try insertTimeline(entry, db)
        case .timeline(let entry):
            try insertTimeline(entry, db)
        case .completed(let id, let at, let length):
            try db.cachedStatement(sql: "UPDATE upload_stats SET state = 'complete', completed_at = ?, length = ? WHERE id = ?")
                .execute(arguments: [at.timeIntervalSince1970, length, id.rawValue])
        case .ended(let id, let at, let state):
            try db.cachedStatement(sql: "UPDATE upload_stats SET state = ?, ended_at = ? WHERE id = ? AND state = 'incomplete'")
                .execute(arguments: [state.rawValue, at.timeIntervalSince1970, id.rawValue])
        case .telemetry(let id, let json):
            try db.cachedStatement(sql: "UPDATE upload_stats SET telemetry = ? WHERE id = ?").execute(arguments: [json, id.rawValue])
        case .instant(let id):
            try db.cachedStatement(sql: "UPDATE upload_stats SET instant = 1 WHERE id = ?").execute(arguments: [id.rawValue])
        }
    }

    /// A timeline row, for a known upload only. Timelines are cut to `requestsKept` when pruning.
    static func insertTimeline(_ entry: RequestEntry, _ db: Database) throws {
        try db.cachedStatement(
            sql: """
                INSERT INTO upload_requests (upload_id, at, method, start, bytes, outcome, seconds)
                SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS (SELECT 1 FROM upload_stats WHERE id = ?1)
                """
        ).execute(arguments: [entry.upload.rawValue, entry.at.timeIntervalSince1970, entry.method, entry.offset, entry.bytes, entry.outcome, entry.seconds])
    }

    public func uploads(_ query: StatsQuery) async throws(FerryError) -> StatsPage {
        var clauses: [String] = []
        var arguments = StatementArguments()
        func add(_ clause: String, _ values: [any DatabaseValueConvertible]) {
            clauses.append(clause)
            arguments += StatementArguments(values)
        }
        if let state = query.state { add("state = ?", [state.rawValue]) }
        if let scenario = query.scenario { add("scenario = ?", [scenario]) }
        if let owner = query.owner { add("owner = ?", [owner]) }
        if let network = query.network { add("network = ?", [network]) }
        if let dialect = query.dialect { add("dialect = ?", [dialect]) }
        if let client = query.client { add("client = ?", [client]) }
        if let from = query.from { add("created_micros >= ?", [StatsCursor.micros(from)]) }
        if let to = query.to { add("created_micros < ?", [StatsCursor.micros(to)]) }
        if let cursor = query.cursor { add("(created_micros, id) < (?, ?)", [cursor.createdMicros, cursor.id]) }
        let filter = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
        let limit = query.limit
        let sql = "SELECT * FROM upload_stats \(filter) ORDER BY created_micros DESC, id DESC LIMIT \(limit + 1)"
        let frozen = arguments
        let rows = try await read { db in try Row.fetchAll(db, sql: sql, arguments: frozen).map(Self.stats) }
        let page = Array(rows.prefix(limit))
        return StatsPage(uploads: page, next: rows.count > limit ? page.last.map(StatsCursor.init(after:)) : nil)
    }

    public func stats(of id: UploadID) async throws(FerryError) -> UploadStats? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM upload_stats WHERE id = ?", arguments: [id.rawValue]).map(Self.stats)
        }
    }

    public func requests(of id: UploadID, limit: Int) async throws(FerryError) -> [RequestEntry] {
        try await read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT * FROM (SELECT * FROM upload_requests WHERE upload_id = ? ORDER BY n DESC LIMIT ?) ORDER BY n",
                arguments: [id.rawValue, limit]
            ).map { row in
                RequestEntry(
                    upload: id, at: Date(timeIntervalSince1970: row["at"]), method: row["method"], offset: row["start"],
                    bytes: row["bytes"], outcome: row["outcome"], seconds: row["seconds"]
                )
            }
        }
    }

    public func aggregate(from: Date, to: Date, by dimensions: [StatsDimension]) async throws(FerryError) -> [StatsAggregate] {
        try await read { db in
            var grouper = StatsGrouper(dimensions)
            let rows = try Row.fetchCursor(
                db,
                sql: "SELECT * FROM upload_stats WHERE created_micros >= ? AND created_micros < ?",
                arguments: [StatsCursor.micros(from), StatsCursor.micros(to)]
            )
            while let row = try rows.next() { grouper.add(try Self.stats(row)) }
            return grouper.aggregates
        }
    }

    public func active(since: Date) async throws(FerryError) -> Int {
        try await read { db in
            try Int.fetchOne(
                db,
                sql: "SELECT COUNT(*) FROM upload_stats WHERE state = 'incomplete' AND last_request_at >= ?",
                arguments: [since.timeIntervalSince1970]
            ) ?? 0
        }
    }

    public func prune(before date: Date) async throws(FerryError) {
        do {
            try await pool.write { db in
                let micros = StatsCursor.micros(date)
                try db.execute(
                    sql: "DELETE FROM upload_requests WHERE upload_id IN (SELECT id FROM upload_stats WHERE created_micros < ?)",
                    arguments: [micros]
                )
                try db.execute(sql: "DELETE FROM upload_stats WHERE created_micros < ?", arguments: [micros])
                // Each timeline keeps its last `requestsKept` requests.
                try db.execute(
                    sql: """
                        DELETE FROM upload_requests WHERE n IN (SELECT n FROM (
                            SELECT n, row_number() OVER (PARTITION BY upload_id ORDER BY n DESC) AS position FROM upload_requests)
                        WHERE position > ?)
                        """,
                    arguments: [Self.requestsKept]
                )
            }
        } catch {
            throw Self.wrap(error, "the statistics could not be pruned")
        }
    }

    static func stats(_ row: Row) throws -> UploadStats {
        guard let id = UploadID(row["id"] as String), let state = StatsState(rawValue: row["state"]) else {
            throw FerryError(.catalogFailure, "the catalog holds a malformed statistics row")
        }
        func date(_ column: String) -> Date? { (row[column] as Double?).map(Date.init(timeIntervalSince1970:)) }
        return UploadStats(
            id: id, scenario: row["scenario"], owner: row["owner"],
            info: RequestInfo(dialect: row["dialect"], client: row["client"], network: row["network"]),
            createdAt: Date(timeIntervalSince1970: Double(row["created_micros"] as Int64) / 1_000_000),
            firstByteAt: date("first_byte_at"), completedAt: date("completed_at"), endedAt: date("ended_at"), state: state,
            length: row["length"], bytes: row["bytes"], requests: row["requests"], interrupted: row["interrupted"],
            resumptions: row["resumptions"], telemetry: row["telemetry"], lastRequestAt: date("last_request_at"),
            awaitingResume: row["awaiting_resume"], instant: row["instant"]
        )
    }
}
