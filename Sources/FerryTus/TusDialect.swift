import FerryCore
import Foundation
import HTTPTypes
import NIOCore

/// The tus 1.0.0 dialect: typed headers in, engine command, response out.
///
/// Knows nothing of the HTTP framework; the adapter hands it the request head, the body
/// as an async sequence, and a `BodyTransport` for `Expect: 100-continue` and trailers.
public struct TusDialect: Sendable {
    public struct Configuration: Sendable {
        /// Path of the upload collection, with leading and trailing slash (`/files/`).
        public var basePath: String
        /// Absolute URL prefix for `Location` (e.g. `https://up.example.com/files/`);
        /// nil builds it from the request's Host.
        public var publicBaseURL: String?
        /// Honour `X-Forwarded-Proto`/`X-Forwarded-Host` (only behind a trusted proxy).
        public var trustForwardedHeaders: Bool

        public init(basePath: String = "/files/", publicBaseURL: String? = nil, trustForwardedHeaders: Bool = false) {
            var path = basePath.hasPrefix("/") ? basePath : "/" + basePath
            if !path.hasSuffix("/") { path += "/" }
            self.basePath = path
            self.publicBaseURL = publicBaseURL.map { $0.hasSuffix("/") ? $0 : $0 + "/" }
            self.trustForwardedHeaders = trustForwardedHeaders
        }
    }

    public static let version = "1.0.0"

    public let engine: UploadEngine
    public let configuration: Configuration
    public let authenticator: any Authenticator

    public init(engine: UploadEngine, configuration: Configuration = Configuration(), authenticator: any Authenticator = AnonymousAuthenticator()) {
        self.engine = engine
        self.configuration = configuration
        self.authenticator = authenticator
    }

    /// The `Tus-Extension` list, derived from what the engine's seams can do.
    public var extensions: [String] {
        let capabilities = engine.capabilities
        var list = ["creation", "creation-with-upload", "creation-defer-length"]
        if capabilities.expiration { list.append("expiration") }
        list += ["checksum", "checksum-trailer"]
        if capabilities.termination { list.append("termination") }
        if capabilities.concatenation { list += ["concatenation", "concatenation-unfinished"] }
        return list
    }

    /// True when `path` belongs to this dialect.
    public func handles(path: String) -> Bool {
        path.hasPrefix(configuration.basePath) || path == String(configuration.basePath.dropLast())
    }

    /// Answers one request.
    public func respond<Body: AsyncSequence & Sendable>(
        to request: HTTPRequest,
        body: Body,
        transport: some BodyTransport
    ) async -> TusResponse where Body.Element == ByteBuffer {
        var method = request.method
        // For clients behind proxies that pass only GET and POST: a POST may say it is a PATCH
        // or DELETE. A safe method is never turned into an unsafe one (a GET link or an
        // image tag must not delete an upload).
        if request.method == .post, let override = request.headerFields[.methodOverride],
            let overridden = HTTPRequest.Method(override.uppercased())
        {
            method = overridden
        }
        var response: TusResponse
        do {
            response = try await dispatch(method, request, body: body, transport: transport)
        } catch {
            response = errorResponse(error, method: method)
        }
        if response.error?.code == .unauthorized {
            response.headers[.wwwAuthenticate] = request.headerFields[.authorization] == nil
                ? #"Bearer realm="ferry""#
                : #"Bearer realm="ferry", error="invalid_token""#
        }
        response.headers[.tusResumable] = Self.version
        return response
    }

    private func dispatch<Body: AsyncSequence & Sendable>(
        _ method: HTTPRequest.Method,
        _ request: HTTPRequest,
        body: Body,
        transport: some BodyTransport
    ) async throws(FerryError) -> TusResponse where Body.Element == ByteBuffer {
        let headers = TusHeaders(fields: request.headerFields)
        var scenario: String?
        var id: UploadID?
        switch try target(of: request) {
        case .collection(let name): scenario = name
        case .upload(let upload): id = upload
        }
        if method == .options { return try options(scenario: scenario) }
        let principal = try await authenticator.authenticate(authorization: request.headerFields[.authorization])
        guard let id else {
            try requireVersion(request)
            guard method == .post else { throw FerryError(.methodNotAllowed, "the upload collection accepts POST and OPTIONS") }
            return try await create(request, headers, scenario: scenario, principal: principal, body: body, transport: transport)
        }
        if method == .get { return try await content(id, request, principal) }
        try requireVersion(request)
        switch method {
        case .head: return try await head(id, request, principal)
        case .patch: return try await patch(id, headers, principal, body: body, transport: transport)
        case .delete:
            try await engine.terminate(id, as: principal)
            return TusResponse(status: .noContent)
        default:
            throw FerryError(.methodNotAllowed, "an upload accepts HEAD, PATCH, GET, DELETE and OPTIONS")
        }
    }

    /// What a request under the base path names.
    public enum Target: Sendable, Equatable {
        /// The upload collection, or (`<scenario>/`) one scenario's.
        case collection(scenario: String?)
        case upload(UploadID)
    }

    /// Parses the request path: `<base>`, `<base><scenario>/` or `<base><id>`; an unknown
    /// scenario or anything else is `ERR_SCENARIO_NOT_FOUND` / `ERR_UPLOAD_NOT_FOUND`.
    public func target(of request: HTTPRequest) throws(FerryError) -> Target {
        let path = (request.path ?? "/").split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
        let rest = path.count > configuration.basePath.count ? String(path.dropFirst(configuration.basePath.count)) : ""
        guard !rest.isEmpty else { return .collection(scenario: nil) }
        // `<scenario>/` (or `<scenario>`) names a scenario's collection; a bare id an upload.
        let name = rest.hasSuffix("/") ? String(rest.dropLast()) : rest
        if !rest.hasSuffix("/"), let upload = UploadID(rest) {
            return .upload(upload)
        } else if !name.contains("/"), Scenario.isValidName(name) {
            return .collection(scenario: try engine.business.scenarios.named(name).name)
        }
        throw FerryError(.uploadNotFound, "no upload has this URL")
    }

    private func requireVersion(_ request: HTTPRequest) throws(FerryError) {
        guard request.headerFields[.tusResumable] == Self.version else {
            throw FerryError(.unsupportedVersion, "this server speaks tus \(Self.version); send Tus-Resumable: \(Self.version)")
        }
    }

    /// OPTIONS on the collection, or on one scenario's (its own `Tus-Max-Size`).
    func options(scenario: String?) throws(FerryError) -> TusResponse {
        var headers = HTTPFields()
        headers[.tusVersion] = Self.version
        headers[.tusExtension] = extensions.joined(separator: ",")
        headers[.tusChecksumAlgorithm] = ChecksumAlgorithm.advertised
        var maxSize = engine.capabilities.maxSize
        let scenarios = engine.business.scenarios
        if let name = scenario ?? scenarios.defaultName, let limit = try scenarios.named(name).maxSize {
            maxSize = min(maxSize ?? limit, limit)
        }
        if let maxSize { headers[.tusMaxSize] = String(maxSize) }
        return TusResponse(status: .noContent, headers: headers)
    }

    /// The business result of a complete upload, on every response that describes it.
    public func addBusinessResult(_ record: UploadRecord, to headers: inout HTTPFields) {
        guard record.isComplete, let business = record.business else { return }
        headers[.ferryBusinessStatus] = business.status.rawValue
        if business.status == .done, let json = business.json { headers[.ferryBusinessResult] = json }
    }

    func errorResponse(_ error: FerryError, method: HTTPRequest.Method) -> TusResponse {
        var headers = HTTPFields()
        headers[.ferryError] = error.code.rawValue
        headers[.cacheControl] = "no-store"
        if error.code == .unsupportedVersion { headers[.tusVersion] = Self.version }
        if error.code == .shuttingDown { headers[.retryAfter] = "2" }
        if let retryAfter = error.retryAfter { headers[.retryAfter] = String(retryAfter) }
        if error.code == .methodNotAllowed {
            headers[.allow] = "OPTIONS, POST, HEAD, PATCH, GET, DELETE"
        }
        let body: TusResponse.Body
        if method == .head {
            body = .empty
        } else {
            headers[.contentType] = "text/plain; charset=utf-8"
            body = .text("\(error.code.rawValue): \(error.message)\n")
        }
        let status = error.status.map { HTTPResponse.Status(code: $0) } ?? error.code.status
        return TusResponse(status: status, headers: headers, body: body, error: error)
    }

    /// The absolute URL of an upload.
    public func url(of id: UploadID, _ request: HTTPRequest) -> String {
        collectionURL(request) + id.rawValue
    }

    /// The absolute URL of the collection, ending in `/`: `--public-url`, else built from the
    /// request (a `Host` that is not a valid host name is replaced by `localhost`).
    public func collectionURL(_ request: HTTPRequest) -> String {
        if let base = configuration.publicBaseURL { return base }
        let fields = request.headerFields
        let forwarded = configuration.trustForwardedHeaders
        var scheme = (forwarded ? fields[.xForwardedProto] : nil) ?? request.scheme ?? "http"
        if scheme != "http", scheme != "https" { scheme = "http" }
        let host = Self.validHost((forwarded ? fields[.xForwardedHost] : nil) ?? request.authority) ?? "localhost"
        return "\(scheme)://\(host)\(configuration.basePath)"
    }

    /// A `Host` (or `X-Forwarded-Host`) fit to be copied into a URL: a registered name, IPv4 or
    /// bracketed IPv6 literal with an optional port, nothing else (no spaces, `@`, `/`, quotes);
    /// nil otherwise.
    public static func validHost(_ host: String?) -> String? {
        guard let host, !host.isEmpty, host.utf8.count <= 255 else { return nil }
        var name = Substring(host)
        if name.hasPrefix("[") {
            guard let close = name.firstIndex(of: "]") else { return nil }
            let literal = name[name.index(after: name.startIndex)..<close]
            guard !literal.isEmpty, literal.utf8.allSatisfy({ Self.isHex($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") }) else { return nil }
            name = name[name.index(after: close)...]
            guard name.isEmpty || name.hasPrefix(":") else { return nil }
        } else {
            let end = name.firstIndex(of: ":") ?? name.endIndex
            let label = name[..<end]
            guard !label.isEmpty, label.utf8.allSatisfy({ Self.isHostByte($0) }) else { return nil }
            name = name[end...]
        }
        if !name.isEmpty {
            let port = name.dropFirst()
            guard !port.isEmpty, port.utf8.count <= 5, port.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        }
        return host
    }

    private static func isHex(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
    }

    private static func isHostByte(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
    }

    /// The upload id a client names in `Upload-Concat: final;...` (absolute URL or path).
    func uploadID(fromReference reference: Substring, _ request: HTTPRequest) throws(FerryError) -> UploadID {
        let path = reference
        if path.contains("://") {
            // An absolute URL must be one this server hands out: a partial elsewhere is not ours.
            let base = collectionURL(request)
            guard path.count > base.count, path.prefix(base.count).lowercased() == base.lowercased(),
                let id = UploadID(path.dropFirst(base.count))
            else {
                throw FerryError(.invalidConcat, "a partial upload URL does not name an upload of this server")
            }
            return id
        }
        guard path.hasPrefix(configuration.basePath), let id = UploadID(path.dropFirst(configuration.basePath.count)) else {
            throw FerryError(.invalidConcat, "a partial upload URL is not an upload of this server")
        }
        return id
    }
}
