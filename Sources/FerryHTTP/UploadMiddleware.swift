import FerryCore
import FerryProtocol
import FerryRUFH
import FerryTus
import HTTPTypes
import Hummingbird
import NIOCore

/// The uploads a server serves: the engine behind one dispatcher, and the dialects clients
/// speak to it, in the order they are asked whether a request is theirs.
public struct UploadEndpoints: Sendable {
    public let dispatcher: UploadDispatcher
    public let routes: UploadRoutes
    public let rufh: RUFHDialect
    public let tus: TusDialect
    /// Per-upload statistics, when kept (the admin API, client telemetry).
    public let statistics: StatsRecorder?

    public init(
        engine: UploadEngine,
        routes: UploadRoutes.Configuration = .init(),
        authenticator: any Authenticator = AnonymousAuthenticator(),
        statistics: StatsRecorder? = nil
    ) {
        let routes = UploadRoutes(routes, scenarios: engine.business.scenarios)
        self.statistics = statistics
        self.dispatcher = UploadDispatcher(engine: engine, authenticator: authenticator)
        self.routes = routes
        self.rufh = RUFHDialect(routes: routes, capabilities: engine.capabilities)
        self.tus = TusDialect(routes: routes, capabilities: engine.capabilities)
    }

    public var engine: UploadEngine { dispatcher.engine }
    public var authenticator: any Authenticator { dispatcher.authenticator }

    /// Answers a request under the collection in the dialect it speaks: RUFH when it claims it,
    /// tus otherwise.
    public func respond<Body: AsyncSequence & Sendable>(
        to request: HTTPRequest,
        body: Body,
        transport: some BodyTransport & InterimResponder
    ) async -> UploadResponse where Body.Element == ByteBuffer {
        if rufh.claims(request) {
            return await dispatcher.respond(to: request, in: rufh, body: body, transport: transport)
        }
        return await dispatcher.respond(to: request, in: tus, body: body, transport: transport)
    }
}

/// Hands every request under the upload collection to `UploadEndpoints`, and writes its answer.
struct UploadMiddleware: RouterMiddleware {
    typealias Context = FerryRequestContext
    let endpoints: UploadEndpoints

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard endpoints.routes.handles(path: request.uri.path) else {
            return try await next(request, context)
        }
        let transport = ChannelBodyTransport(channel: context.channel, framedByLength: request.headers[.contentLength] != nil)
        var answer = await endpoints.respond(to: request.head, body: request.body, transport: transport)
        if request.method == .options, answer.status.kind == .successful, endpoints.statistics != nil {
            // Where a client may report how an upload went (`TelemetryRoute`).
            answer.headers[.ferryTelemetry] = "/telemetry/"
        }
        if let error = answer.error, error.isServerFault, error.code != .shuttingDown {
            context.logger.error("request.failed", metadata: ["error": "\(error)", "error.code": "\(error.code.rawValue)"])
        }
        return Response(status: answer.status, headers: answer.headers, body: Self.body(answer.body, engine: endpoints.engine))
    }

    /// The response body: text, or the bytes of an upload streamed from the store.
    static func body(_ body: UploadResponse.Body, engine: UploadEngine) -> ResponseBody {
        switch body {
        case .empty:
            return ResponseBody()
        case .text(let text):
            return ResponseBody(byteBuffer: ByteBuffer(string: text))
        case .content(let record, let range):
            return ResponseBody(contentLength: Int(range.count)) { writer in
                try await engine.read(record, range: range) { buffer in
                    try await writer.write(buffer)
                }
                try await writer.finish(nil)
            }
        }
    }
}
