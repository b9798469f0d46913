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
    /// Most partial uploads one concatenation final may list (each at most once).
    public var maxConcatParts: Int
    /// Most bytes of metadata (keys and decoded values) one upload may carry...
    public var maxMetadataBytes: Int
    /// ...and one key with its value.
    public var maxMetadataEntryBytes: Int
    /// Uploads one client may create a minute (bursts up to as many), per node: a token's
    /// subject, or an anonymous client's address. nil: no limit beyond the quotas.
    public var creationsPerMinutePerClient: Int?

    public init(
        maxSize: Int64? = 10 * 1024 * 1024 * 1024,
        expiry: Duration? = .seconds(24 * 3600),
        lockTimeout: Duration = .seconds(10),
        checkpointBytes: Int64 = 32 * 1024 * 1024,
        checkpointInterval: Duration = .seconds(5),
        tombstoneRetention: Duration = .seconds(7 * 24 * 3600),
        allowsTermination: Bool = true,
        maxConcatParts: Int = 1000,
        maxMetadataBytes: Int = 4096,
        maxMetadataEntryBytes: Int = 2048,
        creationsPerMinutePerClient: Int? = 1200
    ) {
        self.creationsPerMinutePerClient = creationsPerMinutePerClient
        self.maxMetadataEntryBytes = maxMetadataEntryBytes
        self.maxConcatParts = maxConcatParts
        self.maxMetadataBytes = maxMetadataBytes
        self.maxSize = maxSize
        self.expiry = expiry
        self.lockTimeout = lockTimeout
        self.checkpointBytes = checkpointBytes
        self.checkpointInterval = checkpointInterval
        self.tombstoneRetention = tombstoneRetention
        self.allowsTermination = allowsTermination
    }

    /// Checks the values once at start-up.
    /// Refuses settings the engine cannot run with, naming the `ferry serve` flag.
    public func validate() throws(ConfigurationError) {
        if let maxSize, maxSize <= 0 { throw ConfigurationError("max-size", "must be positive (0 turns the limit off)") }
        if let expiry, expiry <= .zero { throw ConfigurationError("expiry", "must be positive (0 turns expiry off)") }
        if let rate = creationsPerMinutePerClient, rate <= 0 { throw ConfigurationError("creation-rate", "must be positive (0 turns the limit off)") }
        if maxConcatParts <= 0 || maxMetadataBytes <= 0 || maxMetadataEntryBytes <= 0 {
            throw ConfigurationError("engine", "concatenation and metadata limits must be positive")
        }
        if checkpointBytes <= 0 { throw ConfigurationError("checkpoint-size", "must be positive") }
        if checkpointInterval <= .zero { throw ConfigurationError("checkpoint-interval", "must be positive") }
        if lockTimeout <= .zero { throw ConfigurationError("lock-timeout", "must be positive") }
    }
}

/// What the engine can do with the seams it was given; dialects advertise exactly this.
public struct EngineCapabilities: Sendable, Equatable {
    /// The store builds uploads from others (`ConcatenatingByteStore`).
    public var concatenation: Bool
    /// ... by copying their bytes (`ConcatenatingByteStore.concatenationCopiesBytes`).
    public var concatenationCopies: Bool
    /// The store can serve bytes back (`ReadableByteStore`).
    public var content: Bool
    /// Incomplete uploads expire.
    public var expiration: Bool
    /// Clients may delete uploads.
    public var termination: Bool
    /// Largest upload, if limited.
    public var maxSize: Int64?
    /// How long an incomplete upload lives after its last write, unless its scenario says otherwise.
    public var expiry: Duration?
    /// The store can read a complete upload's bytes and give them to another upload
    /// (`ReadableByteStore` and `ReferencingByteStore`): instant upload is possible where a
    /// scenario allows it (docs/instant-upload.md).
    public var instantUpload: Bool

    public init(
        concatenation: Bool, content: Bool, expiration: Bool, termination: Bool, maxSize: Int64? = nil, expiry: Duration? = nil,
        concatenationCopies: Bool = false, instantUpload: Bool = false
    ) {
        self.instantUpload = instantUpload
        self.concatenation = concatenation
        self.concatenationCopies = concatenationCopies
        self.content = content
        self.expiration = expiration
        self.termination = termination
        self.maxSize = maxSize
        self.expiry = expiry
    }
}
