import FerryInstant
import Foundation
import Logging
import NIOCore

/// Instant upload (docs/instant-upload.md): a creation that announces content the platform
/// already holds is challenged, and a correct proof completes it from the held bytes.
extension UploadEngine {
    /// The content-index key of a new upload (`InstantUploadRules.scopeKey`); nil when its
    /// scenario or the store takes no part.
    func contentScope(of record: UploadRecord, in scenario: Scenario) -> String? {
        guard capabilities.instantUpload else { return nil }
        return scenario.instantUpload.scopeKey(scenario: scenario.name, owner: record.owner)
    }

    /// The challenge for a new upload whose announced content a complete upload in its scope
    /// holds, as `UploadRecord.instantChallenge` stores it; nil when nothing matches.
    ///
    /// The lookup runs for every announced creation, match or not, so the answer's time says no
    /// more than the answer. A failed lookup only costs the client its bytes: logged, no challenge.
    func instantChallenge(for record: UploadRecord, in scenario: Scenario) async throws(FerryError) -> String? {
        guard let scope = record.contentScope, let sha256 = record.announcedSHA256, let length = record.length, length > 0 else { return nil }
        let holder: UploadRecord?
        do {
            holder = try await catalog.holders(scope: scope, sha256: sha256, length: length, limit: 1).first
        } catch {
            logger.warning("instant.lookup_failed", metadata: ["upload.id": "\(record.id)", "error": "\(error)"])
            return nil
        }
        guard let holder else { return nil }
        let rules = scenario.instantUpload
        let expires = Int64((now().timeIntervalSince1970 + rules.challengeTTL.inSeconds).rounded(.up))
        var generator = SystemRandomNumberGenerator()
        guard let challenge = InstantChallenge.make(length: length, count: rules.ranges, expires: expires, using: &generator) else { return nil }
        return holder.id.rawValue + " " + challenge.fieldValue
    }

    /// Answers a `Ferry-Proof` (`request.proof`): a correct one completes the upload from the
    /// content a complete upload in its scope holds, through the normal completion (events, the
    /// `pre-finish` callback, statistics); any other answer uses the challenge up and leaves an
    /// ordinary empty upload.
    func prove(_ id: UploadID, _ request: AppendRequest, proof: [UInt8], as principal: Principal) async throws(FerryError) -> UploadRecord {
        try await appending(id, request, stop: StopSignal()) { (report: inout AppendReport) async throws(FerryError) -> UploadRecord in
            try await self.authorizeBeforeLocking(id, principal)
            let record = try await self.withLock(id, onStop: {}) { (hold: Hold) async throws(FerryError) -> UploadRecord in
                let record = try await self.loadLive(id, for: principal)
                let completed = try await self.proveLocked(record, request, proof, principal, hold)
                self.observers.completed(completed, at: completed.updatedAt)
                self.observers.completedInstantly(completed)
                self.logger.debug("upload.completed_instantly", metadata: ["upload.id": "\(id)", "upload.length": "\(completed.offset)"])
                return await self.finishBusiness(completed, hold)
            }
            report.outcome = "instant"
            return record
        }
    }

    /// Checks the proof under the upload's lock and, when it is right, stores the held content as
    /// the upload's and commits it complete.
    private func proveLocked(
        _ record: UploadRecord, _ request: AppendRequest, _ proof: [UInt8], _ principal: Principal, _ hold: Hold
    ) async throws(FerryError) -> UploadRecord {
        guard record.offset == 0, !record.isComplete, let pending = PendingChallenge(record), let length = record.length,
            let sha256 = record.announcedSHA256, let scope = record.contentScope
        else { throw FerryError(.noChallenge, "this upload has no instant-upload challenge pending; send its bytes") }
        guard request.offset == 0 else {
            throw FerryError(.offsetMismatch, "Upload-Offset \(request.offset) differs from the stored offset 0")
        }
        // One answer per challenge, whatever it comes to.
        var used = record
        used.instantChallenge = nil
        used.updatedAt = now()
        guard Int64(now().timeIntervalSince1970) <= pending.challenge.expires else {
            throw try await refuse(record, used, hold, FerryError(.proofExpired, "the challenge expired; send the upload's bytes"))
        }
        let scenario = business.scenarios.scenarios[record.scenario]
        if let maxSize = maxSize(in: scenario, for: principal), length > maxSize {
            throw try await refuse(record, used, hold, FerryError(.maxSizeExceeded, "the upload is larger than this token or scenario accepts (\(maxSize) bytes)"))
        }
        guard let referencing = store as? any ReferencingByteStore else {
            throw try await refuse(record, used, hold, FerryError(.contentGone, "this store cannot store content by reference"))
        }
        // The challenged holder first, then any other that holds the same content (the first may
        // be being deleted at this moment: its bytes are the same).
        var candidates = [pending.holder]
        if let others = try? await catalog.holders(scope: scope, sha256: sha256, length: length, limit: 4) {
            candidates += others.map(\.id).filter { $0 != pending.holder }
        }
        for candidate in candidates {
            guard let holder = try? await catalog.get(candidate), holder.isComplete, holder.sha256 == sha256, holder.offset == length,
                holder.contentScope == scope
            else { continue }
            guard let answer = try? await expectedProof(pending.challenge, length: length, from: holder) else { continue }
            guard answer.accepts(proof) else {
                throw try await refuse(record, used, hold, FerryError(.proofInvalid, "Ferry-Proof is not the answer to this upload's challenge"))
            }
            if let scenario, !scenario.contentTypes.isEmpty {
                do {
                    let prefix = try await read(holder, range: 0..<min(Int64(ContentSniffer.prefixLength), length))
                    try ContentSniffer.check(prefix: prefix, declared: record.metadata.string("filetype"), scenario: scenario)
                } catch let error as FerryError where error.code == .contentTypeNotAllowed || error.code == .contentMismatch {
                    throw try await refuse(record, used, hold, error)
                } catch {
                    continue
                }
            }
            let state: String?
            do {
                state = try await referencing.reference(holder, into: record, fence: hold.fence)
            } catch {
                // Gone meanwhile: another holder may do. Still there: the store failed.
                if let again = try? await catalog.get(candidate), again.isComplete { throw try await refuse(record, used, hold, error) }
                continue
            }
            var completed = used
            // No byte was transferred: the completion has no transfer time (no goodput sample).
            completed.firstByteAt = completed.updatedAt
            completed.storeState = state
            completed.offset = length
            completed.state = .complete
            completed.expiresAt = nil
            prepareCompletion(&completed, sha256: holder.sha256)
            return try await save(record, completed, hold)
        }
        throw try await refuse(record, used, hold, FerryError(.contentGone, "no upload holds this content any more; send the upload's bytes"))
    }

    /// Commits the challenge as used (`used`) and returns `error` to throw.
    private func refuse(_ record: UploadRecord, _ used: UploadRecord, _ hold: Hold, _ error: FerryError) async throws(FerryError) -> FerryError {
        _ = try await save(record, used, hold)
        return error
    }

    /// The proof a client holding `holder`'s bytes gives, read from the store (the challenged
    /// ranges only).
    private func expectedProof(_ challenge: InstantChallenge, length: Int64, from holder: UploadRecord) async throws -> InstantProof {
        guard challenge.isValid(forLength: length), let readable = store as? any ReadableByteStore else {
            throw FerryError(.internalError, "the stored challenge does not fit the upload")
        }
        var answer = InstantProof(challenge: challenge, length: length)
        for range in challenge.ranges {
            try await readable.read(holder, range: range.lowerBound..<(range.upperBound + 1)) { buffer in
                answer.update(buffer.readableBytesView)
            }
        }
        return answer
    }

    /// `range` of a complete upload's bytes (a few, for sniffing).
    private func read(_ holder: UploadRecord, range: Range<Int64>) async throws -> [UInt8] {
        guard let readable = store as? any ReadableByteStore else { return [] }
        var bytes: [UInt8] = []
        try await readable.read(holder, range: range) { bytes += $0.readableBytesView }
        return bytes
    }
}

/// `UploadRecord.instantChallenge` read back: the holder it was issued for and the challenge.
struct PendingChallenge {
    let holder: UploadID
    let challenge: InstantChallenge

    init?(_ record: UploadRecord) {
        guard let text = record.instantChallenge, let field = record.challengeFieldValue,
            let holder = UploadID(text.prefix { $0 != " " }), let challenge = InstantChallenge(fieldValue: field)
        else { return nil }
        self.holder = holder
        self.challenge = challenge
    }
}
