import Synchronization

/// Pause, resume, cancel and network changes, signalled from any task to the running upload.
final class UploadControl: Sendable {
    private struct State {
        var paused = false
        var cancelled: Bool?
        var network: NetworkKind?
    }

    private let state = Mutex(State())
    private let signal = ChangeSignal()

    var generation: Int { signal.generation }
    var isPaused: Bool { state.withLock { $0.paused } }
    /// nil while not cancelled; otherwise whether to delete the upload on the server.
    var cancellation: Bool? { state.withLock { $0.cancelled } }

    func pause() { change { $0.paused = true } }
    func resume() { change { $0.paused = false } }
    func cancel(terminate: Bool) { change { $0.cancelled = terminate } }
    func networkChanged(_ network: NetworkKind) { change { $0.network = network } }

    /// Takes a pending network change, if any.
    func takeNetworkChange() -> NetworkKind? {
        state.withLock { state in
            defer { state.network = nil }
            return state.network
        }
    }

    /// Returns once something changed after `generation`, or when the task is cancelled.
    func changed(after generation: Int) async { await signal.changed(after: generation) }

    private func change(_ body: (inout State) -> Void) {
        state.withLock { body(&$0) }
        signal.bump()
    }
}
