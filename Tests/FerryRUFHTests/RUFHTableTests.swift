import Crypto
import Foundation
import Testing

/// The fields one interop version (nil: the final RFC form) puts on its requests, and what it
/// expects back.
struct RUFHVersion: Sendable, CustomTestStringConvertible {
    var interop: Int?

    var testDescription: String { interop.map { "interop \($0)" } ?? "final (no interop field)" }
    var marker: [(String, String)] { interop.map { [("Upload-Draft-Interop-Version", String($0))] } ?? [] }
    var usesIncomplete: Bool { interop == 3 }
    var announcesLimits: Bool { (interop ?? 99) >= 6 }
    var ageKey: String { interop == 6 ? "expires" : "max-age" }
    /// The request field saying whether the body ends the upload.
    func complete(_ value: Bool) -> (String, String) {
        usesIncomplete ? ("Upload-Incomplete", value ? "?0" : "?1") : ("Upload-Complete", value ? "?1" : "?0")
    }
    var appendType: (String, String) {
        ("Content-Type", (interop ?? 99) >= 6 ? "application/partial-upload" : "application/octet-stream")
    }
    /// Whether a response says the upload is complete (nil: it says nothing).
    func says(_ response: Reply) -> Bool? {
        usesIncomplete ? response.header("Upload-Incomplete").map { $0 == "?0" } : response.header("Upload-Complete").map { $0 == "?1" }
    }

    /// Draft -12 (interop 9) and the final text: errors say `?0`, no `completed-upload` type.
    var followsNewestText: Bool { (interop ?? 99) >= 9 }

    static let all = [3, 5, 6, 7, 8, 9].map { RUFHVersion(interop: $0) } + [RUFHVersion(interop: nil)]
}

/// Request in, exact status and fields out, for every interop version: creation (`?0`, `?1`,
/// empty), offset retrieval, appends (match, mismatch, overrun, after completion), cancellation,
/// limits and digests.
@Suite("RUFH protocol table, per interop version")
struct RUFHTableTests {
    @Test(arguments: RUFHVersion.all)
    func table(_ v: RUFHVersion) async throws {
        try await RUFHHarness.with(maxSize: 1 << 20) { server in
            // Creation with the whole body (?1): 104 first, then 201 with the same Location.
            let first = await server.responses("POST", "/files/", v.marker + [v.complete(true), ("Content-Type", "image/png")], body: hello)
            let interim = first[0]
            #expect(interim.status == 104, "\(v): \(interim.status)")
            let location = try #require(interim.header("Location"))
            #expect(interim.header("Upload-Draft-Interop-Version") == v.interop.map(String.init))
            #expect((interim.header("Upload-Limit") != nil) == v.announcesLimits)
            let created = try #require(first.last)
            #expect(created.status == 201 && created.header("Location") == location, "\(created.status) \(created.text)")
            #expect(v.says(created) == true && created.header("Upload-Offset") == "5")
            #expect(created.header("Upload-Draft-Interop-Version") == v.interop.map(String.init))
            #expect(created.text.contains(#""length":5"#), "\(created.text)")
            let path = try #require(URL(string: location)?.path)
            #expect(await server.send("GET", path, []).body == hello)

            // Creation with part of the body (?0), then offset retrieval.
            let second = await server.responses("POST", "/files/", v.marker + [v.complete(false)], body: Array("hel".utf8))
            let partialInterim = second[0]
            let partial = try #require(second.last)
            #expect(partialInterim.status == 104 && partial.status == 201 && v.says(partial) == false && partial.header("Upload-Offset") == "3")
            #expect(partial.header("Location") == partialInterim.header("Location"))
            let partialPath = try #require(partial.header("Location").flatMap { URL(string: $0)?.path })
            let head = await server.send("HEAD", partialPath, v.marker)
            #expect(head.status == 204 && head.header("Upload-Offset") == "3" && v.says(head) == false && head.header("Cache-Control") == "no-store")
            #expect(head.header("Upload-Length") == nil, "the length is not known yet")
            #expect((head.header("Upload-Limit")?.contains("\(v.ageKey)=") ?? false) == v.announcesLimits, "\(head.headers)")

            // Append: a wrong offset is 409 with the right one, then the right append completes.
            let mismatch = await server.send("PATCH", partialPath, v.marker + [v.appendType, v.complete(true), ("Upload-Offset", "1")], body: Array("lo".utf8))
            #expect(mismatch.status == 409 && mismatch.header("Upload-Offset") == "3" && mismatch.header("Content-Type") == "application/problem+json")
            let problem = try #require(try JSONSerialization.jsonObject(with: Data(mismatch.body)) as? [String: Any])
            #expect(problem["type"] as? String == "https://iana.org/assignments/http-problem-types#mismatching-upload-offset")
            #expect(problem["expected-offset"] as? Int == 3 && problem["provided-offset"] as? Int == 1)
            let done = await server.send("PATCH", partialPath, v.marker + [v.appendType, v.complete(true), ("Upload-Offset", "3")], body: Array("lo".utf8))
            #expect(done.status == 200 && v.says(done) == true && done.header("Upload-Offset") == "5", "\(done.status) \(done.text)")
            #expect(await server.send("GET", partialPath, []).body == hello)

            // After completion: refused, nothing changed.
            let late = await server.send("PATCH", partialPath, v.marker + [v.appendType, v.complete(true), ("Upload-Offset", "5")], body: [1])
            #expect(late.status == 400 && late.text.contains("#completed-upload") != v.followsNewestText && late.header("Ferry-Error") == "ERR_UPLOAD_COMPLETED")
            let after = await server.send("HEAD", partialPath, v.marker)
            #expect(after.header("Upload-Offset") == "5" && v.says(after) == true)
            #expect((after.header("Upload-Length") == "5") == v.announcesLimits)

            // Empty creations: ?0 makes an empty incomplete upload, ?1 an empty complete one.
            let third = await server.responses("POST", "/files/", v.marker + [v.complete(false), ("Content-Length", "0")])
            #expect(third.map(\.status) == [104, 201])
            let empty = try #require(third.last)
            #expect(empty.status == 201 && empty.header("Upload-Offset") == "0" && v.says(empty) == false)
            let fourth = await server.responses("POST", "/files/", v.marker + [v.complete(true), ("Content-Length", "0")])
            #expect(fourth.map(\.status) == [104, 201])
            let emptyDone = try #require(fourth.last)
            #expect(emptyDone.status == 201 && emptyDone.header("Upload-Offset") == "0" && v.says(emptyDone) == true)

            // Overrunning a known length: refused, and the upload is invalidated.
            let four = try await server.create(length: 4)
            let overrun = await server.send("PATCH", four, v.marker + [v.appendType, v.complete(false), ("Upload-Offset", "0")], body: hello)
            #expect(overrun.status == 400 && overrun.text.contains("#inconsistent-upload-length"), "\(overrun.status) \(overrun.text)")
            #expect([404, 410].contains(await server.send("HEAD", four, v.marker).status))

            // Cancellation.
            let emptyPath = try #require(empty.header("Location").flatMap { URL(string: $0)?.path })
            #expect(await server.send("DELETE", emptyPath, v.marker).status == 204)
            #expect([404, 410].contains(await server.send("HEAD", emptyPath, v.marker).status))

            // Limits.
            let options = await server.send("OPTIONS", "/files/", v.marker)
            #expect(options.status == 204 && options.header("Upload-Limit")?.contains("min-size=0") == true, "\(options.headers)")

            // Digests: a wrong Content-Digest stores nothing; a wrong Repr-Digest keeps the
            // upload where it was; a right one, and Want-Repr-Digest, come back.
            let digest = ":" + Data(SHA256.hash(data: hello)).base64EncodedString() + ":"
            let wrong = ":" + Data(SHA256.hash(data: [0])).base64EncodedString() + ":"
            let refused = await server.send("POST", "/files/", v.marker + [v.complete(false), ("Content-Digest", "sha-256=\(wrong)")], body: hello)
            #expect(refused.status == 400 && refused.header("Ferry-Error") == "ERR_CHECKSUM_MISMATCH", "\(refused.status) \(refused.text)")
            let refusedPath = try #require(refused.header("Location").flatMap { URL(string: $0)?.path })
            #expect(await server.send("HEAD", refusedPath, v.marker).header("Upload-Offset") == "0")
            let reprWrong = await server.send("PATCH", refusedPath, v.marker + [v.appendType, v.complete(true), ("Upload-Offset", "0"), ("Repr-Digest", "sha-256=\(wrong)")], body: hello)
            #expect(reprWrong.status == 400 && reprWrong.header("Ferry-Error") == "ERR_CHECKSUM_MISMATCH")
            #expect(await server.send("HEAD", refusedPath, v.marker).header("Upload-Offset") == "0")
            let reprRight = await server.send(
                "PATCH", refusedPath,
                v.marker + [v.appendType, v.complete(true), ("Upload-Offset", "0"), ("Content-Digest", "sha-256=\(digest)"), ("Repr-Digest", "sha-256=\(digest)"), ("Want-Repr-Digest", "sha-256=1")],
                body: hello
            )
            #expect(reprRight.status == 200 && reprRight.header("Repr-Digest") == "sha-256=\(digest)", "\(reprRight.status) \(reprRight.headers)")

            if (v.interop ?? 99) >= 6 {
                let untyped = await server.send("PATCH", partialPath, v.marker + [("Content-Type", "application/octet-stream"), v.complete(true), ("Upload-Offset", "5")])
                #expect(untyped.status == 415, "an append that is not application/partial-upload")
                // Upload-Length that disagrees with a complete body.
                let inconsistent = await server.send("POST", "/files/", v.marker + [v.complete(true), ("Upload-Length", "9")], body: hello)
                #expect(inconsistent.status == 400 && inconsistent.text.contains("#inconsistent-upload-length"))
            }
        }
    }

    @Test func anUnknownInteropVersionIsAClear400() async throws {
        try await RUFHHarness.with { server in
            for version in ["4", "10", "abc"] {
                let response = await server.send("POST", "/files/", [("Upload-Draft-Interop-Version", version), ("Upload-Complete", "?1")], body: hello)
                #expect(response.status == 400 && response.header("Ferry-Error") == "ERR_UNSUPPORTED_INTEROP_VERSION", "\(version)")
                #expect(response.text.contains("3, 5, 6, 7, 8, 9"))
            }
            // Neither dialect's fields: ordinary HTTP, which the tus dialect refuses for a creation.
            #expect(await server.send("POST", "/files/", [("Content-Length", "0")]).status == 412)
        }
    }

    @Test func oneUploadSeenThroughBothDialects() async throws {
        try await RUFHHarness.with { server in
            let path = try await server.create(length: 10)
            let tusPatch = await server.send("PATCH", path, [tus, octets, ("Upload-Offset", "0")], body: hello)
            #expect(tusPatch.status == 204)
            let rufhHead = await server.send("HEAD", path, [("Upload-Draft-Interop-Version", "8")])
            #expect(rufhHead.header("Upload-Offset") == "5" && rufhHead.header("Upload-Complete") == "?0" && rufhHead.header("Upload-Length") == "10")
            let rufhPatch = await server.send(
                "PATCH", path, [("Upload-Draft-Interop-Version", "8"), ("Content-Type", "application/partial-upload"), ("Upload-Offset", "5"), ("Upload-Complete", "?1")],
                body: hello
            )
            #expect(rufhPatch.status == 200)
            let tusHead = await server.send("HEAD", path, [tus])
            #expect(tusHead.header("Upload-Offset") == "10" && tusHead.header("Upload-Length") == "10")
            #expect(await server.send("GET", path, [tus]).body == hello + hello)
        }
    }
}
