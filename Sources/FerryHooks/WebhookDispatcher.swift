import FerryClock
import AsyncHTTPClient
import Crypto
import FerryCore
import Foundation
import Logging
import Metrics
import NIOCore
import ServiceLifecycle

/// Delivers the catalog's outbox to the scenarios' webhooks, at least once: signed JSON POSTs,
/// retried with exponential backoff and jitter, in sequence order per upload and webhook,
/// dead-lettered after a configurable time. Several nodes can run one each (claims are leased).
public struct WebhookDispatcher: Service {
    public struct Configuration: Sendable {
        /// First retry delay; doubles per attempt...
        public var retryBase: Duration
        /// ...up to this.
        public var retryCap: Duration
        /// An event still undelivered this long after it was written is dead.
        public var deadLetterAfter: Duration
        /// One attempt's limit.
        public var deliveryTimeout: Duration
        /// Attempts in flight at once.
        public var concurrency: Int
        /// How often the outbox is polled when this node wrote nothing (other nodes, retries).
        public var pollInterval: Duration
        /// The least time between two claims unless the last one was full: a busy node's
        /// events are collected into batches instead of one claim (one catalog write) per event.
        public var batchInterval: Duration
        /// Delivered and dead events are kept this long, for inspection (the admin API), then purged.
        public var retention: Duration

        public init(
            retryBase: Duration = .seconds(1),
            retryCap: Duration = .seconds(600),
            deadLetterAfter: Duration = .seconds(24 * 3600),
            deliveryTimeout: Duration = .seconds(10),
            concurrency: Int = 16,
            pollInterval: Duration = .seconds(1),
            batchInterval: Duration = .milliseconds(100),
            retention: Duration = .seconds(7 * 24 * 3600)
        ) {
            self.retention = retention
            self.retryBase = retryBase
            self.retryCap = retryCap
            self.deadLetterAfter = deadLetterAfter
            self.deliveryTimeout = deliveryTimeout
            self.concurrency = concurrency
            self.pollInterval = pollInterval
            self.batchInterval = batchInterval
        }
    }

    let catalog: any OutboxCatalog
    /// Webhook URL → signing secret.
    let secrets: [String: String]
    /// Webhook URL → the most events one POST carries.
    let batchSizes: [String: Int]
    let http: CallbackHTTP
    let wakeup: Wakeup
    let configuration: Configuration
    let logger: Logger
    let now: @Sendable () -> Date
    /// Measures batch intervals and purge periods.
    let clock: AnyClock
    let delivered: Counter
    let failed: Counter
    let dead: Counter

    public init(
        catalog: any OutboxCatalog,
        scenarios: ScenarioSet,
        http: CallbackHTTP,
        wakeup: Wakeup,
        configuration: Configuration = Configuration(),
        logger: Logger,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance,
        clock: some Clock<Duration> = ContinuousClock(),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.clock = AnyClock(clock)
        self.catalog = catalog
        var secrets: [String: String] = [:]
        var batchSizes: [String: Int] = [:]
        for scenario in scenarios.scenarios.values {
            for webhook in scenario.webhooks {
                secrets[webhook.url] = webhook.secret
                batchSizes[webhook.url] = max(1, webhook.batch)
            }
        }
        self.secrets = secrets
        self.batchSizes = batchSizes
        self.http = http
        self.wakeup = wakeup
        self.configuration = configuration
        self.logger = logger
        self.now = now
        delivered = Counter(label: "ferry_events_delivered_total", dimensions: [], factory: metricsFactory)
        failed = Counter(label: "ferry_event_attempts_failed_total", dimensions: [], factory: metricsFactory)
        dead = Counter(label: "ferry_events_dead_total", dimensions: [], factory: metricsFactory)
    }

    public func run() async throws {
        let limit = configuration.concurrency * 16
        var purged = clock.now - .seconds(60)
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let claimed = clock.now
            if claimed - purged >= .seconds(60) {
                purged = claimed
                do {
                    try await catalog.purgeDeliveries(before: now().addingTimeInterval(-configuration.retention.inSeconds))
                } catch {
                    logger.warning("events.purge_failed", metadata: ["error": "\(error)"])
                }
            }
            let batch: [EventDelivery]
            do {
                // A claim is held for one attempt's time and a margin; a node that dies holding
                // it leaves the event to be retried when the lease ends.
                let date = now()
                let lease = date.addingTimeInterval(configuration.deliveryTimeout.inSeconds + 5)
                batch = try await catalog.claimDeliveries(now: date, leaseUntil: lease, limit: limit)
            } catch {
                logger.error("events.claim_failed", metadata: ["error": "\(error)"])
                batch = []
            }
            if batch.isEmpty {
                await cancelWhenGracefulShutdownOrReturn { await wakeup.wait(upTo: configuration.pollInterval, clock: clock) }
            }
            await withTaskGroup(of: Void.self) { group in
                var running = 0
                for posting in Self.postings(batch, batchSizes: batchSizes) {
                    if running >= configuration.concurrency {
                        await group.next()
                        running -= 1
                    }
                    group.addTask { await attempt(posting) }
                    running += 1
                }
            }
            // A partial batch means the outbox is drained for now: let events accumulate.
            let elapsed = clock.now - claimed
            if batch.count < limit, elapsed < configuration.batchInterval {
                try? await cancelWhenGracefulShutdown { [clock] in try await clock.sleep(for: configuration.batchInterval - elapsed) }
            }
        }
    }

    /// The claimed deliveries cut into POSTs: per webhook, at most its batch size each. A claim
    /// holds at most one event per upload and webhook, so a POST never reorders an upload's events.
    static func postings(_ claimed: [EventDelivery], batchSizes: [String: Int]) -> [[EventDelivery]] {
        var byWebhook: [String: [EventDelivery]] = [:]
        var order: [String] = []
        for delivery in claimed {
            let url = delivery.event.destination
            if byWebhook[url] == nil { order.append(url) }
            byWebhook[url, default: []].append(delivery)
        }
        var postings: [[EventDelivery]] = []
        for url in order {
            let deliveries = byWebhook[url] ?? []
            let size = batchSizes[url] ?? 1
            for start in stride(from: 0, to: deliveries.count, by: size) {
                postings.append(Array(deliveries[start..<min(start + size, deliveries.count)]))
            }
        }
        return postings
    }

    /// One delivery attempt of one POST (one event, or a batch for one webhook) and its bookkeeping.
    func attempt(_ deliveries: [EventDelivery]) async {
        guard let first = deliveries.first else { return }
        let url = first.event.destination
        var error: String?
        if let secret = secrets[url] {
            let batched = (batchSizes[url] ?? 1) > 1
            error = await post(deliveries.map(\.event), to: url, secret: secret, batched: batched)
        }
        var records: [DeliveryRecord] = []
        for delivery in deliveries {
            let event = delivery.event
            let attempts = delivery.attempts + 1
            let outcome: DeliveryOutcome
            if secrets[url] == nil {
                dead.increment()
                outcome = .dead(error: "no configured webhook has this URL any more")
            } else if let error {
                failed.increment()
                let date = now()
                if date.timeIntervalSince(event.createdAt) >= configuration.deadLetterAfter.inSeconds {
                    dead.increment()
                    outcome = .dead(error: error)
                    logger.warning("events.dead", metadata: ["event.id": "\(event.id)", "webhook": "\(url)", "error": "\(error)"])
                } else {
                    outcome = .retry(at: date.addingTimeInterval(backoff(after: attempts)), error: error)
                }
            } else {
                delivered.increment()
                outcome = .delivered(at: now())
            }
            records.append(DeliveryRecord(eventID: event.id, destination: url, attempts: attempts, outcome: outcome))
        }
        do {
            // The POST's events in one write: a batch of 100 is one catalog transaction, not 100.
            try await catalog.recordDeliveries(records)
        } catch {
            // The claims lapse and the events are sent again: at least once.
            logger.error("events.record_failed", metadata: ["event.ids": "\(records.map(\.eventID).joined(separator: ","))", "error": "\(error)"])
        }
    }

    /// POSTs the events: one alone as the body with its id in `Ferry-Event-Id`, or (`batched`)
    /// a JSON array of them with their count in `Ferry-Event-Count`; nil on a 2xx answer, else
    /// why it failed.
    func post(_ events: [OutboxEvent], to url: String, secret: String, batched: Bool) async -> String? {
        let timestamp = Int(now().timeIntervalSince1970)
        var headers = HTTPBusinessCallbacks.headers
        let body: String
        if batched {
            body = "[" + events.map(\.payload).joined(separator: ",") + "]"
            headers.add(name: "Ferry-Event-Count", value: String(events.count))
        } else {
            body = events.first?.payload ?? "{}"
            headers.add(name: "Ferry-Event-Id", value: events.first?.id ?? "")
            headers.add(name: "Ferry-Event-Type", value: events.first?.type.rawValue ?? "")
        }
        headers.add(name: "Ferry-Signature", value: Self.signature(secret: secret, timestamp: timestamp, body: body))
        do {
            // Only the status matters: the answer is read and dropped.
            let (status, _) = try await http.post(
                url, headers: headers, body: ByteBuffer(string: body), timeout: configuration.deliveryTimeout, maxAnswer: nil
            )
            return (200..<300).contains(status) ? nil : "answered \(status)"
        } catch {
            return "\(error)"
        }
    }

    /// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
    public static func signature(secret: String, timestamp: Int, body: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(timestamp).\(body)".utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return "t=\(timestamp),v1=" + Hex.encode(mac)
    }

    /// Exponential from `retryBase`, capped, with jitter: between half and all of it.
    func backoff(after attempts: Int) -> Double {
        let ceiling = min(configuration.retryCap.inSeconds, configuration.retryBase.inSeconds * pow(2, Double(min(attempts - 1, 30))))
        return ceiling / 2 + Double.random(in: 0...(ceiling / 2))
    }
}

/// Runs `body`, returning early at a graceful shutdown.
private func cancelWhenGracefulShutdownOrReturn(_ body: @escaping @Sendable () async -> Void) async {
    await cancelWhenGracefulShutdown { await body() }
}
