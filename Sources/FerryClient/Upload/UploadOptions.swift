import FerryClock
import Foundation
import HTTPTypes

/// How an upload behaves; the defaults suit mobile networks.
public struct UploadOptions: Sendable {
    /// tus `Upload-Metadata` pairs, in order (values are sent Base64-encoded).
    public var metadata: [(String, String)]
    public var network: NetworkKind
    public var chunk: ChunkSizer.Configuration
    public var retry: RetryPolicy
    public var stall: StallPolicy
    /// Send `Upload-Checksum: sha256` when the server offers it, for requests up to
    /// `checksumLimit` bytes (larger ones would cost a second read of the file before sending),
    /// and only up to 1 MiB until the link has carried 8 requests in a row (a checksummed
    /// request that breaks off is discarded whole).
    public var checksums: Bool
    public var checksumLimit: Int64
    /// Instant upload: files of at most this many bytes are hashed before their creation and
    /// their SHA-256 announced where the server offers it (`Ferry-Instant-Upload`), so that
    /// content it already holds is stored without sending it (docs/instant-upload.md). Hashing
    /// delays the first byte by the file's read time; 0 turns it off. The default is the size
    /// from which an upload splits into parallel streams (`Parallelism.adaptive`'s threshold),
    /// which do not announce.
    public var instantUploadLimit: Int64 = 32 << 20
    /// A file small enough to travel whole in its creation request is announced only from this
    /// size: a miss costs it one more request (the creation carries the digest, then the bytes
    /// follow), which below a few bandwidth-delay products of the link outweighs what a hit
    /// saves. Larger files are announced at no extra cost (their creation carries no bytes).
    public var instantUploadMinimum: Int64 = 512 << 10
    /// Where to persist resume records; nil keeps nothing across processes.
    public var resumeStore: ResumeStore?
    /// Extra fields on every request (authentication, for example).
    public var headers: HTTPFields
    /// How many streams carry one file (tus concatenation, when the server offers it). By
    /// default one, and up to four for large files only where one stream cannot fill the link.
    public var parallelism: Parallelism = .adaptive()
    /// When `.adaptive` adds a stream (its `maximumStreams` is taken from `parallelism`).
    public var parallelProbe = ParallelismProbe.Configuration()
    /// Called with one line per request and wait (for `--verbose` and debugging).
    public var trace: (@Sendable (String) -> Void)?
    /// The protocol spoken to the server.
    public var dialect: UploadDialect = .tus
    /// Measures stalls, deadlines, rates and retry waits (a test clock in tests).
    public var clock = AnyClock(ContinuousClock())
    /// What an earlier upload learned from the server's `OPTIONS`: when set, the upload skips
    /// discovery (an `UploadQueue` shares it between its members, so a small file is one request).
    var discovered: DiscoveredServer?
    /// Hears what this upload's discovery learned (how an `UploadQueue` fills `discovered`).
    var onDiscovered: (@Sendable (DiscoveredServer) -> Void)?
    /// A completed upload leaves its resume record (`UploadResult.keptResumeRecord`) until the
    /// caller saved the result: a process killed in between finds the upload complete on the
    /// server (one HEAD) instead of uploading the file again. For an `UploadQueue`'s members.
    var keepsResumeRecord = false

    public init(
        metadata: [(String, String)] = [],
        network: NetworkKind = .unknown,
        chunk: ChunkSizer.Configuration = .init(),
        retry: RetryPolicy = .init(),
        stall: StallPolicy? = nil,
        checksums: Bool = true,
        checksumLimit: Int64 = 8 << 20,
        resumeStore: ResumeStore? = nil,
        headers: HTTPFields = [:]
    ) {
        self.metadata = metadata
        self.network = network
        self.chunk = chunk
        self.retry = retry
        self.stall = stall ?? StallPolicy(network: network)
        self.checksums = checksums
        self.checksumLimit = checksumLimit
        self.resumeStore = resumeStore
        self.headers = headers
        self.trace = nil
    }

    /// What typical tus clients do: fixed 5 MiB chunks, retry delays 0/1/3/5 s then give up,
    /// no stall detection, no checksums (the comparison baseline of the benchmarks).
    public static func typicalTusClient(metadata: [(String, String)] = []) -> UploadOptions {
        var options = UploadOptions(
            metadata: metadata,
            chunk: .fixed(5 << 20),
            retry: .typicalTusClient,
            stall: StallPolicy(enabled: false),
            checksums: false
        )
        options.instantUploadLimit = 0
        options.stall.enabled = false
        options.parallelism = .single
        return options
    }
}

/// What a server's answer to `OPTIONS` told an upload: its capabilities, and where it takes
/// telemetry reports.
struct DiscoveredServer: Sendable, Equatable {
    var capabilities: ServerCapabilities
    var telemetryPath: String?
}

/// The protocol an upload speaks.
public enum UploadDialect: String, Sendable, CaseIterable {
    /// tus 1.0 (every extension the server offers; parallel streams by concatenation).
    case tus
    /// IETF Resumable Uploads for HTTP, interop version 8: the same policies (sizing, stall
    /// detection, retries, resume records) over RUFH requests; one stream per file, and only
    /// the `filetype` and `filename` metadata travel (as `Content-Type` and `Content-Disposition`).
    case rufh
}

/// How many parallel streams carry one file.
public enum Parallelism: Sendable, Equatable {
    /// One tus upload, one request at a time.
    case single
    /// The file cut into this many `partial` uploads up front, sent at once, then concatenated.
    case fixed(Int)
    /// Files of at least `threshold` bytes start as one splittable stream; another stream is
    /// added (up to `maximum`) while each one added raises the total rate
    /// (`AdaptiveParallelUpload`). Smaller files, and servers without concatenation and
    /// deferred lengths, get one plain upload.
    case adaptive(maximum: Int = 4, threshold: Int64 = 32 << 20)
}

extension UploadOptions {
    /// A `Name: value` line that is not a valid field.
    public struct InvalidFieldLine: Error, CustomStringConvertible {
        public var line: String
        public var description: String { "a header is 'Name: value': \(line)" }
    }

    /// Fields from `Name: value` lines (as `curl -H` takes them), in order, for `headers`.
    public static func headerFields(parsing lines: [String]) throws(InvalidFieldLine) -> HTTPFields {
        var fields = HTTPFields()
        for line in lines {
            guard let colon = line.firstIndex(of: ":"),
                let name = HTTPField.Name(String(line[..<colon]).trimmingCharacters(in: .whitespaces))
            else { throw InvalidFieldLine(line: line) }
            fields.append(HTTPField(name: name, value: line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        return fields
    }
}
