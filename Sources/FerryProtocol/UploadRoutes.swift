import FerryCore
import HTTPTypes

/// Where uploads live in URL space, for every dialect: the collection's path, the absolute URLs
/// handed out (`Location`), which request names which upload, and who the client is. Pure: a
/// value built once from the configuration and the scenarios.
public struct UploadRoutes: Sendable {
    public struct Configuration: Sendable {
        /// Path of the upload collection, with leading and trailing slash (`/files/`).
        public var basePath: String
        /// Absolute URL prefix for `Location` (e.g. `https://up.example.com/files/`);
        /// nil builds it from the request's Host.
        public var publicBaseURL: String?
        /// Honour `X-Forwarded-Proto`/`-Host`/`-For` (only behind a trusted proxy).
        public var trustForwardedHeaders: Bool

        public init(basePath: String = "/files/", publicBaseURL: String? = nil, trustForwardedHeaders: Bool = false) {
            var path = basePath.hasPrefix("/") ? basePath : "/" + basePath
            if !path.hasSuffix("/") { path += "/" }
            self.basePath = path
            self.publicBaseURL = publicBaseURL.map { $0.hasSuffix("/") ? $0 : $0 + "/" }
            self.trustForwardedHeaders = trustForwardedHeaders
        }
    }

    /// What a request under the base path names.
    public enum Target: Sendable, Equatable {
        /// The upload collection, or (`<scenario>/`) one scenario's.
        case collection(scenario: String?)
        case upload(UploadID)
    }

    public let configuration: Configuration
    public let scenarios: ScenarioSet

    public init(_ configuration: Configuration = Configuration(), scenarios: ScenarioSet = .open) {
        // Normalized again: a configuration's fields may have been set one by one.
        self.configuration = Configuration(
            basePath: configuration.basePath, publicBaseURL: configuration.publicBaseURL, trustForwardedHeaders: configuration.trustForwardedHeaders
        )
        self.scenarios = scenarios
    }

    public var basePath: String { configuration.basePath }

    /// True when `path` (without query) lies under the upload collection.
    public func handles(path: String) -> Bool {
        path.hasPrefix(basePath) || path == String(basePath.dropLast())
    }

    /// The route template of a path under the collection, for metrics (never an id).
    public func template(of path: String) -> String {
        path.count > basePath.count ? basePath + ":id" : basePath
    }

    /// Parses the request path: `<base>`, `<base><scenario>/` or `<base><id>`; an unknown
    /// scenario is `ERR_SCENARIO_NOT_FOUND`, anything else `ERR_UPLOAD_NOT_FOUND`.
    public func target(of request: HTTPRequest) throws(FerryError) -> Target {
        let path = (request.path ?? "/").split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
        let rest = path.count > basePath.count ? String(path.dropFirst(basePath.count)) : ""
        guard !rest.isEmpty else { return .collection(scenario: nil) }
        let name = rest.hasSuffix("/") ? String(rest.dropLast()) : rest
        if !rest.hasSuffix("/"), let upload = UploadID(rest) {
            return .upload(upload)
        } else if !name.contains("/"), Scenario.isValidName(name) {
            return .collection(scenario: try scenarios.named(name).name)
        }
        throw FerryError(.uploadNotFound, "no upload has this URL")
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
        return "\(scheme)://\(host)\(basePath)"
    }

    /// The client's address as a trusted proxy reports it (the first `X-Forwarded-For` entry);
    /// nil when not behind one (the adapter then knows the peer).
    public func forwardedAddress(_ request: HTTPRequest) -> String? {
        guard configuration.trustForwardedHeaders, let forwarded = request.headerFields[.xForwardedFor],
            let first = forwarded.split(separator: ",").first?.trimmingCharacters(in: .whitespaces), !first.isEmpty
        else { return nil }
        return first
    }

    /// The upload a client names in a reference (tus `Upload-Concat: final;...`): an absolute URL
    /// this server hands out (`collectionURL`), or a path under the base path.
    public func upload(referencedBy reference: Substring, collectionURL base: String) throws(FerryError) -> UploadID {
        if reference.contains("://") {
            // An absolute URL must be one this server hands out: a partial elsewhere is not ours.
            guard reference.count > base.count, reference.prefix(base.count).lowercased() == base.lowercased(),
                let id = UploadID(reference.dropFirst(base.count))
            else {
                throw FerryError(.invalidConcat, "a partial upload URL does not name an upload of this server")
            }
            return id
        }
        guard reference.hasPrefix(basePath), let id = UploadID(reference.dropFirst(basePath.count)) else {
            throw FerryError(.invalidConcat, "a partial upload URL is not an upload of this server")
        }
        return id
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
            guard !literal.isEmpty, literal.utf8.allSatisfy({ isHex($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") }) else { return nil }
            name = name[name.index(after: close)...]
            guard name.isEmpty || name.hasPrefix(":") else { return nil }
        } else {
            let end = name.firstIndex(of: ":") ?? name.endIndex
            let label = name[..<end]
            guard !label.isEmpty, label.utf8.allSatisfy({ isHostByte($0) }) else { return nil }
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
}
