import FerryCore
import FerryRUFH
import FerryTus
import HTTPTypes
import Hummingbird
import NIOCore

/// Hands every request under the upload base path to its dialect: RUFH when it speaks the
/// IETF draft (see `RUFHDialect.applies`), tus otherwise. Both answer OPTIONS with the
/// upload limits.
struct TusMiddleware: RouterMiddleware {
    typealias Context = FerryRequestContext
    let dialect: TusDialect
    let rufh: RUFHDialect

    init(dialect: TusDialect) {
        self.dialect = dialect
        self.rufh = RUFHDialect(tus: dialect)
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard dialect.handles(path: request.uri.path) else {
            return try await next(request, context)
        }
        let transport = ChannelBodyTransport(channel: context.channel)
        var answer: TusResponse
        if rufh.applies(to: request.head) {
            answer = await rufh.respond(to: request.head, body: request.body, transport: transport)
        } else {
            answer = await dialect.respond(to: request.head, body: request.body, transport: transport)
            if request.method == .options, answer.status.kind == .successful, case .collection(let scenario)? = try? dialect.target(of: request.head) {
                answer.headers[.uploadLimit] = rufh.limits(scenario: scenario)
            }
        }
        if request.method == .options, answer.status.kind == .successful, dialect.engine.statistics != nil {
            // Where a client may report how an upload went (`TelemetryRoute`).
            answer.headers[TelemetryRoute.advertisement] = "/telemetry/"
        }
        if let error = answer.error, error.isServerFault, error.code != .shuttingDown {
            context.logger.error("request.failed", metadata: ["error": "\(error)", "error.code": "\(error.code.rawValue)"])
        }
        return Response(status: answer.status, headers: answer.headers, body: responseBody(answer.body))
    }

    private func responseBody(_ body: TusResponse.Body) -> ResponseBody {
        switch body {
        case .empty:
            return ResponseBody()
        case .text(let text):
            return ResponseBody(byteBuffer: ByteBuffer(string: text))
        case .content(let record, let range):
            let engine = dialect.engine
            return ResponseBody(contentLength: Int(range.count)) { writer in
                try await engine.read(record, range: range) { buffer in
                    try await writer.write(buffer)
                }
                try await writer.finish(nil)
            }
        }
    }
}
