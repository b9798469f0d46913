import CoreMetrics
import FerryCore
import FerryHTTP
import FerryProtocol
import FerryTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization

/// Ferry's router over an engine on in-memory seams, answering through HummingbirdTesting's
/// router transport: no sockets, no channel handlers.
struct RouterHarness: Sendable {
    let catalog = MemoryCatalog()
    let store = MemoryByteStore()
    let engine: UploadEngine
    let endpoints: UploadEndpoints
    /// Statistics, when kept (the admin statistics API, telemetry).
    let recorder: StatsRecorder?
    let metrics = RecordingMetrics()
    let configuration: FerryHTTPServer.Configuration
    let healthy: @Sendable () async -> Bool

    static let adminToken = "admin-token-0123456789"

    init(
        configuration: FerryHTTPServer.Configuration = .init(),
        statistics: Bool = false,
        engine configure: (inout EngineConfiguration) -> Void = { _ in },
        business: BusinessRules = .open,
        authenticator: any Authenticator = AnonymousAuthenticator(),
        healthy: @escaping @Sendable () async -> Bool = { true }
    ) {
        var engineConfiguration = EngineConfiguration(maxSize: 1000, expiry: .seconds(3600))
        engineConfiguration.creationsPerMinutePerClient = nil
        configure(&engineConfiguration)
        let recorder = statistics ? StatsRecorder(store: MemoryStatsStore(), logger: Logger(label: "ferry-http-test")) : nil
        engine = UploadEngine(
            store: store, catalog: catalog, locker: LocalUploadLocker(), configuration: engineConfiguration, business: business,
            logger: Logger(label: "ferry-http-test"), observers: recorder.map { [$0] } ?? []
        )
        endpoints = UploadEndpoints(engine: engine, authenticator: authenticator, statistics: recorder)
        self.recorder = recorder
        self.configuration = configuration
        self.healthy = healthy
    }

    /// Runs `body` against the router.
    func test<Value: Sendable>(_ body: @Sendable (any TestClientProtocol) async throws -> Value) async throws -> Value {
        let router = FerryHTTPServer.router(
            endpoints: endpoints, outbox: catalog, configuration: configuration, metricsFactory: metrics,
            metricsText: { "# TYPE ferry_up gauge\nferry_up 1\n" }, health: healthy
        )
        return try await Application(router: router).test(.router, body)
    }

    /// An upload created through the engine directly, holding `bytes` (complete when they are all of it).
    func upload(length: Int64?, _ bytes: [UInt8] = [], metadata: String? = nil, scenario: String? = nil) async throws -> UploadRecord {
        var record = try await engine.create(
            .init(length: length, metadata: try metadata.map { try UploadMetadata(tusHeader: $0) } ?? UploadMetadata(), scenario: scenario)
        )
        if !bytes.isEmpty {
            let body = AsyncStream<ByteBuffer> { continuation in
                continuation.yield(ByteBuffer(bytes: bytes))
                continuation.finish()
            }
            record = try await engine.append(record.id, AppendRequest(offset: 0, contentLength: Int64(bytes.count)), body: body, transport: EndedBody())
        }
        return record
    }
}

/// A body that always ended properly.
struct EndedBody: BodyTransport {
    func willReadBody() async {}
    func bodyEnded() async -> BodyEnd { BodyEnd(complete: true) }
}

extension HTTPFields {
    /// Fields from name-value pairs (names that are not valid field names are a test bug).
    static func of(_ pairs: [(String, String)]) -> HTTPFields {
        var fields = HTTPFields()
        for (name, value) in pairs { fields.append(HTTPField(name: HTTPField.Name(name)!, value: value)) }
        return fields
    }
}

extension TestResponse {
    var text: String { String(buffer: body) }

    func header(_ name: String) -> String? { headers[HTTPField.Name(name)!] }

    /// The body as a JSON object.
    var json: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] }
}

extension TestClientProtocol {
    /// Sends a request with fields given as pairs.
    func send(_ method: HTTPRequest.Method, _ uri: String, _ fields: [(String, String)] = [], body: String? = nil) async throws -> TestResponse {
        try await execute(uri: uri, method: method, headers: .of(fields), body: body.map { ByteBuffer(string: $0) })
    }
}

/// Counts what the metrics middleware records: counters by label and dimensions.
final class RecordingMetrics: MetricsFactory {
    let counts = Mutex<[String: Int64]>([:])

    /// `label{name=value,...}` in the order the dimensions were given.
    static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        label + "{" + dimensions.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }

    func count(_ label: String, _ dimensions: [(String, String)]) -> Int64 {
        counts.withLock { $0[Self.key(label, dimensions)] ?? 0 }
    }

    /// Every counter key recorded with `label`.
    func keys(_ label: String) -> [String] {
        counts.withLock { $0.keys.filter { $0.hasPrefix(label + "{") }.sorted() }
    }

    final class CounterBox: CounterHandler {
        let key: String
        let metrics: RecordingMetrics
        init(key: String, metrics: RecordingMetrics) { (self.key, self.metrics) = (key, metrics) }
        func increment(by amount: Int64) { metrics.counts.withLock { $0[key, default: 0] += amount } }
        func reset() { metrics.counts.withLock { $0[key] = 0 } }
    }

    final class Ignored: RecorderHandler, TimerHandler {
        func record(_ value: Int64) {}
        func record(_ value: Double) {}
        func recordNanoseconds(_ duration: Int64) {}
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        CounterBox(key: Self.key(label, dimensions), metrics: self)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler { Ignored() }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { Ignored() }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}
