import Synchronization

/// The stop signals of every running append, so shutdown can ask them all to save and finish.
final class ActiveAppends: Sendable {
    private struct State {
        var next: UInt64 = 0
        var signals: [UInt64: StopSignal] = [:]
        var shuttingDown = false
    }

    private let state = Mutex(State())

    var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }

    /// Registers a signal; returns nil when the server is shutting down.
    func register(_ signal: StopSignal) -> UInt64? {
        state.withLock { state -> UInt64? in
            guard !state.shuttingDown else { return nil }
            state.next += 1
            state.signals[state.next] = signal
            return state.next
        }
    }

    func unregister(_ key: UInt64) {
        _ = state.withLock { $0.signals.removeValue(forKey: key) }
    }

    /// Refuses new appends and stops the running ones.
    func stopAll() {
        let signals = state.withLock { state -> [StopSignal] in
            state.shuttingDown = true
            return Array(state.signals.values)
        }
        for signal in signals { signal.fire(.shutdown) }
    }
}

extension UploadEngine {
    /// Stops accepting appends and asks every running append to save what it has and finish.
    /// Called at the start of a graceful shutdown.
    public func beginShutdown() {
        appends.stopAll()
    }
}

extension UploadEngine {
    /// True once `beginShutdown()` was called.
    public var isShuttingDown: Bool { appends.isShuttingDown }
}
