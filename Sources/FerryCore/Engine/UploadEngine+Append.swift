import Crypto
import Foundation
import Logging
import NIOCore

extension UploadEngine {
    /// Appends a request body to an upload and returns the record with the new durable offset.
    ///
    /// The body is streamed to the store (never collected). Whatever the store received
    /// before the body ended, broke, or was stopped by a newer request is synced and
    /// committed, unless the request carried a checksum that could not be verified.
    /// A stopped or broken request still throws after saving, so its (probably dead)
    /// client sees an error while the next request sees the saved offset.
    public func append<Body: AsyncSequence & Sendable>(
        _ id: UploadID,
        _ request: AppendRequest,
        body: Body,
        transport: some BodyTransport,
        as principal: Principal = .anonymous
    ) async throws(FerryError) -> UploadRecord where Body.Element == ByteBuffer {
        if let proof = request.proof { return try await prove(id, request, proof: proof, as: principal) }
        let stop = StopSignal()
        return try await appending(id, request, stop: stop) { (report: inout AppendReport) async throws(FerryError) -> UploadRecord in
            try await self.authorizeBeforeLocking(id, principal)
            return try await self.withLock(id, onStop: { stop.fire(.superseded) }) { (hold: Hold) async throws(FerryError) -> UploadRecord in
                var record = try await self.loadLive(id, for: principal)
                let limit = try await self.admit(request, to: &record, principal, hold)
                if record.offset > 0 || request.offset > 0 { try await self.verifyStored(record, hold) }
                await transport.willReadBody()
                return try await self.receive(
                    into: record, request, limit: limit, body: body, transport: transport, stop: stop, hold: hold, first: false, report: &report
                )
            }
        }
    }

    /// Appends the body of the request that created `upload` (`create(_:holding:)`), under the
    /// lock taken with it: the record is the one just inserted, so it is neither read back nor
    /// locked again, and the store knows no earlier request left bytes behind.
    public func append<Body: AsyncSequence & Sendable>(
        into upload: NewUpload,
        _ request: AppendRequest,
        body: Body,
        transport: some BodyTransport,
        as principal: Principal = .anonymous
    ) async throws(FerryError) -> UploadRecord where Body.Element == ByteBuffer {
        try await appending(upload.record.id, request, stop: upload.stop) { (report: inout AppendReport) async throws(FerryError) -> UploadRecord in
            var record = upload.record
            if record.state.isGone { throw FerryError(.uploadGone, "the upload was \(record.state.rawValue)") }
            let limit = try await self.admit(request, to: &record, principal, upload.hold)
            await transport.willReadBody()
            return try await self.receive(
                into: record, request, limit: limit, body: body, transport: transport, stop: upload.stop, hold: upload.hold, first: true,
                report: &report
            )
        }
    }

    /// One append's frame: registered for the shutdown drain, observed, and recorded as one
    /// statistics entry however it ended.
    func appending(
        _ id: UploadID,
        _ request: AppendRequest,
        stop: StopSignal,
        _ work: (inout AppendReport) async throws(FerryError) -> UploadRecord
    ) async throws(FerryError) -> UploadRecord {
        guard let key = appends.register(stop) else {
            throw FerryError(.shuttingDown, "the server is shutting down; retry shortly")
        }
        observers.appendStarted()
        defer {
            appends.unregister(key)
            observers.appendEnded()
        }
        let began = now()
        var report = AppendReport(began: began)
        let result: Result<UploadRecord, FerryError>
        do {
            result = .success(try await work(&report))
        } catch {
            result = .failure(error)
        }
        // One entry per request, however it ended (refused before a byte was read: its code).
        var outcome = report.outcome ?? "ok"
        if report.outcome == nil, case .failure(let error) = result { outcome = error.code.rawValue }
        observers.request(
            RequestEntry(
                upload: id, at: began, method: request.method, offset: request.offset, bytes: report.received, outcome: outcome,
                seconds: now().timeIntervalSince(began)
            )
        )
        return try result.get()
    }

    /// When an append began, what it received and how it ended, for its statistics entry (and
    /// the record's `firstByteAt`, when it stores the upload's first bytes).
    struct AppendReport {
        let began: Date
        var received: Int64 = 0
        /// `ok`, `interrupted` or an error code; nil when the body was never read.
        var outcome: String?
    }

    /// Checks an append against the stored record before any byte is read; returns the
    /// most bytes the body may carry.
    private func admit(_ request: AppendRequest, to record: inout UploadRecord, _ principal: Principal, _ hold: Hold) async throws(FerryError) -> Int64? {
        let scenario = business.scenarios.scenarios[record.scenario]
        let maxSize = self.maxSize(in: scenario, for: principal)
        let stored = record
        var declaration: QuotaClaim?
        if record.isFinal {
            throw FerryError(.modifyFinal, "a concatenation final cannot be appended to")
        }
        if request.refusesComplete, record.isComplete {
            throw FerryError(.uploadCompleted, "the upload is already complete; nothing was changed")
        }
        guard request.offset == record.offset else {
            throw FerryError(.offsetMismatch, "Upload-Offset \(request.offset) differs from the stored offset \(record.offset)")
        }
        if let declared = request.declaredLength {
            if let length = record.length {
                guard declared == length else {
                    throw FerryError(.lengthImmutable, "Upload-Length was already set to \(length)")
                }
            } else {
                guard declared >= record.offset else {
                    throw FerryError(.invalidLength, "Upload-Length is smaller than the bytes already stored")
                }
                if let maxSize, declared > maxSize {
                    throw FerryError(.maxSizeExceeded, "the upload is larger than this server accepts (\(maxSize) bytes)")
                }
                declaration = quotaClaim(adding: declared - record.offset, to: record, by: principal)
                record.length = declared
            }
        }
        if scenario?.checksumRequired == true, request.checksum == nil, !request.expectsTrailerChecksum {
            throw FerryError(.checksumRequired, "the scenario \(record.scenario) requires Upload-Checksum on every PATCH")
        }
        // Every request (so also the one that completes the upload) is checked against the
        // principal's limits again: they may have changed since the creation (another token, a
        // lowered limit).
        if let length = record.length, let maxSize, length > maxSize {
            throw FerryError(.maxSizeExceeded, "the upload is larger than this token or scenario accepts (\(maxSize) bytes)")
        }
        var limit: Int64? = record.length.map { $0 - record.offset } ?? maxSize.map { $0 - record.offset }
        if let limit, let contentLength = request.contentLength, contentLength > limit {
            throw record.length == nil
                ? FerryError(.maxSizeExceeded, "the upload would exceed the largest size this server accepts")
                : FerryError(.lengthExceeded, "the body would run past Upload-Length")
        }
        // A deferred length grows with every byte: those bytes count against `open-bytes`.
        if record.length == nil, let room = try await reserveRoom(request, in: &record, limit: limit, principal, hold) {
            limit = room
        }
        if let declaration {
            // A declared length counts against `open-bytes` from now on: committed before the
            // body, under the claim (counted in the write's own transaction), so that two
            // uploads cannot both take the owner's last bytes.
            record.updatedAt = now()
            record = try await save(stored, record, hold, claim: declaration)
        }
        return limit
    }

    /// Under an `open-bytes` quota, claims the room an append to a deferred-length upload may
    /// fill, before its body: `record.reservedTo` is written with the owner's usage checked in
    /// the same transaction (`QuotaCatalog`), so that two appends (on any nodes) cannot both take
    /// the owner's last bytes. The append settles with the reservation released; one left by a
    /// crash is this upload's to reuse. Returns the most bytes the body may carry (nil: no quota).
    private func reserveRoom(
        _ request: AppendRequest, in record: inout UploadRecord, limit: Int64?, _ principal: Principal, _ hold: Hold
    ) async throws(FerryError) -> Int64? {
        guard var claim = quotaClaim(adding: 0, to: record, by: principal), let openBytes = claim.quotas.openBytes else { return nil }
        let held = record.openBytes
        var take = Swift.min(limit ?? .max, request.contentLength ?? .max)
        if request.contentLength == nil {
            // A body of unknown size holds all the room there is (a plain read; the claim
            // below checks it again, atomically).
            let usage = try await catalog.usage(of: claim.owner, since: nil)
            take = Swift.min(take, Swift.max(0, openBytes.saturatingSubtracting(usage.openBytes).saturatingAdding(held - record.offset)))
        }
        guard take > 0 else { return 0 }
        let stored = record
        record.reservedTo = record.offset.saturatingAdding(take)
        claim.bytes = record.openBytes - held
        record.updatedAt = now()
        record = try await save(stored, record, hold, claim: claim)
        return take
    }

    /// Releases the room held by an append whose bytes were not kept. On failure it stays held
    /// (logged) until the upload's next append reuses it or the upload ends.
    private func releaseRoom(_ record: UploadRecord, _ hold: Hold) async -> UploadRecord {
        var released = record
        released.reservedTo = nil
        do {
            return try await save(record, released, hold)
        } catch {
            logger.warning("append.room_not_released", metadata: ["upload.id": "\(record.id)", "error": "\(error)"])
            return record
        }
    }

    private func receive<Body: AsyncSequence & Sendable>(
        into start: UploadRecord,
        _ request: AppendRequest,
        limit: Int64?,
        body: Body,
        transport: some BodyTransport,
        stop: StopSignal,
        hold: Hold,
        first: Bool,
        report: inout AppendReport
    ) async throws(FerryError) -> UploadRecord where Body.Element == ByteBuffer {
        let writer = first ? try await store.openFirstWriter(for: start, fence: hold.fence) : try await store.openWriter(for: start, fence: hold.fence)
        let hashesFile = wantsDigest(start) || request.wantsDigest
        let startDigest = hashesFile ? digests.take(start.id, at: start.offset) : nil
        let finished = await run(
            bodyReceiver(writer, start, request, limit: limit, digest: startDigest, transport: transport, began: report.began, hold: hold), body,
            stop: stop
        )
        return try await conclude(finished, start, request, writer: writer, startDigest: startDigest, transport: transport, stop: stop, hold: hold, report: &report)
    }

    /// Everything after an append's body ended, in a frame of its own (allocated only then):
    /// decide, settle what is kept, complete, answer.
    private func conclude(
        _ finished: BodyReceiver.Finished,
        _ start: UploadRecord,
        _ request: AppendRequest,
        writer: any ByteWriter,
        startDigest: SHA256?,
        transport: some BodyTransport,
        stop: StopSignal,
        hold: Hold,
        report: inout AppendReport
    ) async throws(FerryError) -> UploadRecord {
        let outcome = finished.outcome
        observers.received(bytes: outcome.received)
        report.received = outcome.received

        var end = BodyEnd(complete: false)
        if outcome.bodyEnded, outcome.failure == nil {
            end = await transport.bodyEnded()
            if let contentLength = request.contentLength, outcome.received != contentLength { end.complete = false }
        }
        let context: Logger.Metadata = ["upload.id": "\(start.id)", "upload.offset": "\(start.offset)", "request.bytes": "\(outcome.received)"]
        let verdict = AppendDecision.verdict(
            request, knownLength: start.length != nil, exceeded: outcome.exceeded, receiverFailure: outcome.failure, end: end,
            matches: { outcome.hasher.matches($0) }
        )
        var settled = Settlement(record: outcome.committed, keep: verdict.keep, failure: verdict.failure)
        if settled.keep {
            do {
                settled = try await settle(
                    settled, outcome, start, request, end: end, startDigest: startDigest, began: report.began, writer: writer, hold: hold, context: context
                )
            } catch {
                await writer.close()
                if error.code == .requestSuperseded {
                    // A shared lock was lost (another node took the upload over): not a fault.
                    logger.info("append.not_saved_superseded", metadata: context.merging(["error": "\(error)"]) { $1 })
                } else {
                    logger.error("append.save_failed", metadata: context.merging(["error": "\(error)"]) { $1 })
                }
                let failed = settled.failure ?? error
                report.outcome = failed.code.rawValue
                throw failed
            }
        }
        if !settled.keep, settled.record.reservedTo != nil {
            settled.record = await releaseRoom(settled.record, hold)
        }
        var record = settled.record
        if !settled.keep, let startDigest, record.offset == start.offset {
            digests.put(start.id, at: start.offset, startDigest)
        }
        await writer.close()
        let stopReason = end.complete ? nil : stop.reason
        let ending = AppendDecision.ending(failure: settled.failure, stop: stopReason, bodyComplete: end.complete, stored: record.offset)
        report.outcome = ending.outcome
        if record.isComplete, !start.isComplete {
            observers.completed(record, at: now())
            logger.debug("upload.completed", metadata: context)
            record = await finishBusiness(record, hold)
            if record.concat == .partial { await completeFinals(referencing: record.id) }
        }
        if let error = ending.error {
            if settled.failure == nil {
                observers.interrupted()
                let reason = stopReason.map { "\($0)" } ?? "body ended early"
                logger.info("append.stopped", metadata: context.merging(["reason": "\(reason)", "upload.saved": "\(record.offset)"]) { $1 })
            }
            throw error
        }
        return record
    }

    /// Runs the receiver against a newer request or shutdown: whichever comes first ends the
    /// body (after a stop, bytes already arriving are drained for a moment).
    private func run<Body: AsyncSequence & Sendable>(_ receiver: BodyReceiver, _ body: Body, stop: StopSignal) async -> BodyReceiver.Finished
    where Body.Element == ByteBuffer {
        await withTaskGroup(of: BodyReceiver.Finished?.self) { group in
            group.addTask { BodyReceiver.Finished(await receiver.run(body)) }
            group.addTask {
                guard await stop.wait() != nil else { return nil }
                // Keep what is already arriving (a dead connection's buffered bytes) before stopping.
                await receiver.drain(quiet: .milliseconds(150), limit: .seconds(2))
                return nil
            }
            var finished: BodyReceiver.Finished?
            while let next = await group.next() {
                group.cancelAll()
                if let next { finished = next }
            }
            return finished
                ?? BodyReceiver.Finished(
                    BodyReceiver.Outcome(
                        received: 0, bodyEnded: false, exceeded: false, hasher: BodyHasher(algorithms: []), committed: receiver.start, failure: nil, digest: nil
                    )
                )
        }
    }

    /// What is kept of an append once its body ended, and the error it ends in.
    private struct Settlement {
        var record: UploadRecord
        var keep: Bool
        var failure: FerryError?
    }

    /// Syncs what an append stored and commits it: completes the upload when the decision says
    /// so (with its digest, checked against `Repr-Digest`), else keeps the running digest.
    private func settle(
        _ settlement: Settlement,
        _ outcome: BodyReceiver.Outcome,
        _ start: UploadRecord,
        _ request: AppendRequest,
        end: BodyEnd,
        startDigest: SHA256?,
        began: Date,
        writer: any ByteWriter,
        hold: Hold,
        context: Logger.Metadata
    ) async throws(FerryError) -> Settlement {
        var settled = settlement
        // The bytes are counted by the offset from now on: the room this append held is released.
        settled.record.reservedTo = nil
        let durable = try await writer.sync()
        let state = await writer.syncedState()
        let completion = AppendDecision.completion(request, end: end, failed: settled.failure != nil, length: settled.record.length, durable: durable)
        if case .inconsistent(let length, let stored) = completion {
            settled.failure = FerryError(.inconsistentLength, "the request said it completes the upload, but \(stored) of \(length) bytes are stored")
        }
        // The running digest is valid only if it covers exactly the durable bytes.
        var digest = durable == start.offset + outcome.received ? outcome.digest : durable == start.offset ? startDigest : nil
        var sha256: String?
        guard case .complete(let length) = completion else {
            if let digest { digests.put(start.id, at: durable, digest) }
            settled.record = try await commit(settled.record, offset: durable, state: state, firstByteAt: began, completes: false, hold)
            await writer.committed()
            return settled
        }
        settled.record.length = length
        if digest == nil, wantsDigest(settled.record) || request.wantsDigest {
            var finished = settled.record
            (finished.offset, finished.storeState, finished.state) = (durable, state, .complete)
            do {
                digest = try await readBackDigest(finished)
            } catch {
                // The bytes are safe: complete without a digest rather than fail the upload.
                logger.warning("upload.digest_unavailable", metadata: context.merging(["error": "\(error)"]) { $1 })
            }
        }
        // This request's Repr-Digest, else the one announced at creation (kept with the upload).
        let expected = request.expectedSHA256 ?? start.announcedSHA256.flatMap(Hex.decode)
        if let expected, let digest, Array(digest.finalize()) != expected {
            // The whole representation is wrong: the upload stays as it was before this request.
            settled.keep = false
            settled.failure = FerryError(.checksumMismatch, "the upload does not match Repr-Digest; this request's bytes were not kept")
            return settled
        }
        sha256 = digest.map(DigestCache.hex)
        digests.forget(start.id)
        settled.record = try await commit(settled.record, offset: durable, state: state, sha256: sha256, firstByteAt: began, completes: true, hold)
        return settled
    }

    /// The receiver of one append's body: what it hashes, where it checkpoints, what it sniffs.
    private func bodyReceiver(
        _ writer: any ByteWriter,
        _ start: UploadRecord,
        _ request: AppendRequest,
        limit: Int64?,
        digest: SHA256?,
        transport: some BodyTransport,
        began: Date,
        hold: Hold
    ) -> BodyReceiver {
        let hashAll = request.expectsTrailerChecksum && request.checksum == nil
        var sniff: BodyReceiver.Sniff?
        // A partial may be any piece of the file: its final is checked once assembled.
        if start.offset == 0, start.concat != .partial, let scenario = business.scenarios.scenarios[start.scenario], !scenario.contentTypes.isEmpty {
            sniff = BodyReceiver.Sniff(scenario: scenario, declared: start.metadata.string("filetype"), length: start.length)
        }
        // A request with a digest keeps nothing before it is checked: no checkpoints.
        let checkpoints = request.checksum == nil && !request.expectsTrailerChecksum
        return BodyReceiver(
            writer: writer,
            sink: AppendCheckpoints(engine: self, transport: transport, completesAtLength: request.completesAtLength, began: began, hold: hold),
            start: start,
            limit: limit,
            hashing: hashAll ? Array(ChecksumAlgorithm.allCases) : request.checksum.map { [$0.algorithm] } ?? [],
            checkpoints: checkpoints ? BodyReceiver.Checkpoints(bytes: configuration.checkpointBytes, interval: configuration.checkpointInterval) : nil,
            digest: digest,
            sniff: sniff,
            clock: clock
        )
    }

    /// Commits a synced offset (and the store's state for it); the upload is complete once the
    /// offset reaches its length. The first commit of stored bytes also records `firstByteAt`
    /// (when their request began), in the same write.
    func commit(
        _ record: UploadRecord, offset: Int64, state: String?, sha256: String? = nil, firstByteAt: Date? = nil, completes: Bool, _ hold: Hold
    ) async throws(FerryError) -> UploadRecord {
        var updated = record
        updated.offset = offset
        updated.storeState = state
        // Bytes sent instead of a proof use the challenge up (docs/instant-upload.md).
        if offset > 0 { updated.instantChallenge = nil }
        if updated.firstByteAt == nil, offset > 0 { updated.firstByteAt = firstByteAt }
        let date = now()
        updated.updatedAt = date
        if completes, let length = updated.length, offset == length {
            updated.state = .complete
            updated.expiresAt = nil
            prepareCompletion(&updated, sha256: sha256)
        } else {
            updated.expiresAt = expiry(for: updated, from: date)
        }
        guard updated != record else { return record }
        return try await save(record, updated, hold)
    }

    /// The SHA-256 of a complete upload, read back from the store (when the running digest
    /// was lost between requests); nil when the store cannot serve bytes back.
    func readBackDigest(_ record: UploadRecord) async throws(FerryError) -> SHA256? {
        guard let readable = store as? any ReadableByteStore else { return nil }
        var hash = SHA256()
        do {
            try await readable.read(record, range: 0..<record.offset) { buffer in
                buffer.withUnsafeReadableBytes { hash.update(bufferPointer: $0) }
            }
        } catch {
            throw error as? FerryError ?? FerryError(.storageFailure, "the upload could not be read back to hash it", underlying: error)
        }
        return hash
    }
}
