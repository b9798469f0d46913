import FerryClock
import FerryCore
import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Upload locks shared by every node on one PostgreSQL database: newest request wins across
/// nodes, a dead node's claim lapses, and a node that lost its claim cannot commit.
///
/// A claim is a row of `upload_leases` (holder node, fence token from a sequence, expiry on the
/// database's clock). A request on node B for an upload node A holds marks the row
/// `stop_requested` and sends `NOTIFY ferry_upload_stop`; A's listener calls the holder's stop
/// handler (A's renewals also see the flag, should the notification be lost), A saves and
/// releases, and B's claim succeeds. If A died, its lease lapses after `leaseDuration` and B
/// takes over. A holder that could not renew for `selfFenceAfter` (< `leaseDuration`) invalidates
/// its fence and stops, before anyone else can claim; and `PostgresCatalog.update` commits only
/// while the fence is still the upload's current one.
///
/// Requests on the same node queue on a `LocalUploadLocker` first, so a node claims an upload
/// once however many of its own requests race for it. Run the locker as a `Service` (renewals
/// and the listener), after the catalog.
public final class PostgresUploadLocker: InsertingUploadLocker, Service {
    public struct Configuration: Sendable {
        /// How long a claim lasts without renewal: a dead node's uploads wait this long.
        public var leaseDuration: Duration
        /// How often claims are renewed (and stop flags polled).
        public var renewInterval: Duration
        /// A holder that could not renew for this long stops writing; less than `leaseDuration`.
        public var selfFenceAfter: Duration

        public init(leaseDuration: Duration = .seconds(6), renewInterval: Duration = .seconds(1), selfFenceAfter: Duration = .seconds(4)) {
            self.leaseDuration = leaseDuration
            self.renewInterval = renewInterval
            self.selfFenceAfter = min(selfFenceAfter, leaseDuration * 0.8)
        }
    }

    struct Claim {
        let fence: LeaseFence
        let onStop: @Sendable () -> Void
        var renewed: AnyClock.Instant
        var stopSent = false
    }

    static let stopChannel = "ferry_upload_stop"

    let catalog: PostgresCatalog
    let configuration: Configuration
    /// This process, as the `holder` of its claims.
    let node = UUID().uuidString
    private let local = LocalUploadLocker()
    private let claims = Mutex<[UploadID: Claim]>([:])
    private let listening = Mutex(false)
    private let clock: AnyClock
    /// Releases that arrive while one is running go together, in one statement.
    private let releases: GroupCommit<Release, Void>
    var logger: Logger { catalog.logger }

    public init(catalog: PostgresCatalog, configuration: Configuration = Configuration(), clock: some Clock<Duration> = ContinuousClock()) {
        self.clock = AnyClock(clock)
        self.catalog = catalog
        self.configuration = configuration
        self.releases = GroupCommit { batch in
            do throws(FerryError) {
                try await Self.release(batch, in: catalog)
                return batch.map { _ in .success(()) }
            } catch {
                return batch.map { _ in .failure(error) }
            }
        }
    }

    /// Uploads this node holds (for tests and metrics).
    public var heldCount: Int { claims.withLock { $0.count } }

    /// Whether stop requests from other nodes are being received now (LISTEN is active).
    public var isListening: Bool { listening.withLock { $0 } }

    public func lock(
        _ id: UploadID,
        timeout: Duration,
        onStopRequest: @escaping @Sendable () -> Void
    ) async throws(FerryError) -> any UploadLease {
        let start = clock.now
        let superseded = Flag()
        let localLease = try await local.lock(id, timeout: timeout) {
            superseded.raise()
            onStopRequest()
        }
        do throws(FerryError) {
            let fence = try await claim(id, until: start + timeout, superseded: superseded)
            claims.withLock { $0[id] = Claim(fence: fence, onStop: onStopRequest, renewed: clock.now) }
            return Lease(locker: self, id: id, fence: fence, local: localLease)
        } catch {
            await localLease.release()
            throw error
        }
    }

    /// A new upload's lock, claimed by the statement that inserts its record into this locker's
    /// catalog (one statement for both); into another catalog, claimed first, then inserted.
    public func lock(
        inserting record: UploadRecord,
        events: [OutboxEvent],
        claim quota: QuotaClaim?,
        into catalog: any UploadCatalog,
        onStopRequest: @escaping @Sendable () -> Void
    ) async throws(FerryError) -> any UploadLease {
        let id = record.id
        let superseded = Flag()
        // Nobody can know the id yet: granted at once.
        let localLease = try await local.lock(id, timeout: .seconds(5)) {
            superseded.raise()
            onStopRequest()
        }
        do throws(FerryError) {
            let fence: LeaseFence
            if let same = catalog as? PostgresCatalog, same === self.catalog {
                let lease = PostgresCatalog.NewLease(holder: node, seconds: leaseSeconds)
                guard let token = try await self.catalog.insert(record, events: events, claim: quota, lease: lease) else {
                    throw FerryError(.catalogFailure, "the catalog inserted the upload without its lock")
                }
                fence = LeaseFence(token: token)
            } else {
                fence = try await claim(id, until: clock.now + .seconds(5), superseded: superseded)
                do throws(FerryError) {
                    try await catalog.insert(record, events: events, claim: quota)
                } catch {
                    _ = try? await releases.submit(Release(id: id, fence: fence.token))
                    throw error
                }
            }
            claims.withLock { $0[id] = Claim(fence: fence, onStop: onStopRequest, renewed: clock.now) }
            return Lease(locker: self, id: id, fence: fence, local: localLease)
        } catch {
            await localLease.release()
            throw error
        }
    }

    /// Claims the row, asking the holder to stop once, until `deadline`.
    private func claim(_ id: UploadID, until deadline: AnyClock.Instant, superseded: Flag) async throws(FerryError) -> LeaseFence {
        var asked = false
        var pause = Duration.milliseconds(5)
        while true {
            if let token = try await tryClaim(id) { return LeaseFence(token: token) }
            if superseded.isRaised {
                throw FerryError(.requestSuperseded, "a newer request on this upload arrived while this one waited")
            }
            if !asked {
                try await requestStop(id)
                asked = true
            }
            let left = deadline - clock.now
            guard left > .zero else {
                throw FerryError(.uploadLocked, "the request holding this upload on another node did not release it in time")
            }
            try? await clock.sleep(for: min(pause, left))
            pause = min(pause * 2, .milliseconds(100))
        }
    }

    private var leaseSeconds: Double { configuration.leaseDuration.inSeconds }

    /// Takes the row when it is free or its lease lapsed; the fence token when it did.
    private func tryClaim(_ id: UploadID) async throws(FerryError) -> Int64? {
        try await catalog.rows(
            ClaimLeaseStatement(id: id.rawValue, holder: node, seconds: leaseSeconds),
            "the upload lock could not be claimed"
        ).first
    }

    private func requestStop(_ id: UploadID) async throws(FerryError) {
        _ = try await catalog.rows(
            """
            WITH flagged AS (
                UPDATE upload_leases SET stop_requested = true WHERE upload_id = \(id.rawValue) AND holder IS NOT NULL RETURNING upload_id
            )
            SELECT pg_notify(\(Self.stopChannel), upload_id) FROM flagged
            """,
            "the upload lock holder could not be asked to stop"
        ) { _ in () }
    }

    /// One claim to give up: the upload and the fence it was claimed with.
    struct Release: Sendable {
        let id: UploadID
        let fence: Int64
    }

    /// Gives up several claims in one statement (each only while it is still the row's).
    static func release(_ batch: [Release], in catalog: PostgresCatalog) async throws(FerryError) {
        _ = try await catalog.rows(
            ReleaseLeasesStatement(ids: batch.map(\.id.rawValue), fences: batch.map(\.fence)),
            "the upload lock could not be released"
        )
    }

    fileprivate func release(_ id: UploadID, fence: LeaseFence) async {
        claims.withLock { claims in
            if claims[id]?.fence === fence { claims[id] = nil }
        }
        do {
            // Awaited, so the next request on this node finds the row free; releases that come
            // while one runs share the next statement.
            try await releases.submit(Release(id: id, fence: fence.token))
        } catch {
            // The lease lapses by itself.
            logger.warning("lock.release_failed", metadata: ["upload.id": "\(id)", "error": "\(error)"])
        }
    }

    /// Asks this node's holder of `id` to stop (once).
    private func stopHolder(_ id: UploadID, invalidate: Bool) {
        let onStop = claims.withLock { claims -> (@Sendable () -> Void)? in
            guard var claim = claims[id] else { return nil }
            if invalidate { claim.fence.invalidate() }
            guard !claim.stopSent else { return nil }
            claim.stopSent = true
            claims[id] = claim
            return claim.onStop
        }
        onStop?()
    }

    // MARK: Service

    /// Renews this node's claims and listens for stop requests until graceful shutdown.
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.listen() }
            group.addTask { await self.renewLoop() }
        }
    }

    private func renewLoop() async {
        var rounds = 0
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            try? await clock.sleep(for: configuration.renewInterval)
            await renew()
            rounds += 1
            if rounds % 600 == 0 { await purge() }
        }
    }

    /// Extends every claim this node holds; stops holders whose claim is lost or asked for.
    func renew() async {
        let held = claims.withLock { $0.map { (id: $0.key, token: $0.value.fence.token) } }
        guard !held.isEmpty else { return }
        do {
            let renewed = try await catalog.rows(
                """
                UPDATE upload_leases SET expires_at = clock_timestamp() + make_interval(secs => \(leaseSeconds))
                WHERE holder = \(node) AND (upload_id, fence) IN (
                    SELECT * FROM unnest(\(held.map(\.id.rawValue))::text[], \(held.map(\.token))::bigint[])
                )
                RETURNING upload_id, stop_requested
                """,
                "the upload locks could not be renewed"
            ) { row in try row.decode((String, Bool).self) }
            let now = clock.now
            var stops: [UploadID] = []
            var lost: [UploadID] = []
            let answered = Dictionary(renewed, uniquingKeysWith: { $0 || $1 })
            claims.withLock { claims in
                for (id, token) in held {
                    guard var claim = claims[id], claim.fence.token == token else { continue }
                    if let stop = answered[id.rawValue] {
                        claim.renewed = now
                        claims[id] = claim
                        if stop { stops.append(id) }
                    } else {
                        lost.append(id)
                    }
                }
            }
            for id in stops { stopHolder(id, invalidate: false) }
            for id in lost {
                logger.warning("lock.claim_lost", metadata: ["upload.id": "\(id)"])
                stopHolder(id, invalidate: true)
            }
        } catch {
            selfFence()
            logger.warning("lock.renew_failed", metadata: ["error": "\(error)"])
        }
    }

    /// Stops the holders whose claims could not be renewed for `selfFenceAfter`: another node
    /// may take them over once their lease lapses, and by then they must have stopped writing.
    /// A renewal round (tests): `failing` stands for a database that cannot be reached.
    func renewOrFence(failing: Bool) async {
        if failing { selfFence() } else { await renew() }
    }

    private func selfFence() {
        let now = clock.now
        let stale = claims.withLock { claims in
            claims.filter { now - $0.value.renewed >= configuration.selfFenceAfter }.map(\.key)
        }
        for id in stale { stopHolder(id, invalidate: true) }
    }

    private func purge() async {
        _ = try? await catalog.rows(
            "DELETE FROM upload_leases WHERE holder IS NULL AND expires_at < clock_timestamp() - interval '1 hour'",
            "old upload locks could not be purged"
        ) { _ in () }
    }

    /// Delivers `NOTIFY ferry_upload_stop` to this node's holders; reconnects after failures.
    private func listen() async {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            do {
                try await catalog.migrated.wait()
                try await catalog.client.withConnection { connection in
                    try await connection.listen(on: Self.stopChannel) { notifications in
                        self.listening.withLock { $0 = true }
                        defer { self.listening.withLock { $0 = false } }
                        for try await notification in notifications.cancelOnGracefulShutdown() {
                            guard let id = UploadID(notification.payload) else { continue }
                            self.stopHolder(id, invalidate: false)
                        }
                    }
                }
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully { return }
                logger.warning("lock.listen_failed", metadata: ["error": "\(error)"])
                try? await clock.sleep(for: .seconds(1))
            }
        }
    }

    /// Set when a newer request on this node wants the upload while this one still claims it.
    final class Flag: Sendable {
        private let raised = Mutex(false)
        func raise() { raised.withLock { $0 = true } }
        var isRaised: Bool { raised.withLock { $0 } }
    }

    private struct Lease: UploadLease {
        let locker: PostgresUploadLocker
        let id: UploadID
        let fence: LeaseFence?
        let local: any UploadLease

        func release() async {
            if let fence { await locker.release(id, fence: fence) }
            await local.release()
        }
    }
}
