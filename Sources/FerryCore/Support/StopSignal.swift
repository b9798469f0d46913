import Synchronization

/// Why an in-flight append was asked to stop before its body ended.
public enum StopReason: Sendable, Equatable {
    /// A newer request on the same upload wants the lock.
    case superseded
    /// The server is shutting down.
    case shutdown
}

/// A one-shot signal that a running append should save what it has and finish.
public final class StopSignal: Sendable {
    private struct State {
        var reason: StopReason?
        var nextWaiter: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<StopReason?, Never>] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    public var reason: StopReason? { state.withLock { $0.reason } }

    /// Fires the signal; the first reason wins.
    public func fire(_ reason: StopReason) {
        let waiters = state.withLock { state -> [CheckedContinuation<StopReason?, Never>] in
            guard state.reason == nil else { return [] }
            state.reason = reason
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: reason) }
    }

    /// Waits until the signal fires; returns nil if the waiting task is cancelled first.
    public func wait() async -> StopReason? {
        let key = state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<StopReason?, Never>) in
                let immediate = state.withLock { state -> StopReason?? in
                    if let reason = state.reason { return .some(reason) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiters[key] = continuation
                    return .none
                }
                if case .some(let value) = immediate { continuation.resume(returning: value) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: key) }
            waiter?.resume(returning: nil)
        }
    }
}
