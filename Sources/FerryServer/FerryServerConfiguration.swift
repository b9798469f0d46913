import FerryCore
import FerryHTTP
import FerryTus

/// Everything `ferry serve` can be told, validated once at start-up.
public struct FerryServerConfiguration: Sendable {
    public var http: FerryHTTPServer.Configuration
    public var tus: TusDialect.Configuration
    public var engine: EngineConfiguration
    /// Holds `uploads/` (one file per upload) and `catalog.sqlite`.
    public var dataDirectory: String
    /// Threads for blocking file I/O (writes, fsyncs).
    public var ioThreads: Int
    /// How often expired uploads are deleted.
    public var expiryInterval: Duration
    /// The longest a graceful shutdown (SIGTERM) may take before work is cancelled.
    public var shutdownTimeout: Duration

    public init(
        http: FerryHTTPServer.Configuration = .init(),
        tus: TusDialect.Configuration = .init(),
        engine: EngineConfiguration = .init(),
        dataDirectory: String = "./ferry-data",
        ioThreads: Int = 16,
        expiryInterval: Duration = .seconds(60),
        shutdownTimeout: Duration = .seconds(15)
    ) {
        self.http = http
        self.tus = tus
        self.engine = engine
        self.dataDirectory = dataDirectory
        self.ioThreads = ioThreads
        self.expiryInterval = expiryInterval
        self.shutdownTimeout = shutdownTimeout
    }

    public func validate() throws(FerryError) {
        try engine.validate()
        guard (0...65_535).contains(http.port) else { throw FerryError(.internalError, "port must be 0-65535") }
        guard ioThreads > 0 else { throw FerryError(.internalError, "io threads must be positive") }
        guard !dataDirectory.isEmpty else { throw FerryError(.internalError, "the data directory must be named") }
    }
}
