import Foundation

/// The key quotas are counted under: a token's subject, or an anonymous client's address
/// (prefixed, so that a subject can never pose as an address).
public enum QuotaKey {
    public static func subject(_ subject: String) -> String { "sub:" + subject }
    public static func address(_ address: String) -> String { "ip:" + address }
}

/// What a creation (or a length fixed later) asks of its owner's quotas.
///
/// The decision is a pure function of the owner's usage (`check`); a catalog applies it to the
/// usage it counts *in the same transaction* as the insert (`UploadCatalog.insert(_:events:claim:)`),
/// serialized per owner, so concurrent creations cannot all take the last slot.
public struct QuotaClaim: Sendable, Equatable {
    /// The `QuotaKey` counted: a subject's, or an anonymous client address's.
    public var owner: String
    public var quotas: Quotas
    /// Bytes the request adds to the owner's open bytes (a declared length, or its growth).
    public var bytes: Int64
    /// A new upload (counts against `openUploads` and `creationsPerMinute`).
    public var creating: Bool
    /// Where the `creationsPerMinute` window starts.
    public var windowStart: Date

    public init(owner: String, quotas: Quotas, bytes: Int64, creating: Bool, windowStart: Date) {
        self.owner = owner
        self.quotas = quotas
        self.bytes = bytes
        self.creating = creating
        self.windowStart = windowStart
    }

    /// True when some quota applies (otherwise nothing needs counting).
    public var isLimited: Bool {
        quotas.openBytes != nil || (creating && (quotas.openUploads != nil || quotas.creationsPerMinute != nil))
    }

    /// Refuses with `ERR_QUOTA_EXCEEDED` (and a `Retry-After`) when `usage` leaves no room.
    /// `usage` is what the owner holds *before* this request.
    public func check(_ usage: OwnerUsage) throws(FerryError) {
        func refuse(_ message: String, after seconds: Int) -> FerryError {
            var error = FerryError(.quotaExceeded, message)
            error.retryAfter = seconds
            return error
        }
        if creating, let limit = quotas.creationsPerMinute, usage.recentCreations >= limit {
            throw refuse("at most \(limit) uploads may be created per minute", after: 60)
        }
        if creating, let limit = quotas.openUploads, usage.openUploads >= limit {
            throw refuse("at most \(limit) incomplete uploads at once: finish or delete one", after: 30)
        }
        if let limit = quotas.openBytes, usage.openBytes.saturatingAdding(bytes) > limit {
            throw refuse("incomplete uploads may hold at most \(limit) bytes", after: 30)
        }
    }
}
