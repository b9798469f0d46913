/// An error Ferry reports to a client or an operator, with a stable `ERR_*` code.
///
/// Dialects map the code to a status in one place; clients branch on `code.name`.
public struct FerryError: Error, Sendable, CustomStringConvertible {
    /// Stable error codes. Never renumber or rename: clients depend on the names.
    public enum Code: String, Sendable, CaseIterable {
        case unsupportedVersion = "ERR_UNSUPPORTED_VERSION"
        case methodNotAllowed = "ERR_METHOD_NOT_ALLOWED"
        case notFound = "ERR_NOT_FOUND"
        case uploadNotFound = "ERR_UPLOAD_NOT_FOUND"
        case uploadGone = "ERR_UPLOAD_GONE"
        case invalidContentType = "ERR_INVALID_CONTENT_TYPE"
        case invalidOffset = "ERR_INVALID_OFFSET"
        case offsetMismatch = "ERR_OFFSET_MISMATCH"
        case invalidLength = "ERR_INVALID_LENGTH"
        case lengthRequired = "ERR_LENGTH_REQUIRED"
        case lengthImmutable = "ERR_LENGTH_IMMUTABLE"
        case invalidDeferLength = "ERR_INVALID_DEFER_LENGTH"
        case maxSizeExceeded = "ERR_MAX_SIZE_EXCEEDED"
        case lengthExceeded = "ERR_UPLOAD_LENGTH_EXCEEDED"
        case invalidMetadata = "ERR_INVALID_METADATA"
        case invalidConcat = "ERR_INVALID_CONCAT"
        case modifyFinal = "ERR_MODIFY_FINAL"
        case invalidChecksum = "ERR_INVALID_CHECKSUM"
        case unsupportedChecksumAlgorithm = "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"
        case checksumMismatch = "ERR_CHECKSUM_MISMATCH"
        case uploadIncomplete = "ERR_UPLOAD_INCOMPLETE"
        case rangeNotSatisfiable = "ERR_RANGE_NOT_SATISFIABLE"
        case requestSuperseded = "ERR_REQUEST_SUPERSEDED"
        case requestIncomplete = "ERR_REQUEST_INCOMPLETE"
        case uploadLocked = "ERR_UPLOAD_LOCKED"
        case shuttingDown = "ERR_SHUTTING_DOWN"
        case storageFull = "ERR_STORAGE_FULL"
        case storageFailure = "ERR_STORAGE_FAILURE"
        case catalogFailure = "ERR_CATALOG_FAILURE"
        case internalError = "ERR_INTERNAL"
        case unauthorized = "ERR_UNAUTHORIZED"
        case forbidden = "ERR_FORBIDDEN"
        case scenarioNotFound = "ERR_SCENARIO_NOT_FOUND"
        case quotaExceeded = "ERR_QUOTA_EXCEEDED"
        case metadataRequired = "ERR_METADATA_REQUIRED"
        case contentTypeNotAllowed = "ERR_CONTENT_TYPE_NOT_ALLOWED"
        case contentMismatch = "ERR_CONTENT_MISMATCH"
        case checksumRequired = "ERR_CHECKSUM_REQUIRED"
        case rejected = "ERR_REJECTED"
        case callbackFailed = "ERR_CALLBACK_FAILED"
        /// An `Upload-Draft-Interop-Version` this server does not speak.
        case unsupportedInteropVersion = "ERR_UNSUPPORTED_INTEROP_VERSION"
        /// Lengths that disagree (`Upload-Length`, `Content-Length`, `Upload-Complete`, what is stored).
        case inconsistentLength = "ERR_INCONSISTENT_LENGTH"
        /// An append to an upload that is already complete.
        case uploadCompleted = "ERR_UPLOAD_COMPLETED"
        /// An admin query with a parameter it cannot use.
        case invalidQuery = "ERR_INVALID_QUERY"
        /// Metadata larger than the server keeps (per entry or in all).
        case metadataTooLarge = "ERR_METADATA_TOO_LARGE"
        /// Request headers larger than the server reads (431).
        case headersTooLarge = "ERR_HEADERS_TOO_LARGE"
        /// Too many requests from one client or address in a short time (429).
        case rateLimited = "ERR_RATE_LIMITED"
        /// A request body that arrives too slowly (408).
        case bodyTooSlow = "ERR_BODY_TOO_SLOW"
        /// A field the request's protocol version forbids on this request (RUFH drafts -01 to -05:
        /// `Upload-Offset` or `Upload-Complete` on HEAD and DELETE).
        case unexpectedField = "ERR_UNEXPECTED_FIELD"
        /// Instant upload (docs/instant-upload.md): a `Ferry-Proof` that is not the answer to the
        /// upload's challenge (403).
        case proofInvalid = "ERR_PROOF_INVALID"
        /// A `Ferry-Proof` sent after its challenge's `expires` (403).
        case proofExpired = "ERR_PROOF_EXPIRED"
        /// A `Ferry-Proof` for an upload with no challenge pending (409).
        case noChallenge = "ERR_NO_CHALLENGE"
        /// A `Ferry-Proof` whose content no complete upload in scope holds any more (409).
        case contentGone = "ERR_CONTENT_GONE"
        /// A `Ferry-Proof` on a request with a body (400).
        case proofWithBody = "ERR_PROOF_WITH_BODY"
    }

    public let code: Code
    public let message: String
    /// The driver or system error behind this one, for logs only.
    public let underlying: (any Error)?
    public let file: String
    public let line: Int
    /// For `ERR_REJECTED`: the status a business callback chose (400-499).
    public var status: Int?
    /// For `ERR_QUOTA_EXCEEDED`: seconds after which a retry may succeed.
    public var retryAfter: Int?

    public init(
        _ code: Code,
        _ message: String,
        underlying: (any Error)? = nil,
        file: String = #fileID,
        line: Int = #line
    ) {
        self.code = code
        self.message = message
        self.underlying = underlying
        self.file = file
        self.line = line
    }

    public var description: String {
        var text = "\(code.rawValue): \(message)"
        if let underlying { text += " (\(underlying))" }
        return text
    }

    /// True for errors caused by the server side (storage, catalog, bugs), false for client mistakes.
    public var isServerFault: Bool {
        switch code {
        case .storageFull, .storageFailure, .catalogFailure, .internalError, .shuttingDown, .callbackFailed: true
        default: false
        }
    }
}
