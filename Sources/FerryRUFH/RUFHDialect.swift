import FerryCore
import FerryTus
import Foundation
import HTTPTypes
import NIOCore

/// Sends informational (1xx) responses ahead of a request's final response.
public protocol InterimResponder: Sendable {
    func sendInterim(_ response: HTTPResponse) async
}

/// The IETF "Resumable Uploads for HTTP" dialect (draft interop versions 3, 5, 6, 7, 8 and the
/// final form without the interop field), over the same engine, store, catalog, locks,
/// scenarios, authentication and callbacks as tus: an upload created here is an upload like
/// any other, and the tus dialect can inspect it (and the other way round).
///
/// Like `TusDialect` it knows nothing of the HTTP framework: the adapter hands it the request
/// head, the body, and a transport that can also send the `104 Upload Resumption Supported`.
public struct RUFHDialect: Sendable {
    /// Shares the base path, public URL and authenticator of the tus dialect.
    public let tus: TusDialect

    public init(tus: TusDialect) {
        self.tus = tus
    }

    var engine: UploadEngine { tus.engine }

    public static let partialUploadType = "application/partial-upload"
    static let problemBase = "https://iana.org/assignments/http-problem-types#"

    /// Whether a request under the base path speaks RUFH: it carries the interop field or
    /// `Upload-Complete`/`Upload-Incomplete` (and no `Tus-Resumable`), or it is a bare HEAD or
    /// DELETE of an upload (the final RFC's offset retrieval and cancellation carry no field of
    /// their own), or an append typed `application/partial-upload`.
    public func applies(to request: HTTPRequest) -> Bool {
        let fields = request.headerFields
        guard tus.handles(path: request.path ?? "/"), fields[.rufhTusResumable] == nil else { return false }
        if fields[.uploadDraftInteropVersion] != nil || fields[.uploadComplete] != nil || fields[.uploadIncomplete] != nil {
            return true
        }
        guard case .upload = try? tus.target(of: request) else { return false }
        switch request.method {
        case .head, .delete: return true
        case .patch: return Self.mediaType(fields[.contentType]) == Self.partialUploadType
        default: return false
        }
    }

    /// Answers one RUFH request.
    public func respond<Body: AsyncSequence & Sendable>(
        to request: HTTPRequest,
        body: Body,
        transport: some BodyTransport & InterimResponder
    ) async -> TusResponse where Body.Element == ByteBuffer {
        let form: RUFHForm
        do {
            form = try RUFHForm(request.headerFields)
        } catch {
            return problem(error, form: RUFHForm(interop: nil), method: request.method)
        }
        var response: TusResponse
        do {
            response = try await dispatch(request, form, body: body, transport: transport)
        } catch {
            response = problem(error, form: form, method: request.method)
        }
        if response.error?.code == .unauthorized {
            response.headers[.wwwAuthenticate] = request.headerFields[.authorization] == nil
                ? #"Bearer realm="ferry""#
                : #"Bearer realm="ferry", error="invalid_token""#
        }
        form.echo(in: &response.headers)
        return response
    }

    private func dispatch<Body: AsyncSequence & Sendable>(
        _ request: HTTPRequest,
        _ form: RUFHForm,
        body: Body,
        transport: some BodyTransport & InterimResponder
    ) async throws(FerryError) -> TusResponse where Body.Element == ByteBuffer {
        let target = try tus.target(of: request)
        if request.method == .options {
            guard case .collection(let scenario) = target else { return options(scenario: nil, form) }
            return options(scenario: scenario, form)
        }
        let principal = try await tus.authenticator.authenticate(authorization: request.headerFields[.authorization])
        switch target {
        case .collection(let scenario):
            guard [.post, .put, .patch].contains(request.method) else {
                throw FerryError(.methodNotAllowed, "an upload is created by POST, PUT or PATCH with Upload-Complete")
            }
            return try await create(request, form, scenario: scenario, principal: principal, body: body, transport: transport)
        case .upload(let id):
            switch request.method {
            case .head, .get: return try await offset(id, request, form, principal)
            case .patch: return try await append(id, request, form, principal, body: body, transport: transport)
            case .delete:
                try await engine.terminate(id, as: principal)
                return TusResponse(status: .noContent)
            default:
                throw FerryError(.methodNotAllowed, "an upload accepts HEAD, PATCH, DELETE and OPTIONS")
            }
        }
    }

    /// OPTIONS: the limits of the collection (or of one scenario's).
    func options(scenario: String?, _ form: RUFHForm) -> TusResponse {
        var headers = HTTPFields()
        headers[.uploadLimit] = limits(scenario: scenario, form: form)
        return TusResponse(status: .noContent, headers: headers)
    }

    /// `Upload-Limit` for new uploads of a scenario: `min-size=0`, and `max-size` and the
    /// lifetime when they apply.
    public func limits(scenario: String?, form: RUFHForm = RUFHForm(interop: nil)) -> String {
        let scenarios = engine.business.scenarios
        let chosen = (scenario ?? scenarios.defaultName).flatMap { try? scenarios.named($0) }
        var maxSize = engine.capabilities.maxSize
        if let limit = chosen?.maxSize { maxSize = min(maxSize ?? limit, limit) }
        var parts: [String] = []
        if let maxSize { parts.append("max-size=\(maxSize)") }
        parts.append("min-size=0")
        if let ttl = chosen?.expiry ?? engine.configuration.expiry {
            parts.append("\(form.ageKey)=\(Int64(ttl.inSeconds.rounded(.down)))")
        }
        return parts.joined(separator: ", ")
    }

    /// `Upload-Limit` of an existing upload: its remaining lifetime instead of the scenario's.
    func limits(of record: UploadRecord, _ form: RUFHForm) -> String {
        var parts: [String] = []
        if let maxSize = record.length ?? engine.capabilities.maxSize { parts.append("max-size=\(maxSize)") }
        parts.append("min-size=0")
        if !record.isComplete, let expiresAt = record.expiresAt {
            parts.append("\(form.ageKey)=\(max(0, Int64(expiresAt.timeIntervalSinceNow.rounded(.down))))")
        }
        return parts.joined(separator: ", ")
    }

    /// The fields every response describing an upload carries.
    func describe(_ record: UploadRecord, _ form: RUFHForm, _ request: HTTPRequest, into headers: inout HTTPFields) {
        headers[.rufhUploadOffset] = String(record.offset)
        form.setComplete(record.isComplete, in: &headers)
        if form.announcesLimits {
            if let length = record.length { headers[.rufhUploadLength] = String(length) }
            headers[.uploadLimit] = limits(of: record, form)
        }
        tus.addBusinessResult(record, to: &headers)
        if record.isComplete, let sha256 = record.sha256, let wanted = request.headerFields[.wantReprDigest].flatMap(StructuredField.wanted),
            wanted.contains("sha-256"), let bytes = Hex.decode(sha256)
        {
            headers[.reprDigest] = "sha-256=" + StructuredField.byteSequence(bytes)
        }
    }

    static func mediaType(_ value: String?) -> String? {
        value.map { $0.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? "" }
    }

    /// An error as `application/problem+json` (RFC 9457), with the RUFH problem types where the
    /// draft defines one, and the stable code in `Ferry-Error` and the body.
    func problem(_ error: FerryError, form: RUFHForm, method: HTTPRequest.Method, extra: [(String, Int64)] = []) -> TusResponse {
        var headers = HTTPFields()
        headers[.rufhFerryError] = error.code.rawValue
        headers[.cacheControl] = "no-store"
        if error.code == .shuttingDown { headers[.retryAfter] = "2" }
        if let retryAfter = error.retryAfter { headers[.retryAfter] = String(retryAfter) }
        if error.code == .methodNotAllowed { headers[.allow] = "OPTIONS, POST, PUT, HEAD, PATCH, DELETE" }
        var status = error.status.map { HTTPResponse.Status(code: $0) } ?? error.code.status
        let type: String
        switch error.code {
        case .offsetMismatch:
            type = Self.problemBase + "mismatching-upload-offset"
        case .inconsistentLength, .lengthImmutable, .lengthExceeded:
            type = Self.problemBase + "inconsistent-upload-length"
            status = .badRequest
        case .uploadCompleted:
            type = Self.problemBase + "completed-upload"
        case .checksumMismatch:
            type = "about:blank"
            status = .badRequest
        default:
            type = "about:blank"
        }
        var body = TusResponse.Body.empty
        if method != .head {
            var writer = JSONWriter()
            writer.string("type", type)
            writer.string("title", error.message)
            writer.number("status", Int64(status.code))
            writer.string("code", error.code.rawValue)
            for (key, value) in extra { writer.number(key, value) }
            headers[.contentType] = "application/problem+json"
            body = .text(writer.finish())
        }
        return TusResponse(status: status, headers: headers, body: body, error: error)
    }
}
