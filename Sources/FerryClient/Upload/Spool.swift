import Foundation
import Synchronization

/// Keeps what a stream produced in a temporary file, so bytes sent but not acknowledged can be
/// sent again; the uploader sends from it while the stream is still producing.
final class Spool: Sendable {
    let url: URL
    private struct State {
        var available: Int64 = 0
        var finished = false
        var failure: String?
    }

    private let state = Mutex(State())
    private let signal = ChangeSignal()

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-stream-\(UUID().uuidString)")
        guard FileManager.default.createFile(atPath: url.path, contents: nil) else { throw CocoaError(.fileWriteUnknown) }
    }

    var snapshot: (available: Int64, finished: Bool, failure: String?, generation: Int) {
        let generation = signal.generation
        return state.withLock { ($0.available, $0.finished, $0.failure, generation) }
    }

    /// Appends everything `stream` produces, then marks the spool finished (or failed). The
    /// writes and the final `fsync` run off the cooperative pool (`BlockingIO`).
    func fill<S: AsyncSequence>(from stream: S) async where S.Element == [UInt8] {
        do {
            let url = self.url
            let handle = try await BlockingIO.run { _ in try FileHandle(forWritingTo: url) }
            defer { try? handle.close() }
            for try await chunk in stream where !chunk.isEmpty {
                try await BlockingIO.run { _ in try handle.write(contentsOf: Data(chunk)) }
                change { $0.available += Int64(chunk.count) }
            }
            try await BlockingIO.run { _ in try handle.synchronize() }
            change { $0.finished = true }
        } catch {
            change { $0.failure = "\(error)" }
        }
    }

    /// Returns once the spool changed after `generation` (or the task is cancelled).
    func changed(after generation: Int) async { await signal.changed(after: generation) }

    func remove() { try? FileManager.default.removeItem(at: url) }

    private func change(_ body: (inout State) -> Void) {
        state.withLock { body(&$0) }
        signal.bump()
    }
}
