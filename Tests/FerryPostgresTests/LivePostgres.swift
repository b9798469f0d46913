@testable import FerryPostgres
import Foundation
import Logging
import PostgresNIO
import Synchronization

/// The live database named by `FERRY_TEST_POSTGRES_URL`, shared by every test: each test works
/// in schemas of its own, created for it and dropped after it, so tests and runs stay apart.
final class LivePostgres: Sendable {
    static let url = ProcessInfo.processInfo.environment["FERRY_TEST_POSTGRES_URL"]
    static var configured: Bool { url != nil }

    let base: PostgresCatalog.Configuration
    /// Creates and drops the scratch schemas.
    private let admin: PostgresClient
    /// Catalogs to run until the test ends.
    private let runs: AsyncStream<PostgresCatalog>.Continuation
    private let schemas = Mutex<[String]>([])
    private let logger = Logger(label: "ferry-postgres-test")

    private init(base: PostgresCatalog.Configuration, runs: AsyncStream<PostgresCatalog>.Continuation) {
        self.base = base
        self.runs = runs
        admin = PostgresClient(
            configuration: .init(
                host: base.host,
                port: base.port,
                username: base.username,
                password: base.password,
                database: base.database,
                tls: .disable
            )
        )
    }

    /// A new empty schema, dropped (with everything in it) when the test ends.
    func newSchema() async throws -> String {
        let name = "ferry_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        schemas.withLock { $0.append(name) }
        // DDL takes no bound identifiers; the name is ours, [a-z0-9_] only.
        _ = try await admin.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA \(name)")).collect()
        return name
    }

    /// A running catalog in `schema` (a new one when nil), with a pool of `maximumConnections`
    /// (the default when nil).
    func catalog(schema: String? = nil, maximumConnections: Int? = nil) async throws -> PostgresCatalog {
        var configuration = base
        if let maximumConnections { configuration.maximumConnections = maximumConnections }
        if let schema {
            configuration.schema = schema
        } else {
            configuration.schema = try await newSchema()
        }
        let catalog = try PostgresCatalog(configuration: configuration, logger: logger)
        runs.yield(catalog)
        return catalog
    }

    /// How many migrations `schema` records.
    func migrationCount(schema: String) async throws -> Int {
        let rows = try await admin.query(PostgresQuery(unsafeSQL: "SELECT count(*) FROM \(schema).ferry_migrations"))
        var count = 0
        for try await value in rows.decode(Int.self) { count = value }
        return count
    }

    /// A new schema holding the first `count` migrations only, as an older release left it.
    func schema(migratedTo count: Int) async throws -> String {
        let schema = try await newSchema()
        try await admin.withConnection { connection in
            _ = try await connection.query(PostgresQuery(unsafeSQL: "SET search_path TO \(schema)"), logger: logger).collect()
            _ = try await connection.query(
                "CREATE TABLE ferry_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                logger: logger
            ).collect()
            for migration in PostgresCatalog.migrations.prefix(count) {
                for statement in migration.statements { _ = try await connection.query(statement, logger: logger).collect() }
                _ = try await connection.query(
                    "INSERT INTO ferry_migrations (version, name) VALUES (\(migration.version), \(migration.name))", logger: logger
                ).collect()
            }
            _ = try await connection.query("RESET search_path", logger: logger).collect()
        }
        return schema
    }

    /// Ends the server process `pid` (a connection of some catalog's pool), as a restart or a
    /// network failure would.
    func terminate(backend pid: Int32) async throws {
        _ = try await admin.query("SELECT pg_terminate_backend(\(pid))").collect()
    }

    /// Runs `query` in `schema` (the admin's connection, outside any catalog).
    func execute(_ sql: String, in schema: String) async throws {
        try await admin.withConnection { connection in
            _ = try await connection.query(PostgresQuery(unsafeSQL: "SET search_path TO \(schema)"), logger: logger).collect()
            _ = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).collect()
            _ = try await connection.query("RESET search_path", logger: logger).collect()
        }
    }

    /// Runs `body` with the database; afterwards drops its schemas and stops its catalogs.
    static func with(_ body: (LivePostgres) async throws -> Void) async throws {
        let base = try PostgresCatalog.Configuration(url: url ?? "")
        let (stream, runs) = AsyncStream.makeStream(of: PostgresCatalog.self)
        let database = LivePostgres(base: base, runs: runs)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await database.admin.run() }
            group.addTask {
                try await withThrowingDiscardingTaskGroup { catalogs in
                    for await catalog in stream {
                        catalogs.addTask { try await catalog.run() }
                    }
                }
            }
            var failure: (any Error)?
            do { try await body(database) } catch { failure = error }
            for schema in database.schemas.withLock({ $0 }) {
                _ = try? await database.admin.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE")).collect()
            }
            runs.finish()
            group.cancelAll()
            if let failure { throw failure }
        }
    }
}
