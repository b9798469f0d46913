import FerryCore
import NIOCore

/// The behaviour every `ByteStore` must show. Run it against each implementation.
public enum ByteStoreConformance {
    /// Runs every check on stores made by `makeStore` (a fresh, empty store per call).
    public static func run(_ makeStore: () async throws -> any ByteStore) async throws {
        try await createsEmpty(makeStore())
        try await appendsAndSyncs(makeStore())
        try await reopenDiscardsTail(makeStore())
        try await deleteIsIdempotent(makeStore())
        try await uploadsAreIndependent(makeStore())
        try await readsRanges(makeStore())
        try await concatenates(makeStore())
        try await enumerates(makeStore())
    }

    static func enumerates(_ store: any ByteStore) async throws {
        guard let enumerable = store as? any EnumerableByteStore else { return }
        let a = UploadID.random()
        let b = UploadID.random()
        try await store.create(a)
        try await store.create(b)
        try await store.delete(b)
        let listed = try await enumerable.storedUploads().map(\.id)
        try require(listed.contains(a), "a stored upload is listed")
        try require(!listed.contains(b), "a deleted upload is not listed")
    }

    static func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
    }

    static func write(_ store: any ByteStore, _ id: UploadID, at offset: Int64, _ bytes: [UInt8], piece: Int = 70_000) async throws -> Int64 {
        let writer = try await store.openWriter(id, at: offset)
        var position = 0
        while position < bytes.count {
            let end = min(position + piece, bytes.count)
            try await writer.write(ByteBuffer(bytes: bytes[position..<end]))
            position = end
        }
        let durable = try await writer.sync()
        await writer.close()
        return durable
    }

    static func readAll(_ store: any ByteStore, _ id: UploadID, _ range: Range<Int64>) async throws -> [UInt8]? {
        guard let readable = store as? any ReadableByteStore else { return nil }
        var bytes: [UInt8] = []
        try await readable.read(id, range: range) { bytes += Array($0.readableBytesView) }
        return bytes
    }

    static func createsEmpty(_ store: any ByteStore) async throws {
        let id = UploadID.random()
        try require(try await store.storedLength(id) == nil, "an unknown upload has no stored length")
        try await store.create(id)
        try require(try await store.storedLength(id) == 0, "a new upload stores 0 bytes")
    }

    static func appendsAndSyncs(_ store: any ByteStore) async throws {
        let id = UploadID.random()
        try await store.create(id)
        let first = pattern(3_000_000, seed: 1)
        try require(try await write(store, id, at: 0, first) == 3_000_000, "sync returns the end offset")
        let second = pattern(10, seed: 2)
        try require(try await write(store, id, at: 3_000_000, second) == 3_000_010, "a second writer appends")
        try require(try await store.storedLength(id) == 3_000_010, "stored length counts both appends")
        if let back = try await readAll(store, id, 0..<3_000_010) {
            try require(back == first + second, "bytes read back equal bytes written")
        }
    }

    static func reopenDiscardsTail(_ store: any ByteStore) async throws {
        let id = UploadID.random()
        try await store.create(id)
        _ = try await write(store, id, at: 0, pattern(1000, seed: 3))
        // A writer opened at an earlier offset drops the unacknowledged tail.
        let replacement = pattern(300, seed: 4)
        try require(try await write(store, id, at: 500, replacement) == 800, "rewriting from 500 ends at 800")
        try require(try await store.storedLength(id) == 800, "the old tail past the offset is gone")
        if let back = try await readAll(store, id, 0..<800) {
            try require(back == Array(pattern(1000, seed: 3).prefix(500)) + replacement, "prefix kept, tail replaced")
        }
    }

    static func deleteIsIdempotent(_ store: any ByteStore) async throws {
        let id = UploadID.random()
        try await store.create(id)
        _ = try await write(store, id, at: 0, pattern(100, seed: 5))
        try await store.delete(id)
        try require(try await store.storedLength(id) == nil, "a deleted upload stores nothing")
        try await store.delete(id)
    }

    static func uploadsAreIndependent(_ store: any ByteStore) async throws {
        let a = UploadID.random()
        let b = UploadID.random()
        try await store.create(a)
        try await store.create(b)
        async let first = write(store, a, at: 0, pattern(200_000, seed: 6))
        async let second = write(store, b, at: 0, pattern(100_000, seed: 7))
        _ = try await (first, second)
        try require(try await store.storedLength(a) == 200_000, "concurrent writers do not mix")
        try require(try await store.storedLength(b) == 100_000, "concurrent writers do not mix")
        if let back = try await readAll(store, b, 0..<100_000) {
            try require(back == pattern(100_000, seed: 7), "each upload keeps its own bytes")
        }
    }

    static func readsRanges(_ store: any ByteStore) async throws {
        let id = UploadID.random()
        try await store.create(id)
        let bytes = pattern(600_000, seed: 8)
        _ = try await write(store, id, at: 0, bytes)
        if let middle = try await readAll(store, id, 250_000..<550_001) {
            try require(middle == Array(bytes[250_000..<550_001]), "a range reads exactly its bytes")
        }
    }

    static func concatenates(_ store: any ByteStore) async throws {
        guard let concatenating = store as? any ConcatenatingByteStore else { return }
        let a = UploadID.random()
        let b = UploadID.random()
        let target = UploadID.random()
        for id in [a, b, target] { try await store.create(id) }
        _ = try await write(store, a, at: 0, pattern(1500, seed: 9))
        _ = try await write(store, b, at: 0, pattern(2_100_000, seed: 10))
        try await concatenating.concatenate([a, b, a], lengths: [1500, 2_100_000, 1500], into: target)
        try require(try await store.storedLength(target) == 2_103_000, "a final is as long as its parts")
        if let back = try await readAll(store, target, 0..<2_103_000) {
            let expected = pattern(1500, seed: 9) + pattern(2_100_000, seed: 10) + pattern(1500, seed: 9)
            try require(back == expected, "a final holds its parts in order")
        }
    }
}
