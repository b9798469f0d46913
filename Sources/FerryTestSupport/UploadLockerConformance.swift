import FerryCore
import Synchronization

/// The behaviour every `UploadLocker` must show: exclusive, newest request wins, bounded waits.
public enum UploadLockerConformance {
    /// Every check, by name; each runs on a fresh, empty subject.
    public static let checks: [ConformanceCheck<any UploadLocker>] = [
        ConformanceCheck("exclusiveAndReusable") { try await exclusiveAndReusable($0) },
        ConformanceCheck("newestRequestWins") { try await newestRequestWins($0) },
        ConformanceCheck("boundedWait") { try await boundedWait($0) },
        ConformanceCheck("waitersAreSuperseded") { try await waitersAreSuperseded($0) },
        ConformanceCheck("uploadsAreIndependent") { try await uploadsAreIndependent($0) },
    ]

    final class Flag: Sendable {
        let value = Mutex(0)
        func raise() { value.withLock { $0 += 1 } }
        var count: Int { value.withLock { $0 } }
    }

    static func exclusiveAndReusable(_ locker: any UploadLocker) async throws {
        let id = UploadID.random()
        let first = try await locker.lock(id, timeout: .seconds(1)) {}
        await first.release()
        await first.release()
        let second = try await locker.lock(id, timeout: .seconds(1)) {}
        await second.release()
    }

    static func newestRequestWins(_ locker: any UploadLocker) async throws {
        let id = UploadID.random()
        let stopped = Flag()
        let holder = try await locker.lock(id, timeout: .seconds(1)) { stopped.raise() }
        async let newer = locker.lock(id, timeout: .seconds(5)) {}
        // The holder is asked to stop; it saves and releases.
        for _ in 0..<200 where stopped.count == 0 { try await Task.sleep(for: .milliseconds(5)) }
        try require(stopped.count == 1, "a new request asks the holder to stop")
        await holder.release()
        let lease = try await newer
        await lease.release()
    }

    static func boundedWait(_ locker: any UploadLocker) async throws {
        let id = UploadID.random()
        let stubborn = try await locker.lock(id, timeout: .seconds(1)) {}
        // A waiter gives up after its timeout (were it to wait for the holder, this would never return).
        try await requireError(.uploadLocked) { try await locker.lock(id, timeout: .milliseconds(200)) {} }
        await stubborn.release()
        let after = try await locker.lock(id, timeout: .seconds(1)) {}
        await after.release()
    }

    static func waitersAreSuperseded(_ locker: any UploadLocker) async throws {
        let id = UploadID.random()
        let holder = try await locker.lock(id, timeout: .seconds(1)) {}
        let waiting = Task { try await locker.lock(id, timeout: .seconds(5)) {} }
        try await Task.sleep(for: .milliseconds(50))
        let newest = Task { try await locker.lock(id, timeout: .seconds(5)) {} }
        try await requireError(.requestSuperseded) { try await waiting.value }
        await holder.release()
        let lease = try await newest.value
        await lease.release()
    }

    static func uploadsAreIndependent(_ locker: any UploadLocker) async throws {
        let a = try await locker.lock(.random(), timeout: .seconds(1)) {}
        let b = try await locker.lock(.random(), timeout: .milliseconds(100)) {}
        await a.release()
        await b.release()
    }
}
