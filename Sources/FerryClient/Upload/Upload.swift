import Foundation
import Synchronization

/// One file upload to a tus server: run it, watch its progress, pause, resume or cancel it.
///
/// ```swift
/// let upload = Upload(file: path, endpoint: url, transport: transport, options: .init(resumeStore: store))
/// async let result = upload.run()
/// for await progress in upload.progress { print(progress.acknowledged) }
/// print(try await result.url)
/// ```
public final class Upload: Sendable {
    public let path: String
    public let endpoint: URL
    let options: UploadOptions
    let transport: any UploadTransport
    let control = UploadControl()
    /// Progress snapshots; finishes when the upload ends. Only the newest is buffered.
    public let progress: AsyncStream<UploadProgress>
    let progressSink: AsyncStream<UploadProgress>.Continuation
    let counters = Mutex(Counters())
    /// Set when this upload is one stream of a parallel upload.
    let part: Part?
    /// The streams of a parallel upload, so control commands reach them.
    let children = Mutex<[Upload]>([])
    /// For a stream upload: where its bytes are kept, and what fills it.
    let spool: Spool?
    let fill: (@Sendable (Spool) async -> Void)?
    /// For one stream of an adaptive parallel upload: where it ends (it may be split), the
    /// upload it continues, and who hears of its acknowledged offsets.
    let split: SplitStream?

    struct SplitStream: Sendable {
        var bound: SplitBound
        var resumeURL: URL?
        var onAcknowledged: @Sendable (URL, Int64) -> Void
    }

    /// One contiguous piece of the file, uploaded as a tus `partial`.
    struct Part: Sendable {
        var range: Range<Int64>
        var index: Int
        var count: Int
    }

    struct Counters {
        var requests = 0
        var bytesSent: Int64 = 0
        var inFlight: Int64 = 0
        var storedInstantly = false
    }

    public convenience init(file path: String, endpoint: URL, transport: any UploadTransport, options: UploadOptions = UploadOptions()) {
        self.init(file: path, endpoint: endpoint, transport: transport, options: options, part: nil)
    }

    init(file path: String, endpoint: URL, transport: any UploadTransport, options: UploadOptions, part: Part?) {
        self.path = path
        self.endpoint = endpoint
        self.transport = transport
        self.options = options
        self.part = part
        self.spool = nil
        self.fill = nil
        self.split = nil
        (progress, progressSink) = AsyncStream.makeStream(of: UploadProgress.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Uploads what `stream` produces, while it produces it, with a deferred length (tus
    /// `creation-defer-length`). The bytes are kept in a temporary file until acknowledged.
    /// A stream cannot be replayed, so it does not resume across processes.
    public init<S: AsyncSequence & Sendable>(
        stream: S,
        endpoint: URL,
        transport: any UploadTransport,
        options: UploadOptions = UploadOptions()
    ) throws where S.Element == [UInt8] {
        let spool = try Spool()
        self.spool = spool
        self.fill = { spool in await spool.fill(from: stream) }
        self.path = spool.url.path
        self.endpoint = endpoint
        self.transport = transport
        var options = options
        options.resumeStore = nil
        options.parallelism = .single
        self.options = options
        self.part = nil
        self.split = nil
        (progress, progressSink) = AsyncStream.makeStream(of: UploadProgress.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// One stream of an adaptive parallel upload (`AdaptiveParallelUpload`).
    init(file path: String, endpoint: URL, transport: any UploadTransport, options: UploadOptions, split: SplitStream) {
        self.path = path
        self.endpoint = endpoint
        self.transport = transport
        var options = options
        options.resumeStore = nil
        options.parallelism = .single
        self.options = options
        self.part = nil
        self.spool = nil
        self.fill = nil
        self.split = split
        (progress, progressSink) = AsyncStream.makeStream(of: UploadProgress.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Stops sending (the server keeps what it received) until `resume()`.
    public func pause() { forEachStream { $0.control.pause() } }
    public func resume() { forEachStream { $0.control.resume() } }
    /// Ends the upload; with `terminate`, also deletes it on the server and forgets it locally.
    public func cancel(terminate: Bool = true) { forEachStream { $0.control.cancel(terminate: terminate) } }
    /// The app moved to another network: drop connections and measurements, start from its defaults.
    public func networkChanged(to network: NetworkKind) { forEachStream { $0.control.networkChanged(network) } }

    private func forEachStream(_ body: (Upload) -> Void) {
        body(self)
        for child in children.withLock({ $0 }) { body(child) }
    }

    /// Runs the upload to completion (or failure, cancellation, deadline).
    public func run() async throws(UploadError) -> UploadResult {
        defer { progressSink.finish() }
        if let spool, let fill {
            defer { spool.remove() }
            var session = try await UploadSession(upload: self, length: nil)
            let outcome: Result<UploadResult, UploadError> = await withTaskGroup(of: Result<UploadResult, UploadError>?.self) { group in
                group.addTask {
                    await fill(spool)
                    return nil
                }
                let result: Result<UploadResult, UploadError>
                do throws(UploadError) {
                    result = .success(try await session.run())
                } catch {
                    result = .failure(error)
                }
                group.cancelAll()
                return result
            }
            return try outcome.get()
        }
        if split != nil {
            var session = try await UploadSession(upload: self, length: nil)
            return try await session.run()
        }
        let length = try fileLength()
        // Parallel streams are tus concatenation; RUFH carries a file in one stream.
        if part == nil, options.dialect == .tus {
            switch options.parallelism {
            case .single:
                break
            case .fixed(let streams):
                if streams > 1, length >= 2 * ParallelUpload.minimumPart,
                    let result = try await ParallelUpload(upload: self, length: length).run()
                {
                    return result
                }
            case .adaptive(let maximum, let threshold):
                if maximum > 1, length >= threshold,
                    let result = try await AdaptiveParallelUpload(upload: self, length: length, maximumStreams: maximum).run()
                {
                    return result
                }
            }
        }
        var session = try await UploadSession(upload: self, length: part.map { Int64($0.range.count) } ?? length)
        return try await session.run()
    }

    private func fileLength() throws(UploadError) -> Int64 {
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            guard let size = attributes[.size] as? NSNumber else { throw UploadError.localFile("no size for \(path)") }
            return size.int64Value
        } catch let error as UploadError {
            throw error
        } catch {
            throw UploadError.localFile("\(path): \(error.localizedDescription)")
        }
    }

    func report(_ machine: UploadMachine) {
        let (inFlight, instantly) = counters.withLock { ($0.inFlight, $0.storedInstantly) }
        progressSink.yield(
            UploadProgress(
                acknowledged: machine.acknowledged,
                inFlight: inFlight,
                total: machine.length ?? machine.available,
                bytesPerSecond: machine.sizer.goodput,
                phase: machine.phase,
                failures: machine.failures,
                storedInstantly: instantly
            )
        )
    }
}
