import Synchronization

/// Exclusive access to one upload, where the newest request wins.
///
/// A mobile client often reconnects while the server still holds its dead request. Acquiring
/// a lock therefore never waits for a timeout: it asks the current holder to stop (the
/// holder saves what it has and releases), then takes over.
public protocol UploadLocker: Sendable {
    /// Acquires the upload's lock, asking any holder to stop first.
    ///
    /// - Parameters:
    ///   - onStopRequest: called (at most once, from any task) when a newer request wants
    ///     the lock. The holder should finish quickly and release.
    ///   - timeout: how long to wait for the previous holder to release.
    /// - Throws: `ERR_UPLOAD_LOCKED` when the holder does not release in time,
    ///   `ERR_REQUEST_SUPERSEDED` when an even newer request arrived while waiting.
    func lock(
        _ id: UploadID,
        timeout: Duration,
        onStopRequest: @escaping @Sendable () -> Void
    ) async throws(FerryError) -> any UploadLease
}

/// A held upload lock.
public protocol UploadLease: Sendable {
    /// Releases the lock; idempotent.
    func release() async

    /// The fence of a lock shared between nodes; nil for a lock one process keeps.
    var fence: LeaseFence? { get }
}

extension UploadLease {
    public var fence: LeaseFence? { nil }
}

/// Proof that a cross-node lock is still held, for the writes made under it.
///
/// A node can lose its claim without noticing at once (a pause, a partition): another node then
/// takes the upload over. Every durable write made under a lock carries the fence, and shared
/// storage refuses a write whose fence is no longer current: the catalog compares `token` with
/// the lock's current one in the same statement that commits, and object stores ask `check()`
/// before each write. The fence is a parameter of every such write (`UploadCatalog.update`,
/// `ByteStore.openWriter`, `ConcatenatingByteStore.concatenate`): none can forget it.
public final class LeaseFence: Sendable {
    /// Increases with every claim of the upload, on any node.
    public let token: Int64
    private let lost = Mutex(false)

    public init(token: Int64) {
        self.token = token
    }

    /// Marks the claim lost (the lease could not be renewed in time, or another node took it).
    public func invalidate() { lost.withLock { $0 = true } }

    public var isValid: Bool { !lost.withLock { $0 } }

    /// Throws when the claim is known to be lost.
    public func check() throws(FerryError) {
        guard isValid else {
            throw FerryError(.requestSuperseded, "this node lost its claim on the upload; another request took over")
        }
    }
}

/// A shared locker that claims a new upload's lock in the very write that inserts its record
/// (one statement where a claim and an insert would be two). The engine uses it for a creation
/// that carries a body; like `UploadLocker.lock`, the lease must be released.
public protocol InsertingUploadLocker: UploadLocker {
    /// Inserts `record` (with `events`, under `claim`, as `UploadCatalog.insert` does) into
    /// `catalog` holding its lock from that moment: nobody can know the id before, so there is no
    /// holder to stop. A locker that cannot write into `catalog` itself locks, then inserts.
    func lock(
        inserting record: UploadRecord,
        events: [OutboxEvent],
        claim: QuotaClaim?,
        into catalog: any UploadCatalog,
        onStopRequest: @escaping @Sendable () -> Void
    ) async throws(FerryError) -> any UploadLease
}
