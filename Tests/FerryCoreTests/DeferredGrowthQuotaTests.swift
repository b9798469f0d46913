import FerryCore
import FerrySQLite
import FerryTestSupport
import Foundation
import NIOCore
import Testing

/// The bytes of a deferred-length upload count against `open-bytes` as they arrive: an append
/// claims the room it may fill before its body (`UploadRecord.reservedTo`, checked in the
/// write's own transaction), so concurrent appends cannot all take the owner's last bytes.
@Suite("Quotas: deferred uploads that grow")
struct DeferredGrowthQuotaTests {
    static let alice = Principal(subject: "alice")

    static func engine(_ kind: String, _ name: String) throws -> (UploadEngine, any EngineCatalog) {
        let catalog: any EngineCatalog = kind == "memory" ? MemoryCatalog() : try SQLiteCatalog(path: Scratch.path(name) + ".sqlite")
        let engine = UploadEngine(
            store: MemoryByteStore(), catalog: catalog, locker: LocalUploadLocker(), configuration: EngineConfiguration(lockTimeout: .seconds(2)),
            business: BusinessRules(scenarios: ScenarioSet([Scenario(name: "plain")], defaultName: "plain"), quotas: Quotas(openBytes: 100)),
            logger: .test
        )
        return (engine, catalog)
    }

    static func code(_ work: () async throws(FerryError) -> Void) async -> String {
        do throws(FerryError) {
            try await work()
            return "ok"
        } catch {
            return error.code.rawValue
        }
    }

    @Test(arguments: ["memory", "sqlite"])
    func concurrentAppendsTakeTheLastBytesOnce(_ kind: String) async throws {
        let (engine, catalog) = try Self.engine(kind, "growth")
        var ids: [UploadID] = []
        for _ in 0..<10 { ids.append(try await engine.create(.init(length: nil, principal: Self.alice)).id) }
        let outcomes = await withTaskGroup(of: String.self) { group in
            for id in ids {
                group.addTask {
                    await Self.code { () async throws(FerryError) in
                        _ = try await engine.append(
                            id, AppendRequest(offset: 0, contentLength: 30), body: body([bytes(30)]), transport: FakeTransport(), as: Self.alice
                        )
                    }
                }
            }
            var all: [String] = []
            for await outcome in group { all.append(outcome) }
            return all
        }
        #expect(outcomes.filter { $0 == "ok" }.count == 3, "30 + 30 + 30 of 100: \(outcomes)")
        #expect(outcomes.allSatisfy { $0 == "ok" || $0 == FerryError.Code.quotaExceeded.rawValue }, "\(outcomes)")
        let usage = try await catalog.usage(of: QuotaKey.subject("alice"), since: nil)
        #expect(usage.openBytes == 90, "the stored bytes count, and no room stays held: \(usage)")
        for id in ids {
            let record = try #require(try await catalog.get(id))
            #expect(record.reservedTo == nil && [0, 30].contains(record.offset), "\(record)")
        }
    }

    /// A body of unknown size holds all the room there is while it runs; what it stored counts
    /// once it ends, and the rest is free again.
    @Test(arguments: ["memory", "sqlite"])
    func aBodyOfUnknownSizeHoldsTheRoomUntilItEnds(_ kind: String) async throws {
        let (engine, catalog) = try Self.engine(kind, "stream")
        let streaming = try await engine.create(.init(length: nil, principal: Self.alice)).id
        let other = try await engine.create(.init(length: nil, principal: Self.alice)).id
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let running = Task {
            try await engine.append(streaming, AppendRequest(offset: 0, contentLength: nil), body: stream, transport: FakeTransport(), as: Self.alice)
        }
        continuation.yield(ByteBuffer(bytes: bytes(20)))
        var held = try await catalog.get(streaming)
        for _ in 0..<200 where held?.reservedTo == nil {
            try await Task.sleep(for: .milliseconds(10))
            held = try await catalog.get(streaming)
        }
        #expect(held?.reservedTo == 100, "the running append holds the owner's whole room: \(String(describing: held))")
        let refused = await Self.code { () async throws(FerryError) in
            _ = try await engine.append(other, AppendRequest(offset: 0, contentLength: 10), body: body([bytes(10)]), transport: FakeTransport(), as: Self.alice)
        }
        #expect(refused == FerryError.Code.quotaExceeded.rawValue)
        continuation.finish()
        let stored = try await running.value
        #expect(stored.offset == 20 && stored.reservedTo == nil, "\(stored)")
        let usage = try await catalog.usage(of: QuotaKey.subject("alice"), since: nil)
        #expect(usage.openBytes == 20)
        let second = try await engine.append(
            other, AppendRequest(offset: 0, contentLength: 80), body: body([bytes(80)]), transport: FakeTransport(), as: Self.alice
        )
        #expect(second.offset == 80, "the released room is free again")
    }

    /// A reservation left by a crash is the upload's own: its next append reuses it instead of
    /// counting it twice; a body whose bytes are not kept releases what it held.
    @Test(arguments: ["memory", "sqlite"])
    func aLeftoverReservationIsReusedAndAFailedAppendReleasesIt(_ kind: String) async throws {
        let (engine, catalog) = try Self.engine(kind, "leftover")
        var crashed = try await engine.create(.init(length: nil, principal: Self.alice))
        crashed.reservedTo = 80
        try await catalog.update(crashed, events: [], fence: nil)
        #expect(try await catalog.usage(of: QuotaKey.subject("alice"), since: nil).openBytes == 80)
        let resumed = try await engine.append(
            crashed.id, AppendRequest(offset: 0, contentLength: 90), body: body([bytes(90)]), transport: FakeTransport(), as: Self.alice
        )
        #expect(resumed.offset == 90 && resumed.reservedTo == nil, "\(resumed)")
        #expect(try await catalog.usage(of: QuotaKey.subject("alice"), since: nil).openBytes == 90)
        // A checksum that does not match: nothing kept, nothing held.
        let wrong = ChecksumExpectation(algorithm: .sha256, digest: Array(repeating: 0, count: 32))
        let failed = await Self.code { () async throws(FerryError) in
            _ = try await engine.append(
                crashed.id, AppendRequest(offset: 90, contentLength: 10, checksum: wrong), body: body([bytes(10)]), transport: FakeTransport(),
                as: Self.alice
            )
        }
        #expect(failed == FerryError.Code.checksumMismatch.rawValue)
        let after = try #require(try await catalog.get(crashed.id))
        #expect(after.offset == 90 && after.reservedTo == nil, "\(after)")
    }
}

/// A concatenation final holds no bytes of its own: while its partials are incomplete they count
/// against `open-bytes`, and the final does not count them a second time.
@Suite("Quotas: concatenation finals")
struct FinalQuotaTests {
    @Test(arguments: ["memory", "sqlite"])
    func aPendingFinalDoesNotCountItsPartialsTwice(_ kind: String) async throws {
        let (engine, catalog) = try DeferredGrowthQuotaTests.engine(kind, "finals")
        let alice = DeferredGrowthQuotaTests.alice
        let first = try await engine.create(.init(length: 50, isPartial: true, principal: alice)).id
        let second = try await engine.create(.init(length: 50, isPartial: true, principal: alice)).id
        _ = try await engine.append(first, AppendRequest(offset: 0, contentLength: 50), body: body([bytes(50)]), transport: FakeTransport(), as: alice)
        let final = try await engine.createFinal(parts: [first, second], metadata: UploadMetadata(), principal: alice)
        #expect(!final.isComplete && final.length == 100)
        #expect(try await catalog.usage(of: QuotaKey.subject("alice"), since: nil).openBytes == 50, "only the incomplete partial's 50")
        // The room left is real: another 50 bytes may be declared while the final waits.
        _ = try await engine.create(.init(length: 50, principal: alice))
        _ = try await engine.append(second, AppendRequest(offset: 0, contentLength: 50), body: body([bytes(50, seed: 1)]), transport: FakeTransport(), as: alice)
        #expect(try await catalog.get(final.id)?.isComplete == true)
        #expect(try await catalog.usage(of: QuotaKey.subject("alice"), since: nil).openBytes == 50)
    }
}
