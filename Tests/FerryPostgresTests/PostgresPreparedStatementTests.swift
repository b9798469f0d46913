import FerryCore
@testable import FerryPostgres
import Foundation
import Logging
import PostgresNIO
import Testing

/// The hot statements are prepared statements: prepared once per pooled connection, reused on
/// it, and prepared again on the connection that replaces one the server dropped.
@Suite(
    "Postgres prepared statements",
    .enabled(if: LivePostgres.configured, "FERRY_TEST_POSTGRES_URL is not set (a database the tests may create schemas in)")
)
struct PostgresPreparedStatementTests {
    static let hot: Set<String> = [
        InsertUploadStatement.name, UpdateUploadStatement.name, ReleaseLeasesStatement.name,
        StatsStatements.CreatedStatement.name, StatsStatements.TimelineStatement.name, GetUploadStatement.name,
    ]

    /// What a small creation-with-upload writes: the insert with its lease, the completing
    /// update under that fence, the release, and the statistics.
    static func createAndComplete(_ catalog: PostgresCatalog) async throws -> UploadID {
        var record = UploadRecord(id: .random(), length: 10, createdAt: Date(timeIntervalSince1970: 1_800_000_000))
        let lease = PostgresCatalog.NewLease(holder: "node", seconds: 60)
        let token = try #require(try await catalog.insert(record, events: [], claim: nil, lease: lease))
        record.offset = 10
        record.state = .complete
        try await catalog.update(record, events: [], fence: LeaseFence(token: token))
        try await PostgresUploadLocker.release([.init(id: record.id, fence: token)], in: catalog)
        let entry = RequestEntry(upload: record.id, at: record.createdAt, method: "POST", offset: 0, bytes: 10, outcome: "completed", seconds: 0.01)
        let stats = UploadStats(
            id: record.id, scenario: record.scenario, owner: nil, info: RequestInfo(dialect: "tus", client: "test", network: "unknown"),
            createdAt: record.createdAt, state: .incomplete, length: 10
        )
        try await catalog.apply([.created(stats), .timeline(entry)])
        #expect(try await catalog.get(record.id)?.offset == 10)
        return record.id
    }

    /// The server process behind the connection the pool lends now, and the statements
    /// prepared on it (name: generic plans, custom plans).
    static func preparedStatements(_ catalog: PostgresCatalog) async throws -> (pid: Int32, plans: [String: (Int64, Int64)]) {
        try await catalog.client.withConnection { connection in
            var pid: Int32 = 0
            for try await value in try await connection.query("SELECT pg_backend_pid()", logger: catalog.logger).decode(Int32.self) {
                pid = value
            }
            var plans: [String: (Int64, Int64)] = [:]
            let rows = try await connection.query(
                "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements",
                logger: catalog.logger
            )
            for try await (name, generic, custom) in rows.decode((String, Int64, Int64).self) {
                plans[name] = (generic, custom)
            }
            return (pid, plans)
        }
    }

    @Test func theHotStatementsArePreparedOnceAndPlannedGenerically() async throws {
        try await LivePostgres.with { database in
            let catalog = try await database.catalog(maximumConnections: 1)
            for _ in 0..<12 { _ = try await Self.createAndComplete(catalog) }
            let (_, plans) = try await Self.preparedStatements(catalog)
            #expect(Self.hot.isSubset(of: Set(plans.keys)), "prepared: \(plans.keys.sorted())")
            // Past PostgreSQL's first five custom plans, a cached generic plan: no planning at all.
            // Not for the release, whose custom plans know how many leases go: each one costs less
            // than the generic plan, so PostgreSQL keeps planning it (once per batch of releases).
            for name in Self.hot {
                let (generic, custom) = plans[name] ?? (0, 0)
                #expect(generic + custom == 12, "\(name): each call one execution of the one statement")
                if name != ReleaseLeasesStatement.name {
                    #expect(generic > 0, "\(name): \(generic) generic, \(custom) custom plans")
                }
            }
        }
    }

    @Test func statementsArePreparedAgainOnTheConnectionThatReplacesADroppedOne() async throws {
        try await LivePostgres.with { database in
            let catalog = try await database.catalog(maximumConnections: 1)
            _ = try await Self.createAndComplete(catalog)
            let (dropped, before) = try await Self.preparedStatements(catalog)
            #expect(Self.hot.isSubset(of: Set(before.keys)))
            try await database.terminate(backend: dropped)
            // The pool may lend the dropped connection once more before it notices.
            var id: UploadID?
            for _ in 0..<50 where id == nil {
                id = try? await Self.createAndComplete(catalog)
                if id == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            let created = try #require(id, "the catalog works again on a new connection")
            #expect(try await catalog.get(created)?.offset == 10)
            #expect(try await catalog.requests(of: created, limit: 10).count == 1)
            let (pid, after) = try await Self.preparedStatements(catalog)
            #expect(pid != dropped)
            #expect(Self.hot.isSubset(of: Set(after.keys)), "prepared again: \(after.keys.sorted())")
        }
    }

    /// Many calls at once on a small pool: calls that find a statement being prepared on their
    /// connection wait for it, and every connection prepares its own.
    @Test func concurrentCallsShareThePoolsPreparedStatements() async throws {
        try await LivePostgres.with { database in
            let catalog = try await database.catalog(maximumConnections: 4)
            let ids = try await withThrowingTaskGroup(of: UploadID.self) { group in
                for _ in 0..<64 { group.addTask { try await Self.createAndComplete(catalog) } }
                return try await group.reduce(into: [UploadID]()) { $0.append($1) }
            }
            #expect(Set(ids).count == 64)
            for id in ids {
                let record = try await catalog.get(id)
                #expect(record?.offset == 10 && record?.state == .complete)
            }
            // Every lease was released: another holder can claim each at once.
            let free = try await catalog.rows(
                "SELECT count(*) FROM upload_leases WHERE holder IS NULL",
                "the leases could not be read"
            ) { row in try row.decode(Int64.self) }
            #expect(free == [64])
        }
    }

    /// The optional steps of the one insert statement: a final's parts, no lease, events.
    @Test func anInsertWithoutALeaseWritesPartsAndEventsAndNoLease() async throws {
        try await LivePostgres.with { database in
            let catalog = try await database.catalog()
            let partials = [UploadID.random(), UploadID.random()]
            for partial in partials {
                try await catalog.insert(
                    UploadRecord(id: partial, length: 1, concat: .partial, createdAt: Date(timeIntervalSince1970: 1_800_000_000)),
                    events: [], claim: nil
                )
            }
            let final = UploadRecord(id: .random(), length: nil, concat: .final(partials), createdAt: Date(timeIntervalSince1970: 1_800_000_000))
            let event = OutboxEvent(
                uploadID: final.id, sequence: 1, type: .created, destination: "hook", payload: "{}", createdAt: Date(timeIntervalSince1970: 1_800_000_000)
            )
            let fence = try await catalog.insert(final, events: [event], claim: nil, lease: nil)
            #expect(fence == nil)
            #expect(try await catalog.finals(referencing: partials[1]) == [final.id])
            #expect(try await catalog.deliveries(of: final.id).map(\.event.id) == [event.id])
            let leases = try await catalog.rows(
                "SELECT count(*) FROM upload_leases WHERE upload_id = \(final.id.rawValue)",
                "the leases could not be read"
            ) { row in try row.decode(Int64.self) }
            #expect(leases == [0])
        }
    }
}
