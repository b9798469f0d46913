#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif
import FerryCore
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// The node-wide bound on spool bytes: writers wait (and so slow their clients through TCP)
/// while the bytes waiting for S3 on this node are at the limit. A writer that waits longer than
/// `patience` gets `ERR_STORAGE_FULL` (its request saves what it has and ends), so writers that
/// hold half-filled parts while waiting can never block each other for good.
final class SpoolBudget: Sendable {
    private struct Waiter {
        var ticket: UInt64
        var bytes: Int64
        var grant: OneShot<Bool>
    }

    private struct State {
        var available: Int64
        var nextTicket: UInt64 = 0
        var waiters: [Waiter] = []
    }

    private let state: Mutex<State>
    let limit: Int64
    let patience: Duration

    init(limit: Int64, patience: Duration = .seconds(30)) {
        self.limit = limit
        self.patience = patience
        state = Mutex(State(available: limit))
    }

    var inUse: Int64 { limit - state.withLock { $0.available } }

    /// Takes `bytes` (at most the limit), waiting in line while they are not available.
    func acquire(_ bytes: Int64) async throws(FerryError) {
        let bytes = min(bytes, limit)
        let ticket = state.withLock { state -> UInt64? in
            if state.waiters.isEmpty, state.available >= bytes {
                state.available -= bytes
                return nil
            }
            state.nextTicket += 1
            return state.nextTicket
        }
        guard let ticket else { return }
        let granted = await withTaskGroup(of: Void.self) { group -> Bool in
            group.addTask {
                try? await Task.sleep(for: self.patience)
                self.expire(ticket)
            }
            let grant = OneShot<Bool>()
            enqueue(Waiter(ticket: ticket, bytes: bytes, grant: grant))
            let granted = await grant.value
            group.cancelAll()
            return granted
        }
        guard granted else {
            throw FerryError(.storageFull, "this node's upload spool is full (\(limit) bytes waiting for object storage); retry shortly")
        }
    }

    private func enqueue(_ waiter: Waiter) {
        let grantNow = state.withLock { state -> Bool in
            if state.waiters.isEmpty, state.available >= waiter.bytes {
                state.available -= waiter.bytes
                return true
            }
            state.waiters.append(waiter)
            return false
        }
        if grantNow { waiter.grant.fulfill(true) }
    }

    private func expire(_ ticket: UInt64) {
        let expired = state.withLock { state -> Waiter? in
            guard let index = state.waiters.firstIndex(where: { $0.ticket == ticket }) else { return nil }
            return state.waiters.remove(at: index)
        }
        expired?.grant.fulfill(false)
        release(0)
    }

    func release(_ bytes: Int64) {
        let bytes = min(bytes, limit)
        let ready = state.withLock { state -> [Waiter] in
            state.available += bytes
            var ready: [Waiter] = []
            while let first = state.waiters.first, first.bytes <= state.available {
                state.available -= first.bytes
                ready.append(state.waiters.removeFirst())
            }
            return ready
        }
        for waiter in ready { waiter.grant.fulfill(true) }
    }
}

/// One spool segment: a local file of at most one part's bytes waiting to go to S3. Its bytes
/// are charged to the budget until `discard()`.
final class SpoolFile: Sendable {
    let fd: Int32
    let path: String
    let threadPool: NIOThreadPool
    let budget: SpoolBudget
    private let counts = Mutex<(length: Int64, charged: Int64, open: Bool)>((0, 0, true))

    init(directory: String, threadPool: NIOThreadPool, budget: SpoolBudget) async throws(FerryError) {
        let path = "\(directory)/\(UUID().uuidString).spool"
        do {
            fd = try await threadPool.runIfActive { () throws -> Int32 in
                let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                guard fd >= 0 else { throw SpoolFailure(errno: errno, what: "creating \(path)") }
                // The name is not needed: the descriptor keeps the file until it is closed.
                unlink(path)
                return fd
            }
        } catch {
            throw Self.wrap(error)
        }
        self.path = path
        self.threadPool = threadPool
        self.budget = budget
    }

    var length: Int64 { counts.withLock { $0.length } }

    /// Appends `buffer` (after taking its bytes from the budget).
    func append(_ buffer: ByteBuffer) async throws(FerryError) {
        let count = Int64(buffer.readableBytes)
        try await budget.acquire(count)
        let at = counts.withLock { counts -> Int64 in
            counts.charged += count
            return counts.length
        }
        let fd = fd
        do {
            try await threadPool.runIfActive {
                let (_, failure) = buffer.withUnsafeReadableBytes { PositionalIO.write(fd, $0, at: at) }
                if failure != 0 { throw SpoolFailure(errno: failure, what: "writing the spool") }
            }
        } catch {
            throw Self.wrap(error)
        }
        counts.withLock { $0.length += count }
    }

    /// The file's bytes, read a piece at a time (a part's request body).
    func chunks(pieceSize: Int = 256 * 1024) -> SpoolChunks {
        SpoolChunks(file: self, end: length, pieceSize: pieceSize)
    }

    /// Closes the file (its bytes vanish) and returns its bytes to the budget. Idempotent.
    func discard() async {
        let (charged, wasOpen) = counts.withLock { counts -> (Int64, Bool) in
            defer { (counts.charged, counts.open) = (0, false) }
            return (counts.charged, counts.open)
        }
        guard wasOpen else { return }
        let fd = fd
        try? await threadPool.runIfActive { _ = close(fd) }
        budget.release(charged)
    }

    func read(count: Int, at offset: Int64) async throws -> ByteBuffer {
        let fd = fd
        return try await threadPool.runIfActive {
            do throws(POSIXFailure) {
                return try PositionalIO.read(fd, count: count, at: offset)
            } catch {
                throw SpoolFailure(errno: error.errno, what: "reading the spool")
            }
        }
    }

    static func wrap(_ error: any Error) -> FerryError {
        if let error = error as? FerryError { return error }
        if let failure = error as? SpoolFailure, failure.errno == ENOSPC {
            return FerryError(.storageFull, "the spool disk is full; retry later", underlying: failure)
        }
        return FerryError(.storageFailure, "the spool failed", underlying: error)
    }
}

struct SpoolFailure: Error, CustomStringConvertible {
    var errno: Int32
    var what: String
    var description: String { "\(what): " + String(cString: strerror(errno)) }
}

/// A spool file's first `end` bytes as an async sequence of buffers (restartable: each
/// iteration reads from the start, so a failed part upload can be retried).
struct SpoolChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let file: SpoolFile
    let end: Int64
    let pieceSize: Int

    struct AsyncIterator: AsyncIteratorProtocol {
        let file: SpoolFile
        let end: Int64
        let pieceSize: Int
        var position: Int64 = 0

        mutating func next() async throws -> ByteBuffer? {
            guard position < end else { return nil }
            let count = Int(Swift.min(Int64(pieceSize), end - position))
            let buffer = try await file.read(count: count, at: position)
            guard buffer.readableBytes > 0 else { throw SpoolFailure(errno: EIO, what: "the spool file is shorter than its bytes") }
            position += Int64(buffer.readableBytes)
            return buffer
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(file: file, end: end, pieceSize: pieceSize)
    }
}
