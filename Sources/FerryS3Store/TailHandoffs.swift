import FerryCore
import Synchronization

/// The spooled tail of each upload's last committed request on this node, kept for the next
/// request: a writer that opens exactly that committed state starts from the file instead of
/// reading the tail object back from S3 (one GET of up to a part less at every request boundary
/// of a long upload sent in several requests).
///
/// Only a copy: the tail object stays what every node reads, and an entry is used only when the
/// state the next request opens equals the one its writer committed (any other request that
/// committed since changed the state). A newer entry for the same upload replaces the older;
/// entries take at most `limit` spool bytes (the oldest go first); an entry older than `lifetime`
/// is dropped by the next `keep` or `take` on the node (no timer: an idle node holds at most
/// `limit` bytes until its next request, or the upload's deletion).
final class TailHandoffs: Sendable {
    struct Entry: Sendable {
        let state: S3UploadState
        let file: SpoolFile
        let size: Int64
        let kept: ContinuousClock.Instant
        let serial: UInt64
    }

    private struct Book {
        var entries: [UploadID: Entry] = [:]
        var serial: UInt64 = 0
        var bytes: Int64 = 0

        mutating func remove(_ id: UploadID) -> Entry? {
            guard let entry = entries.removeValue(forKey: id) else { return nil }
            bytes -= entry.size
            return entry
        }

        /// Removes the entries kept before `deadline`.
        mutating func removeKept(before deadline: ContinuousClock.Instant) -> [Entry] {
            let old = entries.filter { $0.value.kept < deadline }
            return old.keys.compactMap { remove($0) }
        }
    }

    private let book = Mutex(Book())
    let lifetime: Duration
    let limit: Int64
    private let now: @Sendable () -> ContinuousClock.Instant

    init(lifetime: Duration, limit: Int64, now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.lifetime = lifetime
        self.limit = limit
        self.now = now
    }

    /// Spool bytes held by entries.
    var bytes: Int64 { book.withLock { $0.bytes } }

    /// Keeps `file` (the tail bytes of the committed `state`) for the upload's next writer on this node.
    func keep(_ file: SpoolFile, state: S3UploadState, for id: UploadID) async {
        let size = file.length
        guard size > 0, size <= limit else {
            await file.discard()
            return
        }
        let now = now()
        let deadline = now - lifetime
        let dropped = book.withLock { book -> [Entry] in
            var dropped = book.removeKept(before: deadline)
            if let old = book.remove(id) { dropped.append(old) }
            while book.bytes + size > limit, let oldest = book.entries.min(by: { $0.value.serial < $1.value.serial })?.key {
                if let entry = book.remove(oldest) { dropped.append(entry) }
            }
            book.serial += 1
            book.entries[id] = Entry(state: state, file: file, size: size, kept: now, serial: book.serial)
            book.bytes += size
            return dropped
        }
        for entry in dropped { await entry.file.discard() }
    }

    /// The entry kept for the upload, removed (the caller uses or discards its file); expired
    /// entries of any upload go on the way.
    func take(_ id: UploadID) async -> Entry? {
        let deadline = now() - lifetime
        let (entry, dropped) = book.withLock { book in (book.remove(id), book.removeKept(before: deadline)) }
        for old in dropped { await old.file.discard() }
        guard let entry, entry.kept >= deadline else {
            await entry?.file.discard()
            return nil
        }
        return entry
    }
}
