import FerryClient
import FerryClientAHC
import FerryCore
import FerryServer
import Foundation
import Testing

/// The statistics API over HTTP against a real server: what uploads record, filters, pages,
/// one upload's timeline, aggregates, errors, and the Prometheus histograms.
@Suite("Statistics API over HTTP")
struct StatsLiveTests {
    static let admin = ("Authorization", "Bearer admin-token-0123456789")

    func configure(_ configuration: inout FerryServerConfiguration) {
        configuration.business.adminToken = "admin-token-0123456789"
        configuration.statistics = StatsRecorder.Configuration(flushInterval: .milliseconds(20))
    }

    func json(_ server: TestServer, _ path: String) async throws -> [String: Any] {
        let response = try await server.send("GET", path, [Self.admin])
        #expect(response.status == 200, "\(path): \(response.status) \(response.text)")
        return try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
    }

    /// Waits until the recorder wrote `count` uploads, `terminated` of them terminated.
    func waitForUploads(_ server: TestServer, _ count: Int, terminated: Int = 0) async throws -> [[String: Any]] {
        for _ in 0..<100 {
            let list = try await json(server, "/admin/uploads?limit=100")["uploads"] as? [[String: Any]] ?? []
            if list.count >= count, list.filter({ $0["state"] as? String == "terminated" }).count >= terminated { return list }
            try await Task.sleep(for: .milliseconds(50))
        }
        return []
    }

    @Test func recordsFiltersPagesAndAggregates() async throws {
        try await TestServer.with(configure: configure) { server in
            // A tus upload from an iPhone on LTE, interrupted once and resumed.
            let phone = [tus, ("User-Agent", "Voice/2 CFNetwork/1568 Darwin/24.1.0"), ("Ferry-Network", "LTE"), ("Upload-Length", "10")]
            let created = try await server.send("POST", "/files/", phone)
            let path = try #require(created.header("Location").flatMap { URL(string: $0)?.path })
            let cut = try await server.connect()
            try await cut.send(Array("PATCH \(path) HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: 10\r\n\r\nhello".utf8))
            try await Task.sleep(for: .milliseconds(100))
            await cut.close()
            var offset = "0"
            for _ in 0..<50 where offset == "0" {
                offset = try await server.send("HEAD", path, [tus]).header("Upload-Offset") ?? "0"
                if offset == "0" { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(offset == "5")
            #expect(try await server.send("PATCH", path, [tus, octets, ("Upload-Offset", "5")], body: hello).status == 204)
            // Two RUFH uploads from browsers on wifi, one left incomplete, and an expired-looking one deleted.
            for complete in ["?1", "?0"] {
                _ = try await server.send(
                    "POST", "/files/", [("Upload-Draft-Interop-Version", "8"), ("Upload-Complete", complete), ("User-Agent", "Mozilla/5.0"), ("Ferry-Network", "wifi")],
                    body: hello
                )
            }
            let doomed = try await server.send("POST", "/files/", [tus, ("Upload-Length", "3")])
            let doomedPath = try #require(doomed.header("Location").flatMap { URL(string: $0)?.path })
            #expect(try await server.send("DELETE", doomedPath, [tus]).status == 204)

            let all = try await waitForUploads(server, 4, terminated: 1)
            #expect(all.count == 4)
            let id = String(path.split(separator: "/").last ?? "")
            let phoneRow = try #require(all.first { $0["id"] as? String == id })
            #expect(phoneRow["client"] as? String == "urlsession" && phoneRow["network"] as? String == "4g" && phoneRow["dialect"] as? String == "tus")
            #expect(phoneRow["state"] as? String == "complete" && phoneRow["bytes"] as? Int == 10)
            #expect(phoneRow["interrupted"] as? Int == 1 && phoneRow["resumptions"] as? Int == 1, "\(phoneRow)")
            #expect(phoneRow["timeToComplete"] as? Double != nil && phoneRow["goodput"] as? Double != nil)

            // Filters.
            let rufh = try await json(server, "/admin/uploads?dialect=rufh")["uploads"] as? [[String: Any]] ?? []
            #expect(rufh.count == 2 && rufh.allSatisfy { $0["client"] as? String == "browser" && $0["network"] as? String == "wifi" })
            #expect((try await json(server, "/admin/uploads?state=terminated")["uploads"] as? [[String: Any]])?.count == 1)
            #expect((try await json(server, "/admin/uploads?network=wifi&state=incomplete")["uploads"] as? [[String: Any]])?.count == 1)
            // Pages: newest first, every upload once.
            var seen: [String] = []
            var cursor: String?
            repeat {
                let page = try await json(server, "/admin/uploads?limit=3" + (cursor.map { "&cursor=\($0)" } ?? ""))
                seen += (page["uploads"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                cursor = page["next"] as? String
            } while cursor != nil
            #expect(seen == all.compactMap { $0["id"] as? String } && Set(seen).count == 4)

            // One upload: its timeline.
            let detail = try await json(server, "/admin/uploads/\(id)")
            let requests = detail["requests"] as? [[String: Any]] ?? []
            #expect(requests.map { $0["method"] as? String ?? "" } == ["PATCH", "HEAD", "PATCH"], "\(requests)")
            #expect(requests.first?["outcome"] as? String == "interrupted" && requests.last?["offset"] as? Int == 5)

            // Aggregates.
            let report = try await json(server, "/admin/stats?since=1h&by=dialect,network")
            let groups = report["groups"] as? [[String: Any]] ?? []
            let web = try #require(groups.first { ($0["key"] as? [String: String]) == ["dialect": "rufh", "network": "wifi"] })
            #expect(web["created"] as? Int == 2 && web["completed"] as? Int == 1 && web["open"] as? Int == 1)
            let phoneGroup = try #require(groups.first { ($0["key"] as? [String: String]) == ["dialect": "tus", "network": "4g"] })
            #expect(phoneGroup["resumptionsPerUpload"] as? Double == 1 && phoneGroup["successRate"] as? Double == 1)
            #expect(report["active"] as? Int != nil)

            // Errors.
            #expect(try await server.send("GET", "/admin/stats", []).status == 401)
            #expect(try await server.send("GET", "/admin/stats?by=colour", [Self.admin]).status == 400)
            #expect(try await server.send("GET", "/admin/uploads?cursor=nonsense", [Self.admin]).status == 400)
            #expect(try await server.send("GET", "/admin/uploads?since=soon", [Self.admin]).status == 400)
            #expect(try await server.send("GET", "/admin/uploads/\(String(repeating: "ab", count: 16))", [Self.admin]).status == 404)

            // Prometheus: histograms with bounded labels.
            let metrics = try await server.send("GET", "/metrics", []).text
            #expect(metrics.contains(#"ferry_upload_duration_seconds_bucket{scenario="default",network="4g""#), "\(metrics.prefix(300))")
            #expect(metrics.contains("ferry_upload_goodput_bytes_per_second_bucket"))
            #expect(!metrics.contains(id), "no upload ids in labels")
        }
    }

    /// Two nodes on one PostgreSQL catalog: an upload created on the first (declaring LTE) and
    /// completed on the second is labelled `4g` in the second's histograms, not `unknown`: the
    /// network travels in the record.
    @Test func aCompletionOnAnotherNodeIsLabelledWithTheCreatorsNetwork() async throws {
        guard let postgres = ProcessInfo.processInfo.environment["FERRY_TEST_POSTGRES_URL"] else {
            print("histograms across nodes: FERRY_TEST_POSTGRES_URL is not set; scripts/test.sh sets it")
            return
        }
        // One data directory for both nodes: the bytes are shared, as S3 shares them.
        let shared = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-nodes-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: shared) }
        let configure = { (configuration: inout FerryServerConfiguration) in
            self.configure(&configuration)
            configuration.dataDirectory = shared
            configuration.catalog = .postgres(url: postgres)
        }
        try await TestServer.with(configure: configure) { first in
            try await TestServer.with(configure: configure) { second in
                let created = try await first.send("POST", "/files/", [tus, ("Ferry-Network", "LTE"), ("Upload-Length", "10")])
                let path = try #require(created.header("Location").flatMap { URL(string: $0)?.path })
                #expect(try await first.send("PATCH", path, [tus, octets, ("Upload-Offset", "0")], body: hello).status == 204)
                #expect(try await second.send("PATCH", path, [tus, octets, ("Upload-Offset", "5")], body: hello).status == 204)
                let metrics = try await second.send("GET", "/metrics", []).text
                #expect(metrics.contains(#"ferry_upload_duration_seconds_bucket{scenario="default",network="4g""#), "\(metrics.prefix(300))")
                #expect(metrics.contains(#"ferry_upload_goodput_bytes_per_second_bucket{scenario="default",network="4g""#))
                #expect(!metrics.contains(#"network="unknown""#), "no completion is labelled unknown")
            }
        }
    }

    /// The Ferry client reports its telemetry after an upload (found through `Ferry-Telemetry`
    /// on OPTIONS); bad reports are refused.
    @Test func theClientReportsTelemetry() async throws {
        let file = try TestFile(size: 3 << 20, seed: 5)
        defer { file.remove() }
        try await TestServer.with(configure: configure) { server in
            let options = try await server.send("OPTIONS", "/files/", [tus])
            #expect(options.header("Ferry-Telemetry") == "/telemetry/")
            let client = try AsyncHTTPClientTransport.makeClient()
            var uploadOptions = UploadOptions(network: .wifi, chunk: .fixed(1 << 20))
            uploadOptions.parallelism = .single
            let result = try await Upload(
                file: file.path, endpoint: URL(string: "http://127.0.0.1:\(server.port)/files/")!,
                transport: AsyncHTTPClientTransport(client: client), options: uploadOptions
            ).run()
            try await client.shutdown()
            let id = result.url.lastPathComponent
            var row: [String: Any] = [:]
            for _ in 0..<100 where row["telemetry"] == nil {
                row = (try? await json(server, "/admin/uploads/\(id)"))?["upload"] as? [String: Any] ?? [:]
                if row["telemetry"] == nil { try await Task.sleep(for: .milliseconds(50)) }
            }
            let telemetry = try #require((row["telemetry"] as? String).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } as? [String: Any])
            #expect(telemetry["stalls"] as? Int == 0 && telemetry["network"] as? String == "wifi" && telemetry["dialect"] as? String == "tus")
            #expect((telemetry["chunkSizes"] as? [String: Any])?["max"] as? Int == 1 << 20, "\(telemetry)")
            #expect(row["client"] as? String == "ferry" && row["network"] as? String == "wifi")

            #expect(try await server.send("POST", "/telemetry/\(id)", [("Content-Type", "application/json")], body: Array("[1]".utf8)).status == 400)
            #expect(try await server.send("POST", "/telemetry/\(id)", [], body: Array(repeating: 0x20, count: 5000)).status == 400)
            #expect(try await server.send("POST", "/telemetry/\(String(repeating: "cd", count: 16))", [], body: Array("{}".utf8)).status == 404)
        }
    }
}
