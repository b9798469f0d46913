import FerryCore
import FerryPostgres
import FerryTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Testing

/// `PostgresCatalog` against the database named by `FERRY_TEST_POSTGRES_URL`, e.g.
/// `postgres://ferry:ferry@127.0.0.1:5432/ferry` (the role must be allowed to create schemas).
@Suite(
    "Postgres catalog against a live database",
    .enabled(if: LivePostgres.configured, "FERRY_TEST_POSTGRES_URL is not set (a database the tests may create schemas in)")
)
struct PostgresCatalogLiveTests {
    @Test(arguments: UploadCatalogConformance.checks)
    func conformance(_ check: ConformanceCheck<any FullCatalog>) async throws {
        try await LivePostgres.with { database in
            try await check.run(try await database.catalog())
        }
    }

    @Test(arguments: StatsStoreConformance.checks)
    func statisticsConformance(_ check: ConformanceCheck<any StatsStore>) async throws {
        try await LivePostgres.with { database in
            try await check.run(try await database.catalog())
        }
    }

    /// Several nodes starting at once against a fresh database migrate it once, and then share it.
    @Test func nodesMigrateConcurrentlyAndShareRecords() async throws {
        try await LivePostgres.with { database in
            let schema = try await database.newSchema()
            let nodes = try await [database.catalog(schema: schema), database.catalog(schema: schema), database.catalog(schema: schema)]
            var record = UploadRecord(id: .random(), length: 5, createdAt: Date(timeIntervalSince1970: 1_800_000_000))
            // Each call waits for its own node's migrations; all three race on the fresh schema.
            let id = record.id
            try await withThrowingTaskGroup { group in
                for node in nodes { group.addTask { _ = try await node.get(id) } }
                try await group.waitForAll()
            }
            #expect(try await database.migrationCount(schema: schema) == 10)
            try await nodes[0].insert(record)
            record.offset = 3
            try await nodes[1].update(record, events: [], fence: nil)
            #expect(try await nodes[2].get(record.id) == record)

            // A node restarting later finds the schema current and changes nothing.
            let restarted = try await database.catalog(schema: schema)
            #expect(try await restarted.get(record.id) == record)
            #expect(try await database.migrationCount(schema: schema) == 10)
        }
    }

    /// A database an older release migrated to 5 gets migrations 6 to 9 at start: its uploads read
    /// back with the network `unknown` and no first byte, and new values are kept from then on.
    @Test func migration6KeepsExistingUploads() async throws {
        try await LivePostgres.with { database in
            let schema = try await database.schema(migratedTo: 5)
            let id = UploadID.random()
            try await database.execute(
                """
                INSERT INTO uploads (id, length, "offset", metadata, concat, state, created_at, updated_at, scenario, owner, quota_key)
                VALUES ('\(id.rawValue)', 10, 4, '', 'none', 'incomplete', 1800000000, 1800000001, 'voice', 'alice', 'sub:alice')
                """,
                in: schema
            )
            let catalog = try await database.catalog(schema: schema)
            var record = try #require(try await catalog.get(id))
            #expect(record.offset == 4 && record.scenario == "voice" && record.quotaKey == "sub:alice")
            #expect(record.network == "unknown" && record.firstByteAt == nil)
            #expect(try await database.migrationCount(schema: schema) == 10)
            record.firstByteAt = Date(timeIntervalSince1970: 1_800_000_002)
            try await catalog.update(record, events: [], fence: nil)
            #expect(try await catalog.get(id) == record)
        }
    }

    /// A database at migration 7 gets the `reserved_to` column and a `ferry_locked_usage` that
    /// counts it: a deferred upload's held room then refuses a claimed insert it leaves no room for.
    @Test func migration8CountsHeldRoom() async throws {
        try await LivePostgres.with { database in
            let schema = try await database.schema(migratedTo: 7)
            let id = UploadID.random()
            try await database.execute(
                """
                INSERT INTO uploads (id, length, "offset", metadata, concat, state, created_at, updated_at, scenario, owner, quota_key)
                VALUES ('\(id.rawValue)', NULL, 4, '', 'none', 'incomplete', 1800000000, 1800000001, 'voice', 'alice', 'sub:alice')
                """,
                in: schema
            )
            let catalog = try await database.catalog(schema: schema)
            var record = try #require(try await catalog.get(id))
            #expect(record.reservedTo == nil && record.offset == 4)
            #expect(try await database.migrationCount(schema: schema) == 10)
            record.reservedTo = 50
            try await catalog.update(record, events: [], fence: nil)
            #expect(try await catalog.usage(of: "sub:alice", since: nil).openBytes == 50)
            let claim = QuotaClaim(owner: "sub:alice", quotas: Quotas(openBytes: 60), bytes: 20, creating: true, windowStart: .distantPast)
            let refused = await #expect(throws: FerryError.self) {
                try await catalog.insert(UploadRecord(id: .random(), length: 20, createdAt: Date(), owner: "alice"), events: [], claim: claim)
            }
            #expect(refused?.code == .quotaExceeded, "the function counts the held room: 50 + 20 > 60")
            record.reservedTo = nil
            try await catalog.update(record, events: [], fence: nil)
            try await catalog.insert(UploadRecord(id: .random(), length: 20, createdAt: Date(), owner: "alice"), events: [], claim: claim)
        }
    }

    /// A database at migration 8 gets the content index: its complete uploads take no part (no
    /// scope) and read back unchanged; new ones are found by content.
    @Test func migration9AddsTheContentIndex() async throws {
        try await LivePostgres.with { database in
            let schema = try await database.schema(migratedTo: 8)
            let id = UploadID.random()
            let digest = String(repeating: "ab", count: 32)
            try await database.execute(
                """
                INSERT INTO uploads (id, length, "offset", metadata, concat, state, created_at, updated_at, scenario, sha256)
                VALUES ('\(id.rawValue)', 10, 10, '', 'none', 'complete', 1800000000, 1800000001, 'voice', '\(digest)')
                """,
                in: schema
            )
            let catalog = try await database.catalog(schema: schema)
            let old = try #require(try await catalog.get(id))
            #expect(old.contentScope == nil && old.announcedSHA256 == nil && old.instantChallenge == nil && old.sha256 == digest)
            #expect(try await catalog.holders(scope: "s/voice", sha256: digest, length: 10, limit: 10).isEmpty)
            let new = UploadRecord(id: .random(), length: 10, offset: 10, state: .complete, createdAt: Date(), scenario: "voice", sha256: digest, contentScope: "s/voice")
            try await catalog.insert(new)
            #expect(try await catalog.holders(scope: "s/voice", sha256: digest, length: 10, limit: 10).map(\.id) == [new.id])
        }
    }

    /// In a `ServiceGroup`, as the server runs it: serves calls, then stops on graceful shutdown.
    @Test func runsAsAServiceAndShutsDownGracefully() async throws {
        try await LivePostgres.with { database in
            var configuration = database.base
            configuration.schema = try await database.newSchema()
            let catalog = try PostgresCatalog(configuration: configuration, logger: Logger(label: "ferry-postgres-test"))
            let group = ServiceGroup(services: [catalog], logger: Logger(label: "ferry-postgres-test"))
            try await withThrowingTaskGroup { tasks in
                tasks.addTask { try await group.run() }
                let record = UploadRecord(id: .random(), length: 1, createdAt: Date(timeIntervalSince1970: 1_800_000_000))
                try await catalog.insert(record)
                #expect(try await catalog.get(record.id) == record)
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
            let error = await #expect(throws: FerryError.self) { _ = try await catalog.get(.random()) }
            #expect(error?.code == .catalogFailure, "a stopped catalog fails calls rather than hanging")
        }
    }

    /// A catalog in a schema that does not exist fails at start-up, and so do its waiting calls.
    @Test func failedMigrationsFailCalls() async throws {
        var configuration = try PostgresCatalog.Configuration(url: LivePostgres.url ?? "")
        configuration.schema = "ferry_test_missing_schema"
        let catalog = try PostgresCatalog(configuration: configuration, logger: Logger(label: "ferry-postgres-test"))
        try await withThrowingTaskGroup { group in
            group.addTask {
                let error = await #expect(throws: FerryError.self) { try await catalog.run() }
                #expect(error?.code == .catalogFailure)
            }
            let error = await #expect(throws: FerryError.self) { _ = try await catalog.get(.random()) }
            #expect(error?.code == .catalogFailure)
            try await group.waitForAll()
        }
    }
}

@Suite("Postgres catalog configuration")
struct PostgresConfigurationTests {
    /// Nothing listens on port 1: start-up fails at once, and so do the calls waiting for it.
    @Test func anUnreachableDatabaseFailsStartUp() async throws {
        let catalog = try PostgresCatalog(url: "postgres://ferry:ferry@127.0.0.1:1/ferry", logger: Logger(label: "test"))
        await withTaskGroup { group in
            group.addTask { await #expect(throws: FerryError.self) { try await catalog.run() } }
            let error = await #expect(throws: FerryError.self) { _ = try await catalog.get(.random()) }
            #expect(error?.code == .catalogFailure)
        }
    }

    @Test func parsesAURL() throws {
        let configuration = try PostgresCatalog.Configuration(url: "postgres://fer%40ry:p%3Ass@db.example:6543/uploads")
        #expect(configuration.host == "db.example")
        #expect(configuration.port == 6543)
        #expect(configuration.username == "fer@ry")
        #expect(configuration.password == "p:ss")
        #expect(configuration.database == "uploads")
        #expect(configuration.description == "postgres://fer@ry:***@db.example:6543/uploads", "no password in logs")
    }

    @Test func defaultsThePortAndAllowsNoPassword() throws {
        let configuration = try PostgresCatalog.Configuration(url: "postgresql://ferry@[::1]/ferry")
        #expect(configuration.host == "::1")
        #expect(configuration.port == 5432)
        #expect(configuration.password == nil)
    }

    @Test(arguments: [
        ("", "scheme"),
        ("postgres://ferry@db.example:port/ferry", "not a URL"),
        ("db.example:5432/ferry", "scheme"),
        ("mysql://ferry:ferry@db.example/ferry", "scheme"),
        ("postgres://ferry:ferry@/ferry", "no host"),
        ("postgres://db.example:5432/ferry", "no user"),
        ("postgres://ferry:ferry@db.example:5432", "one database"),
        ("postgres://ferry:ferry@db.example:5432/ferry/more", "one database"),
        ("postgres://ferry:ferry@db.example:0/ferry", "out of range"),
        ("postgres://ferry:ferry@db.example:5432/ferry?sslmode=require", "no TLS"),
    ])
    func rejectsAMalformedURL(url: String, reason: String) {
        let error = #expect(throws: FerryError.self) { try PostgresCatalog(url: url, logger: Logger(label: "test")) }
        #expect(error?.code == .catalogFailure)
        #expect(error?.message.contains(reason) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("ferry:ferry") == false, "the message never repeats a password")
    }

    @Test func rejectsAnUnsafeSchemaName() throws {
        var configuration = try PostgresCatalog.Configuration(url: "postgres://ferry@localhost/ferry")
        configuration.schema = "public, evil"
        let error = #expect(throws: FerryError.self) { try PostgresCatalog(configuration: configuration, logger: Logger(label: "test")) }
        #expect(error?.code == .catalogFailure)
    }
}
