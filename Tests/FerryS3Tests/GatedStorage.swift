import FerryS3
import NIOCore
import Synchronization

/// The live store with a hand on it: chosen part numbers wait for `open(part:)` (or fail), and
/// the calls made are counted, so tests can see what a writer confirms while parts are in flight.
final class GatedStorage: ObjectStorage {
    struct Book {
        var closed: Set<Int> = []
        var failing: Set<Int> = []
        var finishedParts: Set<Int> = []
        var putKeys: [String] = []
        var gets = 0
        var deletesHeld = false
        var deletedKeys: [String] = []
    }

    struct Refused: Error {}

    let base: any ObjectStorage
    let book = Mutex(Book())

    init(_ base: any ObjectStorage) { self.base = base }

    /// Part `number` waits until `open(part:)`.
    func close(part number: Int) { book.withLock { _ = $0.closed.insert(number) } }
    func open(part number: Int) { book.withLock { _ = $0.closed.remove(number) } }
    /// Part `number` fails (after its gate opens).
    func fail(part number: Int) { book.withLock { _ = $0.failing.insert(number) } }

    var finishedParts: Set<Int> { book.withLock { $0.finishedParts } }
    var gets: Int { book.withLock { $0.gets } }
    var putKeys: [String] { book.withLock { $0.putKeys } }
    var deletedKeys: [String] { book.withLock { $0.deletedKeys } }
    /// Object deletions wait (at most 20 s) while held.
    func holdDeletes(_ held: Bool) { book.withLock { $0.deletesHeld = held } }

    /// Waits (polling) until `condition` holds, at most 20 s.
    func until(_ condition: (GatedStorage) -> Bool) async throws {
        for _ in 0..<2000 where !condition(self) { try await Task.sleep(for: .milliseconds(10)) }
    }

    func uploadPart<Body: AsyncSequence & Sendable>(key: String, uploadID: String, number: Int, length: Int64, body: Body) async throws -> String
    where Body.Element == ByteBuffer {
        while book.withLock({ $0.closed.contains(number) }) { try await Task.sleep(for: .milliseconds(10)) }
        if book.withLock({ $0.failing.contains(number) }) { throw Refused() }
        let etag = try await base.uploadPart(key: key, uploadID: uploadID, number: number, length: length, body: body)
        book.withLock { _ = $0.finishedParts.insert(number) }
        return etag
    }

    func putObject<Body: AsyncSequence & Sendable>(key: String, length: Int64, body: Body) async throws where Body.Element == ByteBuffer {
        try await base.putObject(key: key, length: length, body: body)
        book.withLock { $0.putKeys.append(key) }
    }

    func getObject(key: String, range: Range<Int64>?, consume: (ByteBuffer) async throws -> Void) async throws {
        book.withLock { $0.gets += 1 }
        try await base.getObject(key: key, range: range, consume: consume)
    }

    func createMultipartUpload(key: String) async throws -> String { try await base.createMultipartUpload(key: key) }
    func uploadPartCopy(key: String, uploadID: String, number: Int, sourceKey: String, sourceRange: Range<Int64>?) async throws -> String {
        try await base.uploadPartCopy(key: key, uploadID: uploadID, number: number, sourceKey: sourceKey, sourceRange: sourceRange)
    }
    func copyObject(key: String, sourceKey: String) async throws { try await base.copyObject(key: key, sourceKey: sourceKey) }
    func listParts(key: String, uploadID: String) async throws -> [S3Part] { try await base.listParts(key: key, uploadID: uploadID) }
    func completeMultipartUpload(key: String, uploadID: String, parts: [S3Part]) async throws {
        try await base.completeMultipartUpload(key: key, uploadID: uploadID, parts: parts)
    }
    func abortMultipartUpload(key: String, uploadID: String) async throws { try await base.abortMultipartUpload(key: key, uploadID: uploadID) }
    func putObject(key: String, bytes: ByteBuffer) async throws { try await base.putObject(key: key, bytes: bytes) }
    func listObjects(prefix: String) async throws -> [String] { try await base.listObjects(prefix: prefix) }
    func listMultipartUploads(prefix: String) async throws -> [(key: String, uploadID: String)] {
        try await base.listMultipartUploads(prefix: prefix)
    }
    func headObject(key: String) async throws -> Int64? { try await base.headObject(key: key) }
    func deleteObject(key: String) async throws {
        for _ in 0..<2000 where book.withLock({ $0.deletesHeld }) { try await Task.sleep(for: .milliseconds(10)) }
        try await base.deleteObject(key: key)
        book.withLock { $0.deletedKeys.append(key) }
    }
}
