import FerryCore
import FerryTestSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import FerryS3
@testable import FerryS3Store

/// The S3 byte store against the live store the test command started (RGW, or moto_server).
@Suite("S3 byte store", .enabled(if: LiveS3.configured, "FERRY_TEST_S3_ENDPOINT is not set (scripts/test.sh sets it)"))
struct S3ByteStoreTests {
    static let partSize: Int64 = 5 << 20

    /// Runs `body` with a function making stores (each a "node": own spool folder) on one bucket
    /// and one key prefix of its own.
    static func withStores(spoolLimit: Int64 = 1 << 30, _ body: (_ makeStore: () throws -> S3ByteStore, _ client: S3Client) async throws -> Void) async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-s3-\(UUID().uuidString)").path
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let prefix = "t\(UInt32.random(in: 0...UInt32.max))/"
        var count = 0
        do {
            try await LiveS3.withClient(bucket: "ferry-store-test") { client in
                try await body({
                    count += 1
                    let configuration = S3StoreConfiguration(
                        keyPrefix: prefix, partSize: partSize, spoolDirectory: "\(root)/node\(count)", spoolLimit: spoolLimit
                    )
                    return try S3ByteStore(storage: client, configuration: configuration, threadPool: pool, logger: Logger(label: "test"))
                }, client)
            }
        } catch {
            try? await pool.shutdownGracefully()
            try? FileManager.default.removeItem(atPath: root)
            throw error
        }
        try await pool.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Byte `i` is `i * 7 + seed` (mod 256): a period of 256 bytes, copied whole (a per-byte
    /// map over megabytes in a debug build hogs the test process's threads for seconds).
    static func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
        let period = (0..<256).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count { bytes.append(contentsOf: period.prefix(count - bytes.count)) }
        return bytes
    }

    static func append(_ store: S3ByteStore, _ record: UploadRecord, _ bytes: [UInt8], piece: Int = 256 * 1024) async throws -> UploadRecord {
        var record = record
        let writer = try await store.openWriter(for: record, fence: nil)
        var position = 0
        while position < bytes.count {
            let end = min(position + piece, bytes.count)
            try await writer.write(ByteBuffer(bytes: bytes[position..<end]))
            position = end
        }
        record.offset = try await writer.sync()
        record.storeState = await writer.syncedState()
        if record.offset == record.length { record.state = .complete }
        await writer.close()
        return record
    }

    static func readAll(_ store: S3ByteStore, _ record: UploadRecord) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        try await store.read(record, range: 0..<record.offset) { bytes += Array($0.readableBytesView) }
        return bytes
    }

    @Test(arguments: ByteStoreConformance.checks)
    func conformance(_ check: ConformanceCheck<any ByteStore>) async throws {
        try await Self.withStores { makeStore, _ in
            try await check.run(try makeStore())
        }
    }

    @Test func anotherNodeContinuesFromTheCommittedPartsAndTail() async throws {
        try await Self.withStores { makeStore, client in
            let nodeA = try makeStore()
            let nodeB = try makeStore()
            let first = Self.pattern(7 << 20, seed: 1)
            let second = Self.pattern(6 << 20, seed: 2)
            var record = UploadRecord(id: .random(), length: Int64(first.count + second.count), createdAt: Date())
            try await nodeA.create(for: record)
            record = try await Self.append(nodeA, record, first)
            let state = try S3UploadState(record)
            #expect(state.parts.map(\.size) == [5 << 20] && state.tailLength == 2 << 20, "one part, the rest in a tail object")
            let tailKey = S3UploadKeys(prefix: nodeA.context.configuration.keyPrefix, id: record.id).tail(end: record.offset)
            #expect(try await client.headObject(key: tailKey) == 2 << 20)

            record = try await Self.append(nodeB, record, second)
            #expect(record.isComplete)
            #expect(try await Self.readAll(nodeA, record) == first + second, "node A reads what node B finished")
            #expect(try await client.headObject(key: tailKey) == nil, "the tail object is gone once the object is assembled")
            #expect(nodeA.spoolBytes == 0 && nodeB.spoolBytes == 0, "no spool bytes are left charged")
            try await nodeB.delete(record.id)
        }
    }

    /// Instant upload's reference: a multipart object copied in the store (`CopyObject`), read
    /// whole by the target after its holder is deleted; a holder not yet assembled is refused.
    @Test func aReferenceIsAServerSideCopyThatOutlivesItsHolder() async throws {
        try await Self.withStores { makeStore, client in
            let store = try makeStore()
            let bytes = Self.pattern(12 << 20, seed: 7)
            var holder = UploadRecord(id: .random(), length: Int64(bytes.count), createdAt: Date())
            try await store.create(for: holder)
            holder = try await Self.append(store, holder, bytes)
            let holderState = try S3UploadState(holder)
            #expect(holder.isComplete && holderState.objectLength == Int64(bytes.count))
            var target = UploadRecord(id: .random(), length: Int64(bytes.count), createdAt: Date())
            try await store.create(for: target)
            target.storeState = try await store.reference(holder, into: target, fence: nil)
            (target.offset, target.state) = (Int64(bytes.count), .complete)
            let targetState = try S3UploadState(target)
            #expect(targetState.objectLength == Int64(bytes.count), "the target's state is its own object")
            try await store.delete(holder.id)
            #expect(try await client.headObject(key: store.keys(holder.id).object) == nil)
            #expect(try await Self.readAll(store, target) == bytes, "the copy is whole after its holder is gone")

            var unfinished = UploadRecord(id: .random(), length: 20 << 20, createdAt: Date())
            try await store.create(for: unfinished)
            unfinished = try await Self.append(store, unfinished, Self.pattern(6 << 20, seed: 8))
            let refused = await #expect(throws: FerryError.self) { _ = try await store.reference(unfinished, into: target, fence: nil) }
            #expect(refused?.code == .storageFailure)
            try await store.delete(target.id)
            try await store.delete(unfinished.id)
        }
    }

    @Test func theSpoolHoldsAFewPartsNotTheUpload() async throws {
        try await Self.withStores { makeStore, _ in
            let store = try makeStore()
            var record = UploadRecord(id: .random(), length: 40 << 20, createdAt: Date())
            try await store.create(for: record)
            let writer = try await store.openWriter(for: record, fence: nil)
            var peak: Int64 = 0
            let piece = Self.pattern(1 << 20, seed: 3)
            for _ in 0..<40 {
                try await writer.write(ByteBuffer(bytes: piece))
                peak = max(peak, store.spoolBytes)
            }
            record.offset = try await writer.sync()
            record.storeState = await writer.syncedState()
            await writer.close()
            #expect(record.offset == 40 << 20)
            let bound = Int64(store.context.configuration.partConcurrency + 1) * Self.partSize
            #expect(peak <= bound, "at most the parts in flight and the one filling are spooled (peak \(peak))")
            #expect(store.spoolBytes == 0)
            var bytes = 0
            try await store.read(record, range: (39 << 20)..<(40 << 20)) { bytes += $0.readableBytes }
            #expect(bytes == 1 << 20)
            try await store.delete(record.id)
        }
    }

    @Test func deleteAbortsTheMultipartUploadAndRemovesEveryObject() async throws {
        try await Self.withStores { makeStore, client in
            let store = try makeStore()
            var record = UploadRecord(id: .random(), length: nil, createdAt: Date())
            try await store.create(for: record)
            record = try await Self.append(store, record, Self.pattern(6 << 20, seed: 4))
            // A sync that was never committed leaves a second tail behind.
            _ = try await Self.append(store, record, Self.pattern(1000, seed: 5))
            let prefix = store.keys(record.id).object
            #expect(try await client.listMultipartUploads(prefix: prefix).count == 1)
            #expect(try await client.listObjects(prefix: prefix).count == 2)
            try await store.delete(record.id)
            #expect(try await client.listMultipartUploads(prefix: prefix).isEmpty)
            #expect(try await client.listObjects(prefix: prefix).isEmpty)
            #expect((try await store.storedLength(of: record) ?? 0) < record.offset, "a deleted upload's bytes are missing")
        }
    }

    @Test func concatenationCopiesLargePartialsServerSide() async throws {
        try await Self.withStores { makeStore, client in
            let store = try makeStore()
            var partials: [UploadRecord] = []
            var expected: [UInt8] = []
            for (index, size) in [(5 << 20) + 1, 6 << 20, 1000].enumerated() {
                let bytes = Self.pattern(size, seed: UInt8(10 + index))
                expected += bytes
                let record = UploadRecord(id: .random(), length: Int64(size), concat: .partial, createdAt: Date())
                partials.append(try await Self.append(store, record, bytes))
            }
            var final = UploadRecord(id: .random(), length: Int64(expected.count), concat: .final(partials.map(\.id)), createdAt: Date())
            final.storeState = try await store.concatenate(partials, into: final, fence: nil)
            final.offset = Int64(expected.count)
            final.state = .complete
            #expect(try await Self.readAll(store, final) == expected)
            #expect(try await client.headObject(key: store.keys(final.id).object) == Int64(expected.count))
            for record in partials + [final] { try await store.delete(record.id) }
        }
    }

    @Test func aCompletionThatWasNeverCommittedIsRebuiltFromTheObject() async throws {
        try await Self.withStores { makeStore, client in
            let store = try makeStore()
            let first = Self.pattern(7 << 20, seed: 30)
            let lost = Self.pattern(5 << 20, seed: 31)
            let resent = Self.pattern(5 << 20, seed: 32)
            var record = UploadRecord(id: .random(), length: 12 << 20, createdAt: Date())
            record = try await Self.append(store, record, first)
            // The multipart upload is completed, but the catalog never hears of it (a crash).
            let uncommitted = try await Self.append(store, record, lost)
            #expect(uncommitted.isComplete)
            #expect(try await client.headObject(key: store.keys(record.id).object) == 12 << 20)

            let resumed = try await Self.append(store, record, resent)
            #expect(resumed.isComplete)
            #expect(try await Self.readAll(store, resumed) == first + resent, "the committed bytes and the resent ones, nothing of the lost request")
            try await store.delete(record.id)
        }
    }

    @Test func manySmallRequestsLeaveNoTailObjectsBehind() async throws {
        try await Self.withStores { makeStore, client in
            let store = try makeStore()
            let sizes = [1 << 20, 2 << 20, 3 << 20, 1 << 20, 7 << 20]
            var record = UploadRecord(id: .random(), length: Int64(sizes.reduce(0, +)), createdAt: Date())
            var expected: [UInt8] = []
            let tails = store.keys(record.id).tailPrefix
            for (index, size) in sizes.enumerated() {
                let bytes = Self.pattern(size, seed: UInt8(40 + index))
                expected += bytes
                record = try await Self.append(store, record, bytes)
                let left = try await client.listObjects(prefix: tails)
                #expect(left.count <= 2, "the committed tail and at most the one before it, until the next request (\(left))")
            }
            #expect(record.isComplete)
            #expect(try await client.listObjects(prefix: tails).isEmpty, "assembly removes every tail")
            #expect(try await Self.readAll(store, record) == expected)
            try await store.delete(record.id)
        }
    }

    @Test func smallReadsAreCoalescedAndPartsKeepTheirExactSize() async throws {
        try await Self.withStores { makeStore, _ in
            let store = try makeStore()
            // Pieces of 3,001 bytes: they straddle every MiB of coalescing and every part boundary.
            let bytes = Self.pattern(Int(Self.partSize) * 2 + 777_777, seed: 61)
            var record = UploadRecord(id: .random(), length: nil, createdAt: Date())
            record = try await Self.append(store, record, bytes, piece: 3001)
            let state = try S3UploadState(record)
            #expect(state.parts.map(\.size) == [Self.partSize, Self.partSize], "every part is exactly the part size")
            #expect(state.tailLength == 777_777 && record.offset == Int64(bytes.count))
            record.length = record.offset
            record = try await Self.append(store, record, [])
            #expect(record.isComplete)
            #expect(try await Self.readAll(store, record) == bytes)
            try await store.delete(record.id)
        }
    }

    @Test func aStateThatDisagreesWithTheOffsetIsRefused() async throws {
        try await Self.withStores { makeStore, _ in
            let store = try makeStore()
            var record = UploadRecord(id: .random(), length: nil, offset: 10, createdAt: Date())
            await #expect(throws: FerryError.self) { _ = try await store.openWriter(for: record, fence: nil) }
            record.storeState = #"{"parts":[],"tailLength":5}"#
            await #expect(throws: FerryError.self) { _ = try await store.openWriter(for: record, fence: nil) }
        }
    }
}
