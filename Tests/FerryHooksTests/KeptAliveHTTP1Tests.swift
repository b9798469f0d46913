import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing

@testable import FerryHooks

/// Business POSTs over Ferry's own kept-alive HTTP/1.1 connections: reused while the server
/// keeps them, replaced when it closes them (even silently, while idle), bounded in time and
/// in the answer read back.
@Suite("Kept-alive HTTP/1.1 for callbacks and webhooks")
struct KeptAliveHTTP1Tests {
    static let headers: HTTPHeaders = ["Content-Type": "application/json"]

    static func post(
        _ client: KeptAliveHTTP1, _ server: ScriptedHTTPServer, _ body: String = "{}", timeout: TimeAmount = .seconds(30), maxAnswer: Int? = 1024
    ) async throws -> (status: Int, answer: String) {
        let target = try #require(client.target("http://127.0.0.1:\(server.port)/hook/a?x=1"))
        let (status, answer) = try await client.post(target, headers: headers, body: ByteBuffer(string: body), timeout: timeout, maxAnswer: maxAnswer)
        return (status, String(buffer: answer))
    }

    @Test func urlsAreParsedOnceAndOnlyPlainHTTPIsTaken() throws {
        let client = KeptAliveHTTP1()
        let target = try #require(client.target("http://hooks.test:8080/a/b?c=%20d"))
        #expect(target.origin == .init(host: "hooks.test", port: 8080) && target.path == "/a/b?c=%20d" && target.hostHeader == "hooks.test:8080")
        #expect(client.target("http://hooks.test")?.path == "/" && client.target("http://hooks.test")?.hostHeader == "hooks.test")
        #expect(client.target("http://[::1]:81/x")?.hostHeader == "[::1]:81")
        for other in ["https://hooks.test/a", "unsupported://hooks.test/a", "http:///nohost", "http://user:pw@hooks.test/a", "not a url"] {
            #expect(client.target(other) == nil, "\(other)")
        }
    }

    @Test func oneConnectionCarriesEveryPostWhileTheServerKeepsIt() async throws {
        let server = try await ScriptedHTTPServer { _, index in .ok(#"{"n":\#(index)}"#) }
        let client = KeptAliveHTTP1()
        for index in 0..<5 {
            let (status, answer) = try await Self.post(client, server, #"{"i":\#(index)}"#)
            #expect(status == 200 && answer == #"{"n":\#(index)}"#)
        }
        #expect(server.connections == 1)
        let first = try #require(server.received.first)
        #expect(first.hasPrefix("POST /hook/a?x=1 HTTP/1.1\r\n"))
        #expect(first.contains("\r\nHost: 127.0.0.1:\(server.port)\r\n") && first.contains("\r\nContent-Length: 7\r\n") && first.hasSuffix(#"{"i":0}"#))
        client.closeIdle()
        await server.close()
    }

    @Test func aConnectionTheServerClosesIsReplaced() async throws {
        // Said (Connection: close), and unsaid (closed after answering, while idle).
        let server = try await ScriptedHTTPServer { connection, _ in
            connection == 0 ? .ok("said", headers: "Connection: close\r\n") : .raw("HTTP/1.1 204 No Content\r\n\r\n", close: true)
        }
        let client = KeptAliveHTTP1()
        #expect(try await Self.post(client, server).status == 200)
        for _ in 0..<3 {
            #expect(try await Self.post(client, server).status == 204)
        }
        #expect(server.connections == 4)
        #expect(server.received.count == 4, "no POST was sent twice: \(server.received.count)")
        await server.close()
    }

    /// A reused connection that the server dropped without the client noticing yet: the POST
    /// fails before any answer and goes once more on a new connection.
    @Test func aPostOnADroppedConnectionIsSentAgainOnANewOne() async throws {
        // The first connection answers once, then swallows the next request and closes.
        let server = try await ScriptedHTTPServer { connection, index in
            connection == 0 ? (index == 0 ? .ok("first") : .raw("", close: true)) : .ok("again")
        }
        let client = KeptAliveHTTP1()
        #expect(try await Self.post(client, server).answer == "first")
        #expect(try await Self.post(client, server).answer == "again")
        #expect(server.connections == 2)
        await server.close()
    }

    @Test func answersMayBeChunkedOrInterimAndAreBounded() async throws {
        let server = try await ScriptedHTTPServer { _, index in
            switch index {
            case 0: .raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            case 1: .raw("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
            default: .ok(String(repeating: "x", count: 100))
            }
        }
        let client = KeptAliveHTTP1()
        #expect(try await Self.post(client, server) == (200, "hello world"))
        #expect(try await Self.post(client, server) == (201, "ok"))
        await #expect(throws: KeptAliveHTTP1Error.self) { _ = try await Self.post(client, server, maxAnswer: 10) }
        // Status only: the answer is dropped, whatever its size.
        #expect(try await Self.post(client, server, maxAnswer: nil) == (200, ""))
        await server.close()
    }

    @Test func aStatusAloneIsEnoughWhenOnlyTheStatusMatters() async throws {
        let server = try await ScriptedHTTPServer { _, _ in .raw("HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\nabc", close: true) }
        let client = KeptAliveHTTP1()
        #expect(try await Self.post(client, server, maxAnswer: nil).status == 202)
        // The whole answer was wanted: a cut one fails.
        await #expect(throws: (any Error).self) { _ = try await Self.post(client, server, maxAnswer: 1024) }
        await server.close()
    }

    @Test func aSilentServerTimesOutAndADeadOneFails() async throws {
        let server = try await ScriptedHTTPServer { _, _ in .silent }
        let client = KeptAliveHTTP1()
        let error = await #expect(throws: KeptAliveHTTP1Error.self) { _ = try await Self.post(client, server, timeout: .milliseconds(300)) }
        #expect(error?.kind == .timedOut)
        let port = server.port
        await server.close()
        let target = try #require(client.target("http://127.0.0.1:\(port)/"))
        await #expect(throws: (any Error).self) {
            _ = try await client.post(target, headers: Self.headers, body: ByteBuffer(), timeout: .seconds(30), maxAnswer: 10)
        }
    }

    /// `CallbackHTTP` takes `http://` URLs itself and hands the rest to AsyncHTTPClient.
    @Test func otherSchemesGoThroughAsyncHTTPClient() async throws {
        let server = try await ScriptedHTTPServer { _, _ in .ok("mine") }
        let http = CallbackHTTP(client: HTTPClient.shared, keptAlive: KeptAliveHTTP1())
        let (status, answer) = try await http.post(
            "http://127.0.0.1:\(server.port)/", headers: Self.headers, body: ByteBuffer(string: "{}"), timeout: .seconds(30), maxAnswer: 64
        )
        #expect(status == 200 && String(buffer: answer) == "mine")
        await #expect(throws: (any Error).self) {
            _ = try await http.post(unreachable, headers: Self.headers, body: ByteBuffer(), timeout: .seconds(5), maxAnswer: 64)
        }
        await server.close()
    }
}
