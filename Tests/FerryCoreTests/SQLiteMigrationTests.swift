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
}
