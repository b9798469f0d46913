import FerryCore
import Synchronization

/// Holds catalog calls until `PostgresCatalog.run()` has applied the migrations, or fails
/// them with the reason it could not. The first outcome is final.
///
/// Waiting is not cancellable: it lasts at most as long as the migrations, which end (or fail)
/// within the pool's connect timeout when the database cannot be reached.
final class MigrationGate: Sendable {
    private enum State {
        case waiting([CheckedContinuation<Result<Void, FerryError>, Never>])
        case done(Result<Void, FerryError>)
    }

    private let state = Mutex(State.waiting([]))

    /// Returns once the migrations are applied; throws if they failed.
    func wait() async throws(FerryError) {
        // The common case, after start-up: no continuation.
        let done = state.withLock { state -> Result<Void, FerryError>? in
            if case .done(let result) = state { return result }
            return nil
        }
        if let done { return try done.get() }
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Void, FerryError>, Never>) in
            let now = state.withLock { state -> Result<Void, FerryError>? in
                switch state {
                case .done(let result):
                    return result
                case .waiting(var waiters):
                    waiters.append(continuation)
                    state = .waiting(waiters)
                    return nil
                }
            }
            if let now { continuation.resume(returning: now) }
        }
        try result.get()
    }

    /// Opens the gate (`.success`) or fails it; later calls change nothing.
    func finish(_ result: Result<Void, FerryError>) {
        let waiters = state.withLock { state -> [CheckedContinuation<Result<Void, FerryError>, Never>] in
            guard case .waiting(let waiters) = state else { return [] }
            state = .done(result)
            return waiters
        }
        for waiter in waiters { waiter.resume(returning: result) }
    }
}
