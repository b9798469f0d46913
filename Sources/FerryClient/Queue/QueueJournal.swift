import Foundation
import Synchronization

/// Saves an `UploadQueue`'s state as `queue.json` in its directory: written to a temporary file,
/// flushed, then renamed over the old one, so a process killed at any moment leaves either the
/// old state or the new one. Writes run off the cooperative pool (`BlockingIO`).
///
/// The queue stages each new state under its own lock (so staged states are in order), then
/// awaits `flush`. A write takes the newest staged state, whoever staged it: states staged
/// while a write is under way share the next write, and one that a later write already covered
/// costs nothing.
final class QueueJournal: Sendable {
    let directory: URL
    var file: URL { directory.appendingPathComponent("queue.json") }

    private struct Staged {
        var generation = 0
        var state = QueueFile()
    }

    private struct Writer {
        /// The generation on disk.
        var written = 0
        /// Each member's JSON as last written: a write encodes only the members that changed.
        var encoded: [QueueItemID: (record: QueueRecord, json: Data)] = [:]
    }

    private let staged = Mutex(Staged())
    /// Held while writing, so writes are one at a time.
    private let writer = Mutex(Writer())

    init(directory: URL) {
        self.directory = directory
    }

    /// Reads the saved state (an empty queue when there is none) and removes temporary files
    /// a killed write left.
    func load() async throws(UploadQueueError) -> QueueFile {
        let directory = directory
        let file = file
        do {
            return try await BlockingIO.run { _ in
                let manager = FileManager.default
                try manager.createDirectory(at: directory, withIntermediateDirectories: true)
                for name in try manager.contentsOfDirectory(atPath: directory.path) where name.hasPrefix("queue.json.tmp-") {
                    try? manager.removeItem(at: directory.appendingPathComponent(name))
                }
                guard manager.fileExists(atPath: file.path) else { return QueueFile() }
                return try JSONDecoder().decode(QueueFile.self, from: Data(contentsOf: file))
            }
        } catch {
            throw UploadQueueError(.unreadableState, "\(file.path): \(error)")
        }
    }

    /// Records `state` as the newest; returns its generation for `flush`. Call it under the
    /// lock that orders the states.
    func stage(_ state: QueueFile) -> Int {
        staged.withLock { staged in
            staged.generation += 1
            staged.state = state
            return staged.generation
        }
    }

    /// Returns once generation `generation` (or a later one) is on disk.
    func flush(_ generation: Int) async throws(UploadQueueError) {
        do {
            try await BlockingIO.run { _ in try self.write(upTo: generation) }
        } catch let error as UploadQueueError {
            throw error
        } catch {
            throw UploadQueueError(.unwritableState, "\(file.path): \(error)")
        }
    }

    private func write(upTo generation: Int) throws {
        try writer.withLock { writer in
            guard writer.written < generation else { return }
            let (newest, state) = staged.withLock { ($0.generation, $0.state) }
            let data = try Self.encode(state, reusing: &writer.encoded)
            let temporary = directory.appendingPathComponent("queue.json.tmp-\(UUID().uuidString)")
            do {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
                    throw UploadQueueError(.unwritableState, "cannot create \(temporary.path)")
                }
                let handle = try FileHandle(forWritingTo: temporary)
                do {
                    try handle.write(contentsOf: data)
                    try handle.synchronize()
                } catch {
                    try? handle.close()
                    throw error
                }
                try handle.close()
                guard rename(temporary.path, file.path) == 0 else {
                    throw UploadQueueError(.unwritableState, "cannot rename \(temporary.lastPathComponent) to queue.json: errno \(errno)")
                }
            } catch {
                try? FileManager.default.removeItem(at: temporary)
                throw error
            }
            writer.written = newest
        }
    }

    /// `state` as `JSONEncoder` would write it (so `load` decodes it), encoding only the
    /// members that changed since the last write.
    static func encode(_ state: QueueFile, reusing cache: inout [QueueItemID: (record: QueueRecord, json: Data)]) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var next: [QueueItemID: (record: QueueRecord, json: Data)] = [:]
        var data = Data("{\"format\":\(state.format),\"items\":[".utf8)
        for (position, record) in state.items.enumerated() {
            let json: Data
            if let cached = cache[record.id], cached.record == record {
                json = cached.json
            } else {
                json = try encoder.encode(record)
            }
            next[record.id] = (record, json)
            if position > 0 { data.append(UInt8(ascii: ",")) }
            data.append(json)
        }
        data.append(contentsOf: Data("],\"nextSequence\":\(state.nextSequence)}".utf8))
        cache = next
        return data
    }
}

/// The queue's own state could not be read or saved, or a file cannot be enqueued.
public struct UploadQueueError: Error, Sendable, Equatable, CustomStringConvertible {
    enum Code: String, Sendable {
        case unreadableState = "ERR_QUEUE_STATE_UNREADABLE"
        case unwritableState = "ERR_QUEUE_STATE_UNWRITABLE"
        case notAFile = "ERR_QUEUE_NOT_A_FILE"
        case invalidEndpoint = "ERR_QUEUE_INVALID_ENDPOINT"
    }

    let code: Code
    /// What went wrong, and where.
    public let message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A stable code: `ERR_QUEUE_STATE_UNREADABLE`, `ERR_QUEUE_STATE_UNWRITABLE`,
    /// `ERR_QUEUE_NOT_A_FILE` or `ERR_QUEUE_INVALID_ENDPOINT`.
    public var errorCode: String { code.rawValue }

    public var description: String { "\(code.rawValue): \(message)" }
}
