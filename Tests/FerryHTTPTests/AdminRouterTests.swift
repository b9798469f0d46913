import FerryCore
import FerryHTTP
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

let bearer = ("Authorization", "Bearer " + RouterHarness.adminToken)

/// A scenario whose uploads write events for one webhook (kept in the outbox: nothing delivers them here).
let hooked = BusinessRules(
    scenarios: ScenarioSet(
        [Scenario(name: "default", allowsAnonymous: true, webhooks: [Webhook(url: "http://hooks.test/events", secret: "s", events: [.created, .completed])])],
        defaultName: "default"
    )
)

@Suite("Router: the admin and statistics API")
struct AdminRouterTests {
    static let unknown = String(repeating: "cd", count: 16)

    struct AuthRow: Sendable, CustomTestStringConvertible {
        var name: String
        var authorization: String?
        var testDescription: String { name }
    }

    static let refused: [AuthRow] = [
        AuthRow(name: "no Authorization", authorization: nil),
        AuthRow(name: "another token", authorization: "Bearer admin-token-0123456788"),
        AuthRow(name: "the token as a prefix", authorization: "Bearer " + RouterHarness.adminToken + "x"),
        AuthRow(name: "another scheme", authorization: "Basic " + RouterHarness.adminToken),
        AuthRow(name: "the token alone", authorization: RouterHarness.adminToken),
        AuthRow(name: "the scheme alone", authorization: "Bearer"),
    ]

    static let adminPaths = ["/admin/uploads/\(unknown)/events", "/admin/uploads", "/admin/uploads/\(unknown)", "/admin/stats"]

    @Test(arguments: refused, adminPaths)
    func everyAdminRouteNeedsTheToken(_ row: AuthRow, _ path: String) async throws {
        let harness = RouterHarness(configuration: .init(adminToken: RouterHarness.adminToken), statistics: true)
        try await harness.test { client in
            let response = try await client.send(.get, path, row.authorization.map { [("Authorization", $0)] } ?? [])
            #expect(response.status == .unauthorized)
            #expect(response.header("WWW-Authenticate") == #"Bearer realm="ferry-admin""#)
            #expect(response.header("Ferry-Error") == "ERR_UNAUTHORIZED")
            #expect(response.header("Content-Type") == "application/json")
            #expect(response.json?["error"] as? String == "ERR_UNAUTHORIZED")
        }
    }

    @Test(arguments: ["/admin/uploads/\(unknown)/events", "/admin/uploads/\(unknown)", "/admin/uploads/not-an-id/events", "/admin/uploads/not-an-id"])
    func anUnknownUploadIsA404InJSON(_ path: String) async throws {
        let harness = RouterHarness(configuration: .init(adminToken: RouterHarness.adminToken), statistics: true)
        try await harness.test { client in
            let response = try await client.send(.get, path, [("Authorization", "bEaReR " + RouterHarness.adminToken)])
            #expect(response.status == .notFound)
            #expect(response.header("Ferry-Error") == "ERR_UPLOAD_NOT_FOUND")
            #expect(response.text == #"{"error":"ERR_UPLOAD_NOT_FOUND","message":"no upload has this id"}"#)
        }
    }

    @Test func withoutATokenThereIsNoAdminAPI() async throws {
        let harness = RouterHarness(statistics: true)
        try await harness.test { client in
            for path in Self.adminPaths { _ = try await client.send(.get, path, [bearer]) }
        }
        #expect(harness.metrics.count("ferry_http_requests_total", [("route", "/admin"), ("method", "GET"), ("status", "404")]) == 4)
    }

    @Test func theEventsOfAnUpload() async throws {
        let harness = RouterHarness(configuration: .init(adminToken: RouterHarness.adminToken), business: hooked)
        let record = try await harness.upload(length: 3, Array("abc".utf8))
        let elsewhere = try await RouterHarness().upload(length: 1)
        try await harness.test { client in
            let response = try await client.send(.get, "/admin/uploads/\(record.id.rawValue)/events", [bearer])
            #expect(response.status == .ok && response.header("Cache-Control") == "no-store")
            let json = try #require(response.json)
            #expect(json["upload"] as? String == record.id.rawValue)
            let events = try #require(json["events"] as? [[String: Any]])
            #expect(events.map { $0["type"] as? String } == ["upload.created", "upload.completed"])
            #expect(events.map { $0["sequence"] as? Int } == [1, 2])
            #expect(events.allSatisfy { $0["state"] as? String == "pending" && $0["attempts"] as? Int == 0 && $0["webhook"] as? String == "http://hooks.test/events" })
            #expect(events.allSatisfy { $0["nextAttemptAt"] is String && $0["deliveredAt"] == nil })
            #expect(events.first?["eventId"] as? String == "\(record.id.rawValue)-1")

            // An upload of another catalog is unknown here.
            #expect(try await client.send(.get, "/admin/uploads/\(elsewhere.id.rawValue)/events", [bearer]).status == .notFound)
        }
    }

    @Test func anUploadWithoutEventsListsNone() async throws {
        let harness = RouterHarness(configuration: .init(adminToken: RouterHarness.adminToken))
        let record = try await harness.upload(length: 5)
        try await harness.test { client in
            let response = try await client.send(.get, "/admin/uploads/\(record.id.rawValue)/events", [bearer])
            #expect(response.status == .ok)
            #expect(response.text == #"{"events":[],"upload":"\#(record.id.rawValue)"}"#)
        }
    }

    /// Statistics are written in batches: before the recorder flushes, a known upload is pending.
    @Test func statisticsOfAnUploadBeforeAndAfterTheyAreWritten() async throws {
        let harness = RouterHarness(configuration: .init(adminToken: RouterHarness.adminToken), statistics: true)
        let recorder = try #require(harness.recorder)
        try await harness.test { client in
            let created = try await client.send(.post, "/files/", [tus, octets, ("Upload-Length", "4"), ("Ferry-Network", "wifi")], body: "data")
            let id = try #require(created.header("Location").flatMap { URL(string: $0)?.lastPathComponent })
            let pending = try await client.send(.get, "/admin/uploads/\(id)", [bearer])
            #expect(pending.status == .accepted && pending.header("Retry-After") == "1")
            #expect(pending.json?["status"] as? String == "pending" && pending.json?["id"] as? String == id)

            let report = try await client.send(.post, "/telemetry/\(id)", [], body: #"{"stalls":2}"#)
            #expect(report.status == .noContent, "\(report.text)")
            await recorder.flush()

            let detail = try await client.send(.get, "/admin/uploads/\(id)", [bearer])
            #expect(detail.status == .ok, "\(detail.text)")
            let upload = try #require(detail.json?["upload"] as? [String: Any])
            #expect(upload["id"] as? String == id && upload["state"] as? String == "complete" && upload["bytes"] as? Int == 4)
            #expect(upload["network"] as? String == "wifi" && upload["dialect"] as? String == "tus")
            #expect(upload["telemetry"] as? String == #"{"stalls":2}"#)

            let list = try await client.send(.get, "/admin/uploads?state=complete&limit=10", [bearer])
            #expect(list.status == .ok)
            #expect((list.json?["uploads"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [id])
            let none = try await client.send(.get, "/admin/uploads?state=incomplete", [bearer])
            #expect((none.json?["uploads"] as? [Any])?.isEmpty == true)

            let stats = try await client.send(.get, "/admin/stats?since=1h&by=network,network", [bearer])
            #expect(stats.status == .ok, "\(stats.text)")
            #expect(stats.json?["by"] as? [String] == ["network"], "a dimension named twice counts once")
            let groups = try #require(stats.json?["groups"] as? [[String: Any]])
            #expect(groups.map { $0["key"] as? [String: String] } == [["network": "wifi"]])
            #expect(groups.first?["completed"] as? Int == 1)
        }
    }

    @Test(arguments: [
        "/admin/uploads?state=lost", "/admin/uploads?limit=0", "/admin/uploads?limit=ten", "/admin/uploads?cursor=forged",
        "/admin/uploads?from=yesterday", "/admin/uploads?since=1y", "/admin/uploads?to=1e300",
        "/admin/stats?by=colour", "/admin/stats?since=-5m", "/admin/stats?from=nan",
    ])
    func anInvalidQueryIsA400InJSON(_ uri: String) async throws {
        let harness = RouterHarness(configuration: .init(adminToken: RouterHarness.adminToken), statistics: true)
        try await harness.test { client in
            let response = try await client.send(.get, uri, [bearer])
            #expect(response.status == .badRequest, "\(response.text)")
            #expect(response.json?["error"] as? String == "ERR_INVALID_QUERY")
        }
    }

    @Test func withoutStatisticsOnlyTheEventsRouteExists() async throws {
        let harness = RouterHarness(configuration: .init(adminToken: RouterHarness.adminToken))
        try await harness.test { client in
            _ = try await client.send(.get, "/admin/stats", [bearer])
            _ = try await client.send(.post, "/telemetry/" + Self.unknown, body: "{}")
            let options = try await client.send(.options, "/files/")
            #expect(options.header("Ferry-Telemetry") == nil)
        }
        #expect(harness.metrics.count("ferry_http_requests_total", [("route", "/admin"), ("method", "GET"), ("status", "404")]) == 1)
        #expect(harness.metrics.count("ferry_http_requests_total", [("route", "/telemetry"), ("method", "POST"), ("status", "404")]) == 1)
    }

    @Test(arguments: [
        (#"{"stalls":1}"#, true, 204, nil),
        ("[1,2]", true, 400, "ERR_INVALID_METADATA"),
        ("not json", true, 400, "ERR_INVALID_METADATA"),
        (#"{"pad":""# + String(repeating: "x", count: 5000) + #""}"#, true, 400, "ERR_INVALID_METADATA"),
        (#"{"stalls":1}"#, false, 404, "ERR_UPLOAD_NOT_FOUND"),
    ] as [(String, Bool, Int, String?)])
    func telemetry(_ report: String, _ known: Bool, _ status: Int, _ code: String?) async throws {
        let harness = RouterHarness(statistics: true)
        let record = try await harness.upload(length: 10)
        try await harness.test { client in
            let response = try await client.send(.post, "/telemetry/" + (known ? record.id.rawValue : Self.unknown), [], body: report)
            #expect(response.status.code == status, "\(response.text)")
            #expect(response.header("Ferry-Error") == code)
        }
    }
}
