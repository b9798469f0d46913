import FerryAuth
import FerryCore
import FerryHooks
import FerryServer
import Foundation
import JWTKit
import Testing

struct TestClaims: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var scenarios: [String]?

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Tokens for the live tests: HS256 from the server's secret, ES256 from its key, and forgeries.
struct Tokens {
    static let secret = "0123456789abcdef0123456789abcdef-secret"
    let server = JWTKeyCollection()
    let forger = JWTKeyCollection()
    let ecKey = ES256PrivateKey()
    let otherECKey = ES256PrivateKey()

    static func make() async -> Tokens {
        let tokens = Tokens()
        await tokens.server.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        await tokens.forger.add(hmac: HMACKey(from: "another secret of the same length, 40 B"), digestAlgorithm: .sha256)
        return tokens
    }

    func hs256(_ subject: String, scenarios: [String]? = ["*"], expiresIn: Double = 600) async throws -> String {
        try await server.sign(TestClaims(sub: .init(value: subject), exp: .init(value: Date().addingTimeInterval(expiresIn)), scenarios: scenarios))
    }

    func forged(_ subject: String) async throws -> String {
        try await forger.sign(TestClaims(sub: .init(value: subject), exp: .init(value: Date().addingTimeInterval(600)), scenarios: ["*"]))
    }

    func es256(_ subject: String, key: ES256PrivateKey) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(ecdsa: key)
        return try await keys.sign(TestClaims(sub: .init(value: subject), exp: .init(value: Date().addingTimeInterval(600)), scenarios: ["*"]))
    }
}

@Suite("Business integration over HTTP: tokens, owners, business results, webhooks")
struct BusinessLiveTests {
    static let webhookSecret = "webhook secret 0123456789"

    func configure(_ configuration: inout FerryServerConfiguration, receiver: BusinessReceiver, authenticator: any Authenticator, batch: Int = 1) {
        configuration.business = BusinessConfiguration(
            scenarios: ScenarioSet(
                [
                    Scenario(
                        name: "voice",
                        maxSize: 1000,
                        contentTypes: ["audio/mpeg"],
                        preCreate: receiver.url + "/pre-create",
                        preFinish: receiver.url + "/pre-finish",
                        // Generous: a test run on two busy cores can starve a thread for seconds.
                        callbackTimeout: .seconds(15),
                        webhooks: [Webhook(url: receiver.url + "/events", secret: Self.webhookSecret, events: [.created, .completed, .terminated], batch: batch)]
                    ),
                    Scenario(name: "open", maxSize: 2000, allowsAnonymous: true, directory: "open/files"),
                ],
                defaultName: "open"
            ),
            authenticator: authenticator,
            adminToken: "admin-token-0123456789",
            events: WebhookDispatcher.Configuration(retryBase: .milliseconds(100), retryCap: .milliseconds(400), pollInterval: .milliseconds(200))
        )
    }

    @Test func everyOperationIsAuthorizedAndTheBusinessResultComesBack() async throws {
        let tokens = await Tokens.make()
        let authenticator = try await JWTAuthenticator.make(
            .init(hs256Secret: Tokens.secret, publicKeysPEM: [tokens.ecKey.publicKey.pemRepresentation])
        )
        try await BusinessReceiver.with(secret: Self.webhookSecret) { receiver in
            try await TestServer.with(configure: { configure(&$0, receiver: receiver, authenticator: authenticator) }) { server in
                let alice = "Bearer " + (try await tokens.hs256("alice"))
                let aliceEC = "Bearer " + (try await tokens.es256("alice", key: tokens.ecKey))
                let connection = try await server.connect()
                defer { Task { await connection.close() } }

                // OPTIONS per scenario; unknown scenarios.
                #expect(try await connection.exchange("OPTIONS", "/files/voice/").header("Tus-Max-Size") == "1000")
                #expect(try await connection.exchange("OPTIONS", "/files/").header("Tus-Max-Size") != "1000")
                let unknown = try await connection.exchange("POST", "/files/videos/", [tus, ("Upload-Length", "5"), ("Authorization", alice)])
                #expect(unknown.status == 404 && unknown.header("Ferry-Error") == "ERR_SCENARIO_NOT_FOUND")

                // pre-create: refused, and metadata added.
                let blocked = try await connection.exchange(
                    "POST", "/files/voice/", [tus, ("Upload-Length", "20"), ("Upload-Metadata", "block eWVz"), ("Authorization", alice)]
                )
                #expect(blocked.status == 403 && blocked.header("Ferry-Error") == "ERR_REJECTED")
                #expect(String(decoding: blocked.body, as: UTF8.self).contains("blocked by policy"))
                let created = try await connection.exchange("POST", "/files/voice/", [tus, ("Upload-Length", "20"), ("Authorization", aliceEC)])
                #expect(created.status == 201)
                let path = try #require(created.header("Location").flatMap { URL(string: $0)?.path })
                let head = try await connection.exchange("HEAD", path, [tus, ("Authorization", alice)])
                #expect(head.header("Upload-Metadata")?.contains("tenant dDE=") == true, "pre-create added metadata")

                // The auth table: each credential on each operation.
                let credentials: [(String, String?, Int, String?)] = [
                    ("no token", nil, 401, #"Bearer realm="ferry""#),
                    ("expired", "Bearer " + (try await tokens.hs256("alice", expiresIn: -60)), 401, #"Bearer realm="ferry", error="invalid_token""#),
                    ("wrong HS256 key", "Bearer " + (try await tokens.forged("alice")), 401, #"Bearer realm="ferry", error="invalid_token""#),
                    ("wrong ES256 key", "Bearer " + (try await tokens.es256("alice", key: tokens.otherECKey)), 401, #"Bearer realm="ferry", error="invalid_token""#),
                    ("garbage", "Bearer not.a.jwt", 401, #"Bearer realm="ferry", error="invalid_token""#),
                    ("another principal", "Bearer " + (try await tokens.hs256("bob")), 404, nil),
                    ("without the scenario", "Bearer " + (try await tokens.hs256("alice", scenarios: ["open"])), 403, nil),
                ]
                let mp3 = Array("ID3".utf8) + Array(repeating: UInt8(7), count: 17)
                for (label, token, status, challenge) in credentials {
                    let auth = token.map { [("Authorization", $0)] } ?? []
                    let requests: [(String, String, [(String, String)], [UInt8])] = [
                        ("HEAD", path, [tus], []),
                        ("PATCH", path, [tus, octets, ("Upload-Offset", "0")], mp3),
                        ("GET", path, [], []),
                        ("DELETE", path, [tus], []),
                        ("POST", "/files/voice/", [tus, ("Upload-Concat", "final;\(path)")], []),
                    ]
                    for (method, target, headers, body) in requests {
                        let answer = try await connection.exchange(method, target, headers + auth, body: body)
                        // A final listing another's upload reports it as missing (400), and one without
                        // the scenario is refused before: both leave the upload untouched.
                        let expected = method == "POST" && status == 404 ? 400 : status
                        #expect(answer.status == expected, "\(label): \(method) answered \(answer.status)")
                        if let challenge { #expect(answer.header("WWW-Authenticate") == challenge, "\(label): \(method)") }
                    }
                    let untouched = try await connection.exchange("HEAD", path, [tus, ("Authorization", alice)])
                    #expect(untouched.status == 200 && untouched.header("Upload-Offset") == "0", "\(label) left the upload untouched")
                }

                // The owner completes it: the business result is on the completing response and later.
                let done = try await connection.exchange("PATCH", path, [tus, octets, ("Upload-Offset", "0"), ("Authorization", alice)], body: mp3)
                #expect(done.status == 204 && done.header("Ferry-Business-Status") == "done")
                let result = try #require(done.header("Ferry-Business-Result"))
                #expect(result.contains(#""businessId":"biz-"#) && result.contains("\\u00e9") && result.allSatisfy(\.isASCII))
                #expect(try await connection.exchange("HEAD", path, [tus, ("Authorization", alice)]).header("Ferry-Business-Result") == result)
                #expect(try await connection.exchange("GET", path, [("Authorization", alice)]).header("Ferry-Business-Result") == result)

                // The business system fails: complete and durable, pending, retried in the background.
                receiver.state.withLock { $0.preFinishFails = true }
                let second = try await connection.exchange("POST", "/files/voice/", [tus, ("Upload-Length", "20"), ("Authorization", alice)])
                let secondPath = try #require(second.header("Location").flatMap { URL(string: $0)?.path })
                let pending = try await connection.exchange("PATCH", secondPath, [tus, octets, ("Upload-Offset", "0"), ("Authorization", alice)], body: mp3)
                #expect(pending.status == 204 && pending.header("Upload-Offset") == "20" && pending.header("Ferry-Business-Status") == "pending")
                receiver.state.withLock { $0.preFinishFails = false }
                var polled: String?
                for _ in 0..<50 where polled != "done" {
                    try await Task.sleep(for: .milliseconds(200))
                    polled = try await connection.exchange("HEAD", secondPath, [tus, ("Authorization", alice)]).header("Ferry-Business-Status")
                }
                #expect(polled == "done", "a HEAD poll sees the result once the retry succeeded")
            }
        }
    }

    @Test(arguments: [1, 3])
    func webhooksArriveSignedInOrderDespiteFailures(batch: Int) async throws {
        let tokens = await Tokens.make()
        let authenticator = try await JWTAuthenticator.make(.init(hs256Secret: Tokens.secret))
        try await BusinessReceiver.with(secret: Self.webhookSecret) { receiver in
            receiver.state.withLock { $0.failFirst = 2 }
            try await TestServer.with(configure: { configure(&$0, receiver: receiver, authenticator: authenticator, batch: batch) }) { server in
                let alice = "Bearer " + (try await tokens.hs256("alice"))
                let connection = try await server.connect()
                defer { Task { await connection.close() } }
                let mp3 = Array("ID3".utf8) + Array(repeating: UInt8(1), count: 97)
                var paths: [String] = []
                for _ in 0..<3 {
                    let created = try await connection.exchange("POST", "/files/voice/", [tus, ("Upload-Length", "100"), ("Authorization", alice)])
                    let path = try #require(created.header("Location").flatMap { URL(string: $0)?.path })
                    _ = try await connection.exchange("PATCH", path, [tus, octets, ("Upload-Offset", "0"), ("Authorization", alice)], body: mp3)
                    paths.append(path)
                }
                let deleted = try await connection.exchange("POST", "/files/voice/", [tus, ("Upload-Length", "100"), ("Authorization", alice)])
                let deletedPath = try #require(deleted.header("Location").flatMap { URL(string: $0)?.path })
                _ = try await connection.exchange("DELETE", deletedPath, [tus, ("Authorization", alice)])

                let state = try await receiver.wait { $0.events.count >= 8 }
                #expect(state.events.count == 8, "created + completed for three uploads, created + terminated for one")
                #expect(state.events.allSatisfy { $0.signatureValid }, "every signature verifies")
                // A batch is refused while one of its events is, so batched events may need more.
                #expect(state.attempts.values.allSatisfy { batch == 1 ? $0 == 3 : $0 >= 3 }, "each event was refused twice, then delivered")
                #expect(state.postSizes.allSatisfy { (1...batch).contains($0) } && state.badCounts == 0, "\(state.postSizes)")
                for path in paths {
                    let id = String(path.split(separator: "/").last ?? "")
                    let mine = state.events.filter { $0.upload == id }
                    #expect(mine.map(\.type) == ["upload.created", "upload.completed"] && mine.map(\.sequence) == [1, 2])
                    #expect(mine.map(\.id) == ["\(id)-1", "\(id)-2"])
                }
                let deletedID = String(deletedPath.split(separator: "/").last ?? "")
                #expect(state.events.filter { $0.upload == deletedID }.map(\.type) == ["upload.created", "upload.terminated"])

                // The admin API shows the delivery state: the dispatcher records a delivery just
                // after the receiver answered it, so a loaded machine may need a moment.
                var events: [[String: Any]] = []
                for _ in 0..<100 {
                    let admin = try await connection.exchange("GET", "/admin/uploads/\(deletedID)/events", [("Authorization", "Bearer admin-token-0123456789")])
                    let json = try #require(try JSONSerialization.jsonObject(with: Data(admin.body)) as? [String: Any])
                    events = try #require(json["events"] as? [[String: Any]])
                    if events.allSatisfy({ $0["state"] as? String == "delivered" }) { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(events.map { $0["state"] as? String } == ["delivered", "delivered"])
                #expect(events.map { $0["attempts"] as? Int ?? 0 }.allSatisfy { batch == 1 ? $0 == 3 : $0 >= 3 })
                #expect(try await connection.exchange("GET", "/admin/uploads/\(deletedID)/events", [("Authorization", alice)]).status == 401)
            }
        }
    }

    /// An upload made through RUFH (what iOS URLSession sends) is an upload like any other:
    /// its scenario's rules, owner checks, business result and events apply.
    @Test func aRUFHUploadGetsTheBusinessResultAndEvents() async throws {
        let tokens = await Tokens.make()
        let authenticator = try await JWTAuthenticator.make(.init(hs256Secret: Tokens.secret))
        try await BusinessReceiver.with(secret: Self.webhookSecret) { receiver in
            try await TestServer.with(configure: { configure(&$0, receiver: receiver, authenticator: authenticator) }) { server in
                let alice = "Bearer " + (try await tokens.hs256("alice"))
                let bob = "Bearer " + (try await tokens.hs256("bob"))
                let rufh = [("Upload-Draft-Interop-Version", "8"), ("Upload-Complete", "?1")]
                let mp3 = Array("ID3".utf8) + Array(repeating: UInt8(7), count: 97)
                let noToken = try await server.send("POST", "/files/voice/", rufh + [("Content-Type", "audio/mpeg")], body: mp3)
                #expect(noToken.status == 401 && noToken.header("WWW-Authenticate") != nil)
                let wrongType = try await server.send("POST", "/files/voice/", rufh + [("Content-Type", "image/png"), ("Authorization", alice)], body: mp3)
                #expect(wrongType.status == 415, "the scenario's content types apply")

                let answers = try await server.responses("POST", "/files/voice/", rufh + [("Content-Type", "audio/mpeg"), ("Authorization", alice)], body: mp3)
                #expect(answers.map(\.status) == [104, 201], "\(answers.map(\.status))")
                let done = try #require(answers.last)
                #expect(done.header("Ferry-Business-Status") == "done")
                let json = try #require(try JSONSerialization.jsonObject(with: Data(done.body)) as? [String: Any])
                let id = try #require(json["id"] as? String)
                #expect((json["business"] as? [String: Any])?["businessId"] as? String == "biz-\(id)", "\(done.text)")
                #expect(json["sha256"] as? String != nil, "the digest the pre-finish call got")
                let path = "/files/\(id)"
                #expect(try await server.send("HEAD", path, [("Upload-Draft-Interop-Version", "8"), ("Authorization", bob)]).status == 404)
                let head = try await server.send("HEAD", path, [("Upload-Draft-Interop-Version", "8"), ("Authorization", alice)])
                #expect(head.header("Upload-Complete") == "?1" && head.header("Ferry-Business-Status") == "done")

                let state = try await receiver.wait { state in state.events.filter { $0.upload == id }.count >= 2 }
                #expect(state.events.filter { $0.upload == id }.map(\.type) == ["upload.created", "upload.completed"])
            }
        }
    }

    @Test func aScenarioKeepsItsFilesInItsOwnDirectory() async throws {
        try await BusinessReceiver.with(secret: Self.webhookSecret) { receiver in
            try await TestServer.with(configure: { configure(&$0, receiver: receiver, authenticator: AnonymousAuthenticator()) }) { server in
                let connection = try await server.connect()
                defer { Task { await connection.close() } }
                let data = Array("hello, scenario folders".utf8)
                let created = try await connection.exchange(
                    "POST", "/files/", [tus, octets, ("Upload-Length", String(data.count))], body: data
                )
                #expect(created.status == 201 && created.header("Upload-Offset") == String(data.count))
                let path = try #require(created.header("Location").flatMap { URL(string: $0)?.path })
                let id = String(path.split(separator: "/").last ?? "")
                let file = server.directory + "/uploads/open/files/" + id
                #expect(FileManager.default.contents(atPath: file) == Data(data), "the default scenario's folder holds the file")
                #expect(!FileManager.default.fileExists(atPath: server.directory + "/uploads/" + id))
                #expect(try await connection.exchange("GET", path).body == data)
                #expect(try await connection.exchange("DELETE", path, [tus]).status == 204)
                #expect(!FileManager.default.fileExists(atPath: file))
            }
        }
    }
}
