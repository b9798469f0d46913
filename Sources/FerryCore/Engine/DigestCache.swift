import Crypto
import Foundation
import Synchronization

/// The running SHA-256 of uploads between their requests, in this process.
///
/// The file digest is computed while bytes stream in; the next request on the same node
/// continues it. A request that finds no state at its start offset (the previous one ran on
/// another node, before a restart, or was cut short) hashes nothing, and the digest is read
/// back from the store when the upload completes.
final class DigestCache: Sendable {
    private let entries = Mutex<[UploadID: (offset: Int64, hash: SHA256)]>([:])
    /// Beyond this many uploads in progress, the oldest states are dropped (they fall back to
    /// reading back); each is about a hundred bytes.
    private let capacity: Int

    static let emptySHA256 = Hex.encode(SHA256.hash(data: [UInt8]()))

    init(capacity: Int = 100_000) {
        self.capacity = capacity
    }

    /// The hash state covering exactly `offset` bytes of the upload, removed from the cache.
    func take(_ id: UploadID, at offset: Int64) -> SHA256? {
        if offset == 0 {
            entries.withLock { _ = $0.removeValue(forKey: id) }
            return SHA256()
        }
        return entries.withLock { entries in
            guard let entry = entries.removeValue(forKey: id), entry.offset == offset else { return nil }
            return entry.hash
        }
    }

    func put(_ id: UploadID, at offset: Int64, _ hash: SHA256) {
        entries.withLock { entries in
            if entries.count >= capacity, entries[id] == nil {
                // Rare (that many uploads in progress at once): drop a slice, not one per call.
                for key in entries.keys.prefix(capacity / 10) { entries.removeValue(forKey: key) }
            }
            entries[id] = (offset, hash)
        }
    }

    func forget(_ id: UploadID) {
        entries.withLock { _ = $0.removeValue(forKey: id) }
    }

    static func hex(_ hash: SHA256) -> String {
        Hex.encode(hash.finalize())
    }
}
