import Foundation

/// Where an upload stands in its life.
public enum UploadState: String, Sendable, Codable, CaseIterable {
    /// Receiving bytes (or waiting for its partials, for a concatenation final).
    case incomplete
    /// Every byte is stored.
    case complete
    /// Deleted by its client; kept as a tombstone so later requests get 410.
    case terminated
    /// Expired before completion; data deleted, tombstone kept.
    case expired
    /// Its stored bytes were found shorter than the acknowledged offset (storage lost data).
    case lost

    /// Tombstones answer 410 and have no data.
    public var isGone: Bool { self == .terminated || self == .expired || self == .lost }
}

/// The role an upload plays in the tus `concatenation` extension.
public enum ConcatRole: Sendable, Equatable {
    case none
    case partial
    /// A final upload: the concatenation of these partials, in order (a partial may repeat).
    case final([UploadID])
}

/// Everything a catalog keeps about one upload.
public struct UploadRecord: Sendable, Equatable {
    public var id: UploadID
    /// Total length; nil while deferred (`Upload-Defer-Length`).
    public var length: Int64?
    /// Bytes durably stored. Never larger than what the byte store holds after a crash.
    public var offset: Int64
    public var metadata: UploadMetadata
    public var concat: ConcatRole
    public var state: UploadState
    public var createdAt: Date
    public var updatedAt: Date
    /// When an incomplete upload expires; nil once complete or when expiry is off.
    public var expiresAt: Date?
    /// What the byte store needs to find the upload's bytes again (an object store's multipart
    /// upload, part list and tail), opaque to everything else. Committed together with `offset`,
    /// so the two always agree; nil for stores that need nothing (disk).
    public var storeState: String?
    /// The scenario the upload was created in (docs/business.md).
    public var scenario: String
    /// The token subject that created it; nil for an anonymous upload (its URL is the capability).
    public var owner: String?
    /// Whom the upload counts against in quotas (`QuotaKey`): its owner, or for an anonymous
    /// upload the address of the client that created it; nil when neither is known. Set at
    /// creation and never changed.
    public var quotaKey: String?
    /// Hex SHA-256 of the whole file, once complete.
    public var sha256: String?
    /// The `pre-finish` callback's answer, for scenarios that have one.
    public var business: BusinessResult?
    /// The sequence number of the upload's last event (0 before any).
    public var eventSequence: Int64
    /// When the last `upload.progress` event was written.
    public var progressEventAt: Date?
    /// For a final: the `Upload-Concat` value its creator sent (tus HEAD echoes it as received).
    public var concatRequest: String?
    /// The network class its creator declared (`RequestInfo.network`): the completion
    /// histograms' label on whichever node completes it. Set at creation and never changed.
    public var network: String
    /// When the request that stored its first bytes began (nil before any byte is stored, and
    /// for a concatenation final): where the completion's goodput is measured from.
    public var firstByteAt: Date?
    /// While an append to a deferred-length upload runs under an `open-bytes` quota: the offset
    /// up to which it holds room (claimed atomically before its body, released when it settles;
    /// after a crash, replaced by the next append). Counted by `openBytes`; nil otherwise.
    public var reservedTo: Int64?
    /// The content-index key its content is found under once complete
    /// (`InstantUploadRules.scopeKey`); nil when it takes no part. Set at creation, never changed.
    public var contentScope: String?
    /// Hex SHA-256 of the whole file as its creator announced it (`Repr-Digest` at creation):
    /// the completion is refused unless the stored bytes have it; nil when none was announced.
    public var announcedSHA256: String?
    /// A pending instant-upload challenge: the id of the upload holding the content, a space,
    /// and the `Ferry-Challenge` value sent; nil when none is pending (never issued, answered,
    /// or bytes sent instead).
    public var instantChallenge: String?

    public init(
        id: UploadID,
        length: Int64?,
        offset: Int64 = 0,
        metadata: UploadMetadata = UploadMetadata(),
        concat: ConcatRole = .none,
        state: UploadState = .incomplete,
        createdAt: Date,
        updatedAt: Date? = nil,
        expiresAt: Date? = nil,
        storeState: String? = nil,
        scenario: String = "default",
        owner: String? = nil,
        quotaKey: String? = nil,
        sha256: String? = nil,
        business: BusinessResult? = nil,
        eventSequence: Int64 = 0,
        progressEventAt: Date? = nil,
        concatRequest: String? = nil,
        network: String = "unknown",
        firstByteAt: Date? = nil,
        reservedTo: Int64? = nil,
        contentScope: String? = nil,
        announcedSHA256: String? = nil,
        instantChallenge: String? = nil
    ) {
        self.concatRequest = concatRequest
        self.network = network
        self.firstByteAt = firstByteAt
        self.reservedTo = reservedTo
        self.contentScope = contentScope
        self.announcedSHA256 = announcedSHA256
        self.instantChallenge = instantChallenge
        self.id = id
        self.length = length
        self.offset = offset
        self.metadata = metadata
        self.concat = concat
        self.state = state
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
        self.expiresAt = expiresAt
        self.storeState = storeState
        self.scenario = scenario
        self.owner = owner
        self.quotaKey = quotaKey ?? owner.map(QuotaKey.subject)
        self.sha256 = sha256
        self.business = business
        self.eventSequence = eventSequence
        self.progressEventAt = progressEventAt
    }

    public var isComplete: Bool { state == .complete }

    /// The `Ferry-Challenge` value of a pending instant-upload challenge (what follows the
    /// holder's id in `instantChallenge`); nil when none is pending.
    public var challengeFieldValue: String? {
        guard let text = instantChallenge, let space = text.firstIndex(of: " ") else { return nil }
        return String(text[text.index(after: space)...])
    }

    /// What it counts against its owner's `open-bytes` while incomplete: its declared length,
    /// else its offset or the room a running append holds, whichever is larger. A final holds
    /// nothing of its own: its bytes are its partials', counted while they are incomplete.
    public var openBytes: Int64 { isFinal ? 0 : length ?? Swift.max(offset, reservedTo ?? 0) }

    public var isFinal: Bool {
        if case .final = concat { return true }
        return false
    }

    public var partials: [UploadID] {
        if case .final(let parts) = concat { return parts }
        return []
    }

    /// `concat` (and `concatRequest`) as catalogs store them: `none`, `partial`, or
    /// `final <id> <id> …` followed, for a final whose request is known, by a line holding it
    /// (a field value never contains a line break).
    public var concatText: String {
        switch concat {
        case .none: return "none"
        case .partial: return "partial"
        case .final(let parts):
            let text = "final " + parts.map(\.rawValue).joined(separator: " ")
            guard let concatRequest, !concatRequest.contains("\n") else { return text }
            return text + "\n" + concatRequest
        }
    }

    /// Reads `concatText` back.
    public static func concat(fromText text: String) -> (role: ConcatRole, request: String?) {
        if text == "partial" { return (.partial, nil) }
        guard text.hasPrefix("final ") else { return (.none, nil) }
        let lines = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        let parts = lines[0].dropFirst(6).split(separator: " ").compactMap(UploadID.init)
        return (.final(parts), lines.count > 1 ? String(lines[1]) : nil)
    }
}
