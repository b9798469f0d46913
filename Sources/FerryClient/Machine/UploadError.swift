/// Why an upload ended without completing.
public enum UploadError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The server refused the upload for good (a 4xx other than 409/423/429), with its error code.
    case rejected(status: Int, code: String?, message: String)
    /// The retry policy gave up (only policies with an attempt limit do).
    case gaveUp(attempts: Int, lastFailure: String)
    /// The caller's overall deadline passed.
    case deadlineExceeded(lastFailure: String)
    /// The server no longer has the upload, even after starting over once.
    case uploadGone
    /// The local file cannot be read, or changed while uploading.
    case localFile(String)
    /// The caller cancelled.
    case cancelled
    /// The server's identity could not be verified (certificate or pin); nothing was retried.
    case untrusted(String)

    public var description: String {
        switch self {
        case .rejected(let status, let code, let message):
            "the server refused the upload (\(status)\(code.map { " \($0)" } ?? "")): \(message)"
        case .gaveUp(let attempts, let last): "gave up after \(attempts) attempts without progress; last: \(last)"
        case .deadlineExceeded(let last): "the upload deadline passed; last failure: \(last)"
        case .uploadGone: "the server lost the upload twice"
        case .localFile(let message): "cannot read the file: \(message)"
        case .cancelled: "cancelled"
        case .untrusted(let message): "the server's identity could not be verified: \(message)"
        }
    }
}

/// How one request failed, as the machine needs to know it.
public enum RequestFailure: Sendable, Equatable, CustomStringConvertible {
    /// No progress within the stall policy's limits; the request was aborted.
    case stalled
    /// The connection failed (refused, reset, closed, timed out connecting).
    case transport(String)
    /// The server's certificate or public key was refused (`TransportTrustError`): never retried.
    case untrusted(String)
    /// The server answered with an error status.
    case status(Int, code: String?, retryAfter: Duration?, message: String)

    public var description: String {
        switch self {
        case .stalled: "stalled"
        case .transport(let message): "transport: \(message)"
        case .untrusted(let message): "untrusted server: \(message)"
        case .status(let status, let code, _, _): "HTTP \(status)\(code.map { " \($0)" } ?? "")"
        }
    }
}

/// What the server said it supports (tus `OPTIONS`).
public struct ServerCapabilities: Sendable, Equatable {
    public var extensions: Set<String>
    public var checksumAlgorithms: [String]
    public var maxSize: Int64?
    /// `Ferry-Instant-Upload: sha-256` on OPTIONS: a creation that announces the file's digest
    /// may be answered with a challenge and completed without its bytes.
    public var instantUpload: Bool

    public init(extensions: Set<String> = [], checksumAlgorithms: [String] = [], maxSize: Int64? = nil, instantUpload: Bool = false) {
        self.instantUpload = instantUpload
        self.extensions = extensions
        self.checksumAlgorithms = checksumAlgorithms
        self.maxSize = maxSize
    }

    public var creationWithUpload: Bool { extensions.contains("creation-with-upload") }
    public var termination: Bool { extensions.contains("termination") }
    public var concatenation: Bool { extensions.contains("concatenation") }
    public var sha256Checksums: Bool { checksum == .sha256 }
}
