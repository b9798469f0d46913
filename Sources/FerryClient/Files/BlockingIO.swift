import Dispatch
import Synchronization

/// Runs blocking file work (reads for hashing, range copies, spool writes) off the Swift
/// concurrency cooperative pool.
///
/// The cooperative pool has one thread per core: a task blocked in `read(2)` or `fsync(2)` on it
/// holds up every other task of the process, among them the stall watchdog and the transport's
/// progress. SwiftNIO's `NIOThreadPool` is the usual place for such work, but FerryClient does
/// not depend on SwiftNIO (only the AsyncHTTPClient transport, in FerryClientAHC, does), so that
/// an app uploading with `URLSessionTransport` links no NIO. The work goes to a concurrent
/// Dispatch queue instead, whose threads may block, and the calling task waits on a continuation.
enum BlockingIO {
    private static let queue = DispatchQueue(label: "ferry.client.blocking-io", attributes: .concurrent)

    /// Runs `work` on a thread that may block and returns its result. `work` is handed a check
    /// that turns true once the calling task is cancelled, to stop between blocks of a long job.
    static func run<T: Sendable>(_ work: @escaping @Sendable (_ isCancelled: () -> Bool) throws -> T) async throws -> T {
        let cancelled = CancellationFlag()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                queue.async {
                    continuation.resume(with: Result { try work { cancelled.isSet } })
                }
            }
        } onCancel: {
            cancelled.set()
        }
    }
}

/// Set once when a task is cancelled; read from the thread doing its blocking work.
final class CancellationFlag: Sendable {
    private let flag = Atomic(false)

    var isSet: Bool { flag.load(ordering: .relaxed) }

    func set() { flag.store(true, ordering: .relaxed) }
}
