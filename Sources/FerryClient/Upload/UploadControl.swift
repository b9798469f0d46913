import Synchronization

/// Pause, resume, cancel and network changes, signalled from any task to the running upload.
final class UploadControl: Sendable {
    enum Command: Sendable, Equatable {
        case none
        case pause
        case cancel(terminate: Bool)
        case networkChanged(NetworkKind)
    }

    private struct State {
        var generation = 0
        var paused = false
        var cancelled: Bool?
        var network: NetworkKind?
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    var generation: Int { state.withLock { $0.generation } }
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
            let waiter = state.withLock { $0.waiters.removeValue(forKey: key) }
            waiter?.resume()
        }
    }

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
