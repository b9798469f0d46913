import FerryCore
@testable import FerryPostgres
import FerryTestSupport
import Foundation
import Logging
import NIOCore
import Testing

/// The statements a small upload no longer makes, and why it stays safe: a creation takes its
/// upload's cross-node lock before the record exists (so the body needs no read-back and no
/// second claim), a claimed insert is one statement, and releases share statements.
@Suite(
    "Postgres creations across nodes",
    .enabled(if: LivePostgres.configured, "FERRY_TEST_POSTGRES_URL is not set (a database the tests may create schemas in)")
)
struct PostgresCreationTests {
    struct Transport: BodyTransport {
        func willReadBody() async {}
        func bodyEnded() async -> BodyEnd { BodyEnd(complete: true) }
    }

    static func outcome(_ body: () async throws(FerryError) -> UploadRecord) async -> Result<UploadRecord, FerryError> {
        do throws(FerryError) {
            return .success(try await body())
        } catch {
            return .failure(error)
        }
    }

    @Test func aRequestOnAnotherNodeStopsACreationWhichCommitsWhatItReceived() async throws {
        try await PostgresUploadLockerTests.withNodes(2, configuration: PostgresUploadLockerTests.notifiedOnly) { lockers, _ in
            for locker in lockers {
                for _ in 0..<1000 where !locker.isListening { try await Task.sleep(for: .milliseconds(10)) }
            }
            let store = MemoryByteStore()
            let engines = lockers.map { locker in
                UploadEngine(store: store, catalog: locker.catalog, locker: locker, configuration: EngineConfiguration(lockTimeout: .seconds(20)), logger: Logger(label: "test"))
            }
            let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
            let (created, other) = try await engines[0].create(.init(length: 1000)) { new -> (Result<UploadRecord, FerryError>, Task<UploadRecord, any Error>) in
                let id = new.record.id
                async let appended = Self.outcome { () async throws(FerryError) -> UploadRecord in
                    try await engines[0].append(into: new, AppendRequest(offset: 0), body: stream, transport: Transport())
                }
                continuation.yield(ByteBuffer(bytes: Array(repeating: 7, count: 300)))
                await store.waitForBytes(id, 300)
                // Node B hears of the upload (a RUFH 104) and asks: its claim must wait for A.
                let other = Task { try await engines[1].status(id) }
                return (await appended, other)
            }
            continuation.finish()
            guard case .failure(let error) = created else {
                Issue.record("node A's creating request should have been stopped by node B")
                return
            }
            #expect(error.code == .requestSuperseded)
            let seen = try await other.value
            #expect(seen.offset == 300, "node A committed, under its fence, what it received before B got the upload")
            #expect(try await lockers[1].catalog.get(seen.id)?.offset == 300)
        }
    }

    @Test func aCreationsFenceIsValidBeforeItsRecordExistsAndRefusedOnceTakenOver() async throws {
        try await PostgresUploadLockerTests.withNodes(2) { lockers, services in
            let id = UploadID.random()
            // The creating node's insert claims the lock in the same statement.
            var record = PostgresUploadLockerTests.record(id)
            let creating = try await lockers[0].lock(inserting: record, events: [], claim: nil, into: lockers[0].catalog) {}
            #expect(creating.fence != nil)
            #expect(try await lockers[0].catalog.get(id) != nil)
            services[0].cancel()  // node A hangs mid-creation: its lease lapses
            let taken = try await lockers[1].lock(id, timeout: .seconds(10)) {}
            record.offset = 40
            try await lockers[1].catalog.update(record, events: [], fence: taken.fence)
            var stale = record
            stale.offset = 80
            let fence = creating.fence
            await #expect(throws: FerryError.self) { try await lockers[0].catalog.update(stale, events: [], fence: fence) }
            #expect(try await lockers[1].catalog.get(id)?.offset == 40, "the late creation's commit is refused")
            await taken.release()
            await creating.release()
        }
    }

    @Test func anInsertTheQuotaRefusesHoldsNoLock() async throws {
        try await PostgresUploadLockerTests.withNodes(1) { lockers, _ in
            let catalog = lockers[0].catalog
            let owner = QuotaKey.subject("quota-\(UUID().uuidString)")
            let claim = QuotaClaim(owner: owner, quotas: Quotas(openUploads: 1), bytes: 10, creating: true, windowStart: Date())
            var first = PostgresUploadLockerTests.record(.random())
            first.quotaKey = owner
            let held = try await lockers[0].lock(inserting: first, events: [], claim: claim, into: catalog) {}
            var second = PostgresUploadLockerTests.record(.random())
            second.quotaKey = owner
            let refused = await #expect(throws: FerryError.self) {
                _ = try await lockers[0].lock(inserting: second, events: [], claim: claim, into: catalog) {}
            }
            #expect(refused?.code == .quotaExceeded)
            #expect(try await catalog.get(second.id) == nil)
            #expect(lockers[0].heldCount == 1, "only the inserted upload is held")
            await held.release()
            // Nothing of the refused one is left locked, on this node or in the database.
            let lease = try await lockers[0].lock(second.id, timeout: .milliseconds(500)) {}
            await lease.release()
        }
    }

    @Test func intoAnotherCatalogTheLockerClaimsFirstThenInserts() async throws {
        try await PostgresUploadLockerTests.withNodes(2, configuration: PostgresUploadLockerTests.notifiedOnly) { lockers, _ in
            let other = MemoryCatalog()
            let record = PostgresUploadLockerTests.record(.random())
            let lease = try await lockers[0].lock(inserting: record, events: [], claim: nil, into: other) {}
            #expect(try await other.get(record.id) != nil && lease.fence != nil)
            await #expect(throws: FerryError.self) { _ = try await lockers[1].lock(record.id, timeout: .milliseconds(300)) {} }
            await lease.release()
            let next = try await lockers[1].lock(record.id, timeout: .seconds(2)) {}
            await next.release()
        }
    }

    @Test func concurrentReleasesFreeEveryUploadAtOnce() async throws {
        try await PostgresUploadLockerTests.withNodes(2, configuration: PostgresUploadLockerTests.notifiedOnly) { lockers, _ in
            let ids = (0..<40).map { _ in UploadID.random() }
            try await withThrowingTaskGroup { group in
                for id in ids {
                    group.addTask {
                        let lease = try await lockers[0].lock(id, timeout: .seconds(5)) {}
                        await lease.release()
                    }
                }
                try await group.waitForAll()
            }
            // Leases last two minutes here: only a release lets node B in within its timeout.
            for id in ids {
                let lease = try await lockers[1].lock(id, timeout: .seconds(2)) {}
                await lease.release()
            }
            #expect(lockers[0].heldCount == 0 && lockers[1].heldCount == 0)
        }
    }
}
