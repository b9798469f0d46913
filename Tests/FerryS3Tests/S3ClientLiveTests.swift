import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

@testable import FerryS3

/// `S3Client` against a real S3 implementation named by `FERRY_TEST_S3_ENDPOINT` (and
/// `FERRY_TEST_S3_ACCESS_KEY` / `FERRY_TEST_S3_SECRET_KEY`): scripts/test.sh starts Ceph RGW, or
/// moto_server where radosgw is missing, and sets them.
@Suite("S3 client against a live store", .enabled(if: LiveS3.configured, "FERRY_TEST_S3_ENDPOINT is not set (scripts/test.sh sets it)"))
struct S3ClientLiveTests {
    static func withClient(_ body: (S3Client) async throws -> Void) async throws {
        try await LiveS3.withClient(bucket: "ferry-client-test", body)
    }

    static func bytes(_ count: Int, seed: UInt8) -> ByteBuffer {
        ByteBuffer(bytes: (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) })
    }

    @Test func multipartRoundTripWithCopyRangeAndAbort() async throws {
        try await Self.withClient { client in
            let key = "uploads/a b+c"
            let id = try await client.createMultipartUpload(key: key)
            let first = Self.bytes(5 << 20, seed: 1)
            let second = Self.bytes(1000, seed: 2)
            let etag1 = try await client.uploadPart(key: key, uploadID: id, number: 1, length: Int64(first.readableBytes), body: [first].async)
            let etag2 = try await client.uploadPart(key: key, uploadID: id, number: 2, length: Int64(second.readableBytes), body: [second].async)
            let parts = try await client.listParts(key: key, uploadID: id)
            #expect(parts == [S3Part(number: 1, size: 5 << 20, etag: etag1), S3Part(number: 2, size: 1000, etag: etag2)])
            try await client.completeMultipartUpload(key: key, uploadID: id, parts: parts)
            #expect(try await client.headObject(key: key) == Int64((5 << 20) + 1000))

            var read = ByteBuffer()
            try await client.getObject(key: key, range: (5 << 20)..<((5 << 20) + 1000)) { buffer in
                var buffer = buffer
                read.writeBuffer(&buffer)
            }
            #expect(read == second)

            // A part copied server-side from a range of the finished object.
            let copyKey = "uploads/copy"
            let copyID = try await client.createMultipartUpload(key: copyKey)
            let copied = try await client.uploadPartCopy(key: copyKey, uploadID: copyID, number: 1, sourceKey: key, sourceRange: 0..<(5 << 20))
            try await client.completeMultipartUpload(key: copyKey, uploadID: copyID, parts: [S3Part(number: 1, size: 5 << 20, etag: copied)])
            #expect(try await client.headObject(key: copyKey) == Int64(5 << 20))

            // An aborted upload is gone.
            let abandoned = try await client.createMultipartUpload(key: "uploads/abandoned")
            try await client.abortMultipartUpload(key: "uploads/abandoned", uploadID: abandoned)
            await #expect(throws: S3Response.Failure.self) { try await client.listParts(key: "uploads/abandoned", uploadID: abandoned) }

            try await client.putObject(key: "tails/x", bytes: Self.bytes(10, seed: 3))
            #expect(try await client.headObject(key: "tails/x") == 10)
            try await client.deleteObject(key: "tails/x")
            #expect(try await client.headObject(key: "tails/x") == nil)
            try await client.deleteObject(key: "tails/x")
        }
    }

    @Test func listsObjectsAndMultipartUploadsByPrefix() async throws {
        try await Self.withClient { client in
            let prefix = "list-\(UInt32.random(in: 0...UInt32.max))/"
            for name in ["a", "b/c", "d e"] {
                try await client.putObject(key: prefix + name, length: 3, body: [Self.bytes(3, seed: 1)].async)
            }
            try await client.putObject(key: "other-\(prefix)x", bytes: Self.bytes(1, seed: 1))
            #expect(try await client.listObjects(prefix: prefix).sorted() == [prefix + "a", prefix + "b/c", prefix + "d e"])
            let open = try await client.createMultipartUpload(key: prefix + "m")
            let listed = try await client.listMultipartUploads(prefix: prefix)
            #expect(listed.map(\.key) == [prefix + "m"] && listed.map(\.uploadID) == [open])
            try await client.abortMultipartUpload(key: prefix + "m", uploadID: open)
            #expect(try await client.listMultipartUploads(prefix: prefix).isEmpty)
            var read = ByteBuffer()
            try await client.getObject(key: prefix + "d e", range: nil) { buffer in
                var buffer = buffer
                read.writeBuffer(&buffer)
            }
            #expect(read == Self.bytes(3, seed: 1))
        }
    }

    @Test func aBadSignatureIsRefusedWithItsCode() async throws {
        try await Self.withClient { client in
            // moto checks signatures only with its auth switched on; at least the error path parses.
            await #expect(throws: S3Response.Failure.self) {
                _ = try await client.listParts(key: "missing", uploadID: "nope")
            }
        }
    }
}

extension Array where Element == ByteBuffer {
    /// The buffers as an async sequence (a request body).
    var async: AsyncStream<ByteBuffer> {
        AsyncStream { continuation in
            for buffer in self { continuation.yield(buffer) }
            continuation.finish()
        }
    }
}
