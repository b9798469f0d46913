import FerryClock
import Synchronization

/// Wakes a polling service early: `signal()` makes the current or next `wait(upTo:)` return.
/// Signals coalesce; one waiter at a time.
public final class Wakeup: Sendable {
    private struct State {
        var signalled = false
        var waiter: CheckedContinuation<Void, Never>?
        /// Waits are numbered; a wait whose number is at most `released` is over.
        var generation: UInt64 = 0
        var released: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    public func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.signalled = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns after a signal or after `timeout`, whichever comes first (or at cancellation).
    public func wait(upTo timeout: Duration, clock: AnyClock = AnyClock(ContinuousClock())) async {
        let id = state.withLock { state -> UInt64? in
            if state.signalled {
                state.signalled = false
                return nil
            }
            state.generation += 1
            return state.generation
        }
        guard let id else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await clock.sleep(for: timeout)
                self.release(id)
            }
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let now = self.state.withLock { state -> Bool in
                        if state.released >= id { return true }
                        if state.signalled {
                            state.signalled = false
                            return true
                        }
                        state.waiter = continuation
                        return false
                    }
                    if now { continuation.resume() }
                }
            }
            await group.next()
            group.cancelAll()
            release(id)
            await group.waitForAll()
        }
    }

    private func release(_ id: UInt64) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.released = max(state.released, id)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }
}
