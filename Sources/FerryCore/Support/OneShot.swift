import Synchronization

/// A value set once and awaited by any number of tasks: the one primitive behind every
/// "wait until someone says" in Ferry (a stop request, a lock handed over, spool room granted,
/// a group commit's result, the migrations being applied). The first `fulfill` wins.
public final class OneShot<Value: Sendable>: Sendable {
    private struct State {
        var value: Value?
        var next: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Value?, Never>] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// The value, if it was set.
    public var current: Value? { state.withLock { $0.value } }

    /// Sets the value and wakes every waiter; false (and no change) when it was already set.
    @discardableResult
    public func fulfill(_ value: Value) -> Bool {
        let waiters = state.withLock { state -> [CheckedContinuation<Value?, Never>]? in
            guard state.value == nil else { return nil }
            state.value = value
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        guard let waiters else { return false }
        for waiter in waiters { waiter.resume(returning: value) }
        return true
    }

    /// Waits for the value however long it takes (cancellation does not end the wait: for
    /// values that always come, such as a lock handed over or refused by its timeout).
    public var value: Value {
        get async {
            if let value = current { return value }
            // Not cancellable, so the continuation always gets the value.
            let key = register()
            return await withCheckedContinuation { continuation in
                park(key, continuation, cancellable: false)
            }!
        }
    }

    /// Waits for the value; nil when the waiting task is cancelled first.
    public func wait() async -> Value? {
        if let value = current { return value }
        let key = register()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in park(key, continuation, cancellable: true) }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: key) }?.resume(returning: nil)
        }
    }

    private func register() -> UInt64 {
        state.withLock { state in
            state.next += 1
            return state.next
        }
    }

    private func park(_ key: UInt64, _ continuation: CheckedContinuation<Value?, Never>, cancellable: Bool) {
        let immediate = state.withLock { state -> Value?? in
            if let value = state.value { return .some(value) }
            if cancellable, Task.isCancelled { return .some(nil) }
            state.waiters[key] = continuation
            return .none
        }
        if case .some(let value) = immediate { continuation.resume(returning: value) }
    }
}
