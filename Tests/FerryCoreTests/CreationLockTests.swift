import FerryCore
import FerryTestSupport
import Foundation
import NIOCore
import Testing

/// A creation-with-upload runs under the lock its creation took (`create(_:holding:)` then
/// `append(into:)`): the record is not read back and the upload is not locked again, yet the
/// newest request still wins and nothing the request received is lost.
@Suite struct CreationLockTests {
    static func outcome(_ body: () async throws(FerryError) -> UploadRecord) async -> Result<UploadRecord, FerryError> {
        do throws(FerryError) {
            return .success(try await body())
        } catch {
            return .failure(error)
        }
    }

    @Test func aCreationWithUploadCompletesUnderItsOwnLock() async throws {
        let fixture = EngineFixture()
        let engine = fixture.engine
        let payload = bytes(100, seed: 4)
        let record = try await engine.create(.init(length: 100)) { new in
            await Self.outcome { () async throws(FerryError) -> UploadRecord in
                try await engine.append(into: new, AppendRequest(offset: 0, contentLength: 100), body: body([payload]), transport: FakeTransport())
            }
        }.get()
        #expect(record.isComplete && record.offset == 100)
        #expect(fixture.store.bytes(record.id) == payload)
        #expect(try await fixture.catalog.get(record.id)?.isComplete == true)
        // The lock was released: the next request on the upload is not kept waiting.
        #expect(try await engine.status(record.id).offset == 100)
    }

    @Test func aNewerRequestStopsTheCreatingRequestWhichSavesWhatArrived() async throws {
        let fixture = EngineFixture()
        let engine = fixture.engine
        let store = fixture.store
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let (created, status) = try await engine.create(.init(length: 1000)) { new -> (Result<UploadRecord, FerryError>, Task<UploadRecord, any Error>) in
            let id = new.record.id
            async let appended = Self.outcome { () async throws(FerryError) -> UploadRecord in
                try await engine.append(into: new, AppendRequest(offset: 0), body: stream, transport: FakeTransport())
            }
            continuation.yield(ByteBuffer(bytes: bytes(123)))
            await store.waitForBytes(id, 123)
            // A HEAD from a client that learnt the URL (RUFH's 104): it asks the holder to stop.
            let status = Task { try await engine.status(id) }
            return (await appended, status)
        }
        continuation.finish()
        guard case .failure(let error) = created else {
            Issue.record("the creating request should have been stopped")
            return
        }
        #expect(error.code == .requestSuperseded)
        let seen = try await status.value
        #expect(seen.offset == 123, "the stopped creation committed what it received before answering")
        #expect(try await fixture.append(seen.id, at: 123, [bytes(877)]).isComplete)
    }

    @Test func aCreationTheQuotaRefusesIsRefusedByTheInsertWithoutAPreCreateCall() async throws {
        let store = MemoryByteStore()
        let catalog = MemoryCatalog()
        let engine = UploadEngine(
            store: store, catalog: catalog, locker: LocalUploadLocker(),
            business: BusinessRules(anonymousQuotas: Quotas(openUploads: 1)), logger: .test
        )
        _ = try await engine.create(.init(length: 10, address: "192.0.2.1"))
        // No pre-create call, so no early count: the insert's own (atomic) check refuses it.
        let refused = await code { _ = try await engine.create(.init(length: 10, address: "192.0.2.1")) { new in new.record } }
        #expect(refused == .quotaExceeded)
        #expect(await code { _ = try await engine.create(.init(length: 10, address: "192.0.2.1")) } == .quotaExceeded)
    }
}
