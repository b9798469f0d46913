import CoreMetrics
import Foundation
import Synchronization

/// The engine's metrics, as an observer. Dimensions never carry upload ids.
public final class MetricsObserver: UploadObserver {
    let bytesReceived: Counter
    let createdCounter: Counter
    let completedCounter: Counter
    let terminated: Counter
    let expired: Counter
    let interruptedCounter: Counter
    let activeAppends: Gauge
    let instantCounter: Counter
    let bytesSaved: Counter
    private let active = Mutex(0)

    /// - Parameter backend: the byte store's name (`disk`, `s3`, `memory`), the one dimension.
    public init(factory: any MetricsFactory, backend: String) {
        let dimensions = [("store", backend)]
        bytesReceived = Counter(label: "ferry_bytes_received_total", dimensions: dimensions, factory: factory)
        createdCounter = Counter(label: "ferry_uploads_created_total", dimensions: dimensions, factory: factory)
        completedCounter = Counter(label: "ferry_uploads_completed_total", dimensions: dimensions, factory: factory)
        terminated = Counter(label: "ferry_uploads_terminated_total", dimensions: dimensions, factory: factory)
        expired = Counter(label: "ferry_uploads_expired_total", dimensions: dimensions, factory: factory)
        interruptedCounter = Counter(label: "ferry_requests_interrupted_total", dimensions: dimensions, factory: factory)
        instantCounter = Counter(label: "ferry_uploads_instant_total", dimensions: dimensions, factory: factory)
        bytesSaved = Counter(label: "ferry_bytes_saved_total", dimensions: dimensions, factory: factory)
        activeAppends = Gauge(label: "ferry_uploads_active", dimensions: dimensions, factory: factory)
    }

    public func created(_ record: UploadRecord, info: RequestInfo) { createdCounter.increment() }
    public func completed(_ record: UploadRecord, at date: Date) { completedCounter.increment() }

    public func completedInstantly(_ record: UploadRecord) {
        instantCounter.increment()
        bytesSaved.increment(by: record.offset)
    }

    public func ended(_ id: UploadID, at date: Date, state: StatsState) {
        switch state {
        case .terminated: terminated.increment()
        case .expired: expired.increment()
        case .incomplete, .complete: break
        }
    }

    public func received(bytes: Int64) { bytesReceived.increment(by: bytes) }
    public func interrupted() { interruptedCounter.increment() }

    public func appendStarted() {
        activeAppends.record(active.withLock { value -> Int in
            value += 1
            return value
        })
    }

    public func appendEnded() {
        activeAppends.record(active.withLock { value -> Int in
            value -= 1
            return value
        })
    }
}
