import Foundation
import Logging

extension UploadEngine {
    // MARK: Authorization

    /// Checks that `principal` may act on `record`: an upload with an owner is its owner's
    /// alone (another principal gets 404, so its existence is not revealed; no token gets
    /// 401); an anonymous upload's URL is its capability.
    func authorize(_ record: UploadRecord, _ principal: Principal) throws(FerryError) {
        guard let owner = record.owner else { return }
        guard principal.subject == owner else {
            if principal.isAnonymous { throw FerryError(.unauthorized, "this upload needs a bearer token") }
            throw FerryError(.uploadNotFound, "no upload has this URL")
        }
        guard principal.mayUse(record.scenario) else {
            throw FerryError(.forbidden, "the token does not grant the scenario \(record.scenario)")
        }
    }

    /// The largest upload `principal` may store in `scenario`.
    func maxSize(in scenario: Scenario?, for principal: Principal) -> Int64? {
        [configuration.maxSize, scenario?.maxSize, quotas(of: principal).maxSize].compactMap { $0 }.min()
    }

    /// Refuses a creation storm: each client (a token's subject, else the address) may create
    /// `creationsPerMinutePerClient` uploads a minute on this node, in bursts of as many.
    func limitCreationRate(_ spec: CreateSpec) throws(FerryError) {
        guard let creationRate, let key = spec.principal.subject.map({ "s:" + $0 }) ?? spec.address.map({ "a:" + ClientAddress.key($0) }) else { return }
        let (allowed, retryAfter) = creationRate.take(key, now: now())
        guard allowed else {
            var error = FerryError(.rateLimited, "this client creates uploads too fast: at most \(creationRate.perMinute) a minute")
            error.retryAfter = retryAfter
            throw error
        }
    }

    /// The quotas of `principal` (`BusinessRules.quotas(of:)`).
    func quotas(of principal: Principal) -> Quotas { business.quotas(of: principal) }

    /// Whom a new upload of `principal`, created from `address`, counts against.
    func quotaKey(_ principal: Principal, address: String?) -> String? { QuotaKey.of(principal, address: address) }

    /// The quota claim of bytes added to an existing upload: counted under the key it was
    /// created with (an anonymous client that moved to another address still fills the
    /// quota of the one it started from).
    func quotaClaim(adding bytes: Int64, to record: UploadRecord, by principal: Principal) -> QuotaClaim? {
        guard let key = record.quotaKey else { return nil }
        let claim = QuotaClaim(
            owner: key, quotas: record.owner == nil ? business.anonymousQuotas : quotas(of: principal), bytes: bytes, creating: false,
            windowStart: now().addingTimeInterval(-60)
        )
        return claim.isLimited ? claim : nil
    }

    /// Refuses with 429 when `claim` leaves no room. A creation with a `pre-create` call is
    /// checked here early (before the call) and again, atomically, by the catalog's insert.
    func checkQuota(_ claim: QuotaClaim?) async throws(FerryError) {
        guard let claim else { return }
        try claim.check(try await catalog.usage(of: claim.owner, since: claim.countsCreationsSince))
    }

    /// The admission and metadata of a creation, after every rule and the `pre-create` callback.
    func admitCreation(_ spec: CreateSpec) async throws(FerryError) -> (CreationAdmission, UploadMetadata) {
        let admission = try CreationAdmission.decide(spec, business: business, configuration: configuration, at: now())
        try limitCreationRate(spec)
        let scenario = admission.scenario
        var metadata = spec.metadata
        // A partial is a piece of a file, not a file: the business system hears of the final.
        if let url = scenario.preCreate, !spec.isPartial {
            // Early, so the business system is not asked about a creation the quotas refuse; the
            // insert checks again, atomically. Without a call, that check alone decides.
            try await checkQuota(admission.claim)
            let request = PreCreateRequest(scenario: scenario.name, owner: spec.principal.subject, length: spec.length, metadata: metadata)
            switch try await business.callbacks.preCreate(request, url: url, timeout: scenario.callbackTimeout) {
            case .reject(let status, let message):
                var error = FerryError(.rejected, message)
                error.status = status
                throw error
            case .accept(let added):
                for (key, value) in added.sorted(by: { $0.key < $1.key }) { try metadata.set(key, value) }
            }
        }
        return (admission, metadata)
    }

    // MARK: Events

    /// The outbox events a change from `old` (nil: a creation) to `new` produces (`UploadEvents.derive`).
    func events(from old: UploadRecord?, to new: inout UploadRecord) -> [OutboxEvent] {
        UploadEvents.derive(from: old, to: &new, scenario: business.scenarios.scenarios[new.scenario], at: now())
    }

    /// True when someone consumes the file digest: a `pre-finish` callback or a webhook, or a
    /// digest its creator announced, to be checked (and then the content index's key: instant
    /// upload indexes the uploads whose digest is computed, docs/instant-upload.md). Other
    /// uploads skip the hashing (and, on a cache miss, the read-back): hashing every upload
    /// would cost a fifth of a large upload's throughput on a two-core server (bench/README.md).
    func wantsDigest(_ record: UploadRecord) -> Bool {
        if record.announcedSHA256 != nil { return true }
        guard record.concat != .partial, let scenario = business.scenarios.scenarios[record.scenario] else { return false }
        return scenario.preFinish != nil || !scenario.webhooks.isEmpty
    }

    /// Commits `new` (which replaces `old`) with the events the change produces; with a
    /// `claim`, only if the owner's quotas still allow it (checked by the catalog in the same
    /// transaction as the write).
    func save(_ old: UploadRecord, _ new: UploadRecord, _ hold: Hold, claim: QuotaClaim? = nil) async throws(FerryError) -> UploadRecord {
        var updated = new
        let events = events(from: old, to: &updated)
        if let claim {
            try await catalog.update(updated, events: events, fence: hold.fence, claim: claim)
        } else {
            try await catalog.update(updated, events: events, fence: hold.fence)
        }
        if !events.isEmpty { outboxWritten.signal() }
        return updated
    }

    /// Inserts a new record with its `upload.created` (and, for an empty upload, `upload.completed`)
    /// events; with a `claim`, only if the owner's quotas still allow it (checked by the catalog
    /// in the insert's own transaction).
    func insertNew(_ record: UploadRecord, claim: QuotaClaim? = nil) async throws(FerryError) -> UploadRecord {
        var inserted = record
        let events = events(from: nil, to: &inserted)
        try await catalog.insert(inserted, events: events, claim: claim)
        if !events.isEmpty { outboxWritten.signal() }
        return inserted
    }

    // MARK: The business result

    /// Marks a record that is about to complete: its digest, and a pending business result
    /// when its scenario has a `pre-finish` callback (so a crash right after the commit
    /// leaves the callback to the retry service).
    func prepareCompletion(_ record: inout UploadRecord, sha256: String?) {
        record.sha256 = sha256
        if record.concat != .partial, business.scenarios.scenarios[record.scenario]?.preFinish != nil, record.business == nil {
            record.business = BusinessResult(status: .pending, nextAttemptAt: now())
        }
    }

    /// Calls the `pre-finish` callback of a complete upload whose result is pending and stores
    /// the answer; on failure schedules a retry. The caller holds the upload's lock.
    func finishBusiness(_ record: UploadRecord, _ hold: Hold) async -> UploadRecord {
        guard var business = record.business, business.status == .pending,
            let scenario = self.business.scenarios.scenarios[record.scenario], let url = scenario.preFinish
        else { return record }
        var updated = record
        business.attempts += 1
        do {
            let json = try await self.business.callbacks.preFinish(record, location: store.location(of: record), url: url, timeout: scenario.callbackTimeout)
            business.status = .done
            business.json = json
            business.nextAttemptAt = nil
        } catch {
            let base = self.business.retryBase.inSeconds
            let delay = min(self.business.retryCap.inSeconds, base * pow(2, Double(min(business.attempts - 1, 30))))
            let date = now()
            if date.timeIntervalSince(record.createdAt) > self.business.retryFor.inSeconds {
                business.status = .failed
                business.nextAttemptAt = nil
            } else {
                business.nextAttemptAt = date.addingTimeInterval(delay)
            }
            logger.warning(
                "business.pre_finish_failed",
                metadata: ["upload.id": "\(record.id)", "attempts": "\(business.attempts)", "error": "\(error)"]
            )
        }
        updated.business = business
        do {
            try await catalog.update(updated, events: [], fence: hold.fence)
            return updated
        } catch {
            logger.error("business.save_failed", metadata: ["upload.id": "\(record.id)", "error": "\(error)"])
            return record
        }
    }

    /// Retries due `pre-finish` callbacks (the `BusinessRetryService` calls it); returns how many were tried.
    @discardableResult
    public func retryPendingBusiness(batch: Int = 50) async -> Int {
        let candidates: [UploadRecord]
        do {
            candidates = try await catalog.pendingBusinessResults(before: now(), limit: batch)
        } catch {
            logger.error("business.retry_failed", metadata: ["error": "\(error)"])
            return 0
        }
        // Several at once: after an outage of the business system, a backlog clears in
        // parallel rather than one callback timeout after another.
        return await withTaskGroup(of: Bool.self) { group in
            var tried = 0
            var running = 0
            for candidate in candidates {
                if running >= 8, let done = await group.next() {
                    running -= 1
                    if done { tried += 1 }
                }
                running += 1
                group.addTask { await self.retryBusiness(candidate.id) }
            }
            for await done in group where done { tried += 1 }
            return tried
        }
    }

    /// One retry of a pending `pre-finish`, under the upload's lock; false when it was not due.
    private func retryBusiness(_ id: UploadID) async -> Bool {
        do {
            return try await withLock(id, onStop: {}) { (hold: Hold) async throws(FerryError) -> Bool in
                guard let record = try await self.catalog.get(id), record.isComplete,
                    record.business?.status == .pending, (record.business?.nextAttemptAt ?? .distantPast) <= self.now()
                else { return false }
                _ = await self.finishBusiness(record, hold)
                return true
            }
        } catch {
            logger.error("business.retry_failed", metadata: ["upload.id": "\(id)", "error": "\(error)"])
            return false
        }
    }
}
