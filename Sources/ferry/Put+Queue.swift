import ArgumentParser
import Dispatch
import FerryClient
import FerryClientAHC
import Foundation
import Synchronization

/// `ferry put FILE… URL` and `ferry put DIR URL`: the files go through an `UploadQueue`.
///
/// Standard output, once every file ended, in the order given (a folder's files by name):
/// `PATH<TAB>business-status: …` and `PATH<TAB>business-result: …` when the server sent them,
/// then `PATH<TAB>URL`, for each file uploaded. Standard error: the progress in total, then one
/// `ferry put: PATH: upload failed: …` line per file that failed (the exit status is then 1).
extension Put {
    func putMany(_ paths: [String], endpoint: URL, options: UploadOptions, metadata pairs: [(String, String)]) async throws {
        let files = try await Self.expand(paths)
        var fixed: Int?
        if concurrency != "auto" {
            guard let count = Int(concurrency), count >= 1 else { throw ValidationError("--concurrency takes auto or a number of files") }
            fixed = count
        }
        let configuration = UploadQueue.Configuration(options: options, concurrency: fixed)
        let temporary = noResume && queueDir == nil
        let directory: URL
        if let queueDir {
            directory = URL(fileURLWithPath: queueDir)
        } else if noResume {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-queue-\(UUID().uuidString)")
        } else {
            directory = Self.defaultQueueDirectory(stateDir: stateDir, endpoint: endpoint, files: files)
        }
        // Over HTTP/1.1 each member running holds one connection: no more than it may run.
        let client = try tls.makeClient(http1ConnectionsPerHost: fixed ?? configuration.http1Concurrency)
        let summary: QueueSummary
        let ids: [QueueItemID]
        do {
            let queue = try await UploadQueue(directory: directory, transport: AsyncHTTPClientTransport(client: client), configuration: configuration)
            ids = try await queue.enqueue(files.map { file in
                var metadata = pairs
                if !pairs.contains(where: { $0.0 == "filename" }) { metadata.append(("filename", URL(fileURLWithPath: file).lastPathComponent)) }
                return UploadQueue.Entry(file: file, endpoint: endpoint, metadata: metadata)
            })
            let display = QueueProgressDisplay(interactive: isatty(STDERR_FILENO) == 1)
            let updates = queue.updates()
            async let ended = queue.run()
            for await progress in updates { display.show(progress) }
            summary = await ended
            display.finish(summary)
        } catch {
            try? await client.shutdown()
            FileHandle.standardError.write(Data("ferry put: \(error)\n".utf8))
            throw ExitCode.failure
        }
        try? await client.shutdown()

        var failed = 0
        for (file, id) in zip(files, ids) {
            guard let item = summary[id], item.state == .done, let url = item.url else {
                failed += 1
                let reason = summary[id].map { $0.error ?? $0.state.rawValue } ?? "not in the queue"
                FileHandle.standardError.write(Data("ferry put: \(file): upload failed: \(reason)\n".utf8))
                continue
            }
            if item.storedInstantly { print("\(file)\tstored instantly") }
            if let status = item.businessStatus { print("\(file)\tbusiness-status: \(status)") }
            if let business = item.businessResult { print("\(file)\tbusiness-result: \(business)") }
            print("\(file)\t\(url.absoluteString)")
        }
        let others = summary.items.count - ids.count
        if failed > 0 {
            let kept = temporary ? "" : "; run the same command again to retry them (the \(files.count - failed) uploaded are not sent again)"
            FileHandle.standardError.write(Data("ferry put: \(failed) of \(files.count) files failed\(kept)\n".utf8))
        }
        if temporary || (queueDir == nil && failed == 0 && summary.unfinished == 0 && others == 0) {
            // Like one file's resume record once it is uploaded: the next run uploads again.
            try? await Self.offPool { try FileManager.default.removeItem(at: directory) }
        }
        if failed > 0 { throw ExitCode.failure }
    }

    /// The files to upload: each path as given, or for a folder its regular files (not hidden,
    /// not in subfolders) by name.
    static func expand(_ paths: [String]) async throws -> [String] {
        let files = try await offPool {
            try paths.flatMap { path -> [String] in
                guard isFolderBlocking(path) else { return [path] }
                let names = try FileManager.default.contentsOfDirectory(atPath: path).filter { !$0.hasPrefix(".") }.sorted()
                let prefix = path.hasSuffix("/") ? path : path + "/"
                return names.map { prefix + $0 }.filter { isRegularFile($0) }
            }
        }
        guard !files.isEmpty else { throw ValidationError("no files to upload in \(paths.joined(separator: " "))") }
        return files
    }

    static func isFolder(_ path: String) async -> Bool {
        (try? await offPool { isFolderBlocking(path) }) ?? false
    }

    private static func isFolderBlocking(_ path: String) -> Bool {
        var folder: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &folder) && folder.boolValue
    }

    private static func isRegularFile(_ path: String) -> Bool {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.type] as? FileAttributeType) == .typeRegular
    }

    /// `<state-dir>/queues/<hash of the URL and the files>`: the same command finds its queue.
    static func defaultQueueDirectory(stateDir: String?, endpoint: URL, files: [String]) -> URL {
        let base = stateDir.map { URL(fileURLWithPath: $0) } ?? ResumeStore.defaultDirectory
        let key = ([endpoint.absoluteString] + files.map { URL(fileURLWithPath: $0).standardizedFileURL.path }.sorted()).joined(separator: "\n")
        // FNV-1a, 64 bits: stable across runs and platforms (Hasher is seeded per process).
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return base.appendingPathComponent("queues").appendingPathComponent(String(hash, radix: 16))
    }

    /// Runs blocking file-system work on a Dispatch thread, off the cooperative pool.
    static func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
        }
    }
}

/// The queue's progress in total on standard error: a line redrawn on a terminal, a plain line
/// every few seconds otherwise.
final class QueueProgressDisplay: Sendable {
    let interactive: Bool
    private let start = ContinuousClock.now
    private let throttle: DisplayThrottle

    init(interactive: Bool) {
        self.interactive = interactive
        self.throttle = DisplayThrottle(interactive: interactive)
    }

    func show(_ progress: QueueProgress) {
        let now = ContinuousClock.now
        guard throttle.due(at: now) else { return }
        write(line(progress, at: now))
    }

    func finish(_ summary: QueueSummary) {
        let progress = QueueProgress(items: summary.items, concurrency: 0)
        write(line(progress, at: .now))
        if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
        var counts = "\(summary.done) uploaded"
        if summary.failed > 0 { counts += ", \(summary.failed) failed" }
        if summary.cancelled > 0 { counts += ", \(summary.cancelled) cancelled" }
        if summary.unfinished > 0 { counts += ", \(summary.unfinished) not finished" }
        FileHandle.standardError.write(Data("\(counts) of \(summary.items.count) files, \(ProgressDisplay.size(progress.acknowledged))\n".utf8))
    }

    private func line(_ progress: QueueProgress, at now: ContinuousClock.Instant) -> String {
        let seconds = (now - start).seconds
        let rate = seconds > 0.5 ? Double(progress.acknowledged) / seconds : 0
        let fraction = progress.total > 0 ? Double(progress.acknowledged) / Double(progress.total) : 1
        let eta = rate > 0 ? ProgressDisplay.time(Double(progress.total - progress.acknowledged) / rate) : "-"
        var text = "files \(progress.filesDone)/\(progress.filesTotal) \(ProgressDisplay.size(progress.acknowledged))/\(ProgressDisplay.size(progress.total))"
            + " \(String(format: "%5.1f", fraction * 100))% \(rate > 0 ? ProgressDisplay.size(Int64(rate)) + "/s" : "-") ETA \(eta)"
        if progress.filesRunning > 0 { text += " running \(progress.filesRunning)" }
        if progress.filesFailed > 0 { text += " failed \(progress.filesFailed)" }
        return text
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data((interactive ? "\r\(text)\u{1B}[K" : "\(text)\n").utf8))
    }
}

extension Duration {
    fileprivate var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
