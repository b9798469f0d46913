import Foundation
import Testing

@Suite("Live sockets: streaming, interruption, newest request wins")
struct LiveTests {
    @Test func expectContinueIsAnsweredOnlyForAcceptedRequests() async throws {
        try await TestServer.with { server in
            let path = try await server.create(length: 10)
            let connection = try await server.connect()
            try await connection.request("PATCH", path, [tus, octets, ("Upload-Offset", "0"), ("Expect", "100-continue"), ("Content-Length", "5")])
            let interim = try await connection.response()
            #expect(interim.status == 100)
            try await connection.send(hello)
            let final = try await connection.response()
            #expect(final.status == 204)
            #expect(final.header("Upload-Offset") == "5")
            // A doomed request gets its final answer before sending a byte, then the connection closes.
            try await connection.request("PATCH", path, [tus, octets, ("Upload-Offset", "0"), ("Expect", "100-continue"), ("Content-Length", "5")])
            let refused = try await connection.response()
            #expect(refused.status == 409)
            #expect(await connection.isClosedByServer())
            #expect(try await server.offset(path) == 5)
        }
    }

    @Test func aResponseThatLeavesTheBodyUnreadAnnouncesTheClose() async throws {
        try await TestServer.with { server in
            let path = try await server.create(length: 10)
            let connection = try await server.connect()
            // Accepted: the body is read and the connection stays open for the next request.
            let accepted = try await connection.exchange("PATCH", path, [tus, octets, ("Upload-Offset", "0")], body: hello)
            #expect(accepted.status == 204 && accepted.header("Connection") == nil)
            // Refused before its body arrives: the answer says the connection closes (so that a
            // client sends its next request elsewhere), and it does.
            try await connection.request("PATCH", path, [tus, ("Content-Type", "text/plain"), ("Upload-Offset", "5"), ("Content-Length", "5")])
            let refused = try await connection.response()
            #expect(refused.status == 415 && refused.header("Connection") == "close", "\(refused.headers)")
            #expect(await connection.isClosedByServer())
            #expect(try await server.offset(path) == 5)
        }
    }

    @Test func chunkedBodiesAndChecksumTrailers() async throws {
        try await TestServer.with { server in
            let path = try await server.create(length: nil)
            let connection = try await server.connect()
            try await connection.request("PATCH", path, [tus, octets, ("Upload-Offset", "0"), ("Transfer-Encoding", "chunked")])
            try await connection.send("3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n")
            let plain = try await connection.response()
            #expect(plain.status == 204)
            #expect(plain.header("Upload-Offset") == "5")
            // The checksum as a trailer: sha1("hello") does not match "world", so the chunk is discarded.
            try await connection.request(
                "PATCH", path, [tus, octets, ("Upload-Offset", "5"), ("Transfer-Encoding", "chunked"), ("Trailer", "Upload-Checksum")]
            )
            try await connection.send("5\r\nworld\r\n0\r\nUpload-Checksum: sha1 \(sha1Hello)\r\n\r\n")
            #expect(try await connection.response().status == 460)
            await connection.close()
            #expect(try await server.offset(path) == 5)
            let again = try await server.connect()
            try await again.request(
                "PATCH", path, [tus, octets, ("Upload-Offset", "5"), ("Transfer-Encoding", "chunked"), ("Trailer", "Upload-Checksum")]
            )
            try await again.send("5\r\nhello\r\n0\r\nUpload-Checksum: sha1 \(sha1Hello)\r\n\r\n")
            let matched = try await again.response()
            #expect(matched.status == 204)
            #expect(matched.header("Upload-Offset") == "10")
            await again.close()
        }
    }

    @Test func aDisconnectKeepsEveryReceivedByte() async throws {
        try await TestServer.with { server in
            let path = try await server.create(length: 1_000_000)
            let connection = try await server.connect()
            try await connection.request("PATCH", path, [tus, octets, ("Upload-Offset", "0"), ("Content-Length", "1000000")])
            try await connection.send(Array(repeating: 7, count: 300_000))
            try await Task.sleep(for: .milliseconds(300))
            await connection.close()
            #expect(try await server.offset(path, reaching: 300_000) == 300_000)
        }
    }

    @Test func chunkedDisconnectIsNotMistakenForTheEnd() async throws {
        try await TestServer.with { server in
            let path = try await server.create(length: nil)
            let connection = try await server.connect()
            try await connection.request("PATCH", path, [tus, octets, ("Upload-Offset", "0"), ("Transfer-Encoding", "chunked")])
            try await connection.send("5\r\nhello\r\n")
            try await Task.sleep(for: .milliseconds(200))
            await connection.close()
            #expect(try await server.offset(path, reaching: 5) == 5)
        }
    }

    @Test func newestRequestWins() async throws {
        try await TestServer.with { server in
            let path = try await server.create(length: 100)
            // A "dead" PATCH: sends 40 bytes and then nothing, never closing.
            let dead = try await server.connect()
            try await dead.request("PATCH", path, [tus, octets, ("Upload-Offset", "0"), ("Content-Length", "100")])
            try await dead.send(Array(repeating: 1, count: 40))
            try await Task.sleep(for: .milliseconds(200))
            // The reconnecting client's HEAD interrupts it and sees every byte it sent (had it waited
            // for the dead PATCH to end, it would have been refused 423 after the lock timeout).
            #expect(try await server.offset(path) == 40)
            let answer = try await dead.response()
            #expect(answer.status == 409)
            #expect(answer.header("Ferry-Error") == "ERR_REQUEST_SUPERSEDED")
            #expect(await dead.isClosedByServer())
            // The new PATCH resumes where the dead one stopped.
            let live = try await server.connect()
            let done = try await live.exchange("PATCH", path, [tus, octets, ("Upload-Offset", "40")], body: Array(repeating: 2, count: 60))
            #expect(done.status == 204)
            #expect(done.header("Upload-Offset") == "100")
            await live.close()
        }
    }

    @Test func concurrentPatchesNeverInterleave() async throws {
        try await TestServer.with { server in
            let path = try await server.create(length: 200_000)
            let first = try await server.connect()
            let second = try await server.connect()
            try await first.request("PATCH", path, [tus, octets, ("Upload-Offset", "0"), ("Content-Length", "200000")])
            try await first.send(Array(repeating: 0xAA, count: 50_000))
            try await Task.sleep(for: .milliseconds(100))
            // A second PATCH at offset 0 interrupts the first, which keeps its 50,000 bytes, so it must then fail with 409.
            try await second.request("PATCH", path, [tus, octets, ("Upload-Offset", "0"), ("Content-Length", "200000")])
            try await first.send(Array(repeating: 0xAA, count: 50_000))
            try await second.send(Array(repeating: 0xBB, count: 200_000))
            let secondAnswer = try await second.response()
            #expect(secondAnswer.status == 409)
            await first.close()
            await second.close()
            let stored = try await server.offset(path) ?? 0
            #expect(stored >= 50_000)
            let data = try Data(contentsOf: URL(fileURLWithPath: server.directory + "/uploads/" + (path.split(separator: "/").last.map(String.init) ?? "")))
            #expect(data.prefix(stored).allSatisfy { $0 == 0xAA })
        }
    }

    @Test func anIdleRequestTimesOutAndSavesItsBytes() async throws {
        try await TestServer.with(configure: { $0.http.readTimeout = .seconds(1) }) { server in
            let path = try await server.create(length: 100)
            let connection = try await server.connect()
            // Head and the first 25 bytes in one write: on a loaded machine a gap between two
            // writes may itself pass the 1 s timeout.
            try await connection.request("PATCH", path, [tus, octets, ("Upload-Offset", "0"), ("Content-Length", "100")], body: Array(repeating: 3, count: 25))
            #expect(await connection.isClosedByServer())
            #expect(try await server.offset(path) == 25)
        }
    }

    @Test func creationWithUploadAndExpectContinue() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            try await connection.request(
                "POST", "/files/", [tus, octets, ("Upload-Length", "5"), ("Expect", "100-continue"), ("Content-Length", "5")]
            )
            #expect(try await connection.response().status == 100)
            try await connection.send(hello)
            let created = try await connection.response()
            #expect(created.status == 201)
            #expect(created.header("Upload-Offset") == "5")
            await connection.close()
        }
    }

    @Test func getStreamsLargeUploads() async throws {
        try await TestServer.with { server in
            let size = 3_000_000
            let path = try await server.create(length: size)
            let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            let connection = try await server.connect()
            #expect(try await connection.exchange("PATCH", path, [tus, octets, ("Upload-Offset", "0")], body: payload).status == 204)
            let got = try await connection.exchange("GET", path)
            #expect(got.status == 200)
            #expect(got.body == payload)
            await connection.close()
        }
    }
}
