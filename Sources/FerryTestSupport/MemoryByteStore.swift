import FerryCore
import Foundation
import NIOCore
import Synchronization

/// An in-memory `ByteStore` that models durability: written bytes are volatile until
/// `sync()`, and `simulateCrash()` drops every volatile byte, as power loss would.
public final class MemoryByteStore: ReadableByteStore, ConcatenatingByteStore, ReferencingByteStore, EnumerableByteStore {
    struct File {
        var bytes: [UInt8] = []
        var durable = 0
        var modified = Date()
    }

    public let name = "memory"
    let files = Mutex<[UploadID: File]>([:])
    /// Total bytes the store can hold; writes past it fail with `ERR_STORAGE_FULL`.
    let capacity = Mutex<Int64?>(nil)

    public init() {}

    public func setCapacity(_ bytes: Int64?) { capacity.withLock { $0 = bytes } }

    /// Loses every byte that was written but not synced.
    public func simulateCrash() {
        files.withLock { files in
            for (id, file) in files { files[id]?.bytes = Array(file.bytes.prefix(file.durable)) }
        }
    }

    public func bytes(_ id: UploadID) -> [UInt8]? { files.withLock { $0[id]?.bytes } }

    private let waiters = Mutex<[(id: UploadID, count: Int, reached: OneShot<Void>)]>([])

    /// Returns once the store holds at least `count` bytes of the upload (written, synced or not).
    public func waitForBytes(_ id: UploadID, _ count: Int) async {
        let reached = OneShot<Void>()
        waiters.withLock { $0.append((id, count, reached)) }
        written(id)
        await reached.value
    }

    /// Wakes the waiters whose byte count `id` reached.
    func written(_ id: UploadID) {
        let held = files.withLock { $0[id]?.bytes.count ?? 0 }
        let due = waiters.withLock { waiters -> [OneShot<Void>] in
            let due = waiters.filter { $0.id == id && $0.count <= held }.map(\.reached)
            waiters.removeAll { $0.id == id && $0.count <= held }
            return due
        }
        for shot in due { shot.fulfill(()) }
    }

    public func create(for record: UploadRecord) async throws(FerryError) {
        files.withLock { $0[record.id] = File() }
    }

    public func openWriter(for record: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> any ByteWriter {
        try fence?.check()
        let id = record.id
        let offset = record.offset
        try files.withLock { files throws(FerryError) in
            var file = files[id] ?? File()
            guard file.bytes.count >= Int(offset) else {
                throw FerryError(.storageFailure, "the store holds fewer bytes than the offset")
            }
            file.bytes.removeSubrange(Int(offset)...)
            file.durable = min(file.durable, Int(offset))
            files[id] = file
        }
        return Writer(store: self, id: id)
    }

    public func storedUploads() async throws(FerryError) -> [(id: UploadID, modified: Date)] {
        files.withLock { files in files.map { ($0.key, $0.value.modified) } }
    }

    /// Backdates an upload's bytes (for sweep tests).
    public func setModified(_ id: UploadID, _ date: Date) { files.withLock { $0[id]?.modified = date } }

    public func storedLength(of record: UploadRecord) async throws(FerryError) -> Int64? {
        storedLength(record.id)
    }

    /// What the store holds for `id` (for tests).
    public func storedLength(_ id: UploadID) -> Int64? {
        files.withLock { $0[id].map { Int64($0.bytes.count) } }
    }

    public func delete(_ id: UploadID) async throws(FerryError) {
        _ = files.withLock { $0.removeValue(forKey: id) }
    }

    public func read(_ record: UploadRecord, range: Range<Int64>, consume: (ByteBuffer) async throws -> Void) async throws {
        guard let bytes = bytes(record.id), bytes.count >= Int(range.upperBound) else {
            throw FerryError(.storageFailure, "the upload is shorter than the range")
        }
        var position = Int(range.lowerBound)
        while position < Int(range.upperBound) {
            let end = min(position + 65_536, Int(range.upperBound))
            try await consume(ByteBuffer(bytes: bytes[position..<end]))
            position = end
        }
    }

    public func concatenate(_ parts: [UploadRecord], into target: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> String? {
        try fence?.check()
        try files.withLock { files throws(FerryError) in
            var combined: [UInt8] = []
            for part in parts {
                let length = part.offset
                guard let file = files[part.id], file.bytes.count >= Int(length) else {
                    throw FerryError(.storageFailure, "a partial upload is shorter than its length")
                }
                combined += file.bytes.prefix(Int(length))
            }
            files[target.id] = File(bytes: combined, durable: combined.count)
        }
        return nil
    }

    /// A copy: memory has no links.
    public func reference(_ holder: UploadRecord, into target: UploadRecord, fence: LeaseFence?) async throws(FerryError) -> String? {
        try await concatenate([holder], into: target, fence: fence)
    }

    struct Writer: ByteWriter {
        let store: MemoryByteStore
        let id: UploadID

        func write(_ buffer: ByteBuffer) async throws(FerryError) {
            let limit = store.capacity.withLock { $0 }
            try store.files.withLock { files throws(FerryError) in
                var file = files[id] ?? File()
                var bytes = Array(buffer.readableBytesView)
                var full = false
                if let limit {
                    let used = files.values.reduce(0) { $0 + $1.bytes.count }
                    let room = max(0, Int(limit) - used)
                    if bytes.count > room {
                        bytes = Array(bytes.prefix(room))
                        full = true
                    }
                }
                file.bytes += bytes
                files[id] = file
                if full { throw FerryError(.storageFull, "the memory store is full") }
            }
            store.written(id)
        }

        func sync() async throws(FerryError) -> Int64 {
            store.files.withLock { files in
                guard var file = files[id] else { return 0 }
                file.durable = file.bytes.count
                files[id] = file
                return Int64(file.durable)
            }
        }

        func close() async {}
    }
}
