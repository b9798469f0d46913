import Crypto
import FerryCore
import FerryTestSupport
import Foundation
import NIOCore
import Synchronization
import Testing

/// A settable wall clock for expiry tests.
final class TestNow: Sendable {
    let date = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
    func advance(_ seconds: Double) { date.withLock { $0 = $0.addingTimeInterval(seconds) } }
    var now: Date { date.withLock { $0 } }
}

struct EngineFixture {
    let store = MemoryByteStore()
    let catalog = MemoryCatalog()
    let clock = TestNow()
    let engine: UploadEngine

    init(configuration: EngineConfiguration = EngineConfiguration(lockTimeout: .seconds(2))) {
        let clock = self.clock
        engine = UploadEngine(
            store: store,
            catalog: catalog,
            locker: LocalUploadLocker(),
            configuration: configuration,
            logger: .test,
            now: { clock.now }
        )
    }

    func append(
        _ id: UploadID,
        at offset: Int64,
        _ pieces: [[UInt8]],
        checksum: ChecksumExpectation? = nil,
        end: BodyEnd = BodyEnd(complete: true),
        trailer: Bool = false,
        declaredLength: Int64? = nil
    ) async throws -> UploadRecord {
        try await engine.append(
            id,
            AppendRequest(offset: offset, declaredLength: declaredLength, checksum: checksum, expectsTrailerChecksum: trailer),
            body: body(pieces),
            transport: FakeTransport(end: end)
        )
    }
}

extension EngineFixture {
    /// Starts an append whose body the test feeds through the returned continuation.
    func streamingAppend(_ id: UploadID, at offset: Int64 = 0) -> (Task<UploadRecord, any Error>, AsyncStream<ByteBuffer>.Continuation) {
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let engine = self.engine
        let task = Task {
            try await engine.append(id, AppendRequest(offset: offset), body: stream, transport: FakeTransport())
        }
        return (task, continuation)
    }

    /// Waits until the store holds `count` bytes of the upload.
    func waitForBytes(_ id: UploadID, _ count: Int) async throws {
        await store.waitForBytes(id, count)
    }
}

func code(_ body: () async throws -> Void) async -> FerryError.Code? {
    do {
        try await body()
        return nil
    } catch let error as FerryError {
        return error.code
    } catch {
        return .internalError
    }
}

@Suite("Upload engine")
struct EngineTests {
    @Test func appendsUntilComplete() async throws {
        let fixture = EngineFixture()
        let record = try await fixture.engine.create(.init(length: 10))
        #expect(try await fixture.append(record.id, at: 0, [bytes(4)]).offset == 4)
        let done = try await fixture.append(record.id, at: 4, [bytes(3), bytes(3)])
        #expect(done.offset == 10)
        #expect(done.isComplete)
        #expect(done.expiresAt == nil)
        #expect(fixture.store.bytes(record.id) == bytes(4) + bytes(3) + bytes(3))
    }

    @Test func zeroLengthIsCompleteAtOnce() async throws {
        let fixture = EngineFixture()
        #expect(try await fixture.engine.create(.init(length: 0)).isComplete)
    }

    @Test func refusesOversizeAndMismatchedOffsets() async throws {
        let fixture = EngineFixture(configuration: EngineConfiguration(maxSize: 100, lockTimeout: .seconds(2)))
        #expect(await code { _ = try await fixture.engine.create(.init(length: 101)) } == .maxSizeExceeded)
        let record = try await fixture.engine.create(.init(length: 10))
        #expect(await code { _ = try await fixture.append(record.id, at: 3, [bytes(2)]) } == .offsetMismatch)
        #expect(try await fixture.engine.status(record.id).offset == 0)
        #expect(await code { _ = try await fixture.append(record.id, at: 0, [bytes(11)]) } == .lengthExceeded)
        #expect(try await fixture.engine.status(record.id).offset == 0)
    }

    @Test func checksumMismatchDiscardsTheChunk() async throws {
        let fixture = EngineFixture()
        let record = try await fixture.engine.create(.init(length: 8))
        let wrong = ChecksumExpectation(algorithm: .sha256, digest: Array(SHA256.hash(data: bytes(4, seed: 9))))
        #expect(await code { _ = try await fixture.append(record.id, at: 0, [bytes(4)], checksum: wrong) } == .checksumMismatch)
        #expect(try await fixture.engine.status(record.id).offset == 0)
        let right = ChecksumExpectation(algorithm: .md5, digest: Array(Insecure.MD5.hash(data: bytes(4))))
        #expect(try await fixture.append(record.id, at: 0, [bytes(4)], checksum: right).offset == 4)
    }

    @Test func trailerChecksum() async throws {
        let fixture = EngineFixture()
        let record = try await fixture.engine.create(.init(length: 8))
        let digest = Data(Insecure.SHA1.hash(data: bytes(4))).base64EncodedString()
        let bad = BodyEnd(complete: true, trailerChecksum: "sha1 \(Data(repeating: 0, count: 20).base64EncodedString())")
        #expect(await code { _ = try await fixture.append(record.id, at: 0, [bytes(4)], end: bad, trailer: true) } == .checksumMismatch)
        let missing = BodyEnd(complete: true, trailerChecksum: nil)
        #expect(await code { _ = try await fixture.append(record.id, at: 0, [bytes(4)], end: missing, trailer: true) } == .invalidChecksum)
        #expect(try await fixture.engine.status(record.id).offset == 0)
        let good = BodyEnd(complete: true, trailerChecksum: "sha1 \(digest)")
        #expect(try await fixture.append(record.id, at: 0, [bytes(4)], end: good, trailer: true).offset == 4)
    }

    @Test func interruptedBodyKeepsItsBytes() async throws {
        let fixture = EngineFixture()
        let record = try await fixture.engine.create(.init(length: 100))
        let broken = BodyEnd(complete: false)
        #expect(await code { _ = try await fixture.append(record.id, at: 0, [bytes(30), bytes(5)], end: broken) } == .requestIncomplete)
        #expect(try await fixture.engine.status(record.id).offset == 35)
        // With a checksum the partial chunk cannot be verified, so it is dropped.
        let checksum = ChecksumExpectation(algorithm: .sha1, digest: Array(Insecure.SHA1.hash(data: bytes(10))))
        #expect(await code { _ = try await fixture.append(record.id, at: 35, [bytes(5)], checksum: checksum, end: broken) } == .requestIncomplete)
        #expect(try await fixture.engine.status(record.id).offset == 35)
    }

    @Test func deferredLength() async throws {
        let fixture = EngineFixture()
        let record = try await fixture.engine.create(.init(length: nil))
        #expect(try await fixture.append(record.id, at: 0, [bytes(5)]).length == nil)
        #expect(await code { _ = try await fixture.append(record.id, at: 5, [], declaredLength: 4) } == .invalidLength)
        let set = try await fixture.append(record.id, at: 5, [bytes(5)], declaredLength: 10)
        #expect(set.length == 10)
        #expect(set.isComplete)
        #expect(await code { _ = try await fixture.append(record.id, at: 10, [], declaredLength: 11) } == .lengthImmutable)
    }

    @Test func acknowledgedBytesSurviveACrash() async throws {
        let fixture = EngineFixture()
        let record = try await fixture.engine.create(.init(length: 100))
        let acked = try await fixture.append(record.id, at: 0, [bytes(40)]).offset
        fixture.store.simulateCrash()
        #expect(fixture.store.storedLength(record.id) ?? 0 >= acked)
        #expect(try await fixture.engine.status(record.id).offset == acked)
    }

    @Test func lostBytesAnswerGoneNotAWrongOffset() async throws {
        let fixture = EngineFixture()
        let record = try await fixture.engine.create(.init(length: 100))
        _ = try await fixture.append(record.id, at: 0, [bytes(40)])
        try await fixture.store.delete(record.id)
        #expect(await code { _ = try await fixture.engine.status(record.id) } == .uploadGone)
        #expect(try await fixture.catalog.get(record.id)?.state == .lost)
    }

    @Test func newestRequestWins() async throws {
        let fixture = EngineFixture()
        let record = try await fixture.engine.create(.init(length: 1000))
        let (dead, continuation) = fixture.streamingAppend(record.id)
        continuation.yield(ByteBuffer(bytes: bytes(123)))
        // Wait until the dead request wrote its bytes, then a new HEAD takes over.
        try await fixture.waitForBytes(record.id, 123)
        let status = try await fixture.engine.status(record.id)
        #expect(status.offset == 123)
        #expect(await code { _ = try await dead.value } == .requestSuperseded)
        continuation.finish()
        #expect(try await fixture.append(record.id, at: 123, [bytes(877)]).isComplete)
    }

    @Test func aRequestWhoseBodyArrivesWhileDrainingCompletesAndKeepsItsChecksum() async throws {
        let fixture = EngineFixture()
        let record = try await fixture.engine.create(.init(length: 100))
        let checksum = ChecksumExpectation(algorithm: .sha256, digest: Array(SHA256.hash(data: bytes(60))))
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let engine = fixture.engine
        let running = Task {
            try await engine.append(record.id, AppendRequest(offset: 0, contentLength: 60, checksum: checksum), body: stream, transport: FakeTransport())
        }
        continuation.yield(ByteBuffer(bytes: bytes(60)))
        try await fixture.waitForBytes(record.id, 60)
        // A status poll arrives as the body ends: whichever comes first, nothing is discarded.
        async let status = engine.status(record.id)
        continuation.finish()
        #expect(try await running.value.offset == 60)
        #expect(try await status.offset == 60)
    }

    @Test func terminationLeavesATombstone() async throws {
        let fixture = EngineFixture()
        let record = try await fixture.engine.create(.init(length: 10))
        _ = try await fixture.append(record.id, at: 0, [bytes(4)])
        try await fixture.engine.terminate(record.id)
        #expect(fixture.store.bytes(record.id) == nil)
        #expect(await code { _ = try await fixture.engine.status(record.id) } == .uploadGone)
        #expect(await code { _ = try await fixture.append(record.id, at: 4, [bytes(1)]) } == .uploadGone)
        #expect(await code { try await fixture.engine.terminate(.random()) } == .uploadNotFound)
    }

    @Test func expiry() async throws {
        let fixture = EngineFixture(configuration: EngineConfiguration(expiry: .seconds(60), lockTimeout: .seconds(2)))
        let stale = try await fixture.engine.create(.init(length: 10))
        let finished = try await fixture.engine.create(.init(length: 2))
        _ = try await fixture.append(finished.id, at: 0, [bytes(2)])
        fixture.clock.advance(30)
        let active = try await fixture.engine.create(.init(length: 10))
        fixture.clock.advance(31)
        #expect(await code { _ = try await fixture.engine.status(stale.id) } == .uploadGone)
        #expect(await fixture.engine.expireDue() == 1)
        #expect(fixture.store.bytes(stale.id) == nil)
        #expect(try await fixture.catalog.get(stale.id)?.state == .expired)
        #expect(try await fixture.engine.status(active.id).offset == 0)
        #expect(try await fixture.engine.status(finished.id).isComplete)
        // Tombstones are purged after their retention.
        fixture.clock.advance(8 * 24 * 3600)
        _ = await fixture.engine.expireDue()
        #expect(try await fixture.catalog.get(stale.id) == nil)
    }

    @Test func concatenationAssemblesWhenPartialsComplete() async throws {
        let fixture = EngineFixture()
        let a = try await fixture.engine.create(.init(length: 3, isPartial: true))
        let b = try await fixture.engine.create(.init(length: nil, isPartial: true))
        _ = try await fixture.append(a.id, at: 0, [bytes(3, seed: 1)])
        // A partial listed twice would let one small request write a file many times its size.
        #expect(await code { _ = try await fixture.engine.createFinal(parts: [a.id, b.id, a.id], metadata: UploadMetadata()) } == .invalidConcat)
        let final = try await fixture.engine.createFinal(parts: [a.id, b.id], metadata: UploadMetadata())
        #expect(!final.isComplete)
        #expect(final.length == nil)
        _ = try await fixture.append(b.id, at: 0, [bytes(4, seed: 2)], declaredLength: 4)
        let done = try await fixture.engine.status(final.id)
        #expect(done.isComplete)
        #expect(done.length == 7)
        #expect(fixture.store.bytes(final.id) == bytes(3, seed: 1) + bytes(4, seed: 2))
        #expect(await code { _ = try await fixture.append(final.id, at: 7, []) } == .modifyFinal)
        let plain = try await fixture.engine.create(.init(length: 1))
        #expect(await code { _ = try await fixture.engine.createFinal(parts: [plain.id], metadata: UploadMetadata()) } == .invalidConcat)
    }

    @Test func fullStorageKeepsWhatFitAndResumes() async throws {
        let fixture = EngineFixture()
        let record = try await fixture.engine.create(.init(length: 100))
        fixture.store.setCapacity(60)
        let all = bytes(100)
        #expect(await code { _ = try await fixture.append(record.id, at: 0, [Array(all[..<50]), Array(all[50...])]) } == .storageFull)
        let saved = try await fixture.engine.status(record.id).offset
        #expect(saved == 60)
        fixture.store.setCapacity(nil)
        let rest = Array(bytes(100)[Int(saved)...])
        #expect(try await fixture.append(record.id, at: saved, [rest]).isComplete)
        #expect(fixture.store.bytes(record.id) == bytes(100))
    }

    @Test func shutdownSavesRunningAppendsAndRefusesNewOnes() async throws {
        let fixture = EngineFixture()
        let record = try await fixture.engine.create(.init(length: 1000))
        let (running, continuation) = fixture.streamingAppend(record.id)
        continuation.yield(ByteBuffer(bytes: bytes(77)))
        try await fixture.waitForBytes(record.id, 77)
        fixture.engine.beginShutdown()
        #expect(await code { _ = try await running.value } == .shuttingDown)
        #expect(try await fixture.catalog.get(record.id)?.offset == 77)
        #expect(await code { _ = try await fixture.append(record.id, at: 77, [bytes(1)]) } == .shuttingDown)
        continuation.finish()
    }

    @Test func checkpointsCommitProgressDuringALongAppend() async throws {
        let fixture = EngineFixture(configuration: EngineConfiguration(lockTimeout: .seconds(2), checkpointBytes: 100))
        let record = try await fixture.engine.create(.init(length: 1000))
        let (running, continuation) = fixture.streamingAppend(record.id)
        continuation.yield(ByteBuffer(bytes: bytes(150)))
        continuation.yield(ByteBuffer(bytes: bytes(10)))
        for _ in 0..<200 where try await fixture.catalog.get(record.id)?.offset != 150 {
            try await Task.sleep(for: .milliseconds(5))
        }
        // A crash now keeps the checkpointed offset.
        #expect(try await fixture.catalog.get(record.id)?.offset == 150)
        continuation.finish()
        #expect(try await running.value.offset == 160)
    }
}

@Suite("Orphan sweep")
struct SweepTests {
    @Test func sweepsOnlyOldBytesThatNoLiveUploadOwns() async throws {
        let fixture = EngineFixture()
        let live = try await fixture.engine.create(.init(length: 10))
        let terminated = try await fixture.engine.create(.init(length: 10))
        try await fixture.engine.terminate(terminated.id)
        let orphan = UploadID.random()
        let fresh = UploadID.random()
        for id in [orphan, fresh, terminated.id] { try await fixture.store.create(for: UploadRecord(id: id, length: nil, createdAt: .now)) }
        let old = fixture.clock.now.addingTimeInterval(-7200)
        for id in [live.id, orphan, terminated.id] { fixture.store.setModified(id, old) }
        fixture.store.setModified(fresh, fixture.clock.now)
        #expect(await fixture.engine.sweepOrphans(olderThan: .seconds(3600)) == 2)
        #expect(fixture.store.storedLength(orphan) == nil)
        #expect(fixture.store.storedLength(terminated.id) == nil)
        #expect(fixture.store.storedLength(live.id) == 0)
        #expect(fixture.store.storedLength(fresh) == 0)
    }
}
