import FerryCore
import FerryHTTP
import FerryServer
import Foundation
import Testing

/// Clients that hold connections without using them, and creation storms (issue 14).
@Suite("Connection limits: open connections, slow bodies and heads, creation storms")
struct ConnectionLimitsLiveTests {
    @Test func connectionsPastTheCapAre503() async throws {
        try await TestServer.with(configure: { $0.http.limits.maxConnections = 3 }) { server in
            var held: [RawConnection] = []
            for _ in 0..<3 {
                let connection = try await server.connect()
                #expect(try await connection.exchange("OPTIONS", "/files/").status == 204)
                held.append(connection)
            }
            let extra = try await server.connect()
            let refused = try await extra.exchange("OPTIONS", "/files/")
            #expect(refused.status == 503 && refused.header("Ferry-Error") == "ERR_RATE_LIMITED" && refused.header("Retry-After") != nil)
            #expect(await extra.isClosedByServer())
            await held[0].close()
            try await Task.sleep(for: .milliseconds(300))
            let again = try await server.connect()
            #expect(try await again.exchange("OPTIONS", "/files/").status == 204, "a freed slot is usable again")
            await again.close()
            for connection in held.dropFirst() { await connection.close() }
        }
    }

    @Test func aTricklingBodyIsCutAndKeepsWhatArrived() async throws {
        try await TestServer.with(configure: {
            $0.http.limits.minBodyRate = 1000
            $0.http.limits.rateWindow = .seconds(2)
            $0.http.readTimeout = .seconds(120)  // only the guard can close this connection in time
        }) { server in
            let path = try await server.create(length: 100_000)
            let connection = try await server.connect()
            try await connection.request("PATCH", path, [tus, octets, ("Upload-Offset", "0"), ("Content-Length", "100000")], body: Array(repeating: 7, count: 500))
            // 1 byte every 200 ms: 5 B/s, far under 1000 B/s; cut within four windows (40 bytes).
            var closed = false
            for _ in 0..<40 {
                do {
                    try await connection.send([7])
                } catch {
                    closed = true
                    break
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(closed, "the server cut the trickle within the bytes a few windows take")
            let offset = try await server.offset(path)
            #expect((offset ?? 0) >= 500, "what arrived was kept (offset \(offset ?? -1))")
        }
    }

    @Test func aFastBodyAfterALongWaitIsNotCut() async throws {
        try await TestServer.with(configure: {
            $0.http.limits.minBodyRate = 1000
            // Three seconds, not one: a test run on two busy cores has starved this client for
            // more than a second between the 100 and its body (a fresh-clone CI run, once).
            $0.http.limits.rateWindow = .seconds(3)
        }) { server in
            // Expect: 100-continue: no byte is sent before the server asks; the wait is not the client's.
            let path = try await server.create(length: 4000)
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            try await connection.request("PATCH", path, [tus, octets, ("Upload-Offset", "0"), ("Content-Length", "4000"), ("Expect", "100-continue")])
            #expect(try await connection.response().status == 100)
            try await Task.sleep(for: .milliseconds(300))
            try await connection.send(Array(repeating: 1, count: 4000))
            let done = try await connection.response()
            #expect(done.status == 204 && done.header("Upload-Offset") == "4000")
        }
    }

    @Test func aHeadThatNeverEndsIsClosed() async throws {
        try await TestServer.with(configure: {
            $0.http.limits.headTimeout = .seconds(2)
            $0.http.readTimeout = .seconds(120)  // only the guard can close this connection in time
        }) { server in
            let connection = try await server.connect()
            try await connection.send("POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            // A field every 200 ms: closed within three head timeouts (30 fields).
            var closed = false
            for index in 0..<30 {
                do {
                    try await connection.send("X-Slow-\(index): 1\r\n")
                } catch {
                    closed = true
                    break
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(closed, "a head sent byte by byte is closed after the head timeout, within the fields sent")
        }
    }

    @Test func creationStormsAreLimitedPerClient() async throws {
        try await TestServer.with(configure: { $0.engine.creationsPerMinutePerClient = 5 }) { server in
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            var answers: [RawConnection.Response] = []
            for _ in 0..<8 {
                answers.append(try await connection.exchange("POST", "/files/", [tus, ("Upload-Length", "3")]))
            }
            // The bucket refills one creation every 12 s: on a loaded machine a slow run may
            // see one more accepted, never fewer, and never more than one.
            let statuses = answers.map(\.status)
            #expect(Array(statuses.prefix(5)) == [201, 201, 201, 201, 201], "\(statuses)")
            #expect(statuses.filter { $0 == 429 }.count >= 2 && statuses.allSatisfy { $0 == 201 || $0 == 429 }, "\(statuses)")
            for refused in answers where refused.status == 429 {
                #expect(refused.header("Ferry-Error") == "ERR_RATE_LIMITED" && refused.header("Retry-After") != nil)
            }
        }
    }
}
