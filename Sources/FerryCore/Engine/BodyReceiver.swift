import Crypto
import Foundation
import NIOCore
import Synchronization

/// Streams one request body into a `ByteWriter`, hashing it and committing checkpoints.
///
/// Runs in its own child task so that a newer request or shutdown can cancel it; it then
/// returns what it stored rather than throwing.
///
/// A class: both the body's task and the stop watcher hold it, and the request's call chain
/// (which a slow body keeps for as long as it trickles) holds one reference, not its fields.
final class BodyReceiver: Sendable {
    /// The outcome, boxed for the trip back to the request's task.
    final class Finished: Sendable {
        let outcome: Outcome
        init(_ outcome: Outcome) { self.outcome = outcome }
    }

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
        /// A storage or catalog failure (or refused content) that ended the loop.
        var failure: FerryError?
        /// The running SHA-256 of the whole upload, including this request's bytes; nil when
        /// its state before this request was not known.
        var digest: SHA256?
    }

    /// The content check of an upload's first bytes (a scenario that limits content types).
    struct Sniff: Sendable {
        var scenario: Scenario
        var declared: String?
        var length: Int64?
    }

    /// How often a long body is made durable: after so many bytes or so much time, whichever first.
    struct Checkpoints: Sendable {
        var bytes: Int64
        var interval: Duration
    }

    let writer: any ByteWriter
    /// Where durable checkpoints go (committed, and announced to the client).
    let sink: any CheckpointSink
    let start: UploadRecord
    let limit: Int64?
    let hashing: [ChecksumAlgorithm]
    /// nil: no checkpoints (a request whose digest must be checked before anything is kept).
    let checkpoints: Checkpoints?
    let digest: SHA256?
    /// Set for a request at offset 0: its first bytes are held back until they are checked.
    let sniff: Sniff?
    let clock: AnyClock
    /// When the last buffer arrived (read by `drain` from another task).
    let activity: Activity

    init(
        writer: any ByteWriter, sink: any CheckpointSink, start: UploadRecord, limit: Int64?, hashing: [ChecksumAlgorithm],
        checkpoints: Checkpoints?, digest: SHA256?, sniff: Sniff?, clock: AnyClock
    ) {
        self.writer = writer
        self.sink = sink
        self.start = start
        self.limit = limit
        self.hashing = hashing
        self.checkpoints = checkpoints
        self.digest = digest
        self.sniff = sniff
        self.clock = clock
        self.activity = Activity(clock.now)
    }

    func run<Body: AsyncSequence & Sendable>(_ body: Body) async -> Outcome where Body.Element == ByteBuffer {
        var outcome = Outcome(
            received: 0,
            bodyEnded: false,
            exceeded: false,
            hasher: BodyHasher(algorithms: hashing),
            committed: start,
            failure: nil,
            digest: digest
        )
        var lastCheckpoint = clock.now
        var sinceCheckpoint: Int64 = 0
        var heldBack: [ByteBuffer]? = sniff == nil ? nil : []
        var heldBytes = 0

        /// Writes one buffer; false when the loop must end.
        func write(_ buffer: ByteBuffer) async -> Bool {
            let count = Int64(buffer.readableBytes)
            outcome.hasher.update(buffer)
            do {
                try await writer.write(buffer)
            } catch {
                // Cancelled by a stop request: the writer kept a consistent position;
                // the caller saves what it holds.
                if !Task.isCancelled { outcome.failure = error }
                return false
            }
            buffer.withUnsafeReadableBytes { outcome.digest?.update(bufferPointer: $0) }
            outcome.received += count
            sinceCheckpoint += count
            if let checkpoints, sinceCheckpoint >= checkpoints.bytes || lastCheckpoint.duration(to: clock.now) >= checkpoints.interval {
                do {
                    let durable = try await writer.checkpoint()
                    outcome.committed = try await sink.commit(outcome.committed, offset: durable, state: await writer.syncedState())
                } catch {
                    if !Task.isCancelled { outcome.failure = error }
                    return false
                }
                await sink.checkpointed(outcome.committed.offset)
                sinceCheckpoint = 0
                lastCheckpoint = clock.now
            }
            return true
        }

        /// Checks the held-back first bytes, then writes them; false when refused or failed.
        func release(_ buffers: [ByteBuffer]) async -> Bool {
            guard let sniff else { return true }
            var prefix: [UInt8] = []
            for buffer in buffers where prefix.count < ContentSniffer.prefixLength {
                prefix += buffer.getBytes(at: buffer.readerIndex, length: min(buffer.readableBytes, ContentSniffer.prefixLength - prefix.count)) ?? []
            }
            do {
                try ContentSniffer.check(prefix: prefix, declared: sniff.declared, scenario: sniff.scenario)
            } catch {
                outcome.failure = error
                return false
            }
            for buffer in buffers {
                guard await write(buffer) else { return false }
            }
            return true
        }

        do {
            for try await buffer in body {
                if Task.isCancelled { return outcome }
                activity.touch(clock.now)
                let count = Int64(buffer.readableBytes)
                if count == 0 { continue }
                if let limit, outcome.received + Int64(heldBytes) + count > limit {
                    outcome.exceeded = true
                    return outcome
                }
                if var held = heldBack {
                    held.append(buffer)
                    heldBytes += buffer.readableBytes
                    if heldBytes < ContentSniffer.prefixLength, Int64(heldBytes) != sniff?.length {
                        heldBack = held
                        continue
                    }
                    heldBack = nil
                    heldBytes = 0
                    guard await release(held) else { return outcome }
                    continue
                }
                guard await write(buffer) else { return outcome }
            }
            if Task.isCancelled { return outcome }
            if let held = heldBack, !held.isEmpty {
                // The body ended before the bytes the check needs: unless that is the whole
                // file, nothing is stored (a client resends from offset 0 in a larger request).
                guard Int64(heldBytes) == sniff?.length else {
                    outcome.failure = FerryError(
                        .contentMismatch,
                        "the first request must carry the first \(ContentSniffer.prefixLength) bytes of the file to check its type"
                    )
                    return outcome
                }
                guard await release(held) else { return outcome }
            }
            outcome.bodyEnded = true
        } catch {
            outcome.bodyEnded = false
        }
        return outcome
    }

    /// After a stop request: lets bytes that already reached the server (socket buffers of a
    /// dead connection) be stored, returning once nothing arrived for `quiet` or after `limit`.
    func drain(quiet: Duration, limit: Duration) async {
        let start = clock.now
        while start.duration(to: clock.now) < limit {
            let idle = activity.last.duration(to: clock.now)
            if idle >= quiet { return }
            do {
                try await clock.sleep(for: quiet - idle)
            } catch {
                return
            }
        }
    }

    /// The time of the last received buffer.
    final class Activity: Sendable {
        private let instant: Mutex<AnyClock.Instant>
        init(_ now: AnyClock.Instant) { instant = Mutex(now) }
        func touch(_ now: AnyClock.Instant) { instant.withLock { $0 = now } }
        var last: AnyClock.Instant { instant.withLock { $0 } }
    }
}

/// Where a body receiver's durable checkpoints go.
protocol CheckpointSink: Sendable {
    /// Commits `offset` (synced) and the store's `state`; returns the committed record.
    func commit(_ record: UploadRecord, offset: Int64, state: String?) async throws(FerryError) -> UploadRecord
    /// The client may hear of the durable offset (RUFH's progress `104`).
    func checkpointed(_ offset: Int64) async
}

/// An append's checkpoints: committed by the engine, announced through the transport.
struct AppendCheckpoints<Transport: BodyTransport>: CheckpointSink {
    let engine: UploadEngine
    let transport: Transport
    /// A checkpoint that reaches the known length completes the upload (`AppendRequest.completesAtLength`).
    let completesAtLength: Bool
    /// When the append began: the record's `firstByteAt` if this checkpoint stores its first bytes.
    let began: Date
    let hold: UploadEngine.Hold

    func commit(_ record: UploadRecord, offset: Int64, state: String?) async throws(FerryError) -> UploadRecord {
        try await engine.commit(record, offset: offset, state: state, firstByteAt: began, completes: completesAtLength, hold)
    }

    func checkpointed(_ offset: Int64) async { await transport.checkpointed(offset: offset) }
}
