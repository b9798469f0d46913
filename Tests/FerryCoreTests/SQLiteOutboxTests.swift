import FerryCore
@testable import FerrySQLite
import Foundation
import GRDB
import Synchronization
import Testing

@Suite("SQLite catalog: outbox claims are reads with leases in memory")
struct SQLiteOutboxTests {
    static let start = Date(timeIntervalSince1970: 1_800_000_000)

    /// `count` uploads with one due event each.
    func outbox(_ name: String, count: Int) async throws -> (SQLiteCatalog, String) {
        let path = Scratch.path(name) + ".sqlite"
        let catalog = try SQLiteCatalog(path: path)
        for _ in 0..<count {
            let record = UploadRecord(id: .random(), length: 10, createdAt: Self.start)
            let event = OutboxEvent(uploadID: record.id, sequence: 1, type: .created, destination: "http://hooks.test/a", payload: "{}", createdAt: Self.start)
            try await catalog.insert(record, events: [event], claim: nil)
        }
        return (catalog, path)
    }

    @Test func concurrentClaimsNeverTakeAnEventTwice() async throws {
        let (catalog, _) = try await outbox("claims", count: 40)
        let now = Self.start.addingTimeInterval(1)
        // Concurrent claims may come back short (they read the same heads), never overlapping.
        var claimed: [String] = []
        for _ in 0..<40 {
            let round = try await withThrowingTaskGroup(of: [String].self) { group in
                for _ in 0..<8 {
                    group.addTask { try await catalog.claimDeliveries(now: now, leaseUntil: now.addingTimeInterval(30), limit: 3).map(\.event.id) }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            if round.isEmpty { break }
            claimed += round
        }
        #expect(claimed.count == 40 && Set(claimed).count == 40, "every event exactly once (\(claimed.count) claims)")
        #expect(try await catalog.claimDeliveries(now: now, leaseUntil: now.addingTimeInterval(30), limit: 100).isEmpty)
    }

    @Test func aClaimWritesNothingAndLapsesAtItsEnd() async throws {
        let (catalog, path) = try await outbox("lapse", count: 3)
        let writes = Mutex(0)
        try await catalog.pool.writeWithoutTransaction { db in
            db.trace(options: .statement) { event in
                let sql = "\(event)"
                if sql.hasPrefix("UPDATE") || sql.hasPrefix("BEGIN IMMEDIATE") { writes.withLock { $0 += 1 } }
            }
        }
        let now = Self.start.addingTimeInterval(1)
        let lease = now.addingTimeInterval(10)
        let first = try await catalog.claimDeliveries(now: now, leaseUntil: lease, limit: 10)
        #expect(first.count == 3)
        #expect(writes.withLock { $0 } == 0, "a claim is a read")
        let shown = try await catalog.deliveries(of: first[0].event.uploadID)
        #expect(shown.map(\.nextAttemptAt) == [lease], "the next attempt shown is the claim's end")
        #expect(try await catalog.claimDeliveries(now: now.addingTimeInterval(5), leaseUntil: lease, limit: 10).isEmpty, "held until the claim ends")

        // A restart forgets the claims: the events are due at once.
        let restarted = try SQLiteCatalog(path: path)
        #expect(try await restarted.claimDeliveries(now: now.addingTimeInterval(5), leaseUntil: lease, limit: 10).count == 3)

        let again = try await catalog.claimDeliveries(now: lease.addingTimeInterval(1), leaseUntil: lease.addingTimeInterval(30), limit: 10)
        #expect(again.count == 3, "a claim that ended without an outcome lapses")
        // An outcome ends the claim: a retry is due at its own time.
        let retryAt = lease.addingTimeInterval(5)
        try await catalog.recordDeliveries(again.map {
            DeliveryRecord(eventID: $0.event.id, destination: $0.event.destination, attempts: 1, outcome: .retry(at: retryAt, error: "answered 500"))
        })
        #expect(try await catalog.claimDeliveries(now: retryAt, leaseUntil: retryAt.addingTimeInterval(30), limit: 10).count == 3)
    }

    /// An event's webhooks share one stored payload; it outlives the event's delivered rows
    /// until none of them is pending, and the purge takes it with the last one.
    @Test func anEventsWebhooksShareOnePayloadUntilThePurge() async throws {
        let path = Scratch.path("payloads") + ".sqlite"
        let catalog = try SQLiteCatalog(path: path)
        let record = UploadRecord(id: .random(), length: 10, createdAt: Self.start)
        var events: [OutboxEvent] = []
        for (sequence, type) in [(Int64(1), UploadEventType.created), (2, .completed)] {
            for hook in ["http://hooks.test/a", "http://hooks.test/b"] {
                events.append(OutboxEvent(uploadID: record.id, sequence: sequence, type: type, destination: hook, payload: "{\"n\":\(sequence)}", createdAt: Self.start))
            }
        }
        try await catalog.insert(record, events: events, claim: nil)
        func payloads() async throws -> Int { try await catalog.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox_payloads") ?? -1 } }
        #expect(try await payloads() == 2, "one payload per event, not per webhook")

        let now = Self.start.addingTimeInterval(1)
        let first = try await catalog.claimDeliveries(now: now, leaseUntil: now.addingTimeInterval(30), limit: 10)
        #expect(first.map(\.event) == events.filter { $0.sequence == 1 }, "each stream's head, with its payload")
        #expect(try await catalog.deliveries(of: record.id).map(\.event) == events)

        // Event 1 delivered to `a` only: its payload stays for `b`.
        let a = try #require(first.first { $0.event.destination.hasSuffix("/a") })
        try await catalog.recordDeliveries([DeliveryRecord(eventID: a.event.id, destination: a.event.destination, attempts: 1, outcome: .delivered(at: now))])
        try await catalog.purgeDeliveries(before: now.addingTimeInterval(60))
        #expect(try await payloads() == 2)
        let b = try #require(first.first { $0.event.destination.hasSuffix("/b") })
        let retried = try await catalog.claimDeliveries(now: now.addingTimeInterval(31), leaseUntil: now.addingTimeInterval(60), limit: 10)
        #expect(retried.map(\.event).contains(b.event), "the pending webhook still reads the payload")

        // Delivered (or dead) everywhere: the purge takes the rows and the payload together.
        try await catalog.recordDeliveries([DeliveryRecord(eventID: b.event.id, destination: b.event.destination, attempts: 2, outcome: .dead(error: "gone"))])
        try await catalog.purgeDeliveries(before: now.addingTimeInterval(60))
        #expect(try await payloads() == 1)
        #expect(try await catalog.deliveries(of: record.id).map(\.event) == events.filter { $0.sequence == 2 })
        let second = try await catalog.claimDeliveries(now: now.addingTimeInterval(61), leaseUntil: now.addingTimeInterval(90), limit: 10)
        #expect(second.map(\.event) == events.filter { $0.sequence == 2 })
    }
}
