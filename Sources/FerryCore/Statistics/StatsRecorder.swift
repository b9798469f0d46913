import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Collects statistics events from the request path (a lock and an append, nothing more) and
/// writes them to the `StatsStore` in batches from its own task; prunes records past the
/// retention. Bounded: when the store cannot keep up, the oldest buffered events are dropped
/// (counted), never the uploads. Statistics are best effort: a crash loses the last batch.
public final class StatsRecorder: Service, Sendable {
    public struct Configuration: Sendable {
        /// The most time an event waits in the buffer.
        public var flushInterval: Duration
        /// A batch is written at once when this many events wait.
        public var batchSize: Int
        /// Beyond this many waiting events, the oldest are dropped.
        public var capacity: Int
        /// Records created longer ago are pruned...
        public var retention: Duration
        /// ...this often.
        public var pruneInterval: Duration

        public init(
            flushInterval: Duration = .milliseconds(500),
            batchSize: Int = 2000,
            capacity: Int = 200_000,
            retention: Duration = .seconds(30 * 24 * 3600),
            pruneInterval: Duration = .seconds(3600)
        ) {
            self.flushInterval = flushInterval
            self.batchSize = batchSize
            self.capacity = capacity
            self.retention = retention
            self.pruneInterval = pruneInterval
        }
    }

    struct State: Sendable {
        var buffer: [StatsEvent] = []
        var dropped = 0
    }

    public let store: any StatsStore
    public let configuration: Configuration
    let state = Mutex(State())
    let wakeup = Wakeup()
    let logger: Logger
    let now: @Sendable () -> Date
    /// Measures the flush and prune intervals.
    let clock: AnyClock
    let factory: any MetricsFactory
    let droppedCounter: Counter
    /// The histograms per (scenario, network): made once, not per completion.
    let histograms = Mutex<[String: (duration: CoreMetrics.Timer, goodput: Recorder)]>([:])

    public init(
        store: any StatsStore,
        configuration: Configuration = Configuration(),
        logger: Logger,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance,
        clock: some Clock<Duration> = ContinuousClock(),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.clock = AnyClock(clock)
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.now = now
        self.factory = metricsFactory
        self.droppedCounter = Counter(label: "ferry_stats_events_dropped_total", dimensions: [], factory: metricsFactory)
    }

    /// Prometheus histogram names, and their buckets (seconds; bytes per second).
    public static let durationMetric = "ferry_upload_duration_seconds"
    public static let goodputMetric = "ferry_upload_goodput_bytes_per_second"
    public static let durationBuckets: [Duration] = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600].map { .milliseconds(Int64($0 * 1000)) }
    public static let goodputBuckets: [Double] = [16e3, 64e3, 256e3, 1e6, 4e6, 16e6, 64e6, 256e6, 1e9]

    // MARK: Recording (request path)

    public func created(_ record: UploadRecord, info: RequestInfo) {
        let stats = UploadStats(
            id: record.id, scenario: record.scenario, owner: record.owner, info: info, createdAt: record.createdAt,
            state: .incomplete, length: record.length
        )
        enqueue(.created(stats))
    }

    public func request(_ entry: RequestEntry) {
        enqueue(.request(entry))
    }

    /// Observes the two histograms from the record alone (its scenario, the network its creator
    /// declared, when its first bytes came), so they are right on whichever node completes it,
    /// after a restart too.
    public func completed(_ record: UploadRecord, at date: Date) {
        enqueue(.completed(record.id, at: date, length: record.offset))
        // A label from the fixed set, whatever a catalog row holds.
        let network = RequestInfo.networks.contains(record.network) ? record.network : "unknown"
        let metrics = histograms.withLock { cache in
            let key = record.scenario + "|" + network
            if let made = cache[key] { return made }
            let dimensions = [("scenario", record.scenario), ("network", network)]
            let made = (
                duration: CoreMetrics.Timer(label: Self.durationMetric, dimensions: dimensions, factory: factory),
                goodput: Recorder(label: Self.goodputMetric, dimensions: dimensions, aggregate: true, factory: factory)
            )
            cache[key] = made
            return made
        }
        metrics.duration.recordNanoseconds(Int64(max(0, date.timeIntervalSince(record.createdAt)) * 1e9))
        let transfer = date.timeIntervalSince(record.firstByteAt ?? record.createdAt)
        if record.offset > 0, transfer > 0 { metrics.goodput.record(Double(record.offset) / transfer) }
    }

    public func completedInstantly(_ record: UploadRecord) {
        enqueue(.instant(record.id))
    }

    public func ended(_ id: UploadID, at date: Date, state ended: StatsState) {
        enqueue(.ended(id, at: date, state: ended))
    }

    public func telemetry(_ id: UploadID, json: String) {
        enqueue(.telemetry(id, json: json))
    }

    private func enqueue(_ event: StatsEvent) {
        let (full, dropped) = state.withLock { state -> (Bool, Int) in
            var dropped = 0
            if state.buffer.count >= configuration.capacity {
                dropped = state.buffer.count / 10
                state.buffer.removeFirst(dropped)
                state.dropped += dropped
            }
            state.buffer.append(event)
            return (state.buffer.count >= configuration.batchSize, dropped)
        }
        if dropped > 0 { droppedCounter.increment(by: dropped) }
        if full { wakeup.signal() }
    }

    // MARK: Writing (own task)

    /// Writes what is buffered now; returns how many events were written.
    @discardableResult
    public func flush() async -> Int {
        let batch = state.withLock { state -> [StatsEvent] in
            defer { state.buffer.removeAll(keepingCapacity: true) }
            return state.buffer
        }
        guard !batch.isEmpty else { return 0 }
        let writes = batch.coalesced()
        var start = 0
        while start < writes.count {
            let end = min(start + configuration.batchSize, writes.count)
            do {
                try await store.apply(Array(writes[start..<end]))
            } catch {
                // Statistics must never hold uploads up: a batch the store refused is dropped.
                droppedCounter.increment(by: end - start)
                logger.warning("stats.write_failed", metadata: ["events": "\(end - start)", "error": "\(error)"])
            }
            start = end
        }
        return batch.count
    }

    public func run() async throws {
        var lastPrune = clock.now.advanced(by: .zero - configuration.pruneInterval)
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            await cancelWhenGracefulShutdown { [wakeup, configuration, clock] in
                await wakeup.wait(upTo: configuration.flushInterval, clock: clock)
            }
            await flush()
            if lastPrune.duration(to: clock.now) >= configuration.pruneInterval {
                lastPrune = clock.now
                do {
                    try await store.prune(before: now().addingTimeInterval(-configuration.retention.inSeconds))
                } catch {
                    logger.warning("stats.prune_failed", metadata: ["error": "\(error)"])
                }
            }
        }
        await flush()
    }
}
