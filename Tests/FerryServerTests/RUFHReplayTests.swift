import Foundation
import Testing

/// The request sequence URLSession sends for a background upload whose connection breaks, per
/// OS generation: creation with the whole file that breaks mid-body after the 104, offset
/// retrieval, the resuming append. The heads are written out byte for byte in the order and
/// form URLSession uses (reconstructed from the drafts, swift-nio-extras' server and public
/// reports of each version; there is no Apple device on this machine to capture from).
struct URLSessionGeneration: Sendable, CustomTestStringConvertible {
    var name: String
    var interop: Int
    var userAgent: String

    var testDescription: String { "\(name) (interop \(interop))" }

    func creation(_ port: Int, length: Int) -> String {
        var head = "POST /files/ HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Type: audio/mp4\r\n"
        head += "Upload-Draft-Interop-Version: \(interop)\r\n"
        head += interop == 3 ? "Upload-Incomplete: ?0\r\n" : "Upload-Complete: ?1\r\n"
        if interop >= 8 { head += "Upload-Length: \(length)\r\n" }
        head += "Accept: */*\r\nContent-Length: \(length)\r\nAccept-Language: en-GB,en;q=0.9\r\n"
        head += "Accept-Encoding: gzip, deflate\r\nUser-Agent: \(userAgent)\r\nConnection: keep-alive\r\n\r\n"
        return head
    }

    func offsetRetrieval(_ port: Int, path: String) -> String {
        "HEAD \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpload-Draft-Interop-Version: \(interop)\r\nAccept: */*\r\n"
            + "Accept-Language: en-GB,en;q=0.9\r\nAccept-Encoding: gzip, deflate\r\nUser-Agent: \(userAgent)\r\nConnection: keep-alive\r\n\r\n"
    }

    func append(_ port: Int, path: String, offset: Int, remaining: Int, length: Int) -> String {
        var head = "PATCH \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n"
        head += interop >= 6 ? "Content-Type: application/partial-upload\r\n" : "Content-Type: audio/mp4\r\n"
        head += "Upload-Draft-Interop-Version: \(interop)\r\nUpload-Offset: \(offset)\r\n"
        head += interop == 3 ? "Upload-Incomplete: ?0\r\n" : "Upload-Complete: ?1\r\n"
        if interop >= 8 { head += "Upload-Length: \(length)\r\n" }
        head += "Accept: */*\r\nContent-Length: \(remaining)\r\nAccept-Language: en-GB,en;q=0.9\r\n"
        head += "Accept-Encoding: gzip, deflate\r\nUser-Agent: \(userAgent)\r\nConnection: keep-alive\r\n\r\n"
        return head
    }

    static let all = [
        URLSessionGeneration(name: "iOS 17", interop: 3, userAgent: "FerryApp/1 CFNetwork/1485 Darwin/23.1.0"),
        URLSessionGeneration(name: "iOS 18.0", interop: 5, userAgent: "FerryApp/1 CFNetwork/1568.100.1 Darwin/24.0.0"),
        URLSessionGeneration(name: "iOS 18.1+", interop: 6, userAgent: "FerryApp/1 CFNetwork/1568.200.51 Darwin/24.1.0"),
        URLSessionGeneration(name: "iOS 26", interop: 8, userAgent: "FerryApp/1 CFNetwork/3826.400.120 Darwin/25.0.0"),
    ]
}

@Suite("URLSession request sequences replayed against Ferry")
struct RUFHReplayTests {
    @Test(arguments: URLSessionGeneration.all)
    func aCreationThatBreaksMidBodyResumes(_ generation: URLSessionGeneration) async throws {
        try await TestServer.with { server in
            var generator = SystemRandomNumberGenerator()
            let file = (0..<300_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let sent = 120_000

            // The creation: head and part of the body, then the 104 arrives while the rest of
            // the body is still unsent (it was sent before the body was read), then the
            // connection dies.
            let first = try await server.connect()
            try await first.send(Array(generation.creation(server.port, length: file.count).utf8) + file[..<sent])
            let interim = try await first.response()
            #expect(interim.status == 104, "\(interim.status)")
            #expect(interim.header("Upload-Draft-Interop-Version") == String(generation.interop))
            let location = try #require(interim.header("Location"))
            let path = try #require(URL(string: location)?.path)
            await first.close()

            // Offset retrieval: URLSession sends nothing but the interop version.
            let second = try await server.connect()
            defer { Task { await second.close() } }
            try await second.send(generation.offsetRetrieval(server.port, path: path))
            let head = try await second.response(isHead: true)
            #expect([200, 204].contains(head.status))
            let offset = try #require(head.header("Upload-Offset").flatMap(Int.init))
            #expect(offset > 0 && offset <= sent, "the stored prefix: \(offset) of \(sent) sent")
            if generation.interop == 3 {
                #expect(head.header("Upload-Incomplete") == "?1")
            } else {
                #expect(head.header("Upload-Complete") == "?0")
            }

            // The resuming append completes the upload.
            let remaining = file.count - offset
            try await second.send(Array(generation.append(server.port, path: path, offset: offset, remaining: remaining, length: file.count).utf8) + file[offset...])
            let done = try await second.response()
            #expect(done.status == 200, "\(done.status) \(done.text)")
            #expect(done.header(generation.interop == 3 ? "Upload-Incomplete" : "Upload-Complete") == (generation.interop == 3 ? "?0" : "?1"))
            #expect(done.header("Upload-Offset") == String(file.count))
            #expect(done.text.contains(#""length":\#(file.count)"#))

            let stored = try await server.send("GET", path, [])
            #expect(stored.body == file, "the stored file is the sent one, byte for byte")
            #expect(stored.header("Content-Type") == "audio/mp4", "Content-Type became the upload's type")
        }
    }

    /// A new HEAD on an upload stops the append still in flight on it (the newest request
    /// wins, as for tus): the HEAD reports what that append stored, and the stale connection
    /// does not get to add more.
    @Test func aNewRequestStopsTheAppendInFlight() async throws {
        try await TestServer.with { server in
            let v8 = [("Upload-Draft-Interop-Version", "8")]
            let created = try await server.send("POST", "/files/", v8 + [("Upload-Complete", "?0"), ("Upload-Length", "200000")], body: Array(repeating: 1, count: 1000))
            let path = try #require(created.header("Location").flatMap { URL(string: $0)?.path })
            let stale = try await server.connect()
            defer { Task { await stale.close() } }
            var head = "PATCH \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Draft-Interop-Version: 8\r\n"
            head += "Content-Type: application/partial-upload\r\nUpload-Offset: 1000\r\nUpload-Complete: ?1\r\nContent-Length: 199000\r\n\r\n"
            try await stale.send(Array(head.utf8) + Array(repeating: 2, count: 50_000))
            // Let the server store some of it, then ask where the upload stands.
            var offset = 1000
            var answer = ""
            for _ in 0..<50 where offset == 1000 {
                try await Task.sleep(for: .milliseconds(100))
                let head = try await server.send("HEAD", path, v8)
                answer = "\(head.status) \(head.header("Ferry-Error") ?? "")"
                offset = Int(head.header("Upload-Offset") ?? "") ?? -1
            }
            #expect(offset == 51_000, "the HEAD saw everything the stopped append had received (\(answer))")
            let stopped = try await stale.response()
            #expect(stopped.status == 409 && stopped.header("Ferry-Error") == "ERR_REQUEST_SUPERSEDED", "\(stopped.status) \(stopped.text)")
            let resumed = try await server.send(
                "PATCH", path, v8 + [("Content-Type", "application/partial-upload"), ("Upload-Offset", "51000"), ("Upload-Complete", "?1")],
                body: Array(repeating: 3, count: 149_000)
            )
            #expect(resumed.status == 200 && resumed.header("Upload-Offset") == "200000")
        }
    }

    /// A long append reports durable progress as interim 104s with `Upload-Offset` (from
    /// interop 6), never with `Location`; interop 5 gets none.
    @Test(arguments: [5, 8])
    func longAppendsReportDurableProgress(_ interop: Int) async throws {
        try await TestServer.with(configure: { $0.engine.checkpointBytes = 64 << 10 }) { server in
            let marker = [("Upload-Draft-Interop-Version", String(interop))]
            let created = try await server.send("POST", "/files/", marker + [("Upload-Complete", "?0")])
            let path = try #require(created.header("Location").flatMap { URL(string: $0)?.path })
            let connection = try await server.connect()
            defer { Task { await connection.close() } }
            let type = interop >= 6 ? "application/partial-upload" : "application/octet-stream"
            let head = "PATCH \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Draft-Interop-Version: \(interop)\r\nContent-Type: \(type)\r\n"
                + "Upload-Offset: 0\r\nUpload-Complete: ?1\r\nContent-Length: \(400 << 10)\r\n\r\n"
            try await connection.send(Array(head.utf8))
            for _ in 0..<4 {
                try await connection.send(Array(repeating: 9, count: 100 << 10))
                try await Task.sleep(for: .milliseconds(50))
            }
            var responses = [try await connection.response()]
            while let last = responses.last, last.status < 200 { responses.append(try await connection.response()) }
            let interims = responses.dropLast()
            #expect(responses.last?.status == 200 && responses.last?.header("Upload-Offset") == String(400 << 10))
            #expect(interims.allSatisfy { $0.status == 104 && $0.header("Location") == nil })
            let offsets = interims.compactMap { $0.header("Upload-Offset").flatMap(Int.init) }
            if interop >= 6 {
                #expect(!offsets.isEmpty && offsets == offsets.sorted() && offsets.allSatisfy { $0 > 0 && $0 <= 400 << 10 }, "\(offsets)")
            } else {
                #expect(interims.isEmpty, "interop 5 clients get no progress 104s")
            }
        }
    }
}
