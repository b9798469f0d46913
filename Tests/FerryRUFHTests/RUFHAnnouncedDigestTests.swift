import Crypto
import Foundation
import Testing

/// A `Repr-Digest` on the creation request is kept with the upload (docs/instant-upload.md): a
/// later request that completes the upload without one is still checked against it.
@Suite("RUFH: a digest announced at creation")
struct RUFHAnnouncedDigestTests {
    @Test(arguments: RUFHVersion.all)
    func theCreationsDigestChecksTheRequestThatCompletes(_ v: RUFHVersion) async throws {
        try await RUFHHarness.with { server in
            let whole = ":" + Data(SHA256.hash(data: hello + hello)).base64EncodedString() + ":"
            let created = await server.send("POST", "/files/", v.marker + [v.complete(false), ("Repr-Digest", "sha-256=\(whole)")], body: hello)
            #expect(created.status == 201, "\(created.status) \(created.text)")
            let path = try #require(created.header("Location").flatMap { URL(string: $0)?.path })
            #expect(await server.send("HEAD", path, v.marker).header("Upload-Offset") == "5")
            let wrong = await server.send("PATCH", path, v.marker + [v.appendType, v.complete(true), ("Upload-Offset", "5")], body: Array("HELLO".utf8))
            #expect(wrong.status == 400 && wrong.header("Ferry-Error") == "ERR_CHECKSUM_MISMATCH", "\(wrong.status) \(wrong.text)")
            #expect(await server.send("HEAD", path, v.marker).header("Upload-Offset") == "5", "the completing request's bytes are not kept")
            let right = await server.send("PATCH", path, v.marker + [v.appendType, v.complete(true), ("Upload-Offset", "5")], body: hello)
            #expect(right.status == 200 && v.says(right) == true, "\(right.status) \(right.text)")
            #expect(await server.send("GET", path, []).body == hello + hello)
        }
    }
}
