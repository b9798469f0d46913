import Logging

extension UploadEngine {
    /// Creates a concatenation final from partial uploads (tus `concatenation`).
    ///
    /// The partials may still be incomplete (`concatenation-unfinished`): the final is
    /// assembled, server-side, as soon as the last of them completes.
    public func createFinal(
        parts: [UploadID],
        metadata: UploadMetadata,
        scenario: String? = nil,
        principal: Principal = .anonymous,
        address: String? = nil,
        request: String? = nil,
        info: RequestInfo = RequestInfo()
    ) async throws(FerryError) -> UploadRecord {
        try refuseDuringShutdown()
        guard capabilities.concatenation else {
            throw FerryError(.invalidConcat, "this server does not concatenate uploads")
        }
        guard !parts.isEmpty else {
            throw FerryError(.invalidConcat, "a final upload lists at least one partial upload")
        }
        // One small request must not make the server write a file many times its parts' size.
        guard parts.count <= configuration.maxConcatParts else {
            throw FerryError(.invalidConcat, "a final upload lists at most \(configuration.maxConcatParts) partial uploads")
        }
        guard Set(parts).count == parts.count else {
            throw FerryError(.invalidConcat, "a partial upload is listed more than once")
        }
        let (admission, admitted) = try await admitCreation(CreateSpec(length: nil, metadata: metadata, scenario: scenario, principal: principal, address: address))
        let chosen = admission.scenario
        var total: Int64? = 0
        for part in parts {
            // Another principal's partial is reported as missing, like any upload of theirs.
            guard let record = try await catalog.get(part), !record.state.isGone,
                (try? authorize(record, principal)) != nil, record.owner == principal.subject
            else {
                throw FerryError(.invalidConcat, "a listed partial upload does not exist")
            }
            guard record.scenario == chosen.name else {
                throw FerryError(.invalidConcat, "a listed partial upload belongs to another scenario")
            }
            guard record.concat == .partial else {
                throw FerryError(.invalidConcat, "a listed upload was not created as a partial upload")
            }
            if let length = record.length, let sum = total {
                total = try sum.adding(length, or: .maxSizeExceeded, "the concatenation is larger than this server accepts")
            } else {
                total = nil
            }
        }
        if let total, let maxSize = maxSize(in: chosen, for: principal), total > maxSize {
            throw FerryError(.maxSizeExceeded, "the concatenation is larger than this server accepts")
        }
        let id = UploadID.random()
        let date = now()
        var record = UploadRecord(
            id: id,
            length: total,
            metadata: admitted,
            concat: .final(parts),
            createdAt: date,
            scenario: chosen.name,
            owner: principal.subject,
            quotaKey: quotaKey(principal, address: address),
            concatRequest: request,
            network: info.network
        )
        record.expiresAt = expiry(for: record, from: date)
        try await store.create(for: record)
        record = try await insertClaimed(record, claim: admission.claim)
        observers.created(record, info: info)
        return try await withLock(id, onStop: {}) { (hold: Hold) async throws(FerryError) -> UploadRecord in
            try await self.completeFinalLocked(record, hold)
        }
    }

    /// Assembles a final whose partials are all complete; the caller holds the final's lock.
    func completeFinalLocked(_ final: UploadRecord, _ hold: Hold) async throws(FerryError) -> UploadRecord {
        guard !final.isComplete, let concatenating = store as? any ConcatenatingByteStore else { return final }
        var parts: [UploadRecord] = []
        var known: Int64? = 0
        var ready = true
        for part in final.partials {
            guard let record = try await catalog.get(part), !record.state.isGone else {
                throw FerryError(.uploadGone, "a partial upload of this final is gone")
            }
            if let length = record.length, let sum = known { known = sum.saturatingAdding(length) } else { known = nil }
            if record.isComplete { parts.append(record) } else { ready = false }
        }
        var updated = final
        if updated.length == nil, let known { updated.length = known }
        guard ready else {
            if updated != final { updated = try await save(final, updated, hold) }
            return updated
        }
        updated.storeState = try await concatenating.concatenate(parts, into: final, fence: hold.fence)
        let total = parts.map(\.offset).saturatingSum()
        updated.length = total
        updated.offset = total
        updated.state = .complete
        updated.expiresAt = nil
        updated.updatedAt = now()
        if let scenario = business.scenarios.scenarios[updated.scenario], !scenario.contentTypes.isEmpty {
            try await sniffStored(updated, scenario)
        }
        prepareCompletion(&updated, sha256: wantsDigest(updated) ? try await readBackDigest(updated).map(DigestCache.hex) : nil)
        updated = try await save(final, updated, hold)
        observers.completed(updated, at: updated.updatedAt)
        logger.debug("upload.concatenated", metadata: ["upload.id": "\(final.id)", "upload.length": "\(total)"])
        return await finishBusiness(updated, hold)
    }

    /// After a partial completes: assembles every final that was waiting for it.
    func completeFinals(referencing partial: UploadID) async {
        do {
            for finalID in try await catalog.finals(referencing: partial) {
                _ = try await withLock(finalID, onStop: {}) { (hold: Hold) async throws(FerryError) -> UploadRecord in
                    let final = try await self.loadLive(finalID, for: nil)
                    return try await self.completeFinalLocked(final, hold)
                }
            }
        } catch {
            // The final assembles on its next HEAD instead.
            logger.warning("concatenation.deferred", metadata: ["upload.id": "\(partial)", "error": "\(error)"])
        }
    }
}

extension UploadEngine {
    /// Checks the first bytes of an assembled final against its scenario's content types.
    func sniffStored(_ record: UploadRecord, _ scenario: Scenario) async throws(FerryError) {
        guard let readable = store as? any ReadableByteStore else { return }
        var prefix: [UInt8] = []
        do {
            try await readable.read(record, range: 0..<min(record.offset, Int64(ContentSniffer.prefixLength))) { buffer in
                prefix += buffer.readableBytesView
            }
        } catch {
            throw error as? FerryError ?? FerryError(.storageFailure, "the upload could not be read back", underlying: error)
        }
        try ContentSniffer.check(prefix: prefix, declared: record.metadata.string("filetype"), scenario: scenario)
    }
}
