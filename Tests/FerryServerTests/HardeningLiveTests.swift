import FerryAuth
import FerryCore
import FerryServer
import Foundation
import JWTKit
import Testing

/// Requests an attacker would send, over real sockets: each once crashed the process, let a
/// quota overshoot, or let a stranger disturb an owner's upload (issue 14).
@Suite("Hardening: no request crashes Ferry, quotas hold, abuse costs the attacker")
struct HardeningLiveTests {
    static let admin = "admin-token-0123456789"

    static func business(_ authenticator: any Authenticator, quotas: Quotas = Quotas()) -> BusinessConfiguration {
        BusinessConfiguration(
            scenarios: ScenarioSet(
                [Scenario(name: "private"), Scenario(name: "open", allowsAnonymous: true)],
                defaultName: "open"
            ),
            quotas: quotas,
            authenticator: authenticator,
            adminToken: admin
        )
    }

    // MARK: Crashes

    @Test func overflowingNumbersAnswer4xx() async throws {
        try await TestServer.with(configure: { $0.business.adminToken = Self.admin }) { server in
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            let path = try await server.create(length: 10)
            let patched = try await connection.exchange("PATCH", path, [tus, octets, ("Upload-Offset", "0")], body: Array("0123456789".utf8))
            #expect(patched.status == 204)

            // RUFH: offset + Content-Length past 2^63 (no token, no body needed).
            let rufh = try await server.connect()
            try await rufh.request(
                "PATCH", "/files/" + UploadID.random().rawValue,
                [("Upload-Draft-Interop-Version", "6"), ("Upload-Complete", "?1"), ("Upload-Offset", "1"),
                 ("Content-Type", "application/partial-upload"), ("Content-Length", "9223372036854775807")]
            )
            let refused = try await rufh.response()
            #expect(refused.status == 400 && refused.header("Ferry-Error") == "ERR_INVALID_LENGTH")
            await rufh.close()

            // A range whose last position is 2^63 - 1: clamped to the end (RFC 9110).
            let range = try await connection.exchange("GET", path, [("Range", "bytes=0-9223372036854775807")])
            #expect(range.status == 206 && range.header("Content-Range") == "bytes 0-9/10" && range.text == "0123456789")
            let tail = try await connection.exchange("GET", path, [("Range", "bytes=4-9223372036854775806")])
            #expect(tail.status == 206 && tail.text == "456789")

            // Statistics queries whose numbers do not fit a date.
            let auth = ("Authorization", "Bearer " + Self.admin)
            for query in ["from=1e13", "to=nan", "from=-inf", "since=1e300d", "since=1e400d", "since=nand", "to=9223372036854775807", "since=-5m"] {
                for route in ["/admin/uploads", "/admin/stats"] {
                    let answer = try await connection.exchange("GET", "\(route)?\(query)", [auth])
                    #expect(answer.status == 400 && answer.text.contains("ERR_INVALID_QUERY"), "\(route)?\(query) answered \(answer.status)")
                }
            }
            #expect(try await connection.exchange("GET", "/healthz").status == 200, "the server is still up")
        }
    }

    @Test func quotaSumsNearTwoToTheSixtyThirdDoNotOverflow() async throws {
        let tokens = await Tokens.make()
        let authenticator = try await JWTAuthenticator.make(.init(hs256Secret: Tokens.secret))
        try await TestServer.with(configure: {
            $0.engine.maxSize = nil
            $0.business = Self.business(authenticator, quotas: Quotas(openBytes: .max))
        }) { server in
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            let alice = ("Authorization", "Bearer " + (try await tokens.hs256("alice")))
            var statuses: [Int] = []
            for _ in 0..<3 {
                statuses.append(try await connection.exchange("POST", "/files/private/", [tus, alice, ("Upload-Length", "9223372036854775807")]).status)
            }
            #expect(statuses.allSatisfy { $0 == 201 || $0 == 429 }, "creations answered \(statuses)")
            #expect(try await connection.exchange("GET", "/healthz").status == 200)
        }
    }

    // MARK: Authorization before interruption

    @Test func strangersCannotInterruptAnOwnersPatch() async throws {
        let tokens = await Tokens.make()
        let authenticator = try await JWTAuthenticator.make(.init(hs256Secret: Tokens.secret))
        try await TestServer.with(configure: { $0.business = Self.business(authenticator) }) { server in
            let alice = ("Authorization", "Bearer " + (try await tokens.hs256("alice")))
            let bob = ("Authorization", "Bearer " + (try await tokens.hs256("bob")))
            let setup = try await server.connect()
            defer { Task { await setup.close() } }
            let created = try await setup.exchange("POST", "/files/private/", [tus, alice, ("Upload-Length", "2000")])
            let path = try #require(created.header("Location").flatMap { URL(string: $0)?.path })

            // The owner's PATCH is mid-body while strangers name the upload.
            let owner = try await server.connect()
            defer { Task { await owner.close() } }
            try await owner.request("PATCH", path, [tus, octets, alice, ("Upload-Offset", "0"), ("Content-Length", "2000")], body: Array(repeating: 1, count: 1000))
            try await Task.sleep(for: .milliseconds(200))
            var hostile: [Int] = []
            for round in 0..<10 {
                let stranger = try await server.connect()
                hostile.append(try await stranger.exchange("HEAD", path, [tus]).status)
                if round % 3 == 0 {
                    hostile.append(try await stranger.exchange("PATCH", path, [tus, octets, bob, ("Upload-Offset", "0")], body: [9]).status)
                    hostile.append(try await stranger.exchange("DELETE", path, [tus, bob]).status)
                }
                await stranger.close()
            }
            #expect(hostile.allSatisfy { $0 == 401 || $0 == 404 }, "strangers were refused: \(hostile)")
            try await owner.send(Array(repeating: 2, count: 1000))
            let done = try await owner.response()
            #expect(done.status == 204 && done.header("Upload-Offset") == "2000", "the owner's PATCH was never interrupted (\(done.status))")
        }
    }

    // MARK: Quotas under concurrency

    /// On SQLite, and on PostgreSQL when the test services run (scripts/test.sh starts one;
    /// `FERRY_TEST_POSTGRES_URL`). The subject is new each run: the database outlives it.
    @Test(arguments: [
        ("open-uploads", Quotas(openUploads: 5), 5),
        ("creations-per-minute", Quotas(creationsPerMinute: 3), 3),
        ("open-bytes", Quotas(openBytes: 500), 5),
    ], ["sqlite", "postgres"])
    func quotasHoldUnderConcurrentCreations(_ rule: (String, Quotas, Int), _ catalog: String) async throws {
        let (label, quotas, expected) = rule
        let postgres = ProcessInfo.processInfo.environment["FERRY_TEST_POSTGRES_URL"]
        if catalog == "postgres", postgres == nil {
            print("quotas on PostgreSQL: FERRY_TEST_POSTGRES_URL is not set; scripts/test.sh sets it")
            return
        }
        let tokens = await Tokens.make()
        let authenticator = try await JWTAuthenticator.make(.init(hs256Secret: Tokens.secret))
        try await TestServer.with(configure: {
            $0.business = Self.business(authenticator, quotas: quotas)
            if catalog == "postgres", let postgres { $0.catalog = .postgres(url: postgres) }
        }) { server in
            let alice = ("Authorization", "Bearer " + (try await tokens.hs256("alice-" + UploadID.random().rawValue)))
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<40 {
                    group.addTask {
                        let connection = try await server.connect()
                        defer { Task { await connection.close() } }
                        return try await connection.exchange("POST", "/files/private/", [tus, alice, ("Upload-Length", "100")]).status
                    }
                }
                var all: [Int] = []
                for try await status in group { all.append(status) }
                return all
            }
            let accepted = statuses.filter { $0 == 201 }.count
            #expect(accepted == expected, "\(label) on \(catalog): \(accepted) of 40 concurrent creations accepted, limit \(expected)")
            #expect(statuses.allSatisfy { $0 == 201 || $0 == 429 }, "\(label): \(statuses)")
        }
    }

    /// Two nodes on one PostgreSQL catalog: 40 concurrent creations spread over both, by one
    /// token subject against `open-uploads = 5` and by one anonymous address against its own
    /// `open-uploads = 5`, admit exactly 5 each (the advisory lock is the database's, not a node's).
    @Test func quotasHoldAcrossNodes() async throws {
        guard let postgres = ProcessInfo.processInfo.environment["FERRY_TEST_POSTGRES_URL"] else {
            print("quotas across nodes: FERRY_TEST_POSTGRES_URL is not set; scripts/test.sh sets it")
            return
        }
        let tokens = await Tokens.make()
        let authenticator = try await JWTAuthenticator.make(.init(hs256Secret: Tokens.secret))
        let configure = { (configuration: inout FerryServerConfiguration) in
            configuration.business = Self.business(authenticator, quotas: Quotas(openUploads: 5))
            configuration.business.anonymousQuotas = Quotas(openUploads: 5)
            configuration.tus.trustForwardedHeaders = true
            configuration.catalog = .postgres(url: postgres)
        }
        try await TestServer.with(configure: configure) { first in
            try await TestServer.with(configure: configure) { second in
                let alice = ("Authorization", "Bearer " + (try await tokens.hs256("alice-" + UploadID.random().rawValue)))
                let address = ("X-Forwarded-For", "198.18.\(Int.random(in: 0...255)).\(Int.random(in: 1...254))")
                for (label, collection, headers) in [("token", "/files/private/", [alice]), ("anonymous", "/files/open/", [address])] {
                    let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                        for index in 0..<40 {
                            group.addTask {
                                let connection = try await (index % 2 == 0 ? first : second).connect()
                                defer { Task { await connection.close() } }
                                return try await connection.exchange("POST", collection, [tus, ("Upload-Length", "100")] + headers).status
                            }
                        }
                        var all: [Int] = []
                        for try await status in group { all.append(status) }
                        return all
                    }
                    #expect(statuses.filter { $0 == 201 }.count == 5 && statuses.allSatisfy { $0 == 201 || $0 == 429 }, "\(label) over two nodes: \(statuses)")
                }
            }
        }
    }

    /// Two nodes on one PostgreSQL catalog, sharing their bytes, against `open-bytes = 100`: ten
    /// deferred-length uploads of one subject, created alternately on each, then `patch` sent
    /// concurrently to each upload through the other node; returns the statuses, the uploads'
    /// paths and offsets afterwards, and gives `then` both nodes and the token's header.
    static func deferredUploadsOnTwoNodes(
        _ label: String,
        patch: @escaping @Sendable (String) -> ([(String, String)], [UInt8]),
        then: (TestServer, TestServer, (String, String), [(path: String, status: Int)]) async throws -> Void
    ) async throws {
        guard let postgres = ProcessInfo.processInfo.environment["FERRY_TEST_POSTGRES_URL"] else {
            print("\(label) across nodes: FERRY_TEST_POSTGRES_URL is not set; scripts/test.sh sets it")
            return
        }
        let tokens = await Tokens.make()
        let authenticator = try await JWTAuthenticator.make(.init(hs256Secret: Tokens.secret))
        let shared = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-nodes-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: shared) }
        let configure = { (configuration: inout FerryServerConfiguration) in
            configuration.business = Self.business(authenticator, quotas: Quotas(openBytes: 100))
            configuration.dataDirectory = shared
            configuration.catalog = .postgres(url: postgres)
        }
        try await TestServer.with(configure: configure) { first in
            try await TestServer.with(configure: configure) { second in
                let alice = ("Authorization", "Bearer " + (try await tokens.hs256("alice-" + UploadID.random().rawValue)))
                var paths: [String] = []
                for index in 0..<10 {
                    let created = try await (index % 2 == 0 ? first : second).send("POST", "/files/private/", [tus, alice, ("Upload-Defer-Length", "1")])
                    paths.append(try #require(created.header("Location").flatMap { URL(string: $0)?.path }, "\(created.status)"))
                }
                let results = try await withThrowingTaskGroup(of: (path: String, status: Int).self) { group in
                    for (index, path) in paths.enumerated() {
                        group.addTask {
                            let (headers, body) = patch(path)
                            return (path, try await (index % 2 == 0 ? second : first).send("PATCH", path, [tus, alice, octets] + headers, body: body).status)
                        }
                    }
                    var all: [(path: String, status: Int)] = []
                    for try await result in group { all.append(result) }
                    return all
                }
                try await then(first, second, alice, results)
            }
        }
    }

    /// Ten concurrent PATCHes spread over two nodes each declaring `Upload-Length: 30` against
    /// `open-bytes = 100`: exactly three take the bytes (the declaration is committed under the
    /// same per-owner advisory lock as a creation).
    @Test func declaredLengthsHoldTheQuotaAcrossNodes() async throws {
        try await Self.deferredUploadsOnTwoNodes("declared lengths", patch: { _ in ([("Upload-Offset", "0"), ("Upload-Length", "30")], []) }) {
            _, _, _, results in
            let statuses = results.map(\.status)
            #expect(statuses.filter { $0 == 204 }.count == 3 && statuses.allSatisfy { $0 == 204 || $0 == 429 }, "\(statuses)")
        }
    }

    /// Ten concurrent PATCHes of 30 bytes each (no length declared) spread over two nodes against
    /// `open-bytes = 100`: exactly three store their bytes (each append claims its room under
    /// the owner's advisory lock before its body), and no room stays held afterwards.
    @Test func deferredGrowthHoldsTheQuotaAcrossNodes() async throws {
        try await Self.deferredUploadsOnTwoNodes("deferred growth", patch: { _ in ([("Upload-Offset", "0")], Array(repeating: 7, count: 30)) }) {
            first, _, alice, results in
            let statuses = results.map(\.status)
            #expect(statuses.filter { $0 == 204 }.count == 3 && statuses.allSatisfy { $0 == 204 || $0 == 429 }, "\(statuses)")
            var offsets: [String] = []
            for result in results { offsets.append(try await first.send("HEAD", result.path, [tus, alice]).header("Upload-Offset") ?? "?") }
            #expect(offsets.sorted() == Array(repeating: "0", count: 7) + Array(repeating: "30", count: 3), "\(offsets)")
            // Nothing stays held: another 10 bytes fit exactly.
            let last = try #require(results.first { $0.status != 204 }?.path)
            let fits = try await first.send("PATCH", last, [tus, alice, octets, ("Upload-Offset", "0")], body: Array(repeating: 7, count: 10))
            #expect(fits.status == 204)
        }
    }

    /// Anonymous clients are counted per address: 20 concurrent creations from one address
    /// against `open-uploads = 3` admit 3, another address has room of its own, and a deferred
    /// upload's bytes count against its address's `open-bytes`. The addresses come through a
    /// trusted proxy's `X-Forwarded-For` (every test client is 127.0.0.1).
    @Test(arguments: ["sqlite", "postgres"])
    func anonymousClientsAreLimitedPerAddress(_ catalog: String) async throws {
        let postgres = ProcessInfo.processInfo.environment["FERRY_TEST_POSTGRES_URL"]
        if catalog == "postgres", postgres == nil {
            print("anonymous quotas on PostgreSQL: FERRY_TEST_POSTGRES_URL is not set; scripts/test.sh sets it")
            return
        }
        try await TestServer.with(configure: {
            $0.business = Self.business(AnonymousAuthenticator())
            $0.business.anonymousQuotas = Quotas(openUploads: 3, openBytes: 1000)
            $0.tus.trustForwardedHeaders = true
            if catalog == "postgres", let postgres { $0.catalog = .postgres(url: postgres) }
        }) { server in
            // A documentation address, new each run: the PostgreSQL database outlives the test.
            let first = "198.51.100.\(Int.random(in: 1...254)), 10.0.0.1"
            let second = "203.0.113.\(Int.random(in: 1...254))"
            // A database kept between runs holds earlier runs' uploads: addresses differ per run.
            let third = "10.\(Int.random(in: 1...254)).\(Int.random(in: 1...254)).\(Int.random(in: 1...254))"
            func create(_ forwarded: String, _ extra: [(String, String)] = [("Upload-Length", "10")]) async throws -> RawConnection.Response {
                let connection = try await server.connect()
                defer { Task { await connection.close() } }
                return try await connection.exchange("POST", "/files/open/", [tus, ("X-Forwarded-For", forwarded)] + extra)
            }
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<20 { group.addTask { try await create(first).status } }
                var all: [Int] = []
                for try await status in group { all.append(status) }
                return all
            }
            #expect(statuses.filter { $0 == 201 }.count == 3 && statuses.filter { $0 == 429 }.count == 17, "\(catalog): \(statuses)")
            let refused = try await create(first)
            #expect(refused.status == 429 && refused.header("Ferry-Error") == "ERR_QUOTA_EXCEEDED" && refused.header("Retry-After") != nil)
            // Another address: a quota of its own. Its deferred upload's bytes fill open-bytes.
            let deferred = try await create(second, [("Upload-Defer-Length", "1")])
            let path = try #require(deferred.header("Location").flatMap { URL(string: $0)?.path })
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            let from = ("X-Forwarded-For", third)  // the upload counts where it was created, wherever the client is now
            let fill = try await connection.exchange("PATCH", path, [tus, octets, from, ("Upload-Offset", "0")], body: Array(repeating: 1, count: 990))
            #expect(fill.status == 204 && fill.header("Upload-Offset") == "990")
            let over = try await connection.exchange("PATCH", path, [tus, octets, from, ("Upload-Offset", "990")], body: Array(repeating: 1, count: 20))
            #expect(over.status == 429 && over.header("Ferry-Error") == "ERR_QUOTA_EXCEEDED", "\(over.status)")
            #expect(try await create(second, [("Upload-Length", "11")]).status == 429, "the address's open-bytes are full (990 + 11 > 1000)")
            #expect(try await create(third).status == 201, "a third address is not charged for the second's upload")
            // IPv6: one /64 is one client, however many of its addresses it uses.
            let prefix = "2001:db8:\(String(Int.random(in: 1...0xFFFF), radix: 16)):\(String(Int.random(in: 1...0xFFFF), radix: 16))"
            var v6: [Int] = []
            for host in 1...4 { v6.append(try await create("\(prefix)::\(host)").status) }
            #expect(v6 == [201, 201, 201, 429], "a /64 shares one quota: \(v6)")
        }
    }

    @Test func deferredLengthBytesCountAgainstOpenBytes() async throws {
        let tokens = await Tokens.make()
        let authenticator = try await JWTAuthenticator.make(.init(hs256Secret: Tokens.secret))
        try await TestServer.with(configure: { $0.business = Self.business(authenticator, quotas: Quotas(openBytes: 100)) }) { server in
            let alice = ("Authorization", "Bearer " + (try await tokens.hs256("alice")))
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            let created = try await connection.exchange("POST", "/files/private/", [tus, alice, ("Upload-Defer-Length", "1")])
            let path = try #require(created.header("Location").flatMap { URL(string: $0)?.path })
            let first = try await connection.exchange("PATCH", path, [tus, octets, alice, ("Upload-Offset", "0")], body: Array(repeating: 1, count: 80))
            #expect(first.status == 204 && first.header("Upload-Offset") == "80")
            let over = try await connection.exchange("PATCH", path, [tus, octets, alice, ("Upload-Offset", "80")], body: Array(repeating: 1, count: 40))
            #expect(over.status == 429 && over.header("Ferry-Error") == "ERR_QUOTA_EXCEEDED")
            let head = try await connection.exchange("HEAD", path, [tus, alice])
            #expect(head.header("Upload-Offset") == "80", "the refused bytes were not stored")
        }
    }

    // MARK: Validation holes

    @Test func tokenHeadersMustNameTheKeysAlgorithm() async throws {
        let tokens = await Tokens.make()
        let authenticator = try await JWTAuthenticator.make(.init(hs256Secret: Tokens.secret))
        let valid = try await tokens.hs256("alice")
        let parts = valid.split(separator: ".").map(String.init)
        func header(_ json: String) -> String {
            Data(json.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        // The same payload and a valid HS256 signature, under headers naming other algorithms.
        for alg in ["none", "HS512", "foo", "RS256"] {
            let token = [header(#"{"alg":"\#(alg)","typ":"JWT"}"#), parts[1], parts[2]].joined(separator: ".")
            await #expect(throws: FerryError.self, "alg \(alg)") { try await authenticator.authenticate(authorization: "Bearer " + token) }
        }
        let accepted = try await authenticator.authenticate(authorization: "bearer " + valid)
        #expect(accepted.subject == "alice", "the real token still works, the scheme case-insensitively")
    }

    @Test func metadataAndHeadsHaveLimits() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            let big = Data(repeating: 65, count: 3000).base64EncodedString()
            let refused = try await connection.exchange("POST", "/files/", [tus, ("Upload-Length", "5"), ("Upload-Metadata", "filename \(big)")])
            #expect(refused.status == 400 && refused.header("Ferry-Error") == "ERR_METADATA_TOO_LARGE")
            let many = (0..<6).map { "k\($0) \(Data(repeating: 66, count: 1000).base64EncodedString())" }.joined(separator: ",")
            let total = try await connection.exchange("POST", "/files/", [tus, ("Upload-Length", "5"), ("Upload-Metadata", many)])
            #expect(total.status == 400 && total.header("Ferry-Error") == "ERR_METADATA_TOO_LARGE")

            let huge = try await server.connect()
            let header = String(repeating: "x", count: 40 * 1024)
            let answer = try await huge.exchange("POST", "/files/", [tus, ("Upload-Length", "5"), ("X-Padding", header)])
            #expect(answer.status == 431 && answer.header("Ferry-Error") == "ERR_HEADERS_TOO_LARGE")
            await huge.close()
        }
    }

    @Test func concatenationCannotAmplifyOrReachElsewhere() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            let partial = try await connection.exchange("POST", "/files/", [tus, ("Upload-Length", "4"), ("Upload-Concat", "partial")])
            let location = try #require(partial.header("Location"))
            let path = try #require(URL(string: location)?.path)
            // 60 KB listing one partial 1,500 times: past the head limit (431); 700 times: refused as repeated.
            let flood = try await server.connect()
            let amplified = try await flood.exchange("POST", "/files/", [tus, ("Upload-Concat", "final;" + Array(repeating: path, count: 1500).joined(separator: " "))])
            #expect(amplified.status == 431)
            await flood.close()
            let repeated = try await connection.exchange("POST", "/files/", [tus, ("Upload-Concat", "final;" + Array(repeating: path, count: 700).joined(separator: " "))])
            #expect(repeated.status == 400 && repeated.header("Ferry-Error") == "ERR_INVALID_CONCAT")
            let twice = try await connection.exchange("POST", "/files/", [tus, ("Upload-Concat", "final;\(path) \(path)")])
            #expect(twice.status == 400 && twice.header("Ferry-Error") == "ERR_INVALID_CONCAT")
            for foreign in ["http://elsewhere.example\(path)", "ftp://127.0.0.1\(path)", "https://127.0.0.1\(path)"] {
                let answer = try await connection.exchange("POST", "/files/", [tus, ("Upload-Concat", "final;\(foreign)")])
                #expect(answer.status == 400 && answer.header("Ferry-Error") == "ERR_INVALID_CONCAT", "\(foreign)")
            }
            let own = try await connection.exchange("POST", "/files/", [tus, ("Upload-Concat", "final;\(location)")])
            #expect(own.status == 201, "this server's own URL is still accepted")

            // A final whose unfinished partial was deleted is gone for HEAD and GET alike.
            let final = try #require(own.header("Location").flatMap { URL(string: $0)?.path })
            #expect(try await connection.exchange("DELETE", path, [tus]).status == 204)
            #expect(try await connection.exchange("HEAD", final, [tus]).status == 410)
            #expect(try await connection.exchange("GET", final).status == 410)
        }
    }

    @Test func hostAndMethodOverrideCannotBeAbused() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            let raw = "POST /files/ HTTP/1.1\r\nHost: evil.example/\"><script>\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 3\r\n\r\n"
            try await connection.send(raw)
            let created = try await connection.response()
            #expect(created.status == 201)
            let location = try #require(created.header("Location"))
            #expect(location.hasPrefix("http://localhost/files/"), "an invalid Host is not copied into Location: \(location)")
            let path = try #require(URL(string: location)?.path)
            let get = try await connection.exchange("GET", path, [tus, ("X-HTTP-Method-Override", "DELETE")])
            #expect(get.status == 409, "a GET stays a GET (the upload is incomplete)")
            #expect(try await connection.exchange("HEAD", path, [tus]).status == 200, "and deleted nothing")
            let post = try await connection.exchange("POST", path, [tus, ("X-HTTP-Method-Override", "DELETE")])
            #expect(post.status == 204, "a POST may still say it is a DELETE")
        }
    }

    @Test func adminSchemeIsCaseInsensitiveAndPendingStatisticsSaySo() async throws {
        try await TestServer.with(configure: {
            $0.business.adminToken = Self.admin
            $0.statistics?.flushInterval = .seconds(30)
        }) { server in
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            let path = try await server.create(length: 5)
            let detail = try await connection.exchange("GET", "/admin" + path.replacingOccurrences(of: "/files", with: "/uploads"), [("Authorization", "bearer " + Self.admin)])
            #expect(detail.status == 202 && detail.text.contains("pending"), "not yet written statistics are pending (\(detail.status))")
            let unknown = try await connection.exchange("GET", "/admin/uploads/" + UploadID.random().rawValue, [("Authorization", "BEARER " + Self.admin)])
            #expect(unknown.status == 404)
        }
    }
}
