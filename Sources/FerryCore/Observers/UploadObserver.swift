import Foundation

/// Watches what the engine does to uploads: metrics, statistics and anything else that
/// counts. Called on the request path, so an observer only records (a lock and an append);
/// the engine never waits for one.
public protocol UploadObserver: Sendable {
    /// A new upload; `info` says who created it.
    func created(_ record: UploadRecord, info: RequestInfo)
    func completed(_ record: UploadRecord, at date: Date)
    /// The completion just observed stored no byte: a proof of possession completed it from
    /// content the platform held (instant upload; `record.offset` bytes were saved).
    func completedInstantly(_ record: UploadRecord)
    /// An upload was terminated or expired.
    func ended(_ id: UploadID, at date: Date, state: StatsState)
    /// One request on an upload ended (a status, an append, a creation's body).
    func request(_ entry: RequestEntry)
    /// An append began; `appendEnded` follows, whatever happens.
    func appendStarted()
    func appendEnded()
    /// Body bytes an append handed to the store.
    func received(bytes: Int64)
    /// An append stopped before its body ended (a newer request, shutdown, a broken body).
    func interrupted()
}

extension UploadObserver {
    public func created(_ record: UploadRecord, info: RequestInfo) {}
    public func completed(_ record: UploadRecord, at date: Date) {}
    public func completedInstantly(_ record: UploadRecord) {}
    public func ended(_ id: UploadID, at date: Date, state: StatsState) {}
    public func request(_ entry: RequestEntry) {}
    public func appendStarted() {}
    public func appendEnded() {}
    public func received(bytes: Int64) {}
    public func interrupted() {}
}

/// Every observer of an engine, told in order.
public struct UploadObservers: UploadObserver {
    public let all: [any UploadObserver]

    public init(_ all: [any UploadObserver]) { self.all = all }

    public func created(_ record: UploadRecord, info: RequestInfo) { for observer in all { observer.created(record, info: info) } }
    public func completed(_ record: UploadRecord, at date: Date) { for observer in all { observer.completed(record, at: date) } }
    public func completedInstantly(_ record: UploadRecord) { for observer in all { observer.completedInstantly(record) } }
    public func ended(_ id: UploadID, at date: Date, state: StatsState) { for observer in all { observer.ended(id, at: date, state: state) } }
    public func request(_ entry: RequestEntry) { for observer in all { observer.request(entry) } }
    public func appendStarted() { for observer in all { observer.appendStarted() } }
    public func appendEnded() { for observer in all { observer.appendEnded() } }
    public func received(bytes: Int64) { for observer in all { observer.received(bytes: bytes) } }
    public func interrupted() { for observer in all { observer.interrupted() } }
}

/// Statistics observe the engine like metrics do.
extension StatsRecorder: UploadObserver {}
