/// Behaviour of the upload engine that does not depend on a dialect or a backend.
public struct EngineConfiguration: Sendable {
    /// Largest upload accepted, in bytes; nil for no limit.
    public var maxSize: Int64?
    /// Incomplete uploads expire this long after their last stored byte; nil never expires them.
    public var expiry: Duration?
    /// How long a new request waits for the previous holder of an upload to save and release.
    public var lockTimeout: Duration
    /// An append without a checksum commits its progress after this many bytes...
    public var checkpointBytes: Int64
    /// ...or after this much time, whichever comes first, so a crash loses little.
    public var checkpointInterval: Duration
    /// Tombstones of terminated and expired uploads answer 410 for this long, then are purged.
    public var tombstoneRetention: Duration
    /// Whether clients may delete uploads (tus `termination`).
    public var allowsTermination: Bool

    public init(
        maxSize: Int64? = 10 * 1024 * 1024 * 1024,
        expiry: Duration? = .seconds(24 * 3600),
        lockTimeout: Duration = .seconds(10),
        checkpointBytes: Int64 = 32 * 1024 * 1024,
        checkpointInterval: Duration = .seconds(5),
        tombstoneRetention: Duration = .seconds(7 * 24 * 3600),
        allowsTermination: Bool = true
    ) {
        self.maxSize = maxSize
        self.expiry = expiry
        self.lockTimeout = lockTimeout
        self.checkpointBytes = checkpointBytes
        self.checkpointInterval = checkpointInterval
        self.tombstoneRetention = tombstoneRetention
        self.allowsTermination = allowsTermination
    }

    /// Checks the values once at start-up.
    public func validate() throws(FerryError) {
        if let maxSize, maxSize <= 0 {
            throw FerryError(.internalError, "max size must be positive")
        }
        if let expiry, expiry <= .zero {
            throw FerryError(.internalError, "expiry must be positive")
        }
        if checkpointBytes <= 0 || checkpointInterval <= .zero || lockTimeout <= .zero {
            throw FerryError(.internalError, "checkpoint and lock settings must be positive")
        }
    }
}

/// What the engine can do with the seams it was given; dialects advertise exactly this.
public struct EngineCapabilities: Sendable, Equatable {
    /// The store builds uploads from others (`ConcatenatingByteStore`).
    public var concatenation: Bool
    /// The store can serve bytes back (`ReadableByteStore`).
    public var content: Bool
    /// Incomplete uploads expire.
    public var expiration: Bool
    /// Clients may delete uploads.
    public var termination: Bool
    /// Largest upload, if limited.
    public var maxSize: Int64?
}
