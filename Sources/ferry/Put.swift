import ArgumentParser
import FerryClient
import FerryClientAHC
import Foundation
import Synchronization

/// `ferry put FILE URL`: upload a file, resuming automatically when rerun on the same file.
/// `ferry put FILE… URL` and `ferry put DIR URL`: several files through an `UploadQueue`
/// (`Put+Queue.swift`).
struct Put: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Upload files to a tus server, resuming where an earlier run stopped.",
        usage: "ferry put <file>... <url> [<options>]   (or: ferry put <folder> <url> [<options>])",
        discussion: """
            One file: prints the upload URL as the last line of output. Several files, or every regular file of a \
            folder (not its subfolders, not hidden files): uploaded together, voice messages first, then images, videos, \
            other files, and one line per file 'PATH<TAB>URL' printed once all ended ('PATH<TAB>stored instantly' when the server already held the file, 'PATH<TAB>business-status: …' and \
            'PATH<TAB>business-result: …' before it when the server sends them); rerun the same command after a failure or \
            a kill to retry what is not done, without sending again what is. Exits non-zero with a message on failure, \
            naming each file that failed.
            """
    )

    @Argument(help: ArgumentHelp("The files (or one folder) to upload, then the server's creation endpoint, e.g. http://127.0.0.1:8080/files/", valueName: "file-or-url"))
    var arguments: [String] = []

    @Option(name: .customLong("metadata"), help: "key=value metadata (repeatable). A filename is added unless given.")
    var metadata: [String] = []

    @Option(help: "A fixed request size (bytes or K/M/G); adaptive when omitted.")
    var chunk: String?

    @Option(help: "auto, or 1-4 parallel streams (more than one needs tus concatenation on the server). auto: files of at least 32 MiB add streams, up to 4, only while each one raises the total rate. (default: auto)")
    var parallel: String = "auto"

    @Option(help: "Give up after this long (e.g. 30m, 6h). (default: 6h)")
    var deadline: String = "6h"

    @Option(help: "wifi, cellular, wired or unknown: where the adaptive policies start. (default: unknown)")
    var network: String = "unknown"

    @Option(help: "Folder for resume records. (default: $XDG_CACHE_HOME/ferry/uploads or ~/.cache/ferry/uploads)")
    var stateDir: String?

    @Option(help: "Announce the SHA-256 of files up to this size (bytes or K/M/G; 0: never) where the server offers instant upload, so that a file it already holds is stored without sending it. Hashing reads the file once before the first byte. (default: 32M)")
    var instantLimit: String = "32M"

    @Flag(help: "Do not persist or use resume records.")
    var noResume = false

    @Flag(help: "Behave like a typical tus client (fixed 5 MiB requests, 0/1/3/5 s retries then give up, no stall detection); for comparisons.")
    var typicalTusClient = false

    @Flag(help: "Print one line per request to standard error.")
    var verbose = false

    @Option(help: "Extra request header 'Name: value' (repeatable), e.g. for authentication.")
    var header: [String] = []

    @Option(name: .customLong("protocol"), help: "tus, or rufh (IETF Resumable Uploads, interop 8; one stream). (default: tus)")
    var dialect = "tus"

    @OptionGroup var tls: TLSFlags

    @Option(help: "Several files: auto, or how many upload at once. auto: 4 over HTTP/1.1, 8 once the server answers over HTTP/2, half that on --network cellular.")
    var concurrency: String = "auto"

    @Option(help: "Several files: the folder keeping the queue's state. (default: a folder per file list and URL under <state-dir>/queues, removed once every file is uploaded)")
    var queueDir: String?

    func validate() throws {
        guard arguments.count >= 2 else { throw ValidationError("expected one or more files (or a folder), then the URL") }
    }

    func run() async throws {
        let url = arguments[arguments.count - 1]
        let paths = Array(arguments.dropLast())
        guard let endpoint = URL(string: url), endpoint.scheme != nil else { throw ValidationError("not a URL: \(url)") }
        let (options, pairs) = try uploadOptions()
        if paths.count == 1, await !Self.isFolder(paths[0]) {
            try await putOne(paths[0], endpoint: endpoint, options: options, metadata: pairs)
        } else {
            try await putMany(paths, endpoint: endpoint, options: options, metadata: pairs)
        }
    }

    /// The options every file is uploaded with, and the metadata pairs given (without the
    /// filename each file adds).
    private func uploadOptions() throws -> (UploadOptions, [(String, String)]) {
        guard let network = NetworkKind(rawValue: network) else { throw ValidationError("unknown network kind \(network)") }
        let pairs = try metadata.map { item -> (String, String) in
            guard let equals = item.firstIndex(of: "=") else { throw ValidationError("metadata is key=value: \(item)") }
            return (String(item[..<equals]), String(item[item.index(after: equals)...]))
        }
        var options = typicalTusClient ? UploadOptions.typicalTusClient(metadata: pairs) : UploadOptions(metadata: pairs, network: network)
        if let chunk {
            guard let size = Settings.bytes(chunk), size > 0 else { throw ValidationError("invalid --chunk \(chunk)") }
            options.chunk = .fixed(size)
        }
        if !typicalTusClient {
            guard let limit = Settings.bytes(instantLimit), limit >= 0 else { throw ValidationError("invalid --instant-limit \(instantLimit)") }
            options.instantUploadLimit = limit
        }
        guard let deadline = Settings.duration(deadline) else { throw ValidationError("invalid --deadline \(deadline)") }
        options.retry.deadline = deadline
        guard let chosen = UploadDialect(rawValue: dialect) else { throw ValidationError("--protocol takes tus or rufh") }
        options.dialect = chosen
        if typicalTusClient {
            options.parallelism = .single
        } else if parallel == "auto" {
            options.parallelism = .adaptive()
        } else if let streams = Int(parallel), (1...4).contains(streams) {
            options.parallelism = streams == 1 ? .single : .fixed(streams)
        } else {
            throw ValidationError("--parallel takes auto or 1 to 4")
        }
        if !noResume {
            options.resumeStore = ResumeStore(directory: stateDir.map { URL(fileURLWithPath: $0) } ?? ResumeStore.defaultDirectory)
        }
        do {
            options.headers = try UploadOptions.headerFields(parsing: header)
        } catch {
            throw ValidationError(error.description)
        }
        if verbose {
            options.trace = { line in FileHandle.standardError.write(Data("\(line)\n".utf8)) }
        }
        return (options, pairs)
    }

    /// One file: the upload URL is the last line of standard output.
    private func putOne(_ file: String, endpoint: URL, options: UploadOptions, metadata pairs: [(String, String)]) async throws {
        var options = options
        if !pairs.contains(where: { $0.0 == "filename" }) { options.metadata.append(("filename", URL(fileURLWithPath: file).lastPathComponent)) }
        let client = try tls.makeClient()
        let upload = Upload(file: file, endpoint: endpoint, transport: AsyncHTTPClientTransport(client: client), options: options)
        let display = ProgressDisplay(interactive: isatty(STDERR_FILENO) == 1)
        let outcome: Result<UploadResult, UploadError>
        do {
            async let result = upload.run()
            for await progress in upload.progress { display.show(progress) }
            outcome = .success(try await result)
        } catch let error as UploadError {
            outcome = .failure(error)
        }
        display.finish()
        try? await client.shutdown()
        switch outcome {
        case .success(let result) where result.storedInstantly:
            FileHandle.standardError.write(Data(
                "stored instantly: the server held these \(result.length) bytes; \(result.requests) requests, \(result.bytesSent) bytes of the file sent\n".utf8
            ))
            Self.printResult(result)
        case .success(let result):
            FileHandle.standardError.write(Data(
                "uploaded \(result.length) bytes in \(result.requests) requests (\(result.failures) failed, \(max(0, result.bytesSent - result.length)) bytes sent twice)\n".utf8
            ))
            Self.printResult(result)
        case .failure(let error):
            FileHandle.standardError.write(Data("ferry put: upload failed: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    /// The business result and the URL, which stays the last line.
    private static func printResult(_ result: UploadResult) {
        // The business result of a scenario with a pre-finish callback (docs/business.md).
        if let status = result.finalFields.ferryBusinessStatus { print("business-status: \(status)") }
        if let business = result.finalFields.ferryBusinessResult { print("business-result: \(business)") }
        print(result.url.absoluteString)
    }
}

/// A progress bar with rate and ETA on a terminal; a plain line every few seconds otherwise.
final class ProgressDisplay: Sendable {
    let interactive: Bool
    private let throttle: DisplayThrottle

    init(interactive: Bool) {
        self.interactive = interactive
        self.throttle = DisplayThrottle(interactive: interactive)
    }

    func show(_ progress: UploadProgress) {
        guard throttle.due(at: ContinuousClock.now) else { return }
        let done = progress.acknowledged + progress.inFlight
        let fraction = progress.total > 0 ? Double(done) / Double(progress.total) : 1
        let rate = progress.bytesPerSecond.map { Self.size(Int64($0)) + "/s" } ?? "-"
        let eta = progress.eta.map { Self.time($0) } ?? "-"
        let phase = progress.storedInstantly ? "stored instantly" : progress.phase.rawValue
        let text = "\(Self.size(done))/\(Self.size(progress.total)) \(String(format: "%5.1f", fraction * 100))% \(rate) ETA \(eta) \(phase)"
            + (progress.failures > 0 ? " retries \(progress.failures)" : "")
        if interactive {
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            FileHandle.standardError.write(Data("\r[\(bar)] \(text)\u{1B}[K".utf8))
        } else {
            FileHandle.standardError.write(Data("\(text)\n".utf8))
        }
    }

    func finish() {
        if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    static func size(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }

    static func time(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "-" }
        let total = Int(seconds.rounded())
        return total >= 3600 ? "\(total / 3600)h\(total % 3600 / 60)m" : total >= 60 ? "\(total / 60)m\(total % 60)s" : "\(total)s"
    }
}

/// When a progress line is due: every 200 ms on a terminal, every 5 s otherwise.
final class DisplayThrottle: Sendable {
    private let interval: Duration
    private let last = Synchronization.Mutex<ContinuousClock.Instant?>(nil)

    init(interactive: Bool) { interval = interactive ? .milliseconds(200) : .seconds(5) }

    func due(at now: ContinuousClock.Instant) -> Bool {
        last.withLock { last in
            if let previous = last, now - previous < interval { return false }
            last = now
            return true
        }
    }
}
