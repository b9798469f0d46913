import FerryCore
import FerryTestSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import FerryS3
@testable import FerryS3Store

/// What an S3 writer reports while parts are still on their way: a checkpoint or a sync never
/// names bytes that are not in a confirmed part or tail object, and the pipeline is not drained
/// to take a checkpoint; a node's next request starts from the committed tail it kept.
@Suite("S3 pipeline", .enabled(if: LiveS3.configured, "FERRY_TEST_S3_ENDPOINT is not set (scripts/test.sh sets it)"))
struct S3PipelineTests {
    static let partSize = S3ByteStoreTests.partSize

    /// Runs `body` with a function making stores ("nodes", each its own spool) on gated storage.
    static func withGatedStores(_ body: (_ makeStore: () throws -> S3ByteStore, _ storage: GatedStorage) async throws -> Void) async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-s3p-\(UUID().uuidString)").path
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let prefix = "p\(UInt32.random(in: 0...UInt32.max))/"
        var count = 0
        defer { try? FileManager.default.removeItem(atPath: root) }
        do {
            try await LiveS3.withClient(bucket: "ferry-store-test") { client in
                let storage = GatedStorage(client)
                try await body({
                    count += 1
                    var configuration = S3StoreConfiguration(keyPrefix: prefix, partSize: partSize, spoolDirectory: "\(root)/node\(count)")
                    // Kept tails outlive a slow test run (the default is 10 s).
                    configuration.tailHandoffLifetime = .seconds(600)
                    return try S3ByteStore(storage: storage, configuration: configuration, threadPool: pool, logger: Logger(label: "test"))
                }, storage)
            }
        } catch {
            try? await pool.shutdownGracefully()
            throw error
        }
        try await pool.shutdownGracefully()
    }

    static func write(_ writer: any ByteWriter, _ bytes: [UInt8]) async throws {
        var position = 0
        while position < bytes.count {
            let end = min(position + (1 << 20), bytes.count)
            try await writer.write(ByteBuffer(bytes: bytes[position..<end]))
            position = end
        }
    }

    @Test func aCheckpointNeverCommitsPastAPartStillInFlight() async throws {
        try await Self.withGatedStores { makeStore, storage in
            let store = try makeStore()
            let bytes = S3ByteStoreTests.pattern(Int(Self.partSize) * 3 + (1 << 20), seed: 71)
            var record = UploadRecord(id: .random(), length: Int64(bytes.count), createdAt: Date())
            storage.close(part: 1)
            let writer = try await store.openWriter(for: record, fence: nil)
            try await Self.write(writer, bytes)
            try await storage.until { $0.finishedParts.isSuperset(of: [2, 3]) }
            #expect(storage.finishedParts == [2, 3])
            // Parts 2 and 3 are in S3, part 1 is not: nothing is durable from the start on.
            #expect(try await writer.checkpoint() == 0)
            #expect(try S3UploadState(decoding: await writer.syncedState()).parts.isEmpty)

            storage.open(part: 1)
            #expect(try await Self.checkpoint(writer, reaching: Self.partSize * 3) == Self.partSize * 3, "three confirmed parts, in order")
            let state = try S3UploadState(decoding: await writer.syncedState())
            #expect(state.parts.map(\.number) == [1, 2, 3] && state.tailLength == 0, "a checkpoint commits no spooled bytes")

            record.offset = try await writer.sync()
            record.storeState = await writer.syncedState()
            record.state = .complete
            await writer.close()
            #expect(try await S3ByteStoreTests.readAll(store, record) == bytes)
            try await store.delete(record.id)
        }
    }

    @Test func aSyncSendsItsTailAlongsideThePartsInFlightAndReportsOnlyOnceAllAreConfirmed() async throws {
        try await Self.withGatedStores { makeStore, storage in
            let store = try makeStore()
            let bytes = S3ByteStoreTests.pattern(Int(Self.partSize) * 2 + (2 << 20), seed: 72)
            var record = UploadRecord(id: .random(), length: nil, createdAt: Date())
            storage.close(part: 2)
            let writer = try await store.openWriter(for: record, fence: nil)
            try await Self.write(writer, bytes)
            let sync = Task { try await writer.sync() }
            let tail = store.keys(record.id).tail(end: Int64(bytes.count))
            try await storage.until { $0.putKeys.contains(tail) }
            #expect(storage.putKeys == [tail], "the tail went up while part 2 was held")
            #expect(try S3UploadState(decoding: await writer.syncedState()).tailLength == 0, "nothing reported while part 2 is in flight")

            storage.open(part: 2)
            record.offset = try await sync.value
            record.storeState = await writer.syncedState()
            await writer.close()
            let state = try S3UploadState(record)
            #expect(record.offset == Int64(bytes.count) && state.parts.count == 2 && state.tailLength == 2 << 20)
            record.length = record.offset
            record = try await S3ByteStoreTests.append(store, record, [])
            #expect(try await S3ByteStoreTests.readAll(store, record) == bytes)
            try await store.delete(record.id)
        }
    }

    @Test func aFailedPartLeavesTheLastCheckpointAndTheNextRequestContinuesFromIt() async throws {
        try await Self.withGatedStores { makeStore, storage in
            let store = try makeStore()
            let sent = S3ByteStoreTests.pattern(Int(Self.partSize) * 3 + (1 << 20), seed: 73)
            var record = UploadRecord(id: .random(), length: Int64(sent.count), createdAt: Date())
            storage.fail(part: 2)
            let writer = try await store.openWriter(for: record, fence: nil)
            try await Self.write(writer, sent)
            try await storage.until { $0.finishedParts.isSuperset(of: [1, 3]) }
            let checkpoint = try await Self.checkpoint(writer, reaching: Self.partSize)
            #expect(checkpoint == Self.partSize, "part 1 only: part 2 failed, part 3 is after it")
            let committed = await writer.syncedState()
            await #expect(throws: FerryError.self) { _ = try await writer.sync() }
            await writer.close()
            #expect(store.spoolBytes == 0)

            // The engine committed the checkpoint; the next request resends from there.
            (record.offset, record.storeState) = (checkpoint, committed)
            storage.book.withLock { $0.failing = [] }
            record = try await S3ByteStoreTests.append(store, record, Array(sent[Int(checkpoint)...]))
            #expect(record.isComplete)
            #expect(try await S3ByteStoreTests.readAll(store, record) == sent)
            try await store.delete(record.id)
        }
    }

    @Test func theNextRequestOnTheNodeStartsFromTheCommittedTailItKept() async throws {
        try await Self.withGatedStores { makeStore, storage in
            let nodeA = try makeStore()
            let nodeB = try makeStore()
            let pieces = [7 << 20, 4 << 20, 3 << 20, 3 << 20].enumerated().map { S3ByteStoreTests.pattern($1, seed: UInt8(80 + $0)) }
            var record = UploadRecord(id: .random(), length: Int64(pieces.map(\.count).reduce(0, +)), createdAt: Date())

            record = try await Self.committedAppend(nodeA, record, pieces[0])
            #expect(nodeA.context.handoffs.bytes == 2 << 20, "the committed 2 MiB tail stays on node A")
            record = try await Self.committedAppend(nodeA, record, pieces[1])
            #expect(storage.gets == 0, "node A's second request read no tail back")

            // Node B commits in between: node A's kept tail is of a state that is no longer committed.
            record = try await Self.committedAppend(nodeB, record, pieces[2])
            #expect(storage.gets == 1, "node B read the tail object")
            record = try await Self.committedAppend(nodeA, record, pieces[3])
            #expect(storage.gets == 2, "node A read the tail object: its copy was of an older state")
            #expect(record.isComplete)
            #expect(try await S3ByteStoreTests.readAll(nodeA, record) == pieces.reduce([], +))
            #expect(nodeA.spoolBytes == 0 && nodeA.context.handoffs.bytes == 0)
            #expect(nodeB.context.handoffs.bytes == 4 << 20, "node B still keeps the tail it committed")
            try await nodeA.delete(record.id)
            try await nodeB.delete(record.id)
            #expect(nodeB.spoolBytes == 0 && nodeB.context.handoffs.bytes == 0, "deleting the upload drops the kept tail")
        }
    }

    @Test func garbageTailsGoWhileTheBodyArrivesButBeforeTheWriterPutsItsOwn() async throws {
        try await Self.withGatedStores { makeStore, storage in
            let store = try makeStore()
            let first = S3ByteStoreTests.pattern(6 << 20, seed: 91)
            let lost = S3ByteStoreTests.pattern(2 << 20, seed: 92)
            let resent = S3ByteStoreTests.pattern(2 << 20, seed: 93)
            var record = UploadRecord(id: .random(), length: 12 << 20, createdAt: Date())
            record = try await S3ByteStoreTests.append(store, record, first)
            // A request that was never committed left the tail of 8 MiB; the next one ends there too.
            _ = try await S3ByteStoreTests.append(store, record, lost)
            let garbage = store.keys(record.id).tail(end: 8 << 20)
            #expect(try await storage.headObject(key: garbage) == 3 << 20)

            storage.holdDeletes(true)
            let writer = try await store.openWriter(for: record, fence: nil)
            #expect(storage.deletedKeys.isEmpty, "the writer is ready while the garbage's removal waits")
            try await Self.write(writer, resent)
            let sync = Task { try await writer.sync() }
            try await Task.sleep(for: .milliseconds(300))
            #expect(storage.putKeys.filter { $0 == garbage }.count == 1, "no new tail under the garbage's name yet")
            storage.holdDeletes(false)
            record.offset = try await sync.value
            record.storeState = await writer.syncedState()
            await writer.committed()
            await writer.close()
            #expect(storage.deletedKeys.contains(garbage))
            #expect(storage.putKeys.filter { $0 == garbage }.count == 2 && storage.putKeys.last == garbage, "its own tail went up after that")
            #expect(try await storage.headObject(key: garbage) == 3 << 20, "the committed tail of 8 MiB is there")

            record = try await Self.committedAppend(store, record, S3ByteStoreTests.pattern(4 << 20, seed: 94))
            #expect(record.isComplete)
            #expect(try await S3ByteStoreTests.readAll(store, record) == first + resent + S3ByteStoreTests.pattern(4 << 20, seed: 94))
            try await store.delete(record.id)
        }
    }

    @Test func anUncommittedSyncKeepsNoTail() async throws {
        try await Self.withGatedStores { makeStore, storage in
            let store = try makeStore()
            let record = UploadRecord(id: .random(), length: nil, createdAt: Date())
            let writer = try await store.openWriter(for: record, fence: nil)
            try await Self.write(writer, S3ByteStoreTests.pattern(3 << 20, seed: 90))
            _ = try await writer.sync()
            await writer.close()
            #expect(store.context.handoffs.bytes == 0 && store.spoolBytes == 0, "the engine never said it committed")
            try await store.delete(record.id)
        }
    }

    /// Checkpoints until the writer reports `offset` (its parts' tasks record them a moment after
    /// S3 answered), at most 20 s; returns the last offset reported.
    static func checkpoint(_ writer: any ByteWriter, reaching offset: Int64) async throws -> Int64 {
        var reported = try await writer.checkpoint()
        for _ in 0..<2000 where reported < offset {
            try await Task.sleep(for: .milliseconds(10))
            reported = try await writer.checkpoint()
        }
        return reported
    }

    /// One request the engine's way: write, sync, commit, tell the writer, close.
    static func committedAppend(_ store: S3ByteStore, _ record: UploadRecord, _ bytes: [UInt8]) async throws -> UploadRecord {
        var record = record
        let writer = try await store.openWriter(for: record, fence: nil)
        try await write(writer, bytes)
        record.offset = try await writer.sync()
        record.storeState = await writer.syncedState()
        if record.offset == record.length { record.state = .complete }
        await writer.committed()
        await writer.close()
        return record
    }
}

extension S3UploadState {
    init(decoding text: String?) throws {
        self = try JSONDecoder().decode(S3UploadState.self, from: Data((text ?? "").utf8))
    }
}

/// The node's kept tails without S3: bounded in bytes, one per upload, gone after their lifetime.
@Suite("S3 tail hand-offs")
struct TailHandoffsTests {
    @Test func keptTailsAreBoundedReplacedTakenAndExpire() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-handoffs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let budget = SpoolBudget(limit: 64 << 20, patience: .seconds(1))
        func file(_ count: Int) async throws -> SpoolFile {
            let file = try await SpoolFile(directory: root, threadPool: pool, budget: budget)
            try await file.append(ByteBuffer(repeating: 7, count: count))
            return file
        }
        let clock = Mutex(ContinuousClock.now)
        let (a, b, c) = (UploadID.random(), UploadID.random(), UploadID.random())
        let handoffs = TailHandoffs(lifetime: .seconds(10), limit: (5 << 20) / 2) { clock.withLock { $0 } }
        await handoffs.keep(try await file(1 << 20), state: S3UploadState(), for: a)
        await handoffs.keep(try await file(1 << 20), state: S3UploadState(), for: b)
        await handoffs.keep(try await file(1 << 20), state: S3UploadState(), for: c)
        #expect(handoffs.bytes == 2 << 20, "the oldest went to stay within the limit")
        #expect(budget.inUse == 2 << 20)
        #expect(await handoffs.take(a) == nil)
        await handoffs.keep(try await file(1 << 19), state: S3UploadState(), for: b)
        #expect(handoffs.bytes == 3 << 19, "a newer tail of the same upload replaces the older")
        #expect(budget.inUse == 3 << 19)
        let taken = try #require(await handoffs.take(c))
        #expect(taken.file.length == 1 << 20 && handoffs.bytes == 1 << 19)
        await taken.file.discard()

        clock.withLock { $0 += .seconds(11) }
        #expect(await handoffs.take(c) == nil)
        #expect(handoffs.bytes == 0, "an entry older than its lifetime goes with the next take")
        #expect(budget.inUse == 0)
        try await pool.shutdownGracefully()
    }
}
