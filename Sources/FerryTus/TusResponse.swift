import FerryCore
import HTTPTypes

/// What the tus dialect answers; the HTTP adapter writes it out.
public struct TusResponse: Sendable {
    public enum Body: Sendable {
        case empty
        case text(String)
        /// Bytes of a complete upload, streamed by the adapter from the store.
        case content(UploadRecord, Range<Int64>)
    }

    public var status: HTTPResponse.Status
    public var headers: HTTPFields
    public var body: Body
    /// The error behind this response, if any (for logs and metrics).
    public var error: FerryError?

    public init(status: HTTPResponse.Status, headers: HTTPFields = [:], body: Body = .empty, error: FerryError? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.error = error
    }
}

extension FerryError.Code {
    /// The one place error codes become HTTP statuses.
    public var status: HTTPResponse.Status {
        switch self {
        case .unsupportedVersion: .preconditionFailed
        case .methodNotAllowed: .methodNotAllowed
        case .notFound, .uploadNotFound: .notFound
        case .uploadGone: .gone
        case .invalidContentType: .unsupportedMediaType
        case .offsetMismatch, .requestSuperseded, .uploadIncomplete: .conflict
        case .maxSizeExceeded, .lengthExceeded: .contentTooLarge
        case .modifyFinal: .forbidden
        case .checksumMismatch: HTTPResponse.Status(code: 460, reasonPhrase: "Checksum Mismatch")
        case .rangeNotSatisfiable: .rangeNotSatisfiable
        case .uploadLocked: HTTPResponse.Status(code: 423, reasonPhrase: "Locked")
        case .shuttingDown: .serviceUnavailable
        case .storageFull: HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage")
        case .storageFailure, .catalogFailure, .internalError: .internalServerError
        case .unauthorized: .unauthorized
        case .forbidden: .forbidden
        case .scenarioNotFound: .notFound
        case .quotaExceeded, .rateLimited: .tooManyRequests
        case .metadataTooLarge: .badRequest
        case .headersTooLarge: HTTPResponse.Status(code: 431, reasonPhrase: "Request Header Fields Too Large")
        case .bodyTooSlow: .requestTimeout
        case .contentTypeNotAllowed, .contentMismatch: .unsupportedMediaType
        case .rejected: .forbidden
        case .callbackFailed: .serviceUnavailable
        case .unsupportedInteropVersion, .inconsistentLength, .uploadCompleted, .invalidQuery: .badRequest
        case .metadataRequired, .checksumRequired, .invalidOffset, .invalidLength, .lengthRequired, .lengthImmutable, .invalidDeferLength, .invalidMetadata,
            .invalidConcat, .invalidChecksum, .unsupportedChecksumAlgorithm, .requestIncomplete:
            .badRequest
        }
    }
}
