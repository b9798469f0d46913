import FerryClock
import Foundation
import Synchronization

/// Uploads a large file as one stream, and adds streams (up to `maximumStreams`) only where
/// each one added raises the total rate (`ParallelismProbe`).
///
/// Every stream is a tus `partial` upload with a deferred length covering a range of the file
/// (`SplitBound`): adding a stream splits the unclaimed tail of the stream with the most left,
/// so nothing is decided up front and a single stream costs one extra request at the end (the
/// `final` upload that concatenates the partials). The plan (each stream's range and URL) is
/// persisted before a new range can be used, so a restarted process continues every stream.
struct AdaptiveParallelUpload {
    static let tick: Duration = .milliseconds(500)

    /// Whether a file may go as partials joined by a final on a server that answered OPTIONS
    /// with `fields`: it must concatenate partials of deferred length, and without copying
    /// them (`Ferry-Concatenation: copy`, object storage): where the final is a second write
    /// of every byte, one stream costs less than any split, and even an unsplit partial would
    /// be copied once more at the end.
    static func splits(on fields: UploadFields) -> Bool {
        fields.tusExtensions.isSuperset(of: ["creation", "concatenation", "creation-defer-length"]) && !fields.concatenationCopies
    }

    let upload: Upload
    let length: Int64
    let maximumStreams: Int

    /// Returns nil when the server cannot concatenate partial uploads of deferred length, or
    /// would copy their bytes to do it (the caller uploads in one plain stream).
    func run() async throws(UploadError) -> UploadResult? {
        let runner = RequestRunner(transport: upload.transport, stall: upload.options.stall, clock: upload.options.clock)
        guard let fields = await ParallelUpload.discover(upload, runner: runner), Self.splits(on: fields) else {
            upload.options.trace?("adaptive parallelism: one plain stream (the server cannot split uploads, or copies to join them)")
            return nil
        }
        let book = try await SplitBook(upload: upload, length: length)
        let clock = upload.options.clock
        let began = clock.now
        let streams = StreamTable(began: began, clock: clock)
        var configuration = upload.options.parallelProbe
        configuration.maximumStreams = maximumStreams
        var probe = ParallelismProbe(
            configuration: configuration,
            streams: book.segments.filter { !$0.complete }.count
        )
        var results: [UploadResult] = []
        do {
            try await withThrowingTaskGroup(of: StreamEvent.self) { group in
                for index in book.segments.indices where !book.segments[index].complete {
                    group.addTask { try await runStream(index, book: book, streams: streams) }
                }
                group.addTask { try await clock.sleep(for: Self.tick); return .tick }
                while let event = try await group.next() {
                    switch event {
                    case .finished(let index, let result):
                        book.completed(index)
                        streams.finished(index)
                        results.append(result)
                        if book.allComplete {
                            group.cancelAll()
                            return
                        }
                    case .tick:
                        if upload.control.takeNetworkChange() != nil { probe.networkChanged(at: clock.now - began) }
                        let verdict = (probe.helps, probe.target)
                        let rate = streams.rate(since: probe.measuringFrom, span: configuration.span)
                        let decision = probe.observe(
                            at: clock.now - began, rate: rate, running: book.running,
                            remaining: length - streams.acknowledged - book.restoredBytes
                        )
                        if verdict != (probe.helps, probe.target) {
                            let measured = rate.map { String(format: "%.0f KiB/s", $0 / 1024) } ?? "-"
                            upload.options.trace?("adaptive parallelism: \(probe.helps == true ? "the added stream raised" : "the added stream did not raise") the total rate (\(measured)); streams worth running: \(probe.target)")
                        }
                        if case .addStream(let probing) = decision, !upload.control.isPaused {
                            if let index = book.split(minimum: configuration.minimumSplit) {
                                let measured = rate.map { String(format: "%.0f KiB/s", $0 / 1024) } ?? "-"
                                upload.options.trace?("adaptive parallelism: stream \(book.running) of at most \(maximumStreams)\(probing ? ", a probe (at \(measured))" : "")")
                                group.addTask { try await runStream(index, book: book, streams: streams) }
                            } else {
                                probe.splitRefused()
                            }
                        }
                        group.addTask { try await clock.sleep(for: Self.tick); return .tick }
                    }
                }
            }
        } catch let error as UploadError {
            for stream in upload.children.withLock({ $0 }) { stream.control.cancel(terminate: false) }
            // Cancelled with termination: the streams deleted their uploads; nothing to resume.
            if error == .cancelled, upload.control.cancellation == true { book.forget() }
            throw error
        } catch {
            for stream in upload.children.withLock({ $0 }) { stream.control.cancel(terminate: false) }
            if Task.isCancelled { throw UploadError.cancelled }
            throw UploadError.localFile("parallel upload: \(error)")
        }
        let urls = book.segments.sorted { $0.start < $1.start }.compactMap { $0.uploadURL.flatMap { URL(string: $0) } }
        guard urls.count == book.segments.count else { throw UploadError.localFile("parallel upload: a stream has no upload URL") }
        let final = try await ParallelUpload.concatenate(urls, for: upload, runner: runner)
        book.forget()
        return ParallelUpload.combined(results, final: final, length: length)
    }

    enum StreamEvent: Sendable {
        case tick
        case finished(Int, UploadResult)
    }

    /// Runs the stream of segment `index`, reporting the summed progress of all streams.
    private func runStream(_ index: Int, book: SplitBook, streams: StreamTable) async throws -> StreamEvent {
        let segment = book.segments[index]
        let stream = Upload(
            file: upload.path, endpoint: upload.endpoint, transport: upload.transport, options: upload.options,
            split: Upload.SplitStream(
                bound: book.bound(index),
                resumeURL: segment.uploadURL.flatMap { URL(string: $0) },
                onAcknowledged: { url, _ in book.located(index, url: url) }
            )
        )
        upload.children.withLock { $0.append(stream) }
        let parent = upload
        let total = length
        async let result = stream.run()
        for await progress in stream.progress {
            let all = streams.update(index, progress)
            parent.progressSink.yield(
                UploadProgress(
                    acknowledged: all.reduce(0) { $0 + $1.acknowledged } + book.restoredBytes,
                    inFlight: all.reduce(0) { $0 + $1.inFlight },
                    total: total,
                    bytesPerSecond: all.compactMap(\.bytesPerSecond).reduce(0, +),
                    phase: progress.phase,
                    failures: all.reduce(0) { $0 + $1.failures }
                )
            )
        }
        return .finished(index, try await result)
    }
}

/// The latest progress of each running or finished stream, by segment index, and when each
/// acknowledgement came (the probe's rate measurement).
final class StreamTable: Sendable {
    private struct State {
        var progress: [Int: UploadProgress] = [:]
        var log = AcknowledgementLog()
    }

    private let state = Mutex(State())
    private let began: AnyClock.Instant
    private let clock: AnyClock

    init(began: AnyClock.Instant, clock: AnyClock) {
        self.began = began
        self.clock = clock
    }

    func update(_ index: Int, _ progress: UploadProgress) -> [UploadProgress] {
        let now = clock.now - began
        return state.withLock { state in
            state.progress[index] = progress
            state.log.record(index, offset: progress.acknowledged, at: now)
            return Array(state.progress.values)
        }
    }

    func finished(_ index: Int) {
        state.withLock { $0.log.finished(index) }
    }

    var acknowledged: Int64 { state.withLock { $0.log.acknowledged } }

    func rate(since: Duration, span: Duration) -> Double? {
        state.withLock { $0.log.rate(since: since, span: span) }
    }
}
