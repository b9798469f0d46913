import Foundation
import Synchronization

/// A persistent queue of uploads: many files at once, the most urgent first, surviving the
/// process.
///
/// Each member is an ordinary `Upload` with its resume record; the queue runs a bounded number
/// at once (`Configuration.concurrency(network:multiplexed:)`), highest `UploadPriority` first
/// and in enqueue order within a priority. Its state (members, priorities, which are done with
/// their URL, which failed and why) is saved in `directory` after every change: a new queue on
/// the same directory continues the unfinished members and reports the finished ones without
/// uploading them again.
///
/// ```swift
/// let queue = try await UploadQueue(directory: dir, transport: transport)
/// try await queue.enqueue(file: "voice.m4a", endpoint: url)        // priority from the extension
/// try await queue.enqueue(file: "album/1.jpg", endpoint: url, metadata: [("filename", "1.jpg")])
/// async let summary = queue.run()
/// for await progress in queue.updates() { print(progress.filesDone, "/", progress.filesTotal) }
/// for item in await summary.items { print(item.path, item.url ?? item.error ?? "") }
/// ```
public final class UploadQueue: Sendable {
    /// Where the queue's state (`queue.json`) is kept, and by default its members' resume records.
    public let directory: URL
    let configuration: Configuration
    let transport: any UploadTransport
    let journal: QueueJournal
    /// Members' resume records when the options name no store.
    let resumeStore: ResumeStore
    let state: Mutex<State>
    /// Bumped on every change the run loop acts on: a member ended, a member was enqueued, the
    /// limit changed, the queue was stopped.
    let signal = ChangeSignal()

    struct State {
        var book: QueueBook
        var uploads: [QueueItemID: Upload] = [:]
        /// Running members the caller cancelled (they end as `cancelled`, not `failed`).
        var cancelling: Set<QueueItemID> = []
        /// Options given to `enqueue` for one member (this process only).
        var overrides: [QueueItemID: UploadOptions] = [:]
        var network: NetworkKind
        var httpVersion: HTTPProtocolVersion?
        /// What each endpoint's discovery found, shared by the members that start after it.
        var discovered: [String: DiscoveredServer] = [:]
        var subscribers: [Int: AsyncStream<QueueProgress>.Continuation] = [:]
        var nextSubscriber = 0
        /// `run()` calls under way, and whether they are stopping.
        var runs = 0
        var stopping = false
        var persistenceError: String?

        func limit(_ configuration: Configuration) -> Int {
            configuration.concurrency(network: network, multiplexed: httpVersion?.multiplexes ?? false)
        }

        func progress(_ configuration: Configuration) -> QueueProgress {
            QueueProgress(items: book.items, concurrency: limit(configuration), httpVersion: httpVersion, persistenceError: persistenceError)
        }

        /// Sends the current snapshot to every subscriber (under the lock, so in order).
        func publish(_ configuration: Configuration) {
            guard !subscribers.isEmpty else { return }
            let snapshot = progress(configuration)
            for subscriber in subscribers.values { subscriber.yield(snapshot) }
        }
    }

    /// Opens the queue saved in `directory` (creating it when there is none). Its unfinished
    /// members run with the next `run()`.
    public init(directory: URL, transport: any UploadTransport, configuration: Configuration = Configuration()) async throws(UploadQueueError) {
        self.directory = directory
        self.transport = transport
        self.configuration = configuration
        self.journal = QueueJournal(directory: directory)
        self.resumeStore = ResumeStore(directory: directory.appendingPathComponent("resume"))
        let saved = try await journal.load()
        self.state = Mutex(State(book: QueueBook(file: saved), network: configuration.options.network))
    }

    deinit {
        let subscribers = state.withLock { $0.subscribers.values }
        for subscriber in subscribers { subscriber.finish() }
    }

    /// The members and totals now.
    public var snapshot: QueueProgress { state.withLock { $0.progress(configuration) } }

    /// Snapshots as they change, starting with the current one; only the newest is buffered.
    /// Finishes when a `run()` returns (the one under way, or else the next one).
    public func updates() -> AsyncStream<QueueProgress> {
        let (stream, continuation) = AsyncStream.makeStream(of: QueueProgress.self, bufferingPolicy: .bufferingNewest(1))
        let key = state.withLock { state in
            state.nextSubscriber += 1
            return state.nextSubscriber
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: key) }
        }
        state.withLock { state in
            state.subscribers[key] = continuation
            continuation.yield(state.progress(configuration))
        }
        return stream
    }

    /// Adds a file to upload to `endpoint`, and returns its id.
    ///
    /// `priority` defaults to the one its extension suggests. `metadata` is saved with the
    /// member; `options`, when given, replace the configuration's for this member in this
    /// process only (a later process runs it with its own configuration's options).
    ///
    /// Enqueueing the same file for the same endpoint again returns the member it already is
    /// when that member is queued, running, or done with the file unchanged (a higher priority
    /// is kept); a member that failed or was cancelled, or whose file changed since, is queued
    /// again under the same id.
    @discardableResult
    public func enqueue(
        file path: String,
        endpoint: URL,
        priority: UploadPriority? = nil,
        metadata: [(String, String)] = [],
        options: UploadOptions? = nil
    ) async throws(UploadQueueError) -> QueueItemID {
        let ids = try await enqueue([Entry(file: path, endpoint: endpoint, priority: priority, metadata: metadata, options: options)])
        return ids[0]
    }

    /// Adds several files at once (one write of the queue's state), in order; returns their
    /// ids in the same order. Nothing is added when one of them cannot be (not a regular file,
    /// not an absolute URL).
    @discardableResult
    public func enqueue(_ entries: [Entry]) async throws(UploadQueueError) -> [QueueItemID] {
        for entry in entries where entry.endpoint.scheme == nil || entry.endpoint.host == nil {
            throw UploadQueueError(.invalidEndpoint, "not an absolute URL: \(entry.endpoint)")
        }
        let paths = entries.map { URL(fileURLWithPath: $0.path).standardizedFileURL.path }
        let attributes = try await Self.attributes(of: paths)
        let candidates = zip(entries, zip(paths, attributes)).map { entry, file in
            QueueRecord(
                id: QueueItemID(rawValue: UUID().uuidString.lowercased()),
                path: file.0,
                endpoint: entry.endpoint.absoluteString,
                priority: entry.priority ?? UploadPriority(guessingFrom: file.0),
                sequence: 0,
                metadata: entry.metadata.map { QueueRecord.Pair(key: $0.0, value: $0.1) },
                dialect: (entry.options ?? configuration.options).dialect,
                length: file.1.length,
                modified: file.1.modified,
                state: .queued
            )
        }
        let (ids, generation) = state.withLock { state -> ([QueueItemID], Int) in
            var ids: [QueueItemID] = []
            for (entry, candidate) in zip(entries, candidates) {
                let admission = state.book.admit(candidate)
                if case .existing = admission {} else { state.overrides[admission.id] = entry.options }
                ids.append(admission.id)
            }
            state.publish(configuration)
            return (ids, journal.stage(state.book.file))
        }
        signal.bump()
        try await journal.flush(generation)
        return ids
    }

    /// Cancels a member: a queued one never runs; a running one stops and, like
    /// `Upload.cancel(terminate: true)`, is deleted on the server. Done or failed: no effect.
    public func cancel(_ id: QueueItemID) async {
        await cancel(only: id)
    }

    /// Cancels every member that is queued or running.
    public func cancelAll() async {
        await cancel(only: nil)
    }

    /// Cancels member `id`, or every member.
    private func cancel(only id: QueueItemID?) async {
        let (uploads, generation) = state.withLock { state -> ([Upload], Int?) in
            let ids = id.map { [$0] } ?? state.book.records.map(\.id)
            var changed = false
            var uploads: [Upload] = []
            for id in ids {
                if state.book.cancelQueued(id) {
                    changed = true
                    state.overrides[id] = nil
                } else if let upload = state.uploads[id] {
                    state.cancelling.insert(id)
                    uploads.append(upload)
                }
            }
            guard changed else { return (uploads, nil) }
            state.publish(configuration)
            return (uploads, journal.stage(state.book.file))
        }
        for upload in uploads { upload.cancel(terminate: true) }
        signal.bump()
        if let generation { await flush(generation) }
    }

    /// Stops the running members without deleting them (they continue from where they were
    /// in the next run, or the next process) and starts no more; `run()` returns once they
    /// stopped. Cancelling the task of `run()` does the same.
    public func stop() {
        let uploads = state.withLock { state -> [Upload] in
            guard state.runs > 0 else { return [] }
            state.stopping = true
            return Array(state.uploads.values)
        }
        for upload in uploads { upload.cancel(terminate: false) }
        signal.bump()
    }

    /// The device moved to another network: every running member hears it
    /// (`Upload.networkChanged`), members started later begin from its defaults, and the
    /// number of members at once is chosen again (fewer on cellular). Members above a lowered
    /// limit finish; no new one starts until the running ones are below it.
    public func networkChanged(to network: NetworkKind) {
        let uploads = state.withLock { state -> [Upload] in
            state.network = network
            state.publish(configuration)
            return Array(state.uploads.values)
        }
        for upload in uploads { upload.networkChanged(to: network) }
        signal.bump()
    }

    /// Forgets the members that are done or cancelled (a long-lived queue's state then stays small).
    public func removeSettled() async throws(UploadQueueError) {
        let generation = state.withLock { state -> Int in
            state.book.removeSettled()
            state.overrides = state.overrides.filter { state.book[$0.key] != nil }
            state.publish(configuration)
            return journal.stage(state.book.file)
        }
        try await journal.flush(generation)
    }

    /// An answer came over `version` (the transport said so): over HTTP/2 more members run at once.
    func observed(_ version: HTTPProtocolVersion) {
        let changed = state.withLock { state -> Bool in
            guard state.httpVersion != version else { return false }
            state.httpVersion = version
            state.publish(configuration)
            return true
        }
        if changed { signal.bump() }
    }

    /// Saves up to `generation`; a failure is reported in the snapshots (`persistenceError`),
    /// and the uploads go on. Returns whether it is saved.
    @discardableResult
    func flush(_ generation: Int) async -> Bool {
        do {
            try await journal.flush(generation)
            return true
        } catch {
            state.withLock { state in
                state.persistenceError = error.description
                state.publish(configuration)
            }
            return false
        }
    }

    /// Regular files' lengths and modification times, read off the cooperative pool.
    static func attributes(of paths: [String]) async throws(UploadQueueError) -> [(length: Int64, modified: Double)] {
        do {
            return try await BlockingIO.run { _ in
                try paths.map { path in
                    let attributes: [FileAttributeKey: Any]
                    do {
                        attributes = try FileManager.default.attributesOfItem(atPath: path)
                    } catch {
                        throw UploadQueueError(.notAFile, "\(path): \(error.localizedDescription)")
                    }
                    guard (attributes[.type] as? FileAttributeType) == .typeRegular else {
                        throw UploadQueueError(.notAFile, "\(path) is not a regular file")
                    }
                    let length = (attributes[.size] as? NSNumber)?.int64Value ?? 0
                    let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
                    return (length, modified)
                }
            }
        } catch let error as UploadQueueError {
            throw error
        } catch {
            throw UploadQueueError(.notAFile, "\(error)")
        }
    }
}
