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

        public init(
            retryBase: Duration = .seconds(1),
            retryCap: Duration = .seconds(600),
            deadLetterAfter: Duration = .seconds(24 * 3600),
            deliveryTimeout: Duration = .seconds(10),
            concurrency: Int = 16,
            pollInterval: Duration = .seconds(1),
            batchInterval: Duration = .milliseconds(100)
        ) {
            self.retryBase = retryBase
            self.retryCap = retryCap
            self.deadLetterAfter = deadLetterAfter
            self.deliveryTimeout = deliveryTimeout
            self.concurrency = concurrency
            self.pollInterval = pollInterval
            self.batchInterval = batchInterval
        }
    }

    let catalog: any UploadCatalog
    /// Webhook URL → signing secret.
    let secrets: [String: String]
    let http: HTTPClient
    let wakeup: Wakeup
    let configuration: Configuration
    let logger: Logger
    let now: @Sendable () -> Date
    let delivered: Counter
    let failed: Counter
    let dead: Counter

    public init(
        catalog: any UploadCatalog,
        scenarios: ScenarioSet,
        http: HTTPClient,
        wakeup: Wakeup,
        configuration: Configuration = Configuration(),
        logger: Logger,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.catalog = catalog
        var secrets: [String: String] = [:]
        for scenario in scenarios.scenarios.values {
            for webhook in scenario.webhooks { secrets[webhook.url] = webhook.secret }
        }
        self.secrets = secrets
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
        let clock = ContinuousClock()
        let limit = configuration.concurrency * 16
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let claimed = clock.now
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
                await cancelWhenGracefulShutdownOrReturn { await wakeup.wait(upTo: configuration.pollInterval) }
            }
            await withTaskGroup(of: Void.self) { group in
                var running = 0
                for delivery in batch {
                    if running >= configuration.concurrency {
                        await group.next()
                        running -= 1
                    }
                    group.addTask { await attempt(delivery) }
                    running += 1
                }
            }
            // A partial batch means the outbox is drained for now: let events accumulate.
            let elapsed = clock.now - claimed
            if batch.count < limit, elapsed < configuration.batchInterval {
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: configuration.batchInterval - elapsed) }
            }
        }
    }

    /// One delivery attempt and its bookkeeping.
    func attempt(_ delivery: EventDelivery) async {
        let event = delivery.event
        let attempts = delivery.attempts + 1
        let outcome: DeliveryOutcome
        if let secret = secrets[event.destination] {
            let error = await post(event, secret: secret)
            if let error {
                failed.increment()
                let date = now()
                if date.timeIntervalSince(event.createdAt) >= configuration.deadLetterAfter.inSeconds {
                    dead.increment()
                    outcome = .dead(error: error)
                    logger.warning("events.dead", metadata: ["event.id": "\(event.id)", "webhook": "\(event.destination)", "error": "\(error)"])
                } else {
                    outcome = .retry(at: date.addingTimeInterval(backoff(after: attempts)), error: error)
                }
            } else {
                delivered.increment()
                outcome = .delivered(at: now())
            }
        } else {
            dead.increment()
            outcome = .dead(error: "no configured webhook has this URL any more")
        }
        do {
            try await catalog.recordDelivery(eventID: event.id, destination: event.destination, attempts: attempts, outcome: outcome)
        } catch {
            // The claim lapses and the event is sent again: at least once.
            logger.error("events.record_failed", metadata: ["event.id": "\(event.id)", "error": "\(error)"])
        }
    }

    /// POSTs the event; nil on a 2xx answer, else why it failed.
    func post(_ event: OutboxEvent, secret: String) async -> String? {
        let timestamp = Int(now().timeIntervalSince1970)
        var request = HTTPClientRequest(url: event.destination)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "ferry")
        request.headers.add(name: "Ferry-Event-Id", value: event.id)
        request.headers.add(name: "Ferry-Event-Type", value: event.type.rawValue)
        request.headers.add(name: "Ferry-Signature", value: Self.signature(secret: secret, timestamp: timestamp, body: event.payload))
        request.body = .bytes(ByteBuffer(string: event.payload))
        do {
            let response = try await http.execute(request, timeout: TimeAmount(configuration.deliveryTimeout))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            return (200..<300).contains(response.status.code) ? nil : "answered \(response.status.code)"
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
