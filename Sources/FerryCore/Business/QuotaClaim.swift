import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The key quotas are counted under: a token's subject, or an anonymous client's address
/// (prefixed, so that a subject can never pose as an address).
public enum QuotaKey {
    public static func subject(_ subject: String) -> String { "sub:" + subject }
    public static func address(_ address: String) -> String { "ip:" + ClientAddress.key(address) }
}

/// What identifies one client by its network address, for per-address limits.
public enum ClientAddress {
    /// An IPv4 address as it is; an IPv6 address by its /64 prefix (one subscriber, one home or
    /// one phone gets a whole /64, so a single address would let one client pose as 2^64
    /// clients); an IPv4-mapped IPv6 address as its IPv4 address. Anything else (a forwarded
    /// value that is no address) as its first 64 bytes, so a key stays small.
    public static func key(_ address: String) -> String {
        var text = address.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") { text = String(text[text.index(after: text.startIndex)..<close]) }
        if let percent = text.firstIndex(of: "%") { text = String(text[..<percent]) }  // a zone index names no other client
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return text }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return String(decoding: address.utf8.prefix(64), as: UTF8.self) }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return bytes[12...].map(String.init).joined(separator: ".")
        }
        let groups = stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
        return groups.joined(separator: ":") + "::/64"
    }
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

    /// Where creations need counting from: nil unless a `creationsPerMinute` quota applies.
    public var countsCreationsSince: Date? {
        creating && quotas.creationsPerMinute != nil ? windowStart : nil
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
