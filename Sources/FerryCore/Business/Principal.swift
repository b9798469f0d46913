/// Who makes a request: a token's subject, or nobody (anonymous).
public struct Principal: Sendable, Equatable {
    /// The token's `sub`; nil for an anonymous request.
    public var subject: String?
    /// Scenarios the principal may use; nil for any.
    public var scenarios: Set<String>?
    /// The token's own limits, which lower the configured quotas.
    public var limits: Quotas

    public init(subject: String?, scenarios: Set<String>? = nil, limits: Quotas = Quotas()) {
        self.subject = subject
        self.scenarios = scenarios
        self.limits = limits
    }

    /// A request without a token.
    public static let anonymous = Principal(subject: nil)

    public var isAnonymous: Bool { subject == nil }

    /// True when the principal may use `scenario` at all.
    public func mayUse(_ scenario: String) -> Bool {
        scenarios?.contains(scenario) ?? true
    }
}

/// Per-principal limits; nil means unlimited.
public struct Quotas: Sendable, Equatable {
    /// Largest single upload, in bytes.
    public var maxSize: Int64?
    /// Incomplete uploads at once.
    public var openUploads: Int?
    /// Sum of the declared lengths (offsets while deferred) of incomplete uploads, in bytes.
    public var openBytes: Int64?
    /// Uploads created in the last 60 seconds.
    public var creationsPerMinute: Int?

    public init(maxSize: Int64? = nil, openUploads: Int? = nil, openBytes: Int64? = nil, creationsPerMinute: Int? = nil) {
        self.maxSize = maxSize
        self.openUploads = openUploads
        self.openBytes = openBytes
        self.creationsPerMinute = creationsPerMinute
    }

    /// What an anonymous client address may hold unless configured otherwise: 1,000
    /// incomplete uploads. Generous on purpose: behind a carrier's NAT thousands of phones
    /// share one address; the point is that no single address can hold unbounded state.
    public static let anonymousDefault = Quotas(openUploads: 1000)

    /// The stricter of two limits, field by field.
    public func lowered(by other: Quotas) -> Quotas {
        func min<T: Comparable>(_ a: T?, _ b: T?) -> T? {
            switch (a, b) {
            case (nil, nil): nil
            case (let a?, nil): a
            case (nil, let b?): b
            case (let a?, let b?): Swift.min(a, b)
            }
        }
        return Quotas(
            maxSize: min(maxSize, other.maxSize),
            openUploads: min(openUploads, other.openUploads),
            openBytes: min(openBytes, other.openBytes),
            creationsPerMinute: min(creationsPerMinute, other.creationsPerMinute)
        )
    }
}

/// What an owner holds, as the catalog counts it.
public struct OwnerUsage: Sendable, Equatable {
    public var openUploads: Int
    public var openBytes: Int64
    public var recentCreations: Int

    public init(openUploads: Int, openBytes: Int64, recentCreations: Int) {
        self.openUploads = openUploads
        self.openBytes = openBytes
        self.recentCreations = recentCreations
    }
}

/// Turns a request's `Authorization` header into a principal.
public protocol Authenticator: Sendable {
    /// The principal for `authorization` (nil: no header); throws `ERR_UNAUTHORIZED` for a
    /// token that is malformed, expired or not signed by a configured key.
    func authenticate(authorization: String?) async throws(FerryError) -> Principal
}

/// No authentication configured: every request is anonymous.
public struct AnonymousAuthenticator: Authenticator {
    public init() {}
    public func authenticate(authorization: String?) async throws(FerryError) -> Principal { .anonymous }
}
