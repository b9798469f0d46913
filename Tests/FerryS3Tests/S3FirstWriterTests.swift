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

/// What a creation-with-upload costs on S3: the creating request's writer knows there are no
/// tail objects to look for, so a small upload is one PutObject; any other writer still finds
/// and removes the garbage an uncommitted request left.
@Suite("S3 first writer", .enabled(if: LiveS3.configured, "FERRY_TEST_S3_ENDPOINT is not set (scripts/test.sh sets it)"))
struct S3FirstWriterTests {
    /// Counts the calls made to the live client, by name.
    final class CountingStorage: ObjectStorage {
        let inner: S3Client
        private let counts = Mutex<[String: Int]>([:])
        init(_ inner: S3Client) { self.inner = inner }

        func count(_ name: String) { counts.withLock { $0[name, default: 0] += 1 } }
        var calls: [String: Int] { counts.withLock { $0 } }
        func reset() { counts.withLock { $0 = [:] } }

        func createMultipartUpload(key: String) async throws -> String {
            count("createMultipartUpload")
            return try await inner.createMultipartUpload(key: key)
        }
        func uploadPart<Body: AsyncSequence & Sendable>(key: String, uploadID: String, number: Int, length: Int64, body: Body) async throws -> String
        where Body.Element == ByteBuffer {
            count("uploadPart")
            return try await inner.uploadPart(key: key, uploadID: uploadID, number: number, length: length, body: body)
        }
        func uploadPartCopy(key: String, uploadID: String, number: Int, sourceKey: String, sourceRange: Range<Int64>?) async throws -> String {
            count("uploadPartCopy")
            return try await inner.uploadPartCopy(key: key, uploadID: uploadID, number: number, sourceKey: sourceKey, sourceRange: sourceRange)
        }
        func copyObject(key: String, sourceKey: String) async throws {
            count("copyObject")
            try await inner.copyObject(key: key, sourceKey: sourceKey)
        }
        func listParts(key: String, uploadID: String) async throws -> [S3Part] {
            count("listParts")
            return try await inner.listParts(key: key, uploadID: uploadID)
        }
        func completeMultipartUpload(key: String, uploadID: String, parts: [S3Part]) async throws {
            count("completeMultipartUpload")
            try await inner.completeMultipartUpload(key: key, uploadID: uploadID, parts: parts)
        }
        func abortMultipartUpload(key: String, uploadID: String) async throws {
            count("abortMultipartUpload")
            try await inner.abortMultipartUpload(key: key, uploadID: uploadID)
        }
        func putObject(key: String, bytes: ByteBuffer) async throws {
            count("putObject")
            try await inner.putObject(key: key, bytes: bytes)
        }
        func putObject<Body: AsyncSequence & Sendable>(key: String, length: Int64, body: Body) async throws where Body.Element == ByteBuffer {
            count("putObject")
            try await inner.putObject(key: key, length: length, body: body)
        }
        func listObjects(prefix: String) async throws -> [String] {
            count("listObjects")
            return try await inner.listObjects(prefix: prefix)
        }
        func listMultipartUploads(prefix: String) async throws -> [(key: String, uploadID: String)] {
            count("listMultipartUploads")
            return try await inner.listMultipartUploads(prefix: prefix)
        }
        func headObject(key: String) async throws -> Int64? {
            count("headObject")
            return try await inner.headObject(key: key)
        }
        func getObject(key: String, range: Range<Int64>?, consume: (ByteBuffer) async throws -> Void) async throws {
            count("getObject")
            try await inner.getObject(key: key, range: range, consume: consume)
        }
        func deleteObject(key: String) async throws {
            count("deleteObject")
            try await inner.deleteObject(key: key)
        }
    }

    static func withCountingStore(_ body: (S3ByteStore, CountingStorage) async throws -> Void) async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-s3-first-\(UUID().uuidString)").path
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        defer { try? FileManager.default.removeItem(atPath: root) }
        do {
            try await LiveS3.withClient(bucket: "ferry-store-test") { client in
                let storage = CountingStorage(client)
                let configuration = S3StoreConfiguration(
                    keyPrefix: "f\(UInt32.random(in: 0...UInt32.max))/", partSize: S3ByteStoreTests.partSize, spoolDirectory: root
                )
                try await body(try S3ByteStore(storage: storage, configuration: configuration, threadPool: pool, logger: Logger(label: "test")), storage)
            }
        } catch {
            try? await pool.shutdownGracefully()
            throw error
        }
        try await pool.shutdownGracefully()
    }

    /// Writes `bytes` through `writer` and syncs; the record as the engine would commit it.
    static func save(_ writer: any ByteWriter, _ record: UploadRecord, _ bytes: [UInt8]) async throws -> UploadRecord {
        var record = record
        try await writer.write(ByteBuffer(bytes: bytes))
        record.offset = try await writer.sync()
        record.storeState = await writer.syncedState()
        if record.offset == record.length { record.state = .complete }
        await writer.close()
        return record
    }

    @Test func aSmallCreationWithUploadIsOnePutObject() async throws {
        try await Self.withCountingStore { store, storage in
            let bytes = S3ByteStoreTests.pattern(256 * 1024, seed: 3)
            let record = UploadRecord(id: .random(), length: Int64(bytes.count), createdAt: Date())
            try await store.create(for: record)
            let writer = try await store.openFirstWriter(for: record, fence: nil)
            let saved = try await Self.save(writer, record, bytes)
            #expect(saved.isComplete)
            #expect(storage.calls == ["putObject": 1], "one PutObject, no listing (\(storage.calls))")
            #expect(try await S3ByteStoreTests.readAll(store, saved) == bytes)
            try await store.delete(record.id)
        }
    }

    @Test func theFirstWriterRemovesTheTailItWroteItselfWithoutListing() async throws {
        try await Self.withCountingStore { store, storage in
            let bytes = S3ByteStoreTests.pattern(3 << 20, seed: 5)
            let record = UploadRecord(id: .random(), length: Int64(bytes.count), createdAt: Date())
            let writer = try await store.openFirstWriter(for: record, fence: nil)
            try await writer.write(ByteBuffer(bytes: bytes[0..<(1 << 20)]))
            #expect(try await writer.sync() == 1 << 20, "the first MiB goes to a tail object")
            try await writer.write(ByteBuffer(bytes: bytes[(1 << 20)...]))
            #expect(try await writer.sync() == Int64(bytes.count))
            await writer.close()
            #expect(storage.calls["listObjects"] == nil, "the writer knows its own tails (\(storage.calls))")
            #expect(try await storage.inner.listObjects(prefix: store.keys(record.id).tailPrefix).isEmpty, "and removed them at assembly")
            try await store.delete(record.id)
        }
    }

    @Test func anotherWriterStillRemovesTheTailOfARequestThatWasNeverCommitted() async throws {
        try await Self.withCountingStore { store, storage in
            let bytes = S3ByteStoreTests.pattern(2 << 20, seed: 9)
            let record = UploadRecord(id: .random(), length: Int64(bytes.count), createdAt: Date())
            // A request that saved a tail and died before its commit: the record still says 0.
            let lost = try await store.openFirstWriter(for: record, fence: nil)
            _ = try await Self.save(lost, record, Array(bytes[0..<(1 << 20)]))
            let tails = store.keys(record.id).tailPrefix
            #expect(try await storage.inner.listObjects(prefix: tails).count == 1)
            // The retry is not the creating request: it looks for leftovers and removes them.
            let retry = try await store.openWriter(for: record, fence: nil)
            let saved = try await Self.save(retry, record, bytes)
            #expect(saved.isComplete)
            #expect((storage.calls["listObjects"] ?? 0) >= 1)
            #expect(try await storage.inner.listObjects(prefix: tails).isEmpty, "the uncommitted request's tail is gone")
            #expect(try await S3ByteStoreTests.readAll(store, saved) == bytes)
            try await store.delete(record.id)
        }
    }
}
