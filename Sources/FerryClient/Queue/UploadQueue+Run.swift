import Foundation

extension UploadQueue {
    /// Runs the members until none is queued or running (members enqueued meanwhile included),
    /// then returns every member with its URL or error. One member's failure never stops the
    /// others. Returns early, leaving members queued, after `stop()` or when its task is cancelled.
    @discardableResult
    public func run() async -> QueueSummary {
        state.withLock { $0.runs += 1 }
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                while true {
                    // Read before the state it guards: a change in between only wakes us early.
                    let generation = signal.generation
                    let (launches, idle) = state.withLock { state -> ([(QueueItemID, Upload)], Bool) in
                        let launches = launch(&state)
                        if !launches.isEmpty { state.publish(configuration) }
                        return (launches, state.book.running == 0 && (state.stopping || !state.book.hasQueued))
                    }
                    for (id, upload) in launches {
                        group.addTask { await self.perform(id, upload) }
                    }
                    // Cancelled: the members were stopped; leaving the group waits for them.
                    if idle || Task.isCancelled { break }
                    await signal.changed(after: generation)
                }
            }
        } onCancel: {
            stop()
        }
        let (summary, subscribers) = state.withLock { state in
            state.runs -= 1
            var ended: [AsyncStream<QueueProgress>.Continuation] = []
            if state.runs == 0 {
                state.stopping = false
                state.publish(configuration)
                ended = Array(state.subscribers.values)
                state.subscribers = [:]
            }
            return (QueueSummary(items: state.book.items), ended)
        }
        // Outside the lock: a stream's termination handler takes it.
        for subscriber in subscribers { subscriber.finish() }
        return summary
    }

    /// Starts queued members, the next first, while fewer than the limit run.
    private func launch(_ state: inout State) -> [(QueueItemID, Upload)] {
        var launches: [(QueueItemID, Upload)] = []
        let limit = state.limit(configuration)
        while !state.stopping, state.book.running < limit, let id = state.book.next(), let record = state.book[id] {
            guard let endpoint = URL(string: record.endpoint) else {
                state.book.finish(id, .failed("not a URL: \(record.endpoint)"))
                continue
            }
            state.book.start(id)
            let upload = Upload(
                file: record.path, endpoint: endpoint, transport: ObservingTransport(base: transport, queue: self),
                options: options(for: record, &state)
            )
            state.uploads[id] = upload
            launches.append((id, upload))
        }
        return launches
    }

    /// A member's options: the configuration's (or those given to `enqueue`), with its
    /// metadata, the current network, a resume store, what discovery already found, and for a
    /// small file one request in one stream.
    func options(for record: QueueRecord, _ state: inout State) -> UploadOptions {
        var options = state.overrides[record.id] ?? configuration.options
        options.metadata = record.metadata.map { ($0.key, $0.value) }
        options.dialect = record.dialect
        options.network = state.network
        options.stall.network = state.network
        if options.resumeStore == nil { options.resumeStore = resumeStore }
        options.keepsResumeRecord = true
        if record.length <= configuration.singleRequestLimit {
            // The first request holds the whole file: creation-with-upload (tus) or a creation
            // with the complete body (RUFH), whatever size the network would start from.
            options.parallelism = .single
            options.chunk.minimum = max(options.chunk.minimum, record.length)
            options.chunk.maximum = max(options.chunk.maximum, options.chunk.minimum)
        }
        let key = "\(record.dialect.rawValue) \(record.endpoint)"
        options.discovered = state.discovered[key]
        options.onDiscovered = { [weak self] found in
            self?.state.withLock { $0.discovered[key] = found }
        }
        if let trace = options.trace {
            let name = URL(fileURLWithPath: record.path).lastPathComponent
            options.trace = { trace("\(name): \($0)") }
        }
        return options
    }

    /// Runs one member to its end, reporting its progress, and records how it ended.
    private func perform(_ id: QueueItemID, _ upload: Upload) async {
        async let ended = Self.outcome(of: upload)
        for await progress in upload.progress {
            state.withLock { state in
                state.book.progressed(id, acknowledged: progress.acknowledged)
                state.publish(configuration)
            }
        }
        let result = await ended
        let generation = state.withLock { state -> Int in
            state.uploads[id] = nil
            let cancelled = state.cancelling.remove(id) != nil
            let outcome: QueueBook.Outcome
            switch result {
            case .success(let done):
                outcome = .done(
                    url: done.url.absoluteString, length: done.length,
                    businessStatus: done.finalFields.ferryBusinessStatus, businessResult: done.finalFields.ferryBusinessResult,
                    storedInstantly: done.storedInstantly
                )
            case .failure(.cancelled) where !cancelled && state.stopping:
                outcome = .stopped
            case .failure(.cancelled):
                outcome = .cancelled
            case .failure(let error):
                outcome = .failed(error.description)
            }
            state.book.finish(id, outcome)
            if outcome != .stopped { state.overrides[id] = nil }
            state.publish(configuration)
            return journal.stage(state.book.file)
        }
        // The slot is free now; the run loop needs no wait for the write.
        signal.bump()
        let saved = await flush(generation)
        // Saved as done: the resume record that would have found it complete is not needed.
        if saved, case .success(let done) = result, let fingerprint = done.keptResumeRecord, let store = upload.options.resumeStore {
            try? await BlockingIO.run { _ in store.remove(fingerprint) }
        }
    }

    private static func outcome(of upload: Upload) async -> Result<UploadResult, UploadError> {
        do throws(UploadError) {
            return .success(try await upload.run())
        } catch {
            return .failure(error)
        }
    }
}

/// The queue's transport: passes requests through and tells the queue the HTTP version each
/// answer came over.
struct ObservingTransport: UploadTransport {
    let base: any UploadTransport
    let queue: UploadQueue

    func send(_ request: TransportRequest, progress: @escaping @Sendable (Int64) -> Void) async throws -> TransportResponse {
        let response = try await base.send(request, progress: progress)
        if let version = response.httpVersion { queue.observed(version) }
        return response
    }
}
