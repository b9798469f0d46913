import FerryCore
import FerryProtocol
import FerryTestSupport
import FerryTus
import HTTPTypes
import Testing

/// A tus creation may announce the whole file's SHA-256 (`Repr-Digest`, docs/instant-upload.md):
/// it is kept with the upload and the request that completes it is refused (460) unless the
/// stored bytes have it.
@Suite("tus: a digest announced at creation")
struct TusAnnouncedDigestTests {
    static let tus = ("Tus-Resumable", "1.0.0")
    static let octets = ("Content-Type", "application/offset+octet-stream")
    static let hello = Array("hello".utf8)
    static let helloDigest = "sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:"
    static let hellohelloDigest = "sha-256=:CoYFD7N6Te82iF2pVX9bIqnhkXZ6gOekokFUEKRGK2g=:"

    func create(_ harness: DialectHarness, length: Int, digest: String) async throws -> String {
        let created = await harness.send(.post, "/files/", [Self.tus, ("Upload-Length", "\(length)"), ("Repr-Digest", digest)])
        #expect(created.status == 201, "\(created.text)")
        let location = try #require(created.header("Location"))
        return "/files/" + (location.split(separator: "/").last.map(String.init) ?? "")
    }

    func offset(_ harness: DialectHarness, _ path: String) async -> String? {
        await harness.send(.head, path, [Self.tus]).header("Upload-Offset")
    }

    @Test func theRightBytesCompleteOverSeveralRequests() async throws {
        let harness = TusTableTests.harness()
        let path = try await create(harness, length: 10, digest: Self.hellohelloDigest)
        let first = await harness.send(.patch, path, [Self.tus, Self.octets, ("Upload-Offset", "0")], body: Self.hello)
        #expect(first.status == 204 && first.header("Upload-Offset") == "5", "a request that does not complete is not checked")
        let last = await harness.send(.patch, path, [Self.tus, Self.octets, ("Upload-Offset", "5")], body: Self.hello)
        #expect(last.status == 204 && last.header("Upload-Offset") == "10")
        let id = try #require(UploadID(String(path.split(separator: "/").last ?? "")))
        let record = try #require(await (try? harness.engine.catalog.get(id)) ?? nil)
        #expect(record.isComplete && record.sha256 == "0a86050fb37a4def36885da9557f5b22a9e191767a80e7a4a2415410a4462b68")
        #expect(record.announcedSHA256 == record.sha256, "kept as announced")
    }

    @Test func otherBytesAreRefusedAtCompletionAndNotKept() async throws {
        let harness = TusTableTests.harness()
        let path = try await create(harness, length: 10, digest: Self.hellohelloDigest)
        _ = await harness.send(.patch, path, [Self.tus, Self.octets, ("Upload-Offset", "0")], body: Self.hello)
        let wrong = await harness.send(.patch, path, [Self.tus, Self.octets, ("Upload-Offset", "5")], body: Array("HELLO".utf8))
        #expect(wrong.status == 460 && wrong.header("Ferry-Error") == "ERR_CHECKSUM_MISMATCH", "\(wrong.status) \(wrong.text)")
        #expect(await offset(harness, path) == "5", "the completing request's bytes are not kept")
        let right = await harness.send(.patch, path, [Self.tus, Self.octets, ("Upload-Offset", "5")], body: Self.hello)
        #expect(right.status == 204 && right.header("Upload-Offset") == "10", "the right bytes still complete it")
    }

    @Test func aCreationWithItsWholeBodyIsCheckedToo() async throws {
        let harness = TusTableTests.harness()
        let right = await harness.send(.post, "/files/", [Self.tus, Self.octets, ("Upload-Length", "5"), ("Repr-Digest", Self.helloDigest)], body: Self.hello)
        #expect(right.status == 201 && right.header("Upload-Offset") == "5", "\(right.status) \(right.text)")
        let wrong = await harness.send(.post, "/files/", [Self.tus, Self.octets, ("Upload-Length", "5"), ("Repr-Digest", Self.hellohelloDigest)], body: Self.hello)
        #expect(wrong.status == 460 && wrong.header("Ferry-Error") == "ERR_CHECKSUM_MISMATCH", "\(wrong.status) \(wrong.text)")
        let empty = await harness.send(.post, "/files/", [Self.tus, ("Upload-Length", "0"), ("Repr-Digest", Self.helloDigest)])
        #expect(empty.status == 460, "an empty upload completes at once, so its announcement is checked at once")
        let emptyRight = await harness.send(.post, "/files/", [Self.tus, ("Upload-Length", "0"), ("Repr-Digest", "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:")])
        #expect(emptyRight.status == 201)
    }

    @Test(arguments: [
        ("sha-256=abc", 400, "ERR_INVALID_CHECKSUM"),
        ("sha-256=:AAAA:", 400, "ERR_INVALID_CHECKSUM"),
        ("sha-512=:\(String(repeating: "A", count: 88)):", 201, nil),
    ])
    func malformedOrOtherAnnouncements(_ field: String, _ status: Int, _ code: String?) async throws {
        let harness = TusTableTests.harness()
        let answer = await harness.send(.post, "/files/", [Self.tus, ("Upload-Length", "5"), ("Repr-Digest", field)])
        #expect(answer.status == status && answer.header("Ferry-Error") == code, "\(answer.status) \(answer.text)")
    }
}
