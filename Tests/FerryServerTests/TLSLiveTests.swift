import AsyncHTTPClient
import FerryServer
import FerryTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// Uploads over HTTPS with a real client: HTTP/2 and HTTP/1.1 chosen by ALPN on one port, one
/// connection for many requests, RUFH over HTTP/2, and plain-text HTTP/1.1 beside h2c.
@Suite("Live TLS: HTTP/2 and HTTP/1.1 by ALPN, h2c")
struct TLSLiveTests {
    static let tusFields = [("Tus-Resumable", "1.0.0")]

    /// `count` bytes that repeat every 251 (a prime): a misplaced chunk shows.
    static func pattern(_ count: Int) -> [UInt8] {
        let cycle = (0..<251).map { UInt8($0) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count { bytes += cycle.prefix(count - bytes.count) }
        return bytes
    }

    /// Byte-for-byte equality in one `memcmp` (element by element is slow in debug builds).
    static func same(_ a: [UInt8], _ b: some Collection<UInt8>) -> Bool { Data(a) == Data(b) }

    static func request(_ origin: String, _ method: HTTPMethod, _ path: String, _ fields: [(String, String)], body: [UInt8] = []) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: origin + path)
        request.method = method
        for (name, value) in fields { request.headers.add(name: name, value: value) }
        if !body.isEmpty { request.body = .bytes(ByteBuffer(bytes: body)) }
        return request
    }

    /// Sends `request` and returns the answer with its whole body (at most `limit` bytes).
    static func exchange(_ client: HTTPClient, _ request: HTTPClientRequest, limit: Int = 1 << 20) async throws -> (HTTPClientResponse, [UInt8]) {
        let response = try await client.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: limit)
        return (response, Array(body.readableBytesView))
    }

    @Test(arguments: TLSTest.Version.allCases)
    func aLargePatchAndRangedGets(_ version: TLSTest.Version) async throws {
        let size = 20 << 20
        let content = Self.pattern(size)
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        try await TLSTest.withServer(certificates.leaf) { server in
            try await TLSTest.withClient(trusting: certificates.caCertificate, version) { client in
                let origin = "https://localhost:\(server.port)"
                let (created, _) = try await Self.exchange(client, Self.request(origin, .POST, "/files/", Self.tusFields + [("Upload-Length", String(size))]))
                #expect(created.status == .created && created.version == version.expected)
                let path = try #require(created.headers.first(name: "Location").flatMap(TusProtocolTable.path(of:)))

                let patch = Self.request(
                    origin, .PATCH, path, Self.tusFields + [("Content-Type", "application/offset+octet-stream"), ("Upload-Offset", "0")], body: content
                )
                let (patched, _) = try await Self.exchange(client, patch)
                #expect(patched.status == .noContent && patched.version == version.expected)
                #expect(patched.headers.first(name: "Upload-Offset") == String(size))

                let (whole, bytes) = try await Self.exchange(client, Self.request(origin, .GET, path, Self.tusFields), limit: size + 1)
                #expect(whole.status == .ok && whole.version == version.expected)
                #expect(bytes.count == size && Self.same(bytes, content), "the whole upload comes back as sent")

                let first = (1 << 20) - 3
                let last = (7 << 20) + 11
                let (ranged, slice) = try await Self.exchange(
                    client, Self.request(origin, .GET, path, Self.tusFields + [("Range", "bytes=\(first)-\(last)")]), limit: size
                )
                #expect(ranged.status == .partialContent && ranged.version == version.expected)
                #expect(ranged.headers.first(name: "Content-Range") == "bytes \(first)-\(last)/\(size)")
                #expect(Self.same(slice, content[first...last]))
                let (tail, end) = try await Self.exchange(client, Self.request(origin, .GET, path, Self.tusFields + [("Range", "bytes=-100")]))
                #expect(tail.status == .partialContent && end == Array(content.suffix(100)))
            }
        }
    }

    @Test func twoHundredCreationsShareOneHTTP2Connection() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        try await TLSTest.withServer(certificates.leaf) { server in
            // Half the requests wait for a stream (100 per connection): on a loaded machine that
            // can take longer than the helper's 5 s wait for a connection.
            try await TLSTest.withClient(trusting: certificates.caCertificate, .h2, configure: {
                $0.timeout = .init(connect: .seconds(60), read: .seconds(60))
            }) { client in
                let origin = "https://localhost:\(server.port)"
                let fields = Self.tusFields + [("Content-Type", "application/offset+octet-stream"), ("Upload-Length", "5")]
                let answers = try await withThrowingTaskGroup(of: (Int, String?, NIOHTTP1.HTTPVersion).self) { group in
                    for _ in 0..<200 {
                        group.addTask {
                            let (response, _) = try await Self.exchange(client, Self.request(origin, .POST, "/files/", fields, body: Array("hello".utf8)))
                            return (Int(response.status.code), response.headers.first(name: "Upload-Offset"), response.version)
                        }
                    }
                    var answers: [(Int, String?, NIOHTTP1.HTTPVersion)] = []
                    for try await answer in group { answers.append(answer) }
                    return answers
                }
                #expect(answers.count == 200)
                #expect(answers.allSatisfy { $0.0 == 201 && $0.1 == "5" && $0.2 == .http2 }, "\(answers.filter { $0.0 != 201 }.prefix(3))")
                #expect(server.server.census.accepted(.http2) == 1, "one TCP connection carried every request")
                #expect(server.server.census.accepted(.http1) == 0)
            }
        }
    }

    @Test func rufhCreationAndCompletionOverHTTP2() async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        try await TLSTest.withServer(certificates.leaf) { server in
            try await TLSTest.withClient(trusting: certificates.caCertificate, .h2) { client in
                let origin = "https://localhost:\(server.port)"
                let interop = ("Upload-Draft-Interop-Version", "6")
                // Creation with part of the body: 104 (which the client passes over), then 201.
                let (created, _) = try await Self.exchange(
                    client, Self.request(origin, .POST, "/files/", [interop, ("Upload-Complete", "?0")], body: Array("hel".utf8))
                )
                #expect(created.status == .created && created.version == .http2)
                #expect(created.headers.first(name: "Upload-Complete") == "?0" && created.headers.first(name: "Upload-Offset") == "3")
                let path = try #require(created.headers.first(name: "Location").flatMap(TusProtocolTable.path(of:)))
                let (head, _) = try await Self.exchange(client, Self.request(origin, .HEAD, path, [interop]))
                #expect(head.status == .noContent && head.headers.first(name: "Upload-Offset") == "3")
                // Completion.
                let (done, _) = try await Self.exchange(
                    client,
                    Self.request(
                        origin, .PATCH, path,
                        [interop, ("Content-Type", "application/partial-upload"), ("Upload-Complete", "?1"), ("Upload-Offset", "3")],
                        body: Array("lo".utf8)
                    )
                )
                #expect(done.status == .ok && done.headers.first(name: "Upload-Complete") == "?1" && done.headers.first(name: "Upload-Offset") == "5")
                let (_, bytes) = try await Self.exchange(client, Self.request(origin, .GET, path, []))
                #expect(bytes == Array("hello".utf8))

                // Creation and completion in one request whose body has no declared length (an
                // HTTP/2 DATA stream without Content-Length, as URLSession streams a file).
                var streamed = Self.request(origin, .POST, "/files/", [interop, ("Upload-Complete", "?1")])
                let chunks = AsyncStream<ByteBuffer> { continuation in
                    for piece in ["hel", "lo, ", "world"] { continuation.yield(ByteBuffer(string: piece)) }
                    continuation.finish()
                }
                streamed.body = .stream(chunks, length: .unknown)
                let (whole, _) = try await Self.exchange(client, streamed)
                #expect(whole.status == .created && whole.version == .http2)
                #expect(whole.headers.first(name: "Upload-Complete") == "?1" && whole.headers.first(name: "Upload-Offset") == "12")
                let wholePath = try #require(whole.headers.first(name: "Location").flatMap(TusProtocolTable.path(of:)))
                let (_, wholeBytes) = try await Self.exchange(client, Self.request(origin, .GET, wholePath, []))
                #expect(wholeBytes == Array("hello, world".utf8))
                #expect(server.server.census.accepted(.http2) == 1)
            }
        }
    }

    @Test func h2cPortStillSpeaksHTTP1() async throws {
        try await TestServer.with(configure: { $0.http.transport.h2c = true }) { server in
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                let origin = "http://127.0.0.1:\(server.port)"
                let fields = Self.tusFields + [("Content-Type", "application/offset+octet-stream"), ("Upload-Length", "5")]
                let (created, _) = try await Self.exchange(client, Self.request(origin, .POST, "/files/", fields, body: Array("hello".utf8)))
                #expect(created.status == .created && created.version == .http1_1)
                #expect(created.headers.first(name: "Upload-Offset") == "5")
                try await client.shutdown()
            } catch {
                try? await client.shutdown()
                throw error
            }
            #expect(server.server.census.accepted(.http1) == 1 && server.server.census.accepted(.http2) == 0)

            // HTTP/2 with prior knowledge on the same port: the preface and SETTINGS, then a PING
            // answered by its ACK (read after the server set the connection up as HTTP/2).
            let connection = try await server.connect()
            let settings: [UInt8] = [0, 0, 0, 4, 0, 0, 0, 0, 0]
            let ping: [UInt8] = [0, 0, 8, 6, 0, 0, 0, 0, 0] + Array(repeating: 7, count: 8)
            try await connection.send(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + settings + ping)
            var sawPingAck = false
            for _ in 0..<10 where !sawPingAck {
                let header = try await connection.readExactly(9)
                let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
                _ = try await connection.readExactly(length)
                sawPingAck = header[3] == 6 && header[4] & 1 == 1
            }
            await connection.close()
            #expect(sawPingAck)
            #expect(server.server.census.accepted(.http2) == 1 && server.server.census.accepted(.http1) == 1)
        }
    }
}
