import CoreMetrics
import Synchronization

/// The engine's metrics. Dimensions never carry upload ids.
final class EngineMetrics: Sendable {
    let bytesReceived: Counter
    let created: Counter
    let completed: Counter
    let terminated: Counter
    let expired: Counter
    let interrupted: Counter
    let activeAppends: Gauge
    private let active = Mutex(0)

    init(factory: any MetricsFactory, backend: String) {
        let dimensions = [("store", backend)]
        bytesReceived = Counter(label: "ferry_bytes_received_total", dimensions: dimensions, factory: factory)
        created = Counter(label: "ferry_uploads_created_total", dimensions: dimensions, factory: factory)
        completed = Counter(label: "ferry_uploads_completed_total", dimensions: dimensions, factory: factory)
        terminated = Counter(label: "ferry_uploads_terminated_total", dimensions: dimensions, factory: factory)
        expired = Counter(label: "ferry_uploads_expired_total", dimensions: dimensions, factory: factory)
        interrupted = Counter(label: "ferry_requests_interrupted_total", dimensions: dimensions, factory: factory)
        activeAppends = Gauge(label: "ferry_uploads_active", dimensions: dimensions, factory: factory)
    }

    func appendStarted() {
        let value = active.withLock { value -> Int in
            value += 1
            return value
        }
        activeAppends.record(value)
    }

    func appendEnded() {
        let value = active.withLock { value -> Int in
            value -= 1
            return value
        }
        activeAppends.record(value)
    }
}
