import FerryCore
import Foundation
import NIOCore

/// The behaviour every `ByteStore` must show. Run it against each implementation.
///
/// The checks drive a store the way the engine does: a writer opens at a committed record,
/// `sync()` returns the durable end and `syncedState()` the state committed with it, and a
/// "crash" is a sync whose result is never committed.
public enum ByteStoreConformance {
    /// Every check, by name; each runs on a fresh, empty subject.
    public static let checks: [ConformanceCheck<any ByteStore>] = [
        ConformanceCheck("createsEmpty") { try await createsEmpty($0) },
        ConformanceCheck("appendsAndSyncs") { try await appendsAndSyncs($0) },
        ConformanceCheck("reopenDiscardsUncommitted") { try await reopenDiscardsUncommitted($0) },
        ConformanceCheck("spansManyRequestsAndCheckpoints") { try await spansManyRequestsAndCheckpoints($0) },
        ConformanceCheck("deleteIsIdempotent") { try await deleteIsIdempotent($0) },
        ConformanceCheck("uploadsAreIndependent") { try await uploadsAreIndependent($0) },
        ConformanceCheck("readsRanges") { try await readsRanges($0) },
        ConformanceCheck("concatenates") { try await concatenates($0) },
        ConformanceCheck("enumerates") { try await enumerates($0) },
        ConformanceCheck("referencesAndKeepsEachSide") { try await referencesAndKeepsEachSide($0) },
    ]

    static let epoch = Date(timeIntervalSince1970: 1_700_000_000)

    static func created(_ store: any ByteStore, length: Int64?) async throws -> UploadRecord {
        let record = UploadRecord(id: .random(), length: length, createdAt: epoch)
        try await store.create(for: record)
        return record
    }

    static func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
    }

    /// Appends `bytes` as one request, syncing every `checkpoint` bytes as the engine's
    /// checkpoints do; returns the record as the engine would commit it.
    static func append(
        _ store: any ByteStore,
        _ record: UploadRecord,
        _ bytes: [UInt8],
        piece: Int = 70_000,
        checkpoint: Int? = nil
    ) async throws -> UploadRecord {
        var record = record
        let writer = try await store.openWriter(for: record, fence: nil)
        var position = 0
        var sinceSync = 0
        while position < bytes.count {
            let end = min(position + piece, bytes.count)
            try await writer.write(ByteBuffer(bytes: bytes[position..<end]))
            sinceSync += end - position
            position = end
            if let checkpoint, sinceSync >= checkpoint, position < bytes.count {
                sinceSync = 0
                let saved = try await writer.checkpoint()
                try require(saved >= record.offset, "a checkpoint never goes back")
                record.offset = saved
                record.storeState = await writer.syncedState()
            }
        }
        record.offset = try await writer.sync()
        record.storeState = await writer.syncedState()
        if record.offset == record.length { record.state = .complete }
        await writer.close()
        return record
    }

    static func readAll(_ store: any ByteStore, _ record: UploadRecord, _ range: Range<Int64>) async throws -> [UInt8]? {
        guard let readable = store as? any ReadableByteStore else { return nil }
        var bytes: [UInt8] = []
        try await readable.read(record, range: range) { bytes += Array($0.readableBytesView) }
        return bytes
    }

    static func createsEmpty(_ store: any ByteStore) async throws {
        let unknown = UploadRecord(id: .random(), length: nil, createdAt: epoch)
        try require((try await store.storedLength(of: unknown) ?? 0) == 0, "an unknown upload has no stored bytes")
        let record = try await created(store, length: nil)
        try require(try await store.storedLength(of: record) == 0, "a new upload stores 0 bytes")
    }

    static func appendsAndSyncs(_ store: any ByteStore) async throws {
        var record = try await created(store, length: 3_000_010)
        let first = pattern(3_000_000, seed: 1)
        record = try await append(store, record, first)
        try require(record.offset == 3_000_000, "sync returns the end offset")
        let second = pattern(10, seed: 2)
        record = try await append(store, record, second)
        try require(record.offset == 3_000_010, "a second writer appends")
        try require(try await store.storedLength(of: record) == 3_000_010, "stored length counts both appends")
        if let back = try await readAll(store, record, 0..<3_000_010) {
            try require(back == first + second, "bytes read back equal bytes written")
        }
    }

    static func reopenDiscardsUncommitted(_ store: any ByteStore) async throws {
        let initial = try await created(store, length: 800)
        let committed = try await append(store, initial, pattern(500, seed: 3))
        // Synced but never committed (a crash before the catalog write, or a rejected chunk).
        _ = try await append(store, committed, pattern(500, seed: 11))
        let replacement = pattern(300, seed: 4)
        let record = try await append(store, committed, replacement)
        try require(record.offset == 800, "rewriting from the committed 500 ends at 800")
        try require(try await store.storedLength(of: record) == 800, "the uncommitted bytes are gone")
        if let back = try await readAll(store, record, 0..<800) {
            try require(back == pattern(500, seed: 3) + replacement, "committed prefix kept, uncommitted tail replaced")
        }
    }

    /// Requests of uneven sizes, one with checkpoints inside it, across several MiB (more than
    /// an object store's part), then a ranged read across the request boundaries.
    static func spansManyRequestsAndCheckpoints(_ store: any ByteStore) async throws {
        let sizes = [1_500_000, 7_300_001, 2_000_000, 123]
        let total = sizes.reduce(0, +)
        var record = try await created(store, length: Int64(total))
        var expected: [UInt8] = []
        for (index, size) in sizes.enumerated() {
            let bytes = pattern(size, seed: UInt8(20 + index))
            expected += bytes
            record = try await append(store, record, bytes, piece: 262_144, checkpoint: index == 1 ? 3_000_000 : nil)
            try require(record.offset == Int64(expected.count), "each request ends at the sum of the bytes sent")
        }
        try require(record.isComplete, "the last request completes the upload")
        if let back = try await readAll(store, record, 1_000_000..<Int64(total - 50)) {
            try require(back == Array(expected[1_000_000..<(total - 50)]), "a range across requests reads exactly its bytes")
        }
    }

    static func deleteIsIdempotent(_ store: any ByteStore) async throws {
        var record = try await created(store, length: nil)
        record = try await append(store, record, pattern(100, seed: 5))
        try await store.delete(record.id)
        try await store.delete(record.id)
        try require((try await store.storedLength(of: record) ?? 0) == 0, "a deleted upload stores nothing")
    }

    static func uploadsAreIndependent(_ store: any ByteStore) async throws {
        let a = try await created(store, length: 200_000)
        let b = try await created(store, length: 100_000)
        async let first = append(store, a, pattern(200_000, seed: 6))
        async let second = append(store, b, pattern(100_000, seed: 7))
        let (doneA, doneB) = try await (first, second)
        try require(try await store.storedLength(of: doneA) == 200_000, "concurrent writers do not mix")
        try require(try await store.storedLength(of: doneB) == 100_000, "concurrent writers do not mix")
        if let back = try await readAll(store, doneB, 0..<100_000) {
            try require(back == pattern(100_000, seed: 7), "each upload keeps its own bytes")
        }
    }

    static func readsRanges(_ store: any ByteStore) async throws {
        var record = try await created(store, length: 600_000)
        let bytes = pattern(600_000, seed: 8)
        record = try await append(store, record, bytes)
        if let middle = try await readAll(store, record, 250_000..<550_001) {
            try require(middle == Array(bytes[250_000..<550_001]), "a range reads exactly its bytes")
        }
    }

    static func concatenates(_ store: any ByteStore) async throws {
        guard let concatenating = store as? any ConcatenatingByteStore else { return }
        let a = try await append(store, try await created(store, length: 1500), pattern(1500, seed: 9))
        let b = try await append(store, try await created(store, length: 2_100_000), pattern(2_100_000, seed: 10))
        var target = try await created(store, length: 2_103_000)
        target.storeState = try await concatenating.concatenate([a, b, a], into: target, fence: nil)
        target.offset = 2_103_000
        target.state = .complete
        try require(try await store.storedLength(of: target) == 2_103_000, "a final is as long as its parts")
        if let back = try await readAll(store, target, 0..<2_103_000) {
            let expected = pattern(1500, seed: 9) + pattern(2_100_000, seed: 10) + pattern(1500, seed: 9)
            try require(back == expected, "a final holds its parts in order")
        }
    }

    static func enumerates(_ store: any ByteStore) async throws {
        guard let enumerable = store as? any EnumerableByteStore else { return }
        let a = try await created(store, length: nil)
        let b = try await created(store, length: nil)
        try await store.delete(b.id)
        let listed = try await enumerable.storedUploads().map(\.id)
        try require(listed.contains(a.id), "a stored upload is listed")
        try require(!listed.contains(b.id), "a deleted upload is not listed")
    }

    /// An upload given a complete one's bytes reads them back; deleting the holder, or another
    /// upload given the same bytes, leaves it whole.
    static func referencesAndKeepsEachSide(_ store: any ByteStore) async throws {
        guard let referencing = store as? any ReferencingByteStore else { return }
        let bytes = pattern(300_000, seed: 21)
        let holder = try await append(store, try await created(store, length: 300_000), bytes)
        var target = try await created(store, length: 300_000)
        var other = try await created(store, length: 300_000)
        target.storeState = try await referencing.reference(holder, into: target, fence: nil)
        other.storeState = try await referencing.reference(holder, into: other, fence: nil)
        (target.offset, target.state, other.offset, other.state) = (300_000, .complete, 300_000, .complete)
        try require(try await store.storedLength(of: target) == 300_000, "a reference is as long as its holder")
        try await store.delete(holder.id)
        try await store.delete(other.id)
        try require(try await store.storedLength(of: target) == 300_000, "deleting the holder and another reference keeps it")
        if let back = try await readAll(store, target, 0..<300_000) {
            try require(back == bytes, "it reads the holder's bytes")
        }
    }
}
