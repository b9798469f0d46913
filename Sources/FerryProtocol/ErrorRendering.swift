import FerryCore
import HTTPTypes

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
        case .rejected, .proofInvalid, .proofExpired: .forbidden
        case .noChallenge, .contentGone: .conflict
        case .callbackFailed: .serviceUnavailable
        case .unsupportedInteropVersion, .inconsistentLength, .uploadCompleted, .invalidQuery, .unexpectedField, .proofWithBody: .badRequest
        case .metadataRequired, .checksumRequired, .invalidOffset, .invalidLength, .lengthRequired, .lengthImmutable, .invalidDeferLength, .invalidMetadata,
            .invalidConcat, .invalidChecksum, .unsupportedChecksumAlgorithm, .requestIncomplete:
            .badRequest
        }
    }
}

extension FerryError {
    /// The status this error is answered with: a business callback's own choice, else the code's.
    public var httpStatus: HTTPResponse.Status {
        status.map { HTTPResponse.Status(code: $0) } ?? code.status
    }
}

/// Renders errors, in the three formats Ferry speaks, with the fields every format shares
/// (`Ferry-Error`, `Cache-Control`, `Retry-After`, the bearer challenge).
public enum ErrorRendering {
    /// The realms of the bearer challenges: uploads, and the admin API.
    public enum Realm: String, Sendable {
        case uploads = "ferry"
        case admin = "ferry-admin"
    }

    /// `WWW-Authenticate` for a 401: `invalid_token` when the request carried credentials.
    public static func challenge(_ realm: Realm, credentialsSent: Bool) -> String {
        credentialsSent ? #"Bearer realm="\#(realm.rawValue)", error="invalid_token""# : #"Bearer realm="\#(realm.rawValue)""#
    }

    /// The fields every error response carries, whatever its body.
    public static func fields(_ error: FerryError) -> HTTPFields {
        var headers = HTTPFields()
        headers[.ferryError] = error.code.rawValue
        headers[.cacheControl] = "no-store"
        if error.code == .shuttingDown { headers[.retryAfter] = "2" }
        if let retryAfter = error.retryAfter { headers[.retryAfter] = String(retryAfter) }
        if error.code == .unauthorized { headers[.wwwAuthenticate] = challenge(.uploads, credentialsSent: false) }
        return headers
    }

    /// tus (and plain routes): `ERR_CODE: message` as text; no body for HEAD.
    public static func text(_ error: FerryError, status: HTTPResponse.Status? = nil, head: Bool = false) -> UploadResponse {
        var headers = fields(error)
        var body = UploadResponse.Body.empty
        if !head {
            headers[.contentType] = "text/plain; charset=utf-8"
            body = .text("\(error.code.rawValue): \(error.message)\n")
        }
        return UploadResponse(status: status ?? error.httpStatus, headers: headers, body: body, error: error)
    }

    /// RFC 9457 `application/problem+json`, with `code` (the stable `ERR_*`) and any `extra`
    /// integer members; no body for HEAD.
    public static func problem(
        _ error: FerryError,
        type: String = "about:blank",
        status: HTTPResponse.Status? = nil,
        extra: [(String, Int64)] = [],
        head: Bool = false
    ) -> UploadResponse {
        let status = status ?? error.httpStatus
        var headers = fields(error)
        var body = UploadResponse.Body.empty
        if !head {
            var writer = JSONWriter()
            writer.string("type", type)
            writer.string("title", error.message)
            writer.number("status", Int64(status.code))
            writer.string("code", error.code.rawValue)
            for (key, value) in extra { writer.number(key, value) }
            headers[.contentType] = "application/problem+json"
            body = .text(writer.finish())
        }
        return UploadResponse(status: status, headers: headers, body: body, error: error)
    }

    /// The admin API's JSON: `{"error":"ERR_…","message":"…"}`.
    public static func adminJSON(_ error: FerryError, realm: Realm = .admin) -> UploadResponse {
        var headers = fields(error)
        headers[.contentType] = "application/json"
        if error.code == .unauthorized { headers[.wwwAuthenticate] = challenge(realm, credentialsSent: false) }
        var writer = JSONWriter()
        writer.string("error", error.code.rawValue)
        writer.string("message", error.message)
        return UploadResponse(status: error.httpStatus, headers: headers, body: .text(writer.finish()), error: error)
    }
}
