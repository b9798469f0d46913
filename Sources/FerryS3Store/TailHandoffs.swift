import FerryCore
import Synchronization

/// The spooled tail of each upload's last committed request on this node, kept for the next
/// request: a writer that opens exactly that committed state starts from the file instead of
/// reading the tail object back from S3 (one GET of up to a part less at every request boundary
/// of a long upload sent in several requests).
///
/// Only a copy: the tail object stays what every node reads, and an entry is used only when the
/// state the next request opens equals the one its writer committed (any other request that
/// committed since changed the state). An entry lives `lifetime` at most; a newer one for the same
/// upload replaces it; entries take at most `limit` spool bytes (the oldest go first).
final class TailHandoffs: Sendable {
    struct Entry: Sendable {
        let state: S3UploadState
        let file: SpoolFile
        let serial: UInt64
    }

    private struct Book {
        var entries: [UploadID: Entry] = [:]
        var serial: UInt64 = 0
        var bytes: Int64 = 0
    }

    private let book = Mutex(Book())
    let lifetime: Duration
    let limit: Int64

    init(lifetime: Duration, limit: Int64) {
        self.lifetime = lifetime
        self.limit = limit
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
        let (serial, dropped) = book.withLock { book -> (UInt64, [SpoolFile]) in
            var dropped: [SpoolFile] = []
            if let old = book.entries.removeValue(forKey: id) {
                book.bytes -= old.file.length
                dropped.append(old.file)
            }
            while book.bytes + size > limit, let oldest = book.entries.min(by: { $0.value.serial < $1.value.serial }) {
                book.entries[oldest.key] = nil
                book.bytes -= oldest.value.file.length
                dropped.append(oldest.value.file)
            }
            book.serial += 1
            book.entries[id] = Entry(state: state, file: file, serial: book.serial)
            book.bytes += size
            return (book.serial, dropped)
        }
        for file in dropped { await file.discard() }
        let lifetime = lifetime
        Task {
            try? await Task.sleep(for: lifetime)
            await self.expire(id, serial: serial)
        }
    }

    /// The entry kept for the upload (removed: the caller uses or discards its file).
    func take(_ id: UploadID) -> Entry? {
        book.withLock { book in
            guard let entry = book.entries.removeValue(forKey: id) else { return nil }
            book.bytes -= entry.file.length
            return entry
        }
    }

    private func expire(_ id: UploadID, serial: UInt64) async {
        let expired = book.withLock { book -> SpoolFile? in
            guard let entry = book.entries[id], entry.serial == serial else { return nil }
            book.entries[id] = nil
            book.bytes -= entry.file.length
            return entry.file
        }
        await expired?.discard()
    }
}
