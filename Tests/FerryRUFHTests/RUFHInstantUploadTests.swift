import Crypto
import FerryInstant
import Foundation
import Testing

/// Instant upload over RUFH: the same `Repr-Digest` on the creation, `Ferry-Challenge` on its
/// answer, and a PATCH with `Ferry-Proof` and no body that completes the upload.
@Suite("RUFH: instant upload")
struct RUFHInstantUploadTests {
    static let file = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }

    @Test(arguments: RUFHVersion.all)
    func aForwardIsChallengedAndProven(_ v: RUFHVersion) async throws {
        try await RUFHHarness.with { server in
            let digest = "sha-256=:" + Data(SHA256.hash(data: Self.file)).base64EncodedString() + ":"
            #expect(await server.send("OPTIONS", "/files/", v.marker).header("Ferry-Instant-Upload") == "sha-256")
            let first = await server.send("POST", "/files/", v.marker + [v.complete(true), ("Repr-Digest", digest)], body: Self.file)
            #expect(first.status == 201 && first.header("Ferry-Challenge") == nil, "\(first.status) \(first.text)")

            let forward = await server.send(
                "POST", "/files/", v.marker + [v.complete(false), ("Upload-Length", "\(Self.file.count)"), ("Repr-Digest", digest)]
            )
            #expect(forward.status == 201, "\(forward.status) \(forward.text)")
            let challenge = try #require(forward.header("Ferry-Challenge").flatMap(InstantChallenge.init(fieldValue:)))
            let path = try #require(forward.header("Location").flatMap { URL(string: $0)?.path })
            let proof = try #require(await InstantProof.answer(challenge, length: Int64(Self.file.count)) { Array(Self.file[Int($0.lowerBound)...Int($0.upperBound)]) })
            let proven = await server.send(
                "PATCH", path, v.marker + [v.appendType, v.complete(false), ("Upload-Offset", "0"), ("Ferry-Proof", InstantProof.fieldValue(proof))]
            )
            #expect(proven.status == 200 && v.says(proven) == true && proven.header("Upload-Offset") == "\(Self.file.count)", "\(proven.status) \(proven.text)")
            #expect(await server.send("GET", path, []).body == Self.file)
            let again = await server.send(
                "PATCH", path, v.marker + [v.appendType, v.complete(false), ("Upload-Offset", "0"), ("Ferry-Proof", InstantProof.fieldValue(proof))]
            )
            #expect(again.status == 409 && again.header("Ferry-Error") == "ERR_NO_CHALLENGE", "\(again.status) \(again.text)")
        }
    }
}
