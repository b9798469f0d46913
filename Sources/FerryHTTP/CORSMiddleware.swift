import HTTPTypes
import Hummingbird

/// Cross-origin access for browser clients (tus-js-client, Uppy). Off unless origins are configured.
public struct CORSConfiguration: Sendable {
    /// Allowed origins; `*` allows any. Empty turns CORS off.
    public var allowedOrigins: [String]
    /// How long browsers may cache a preflight answer, in seconds.
    public var maxAge: Int

    public init(allowedOrigins: [String] = [], maxAge: Int = 86_400) {
        self.allowedOrigins = allowedOrigins
        self.maxAge = maxAge
    }

    public var isEnabled: Bool { !allowedOrigins.isEmpty }

    func allows(_ origin: String) -> String? {
        if allowedOrigins.contains("*") { return "*" }
        return allowedOrigins.contains(origin) ? origin : nil
    }

    static let requestHeaders = [
        "Authorization", "Content-Type", "Origin", "X-Requested-With", "X-Request-ID", "X-HTTP-Method-Override",
        "Location", "Tus-Resumable", "Upload-Length", "Upload-Defer-Length", "Upload-Offset", "Upload-Metadata",
        "Upload-Concat", "Upload-Checksum", "Upload-Complete", "Upload-Draft-Interop-Version",
        "Repr-Digest", "Ferry-Proof",
    ].joined(separator: ", ")

    static let exposedHeaders = [
        "Location", "Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size", "Tus-Checksum-Algorithm",
        "Upload-Offset", "Upload-Length", "Upload-Defer-Length", "Upload-Metadata", "Upload-Concat", "Upload-Expires",
        "Ferry-Error", "Ferry-Business-Status", "Ferry-Business-Result", "WWW-Authenticate", "Retry-After", "Content-Range", "Content-Disposition",
        "Ferry-Challenge", "Ferry-Instant-Upload",
    ].joined(separator: ", ")
}

struct CORSMiddleware<Context: RequestContext>: RouterMiddleware {
    let configuration: CORSConfiguration

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin], let allowed = configuration.allows(origin) else {
            return try await next(request, context)
        }
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            var headers = HTTPFields()
            headers[.accessControlAllowOrigin] = allowed
            headers[.accessControlAllowMethods] = "POST, GET, HEAD, PATCH, DELETE, OPTIONS"
            headers[.accessControlAllowHeaders] = CORSConfiguration.requestHeaders
            headers[.accessControlMaxAge] = String(configuration.maxAge)
            headers[.vary] = "Origin"
            return Response(status: .noContent, headers: headers)
        }
        var response = try await next(request, context)
        response.headers[.accessControlAllowOrigin] = allowed
        response.headers[.accessControlExposeHeaders] = CORSConfiguration.exposedHeaders
        response.headers[.vary] = "Origin"
        return response
    }
}
