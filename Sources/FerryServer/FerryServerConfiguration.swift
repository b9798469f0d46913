import FerryCore
import FerryHTTP
import FerryProtocol

/// Everything `ferry serve` can be told, validated once at start-up.
public struct FerryServerConfiguration: Sendable {
    public var http: FerryHTTPServer.Configuration
    public var tus: UploadRoutes.Configuration
    public var engine: EngineConfiguration
    /// Scenarios, tokens, quotas, callbacks and events (`--config`).
    public var business: BusinessConfiguration
    /// Holds `uploads/` (one file per upload) and `catalog.sqlite` on embedded defaults, and
    /// `spool/` with S3 storage.
    public var dataDirectory: String
    public var storage: StorageConfiguration
    public var catalog: CatalogConfiguration
    /// Threads for blocking file I/O (writes, fsyncs).
    public var ioThreads: Int
    /// How often expired uploads are deleted.
    public var expiryInterval: Duration
    /// The longest a graceful shutdown (SIGTERM) may take before work is cancelled.
    public var shutdownTimeout: Duration
    /// Stored bytes no live upload owns (a creation a crash cut short, a leftover of a deleted
    /// upload or of an interrupted storage by reference) are deleted once untouched this long;
    /// swept when the server starts and every 6 hours.
    public var orphanAge: Duration = .seconds(3600)
    /// Per-upload statistics (docs/statistics.md); nil records none.
    public var statistics: StatsRecorder.Configuration?
    /// Bytes of the data file system that upload writes leave free (disk storage), so the
    /// catalog can still commit what fitted when the disk fills.
    public var diskReserve: Int64 = 8 << 20

    public init(
        http: FerryHTTPServer.Configuration = .init(),
        tus: UploadRoutes.Configuration = .init(),
        engine: EngineConfiguration = .init(),
        business: BusinessConfiguration = .init(),
        dataDirectory: String = "./ferry-data",
        storage: StorageConfiguration = .disk,
        catalog: CatalogConfiguration = .sqlite,
        ioThreads: Int = 16,
        expiryInterval: Duration = .seconds(60),
        shutdownTimeout: Duration = .seconds(15),
        statistics: StatsRecorder.Configuration? = StatsRecorder.Configuration()
    ) {
        self.statistics = statistics
        self.http = http
        self.tus = tus
        self.engine = engine
        self.business = business
        self.dataDirectory = dataDirectory
        self.storage = storage
        self.catalog = catalog
        self.ioThreads = ioThreads
        self.expiryInterval = expiryInterval
        self.shutdownTimeout = shutdownTimeout
    }

    /// Refuses a configuration the server cannot start with, naming the `ferry serve` flag.
    public func validate() throws(ConfigurationError) {
        try engine.validate()
        try http.limits.validate()
        try http.transport.validate()
        guard (0...65_535).contains(http.port) else { throw ConfigurationError("port", "must be 0-65535") }
        guard diskReserve >= 0 else { throw ConfigurationError("disk-reserve", "must not be negative") }
        guard ioThreads > 0 else { throw ConfigurationError("io-threads", "must be positive") }
        guard !dataDirectory.isEmpty else { throw ConfigurationError("data-dir", "must name a folder") }
        if case .s3(let s3) = storage { try s3.validate() }
        if case .postgres(let url) = catalog, !(url.hasPrefix("postgres://") || url.hasPrefix("postgresql://")) {
            throw ConfigurationError("catalog", "must be sqlite or a postgres:// URL")
        }
    }
}
