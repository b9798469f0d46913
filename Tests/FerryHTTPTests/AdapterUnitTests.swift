import FerryCore
import Foundation
import Hummingbird
import Testing

@testable import FerryHTTP

@Suite("Admin bearer token")
struct AdminTokenTests {
    static let token = "s3cret-admin-token"

    @Test(arguments: [
        ("Bearer s3cret-admin-token", true),
        ("bearer s3cret-admin-token", true),
        ("BEARER s3cret-admin-token", true),
        ("Bearer   s3cret-admin-token", true),
        ("Bearer s3cret-admin-token  ", true),
        ("Bearer s3cret-admin-toke", false),
        ("Bearer s3cret-admin-tokenn", false),
        ("Bearer S3CRET-ADMIN-TOKEN", false),
        ("Bearer s3cret admin token", false),
        ("Bearer ", false),
        ("Bearer", false),
        ("Basic s3cret-admin-token", false),
        ("Bearers3cret-admin-token", false),
        ("s3cret-admin-token", false),
        ("", false),
        (" Bearer s3cret-admin-token", true),
    ] as [(String, Bool)])
    func authorized(_ header: String, _ expected: Bool) {
        #expect(AdminRoutes.authorized(header, Self.token) == expected)
    }

    @Test func noHeaderIsRefused() {
        #expect(!AdminRoutes.authorized(nil, Self.token))
        // An empty configured token is matched by nothing: a bearer credential is never empty.
        #expect(!AdminRoutes.authorized("Bearer ", ""))
        #expect(!AdminRoutes.authorized("Bearer", ""))
    }
}

@Suite("Statistics API parameters")
struct StatsParameterTests {
    @Test(arguments: [
        ("90s", 90.0), ("15m", 900), ("24h", 86_400), ("7d", 604_800), ("1.5h", 5400), ("0.5s", 0.5),
        ("21915d", 21_915 * 86_400.0),
    ] as [(String, Double)])
    func aSpan(_ text: String, _ seconds: Double) {
        #expect(StatsRoutes.span(Substring(text)) == seconds)
    }

    @Test(arguments: ["", "h", "24", "24x", "0h", "-5m", "nanm", "infh", "1e300d", "21916d", "24 h", "1w", "24H"])
    func notASpan(_ text: String) {
        #expect(StatsRoutes.span(Substring(text)) == nil)
    }

    @Test(arguments: [
        ("0", 0.0), ("1700000000", 1_700_000_000), ("1700000000.5", 1_700_000_000.5), ("253402300799", 253_402_300_799),
        ("2023-11-14T22:13:20Z", 1_700_000_000), ("2023-11-14T23:13:20+01:00", 1_700_000_000), ("1970-01-01T00:00:00Z", 0),
    ] as [(String, Double)])
    func aDate(_ text: String, _ seconds: Double) throws {
        #expect(try StatsRoutes.date(Substring(text), "from").timeIntervalSince1970 == seconds)
    }

    @Test(arguments: ["-1", "253402300800", "1e300", "nan", "inf", "-inf", "yesterday", "", "2023-13-01T00:00:00Z", "1969-12-31T23:59:59Z"])
    func notADate(_ text: String) {
        #expect(throws: FerryError.self) { try StatsRoutes.date(Substring(text), "from") }
        do {
            _ = try StatsRoutes.date(Substring(text), "to")
        } catch {
            #expect(error.code == .invalidQuery && error.message.hasPrefix("to "))
        }
    }

    /// The query parameters of a request, as a route reads them.
    func parameters(_ query: String) -> Parameters {
        Request(head: HTTPRequest(method: .get, scheme: "http", authority: "localhost", path: "/admin/stats?" + query), body: RequestBody(buffer: ByteBuffer()))
            .uri.queryParameters
    }

    @Test func anExplicitWindow() throws {
        let window = try StatsRoutes.window(parameters("from=1000&to=2000"), defaultSpan: 60)
        #expect(window.from == Date(timeIntervalSince1970: 1000) && window.to == Date(timeIntervalSince1970: 2000))
    }

    @Test func theDefaultSpanEndsAtTo() throws {
        let window = try StatsRoutes.window(parameters("to=5000"), defaultSpan: 60)
        #expect(window.from == Date(timeIntervalSince1970: 4940) && window.to == Date(timeIntervalSince1970: 5000))
        let open = try StatsRoutes.window(parameters("to=5000"), defaultSpan: nil)
        #expect(open.from == nil && open.to == Date(timeIntervalSince1970: 5000))
    }

    @Test(arguments: [
        ("since=2h", nil as Double?, 7200.0),
        ("since=2h&from=1000", nil, 7200),
        ("", 86_400, 86_400),
    ] as [(String, Double?, Double)])
    func aWindowEndingNow(_ query: String, _ defaultSpan: Double?, _ span: Double) throws {
        let before = Date()
        let window = try StatsRoutes.window(parameters(query), defaultSpan: defaultSpan)
        let after = Date()
        let from = try #require(window.from)
        // `since` wins over `from`; either way the window starts `span` before the call.
        #expect(from >= before.addingTimeInterval(-span) && from <= after.addingTimeInterval(-span))
        #expect(window.to == nil)
    }

    @Test func noWindowAtAll() throws {
        let window = try StatsRoutes.window(parameters("scenario=voice"), defaultSpan: nil)
        #expect(window.from == nil && window.to == nil)
    }

    @Test(arguments: ["since=forever", "from=soon", "to=1e300", "since=0s"])
    func anInvalidWindow(_ query: String) {
        #expect(throws: FerryError.self) { try StatsRoutes.window(parameters(query), defaultSpan: 60) }
    }

    @Test(arguments: [("1", 1), ("50", 50), ("0", nil), ("-1", nil), ("1.5", nil), ("", nil), ("x", nil)] as [(String, Int?)])
    func aNumber(_ text: String, _ expected: Int?) {
        #expect((try? StatsRoutes.number(Substring(text), "limit")) == expected)
    }
}

@Suite("Connection limits")
struct ConnectionLimitsTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var limits: ConnectionLimits
        var valid: Bool
        var testDescription: String { name }
    }

    static let rows: [Row] = [
        Row(name: "the defaults", limits: ConnectionLimits(), valid: true),
        Row(name: "one connection", limits: ConnectionLimits(maxConnections: 1), valid: true),
        Row(name: "no connection", limits: ConnectionLimits(maxConnections: 0), valid: false),
        Row(name: "negative connections", limits: ConnectionLimits(maxConnections: -1), valid: false),
        Row(name: "no body rate (off)", limits: ConnectionLimits(minBodyRate: 0), valid: true),
        Row(name: "a negative body rate", limits: ConnectionLimits(minBodyRate: -1), valid: false),
        Row(name: "an empty rate window", limits: ConnectionLimits(rateWindow: .zero), valid: false),
        Row(name: "a negative rate window", limits: ConnectionLimits(rateWindow: .seconds(-1)), valid: false),
        Row(name: "a tiny rate window", limits: ConnectionLimits(rateWindow: .milliseconds(1)), valid: true),
        Row(name: "no head timeout", limits: ConnectionLimits(headTimeout: .zero), valid: false),
        Row(name: "4 KiB of header", limits: ConnectionLimits(maxHeaderBytes: 4096), valid: true),
        Row(name: "just under 4 KiB of header", limits: ConnectionLimits(maxHeaderBytes: 4095), valid: false),
        Row(name: "1 MiB of header", limits: ConnectionLimits(maxHeaderBytes: 1 << 20), valid: true),
        Row(name: "just over 1 MiB of header", limits: ConnectionLimits(maxHeaderBytes: (1 << 20) + 1), valid: false),
        Row(name: "no header", limits: ConnectionLimits(maxHeaderBytes: 0), valid: false),
    ]

    @Test(arguments: rows)
    func validate(_ row: Row) {
        do {
            try row.limits.validate()
            #expect(row.valid)
        } catch {
            #expect(!row.valid)
            #expect(["max-connections", "min-body-rate", "max-header-size", "connection-limits"].contains(error.setting), "\(error)")
        }
    }
}
