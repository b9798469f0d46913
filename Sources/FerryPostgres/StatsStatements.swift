import FerryCore
import Logging
import PostgresNIO

/// The statistics writes (`PostgresCatalog.apply(_:)`), one prepared statement per kind of
/// event (see `UploadStatements`): every upload writes at least its record and a request.
enum StatsStatements {
    /// The statement that writes `event`, on `connection` (inside the batch's transaction).
    static func apply(_ event: StatsEvent, _ connection: PostgresConnection, _ logger: Logger) async throws {
        switch event {
        case .created(let stats): try await run(CreatedStatement(stats: stats), connection, logger)
        case .request(let entry): try await run(RequestStatement(entry: entry), connection, logger)
        case .timeline(let entry): try await run(TimelineStatement(entry: entry), connection, logger)
        case .completed(let id, let at, let length):
            try await run(CompletedStatement(id: id.rawValue, at: at.timeIntervalSince1970, length: length), connection, logger)
        case .ended(let id, let at, let state):
            try await run(EndedStatement(id: id.rawValue, at: at.timeIntervalSince1970, state: state.rawValue), connection, logger)
        case .telemetry(let id, let json): try await run(TelemetryStatement(id: id.rawValue, json: json), connection, logger)
        case .instant(let id): try await run(InstantStatement(id: id.rawValue), connection, logger)
        }
    }

    private static func run<Statement: PostgresPreparedStatement>(
        _ statement: Statement,
        _ connection: PostgresConnection,
        _ logger: Logger
    ) async throws where Statement.Row == () {
        // Read to its end (it returns no rows): the statement has completed then. (postgres-nio's
        // overload that answers the command tag reads it before the stream ends, and traps.)
        for try await _ in try await connection.execute(statement, logger: logger) {}
    }

    /// The whole record: the recorder may have folded later events of the batch into it.
    struct CreatedStatement: PostgresPreparedStatement {
        typealias Row = ()
        static let name = "ferry_stats_created"
        static let sql = """
            INSERT INTO upload_stats (id, scenario, owner, dialect, client, network, created_micros, first_byte_at, completed_at,
                ended_at, state, length, bytes, requests, interrupted, resumptions, telemetry, last_request_at, awaiting_resume, instant)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
            ON CONFLICT (id) DO NOTHING
            """
        static let bindingDataTypes: [PostgresDataType] = [
            .text, .text, .text, .text, .text, .text, .int8, .float8, .float8,
            .float8, .text, .int8, .int8, .int4, .int4, .int4, .text, .float8, .bool, .bool,
        ]

        let stats: UploadStats

        func makeBindings() -> PostgresBindings {
            var bindings = PostgresBindings(capacity: Self.bindingDataTypes.count)
            bindings.append(stats.id.rawValue)
            bindings.append(stats.scenario)
            bindings.append(stats.owner)
            bindings.append(stats.info.dialect)
            bindings.append(stats.info.client)
            bindings.append(stats.info.network)
            bindings.append(StatsCursor.micros(stats.createdAt))
            bindings.append(stats.firstByteAt?.timeIntervalSince1970)
            bindings.append(stats.completedAt?.timeIntervalSince1970)
            bindings.append(stats.endedAt?.timeIntervalSince1970)
            bindings.append(stats.state.rawValue)
            bindings.append(stats.length)
            bindings.append(stats.bytes)
            bindings.append(Int32(clamping: stats.requests))
            bindings.append(Int32(clamping: stats.interrupted))
            bindings.append(Int32(clamping: stats.resumptions))
            bindings.append(stats.telemetry)
            bindings.append(stats.lastRequestAt?.timeIntervalSince1970)
            bindings.append(stats.awaitingResume)
            bindings.append(stats.instant)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {}
    }

    /// A request on a known upload: the record's counters, and its timeline row only if the
    /// upload is known (one statement).
    struct RequestStatement: PostgresPreparedStatement {
        typealias Row = ()
        static let name = "ferry_stats_request"
        // $1 id, $2 at, $3 bytes, $4 offset, $5 append, $6 interrupted, $7 method, $8 outcome, $9 seconds.
        static let sql = """
            WITH updated AS (
                UPDATE upload_stats SET requests = requests + 1, bytes = bytes + $3,
                    last_request_at = greatest(coalesce(last_request_at, $2), $2),
                    first_byte_at = CASE WHEN $3 > 0 AND first_byte_at IS NULL THEN $2 ELSE first_byte_at END,
                    resumptions = resumptions + CASE WHEN $5 AND $4 > 0 AND awaiting_resume THEN 1 ELSE 0 END,
                    interrupted = interrupted + CASE WHEN $5 AND $6 THEN 1 ELSE 0 END,
                    awaiting_resume = CASE WHEN $5 THEN $6 ELSE awaiting_resume END
                WHERE id = $1
                RETURNING id
            )
            INSERT INTO upload_requests (upload_id, at, method, start, bytes, outcome, seconds)
            SELECT id, $2, $7, $4, $3, $8, $9 FROM updated
            """
        static let bindingDataTypes: [PostgresDataType] = [.text, .float8, .int8, .int8, .bool, .bool, .text, .text, .float8]

        let entry: RequestEntry

        func makeBindings() -> PostgresBindings {
            var bindings = PostgresBindings(capacity: Self.bindingDataTypes.count)
            bindings.append(entry.upload.rawValue)
            bindings.append(entry.at.timeIntervalSince1970)
            bindings.append(entry.bytes)
            bindings.append(entry.offset)
            bindings.append(entry.isAppend)
            bindings.append(entry.wasInterrupted)
            bindings.append(entry.method)
            bindings.append(entry.outcome)
            bindings.append(entry.seconds)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {}
    }

    /// A timeline row alone, for an upload whose record already counts the request.
    struct TimelineStatement: PostgresPreparedStatement {
        typealias Row = ()
        static let name = "ferry_stats_timeline"
        static let sql = """
            INSERT INTO upload_requests (upload_id, at, method, start, bytes, outcome, seconds)
            SELECT id, $2, $3, $4, $5, $6, $7 FROM upload_stats WHERE id = $1
            """
        static let bindingDataTypes: [PostgresDataType] = [.text, .float8, .text, .int8, .int8, .text, .float8]

        let entry: RequestEntry

        func makeBindings() -> PostgresBindings {
            var bindings = PostgresBindings(capacity: Self.bindingDataTypes.count)
            bindings.append(entry.upload.rawValue)
            bindings.append(entry.at.timeIntervalSince1970)
            bindings.append(entry.method)
            bindings.append(entry.offset)
            bindings.append(entry.bytes)
            bindings.append(entry.outcome)
            bindings.append(entry.seconds)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {}
    }

    struct CompletedStatement: PostgresPreparedStatement {
        typealias Row = ()
        static let name = "ferry_stats_completed"
        static let sql = "UPDATE upload_stats SET state = 'complete', completed_at = $2, length = $3 WHERE id = $1"
        static let bindingDataTypes: [PostgresDataType] = [.text, .float8, .int8]

        let id: String
        let at: Double
        let length: Int64

        func makeBindings() -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 3)
            bindings.append(id)
            bindings.append(at)
            bindings.append(length)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {}
    }

    struct InstantStatement: PostgresPreparedStatement {
        typealias Row = ()
        static let name = "ferry_stats_instant"
        static let sql = "UPDATE upload_stats SET instant = true WHERE id = $1"
        static let bindingDataTypes: [PostgresDataType] = [.text]

        let id: String

        func makeBindings() -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 1)
            bindings.append(id)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {}
    }

    struct EndedStatement: PostgresPreparedStatement {
        typealias Row = ()
        static let name = "ferry_stats_ended"
        static let sql = "UPDATE upload_stats SET state = $3, ended_at = $2 WHERE id = $1 AND state = 'incomplete'"
        static let bindingDataTypes: [PostgresDataType] = [.text, .float8, .text]

        let id: String
        let at: Double
        let state: String

        func makeBindings() -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 3)
            bindings.append(id)
            bindings.append(at)
            bindings.append(state)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {}
    }

    struct TelemetryStatement: PostgresPreparedStatement {
        typealias Row = ()
        static let name = "ferry_stats_telemetry"
        static let sql = "UPDATE upload_stats SET telemetry = $2 WHERE id = $1"
        static let bindingDataTypes: [PostgresDataType] = [.text, .text]

        let id: String
        let json: String

        func makeBindings() -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 2)
            bindings.append(id)
            bindings.append(json)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {}
    }
}
