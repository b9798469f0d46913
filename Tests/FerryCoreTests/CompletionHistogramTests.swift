import CoreMetrics
import FerryCore
import FerryTestSupport
import Foundation
import Synchronization
import Testing

/// The completion histograms read what they need from the record, not from what the node that
/// completes an upload happened to see of its creation (issue 17).
@Suite("Completion histograms: labelled and measured from the record")
struct CompletionHistogramTests {
    /// A recorder that never saw the creation (another node created the upload, or this one
    /// restarted) labels the completion with the network the record carries and measures the
    /// goodput from the record's first byte.
    @Test func aRecordCreatedElsewhereIsLabelledByItsNetwork() async throws {
        let metrics = RecordingHistograms()
        let recorder = StatsRecorder(store: MemoryStatsStore(), logger: .test, metricsFactory: metrics)
        let created = Date(timeIntervalSince1970: 1_800_000_000)
        var record = UploadRecord(
            id: .random(), length: 100, offset: 100, state: .complete, createdAt: created, scenario: "voice", network: "4g",
            firstByteAt: created.addingTimeInterval(10)
        )
        recorder.completed(record, at: created.addingTimeInterval(30))
        #expect(metrics.values(StatsRecorder.durationMetric, scenario: "voice", network: "4g") == [30e9])
        #expect(metrics.values(StatsRecorder.goodputMetric, scenario: "voice", network: "4g") == [5], "100 bytes in the 20 s after the first byte")

        // Without a first byte (a concatenation final), the goodput is measured from the creation.
        record.id = .random()
        record.firstByteAt = nil
        record.network = "wifi"
        recorder.completed(record, at: created.addingTimeInterval(50))
        #expect(metrics.values(StatsRecorder.goodputMetric, scenario: "voice", network: "wifi") == [2])
        #expect(metrics.values(StatsRecorder.durationMetric, scenario: "voice", network: "unknown").isEmpty)
    }

    /// Two engines on one catalog, as two nodes: the first creates the upload (declaring 4g) and
    /// stores its first bytes, the second completes it; the second's histograms say 4g, and its
    /// goodput runs from the first node's first byte.
    @Test func aCompletionOnAnotherNodeKeepsTheCreatorsNetwork() async throws {
        let catalog = MemoryCatalog()
        let store = MemoryByteStore()
        let clock = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        let now: @Sendable () -> Date = { clock.withLock { $0 } }
        func node(_ metrics: RecordingHistograms) -> UploadEngine {
            let recorder = StatsRecorder(store: MemoryStatsStore(), logger: .test, metricsFactory: metrics, now: now)
            return UploadEngine(
                store: store, catalog: catalog, locker: LocalUploadLocker(), configuration: EngineConfiguration(lockTimeout: .seconds(2)),
                logger: .test, observers: [recorder], now: now
            )
        }
        let (firstMetrics, secondMetrics) = (RecordingHistograms(), RecordingHistograms())
        let (first, second) = (node(firstMetrics), node(secondMetrics))

        let record = try await first.create(.init(length: 10, info: RequestInfo(dialect: "tus", client: "ferry", network: "4g")))
        #expect(record.network == "4g" && record.firstByteAt == nil)
        clock.withLock { $0 = $0.addingTimeInterval(10) }
        let began = now()
        _ = try await first.append(record.id, AppendRequest(offset: 0), body: body([bytes(4)]), transport: FakeTransport())
        #expect(try await catalog.get(record.id)?.firstByteAt == began, "the first stored bytes set it, in the same write")
        clock.withLock { $0 = $0.addingTimeInterval(10) }
        let done = try await second.append(record.id, AppendRequest(offset: 4), body: body([bytes(6)]), transport: FakeTransport())
        #expect(done.isComplete && done.firstByteAt == began, "a later append keeps the first byte's time")

        #expect(secondMetrics.values(StatsRecorder.durationMetric, scenario: "default", network: "4g") == [20e9])
        #expect(secondMetrics.values(StatsRecorder.goodputMetric, scenario: "default", network: "4g") == [1], "10 bytes in the 10 s after the first byte")
        #expect(secondMetrics.labels().allSatisfy { !$0.contains("unknown") }, "\(secondMetrics.labels())")
        #expect(firstMetrics.labels().isEmpty, "the creating node saw no completion")
    }

    /// An append that stores nothing leaves `firstByteAt` unset.
    @Test func anEmptyAppendSetsNoFirstByte() async throws {
        let engine = UploadEngine(store: MemoryByteStore(), catalog: MemoryCatalog(), locker: LocalUploadLocker(), logger: .test)
        let record = try await engine.create(.init(length: 10))
        let after = try await engine.append(record.id, AppendRequest(offset: 0, contentLength: 0), body: body([]), transport: FakeTransport())
        #expect(after.offset == 0 && after.firstByteAt == nil)
    }
}

/// Records every value the timers and recorders receive, by label and dimensions.
final class RecordingHistograms: MetricsFactory {
    let recorded = Mutex<[String: [Double]]>([:])

    static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        label + "{" + dimensions.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }

    func values(_ label: String, scenario: String, network: String) -> [Double] {
        recorded.withLock { $0[Self.key(label, [("scenario", scenario), ("network", network)])] ?? [] }
    }

    /// Every label with dimensions that received a value.
    func labels() -> [String] { recorded.withLock { $0.filter { !$0.value.isEmpty }.keys.sorted() } }

    final class Box: RecorderHandler, TimerHandler, CounterHandler {
        let key: String
        let owner: RecordingHistograms
        init(_ key: String, _ owner: RecordingHistograms) { (self.key, self.owner) = (key, owner) }
        func record(_ value: Int64) { record(Double(value)) }
        func record(_ value: Double) { owner.recorded.withLock { $0[key, default: []].append(value) } }
        func recordNanoseconds(_ duration: Int64) { record(Double(duration)) }
        func increment(by amount: Int64) {}
        func reset() {}
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler { Box(Self.key(label, dimensions), self) }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler { Box(Self.key(label, dimensions), self) }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { Box(Self.key(label, dimensions), self) }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}
