import Synchronization

/// The single-process `UploadLocker`: newest request wins, in memory.
///
/// Used by the single-node server (disk + SQLite) and by tests. A multi-node deployment
/// needs a locker whose state is shared between processes.
public final class LocalUploadLocker: UploadLocker {
    private struct Holder {
        var token: UInt64
        var onStop: @Sendable () -> Void
        var stopRequested: Bool
    }

    private struct Waiter {
        var token: UInt64
        var onStop: @Sendable () -> Void
        var grant: OneShot<Result<Void, FerryError>>
    }

    private struct Entry {
        var holder: Holder
        var waiter: Waiter?
    }

    private struct State {
        var nextToken: UInt64 = 0
        var entries: [UploadID: Entry] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Number of uploads currently locked (for tests and metrics).
    public var lockedCount: Int { state.withLock { $0.entries.count } }

    public func lock(
        _ id: UploadID,
        timeout: Duration,
        onStopRequest: @escaping @Sendable () -> Void
    ) async throws(FerryError) -> any UploadLease {
        let token = state.withLock { state -> UInt64 in
            state.nextToken += 1
            return state.nextToken
        }
        let result: Result<Void, FerryError> = await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    try await Task.sleep(for: timeout)
                } catch {
                    return
                }
                self.expireWaiter(id, token: token)
            }
            let grant = OneShot<Result<Void, FerryError>>()
            self.enqueue(id, token: token, onStop: onStopRequest, grant: grant)
            let result = await grant.value
            group.cancelAll()
            return result
        }
        try result.get()
        return Lease(locker: self, id: id, token: token)
    }

    private func enqueue(
        _ id: UploadID,
        token: UInt64,
        onStop: @escaping @Sendable () -> Void,
        grant: OneShot<Result<Void, FerryError>>
    ) {
        var stopHolder: (@Sendable () -> Void)?
        var superseded: Waiter?
        var acquired = false
        state.withLock { state in
            guard var entry = state.entries[id] else {
                state.entries[id] = Entry(holder: Holder(token: token, onStop: onStop, stopRequested: false))
                acquired = true
                return
            }
            if !entry.holder.stopRequested {
                entry.holder.stopRequested = true
                stopHolder = entry.holder.onStop
            }
            superseded = entry.waiter
            entry.waiter = Waiter(token: token, onStop: onStop, grant: grant)
            state.entries[id] = entry
        }
        if acquired {
            grant.fulfill(.success(()))
            return
        }
        superseded?.grant.fulfill(.failure(FerryError(.requestSuperseded, "a newer request on this upload arrived while this one waited")))
        stopHolder?()
    }

    private func expireWaiter(_ id: UploadID, token: UInt64) {
        let waiter = state.withLock { state -> Waiter? in
            guard var entry = state.entries[id], let waiter = entry.waiter, waiter.token == token else { return nil }
            entry.waiter = nil
            state.entries[id] = entry
            return waiter
        }
        waiter?.grant.fulfill(.failure(FerryError(.uploadLocked, "the request holding this upload did not release it in time")))
    }

    fileprivate func release(_ id: UploadID, token: UInt64) {
        let next = state.withLock { state -> Waiter? in
            guard var entry = state.entries[id], entry.holder.token == token else { return nil }
            guard let waiter = entry.waiter else {
                state.entries[id] = nil
                return nil
            }
            entry.holder = Holder(token: waiter.token, onStop: waiter.onStop, stopRequested: false)
            entry.waiter = nil
            state.entries[id] = entry
            return waiter
        }
        next?.grant.fulfill(.success(()))
    }

    private struct Lease: UploadLease {
        let locker: LocalUploadLocker
        let id: UploadID
        let token: UInt64

        func release() async {
            locker.release(id, token: token)
        }
    }
}
