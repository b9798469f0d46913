import FerryCore
import FerryHTTP
import FerryProtocol
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

let tus = ("Tus-Resumable", "1.0.0")
let octets = ("Content-Type", "application/offset+octet-stream")

/// Two scenarios: the open default, and `small` (anonymous too, at most 100 bytes, 60 s to live).
let twoScenarios = BusinessRules(
    scenarios: ScenarioSet([.openDefault, Scenario(name: "small", maxSize: 100, expiry: .seconds(60), allowsAnonymous: true)], defaultName: "default")
)

@Suite("Router: the upload collection through the Hummingbird adapter")
struct UploadRouterTests {
    struct OptionsRow: Sendable, CustomTestStringConvertible {
        var name: String
        var path = "/files/"
        var fields: [(String, String)] = []
        var statistics = false
        var status = 204
        /// Expected values; nil means the field is absent.
        var expected: [String: String?]
        var testDescription: String { name }
    }

    static let optionsRows: [OptionsRow] = [
        OptionsRow(name: "tus: versions, extensions and limits", expected: [
            "Tus-Version": "1.0.0", "Tus-Max-Size": "1000", "Upload-Limit": "max-size=1000, min-size=0, max-age=3600", "Ferry-Telemetry": nil,
        ]),
        OptionsRow(name: "tus, statistics kept: the telemetry path", statistics: true, expected: [
            "Tus-Version": "1.0.0", "Upload-Limit": "max-size=1000, min-size=0, max-age=3600", "Ferry-Telemetry": "/telemetry/",
        ]),
        OptionsRow(name: "a scenario's own limits", path: "/files/small/", expected: [
            "Tus-Max-Size": "100", "Upload-Limit": "max-size=100, min-size=0, max-age=60",
        ]),
        OptionsRow(name: "an unknown scenario", path: "/files/nope/", status: 404, expected: ["Ferry-Error": "ERR_SCENARIO_NOT_FOUND", "Ferry-Telemetry": nil]),
        OptionsRow(name: "RUFH interop 6 says expires", fields: [("Upload-Draft-Interop-Version", "6")], statistics: true, expected: [
            "Upload-Limit": "max-size=1000, min-size=0, expires=3600", "Upload-Draft-Interop-Version": "6", "Ferry-Telemetry": "/telemetry/",
            "Tus-Version": nil,
        ]),
        OptionsRow(name: "RUFH interop 9", fields: [("Upload-Draft-Interop-Version", "9")], expected: [
            "Upload-Limit": "max-size=1000, min-size=0, max-age=3600", "Upload-Draft-Interop-Version": "9", "Ferry-Telemetry": nil,
        ]),
        OptionsRow(name: "an interop version not spoken: no telemetry on an error", fields: [("Upload-Draft-Interop-Version", "99")], statistics: true,
                   status: 400, expected: ["Ferry-Error": "ERR_UNSUPPORTED_INTEROP_VERSION", "Ferry-Telemetry": nil]),
    ]

    @Test(arguments: optionsRows)
    func options(_ row: OptionsRow) async throws {
        let harness = RouterHarness(statistics: row.statistics, business: twoScenarios)
        try await harness.test { client in
            let response = try await client.send(.options, row.path, row.fields)
            #expect(response.status.code == row.status, "\(response.text)")
            for (name, value) in row.expected {
                #expect(response.header(name) == value, "\(name)")
            }
        }
    }

    /// The whole tus cycle through the router, bodies included: create, two appends, status,
    /// download, delete.
    @Test func aTusUploadFromCreationToDeletion() async throws {
        let harness = RouterHarness()
        try await harness.test { client in
            let created = try await client.send(.post, "/files/", [tus, ("Upload-Length", "11")])
            #expect(created.status == .created)
            let location = try #require(created.header("Location"))
            #expect(location.hasPrefix("http://localhost/files/"))
            let path = try #require(URL(string: location)?.path)

            let first = try await client.send(.patch, path, [tus, octets, ("Upload-Offset", "0")], body: "hello ")
            #expect(first.status == .noContent && first.header("Upload-Offset") == "6", "\(first.status) \(first.text)")
            let stale = try await client.send(.patch, path, [tus, octets, ("Upload-Offset", "0")], body: "again")
            #expect(stale.status == .conflict && stale.header("Ferry-Error") == "ERR_OFFSET_MISMATCH")
            let second = try await client.send(.patch, path, [tus, octets, ("Upload-Offset", "6")], body: "world")
            #expect(second.status == .noContent && second.header("Upload-Offset") == "11")

            let status = try await client.send(.head, path, [tus])
            #expect(status.status == .ok && status.header("Upload-Offset") == "11" && status.header("Upload-Length") == "11")
            #expect(status.header("Cache-Control") == "no-store")
            let download = try await client.send(.get, path, [tus])
            #expect(download.status == .ok && download.text == "hello world")

            #expect(try await client.send(.delete, path, [tus]).status == .noContent)
            let gone = try await client.send(.head, path, [tus])
            #expect(gone.status == .gone && gone.header("Ferry-Error") == "ERR_UPLOAD_GONE")
        }
    }

    @Test func aTusCreationWithUpload() async throws {
        let harness = RouterHarness()
        try await harness.test { client in
            let created = try await client.send(.post, "/files/", [tus, octets, ("Upload-Length", "3")], body: "abc")
            #expect(created.status == .created && created.header("Upload-Offset") == "3", "\(created.text)")
            let path = try #require(created.header("Location").flatMap { URL(string: $0)?.path })
            #expect(try await client.send(.get, path, [tus]).text == "abc")
        }
    }

    /// RUFH through the router: a creation with part of the body, then the append that completes it.
    @Test func aRUFHUploadInTwoRequests() async throws {
        let harness = RouterHarness()
        try await harness.test { client in
            let created = try await client.send(.post, "/files/", [("Upload-Complete", "?0")], body: "hel")
            #expect(created.status == .created && created.header("Upload-Offset") == "3" && created.header("Upload-Complete") == "?0", "\(created.text)")
            let path = try #require(created.header("Location").flatMap { URL(string: $0)?.path })
            let appended = try await client.send(
                .patch, path, [("Upload-Complete", "?1"), ("Upload-Offset", "3"), ("Content-Type", "application/partial-upload")], body: "lo"
            )
            #expect(appended.status == .ok && appended.header("Upload-Complete") == "?1", "\(appended.status) \(appended.text)")
            #expect(appended.json?["length"] as? Int == 5)
            let offset = try await client.send(.head, path)
            #expect(offset.status == .noContent && offset.header("Upload-Offset") == "5" && offset.header("Upload-Complete") == "?1")
            #expect(try await client.send(.get, path, [tus]).text == "hello")
        }
    }

    /// Uploads made through the engine, inspected through the router.
    @Test func headGetAndDeleteOfUploadsMadeThroughTheEngine() async throws {
        let harness = RouterHarness()
        let complete = try await harness.upload(length: 4, Array("data".utf8), metadata: "filename YS50eHQ=")
        let partial = try await harness.upload(length: 10, Array("abc".utf8))
        let deferred = try await harness.upload(length: nil)
        try await harness.test { client in
            let whole = try await client.send(.head, "/files/" + complete.id.rawValue, [tus])
            #expect(whole.status == .ok && whole.header("Upload-Offset") == "4" && whole.header("Upload-Length") == "4")
            #expect(whole.header("Upload-Metadata") == "filename YS50eHQ=" && whole.header("Upload-Expires") == nil)
            let bytes = try await client.send(.get, "/files/" + complete.id.rawValue, [tus])
            #expect(bytes.status == .ok && bytes.text == "data" && bytes.header("Content-Length") == "4")
            let range = try await client.send(.get, "/files/" + complete.id.rawValue, [tus, ("Range", "bytes=1-2")])
            #expect(range.status == .partialContent && range.text == "at" && range.header("Content-Range") == "bytes 1-2/4")

            let open = try await client.send(.head, "/files/" + partial.id.rawValue, [tus])
            #expect(open.header("Upload-Offset") == "3" && open.header("Upload-Length") == "10" && open.header("Upload-Expires") != nil)
            let early = try await client.send(.get, "/files/" + partial.id.rawValue, [tus])
            #expect(early.status == .conflict && early.header("Ferry-Error") == "ERR_UPLOAD_INCOMPLETE")
            #expect(try await client.send(.head, "/files/" + deferred.id.rawValue, [tus]).header("Upload-Defer-Length") == "1")

            #expect(try await client.send(.delete, "/files/" + partial.id.rawValue, [tus]).status == .noContent)
            #expect(try await client.send(.head, "/files/" + partial.id.rawValue, [tus]).status == .gone)
        }
        #expect(try await harness.engine.status(complete.id).offset == 4)
    }

    @Test(arguments: [
        ("/files/" + String(repeating: "ab", count: 16), [tus], 404, "ERR_UPLOAD_NOT_FOUND"),
        ("/files/not-an-id!", [tus], 404, "ERR_UPLOAD_NOT_FOUND"),
        ("/files/" + String(repeating: "ab", count: 16), [], 412, "ERR_UNSUPPORTED_VERSION"),
    ] as [(String, [(String, String)], Int, String)])
    func unknownUploads(_ path: String, _ fields: [(String, String)], _ status: Int, _ code: String) async throws {
        try await RouterHarness().test { client in
            let response = try await client.send(.patch, path, fields + [octets, ("Upload-Offset", "0")], body: "x")
            #expect(response.status.code == status && response.header("Ferry-Error") == code, "\(response.text)")
        }
    }

    @Test func requestsOutsideTheCollectionAreNotUploads() async throws {
        let harness = RouterHarness()
        try await harness.test { client in
            // `/filesystem` shares the prefix's letters, not its path.
            _ = try await client.send(.head, "/filesystem", [tus])
            _ = try await client.send(.head, "/files", [tus])
        }
        #expect(harness.metrics.count("ferry_http_requests_total", [("route", "other"), ("method", "HEAD"), ("status", "404")]) == 1)
        // `/files` without its slash is the collection.
        #expect(harness.metrics.keys("ferry_http_requests_total").contains { $0.contains("route=/files/,method=HEAD") })
    }
}
