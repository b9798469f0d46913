import NIOCore
import Synchronization

/// Streams one request body into a `ByteWriter`, hashing it and committing checkpoints.
///
/// Runs in its own child task so that a newer request or shutdown can cancel it; it then
/// returns what it stored rather than throwing.
struct BodyReceiver: Sendable {
    struct Outcome: Sendable {
        /// Bytes handed to the writer by this request.
        var received: Int64
        /// The body sequence finished on its own (not cancelled, not thrown).
        var bodyEnded: Bool
        /// The body ran past the allowed length; the excess was not written.
        var exceeded: Bool
        var hasher: BodyHasher
        /// The record as last committed by a checkpoint.
        var committed: UploadRecord
        /// A storage or catalog failure that ended the loop.
        var failure: FerryError?
    }

    let engine: UploadEngine
    let writer: any ByteWriter
    /// When the last buffer arrived (read by `drain` from another task).
    let activity = Activity()
    let start: UploadRecord
    let limit: Int64?
    let hashing: [ChecksumAlgorithm]
    let checkpoints: Bool

    func run<Body: AsyncSequence & Sendable>(_ body: Body) async -> Outcome where Body.Element == ByteBuffer {
        var outcome = Outcome(
            received: 0,
            bodyEnded: false,
            exceeded: false,
            hasher: BodyHasher(algorithms: hashing),
            committed: start,
            failure: nil
        )
        let clock = ContinuousClock()
        var lastCheckpoint = clock.now
        var sinceCheckpoint: Int64 = 0
        let configuration = engine.configuration
        do {
            for try await buffer in body {
                if Task.isCancelled { return outcome }
                activity.touch()
                let count = Int64(buffer.readableBytes)
                if count == 0 { continue }
                if let limit, outcome.received + count > limit {
                    outcome.exceeded = true
                    return outcome
                }
                outcome.hasher.update(buffer)
                do {
                    try await writer.write(buffer)
                } catch {
                    // Cancelled by a stop request: the writer kept a consistent position;
                    // the caller saves what it holds.
                    if !Task.isCancelled { outcome.failure = error }
                    return outcome
                }
                outcome.received += count
                sinceCheckpoint += count
                if checkpoints,
                    sinceCheckpoint >= configuration.checkpointBytes
                        || clock.now - lastCheckpoint >= configuration.checkpointInterval
                {
                    do {
                        let durable = try await writer.checkpoint()
                        outcome.committed = try await engine.commit(outcome.committed, offset: durable, state: await writer.syncedState())
                    } catch {
                        if !Task.isCancelled { outcome.failure = error }
                        return outcome
                    }
                    sinceCheckpoint = 0
                    lastCheckpoint = clock.now
                }
            }
            outcome.bodyEnded = !Task.isCancelled
        } catch {
            outcome.bodyEnded = false
        }
        return outcome
    }

    /// After a stop request: lets bytes that already reached the server (socket buffers of a
    /// dead connection) be stored, returning once nothing arrived for `quiet` or after `limit`.
    func drain(quiet: Duration, limit: Duration) async {
        let clock = ContinuousClock()
        let start = clock.now
        while clock.now - start < limit {
            let idle = clock.now - activity.last
            if idle >= quiet { return }
            do {
                try await Task.sleep(for: quiet - idle)
            } catch {
                return
            }
        }
    }

    /// The time of the last received buffer.
    final class Activity: Sendable {
        private let instant = Mutex(ContinuousClock.now)
        func touch() { instant.withLock { $0 = .now } }
        var last: ContinuousClock.Instant { instant.withLock { $0 } }
    }
}
