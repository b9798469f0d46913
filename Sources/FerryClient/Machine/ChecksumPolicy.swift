/// A checksum of a request's body that the client computes and the server verifies.
public enum RequestChecksum: String, Sendable, CaseIterable {
    /// SHA-256: tus `Upload-Checksum: sha256 …`, RUFH `Content-Digest: sha-256=:…:`.
    case sha256

    /// The algorithms the client computes, preferred first.
    public static let preference: [RequestChecksum] = [.sha256]
}

/// Which requests carry a checksum of their body, and which one.
///
/// A checksum costs a second read of the range before sending, so only requests up to `limit`
/// carry one. And a checksummed request that breaks off is discarded whole by the server (it
/// cannot verify a part), while an unchecksummed one keeps what arrived: until the link has
/// carried `reliableRequests` requests in a row, only requests of at most `riskFreeLimit`
/// bytes carry one.
public struct ChecksumPolicy: Sendable, Equatable {
    /// Whether requests carry checksums at all (when the server verifies one the client computes).
    public var enabled: Bool
    /// The largest request that carries a checksum once the link proved reliable.
    public var limit: Int64
    /// The largest request that carries a checksum until then.
    public var riskFreeLimit: Int64
    /// Requests with a body that must succeed in a row before `limit` applies.
    public var reliableRequests: Int

    public init(enabled: Bool = true, limit: Int64 = 8 << 20, riskFreeLimit: Int64 = 1 << 20, reliableRequests: Int = 8) {
        self.enabled = enabled
        self.limit = limit
        self.riskFreeLimit = riskFreeLimit
        self.reliableRequests = reliableRequests
    }

    /// The checksum a request with a body of `bytes` bytes carries, after `successStreak`
    /// requests with a body succeeded in a row; nil for none.
    public func checksum(forBody bytes: Int64, server: ServerCapabilities, successStreak: Int) -> RequestChecksum? {
        guard enabled, let algorithm = server.checksum else { return nil }
        let limit = successStreak >= reliableRequests ? limit : min(limit, riskFreeLimit)
        return bytes <= limit ? algorithm : nil
    }
}

extension ServerCapabilities {
    /// The client's preferred checksum among those the server verifies (tus `checksum`).
    public var checksum: RequestChecksum? {
        guard extensions.contains("checksum") else { return nil }
        let offered = Set(checksumAlgorithms.map { $0.lowercased() })
        return RequestChecksum.preference.first { offered.contains($0.rawValue) }
    }
}
