import FerryCore
@testable import FerrySQLite
import Foundation
import GRDB
import Testing

@Suite("SQLite catalog migrations")
struct SQLiteMigrationTests {
    /// A catalog written before v6 opens with its uploads intact: their network reads as
    /// `unknown` and their first byte as unknown; new values are kept from then on.
    @Test func v6AddsTheNetworkAndFirstByteToExistingUploads() async throws {
        let id = UploadID.random()
        let path = try await Self.catalogFile("migration", upTo: "v5: quota keys") { db in
            try db.execute(
                sql: """
                    INSERT INTO uploads (id, length, "offset", metadata, concat, state, created_at, updated_at, scenario, owner, quota_key)
                    VALUES (?, 10, 4, '', 'none', 'incomplete', 1800000000, 1800000001, 'voice', 'alice', 'sub:alice')
                    """,
                arguments: [id.rawValue]
            )
        }
        let catalog = try SQLiteCatalog(path: path)
        var record = try #require(try await catalog.get(id))
        #expect(record.offset == 4 && record.scenario == "voice" && record.quotaKey == "sub:alice")
        #expect(record.network == "unknown" && record.firstByteAt == nil)
        record.firstByteAt = Date(timeIntervalSince1970: 1_800_000_002)
        try await catalog.update(record, events: [], fence: nil)
        #expect(try await catalog.get(id) == record)
    }

    /// A catalog written before v8 (a payload in each webhook's row) opens with its events intact:
    /// one payload per event, read by every row of it, delivered and pending alike; new events
    /// get payloads of their own.
    @Test func v8StoresEachEventsPayloadOnce() async throws {
        let id = UploadID.random()
        let hooks = ["http://hooks.test/a", "http://hooks.test/b"]
        let path = try await Self.catalogFile("migration-v8", upTo: "v7: reserved room") { db in
            try db.execute(
                sql: """
                    INSERT INTO uploads (id, length, "offset", metadata, concat, state, created_at, updated_at, scenario, event_sequence)
                    VALUES (?, 10, 10, '', 'none', 'complete', 1800000000, 1800000001, 'voice', 2)
                    """,
                arguments: [id.rawValue]
            )
            for sequence in 1...2 {
                for hook in hooks {
                    let delivered = sequence == 1 && hook == hooks[0]
                    try db.execute(
                        sql: """
                            INSERT INTO outbox (event_id, destination, upload_id, sequence, type, payload, created_at, next_attempt_at, state, delivered_at)
                            VALUES (?, ?, ?, ?, ?, ?, 1800000000, 1800000000, ?, ?)
                            """,
                        arguments: [
                            "\(id.rawValue)-\(sequence)", hook, id.rawValue, sequence, sequence == 1 ? "upload.created" : "upload.completed",
                            "{\"event\":\(sequence)}", delivered ? "delivered" : "pending", delivered ? 1_800_000_001 : nil,
                        ]
                    )
                }
            }
        }
        let catalog = try SQLiteCatalog(path: path)
        let shown = try await catalog.deliveries(of: id)
        #expect(shown.map(\.event.payload) == ["{\"event\":1}", "{\"event\":1}", "{\"event\":2}", "{\"event\":2}"])
        #expect(shown.map(\.state) == [.delivered, .pending, .pending, .pending])
        #expect(try await catalog.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox_payloads") } == 2)
        let now = Date(timeIntervalSince1970: 1_800_000_010)
        let claimed = try await catalog.claimDeliveries(now: now, leaseUntil: now.addingTimeInterval(30), limit: 10)
        #expect(claimed.map { "\($0.event.sequence) \($0.event.destination) \($0.event.payload)" }.sorted() == [
            "1 http://hooks.test/b {\"event\":1}", "2 http://hooks.test/a {\"event\":2}",
        ])

        var record = try #require(try await catalog.get(id))
        let old = record
        record.state = .terminated
        record.eventSequence = 3
        let terminated = hooks.map {
            OutboxEvent(uploadID: id, sequence: 3, type: .terminated, destination: $0, payload: "{\"event\":3}", createdAt: now)
        }
        try await catalog.update(record, events: terminated, fence: nil)
        #expect(old.state == .complete)
        #expect(try await catalog.deliveries(of: id).map(\.event.payload).suffix(2) == ["{\"event\":3}", "{\"event\":3}"])
        #expect(try await catalog.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox_payloads") } == 3)
    }

    /// A catalog written before v9 opens with its complete uploads outside the content index (no
    /// scope) and unchanged; new ones are found by content.
    @Test func v9AddsTheContentIndex() async throws {
        let id = UploadID.random()
        let digest = String(repeating: "ab", count: 32)
        let path = try await Self.catalogFile("migration-v9", upTo: "v8: one payload per event") { db in
            try db.execute(
                sql: """
                    INSERT INTO uploads (id, length, "offset", metadata, concat, state, created_at, updated_at, scenario, sha256)
                    VALUES (?, 10, 10, '', 'none', 'complete', 1800000000, 1800000001, 'voice', ?)
                    """,
                arguments: [id.rawValue, digest]
            )
        }
        let catalog = try SQLiteCatalog(path: path)
        let old = try #require(try await catalog.get(id))
        #expect(old.contentScope == nil && old.announcedSHA256 == nil && old.instantChallenge == nil && old.sha256 == digest)
        #expect(try await catalog.holders(scope: "s/voice", sha256: digest, length: 10, limit: 10).isEmpty)
        let new = UploadRecord(id: .random(), length: 10, offset: 10, state: .complete, createdAt: Date(), scenario: "voice", sha256: digest, contentScope: "s/voice")
        try await catalog.insert(new)
        #expect(try await catalog.holders(scope: "s/voice", sha256: digest, length: 10, limit: 10).map(\.id) == [new.id])
        let plan = try await catalog.pool.read { db in
            try Row.fetchAll(
                db,
                sql: "EXPLAIN QUERY PLAN SELECT id FROM uploads WHERE content_scope = 's/voice' AND sha256 = ? AND length = 10 AND state = 'complete' ORDER BY created_at, id",
                arguments: [digest]
            ).map { $0["detail"] as String? ?? "" }
        }
        #expect(plan.joined().contains("uploads_content"), "the lookup uses the index: \(plan)")
    }

    /// A catalog file migrated up to `version`, with `rows` written into it by the schema of
    /// that time, and closed.
    static func catalogFile(_ name: String, upTo version: String, _ rows: @escaping @Sendable (Database) throws -> Void) async throws -> String {
        let path = Scratch.path(name) + ".sqlite"
        let pool = try DatabasePool(path: path)
        try SQLiteCatalog.migrator.migrate(pool, upTo: version)
        try await pool.write(rows)
        try pool.close()
        return path
    }
}
