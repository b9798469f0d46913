import FerryCore
@testable import FerryPostgres
import FerryTestSupport
import Foundation
import Synchronization
import Testing

/// `PostgresUploadLocker` against the live database: the locker conformance suite on one node,
/// then two nodes (two lockers on one schema) racing for the same uploads.
@Suite(
    "Postgres upload locker against a live database",
    .enabled(if: LivePostgres.configured, "FERRY_TEST_POSTGRES_URL is not set (a database the tests may create schemas in)")
)
struct PostgresUploadLockerTests {
    static let quick = PostgresUploadLocker.Configuration(
        leaseDuration: .milliseconds(1500), renewInterval: .milliseconds(200), selfFenceAfter: .milliseconds(1000)
    )

    /// Runs `body` with `count` lockers ("nodes") on one fresh schema, each running as its service
    /// would; a node whose task is cancelled in `body` stops renewing, like a dead process.
    static func withNodes(
        _ count: Int,
        configuration: PostgresUploadLocker.Configuration = quick,
        clock: some Clock<Duration> = ContinuousClock(),
        _ body: @escaping @Sendable ([PostgresUploadLocker], [Task<Void, any Error>]) async throws -> Void
    ) async throws {
        try await LivePostgres.with { database in
            let schema = try await database.newSchema()
            var lockers: [PostgresUploadLocker] = []
            for _ in 0..<count {
                lockers.append(PostgresUploadLocker(catalog: try await database.catalog(schema: schema), configuration: configuration, clock: clock))
            }
            let services = lockers.map { locker in Task { try await locker.run() } }
            defer { for service in services { service.cancel() } }
            try await body(lockers, services)
        }
    }

    final class Count: Sendable {
        let value = Mutex(0)
        func raise() { value.withLock { $0 += 1 } }
        var current: Int { value.withLock { $0 } }
    }

    static func record(_ id: UploadID) -> UploadRecord {
        UploadRecord(id: id, length: 100, createdAt: Date(timeIntervalSince1970: 1_800_000_000))
    }

    @Test(arguments: UploadLockerConformance.checks)
    func conformanceOnOneNode(_ check: ConformanceCheck<any UploadLocker>) async throws {
        try await Self.withNodes(1) { lockers, _ in
            try await check.run(lockers[0])
        }
    }

    /// Renewals too rare to matter and leases too long to lapse: only the notification can stop
    /// the holder.
    static let notifiedOnly = PostgresUploadLocker.Configuration(
        leaseDuration: .seconds(120), renewInterval: .seconds(60), selfFenceAfter: .seconds(90)
    )

    @Test func aRequestOnAnotherNodeStopsTheHolderAndTakesOver() async throws {
        try await Self.withNodes(2, configuration: Self.notifiedOnly) { lockers, _ in
            let id = UploadID.random()
            let stopped = Count()
            for _ in 0..<1000 where !lockers[0].isListening { try await Task.sleep(for: .milliseconds(10)) }
            #expect(lockers[0].isListening)
            let holder = try await lockers[0].lock(id, timeout: .seconds(1)) { stopped.raise() }
            let newer = Task { try await lockers[1].lock(id, timeout: .seconds(30)) {} }
            for _ in 0..<2000 where stopped.current == 0 { try await Task.sleep(for: .milliseconds(10)) }
            #expect(stopped.current == 1, "node A's holder is asked to stop, by notification (renewals are a minute apart)")
            await holder.release()
            let lease = try await newer.value
            #expect(lease.fence != nil && lease.fence!.token > holder.fence!.token, "fences grow with every claim")
            await lease.release()
        }
    }

    @Test func aDeadNodesClaimLapsesAndItsLateCommitIsRefused() async throws {
        try await Self.withNodes(2) { lockers, services in
            let catalog = lockers[0].catalog
            let id = UploadID.random()
            var record = Self.record(id)
            try await catalog.insert(record)
            let stopped = Count()
            let dead = try await lockers[0].lock(id, timeout: .seconds(1)) { stopped.raise() }
            services[0].cancel()  // node A stops renewing: as if it hung or lost the database

            // Once A's lease (1.5 s from its last renewal) lapses, B takes the upload, though A never
            // released (that B waits for the lapse is the locker conformance's "bounded wait").
            let taken = try await lockers[1].lock(id, timeout: .seconds(10)) {}
            record.offset = 60
            try await lockers[1].catalog.update(record, events: [], fence: taken.fence)

            var stale = record
            stale.offset = 90
            let fence = dead.fence
            await #expect(throws: FerryError.self) {
                try await catalog.update(stale, events: [], fence: fence)
            }
            #expect(try await catalog.get(id)?.offset == 60, "the new holder's commit stands")
            #expect(dead.fence?.isValid == false, "the old holder learns it lost the claim")
            await taken.release()
            await dead.release()
        }
    }

    @Test func aHolderThatCannotRenewFencesItselfBeforeItsLeaseLapses() async throws {
        let clock = ManualClock()
        try await Self.withNodes(1, clock: clock) { lockers, services in
            let id = UploadID.random()
            let stopped = Count()
            let lease = try await lockers[0].lock(id, timeout: .seconds(1)) { stopped.raise() }
            services[0].cancel()
            // Renewals fail from now on (no service); the next manual renewal attempt sees only
            // stale claims once `selfFenceAfter` passed.
            await lockers[0].renewOrFence(failing: true)
            #expect(stopped.current == 0 && lease.fence?.isValid == true, "not before selfFenceAfter")
            clock.advance(by: .milliseconds(1100))
            await lockers[0].renewOrFence(failing: true)
            #expect(stopped.current == 1 && lease.fence?.isValid == false)
            await lease.release()
        }
    }

    @Test func manyNodesRacingForOneUploadNeverHoldItTogether() async throws {
        try await Self.withNodes(3) { lockers, _ in
            let id = UploadID.random()
            let inside = Count()
            let overlaps = Count()
            let held = Count()
            let left = Count()
            try await withThrowingTaskGroup { group in
                for round in 0..<12 {
                    let locker = lockers[round % 3]
                    group.addTask {
                        guard let lease = try? await locker.lock(id, timeout: .seconds(5), onStopRequest: {}) else { return }
                        held.raise()
                        if held.current - left.current > 1 { overlaps.raise() }
                        inside.raise()
                        try await Task.sleep(for: .milliseconds(20))
                        left.raise()
                        await lease.release()
                    }
                }
                try await group.waitForAll()
            }
            #expect(overlaps.current == 0, "never two holders at once")
            #expect(inside.current >= 1)
        }
    }
}
