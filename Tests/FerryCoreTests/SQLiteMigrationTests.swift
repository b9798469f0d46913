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
        let path = Scratch.path("migration") + ".sqlite"
        let id = UploadID.random()
        do {
            let pool = try DatabasePool(path: path)
            try SQLiteCatalog.migrator.migrate(pool, upTo: "v5: quota keys")
            try await pool.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO uploads (id, length, "offset", metadata, concat, state, created_at, updated_at, scenario, owner, quota_key)
                        VALUES (?, 10, 4, '', 'none', 'incomplete', 1800000000, 1800000001, 'voice', 'alice', 'sub:alice')
                        """,
                    arguments: [id.rawValue]
                )
            }
            try pool.close()
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
        let path = Scratch.path("migration-v8") + ".sqlite"
        let id = UploadID.random()
        let hooks = ["http://hooks.test/a", "http://hooks.test/b"]
        do {
            let pool = try DatabasePool(path: path)
            try SQLiteCatalog.migrator.migrate(pool, upTo: "v7: reserved room")
            try await pool.write { db in
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
            try pool.close()
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
}
