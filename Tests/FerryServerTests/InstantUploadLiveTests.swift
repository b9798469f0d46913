import FerryAuth
import FerryClient
import FerryClientAHC
import FerryCore
import FerryServer
import Foundation
import Testing

/// Instant upload end to end (docs/instant-upload.md): `FerryClient` announces a file's digest,
/// answers the server's challenge, and a forward of a file the server holds sends none of its
/// bytes; the business result and the events arrive as for any upload.
@Suite("Instant upload over HTTP: the client, the business result, the events")
struct InstantUploadLiveTests {
    static func file(_ bytes: [UInt8]) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-instant-\(UUID().uuidString).mp3").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func options(_ token: String, dialect: UploadDialect = .tus) -> UploadOptions {
        var options = UploadOptions(metadata: [("filename", "forward.mp3"), ("filetype", "audio/mpeg")])
        options.headers[.authorization] = token
        options.dialect = dialect
        options.instantUploadMinimum = 0
        return options
    }

    @Test(arguments: [UploadDialect.tus, .rufh])
    func aForwardSendsNoBytesAndGetsItsOwnBusinessResult(_ dialect: UploadDialect) async throws {
        let tokens = await Tokens.make()
        let authenticator = try await JWTAuthenticator.make(.init(hs256Secret: Tokens.secret))
        let live = BusinessLiveTests()
        let mp3 = Array("ID3".utf8) + (0..<900).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ (dialect == .tus ? 1 : 2)) }
        let path = try Self.file(mp3)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await BusinessReceiver.with(secret: BusinessLiveTests.webhookSecret) { receiver in
            try await TestServer.with(configure: {
                live.configure(&$0, receiver: receiver, authenticator: authenticator)
                $0.statistics = StatsRecorder.Configuration(flushInterval: .milliseconds(20))
            }) { server in
                let endpoint = URL(string: "http://127.0.0.1:\(server.port)/files/voice/")!
                let client = try AsyncHTTPClientTransport.makeClient()
                defer { Task { try? await client.shutdown() } }
                let transport = AsyncHTTPClientTransport(client: client)
                let alice = "Bearer " + (try await tokens.hs256("alice"))
                let bob = "Bearer " + (try await tokens.hs256("bob"))

                let first = try await Upload(file: path, endpoint: endpoint, transport: transport, options: Self.options(alice, dialect: dialect)).run()
                #expect(!first.storedInstantly && first.bytesSent == Int64(mp3.count), "nothing held it yet: the bytes are sent")

                let upload = Upload(file: path, endpoint: endpoint, transport: transport, options: Self.options(bob, dialect: dialect))
                async let ran = upload.run()
                var sawInstant = false
                for await progress in upload.progress where progress.storedInstantly { sawInstant = true }
                let forward = try await ran
                #expect(forward.storedInstantly && sawInstant, "the result and the progress say so")
                #expect(forward.bytesSent == 0 && forward.requests == 3, "OPTIONS, the creation, the proof: \(forward.requests)")
                #expect(forward.url != first.url)
                #expect(forward.finalFields.ferryBusinessStatus == "done")
                let id = forward.url.lastPathComponent
                #expect(forward.finalFields.ferryBusinessResult?.contains("biz-\(id)") == true, "\(forward.finalFields.ferryBusinessResult ?? "-")")

                let state = try await receiver.wait { state in state.events.filter { $0.upload == id }.count >= 2 }
                #expect(state.events.filter { $0.upload == id }.map(\.type) == ["upload.created", "upload.completed"])
                let connection = try await server.connect()
                let served = try await connection.exchange("GET", forward.url.path, [("Authorization", bob)])
                await connection.close()
                #expect(served.body == mp3)

                // Statistics: recorded as instant, its length saved; the proof is its one append.
                let admin = [("Authorization", "Bearer admin-token-0123456789")]
                var stats: [String: Any] = [:]
                for _ in 0..<100 {
                    let answer = try await server.send("GET", "/admin/uploads/\(id)", admin)
                    stats = (try? JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any]) ?? [:]
                    if (stats["upload"] as? [String: Any])?["instant"] as? Bool == true { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                let record = stats["upload"] as? [String: Any]
                #expect(record?["instant"] as? Bool == true && record?["bytes"] as? Int == 0 && record?["state"] as? String == "complete", "\(stats)")
                let timeline = (stats["requests"] as? [[String: Any]])?.map { "\($0["method"] ?? "") \($0["outcome"] ?? "")" }
                #expect(timeline == ["PATCH instant"], "\(timeline ?? [])")
                let report = try await server.send("GET", "/admin/stats?since=1h&by=scenario", admin)
                let groups = (try JSONSerialization.jsonObject(with: Data(report.body)) as? [String: Any])?["groups"] as? [[String: Any]] ?? []
                let voice = groups.first { ($0["key"] as? [String: String])?["scenario"] == "voice" }
                #expect(voice?["instant"] as? Int == 1 && voice?["bytesSaved"] as? Int == mp3.count, "\(voice ?? [:])")
                let metrics = try await server.send("GET", "/metrics", []).text
                #expect(metrics.contains(#"ferry_uploads_instant_total{store="disk"} 1"#), "\(metrics.split(separator: "\n").filter { $0.contains("instant") })")
                #expect(metrics.contains(#"ferry_bytes_saved_total{store="disk"} \#(mp3.count)"#))
            }
        }
    }

    @Test func aClientWithTheFeatureOffSendsTheBytes() async throws {
        let mp3 = Array("ID3".utf8) + (0..<500).map { UInt8(truncatingIfNeeded: $0) }
        let path = try Self.file(mp3)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await TestServer.with { server in
            let endpoint = URL(string: "http://127.0.0.1:\(server.port)/files/")!
            let client = try AsyncHTTPClientTransport.makeClient()
            defer { Task { try? await client.shutdown() } }
            let transport = AsyncHTTPClientTransport(client: client)
            var announcing = UploadOptions()
            announcing.instantUploadMinimum = 0
            _ = try await Upload(file: path, endpoint: endpoint, transport: transport, options: announcing).run()
            var options = announcing
            options.instantUploadLimit = 0
            let plain = try await Upload(file: path, endpoint: endpoint, transport: transport, options: options).run()
            #expect(!plain.storedInstantly && plain.bytesSent == Int64(mp3.count) && plain.requests == 2, "OPTIONS, then the creation with the file")
            let small = try await Upload(file: path, endpoint: endpoint, transport: transport).run()
            #expect(!small.storedInstantly && small.requests == 2, "below the default minimum a small file travels in its creation")
            let forward = try await Upload(file: path, endpoint: endpoint, transport: transport, options: announcing).run()
            #expect(forward.storedInstantly && forward.bytesSent == 0)
        }
    }

    @Test func theQueueStoresAFileTheServerHoldsInstantly() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-instant-queue-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let photo = (0..<(700 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 11 &+ $0 >> 9) }
        let paths = ["photo.jpg", "forwarded.jpg", "again.jpg"].map { root.appendingPathComponent($0).path }
        for path in paths { try Data(photo).write(to: URL(fileURLWithPath: path)) }
        try await TestServer.with { server in
            let endpoint = URL(string: "http://127.0.0.1:\(server.port)/files/")!
            let client = try AsyncHTTPClientTransport.makeClient()
            defer { Task { try? await client.shutdown() } }
            let queue = try await UploadQueue(directory: root.appendingPathComponent("queue"), transport: AsyncHTTPClientTransport(client: client))
            let first = try await queue.enqueue([UploadQueue.Entry(file: paths[0], endpoint: endpoint)])
            #expect(await queue.run().succeeded)
            let later = try await queue.enqueue(paths.dropFirst().map { UploadQueue.Entry(file: $0, endpoint: endpoint) })
            let summary = await queue.run()
            #expect(summary.succeeded)
            #expect(summary[first[0]]?.storedInstantly == false, "the first upload of the photo sends it")
            for id in later {
                #expect(summary[id]?.storedInstantly == true, "a member the server holds is stored instantly")
            }
        }
    }
}
