import Crypto
import FerryCore
import FerryDiskStore
import FerryInstant
import FerrySQLite
import FerryTestSupport
import Foundation
import NIOCore
import Synchronization
import Testing

/// Counts the instant completions the engine reports.
final class InstantCounter: UploadObserver {
    let counts = Mutex((completed: 0, instant: 0, saved: Int64(0)))

    func completed(_ record: UploadRecord, at date: Date) { counts.withLock { $0.completed += 1 } }
    func completedInstantly(_ record: UploadRecord) {
        counts.withLock {
            $0.instant += 1
            $0.saved += record.offset
        }
    }
}

/// An engine over one store and catalog, with scenarios of every instant-upload scope.
struct InstantFixture {
    let store: any ByteStore
    let catalog: any EngineCatalog
    let clock = TestNow()
    let callbacks = FakeCallbacks()
    let counter = InstantCounter()
    let engine: UploadEngine

    static let chat = Scenario(name: "chat", allowsAnonymous: true, preFinish: "http://business.test/finish")
    static let notes = Scenario(name: "notes", allowsAnonymous: true)
    static let diary = Scenario(name: "diary", allowsAnonymous: true, instantUpload: InstantUploadRules(scope: .owner))
    static let publicA = Scenario(name: "public-a", allowsAnonymous: true, instantUpload: InstantUploadRules(scope: .deployment, ranges: 6))
    static let publicB = Scenario(name: "public-b", allowsAnonymous: true, instantUpload: InstantUploadRules(scope: .deployment))
    static let sealed = Scenario(name: "sealed", allowsAnonymous: true, instantUpload: InstantUploadRules(scope: .off))
    static let photos = Scenario(name: "photos", contentTypes: ["image/*"], allowsAnonymous: true)

    static let alice = Principal(subject: "alice")
    static let bob = Principal(subject: "bob")

    enum Backend: String, CaseIterable, CustomStringConvertible {
        case memory, disk
        var description: String { rawValue }
    }

    init(_ backend: Backend = .memory) throws {
        switch backend {
        case .memory:
            store = MemoryByteStore()
            catalog = MemoryCatalog()
        case .disk:
            store = try DiskByteStore(configuration: .init(directory: Scratch.path("instant")), threadPool: Scratch.pool)
            catalog = try SQLiteCatalog(path: Scratch.path("instant") + ".sqlite")
        }
        let clock = self.clock
        engine = UploadEngine(
            store: store, catalog: catalog, locker: LocalUploadLocker(), configuration: EngineConfiguration(lockTimeout: .seconds(5)),
            business: BusinessRules(
                scenarios: ScenarioSet([Self.chat, Self.notes, Self.diary, Self.publicA, Self.publicB, Self.sealed, Self.photos], defaultName: "chat"),
                callbacks: callbacks
            ),
            logger: .test, observers: [counter], now: { clock.now }
        )
    }

    static func digest(_ data: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: data)) }

    /// A complete upload of `data`, sent the ordinary way; announced (its digest with the
    /// creation), as Ferry's clients do, unless `announced` is false.
    func upload(
        _ data: [UInt8], in scenario: String = "chat", as principal: Principal = alice, metadata: String = "", announced: Bool = true
    ) async throws -> UploadRecord {
        let record = try await engine.create(
            .init(
                length: Int64(data.count), metadata: try UploadMetadata(tusHeader: metadata), scenario: scenario, principal: principal,
                announcedSHA256: announced ? Self.digest(data) : nil
            )
        )
        return try await engine.append(record.id, AppendRequest(offset: 0), body: body([data]), transport: FakeTransport(), as: principal)
    }

    /// A creation that announces `data`'s digest and carries no bytes.
    func announce(
        _ data: [UInt8], length: Int? = nil, in scenario: String = "chat", as principal: Principal = bob, metadata: String = ""
    ) async throws -> UploadRecord {
        try await engine.create(
            .init(
                length: Int64(length ?? data.count), metadata: try UploadMetadata(tusHeader: metadata), scenario: scenario, principal: principal,
                announcedSHA256: Self.digest(data), mayChallenge: true
            )
        )
    }

    /// The challenge of `record`, as the client reads it from `Ferry-Challenge`.
    static func challenge(_ record: UploadRecord) throws -> InstantChallenge {
        let text = try #require(record.instantChallenge)
        let field = try #require(text.split(separator: " ", maxSplits: 1).last)
        return try #require(InstantChallenge(fieldValue: String(field)))
    }

    /// The proof a client holding `data` sends for `record`'s challenge.
    static func proof(_ record: UploadRecord, _ data: [UInt8]) throws -> [UInt8] {
        let challenge = try challenge(record)
        #expect(challenge.isValid(forLength: Int64(data.count)))
        var proof = InstantProof(challenge: challenge, length: Int64(data.count))
        for range in challenge.ranges { proof.update(data[Int(range.lowerBound)...Int(range.upperBound)]) }
        return try #require(proof.finalize())
    }

    func prove(_ record: UploadRecord, _ proof: [UInt8], as principal: Principal = bob) async throws -> UploadRecord {
        try await engine.append(record.id, AppendRequest(offset: 0, contentLength: 0, proof: proof), body: body([]), transport: FakeTransport(), as: principal)
    }

    func stored(_ record: UploadRecord) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        try await engine.read(record, range: 0..<record.offset) { bytes += $0.readableBytesView }
        return bytes
    }
}

@Suite("Instant upload in the engine: the index, the challenge, the proof, completion by reference")
struct InstantUploadEngineTests {
    static let file = bytes(200_000, seed: 11)

    @Test(arguments: InstantFixture.Backend.allCases)
    func aCorrectProofCompletesThroughTheNormalCompletion(_ backend: InstantFixture.Backend) async throws {
        let fixture = try InstantFixture(backend)
        let original = try await fixture.upload(Self.file)
        #expect(original.contentScope == "s/chat" && original.sha256 == hex(Self.file), "indexed under its scenario, with its digest")
        let forward = try await fixture.announce(Self.file)
        let challenge = try InstantFixture.challenge(forward)
        #expect(challenge.ranges.count == 4 && challenge.expires == Int64(fixture.clock.now.timeIntervalSince1970) + 120)
        #expect(forward.offset == 0 && !forward.isComplete)

        let done = try await fixture.prove(forward, try InstantFixture.proof(forward, Self.file))
        #expect(done.isComplete && done.offset == Int64(Self.file.count) && done.sha256 == hex(Self.file))
        #expect(done.instantChallenge == nil)
        #expect(done.business?.status == .done && done.business?.json?.contains("b-\(forward.id.rawValue)") == true, "the pre-finish result is on the same answer")
        #expect(try await fixture.stored(done) == Self.file)
        let counts = fixture.counter.counts.withLock { $0 }
        #expect(counts.completed == 2 && counts.instant == 1 && counts.saved == Int64(Self.file.count))

        // Each upload holds its own reference: terminating the original leaves the forward whole.
        try await fixture.engine.terminate(original.id, as: InstantFixture.alice)
        #expect(try await fixture.stored(done) == Self.file)
        // The forward is itself a holder now.
        let third = try await fixture.announce(Self.file, as: InstantFixture.alice)
        let again = try await fixture.prove(third, try InstantFixture.proof(third, Self.file), as: InstantFixture.alice)
        #expect(again.isComplete)
        #expect(try await fixture.stored(again) == Self.file)
    }

    @Test func eachScopeFindsOnlyWhatItMay() async throws {
        let fixture = try InstantFixture()
        _ = try await fixture.upload(Self.file, in: "chat")
        _ = try await fixture.upload(Self.file, in: "diary", as: InstantFixture.alice)
        _ = try await fixture.upload(Self.file, in: "public-a")
        _ = try await fixture.upload(Self.file, in: "sealed")

        // scenario: anyone in the same scenario, nobody in another.
        #expect(try await fixture.announce(Self.file, in: "chat", as: .anonymous).instantChallenge != nil)
        #expect(try await fixture.announce(Self.file, in: "notes").instantChallenge == nil)
        // owner: the same subject only; an anonymous creation never matches.
        #expect(try await fixture.announce(Self.file, in: "diary", as: InstantFixture.alice).instantChallenge != nil)
        #expect(try await fixture.announce(Self.file, in: "diary", as: InstantFixture.bob).instantChallenge == nil)
        #expect(try await fixture.announce(Self.file, in: "diary", as: .anonymous).instantChallenge == nil)
        // deployment: every deployment scenario, with its own number of ranges.
        let other = try await fixture.announce(Self.file, in: "public-b")
        #expect(try InstantFixture.challenge(other).ranges.count == 4)
        #expect(try InstantFixture.challenge(try await fixture.announce(Self.file, in: "public-a")).ranges.count == 6)
        // off: neither indexed nor challenged, but the announcement is still checked.
        let sealed = try await fixture.announce(Self.file, in: "sealed")
        #expect(sealed.instantChallenge == nil && sealed.contentScope == nil && sealed.announcedSHA256 == hex(Self.file))
        // The proof across deployment scenarios works.
        let done = try await fixture.prove(other, try InstantFixture.proof(other, Self.file))
        #expect(done.isComplete)
        #expect(try await fixture.stored(done) == Self.file)
    }

    @Test func onlyHashedUploadsAreIndexed() async throws {
        let fixture = try InstantFixture()
        let quiet = bytes(50_000, seed: 21), hooked = bytes(50_000, seed: 22)
        let plain = try await fixture.upload(quiet, in: "notes", announced: false)
        #expect(plain.sha256 == nil && plain.contentScope == nil, "neither announced nor wanted by a callback: not hashed, not indexed")
        #expect(try await fixture.announce(quiet, in: "notes").instantChallenge == nil, "so not found")
        // A scenario with a pre-finish callback hashes every upload: those are found too.
        _ = try await fixture.upload(hooked, in: "chat", announced: false)
        #expect(try await fixture.announce(hooked, in: "chat").instantChallenge != nil)
    }

    @Test func noMatchForAnotherLengthOtherContentOrAPartial() async throws {
        let fixture = try InstantFixture()
        _ = try await fixture.upload(Self.file)
        #expect(try await fixture.announce(Self.file, length: Self.file.count + 1).instantChallenge == nil, "the index key holds the length")
        #expect(try await fixture.announce(bytes(200_000, seed: 12)).instantChallenge == nil)
        let partial = try await fixture.engine.create(
            .init(length: Int64(Self.file.count), isPartial: true, scenario: "chat", principal: InstantFixture.bob,
                announcedSHA256: InstantFixture.digest(Self.file), mayChallenge: true)
        )
        #expect(partial.instantChallenge == nil && partial.contentScope == nil, "a partial is a piece of a file: never indexed nor challenged")
        let withBody = try await fixture.engine.create(
            .init(length: Int64(Self.file.count), scenario: "chat", principal: InstantFixture.bob, announcedSHA256: InstantFixture.digest(Self.file))
        )
        #expect(withBody.instantChallenge == nil, "a creation that carries bytes is not challenged")
    }

    @Test func aWrongAnswerUsesTheChallengeUpAndLeavesAnOrdinaryUpload() async throws {
        let fixture = try InstantFixture()
        _ = try await fixture.upload(Self.file)
        let forward = try await fixture.announce(Self.file)
        var wrong = try InstantFixture.proof(forward, Self.file)
        wrong[0] ^= 1
        await expectCode(.proofInvalid) { try await fixture.prove(forward, wrong) }
        // Even the right answer now finds no challenge: one answer per challenge.
        await expectCode(.noChallenge) { try await fixture.prove(forward, try InstantFixture.proof(forward, Self.file)) }
        let state = try #require(try await fixture.catalog.get(forward.id))
        #expect(state.offset == 0 && !state.isComplete && state.instantChallenge == nil)
        // The client sends the bytes as usual.
        let done = try await fixture.engine.append(forward.id, AppendRequest(offset: 0), body: body([Self.file]), transport: FakeTransport(), as: InstantFixture.bob)
        #expect(done.isComplete && done.sha256 == hex(Self.file))
        #expect(fixture.counter.counts.withLock { $0.instant } == 0)
    }

    @Test func anAnswerForAnotherUploadOrAReplayIsRefused() async throws {
        let fixture = try InstantFixture()
        _ = try await fixture.upload(Self.file)
        let first = try await fixture.announce(Self.file)
        let second = try await fixture.announce(Self.file)
        let firstProof = try InstantFixture.proof(first, Self.file)
        await expectCode(.proofInvalid) { try await fixture.prove(second, firstProof) }
        _ = try await fixture.prove(first, firstProof)
        // Replayed on the upload it completed: nothing pending any more.
        await expectCode(.noChallenge) { try await fixture.prove(first, firstProof) }
        // A proof computed from the digest alone (no bytes) cannot be right: ranges and nonce are fresh.
        let third = try await fixture.announce(Self.file)
        #expect(try InstantFixture.challenge(third).nonce != (try InstantFixture.challenge(first).nonce))
        await expectCode(.proofInvalid) { try await fixture.prove(third, InstantFixture.digest(Self.file)) }
    }

    @Test func anExpiredChallengeIsRefused() async throws {
        let fixture = try InstantFixture()
        _ = try await fixture.upload(Self.file)
        let forward = try await fixture.announce(Self.file)
        let proof = try InstantFixture.proof(forward, Self.file)
        fixture.clock.advance(121)
        await expectCode(.proofExpired) { try await fixture.prove(forward, proof) }
        await expectCode(.noChallenge) { try await fixture.prove(forward, proof) }
    }

    @Test func bytesSentInsteadOfAProofDiscardTheChallenge() async throws {
        let fixture = try InstantFixture()
        _ = try await fixture.upload(Self.file)
        let forward = try await fixture.announce(Self.file)
        let proof = try InstantFixture.proof(forward, Self.file)
        let part = try await fixture.engine.append(
            forward.id, AppendRequest(offset: 0), body: body([Array(Self.file[0..<1000])]), transport: FakeTransport(), as: InstantFixture.bob
        )
        #expect(part.offset == 1000 && part.instantChallenge == nil)
        await expectCode(.noChallenge) { try await fixture.prove(forward, proof) }
    }

    @Test func bytesThatDifferFromTheAnnouncementAreNeverIndexedAsIt() async throws {
        let fixture = try InstantFixture()
        let other = bytes(200_000, seed: 13)
        let liar = try await fixture.engine.create(
            .init(length: Int64(other.count), scenario: "chat", principal: InstantFixture.alice, announcedSHA256: InstantFixture.digest(Self.file))
        )
        await expectCode(.checksumMismatch) {
            try await fixture.engine.append(liar.id, AppendRequest(offset: 0), body: body([other]), transport: FakeTransport(), as: InstantFixture.alice)
        }
        #expect(try await fixture.catalog.holders(scope: "s/chat", sha256: hex(Self.file), length: Int64(Self.file.count), limit: 4).isEmpty)
        #expect(try await fixture.announce(Self.file).instantChallenge == nil, "nothing holds the announced content")
    }

    @Test func aHolderDeletedBeforeTheAnswerIsReplacedByAnotherOrTheContentIsGone() async throws {
        let fixture = try InstantFixture()
        let first = try await fixture.upload(Self.file)
        fixture.clock.advance(1)
        let second = try await fixture.upload(Self.file, as: InstantFixture.bob)
        let forward = try await fixture.announce(Self.file)
        #expect(forward.instantChallenge?.hasPrefix(first.id.rawValue) == true, "the oldest holder is challenged")
        try await fixture.engine.terminate(first.id, as: InstantFixture.alice)
        let done = try await fixture.prove(forward, try InstantFixture.proof(forward, Self.file))
        #expect(done.isComplete, "the same content, from the other holder")
        #expect(try await fixture.stored(done) == Self.file)

        let late = try await fixture.announce(Self.file, as: InstantFixture.alice)
        try await fixture.engine.terminate(second.id, as: InstantFixture.bob)
        try await fixture.engine.terminate(done.id, as: InstantFixture.bob)
        await expectCode(.contentGone) { try await fixture.prove(late, try InstantFixture.proof(late, Self.file), as: InstantFixture.alice) }
        let ordinary = try await fixture.engine.append(late.id, AppendRequest(offset: 0), body: body([Self.file]), transport: FakeTransport(), as: InstantFixture.alice)
        #expect(ordinary.isComplete, "the upload is an ordinary one after the refusal")
    }

    @Test(arguments: InstantFixture.Backend.allCases)
    func concurrentForwardsAndADeletionRaceKeepEveryCompletedCopyWhole(_ backend: InstantFixture.Backend) async throws {
        let fixture = try InstantFixture(backend)
        let original = try await fixture.upload(Self.file)
        var forwards: [UploadRecord] = []
        for _ in 0..<8 { forwards.append(try await fixture.announce(Self.file)) }
        let proofs = try forwards.map { try InstantFixture.proof($0, Self.file) }
        // The forwards answer at once while the original is deleted.
        let results = await withTaskGroup(of: Result<UploadRecord, FerryError>?.self) { group in
            for (forward, proof) in zip(forwards, proofs) {
                group.addTask {
                    do { return .success(try await fixture.prove(forward, proof)) } catch let error as FerryError { return .failure(error) } catch { return nil }
                }
            }
            group.addTask {
                try? await fixture.engine.terminate(original.id, as: InstantFixture.alice)
                return nil
            }
            var results: [Result<UploadRecord, FerryError>] = []
            for await result in group { if let result { results.append(result) } }
            return results
        }
        #expect(results.count == 8)
        var completed = 0
        for result in results {
            switch result {
            case .success(let record):
                completed += 1
                #expect(try await fixture.stored(record) == Self.file, "a completed forward holds the whole file")
            case .failure(let error):
                #expect(error.code == .contentGone, "\(error)")
            }
        }
        #expect(completed >= 1 || results.allSatisfy { (try? $0.get()) == nil })
        #expect(fixture.counter.counts.withLock { $0.instant } == completed)
    }

    @Test func theScenariosContentRulesApplyToTheHeldBytes() async throws {
        let fixture = try InstantFixture()
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + bytes(20_000, seed: 5)
        _ = try await fixture.upload(png, in: "photos", metadata: "filetype aW1hZ2UvcG5n")
        let asJPEG = try await fixture.announce(png, in: "photos", metadata: "filetype aW1hZ2UvanBlZw==")
        await expectCode(.contentMismatch) { try await fixture.prove(asJPEG, try InstantFixture.proof(asJPEG, png)) }
        let asPNG = try await fixture.announce(png, in: "photos", metadata: "filetype aW1hZ2UvcG5n")
        #expect(try await fixture.prove(asPNG, try InstantFixture.proof(asPNG, png)).isComplete)
    }

    @Test func aSmallFileIsChallengedWhole() async throws {
        let fixture = try InstantFixture()
        let small = Array("a voice message".utf8)
        _ = try await fixture.upload(small)
        let forward = try await fixture.announce(small)
        #expect(try InstantFixture.challenge(forward).ranges == [0...Int64(small.count - 1)])
        #expect(try await fixture.prove(forward, try InstantFixture.proof(forward, small)).isComplete)
    }
}
