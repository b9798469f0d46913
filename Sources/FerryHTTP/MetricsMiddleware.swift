import FerryClock
import CoreMetrics
import FerryCore
import FerryProtocol
import HTTPTypes
import Hummingbird
import Logging

/// Counts requests by route template, method and status, times them, counts errors by
/// stable code, and logs one debug line per request.
struct MetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let factory: any MetricsFactory
    /// Maps a path to its route template (`/files/:id`); never an id or a raw path.
    let route: @Sendable (String) -> String
    /// Times requests.
    var clock: AnyClock = AnyClock(ContinuousClock())

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var method = request.headers[HTTPField.Name("X-HTTP-Method-Override")!]?.uppercased() ?? request.method.rawValue
        if !knownMethods.contains(method) { method = "OTHER" }
        let template = route(request.uri.path)
        let start = clock.now
        do {
            let response = try await next(request, context)
            record(template, method, response.status.code, error: response.headers[.ferryError], since: start, context.logger)
            return response
        } catch let error as any HTTPResponseError {
            record(template, method, error.status.code, error: nil, since: start, context.logger)
            throw error
        } catch {
            record(template, method, 500, error: nil, since: start, context.logger)
            throw error
        }
    }

    private func record(_ route: String, _ method: String, _ status: Int, error: String?, since start: AnyClock.Instant, _ logger: Logger) {
        let elapsed = clock.now - start
        Counter(
            label: "ferry_http_requests_total",
            dimensions: [("route", route), ("method", method), ("status", String(status))],
            factory: factory
        ).increment()
        Timer(label: "ferry_http_request_duration_seconds", dimensions: [("route", route), ("method", method)], factory: factory)
            .recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        if let error {
            Counter(label: "ferry_errors_total", dimensions: [("code", error)], factory: factory).increment()
        }
        logger.debug(
            "request.done",
            metadata: [
                "http.route": "\(route)", "http.method": "\(method)", "http.status": "\(status)",
                "http.duration_ms": "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)",
                "error.code": "\(error ?? "")",
            ]
        )
    }
}

private let knownMethods: Set<String> = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"]
