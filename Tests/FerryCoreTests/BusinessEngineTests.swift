import Crypto
import FerryCore
import FerryTestSupport
import Foundation
import NIOCore
import Synchronization
import Testing

/// Callbacks that answer what a test sets, and count calls.
final class FakeCallbacks: BusinessCallbacks {
    let state = Mutex<(decision: PreCreateDecision, fail: Bool, calls: [UploadRecord])>((.accept(metadata: [:]), false, []))

    func preCreate(_ request: PreCreateRequest, url: String, timeout: Duration) async throws(FerryError) -> PreCreateDecision {
        state.withLock { $0.decision }
    }

    func preFinish(_ upload: UploadRecord, location: String, url: String, timeout: Duration) async throws(FerryError) -> String {
        let fail = state.withLock { state in
            state.calls.append(upload)
            return state.fail
        }
        if fail { throw FerryError(.callbackFailed, "the business system is down") }
        return #"{"businessId":"b-\#(upload.id.rawValue)","sha256":"\#(upload.sha256 ?? "")"}"#
    }
}

struct BusinessFixture {
    let store = MemoryByteStore()
    let catalog = MemoryCatalog()
    let clock = TestNow()
    let callbacks = FakeCallbacks()
    let engine: UploadEngine

    static let voice = Scenario(
        name: "voice",
        maxSize: 1000,
        contentTypes: ["audio/mpeg", "audio/mp4"],
        requiredMetadata: ["filename"],
        preFinish: "http://business.test/finish",
        webhooks: [Webhook(url: "http://hooks.test/events", secret: "0123456789abcdef")],
        progressInterval: .seconds(5)
    )
    static let images = Scenario(name: "images", contentTypes: ["image/*"], checksumRequired: true, allowsAnonymous: true)

    static let alice = Principal(subject: "alice", scenarios: ["voice", "images"])

    init(quotas: Quotas = Quotas(), store: MemoryByteStore? = nil, catalog: MemoryCatalog? = nil) {
        let clock = self.clock
        let store = store ?? self.store
        let catalog = catalog ?? self.catalog
        engine = UploadEngine(
            store: store,
            catalog: catalog,
            locker: LocalUploadLocker(),
            configuration: EngineConfiguration(lockTimeout: .seconds(2)),
            business: BusinessRules(
                scenarios: ScenarioSet([Self.voice, Self.images], defaultName: "images"),
                quotas: quotas,
                callbacks: callbacks,
                retryBase: .seconds(1)
            ),
            logger: .test,
            now: { clock.now }
        )
    }

    func create(_ length: Int64?, as principal: Principal = alice, scenario: String? = "voice", metadata: String = "filename YS5tcDM=,filetype YXVkaW8vbXBlZw==") async throws -> UploadRecord {
        try await engine.create(.init(length: length, metadata: try UploadMetadata(tusHeader: metadata), scenario: scenario, principal: principal))
    }

    func append(_ id: UploadID, at offset: Int64, _ data: [UInt8], as principal: Principal = alice, checksum: ChecksumExpectation? = nil) async throws -> UploadRecord {
        try await engine.append(id, AppendRequest(offset: offset, checksum: checksum), body: body([data]), transport: FakeTransport(), as: principal)
    }
}

/// An MP3 (ID3 header) followed by `count - 3` pseudo-random bytes.
func mp3(_ count: Int) -> [UInt8] { Array("ID3".utf8) + bytes(count - 3, seed: 3) }

func hex(_ data: [UInt8]) -> String { SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() }

@discardableResult
func expectCode<T>(_ code: FerryError.Code, _ body: () async throws -> T, sourceLocation: SourceLocation = #_sourceLocation) async -> FerryError? {
    do {
        _ = try await body()
        Issue.record("expected \(code.rawValue), got success", sourceLocation: sourceLocation)
    } catch let error as FerryError {
        #expect(error.code == code, sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected \(code.rawValue), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

@Suite("Business rules in the engine: scenarios, owners, quotas, digests, callbacks, events")
struct BusinessEngineTests {
    @Test func scenarioRulesApplyAtCreation() async throws {
        let fixture = BusinessFixture()
        await expectCode(.scenarioNotFound) { try await fixture.create(10, scenario: "videos") }
        await expectCode(.maxSizeExceeded) { try await fixture.create(1001) }
        await expectCode(.metadataRequired) { try await fixture.create(10, metadata: "filetype YXVkaW8vbXBlZw==") }
        await expectCode(.contentTypeNotAllowed) { try await fixture.create(10, metadata: "filename YQ==,filetype aW1hZ2UvcG5n") }
        let record = try await fixture.create(10)
        #expect(record.scenario == "voice" && record.owner == "alice")
        // By metadata, then the default scenario.
        let byMetadata = try await fixture.create(10, scenario: nil, metadata: "scenario dm9pY2U=,filename YQ==")
        #expect(byMetadata.scenario == "voice")
        let byDefault = try await fixture.create(10, as: .anonymous, scenario: nil, metadata: "")
        #expect(byDefault.scenario == "images" && byDefault.owner == nil)
    }

    @Test func everyOperationIsAuthorizedAgainstTheOwner() async throws {
        let fixture = BusinessFixture()
        let record = try await fixture.create(100)
        let bob = Principal(subject: "bob", scenarios: ["voice"])
        let aliceWithoutVoice = Principal(subject: "alice", scenarios: ["images"])
        await expectCode(.unauthorized) { try await fixture.create(10, as: .anonymous) }
        await expectCode(.forbidden) { try await fixture.create(10, as: aliceWithoutVoice) }
        for principal in [bob, Principal.anonymous, aliceWithoutVoice] {
            let expected: FerryError.Code = principal == bob ? .uploadNotFound : principal.isAnonymous ? .unauthorized : .forbidden
            await expectCode(expected) { try await fixture.engine.status(record.id, as: principal) }
            await expectCode(expected) { try await fixture.append(record.id, at: 0, mp3(10), as: principal) }
            await expectCode(expected) { try await fixture.engine.terminate(record.id, as: principal) }
            await expectCode(expected) { try await fixture.engine.completedUpload(record.id, as: principal) }
        }
        // Untouched, and still the owner's.
        #expect(try await fixture.engine.status(record.id, as: BusinessFixture.alice).offset == 0)
        #expect(try await fixture.append(record.id, at: 0, mp3(40)).offset == 40)
    }

    @Test func quotasRefuseWith429() async throws {
        let fixture = BusinessFixture(quotas: Quotas(openUploads: 2, openBytes: 250, creationsPerMinute: 3))
        _ = try await fixture.create(100)
        _ = try await fixture.create(100)
        let open = await expectCode(.quotaExceeded) { try await fixture.create(10) }
        #expect(open?.retryAfter != nil)
        let limited = Principal(subject: "carol", scenarios: nil, limits: Quotas(maxSize: 50))
        await expectCode(.maxSizeExceeded) { try await fixture.create(60, as: limited) }
        let bytes = Principal(subject: "dave", scenarios: nil)
        _ = try await fixture.create(200, as: bytes)
        await expectCode(.quotaExceeded) { try await fixture.create(100, as: bytes) }
        // Anonymous uploads have no owner to count.
        for _ in 0..<4 { _ = try await fixture.create(10, as: .anonymous, scenario: "images", metadata: "") }
    }

    /// Without a `pre-create` callback the catalog's insert is the only quota check (no
    /// separate read of the owner's usage): a refused creation leaves nothing stored.
    @Test func aCreationRefusedByTheInsertLeavesNothingStored() async throws {
        let fixture = BusinessFixture(quotas: Quotas(openUploads: 1))
        let kept = try await fixture.create(100)
        await expectCode(.quotaExceeded) { try await fixture.create(100) }
        let stored = try await fixture.store.storedUploads().map(\.id)
        #expect(stored == [kept.id])
        #expect(try await fixture.catalog.usage(of: try #require(kept.quotaKey), since: nil).openUploads == 1)
    }

    @Test func theFirstBytesMustMatchTheDeclaredType() async throws {
        let fixture = BusinessFixture()
        let fake = try await fixture.create(100)
        await expectCode(.contentMismatch) { try await fixture.append(fake.id, at: 0, [0x89] + Array("PNG".utf8) + bytes(96)) }
        #expect(try await fixture.engine.status(fake.id, as: BusinessFixture.alice).offset == 0)
        #expect(fixture.store.bytes(fake.id)?.isEmpty ?? true)
        // Too few bytes to decide, in an upload that is longer: nothing is stored.
        await expectCode(.contentMismatch) { try await fixture.append(fake.id, at: 0, Array("ID3".utf8)) }
        #expect(try await fixture.append(fake.id, at: 0, mp3(100)).offset == 100)
        // A JPEG without a declared type passes an image scenario; a PDF does not.
        let image = try await fixture.create(20, as: .anonymous, scenario: "images", metadata: "")
        let checksum = { (data: [UInt8]) in ChecksumExpectation(algorithm: .sha256, digest: Array(SHA256.hash(data: data))) }
        let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + bytes(16)
        #expect(try await fixture.append(image.id, at: 0, jpeg, as: .anonymous, checksum: checksum(jpeg)).isComplete)
        let pdf = try await fixture.create(20, as: .anonymous, scenario: "images", metadata: "")
        let pdfBytes = Array("%PDF-1.7".utf8) + bytes(12)
        await expectCode(.contentMismatch) { try await fixture.append(pdf.id, at: 0, pdfBytes, as: .anonymous, checksum: checksum(pdfBytes)) }
        // The images scenario requires a checksum on every PATCH.
        await expectCode(.checksumRequired) { try await fixture.append(pdf.id, at: 0, jpeg, as: .anonymous) }
    }

    @Test func theDigestCoversTheWholeFileAcrossRequestsAndRestarts() async throws {
        let data = mp3(900)
        let fixture = BusinessFixture()
        let record = try await fixture.create(900)
        _ = try await fixture.append(record.id, at: 0, Array(data[0..<300]))
        _ = try await fixture.append(record.id, at: 300, Array(data[300..<600]))
        // A "restarted" engine on the same store and catalog has lost the running digest: it
        // reads the file back at completion.
        let restarted = BusinessFixture(store: fixture.store, catalog: fixture.catalog)
        let done = try await restarted.append(record.id, at: 600, Array(data[600...]))
        #expect(done.sha256 == hex(data))
        let straight = try await fixture.create(900)
        _ = try await fixture.append(straight.id, at: 0, Array(data[0..<450]))
        #expect(try await fixture.append(straight.id, at: 450, Array(data[450...])).sha256 == hex(data))
    }

    @Test func preFinishResultIsReturnedStoredAndRetried() async throws {
        let fixture = BusinessFixture()
        let data = mp3(50)
        let record = try await fixture.create(50)
        let done = try await fixture.append(record.id, at: 0, data)
        #expect(done.business?.status == .done)
        #expect(done.business?.json == #"{"businessId":"b-\#(record.id.rawValue)","sha256":"\#(hex(data))"}"#)
        #expect(try await fixture.engine.status(record.id, as: BusinessFixture.alice).business == done.business)

        fixture.callbacks.state.withLock { $0.fail = true }
        let second = try await fixture.create(50)
        let pending = try await fixture.append(second.id, at: 0, data)
        #expect(pending.isComplete && pending.business?.status == .pending && pending.business?.attempts == 1)
        #expect(await fixture.engine.retryPendingBusiness() == 0, "not due before its backoff")
        fixture.clock.advance(2)
        #expect(await fixture.engine.retryPendingBusiness() == 1)
        #expect(try await fixture.engine.status(second.id, as: BusinessFixture.alice).business?.attempts == 2)
        fixture.callbacks.state.withLock { $0.fail = false }
        fixture.clock.advance(10)
        #expect(await fixture.engine.retryPendingBusiness() == 1)
        let settled = try await fixture.engine.status(second.id, as: BusinessFixture.alice)
        #expect(settled.business?.status == .done && settled.business?.attempts == 3)
    }

    @Test func preCreateCanRejectOrAddMetadata() async throws {
        let fixture = BusinessFixture()
        let scenario = Scenario(name: "gated", preCreate: "http://business.test/create")
        let engine = UploadEngine(
            store: fixture.store,
            catalog: fixture.catalog,
            locker: LocalUploadLocker(),
            business: BusinessRules(scenarios: ScenarioSet([scenario], defaultName: nil), callbacks: fixture.callbacks),
            logger: .test
        )
        let spec = UploadEngine.CreateSpec(length: 5, scenario: "gated", principal: Principal(subject: "alice"))
        fixture.callbacks.state.withLock { $0.decision = .reject(status: 451, message: "not here") }
        let error = await expectCode(.rejected) { try await engine.create(spec) }
        #expect(error?.status == 451 && error?.message == "not here")
        fixture.callbacks.state.withLock { $0.decision = .accept(metadata: ["tenant": "t1"]) }
        #expect(try await engine.create(spec).metadata.string("tenant") == "t1")
    }

    @Test func eventsAreWrittenWithTheirChangeInSequence() async throws {
        let fixture = BusinessFixture()
        let record = try await fixture.create(300)
        _ = try await fixture.append(record.id, at: 0, Array(mp3(300)[0..<100]))
        fixture.clock.advance(1)
        _ = try await fixture.append(record.id, at: 100, Array(mp3(300)[100..<200]))  // within the progress interval: no event
        fixture.clock.advance(6)
        _ = try await fixture.append(record.id, at: 200, Array(mp3(300)[200...]))  // completes: no progress, a completion
        let events = try await fixture.catalog.deliveries(of: record.id).map(\.event)
        #expect(events.map(\.type) == [.created, .progress, .completed])
        #expect(events.map(\.sequence) == [1, 2, 3])
        #expect(events.map(\.id) == (1...3).map { "\(record.id.rawValue)-\($0)" })
        let payload = try #require(events.last.map { Data($0.payload.utf8) })
        let json = try #require(try JSONSerialization.jsonObject(with: payload) as? [String: Any])
        let upload = try #require(json["upload"] as? [String: Any])
        #expect(json["type"] as? String == "upload.completed" && json["sequence"] as? Int == 3)
        #expect(upload["sha256"] as? String == hex(mp3(300)) && upload["owner"] as? String == "alice")

        let other = try await fixture.create(10)
        try await fixture.engine.terminate(other.id, as: BusinessFixture.alice)
        #expect(try await fixture.catalog.deliveries(of: other.id).map(\.event.type) == [.created, .terminated])
    }
}
