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
        var generation = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
    }

    private let state = Mutex(State())

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-stream-\(UUID().uuidString)")
        guard FileManager.default.createFile(atPath: url.path, contents: nil) else { throw CocoaError(.fileWriteUnknown) }
    }

    var snapshot: (available: Int64, finished: Bool, failure: String?, generation: Int) {
        state.withLock { ($0.available, $0.finished, $0.failure, $0.generation) }
    }

    /// Appends everything `stream` produces, then marks the spool finished (or failed).
    func fill<S: AsyncSequence>(from stream: S) async where S.Element == [UInt8] {
        do {
            let handle = try FileHandle(forWritingTo: url)
            defer { try? handle.close() }
            for try await chunk in stream where !chunk.isEmpty {
                try handle.write(contentsOf: Data(chunk))
                change { $0.available += Int64(chunk.count) }
            }
            try handle.synchronize()
            change { $0.finished = true }
        } catch {
            change { $0.failure = "\(error)" }
        }
    }

    /// Returns once the spool changed after `generation` (or the task is cancelled).
    func changed(after generation: Int) async {
        let key = state.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Bool in
                    if state.generation != generation || Task.isCancelled { return true }
                    state.waiters[key] = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: key) }?.resume()
        }
    }

    func remove() { try? FileManager.default.removeItem(at: url) }

    private func change(_ body: (inout State) -> Void) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            body(&state)
            state.generation += 1
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }
}
