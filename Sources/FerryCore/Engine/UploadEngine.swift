import CoreMetrics
import Foundation
import Logging
import NIOCore
import Synchronization

/// The dialect-independent upload core: creates, appends to, inspects, concatenates,
/// terminates and expires uploads through the three seams.
///
/// Every mutation of an upload happens under its lock (newest request wins), and every
/// offset it returns was synced by the store and committed by the catalog first.
public final class UploadEngine: Sendable {
    public let store: any ByteStore
    public let catalog: any EngineCatalog
    public let locker: any UploadLocker
    public let configuration: EngineConfiguration
    public let capabilities: EngineCapabilities
    /// Scenarios, quotas and business callbacks (docs/business.md).
    public let business: BusinessRules
    /// Signalled whenever events were written, so the dispatcher sends them at once.
    public let outboxWritten = Wakeup()
    let digests = DigestCache()
    let logger: Logger
    /// Metrics, statistics: whoever watches what happens to uploads.
    public let observers: UploadObservers
    /// Measures durations (checkpoint intervals, drains); dates come from `now`.
    let clock: AnyClock
    /// The engine's clock for dates (expiry, records, statistics).
    public let now: @Sendable () -> Date
    let appends = ActiveAppends()
    /// Creations per client and minute (`EngineConfiguration.creationsPerMinutePerClient`).
    let creationRate: RateLimiter?

    public init(
        store: any ByteStore,
        catalog: any EngineCatalog,
        locker: any UploadLocker,
        configuration: EngineConfiguration = EngineConfiguration(),
        business: BusinessRules = .open,
        logger: Logger,
        observers: [any UploadObserver] = [],
        clock: some Clock<Duration> = ContinuousClock(),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.observers = UploadObservers(observers)
        self.clock = AnyClock(clock)
        self.creationRate = configuration.creationsPerMinutePerClient.map { RateLimiter(perMinute: $0) }
        self.store = store
        self.catalog = catalog
        self.locker = locker
        self.configuration = configuration
        self.capabilities = EngineCapabilities(
            concatenation: store is any ConcatenatingByteStore,
            content: store is any ReadableByteStore,
            expiration: configuration.expiry != nil,
            termination: configuration.allowsTermination,
            maxSize: configuration.maxSize,
            expiry: configuration.expiry,
            concatenationCopies: (store as? any ConcatenatingByteStore)?.concatenationCopiesBytes ?? false,
            instantUpload: store is any ReferencingByteStore && store is any ReadableByteStore
        )
        self.business = business
        self.logger = logger
        self.now = now
    }

    // MARK: Creation

    /// What a client asks for when it creates an upload.
    public struct CreateSpec: Sendable, Equatable {
        public var length: Int64?
        public var metadata: UploadMetadata
        public var isPartial: Bool
        /// The scenario named by the creation URL; nil picks it from the metadata or the default.
        public var scenario: String?
        public var principal: Principal
        /// Who creates it (statistics).
        public var info: RequestInfo
        /// The client's network address (per-client creation limit of anonymous clients).
        public var address: String?
        /// An upload of length 0 is complete at once (tus); RUFH completes only on `Upload-Complete: ?1`.
        public var completesWhenEmpty: Bool
        /// The whole file's SHA-256 as the creator announced it (`Repr-Digest`): the upload
        /// completes only with bytes that have it (docs/instant-upload.md).
        public var announcedSHA256: [UInt8]?
        /// The creation carries no bytes, so an announced digest whose content the platform
        /// holds is answered with a challenge (`UploadRecord.instantChallenge`) instead of
        /// waiting for them.
        public var mayChallenge: Bool

        public init(
            length: Int64?,
            metadata: UploadMetadata = UploadMetadata(),
            isPartial: Bool = false,
            scenario: String? = nil,
            principal: Principal = .anonymous,
            info: RequestInfo = RequestInfo(),
            address: String? = nil,
            completesWhenEmpty: Bool = true,
            announcedSHA256: [UInt8]? = nil,
            mayChallenge: Bool = false
        ) {
            self.mayChallenge = mayChallenge
            self.completesWhenEmpty = completesWhenEmpty
            self.announcedSHA256 = announcedSHA256
            self.info = info
            self.address = address
            self.length = length
            self.metadata = metadata
            self.isPartial = isPartial
            self.scenario = scenario
            self.principal = principal
        }
    }

    /// Creates an empty upload, durably. An upload of length 0 is complete at once.
    public func create(_ spec: CreateSpec) async throws(FerryError) -> UploadRecord {
        let (record, claim) = try await newRecord(spec)
        try await store.create(for: record)
        var inserted = try await insertClaimed(record, claim: claim)
        observers.created(inserted, info: spec.info)
        if inserted.isComplete {
            observers.completed(inserted, at: inserted.createdAt)
            inserted = try await withLock(inserted.id, onStop: {}) { (hold: Hold) async throws(FerryError) -> UploadRecord in
                await self.finishBusiness(inserted, hold)
            }
        }
        logger.debug("upload.created", metadata: ["upload.id": "\(inserted.id)", "upload.length": "\(spec.length.map(String.init) ?? "deferred")"])
        return inserted
    }

    /// A new upload, created under its lock, for the request that created it (`work`: its
    /// creation-with-upload body, through `append(into:)`).
    ///
    /// The lock is taken *before* the record exists: nobody can know the id yet, so it is
    /// granted at once, and nothing another request does can come between the insert and the
    /// body. The body's append then needs neither to read the record back nor to lock again.
    public struct NewUpload: Sendable {
        /// The record as inserted (and, when complete at once, with its business result).
        public let record: UploadRecord
        let hold: Hold
        let stop: StopSignal
    }

    /// Creates an upload like `create(_:)` and runs `work` while its lock is still held; the
    /// lock is released when `work` returns. A locker that can claim the lock in the insert
    /// itself (`InsertingUploadLocker`, PostgreSQL) makes the two one statement.
    public func create<T: Sendable>(_ spec: CreateSpec, holding work: (NewUpload) async -> T) async throws(FerryError) -> T {
        let (record, claim) = try await newRecord(spec)
        let stop = StopSignal()
        guard let inserting = locker as? any InsertingUploadLocker else {
            return try await withLock(record.id, onStop: { stop.fire(.superseded) }) { (hold: Hold) async throws(FerryError) -> T in
                try await self.store.create(for: record)
                let inserted = try await self.insertClaimed(record, claim: claim)
                return await self.created(inserted, spec, hold: hold, stop: stop, work)
            }
        }
        try await store.create(for: record)
        var inserted = record
        let events = events(from: nil, to: &inserted)
        let lease: any UploadLease
        do {
            lease = try await inserting.lock(inserting: inserted, events: events, claim: claim, into: catalog) { stop.fire(.superseded) }
        } catch {
            try? await store.delete(record.id)
            throw error
        }
        if !events.isEmpty { outboxWritten.signal() }
        let result = await created(inserted, spec, hold: Hold(fence: lease.fence), stop: stop, work)
        await lease.release()
        return result
    }

    /// After a creation's insert, under its lock: observed, completed at once when empty, then `work`.
    private func created<T: Sendable>(
        _ record: UploadRecord, _ spec: CreateSpec, hold: Hold, stop: StopSignal, _ work: (NewUpload) async -> T
    ) async -> T {
        var inserted = record
        observers.created(inserted, info: spec.info)
        if inserted.isComplete {
            observers.completed(inserted, at: inserted.createdAt)
            inserted = await finishBusiness(inserted, hold)
        }
        logger.debug("upload.created", metadata: ["upload.id": "\(inserted.id)", "upload.length": "\(spec.length.map(String.init) ?? "deferred")"])
        return await work(NewUpload(record: inserted, hold: hold, stop: stop))
    }

    /// The record of a creation after every check (not stored yet), and its quota claim.
    private func newRecord(_ spec: CreateSpec) async throws(FerryError) -> (UploadRecord, QuotaClaim?) {
        try refuseDuringShutdown()
        if let length = spec.length {
            guard length >= 0 else { throw FerryError(.invalidLength, "Upload-Length must not be negative") }
            if let maxSize = configuration.maxSize, length > maxSize {
                throw FerryError(.maxSizeExceeded, "the upload is larger than this server accepts (\(maxSize) bytes)")
            }
        }
        let (admission, metadata) = try await admitCreation(spec)
        let scenario = admission.scenario
        let id = UploadID.random()
        let date = now()
        var record = UploadRecord(
            id: id,
            length: spec.length,
            metadata: metadata,
            concat: spec.isPartial ? .partial : .none,
            createdAt: date,
            scenario: scenario.name,
            owner: spec.principal.subject,
            quotaKey: quotaKey(spec.principal, address: spec.address),
            network: spec.info.network
        )
        record.expiresAt = expiry(for: record, from: date)
        record.announcedSHA256 = spec.announcedSHA256.map(Hex.encode)
        // Only an upload whose digest the server computes can be found by content (the index key).
        if !spec.isPartial, wantsDigest(record) { record.contentScope = contentScope(of: record, in: scenario) }
        if spec.mayChallenge { record.instantChallenge = try await instantChallenge(for: record, in: scenario) }
        if spec.length == 0, spec.completesWhenEmpty {
            if let announced = record.announcedSHA256, announced != DigestCache.emptySHA256 {
                throw FerryError(.checksumMismatch, "Repr-Digest is not the SHA-256 of an empty file")
            }
            if !scenario.contentTypes.isEmpty {
                try ContentSniffer.check(prefix: [], declared: metadata.string("filetype"), scenario: scenario)
            }
            record.state = .complete
            record.expiresAt = nil
            prepareCompletion(&record, sha256: DigestCache.emptySHA256)
        }
        return (record, admission.claim)
    }

    // MARK: Status

    /// The upload's current record. Interrupts any in-flight request on it first, so the
    /// offset includes everything that request stored.
    public func status(_ id: UploadID, as principal: Principal = .anonymous) async throws(FerryError) -> UploadRecord {
        let began = now()
        try await authorizeBeforeLocking(id, principal)
        let record = try await withLock(id, onStop: {}) { (hold: Hold) async throws(FerryError) -> UploadRecord in
            var record = try await self.loadLive(id, for: principal)
            if record.isFinal, !record.isComplete {
                record = try await self.completeFinalLocked(record, hold)
            } else if !record.isComplete {
                try await self.verifyStored(record, hold)
            }
            return record
        }
        observers.request(RequestEntry(upload: id, at: began, method: "HEAD", offset: record.offset, bytes: 0, outcome: "ok", seconds: now().timeIntervalSince(began)))
        return record
    }

    /// The upload's committed record as `principal` may see it, without taking its lock (an
    /// answer about a request that just failed); nil when unknown, not theirs, or unreadable.
    public func committedRecord(_ id: UploadID, as principal: Principal) async -> UploadRecord? {
        guard let record = try? await catalog.get(id), (try? authorize(record, principal)) != nil else { return nil }
        return record
    }

    // MARK: Termination

    /// Deletes an upload's bytes and leaves a tombstone; in-flight requests on it are stopped.
    public func terminate(_ id: UploadID, as principal: Principal = .anonymous) async throws(FerryError) {
        guard configuration.allowsTermination else {
            throw FerryError(.methodNotAllowed, "this server does not allow deleting uploads")
        }
        try await authorizeBeforeLocking(id, principal)
        try await withLock(id, onStop: {}) { (hold: Hold) async throws(FerryError) in
            let record = try await self.loadLive(id, for: principal, allowExpired: true)
            var terminated = record
            terminated.state = .terminated
            terminated.updatedAt = self.now()
            terminated.expiresAt = nil
            try await self.removeBytes(of: record) { () async throws(FerryError) in _ = try await self.save(record, terminated, hold) }
            self.digests.forget(id)
            self.observers.ended(id, at: terminated.updatedAt, state: .terminated)
            self.logger.debug("upload.terminated", metadata: ["upload.id": "\(id)"])
        }
    }

    // MARK: Content

    /// The record of a complete upload whose bytes can be read back.
    public func completedUpload(_ id: UploadID, as principal: Principal = .anonymous) async throws(FerryError) -> UploadRecord {
        var record = try await loadLive(id, for: principal)
        if record.isFinal, !record.isComplete {
            // As for HEAD: assembled now if its partials are done, 410 if one of them is gone.
            record = try await withLock(id, onStop: {}) { (hold: Hold) async throws(FerryError) -> UploadRecord in
                try await self.completeFinalLocked(try await self.loadLive(id, for: principal), hold)
            }
        }
        guard record.isComplete else {
            throw FerryError(.uploadIncomplete, "the upload is not complete yet")
        }
        return record
    }

    /// Streams `range` of a complete upload (from `completedUpload`) to `consume`.
    public func read(
        _ record: UploadRecord,
        range: Range<Int64>,
        consume: (ByteBuffer) async throws -> Void
    ) async throws {
        guard let readable = store as? any ReadableByteStore else {
            throw FerryError(.methodNotAllowed, "this store cannot serve uploads back")
        }
        try await readable.read(record, range: range, consume: consume)
    }

    // MARK: Shared helpers

    /// An upload's lock, held: every durable write made under it carries its fence.
    struct Hold: Sendable {
        /// The fence of a lock shared between nodes; nil for one this process keeps.
        let fence: LeaseFence?
    }

    /// Runs `body` holding the upload's lock; always releases.
    func withLock<T: Sendable>(
        _ id: UploadID,
        onStop: @escaping @Sendable () -> Void,
        _ body: (Hold) async throws(FerryError) -> T
    ) async throws(FerryError) -> T {
        let lease = try await locker.lock(id, timeout: configuration.lockTimeout, onStopRequest: onStop)
        let result: Result<T, FerryError>
        do throws(FerryError) {
            result = .success(try await body(Hold(fence: lease.fence)))
        } catch {
            result = .failure(error)
        }
        await lease.release()
        return try result.get()
    }

    /// Refuses a request that may not act on the upload *before* it takes the lock: taking the
    /// lock stops the request in flight (newest request wins), which only a request the owner
    /// could have sent may do. The check is repeated under the lock.
    func authorizeBeforeLocking(_ id: UploadID, _ principal: Principal) async throws(FerryError) {
        guard let record = try await catalog.get(id) else {
            throw FerryError(.uploadNotFound, "no upload has this URL")
        }
        try authorize(record, principal)
    }

    /// Loads a record that `principal` may use and that can still be used: 404 when unknown
    /// (or another principal's), 410 when gone or expired.
    func loadLive(_ id: UploadID, for principal: Principal?, allowExpired: Bool = false) async throws(FerryError) -> UploadRecord {
        guard let record = try await catalog.get(id) else {
            throw FerryError(.uploadNotFound, "no upload has this URL")
        }
        if let principal { try authorize(record, principal) }
        if record.state.isGone {
            throw FerryError(.uploadGone, "the upload was \(record.state.rawValue)")
        }
        if !allowExpired, record.state == .incomplete, let expiresAt = record.expiresAt, expiresAt <= now() {
            throw FerryError(.uploadGone, "the upload expired")
        }
        return record
    }

    /// Deletes an upload's bytes and commits its tombstone (`commit`) in the order a crash
    /// between the two cannot make wrong: a store that lists what it holds commits first (a
    /// crash leaves bytes of a gone upload, which the orphan sweep deletes; a complete upload
    /// never says complete without its bytes); one that cannot deletes first (a crash leaves
    /// the record, and the client's retry deletes again), so that it never keeps bytes nobody owns.
    func removeBytes(of record: UploadRecord, commit: () async throws(FerryError) -> Void) async throws(FerryError) {
        guard store is any EnumerableByteStore else {
            try await store.delete(record.id)
            try await commit()
            return
        }
        try await commit()
        do {
            try await store.delete(record.id)
        } catch {
            logger.warning("store.delete_failed", metadata: ["upload.id": "\(record.id)", "error": "\(error)", "note": "the orphan sweep deletes it"])
        }
    }

    /// Marks the upload lost when the store holds fewer bytes than its acknowledged offset.
    func verifyStored(_ record: UploadRecord, _ hold: Hold) async throws(FerryError) {
        let stored = try await store.storedLength(of: record) ?? 0
        guard stored < record.offset else { return }
        var lost = record
        lost.state = .lost
        lost.updatedAt = now()
        lost.expiresAt = nil
        _ = try await save(record, lost, hold)
        logger.error(
            "upload.lost",
            metadata: ["upload.id": "\(record.id)", "upload.offset": "\(record.offset)", "store.length": "\(stored)"]
        )
        throw FerryError(.uploadGone, "the stored bytes of this upload were lost")
    }

    /// When `record`, last written at `date`, expires: its scenario's TTL, else the server's.
    func expiry(for record: UploadRecord, from date: Date) -> Date? {
        guard let expiry = business.scenarios.scenarios[record.scenario]?.expiry ?? configuration.expiry else { return nil }
        return date.addingTimeInterval(expiry.inSeconds)
    }

    /// Inserts a record whose bytes the store already created, under `claim`; when the catalog
    /// refuses it (quota, failure), the store's empty upload is removed again.
    func insertClaimed(_ record: UploadRecord, claim: QuotaClaim?) async throws(FerryError) -> UploadRecord {
        do {
            return try await insertNew(record, claim: claim)
        } catch {
            try? await store.delete(record.id)
            throw error
        }
    }

    func refuseDuringShutdown() throws(FerryError) {
        if appends.isShuttingDown {
            throw FerryError(.shuttingDown, "the server is shutting down; retry shortly")
        }
    }
}
