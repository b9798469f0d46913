import FerryCore
@testable import FerrySQLite
import Foundation
import GRDB
import Synchronization
import Testing

@Suite("SQLite catalog: updates write the changed columns")
struct SQLiteUpdateTests {
    @Test func theColumnListNamesEveryColumnOfTheTable() async throws {
        let catalog = try SQLiteCatalog(path: Scratch.path("columns") + ".sqlite")
        let names = try await catalog.pool.read { db in try db.columns(in: "uploads").map(\.name) }
        #expect(SQLiteCatalog.uploadColumnNames.map { $0.replacingOccurrences(of: "\"", with: "") }.sorted() == names.sorted())
        #expect(SQLiteCatalog.uploadColumnNames.count == SQLiteCatalog.values(UploadRecord(id: .random(), length: 1, createdAt: Date())).count)
    }

    /// Whatever changes between two writes (values, values to NULL and back), the row read back
    /// is the record written.
    @Test func everyChangeIsStoredAndNothingElse() async throws {
        let catalog = try SQLiteCatalog(path: Scratch.path("changed") + ".sqlite")
        var record = UploadRecord(
            id: .random(), length: 1000, metadata: try UploadMetadata(tusHeader: "filename YS5tcDM="), createdAt: Date(timeIntervalSince1970: 1_800_000_000.25),
            scenario: "voice", owner: "alice", quotaKey: "sub:alice", network: "wifi"
        )
        try await catalog.insert(record, events: [], claim: nil)
        var generator = SystemRandomNumberGenerator()
        for round in 0..<200 {
            // Quarter seconds: a Date stores seconds since 2001, so only such values survive the round
            // trip through seconds since 1970 exactly, whatever the catalog does.
            let date = Date(timeIntervalSince1970: 1_800_000_000 + Double(round) + Double(Int.random(in: 0..<4, using: &generator)) / 4)
            switch Int.random(in: 0..<8, using: &generator) {
            case 0: record.offset = Int64.random(in: 0...1000, using: &generator)
            case 1: record.expiresAt = Bool.random(using: &generator) ? nil : date
            case 2: record.business = Bool.random(using: &generator) ? nil : BusinessResult(status: .pending, attempts: round, nextAttemptAt: date)
            case 3: record.business = BusinessResult(status: .done, json: #"{"id":\#(round)}"#, attempts: 1)
            case 4: record.sha256 = Bool.random(using: &generator) ? nil : String(repeating: "ab", count: 32)
            case 5: record.reservedTo = Bool.random(using: &generator) ? nil : Int64(round)
            case 6: record.storeState = Bool.random(using: &generator) ? nil : "state-\(round)"
            default: record.state = [.incomplete, .complete, .terminated].randomElement(using: &generator)!
            }
            record.updatedAt = Bool.random(using: &generator) ? date : record.updatedAt
            try await catalog.update(record, events: [], fence: nil)
            #expect(try await catalog.get(record.id) == record, "round \(round)")
        }
        // A write that changes nothing still finds the row; one of a row that is not there fails.
        try await catalog.update(record, events: [], fence: nil)
        #expect(try await catalog.get(record.id) == record)
        var missing = record
        missing.id = .random()
        await #expect(throws: FerryError.self) { try await catalog.update(missing, events: [], fence: nil) }
    }

    /// The business result's write names the business columns only (so SQLite leaves the
    /// upload's other indexes alone).
    @Test func aBusinessResultWritesItsColumnsOnly() async throws {
        let catalog = try SQLiteCatalog(path: Scratch.path("narrow") + ".sqlite")
        var record = UploadRecord(
            id: .random(), length: 10, offset: 10, state: .complete, createdAt: Date(timeIntervalSince1970: 1_800_000_000.5), owner: "alice", quotaKey: "sub:alice"
        )
        record.business = BusinessResult(status: .pending, attempts: 0, nextAttemptAt: Date(timeIntervalSince1970: 1_800_000_001.25))
        try await catalog.insert(record, events: [], claim: nil)
        let updates = Mutex<[String]>([])
        try await catalog.pool.writeWithoutTransaction { db in
            db.trace(options: .statement) { event in
                let sql = "\(event)"
                if sql.hasPrefix("UPDATE uploads") { updates.withLock { $0.append(sql) } }
            }
        }
        record.business = BusinessResult(status: .done, json: #"{"id":"b-1"}"#, attempts: 1)
        try await catalog.update(record, events: [], fence: nil)
        #expect(try await catalog.get(record.id) == record)
        let written = updates.withLock { $0 }
        #expect(written.count == 1)
        #expect(written.first?.hasPrefix("UPDATE uploads SET business_status = ") == true, "\(written)")
        #expect(written.first?.contains("offset") == false && written.first?.contains("quota_key") == false)
    }
}
