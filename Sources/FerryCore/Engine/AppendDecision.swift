/// What becomes of one append, decided from values alone: the request, how its body ended and
/// what the receiver saw. The engine carries the decisions out (sync, commit, discard, answer);
/// `AppendDecisionTests` tables them.
public enum AppendDecision {
    /// Whether the request's stored bytes are kept, and the error it ends in.
    public struct Verdict: Sendable {
        public var keep: Bool
        public var failure: FerryError?
    }

    /// Once the body ended: bytes past the limit, a body cut short before its digest could be
    /// checked, or a digest that does not match (`matches` hashes what was received) are not
    /// kept; a failure the receiver met keeps what was stored before it.
    public static func verdict(
        _ request: AppendRequest,
        knownLength: Bool,
        exceeded: Bool,
        receiverFailure: FerryError?,
        end: BodyEnd,
        matches: (ChecksumExpectation) -> Bool
    ) -> Verdict {
        if exceeded {
            let failure = knownLength
                ? FerryError(.lengthExceeded, "the body ran past Upload-Length")
                : FerryError(.maxSizeExceeded, "the upload would exceed the largest size this server accepts")
            return Verdict(keep: false, failure: failure)
        }
        guard request.checksum != nil || request.expectsTrailerChecksum else {
            return Verdict(keep: true, failure: receiverFailure)
        }
        // A body that broke off cannot be verified: nothing of it is kept.
        guard end.complete else { return Verdict(keep: false, failure: receiverFailure) }
        do {
            guard let expectation = try expectation(request, end) else {
                return Verdict(keep: false, failure: FerryError(.invalidChecksum, "Upload-Checksum was announced as a trailer but did not come"))
            }
            guard matches(expectation) else {
                return Verdict(keep: false, failure: FerryError(.checksumMismatch, "the body does not match Upload-Checksum; the chunk was discarded"))
            }
        } catch {
            return Verdict(keep: false, failure: error)
        }
        return Verdict(keep: true, failure: receiverFailure)
    }

    /// The digest a request's body is checked against: its header, else its trailer (parsed).
    public static func expectation(_ request: AppendRequest, _ end: BodyEnd) throws(FerryError) -> ChecksumExpectation? {
        if let checksum = request.checksum { return checksum }
        guard request.expectsTrailerChecksum, let trailer = end.trailerChecksum else { return nil }
        return try ChecksumExpectation(header: trailer)
    }

    /// Whether the upload is complete once `durable` bytes are stored.
    public enum Completion: Sendable, Equatable {
        /// Not complete (yet).
        case open
        /// Complete at this length.
        case complete(length: Int64)
        /// The request said it completes the upload at another length than it has.
        case inconsistent(length: Int64, stored: Int64)
    }

    /// tus completes an upload when its offset reaches its length; RUFH only when a request
    /// saying `Upload-Complete: ?1` ended properly (its end then fixes a length still unknown).
    public static func completion(_ request: AppendRequest, end: BodyEnd, failed: Bool, length: Int64?, durable: Int64) -> Completion {
        if request.completesUpload, end.complete, !failed {
            guard let length else { return .complete(length: durable) }
            return length == durable ? .complete(length: length) : .inconsistent(length: length, stored: durable)
        }
        if request.completesAtLength, let length, length == durable { return .complete(length: length) }
        return .open
    }

    /// How a request ends once what it keeps is committed: its failure; else, when stopped or
    /// cut short, an error saying how much is stored; else success. `outcome` names it for the
    /// statistics (`ok`, `interrupted`, or the failure's code).
    public static func ending(failure: FerryError?, stop: StopReason?, bodyComplete: Bool, stored: Int64) -> (error: FerryError?, outcome: String) {
        if let failure { return (failure, failure.code.rawValue) }
        // A request whose whole body arrived (possibly while draining after a stop request)
        // completes normally: it was not cut short.
        if bodyComplete { return (nil, "ok") }
        switch stop {
        case .shutdown:
            return (FerryError(.shuttingDown, "the server is shutting down; \(stored) bytes are stored"), "interrupted")
        case .superseded:
            return (FerryError(.requestSuperseded, "a newer request on this upload took over; \(stored) bytes are stored"), "interrupted")
        case nil:
            return (FerryError(.requestIncomplete, "the request body ended early; \(stored) bytes are stored"), "interrupted")
        }
    }
}
