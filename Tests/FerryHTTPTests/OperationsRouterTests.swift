import FerryCore
import FerryHTTP
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

@Suite("Router: health, metrics, CORS")
struct OperationsRouterTests {
    @Test(arguments: [true, false])
    func healthz(_ healthy: Bool) async throws {
        try await RouterHarness(healthy: { healthy }).test { client in
            let response = try await client.send(.get, "/healthz")
            #expect(response.status == (healthy ? .ok : .serviceUnavailable))
            #expect(response.text == (healthy ? "ok\n" : "unhealthy\n"))
            #expect(response.header("Cache-Control") == "no-store" && response.header("Content-Type") == "text/plain")
        }
    }

    @Test func metricsServesTheExposition() async throws {
        try await RouterHarness().test { client in
            let response = try await client.send(.get, "/metrics")
            #expect(response.status == .ok && response.text == "# TYPE ferry_up gauge\nferry_up 1\n")
            #expect(response.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        }
    }

    @Test(arguments: [true, false])
    func discard(_ enabled: Bool) async throws {
        let harness = RouterHarness(configuration: .init(discardEndpoint: enabled))
        try await harness.test { client in
            let response = try await client.send(.put, "/discard", body: String(repeating: "x", count: 100_000))
            if enabled { #expect(response.status == .noContent) }
        }
        // Without the endpoint the router finds no route (a 404, which the router transport turns into a 500).
        #expect(harness.metrics.count("ferry_http_requests_total", [("route", "/discard"), ("method", "PUT"), ("status", enabled ? "204" : "404")]) == 1)
    }

    struct RouteRow: Sendable, CustomTestStringConvertible {
        var method: HTTPRequest.Method
        var path: String
        var fields: [(String, String)] = []
        /// `route,method,status` as counted.
        var counted: String
        var testDescription: String { "\(method) \(path) \(fields.map(\.1))" }
    }

    static let id = String(repeating: "ab", count: 16)

    /// Requests are counted by route template, never by id or raw path.
    static let routes: [RouteRow] = [
        RouteRow(method: .head, path: "/files/" + id, fields: [tus], counted: "/files/:id,HEAD,404"),
        RouteRow(method: .options, path: "/files/", counted: "/files/,OPTIONS,204"),
        RouteRow(method: .options, path: "/files/small/", counted: "/files/:id,OPTIONS,204"),
        RouteRow(method: .post, path: "/files/", fields: [tus, ("Upload-Length", "1"), ("X-HTTP-Method-Override", "patch")], counted: "/files/,PATCH,405"),
        RouteRow(method: .post, path: "/files/", fields: [tus, ("X-HTTP-Method-Override", "BREW")], counted: "/files/,OTHER,405"),
        RouteRow(method: .get, path: "/healthz", counted: "/healthz,GET,200"),
        RouteRow(method: .get, path: "/metrics", counted: "/metrics,GET,200"),
        RouteRow(method: .get, path: "/admin/uploads/" + id + "/events", counted: "/admin,GET,401"),
        RouteRow(method: .get, path: "/admin/stats", counted: "/admin,GET,401"),
        RouteRow(method: .post, path: "/telemetry/" + id, counted: "/telemetry,POST,404"),
        RouteRow(method: .get, path: "/console/config", counted: "/console,GET,200"),
        RouteRow(method: .get, path: "/private/" + id, counted: "other,GET,404"),
        RouteRow(method: .get, path: "/", counted: "other,GET,404"),
    ]

    @Test(arguments: routes)
    func metricRoutes(_ row: RouteRow) async throws {
        let harness = RouterHarness(configuration: .init(adminToken: RouterHarness.adminToken), statistics: true, business: twoScenarios)
        try await harness.test { client in
            _ = try await client.send(row.method, row.path, row.fields, body: row.method == .post ? "{}" : nil)
        }
        let parts = row.counted.split(separator: ",").map(String.init)
        let counted = harness.metrics.keys("ferry_http_requests_total")
        #expect(counted == [RecordingMetrics.key("ferry_http_requests_total", [("route", parts[0]), ("method", parts[1]), ("status", parts[2])])])
    }

    @Test func errorsAreCountedByCode() async throws {
        let harness = RouterHarness()
        try await harness.test { client in
            _ = try await client.send(.head, "/files/" + Self.id, [tus])
            _ = try await client.send(.head, "/files/" + Self.id, [tus])
            _ = try await client.send(.head, "/files/" + Self.id)
        }
        // RUFH answers the HEAD without Tus-Resumable: the same code, counted once per answer.
        #expect(harness.metrics.count("ferry_errors_total", [("code", "ERR_UPLOAD_NOT_FOUND")]) == 3)
        #expect(harness.metrics.keys("ferry_errors_total") == [RecordingMetrics.key("ferry_errors_total", [("code", "ERR_UPLOAD_NOT_FOUND")])])
    }

    // MARK: CORS

    struct CORSRow: Sendable, CustomTestStringConvertible {
        var name: String
        var allowed: [String]
        var method: HTTPRequest.Method = .head
        var fields: [(String, String)]
        var status: Int?
        var expected: [String: String?]
        var testDescription: String { name }
    }

    static let corsRows: [CORSRow] = [
        CORSRow(name: "a preflight from an allowed origin", allowed: ["https://app.example"], method: .options,
                fields: [("Origin", "https://app.example"), ("Access-Control-Request-Method", "PATCH")], status: 204, expected: [
                    "Access-Control-Allow-Origin": "https://app.example", "Access-Control-Allow-Methods": "POST, GET, HEAD, PATCH, DELETE, OPTIONS",
                    "Access-Control-Max-Age": "86400", "Vary": "Origin", "Tus-Version": nil,
                ]),
        CORSRow(name: "a preflight with any origin allowed", allowed: ["*"], method: .options,
                fields: [("Origin", "https://anywhere.example"), ("Access-Control-Request-Method", "POST")], status: 204,
                expected: ["Access-Control-Allow-Origin": "*"]),
        CORSRow(name: "a preflight from another origin goes to the upload OPTIONS", allowed: ["https://app.example"], method: .options,
                fields: [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "PATCH")], status: 204,
                expected: ["Access-Control-Allow-Origin": nil, "Tus-Version": "1.0.0"]),
        CORSRow(name: "an OPTIONS without Access-Control-Request-Method is the upload OPTIONS", allowed: ["https://app.example"], method: .options,
                fields: [("Origin", "https://app.example")], status: 204,
                expected: ["Access-Control-Allow-Origin": "https://app.example", "Tus-Version": "1.0.0", "Vary": "Origin"]),
        CORSRow(name: "an answer to an allowed origin exposes Ferry's fields", allowed: ["https://app.example"],
                fields: [tus, ("Origin", "https://app.example")], status: 404, expected: [
                    "Access-Control-Allow-Origin": "https://app.example", "Vary": "Origin", "Ferry-Error": "ERR_UPLOAD_NOT_FOUND",
                ]),
        CORSRow(name: "an answer to another origin has no CORS fields", allowed: ["https://app.example"],
                fields: [tus, ("Origin", "https://evil.example")], status: 404,
                expected: ["Access-Control-Allow-Origin": nil, "Access-Control-Expose-Headers": nil, "Vary": nil]),
        CORSRow(name: "CORS off", allowed: [], method: .options,
                fields: [("Origin", "https://app.example"), ("Access-Control-Request-Method", "PATCH")], status: 204,
                expected: ["Access-Control-Allow-Origin": nil, "Tus-Version": "1.0.0"]),
    ]

    @Test(arguments: corsRows)
    func cors(_ row: CORSRow) async throws {
        let harness = RouterHarness(configuration: .init(cors: CORSConfiguration(allowedOrigins: row.allowed)))
        try await harness.test { client in
            let path = row.method == .options ? "/files/" : "/files/" + Self.id
            let response = try await client.send(row.method, path, row.fields)
            if let status = row.status { #expect(response.status.code == status) }
            for (name, value) in row.expected {
                #expect(response.header(name) == value, "\(name)")
            }
            if response.header("Access-Control-Allow-Origin") != nil, row.method != .options {
                let exposed = Set((response.header("Access-Control-Expose-Headers") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
                #expect(exposed.isSuperset(of: ["Location", "Upload-Offset", "Ferry-Error", "WWW-Authenticate", "Retry-After"]))
            }
            if row.method == .options, response.header("Access-Control-Allow-Methods") != nil {
                let allowed = Set((response.header("Access-Control-Allow-Headers") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
                #expect(allowed.isSuperset(of: ["Authorization", "Tus-Resumable", "Upload-Offset", "Upload-Complete", "Upload-Draft-Interop-Version"]))
            }
        }
    }
}
