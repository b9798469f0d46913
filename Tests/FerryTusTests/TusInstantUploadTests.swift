import Crypto
import FerryCore
import FerryInstant
import FerryProtocol
import FerryTestSupport
import FerryTus
import Foundation
import HTTPTypes
import Testing

/// Instant upload over tus (docs/instant-upload.md): OPTIONS advertises it, a creation that
/// announces held content is answered with `Ferry-Challenge`, a PATCH with `Ferry-Proof` and no
/// body completes it.
@Suite("tus: instant upload")
struct TusInstantUploadTests {
    static let tus = ("Tus-Resumable", "1.0.0")
    static let octets = ("Content-Type", "application/offset+octet-stream")
    static let file = (0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    static let digest = "sha-256=:" + Data(SHA256.hash(data: file)).base64EncodedString() + ":"

    static func path(_ answer: DialectHarness.Answer) throws -> String {
        let location = try #require(answer.header("Location"))
        return "/files/" + (location.split(separator: "/").last.map(String.init) ?? "")
    }

    static func proof(_ answer: DialectHarness.Answer, _ data: [UInt8]) async throws -> String {
        let challenge = try #require(answer.header("Ferry-Challenge").flatMap(InstantChallenge.init(fieldValue:)))
        let proof = try #require(await InstantProof.answer(challenge, length: Int64(data.count)) { Array(data[Int($0.lowerBound)...Int($0.upperBound)]) })
        return InstantProof.fieldValue(proof)
    }

    @Test func aForwardCostsOneCreationAndOneProof() async throws {
        let harness = TusTableTests.harness()
        let options = await harness.send(.options, "/files/")
        #expect(options.header("Ferry-Instant-Upload") == "sha-256")

        let first = await harness.send(.post, "/files/", [Self.tus, Self.octets, ("Upload-Length", "\(Self.file.count)"), ("Repr-Digest", Self.digest)], body: Self.file)
        #expect(first.status == 201 && first.header("Upload-Offset") == "\(Self.file.count)" && first.header("Ferry-Challenge") == nil)

        let forward = await harness.send(.post, "/files/", [Self.tus, ("Upload-Length", "\(Self.file.count)"), ("Repr-Digest", Self.digest)])
        #expect(forward.status == 201 && forward.header("Ferry-Challenge") != nil, "\(forward.status) \(forward.text)")
        let path = try Self.path(forward)
        let proven = await harness.send(.patch, path, [Self.tus, Self.octets, ("Upload-Offset", "0"), ("Ferry-Proof", try await Self.proof(forward, Self.file))])
        #expect(proven.status == 204 && proven.header("Upload-Offset") == "\(Self.file.count)", "\(proven.status) \(proven.text)")
        #expect(await harness.send(.get, path).body == Self.file)
    }

    @Test func refusalsHaveStableCodes() async throws {
        let harness = TusTableTests.harness()
        _ = await harness.send(.post, "/files/", [Self.tus, Self.octets, ("Upload-Length", "\(Self.file.count)"), ("Repr-Digest", Self.digest)], body: Self.file)
        let forward = await harness.send(.post, "/files/", [Self.tus, ("Upload-Length", "\(Self.file.count)"), ("Repr-Digest", Self.digest)])
        let path = try Self.path(forward)
        let proof = try await Self.proof(forward, Self.file)

        let withBody = await harness.send(.patch, path, [Self.tus, Self.octets, ("Upload-Offset", "0"), ("Ferry-Proof", proof)], body: [1, 2, 3])
        #expect(withBody.status == 400 && withBody.header("Ferry-Error") == "ERR_PROOF_WITH_BODY")
        let malformed = await harness.send(.patch, path, [Self.tus, Self.octets, ("Upload-Offset", "0"), ("Ferry-Proof", ":AAAA:")])
        #expect(malformed.status == 403 && malformed.header("Ferry-Error") == "ERR_PROOF_INVALID")
        var wrongBytes = Self.file
        wrongBytes[wrongBytes.count - 1] ^= 0xFF
        let forged = try await Self.proof(forward, wrongBytes)
        // Each challenged range is 4 KiB of a 50 KB file: the last byte may be outside them all.
        if forged != proof {
            let wrong = await harness.send(.patch, path, [Self.tus, Self.octets, ("Upload-Offset", "0"), ("Ferry-Proof", forged)])
            #expect(wrong.status == 403 && wrong.header("Ferry-Error") == "ERR_PROOF_INVALID")
            let spent = await harness.send(.patch, path, [Self.tus, Self.octets, ("Upload-Offset", "0"), ("Ferry-Proof", proof)])
            #expect(spent.status == 409 && spent.header("Ferry-Error") == "ERR_NO_CHALLENGE", "one answer per challenge")
        }
        let never = await harness.send(.post, "/files/", [Self.tus, ("Upload-Length", "5")])
        let none = await harness.send(.patch, try Self.path(never), [Self.tus, Self.octets, ("Upload-Offset", "0"), ("Ferry-Proof", proof)])
        #expect(none.status == 409 && none.header("Ferry-Error") == "ERR_NO_CHALLENGE")
    }

    @Test func aClientThatAnnouncesNothingIsUnchanged() async throws {
        let harness = TusTableTests.harness()
        _ = await harness.send(.post, "/files/", [Self.tus, Self.octets, ("Upload-Length", "\(Self.file.count)"), ("Repr-Digest", Self.digest)], body: Self.file)
        let plain = await harness.send(.post, "/files/", [Self.tus, ("Upload-Length", "\(Self.file.count)")])
        #expect(plain.status == 201 && plain.header("Ferry-Challenge") == nil)
        let sent = await harness.send(.patch, try Self.path(plain), [Self.tus, Self.octets, ("Upload-Offset", "0")], body: Self.file)
        #expect(sent.status == 204 && sent.header("Upload-Offset") == "\(Self.file.count)")
    }
}
