import FerryCore
import FerrySQLite
import FerryTestSupport
import Foundation
import Testing

@Suite("Upload statistics: stores, recorder, and what the engine records")
struct StatisticsTests {
    @Test func clientsAndNetworksAreNormalised() {
        #expect(RequestInfo.client(userAgent: "ferry/1.0 (Linux)") == "ferry")
        #expect(RequestInfo.client(userAgent: "MyApp/3 CFNetwork/1485 Darwin/23.1.0") == "urlsession")
        #expect(RequestInfo.client(userAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/120") == "browser")
        #expect(RequestInfo.client(userAgent: "tus-js-client/4.1") == "tus-js")
        #expect(RequestInfo.client(userAgent: "python-requests/2.31") == "python")
        #expect(RequestInfo.client(userAgent: nil) == "other" && RequestInfo.client(userAgent: "wget") == "other")
        #expect(RequestInfo.network("LTE") == "4g" && RequestInfo.network("WiFi") == "wifi" && RequestInfo.network("5G") == "5g")
        #expect(RequestInfo.network("satellite") == "unknown" && RequestInfo.network(nil) == "unknown")
    }

    /// Create, an interrupted append, a HEAD, the resuming append: one record with 3 requests,
    /// 1 interruption, 1 resumption, and the completion.
    @Test func theEngineRecordsAnUploadsLife() async throws {
        let stats = MemoryStatsStore()
        let recorder = StatsRecorder(store: stats, logger: .test)
        let engine = UploadEngine(
            store: MemoryByteStore(), catalog: MemoryCatalog(), locker: LocalUploadLocker(),
            configuration: EngineConfiguration(lockTimeout: .seconds(2)), logger: .test, observers: [recorder]
        )
        let info = RequestInfo(dialect: "rufh", client: "urlsession", network: "4g")
        let record = try await engine.create(.init(length: 10, info: info))
        await #expect(throws: FerryError.self) {
            _ = try await engine.append(record.id, AppendRequest(offset: 0), body: body([bytes(4)]), transport: FakeTransport(end: BodyEnd(complete: false)))
        }
        _ = try await engine.status(record.id)
        _ = try await engine.append(record.id, AppendRequest(offset: 4), body: body([bytes(6)]), transport: FakeTransport())
        await #expect(throws: FerryError.self) {
            _ = try await engine.append(record.id, AppendRequest(offset: 3), body: body([bytes(1)]), transport: FakeTransport())
        }
        await recorder.flush()
        let recorded = try #require(try await stats.stats(of: record.id))
        #expect(recorded.info == info && recorded.state == .complete && recorded.length == 10 && recorded.bytes == 10)
        #expect(recorded.requests == 4 && recorded.interrupted == 1 && recorded.resumptions == 1, "\(recorded)")
        let timeline = try await stats.requests(of: record.id, limit: 10)
        #expect(timeline.map(\.method) == ["PATCH", "HEAD", "PATCH", "PATCH"])
        #expect(timeline.map(\.outcome) == ["interrupted", "ok", "ok", "ERR_OFFSET_MISMATCH"], "\(timeline.map(\.outcome))")

        let other = try await engine.create(.init(length: 5))
        try await engine.terminate(other.id)
        await recorder.flush()
        #expect(try await stats.stats(of: other.id)?.state == .terminated)
    }

    @Test func aFullBufferDropsTheOldestEventsNotTheUploads() async throws {
        let stats = MemoryStatsStore()
        let recorder = StatsRecorder(store: stats, configuration: .init(batchSize: 10_000, capacity: 100), logger: .test)
        for _ in 0..<250 {
            recorder.created(UploadRecord(id: .random(), length: 1, createdAt: Date(), scenario: "s", owner: nil), info: RequestInfo())
        }
        let written = await recorder.flush()
        #expect(written <= 100 && written > 0, "bounded: \(written)")
    }
}
