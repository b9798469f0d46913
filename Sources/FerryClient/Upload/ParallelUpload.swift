import FerryClock
import Foundation
import HTTPTypes
import Synchronization

/// Uploads one file as up to four parallel tus `partial` uploads, then concatenates them with a
/// `final` upload (tus `concatenation`). Each stream is a full `Upload` of its byte range, with
/// its own stall detection, sizing and resume record.
struct ParallelUpload {
    static let minimumPart: Int64 = 4 << 20
    static let maximumStreams = 4

    let upload: Upload
    let length: Int64

    /// Returns nil when the server cannot concatenate (the caller uploads in one stream).
    func run() async throws(UploadError) -> UploadResult? {
        let options = upload.options
        let runner = RequestRunner(transport: upload.transport, stall: options.stall, clock: options.clock)
        guard let extensions = await Self.extensions(of: upload, runner: runner), extensions.contains("concatenation") else { return nil }
        guard case .fixed(let wanted) = options.parallelism else { return nil }
        let count = max(1, min(wanted, Self.maximumStreams, Int(length / Self.minimumPart)))
        var partOptions = options
        partOptions.parallelism = .single
        let size = length / Int64(count)
        let streams = (0..<count).map { index -> Upload in
            let start = Int64(index) * size
            let end = index == count - 1 ? length : start + size
            return Upload(
                file: upload.path, endpoint: upload.endpoint, transport: upload.transport, options: partOptions,
                part: Upload.Part(range: start..<end, index: index, count: count)
            )
        }
        upload.children.withLock { $0 = streams }
        let parts = try await runStreams(streams)
        let final = try await Self.concatenate(parts.map(\.url), for: upload, runner: runner)
        for stream in streams {
            if let session = try? await UploadSession(upload: stream, length: Int64(stream.part?.range.count ?? 0)) { session.forget() }
        }
        return Self.combined(parts, final: final, length: length)
    }

    /// The result of the whole file: the final upload, and the streams' counts (plus the final's request).
    static func combined(_ parts: [UploadResult], final: (url: URL, fields: UploadFields), length: Int64) -> UploadResult {
        UploadResult(
            url: final.url,
            length: length,
            requests: parts.reduce(1) { $0 + $1.requests },
            failures: parts.reduce(0) { $0 + $1.failures },
            bytesSent: parts.reduce(0) { $0 + $1.bytesSent },
            finalFields: final.fields
        )
    }

    /// Runs every stream, reporting their summed progress; the first failure cancels the rest.
    private func runStreams(_ streams: [Upload]) async throws(UploadError) -> [UploadResult] {
        let latest = ProgressTable(count: streams.count)
        let parent = upload
        let total = length
        do {
            return try await withThrowingTaskGroup(of: (Int, UploadResult).self) { group in
                for (index, stream) in streams.enumerated() {
                    group.addTask {
                        async let result = stream.run()
                        for await progress in stream.progress {
                            let all = latest.update(index, progress)
                            let known = all.compactMap { $0 }
                            parent.progressSink.yield(
                                UploadProgress(
                                    acknowledged: known.reduce(0) { $0 + $1.acknowledged },
                                    inFlight: known.reduce(0) { $0 + $1.inFlight },
                                    total: total,
                                    bytesPerSecond: known.compactMap(\.bytesPerSecond).reduce(0, +),
                                    phase: progress.phase,
                                    failures: known.reduce(0) { $0 + $1.failures }
                                )
                            )
                        }
                        return (index, try await result)
                    }
                }
                var results = [UploadResult?](repeating: nil, count: streams.count)
                do {
                    while let (index, result) = try await group.next() { results[index] = result }
                } catch {
                    for stream in streams { stream.control.cancel(terminate: false) }
                    throw error
                }
                return results.compactMap { $0 }
            }
        } catch let error as UploadError {
            throw error
        } catch {
            throw UploadError.localFile("parallel upload: \(error)")
        }
    }

    /// The extensions the server lists in answer to OPTIONS; nil when it does not answer.
    static func extensions(of upload: Upload, runner: RequestRunner) async -> Set<String>? {
        await discover(upload, runner: runner)?.tusExtensions
    }

    /// The server's answer to OPTIONS; nil when it does not answer.
    static func discover(_ upload: Upload, runner: RequestRunner) async -> UploadFields? {
        let discovery = await runner.run(
            TransportRequest(method: .options, url: upload.endpoint, headerFields: [.tusResumable: "1.0.0"] + upload.options.headers),
            goodput: nil
        )
        guard case .response(let answer) = discovery, answer.status.kind == .successful else { return nil }
        return answer.fields
    }

    /// Creates the final upload, retrying transient failures until the deadline.
    static func concatenate(_ parts: [URL], for upload: Upload, runner: RequestRunner) async throws(UploadError) -> (url: URL, fields: UploadFields) {
        let options = upload.options
        var fields: HTTPFields = [.tusResumable: "1.0.0", .uploadConcat: "final;" + parts.map(\.absoluteString).joined(separator: " ")]
        if let metadata = options.tusMetadata { fields[.uploadMetadata] = metadata }
        let request = TransportRequest(method: .post, url: upload.endpoint, headerFields: fields + options.headers)
        var backoff = Backoff(policy: options.retry)
        let clock = options.clock
        let start = clock.now
        var last = "no attempt"
        while clock.now - start < options.retry.deadline {
            switch await runner.run(request, goodput: nil) {
            case .response(let response) where response.status == .created:
                if let location = response.fields.location, let url = URL(string: location, relativeTo: upload.endpoint)?.absoluteURL {
                    return (url, response.fields)
                }
                last = "201 without Location"
            case .response(let response) where response.status.kind == .clientError && ![409, 423, 429].contains(response.status.code):
                throw UploadError.rejected(
                    status: response.status.code, code: response.fields.ferryError,
                    message: String(decoding: response.body.prefix(300), as: UTF8.self)
                )
            case .response(let response):
                last = "HTTP \(response.status.code)"
            case .failure(let failure):
                last = failure.description
            }
            guard let delay = backoff.nextDelay(unit: Double.random(in: 0..<1)) else { break }
            try? await clock.sleep(for: delay)
        }
        throw UploadError.deadlineExceeded(lastFailure: "creating the final upload: \(last)")
    }
}

/// The latest progress of each stream of a parallel upload.
final class ProgressTable: Sendable {
    private let state: Mutex<[UploadProgress?]>

    init(count: Int) { state = Mutex([UploadProgress?](repeating: nil, count: count)) }

    func update(_ index: Int, _ progress: UploadProgress) -> [UploadProgress?] {
        state.withLock { state in
            state[index] = progress
            return state
        }
    }
}
