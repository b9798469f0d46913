import CoreMetrics
import NIOCore
import Synchronization

/// Connections accepted and open, per protocol: `ferry_http_connections_total{protocol}` and
/// `ferry_http_connections_open{protocol}`, and the same numbers for tests and benchmarks
/// (how many TCP connections a client used).
public final class ConnectionCensus: Sendable {
    public enum HTTPProtocol: String, Sendable, CaseIterable {
        case http1 = "http/1.1"
        case http2 = "h2"
    }

    private struct Counts {
        var accepted = 0
        var open = 0
    }

    private let counts = Mutex<[HTTPProtocol: Counts]>([:])
    private let acceptedCounters: [HTTPProtocol: Counter]
    private let openGauges: [HTTPProtocol: Gauge]

    public init(factory: any MetricsFactory) {
        var counters: [HTTPProtocol: Counter] = [:]
        var gauges: [HTTPProtocol: Gauge] = [:]
        for kind in HTTPProtocol.allCases {
            counters[kind] = Counter(label: "ferry_http_connections_total", dimensions: [("protocol", kind.rawValue)], factory: factory)
            gauges[kind] = Gauge(label: "ferry_http_connections_open", dimensions: [("protocol", kind.rawValue)], factory: factory)
        }
        self.acceptedCounters = counters
        self.openGauges = gauges
    }

    /// Connections that spoke `kind` since the server started.
    public func accepted(_ kind: HTTPProtocol) -> Int { counts.withLock { $0[kind]?.accepted ?? 0 } }

    /// Connections speaking `kind` now.
    public func open(_ kind: HTTPProtocol) -> Int { counts.withLock { $0[kind]?.open ?? 0 } }

    func opened(_ kind: HTTPProtocol, channel: any Channel) {
        let now = counts.withLock { counts -> Int in
            counts[kind, default: Counts()].accepted += 1
            counts[kind, default: Counts()].open += 1
            return counts[kind]!.open
        }
        acceptedCounters[kind]?.increment()
        openGauges[kind]?.record(now)
        channel.closeFuture.whenComplete { _ in
            let now = self.counts.withLock { counts -> Int in
                counts[kind, default: Counts()].open -= 1
                return counts[kind]!.open
            }
            self.openGauges[kind]?.record(now)
        }
    }
}
