import FerryCore
import FerryProtocol
import FerryTestSupport
import FerryTus
import HTTPTypes
import Testing

/// The tus protocol table, request in and exact answer out, against the tus dialect and the
/// engine over in-memory seams (no sockets: the socket-level rules live in the server's live tests).
@Suite("tus 1.0 protocol table")
struct TusTableTests {
    static func harness() -> DialectHarness {
        DialectHarness(engine: DialectHarness.memoryEngine { $0.maxSize = 10 * 1024 * 1024 }) { routes, capabilities in
            [TusDialect(routes: routes, capabilities: capabilities)]
        }
    }

    @Test(arguments: protocolCases)
    func rule(_ rule: ProtocolCase) async throws {
        let harness = Self.harness()
        let (path, concat) = try await prepare(rule.setup, harness)
        let target: String
        switch rule.target {
        case .collection: target = "/files/"
        case .upload: target = path ?? "/files/"
        case .unknownUpload: target = "/files/\(String(repeating: "ab", count: 16))"
        case .path(let custom): target = custom
        }
        let answer = await harness.send(HTTPRequest.Method(rule.method)!, target, rule.headers, body: rule.body)
        #expect(answer.status == rule.status, "\(rule.name): \(answer.text)")
        for (name, value) in rule.expect {
            let actual = answer.header(name)
            switch value {
            case "*": #expect(actual != nil, "\(rule.name): \(name) missing")
            case "$concat": #expect(actual == concat, "\(rule.name): \(name)")
            default: #expect(actual == value, "\(rule.name): \(name)")
            }
        }
        for name in rule.absent {
            #expect(answer.header(name) == nil, "\(rule.name): \(name) must be absent")
        }
        #expect(answer.header("Tus-Resumable") == "1.0.0", "\(rule.name)")
        if let expected = rule.offsetAfter, let path {
            let head = await harness.send(.head, path, [tus])
            #expect(head.header("Upload-Offset") == String(expected), "\(rule.name): offset after")
        }
    }

    /// Builds the state a case starts from; returns the upload's path (and a final's `Upload-Concat`).
    func prepare(_ setup: ProtocolCase.Setup, _ harness: DialectHarness) async throws -> (String?, String?) {
        switch setup {
        case .none:
            return (nil, nil)
        case .upload(let length, let sent, let metadata, let partial):
            var extra: [(String, String)] = []
            if let metadata { extra.append(("Upload-Metadata", metadata)) }
            if partial { extra.append(("Upload-Concat", "partial")) }
            let path = try await create(harness, length: length, extra)
            if sent > 0 { try await patch(harness, path, offset: 0, Array(repeating: 0x61, count: sent)) }
            return (path, nil)
        case .final(let lengths):
            var parts: [String] = []
            for length in lengths {
                let path = try await create(harness, length: length, [("Upload-Concat", "partial")])
                try await patch(harness, path, offset: 0, Array(repeating: 0x62, count: length))
                parts.append(path)
            }
            // One part by path, the others by absolute URL: HEAD echoes the field as sent.
            let concat = "final;" + parts.enumerated().map { $0.offset == 0 ? $0.element : "http://127.0.0.1" + $0.element }.joined(separator: " ")
            return (try await createFinal(harness, concat), concat)
        case .unfinishedFinal:
            let done = try await create(harness, length: 2, [("Upload-Concat", "partial")])
            try await patch(harness, done, offset: 0, [1, 2])
            let waiting = try await create(harness, length: 2, [("Upload-Concat", "partial")])
            let concat = "final;\(done) \(waiting)"
            return (try await createFinal(harness, concat), concat)
        case .terminated:
            let path = try await create(harness, length: 10)
            #expect(await harness.send(.delete, path, [tus]).status == 204)
            return (path, nil)
        }
    }

    func create(_ harness: DialectHarness, length: Int?, _ extra: [(String, String)] = []) async throws -> String {
        let lengthField = length.map { ("Upload-Length", String($0)) } ?? ("Upload-Defer-Length", "1")
        let answer = await harness.send(.post, "/files/", [tus, lengthField] + extra)
        return try #require(answer.header("Location").flatMap(Self.path), "\(answer.status) \(answer.text)")
    }

    func patch(_ harness: DialectHarness, _ path: String, offset: Int, _ body: [UInt8]) async throws {
        let answer = await harness.send(.patch, path, [tus, octets, ("Upload-Offset", String(offset))], body: body)
        #expect(answer.status == 204, "\(answer.text)")
    }

    func createFinal(_ harness: DialectHarness, _ concat: String) async throws -> String {
        let answer = await harness.send(.post, "/files/", [tus, ("Upload-Concat", concat)])
        #expect(answer.status == 201, "\(answer.text)")
        return try #require(answer.header("Location").flatMap(Self.path))
    }

    static func path(_ location: String) -> String? {
        guard let range = location.range(of: "/files/") else { return nil }
        return String(location[range.lowerBound...])
    }
}
