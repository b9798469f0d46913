import CoreMetrics
import FerryTus
import HTTPTypes
import Hummingbird

/// Counts requests by method and status, and errors by stable code.
struct MetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let factory: any MetricsFactory


    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var method = request.headers[HTTPField.Name("X-HTTP-Method-Override")!]?.uppercased() ?? request.method.rawValue
        if !knownMethods.contains(method) { method = "OTHER" }
        do {
            let response = try await next(request, context)
            record(method: method, status: response.status.code, error: response.headers[.ferryError])
            return response
        } catch let error as any HTTPResponseError {
            record(method: method, status: error.status.code, error: nil)
            throw error
        } catch {
            record(method: method, status: 500, error: nil)
            throw error
        }
    }

    private func record(method: String, status: Int, error: String?) {
        Counter(label: "ferry_http_requests_total", dimensions: [("method", method), ("status", String(status))], factory: factory)
            .increment()
        if let error {
            Counter(label: "ferry_errors_total", dimensions: [("code", error)], factory: factory).increment()
        }
    }
}

private let knownMethods: Set<String> = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"]
