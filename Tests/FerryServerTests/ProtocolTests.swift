import Foundation
import Testing

@Suite("tus 1.0 protocol table")
struct ProtocolTests {
    @Test(arguments: protocolCases)
    func rule(_ rule: ProtocolCase) async throws {
        try await TestServer.with(configure: { $0.engine.maxSize = 10 * 1024 * 1024; $0.ioThreads = 2 }) { server in
            let path = try await prepare(rule.setup, server)
            let target: String
            switch rule.target {
            case .collection: target = "/files/"
            case .upload: target = path ?? "/files/"
            case .unknownUpload: target = "/files/\(String(repeating: "ab", count: 16))"
            case .path(let custom): target = custom
            }
            let connection = try await server.connect()
            let response = try await connection.exchange(rule.method, target, rule.headers, body: rule.body)
            await connection.close()
            #expect(response.status == rule.status, "\(rule.name): \(response.text)")
            for (name, value) in rule.expect {
                let actual = response.header(name)
                if value == "*" {
                    #expect(actual != nil, "\(rule.name): \(name) missing")
                } else {
                    #expect(actual == value, "\(rule.name): \(name)")
                }
            }
            for name in rule.absent {
                #expect(response.header(name) == nil, "\(rule.name): \(name) must be absent")
            }
            // A request without `Tus-Resumable` (a bare GET) may be another dialect's.
            if rule.status != 412, rule.method != "GET" || rule.headers.contains(where: { $0.0 == "Tus-Resumable" }) {
                #expect(response.header("Tus-Resumable") == "1.0.0", "\(rule.name)")
            }
            if let expected = rule.offsetAfter, let path {
                #expect(try await server.offset(path) == expected, "\(rule.name): offset after")
            }
        }
    }

    /// Builds the state a case starts from; returns the upload's path.
    func prepare(_ setup: ProtocolCase.Setup, _ server: TestServer) async throws -> String? {
        switch setup {
        case .none:
            return nil
        case .upload(let length, let sent, let metadata, let partial):
            var extra: [(String, String)] = []
            if let metadata { extra.append(("Upload-Metadata", metadata)) }
            if partial { extra.append(("Upload-Concat", "partial")) }
            let path = try await server.create(length: length, extra)
            if sent > 0 { try await patch(server, path, offset: 0, Array(repeating: 0x61, count: sent)) }
            return path
        case .final(let lengths):
            var parts: [String] = []
            for length in lengths {
                let path = try await server.create(length: length, [("Upload-Concat", "partial")])
                try await patch(server, path, offset: 0, Array(repeating: 0x62, count: length))
                parts.append(path)
            }
            return try await createFinal(server, parts)
        case .unfinishedFinal:
            let done = try await server.create(length: 2, [("Upload-Concat", "partial")])
            try await patch(server, done, offset: 0, [1, 2])
            let waiting = try await server.create(length: 2, [("Upload-Concat", "partial")])
            return try await createFinal(server, [done, waiting])
        case .terminated:
            let path = try await server.create(length: 10)
            let connection = try await server.connect()
            _ = try await connection.exchange("DELETE", path, [tus])
            await connection.close()
            return path
        }
    }

    func patch(_ server: TestServer, _ path: String, offset: Int, _ body: [UInt8]) async throws {
        let connection = try await server.connect()
        let response = try await connection.exchange("PATCH", path, [tus, octets, ("Upload-Offset", String(offset))], body: body)
        await connection.close()
        #expect(response.status == 204)
    }

    func createFinal(_ server: TestServer, _ parts: [String]) async throws -> String {
        let connection = try await server.connect()
        let response = try await connection.exchange(
            "POST", "/files/", [tus, ("Upload-Concat", "final;" + parts.joined(separator: " "))]
        )
        await connection.close()
        #expect(response.status == 201, "\(response.text)")
        return URL(string: response.header("location") ?? "")?.path ?? ""
    }
}
