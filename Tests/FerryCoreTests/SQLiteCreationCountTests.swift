import FerryCore
@testable import FerrySQLite
import Foundation
import GRDB
import Synchronization
import Testing

@Suite("SQLite catalog: creations per minute counted by the writer")
struct SQLiteCreationCountTests {
    /// Claimed creations, removals, refusals and a clock that sometimes steps back: every
    /// decision is the one a count over the table gives, and the writer's counts equal it.
    @Test(arguments: [1, 2, 3])
    func decisionsMatchACountOverTheTable(round: Int) async throws {
        let catalog = try SQLiteCatalog(path: Scratch.path("creations-\(round)") + ".sqlite")
        let limit = 6
        let keys = ["sub:a", "sub:b", "addr:10.0.0.1"]
        var stored: [(id: UploadID, key: String, at: Double)] = []
        var generator = SystemRandomNumberGenerator()
        var clock = 1_800_000_000.0
        var (admitted, refused, compared) = (0, 0, 0)
        for step in 0..<600 {
            clock += [0, 0.25, 1, 4, 15, -2].randomElement(using: &generator)!
            let key = keys.randomElement(using: &generator)!
            if !stored.isEmpty, Int.random(in: 0..<5, using: &generator) == 0 {
                let victim = stored.remove(at: Int.random(in: 0..<stored.count, using: &generator))
                try await catalog.remove(victim.id)
                continue
            }
            let at = Date(timeIntervalSince1970: clock)
            let windowStart = clock - 60
            let expected = stored.filter { $0.key == key && $0.at >= windowStart }.count < limit
            let record = UploadRecord(id: .random(), length: 1, state: .complete, createdAt: at, quotaKey: key)
            let claim = QuotaClaim(owner: key, quotas: Quotas(creationsPerMinute: limit), bytes: 1, creating: true, windowStart: at.addingTimeInterval(-60))
            do {
                try await catalog.insert(record, events: [], claim: claim)
                #expect(expected, "step \(step): admitted over the limit")
                stored.append((record.id, key, clock))
                admitted += 1
            } catch {
                refused += 1
                #expect(!expected && error.code == .quotaExceeded, "step \(step): refused under the limit (\(error))")
            }
            for key in keys {
                let counted = try await catalog.pool.read { db in
                    try Int.fetchOne(db, sql: "SELECT count(*) FROM uploads WHERE quota_key = ? AND created_at >= ?", arguments: [key, windowStart])
                }
                if let known = catalog.recent.count(key, since: windowStart) {
                    compared += 1
                    #expect(known == counted, "step \(step) \(key): the writer counts \(known), the table \(String(describing: counted))")
                }
            }
        }
        #expect(admitted > 100 && refused > 20 && compared > 1000, "admitted \(admitted), refused \(refused), compared \(compared)")
    }

    /// A key's creations are read from the table once, not at every check.
    @Test func aKeyIsLoadedOnce() async throws {
        let catalog = try SQLiteCatalog(path: Scratch.path("creations-load") + ".sqlite")
        let loads = Mutex(0)
        try await catalog.pool.writeWithoutTransaction { db in
            db.trace(options: .statement) { event in
                if "\(event)".hasPrefix("SELECT created_at FROM uploads") { loads.withLock { $0 += 1 } }
            }
        }
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        for index in 0..<50 {
            let at = start.addingTimeInterval(Double(index))
            let claim = QuotaClaim(owner: "sub:a", quotas: Quotas(creationsPerMinute: 1000), bytes: 1, creating: true, windowStart: at.addingTimeInterval(-60))
            try await catalog.insert(UploadRecord(id: .random(), length: 1, createdAt: at, quotaKey: "sub:a"), events: [], claim: claim)
        }
        #expect(loads.withLock { $0 } == 1)
        #expect(catalog.recent.count("sub:a", since: start.addingTimeInterval(-60).timeIntervalSince1970) == 50)
    }
}
