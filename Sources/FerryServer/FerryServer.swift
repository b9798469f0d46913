import FerryCore
import FerryDiskStore
import FerryHTTP
import FerrySQLite
import FerryTus
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import UnixSignals

/// Wires a configuration into running services: the disk store, the SQLite catalog, the
/// engine, the HTTP server, expiry and graceful shutdown.
public struct FerryServer: Sendable {
    public let engine: UploadEngine
    public let services: [any Service]
    public let registry: PrometheusCollectorRegistry
    let configuration: FerryServerConfiguration
    let logger: Logger

    /// Opens storage and builds the services. `onServerRunning` receives the listening
    /// channel (tests read the bound port from it).
    public init(
        configuration: FerryServerConfiguration,
        logger: Logger,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) throws(FerryError) {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        let threadPool = NIOThreadPool(numberOfThreads: configuration.ioThreads)
        threadPool.start()
        let store = try DiskByteStore(
            configuration: .init(directory: configuration.dataDirectory + "/uploads"),
            threadPool: threadPool
        )
        let catalog = try SQLiteCatalog(path: configuration.dataDirectory + "/catalog.sqlite")
        let registry = PrometheusCollectorRegistry()
        let factory = PrometheusMetricsFactory(registry: registry)
        let engine = UploadEngine(
            store: store,
            catalog: catalog,
            locker: LocalUploadLocker(),
            configuration: configuration.engine,
            logger: logger,
            metricsFactory: factory
        )
        let dialect = TusDialect(engine: engine, configuration: configuration.tus)
        let router = FerryHTTPServer.router(
            dialect: dialect,
            configuration: configuration.http,
            metricsFactory: factory,
            metricsText: { registry.emitToString() },
            health: {
                do {
                    _ = try await catalog.get(UploadID("0000000000000000")!)
                    return !engine.isShuttingDown
                } catch {
                    return false
                }
            }
        )
        let application = FerryHTTPServer.application(
            router: router,
            configuration: configuration.http,
            logger: logger,
            onServerRunning: onServerRunning
        )
        self.engine = engine
        self.registry = registry
        // Graceful shutdown runs in reverse order: first stop appends, then drain HTTP,
        // then stop expiry, and last release the I/O threads.
        self.services = [
            ThreadPoolService(threadPool: threadPool),
            ExpiryService(engine: engine, interval: configuration.expiryInterval),
            application,
            AppendDrainService(engine: engine),
        ]
    }

    /// The services as one group that shuts down gracefully on `signals` (none in tests:
    /// call `triggerGracefulShutdown()`), within the configured bound.
    public func serviceGroup(signals: [UnixSignal] = [.sigterm, .sigint]) -> ServiceGroup {
        var groupConfiguration = ServiceGroupConfiguration(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: signals,
            logger: logger
        )
        groupConfiguration.maximumGracefulShutdownDuration = configuration.shutdownTimeout
        groupConfiguration.maximumCancellationDuration = .seconds(5)
        return ServiceGroup(configuration: groupConfiguration)
    }

    /// Runs until SIGTERM/SIGINT, then shuts down gracefully within the configured bound.
    public func run() async throws {
        let group = serviceGroup()
        logger.info(
            "server.starting",
            metadata: [
                "http.host": "\(configuration.http.host)", "http.port": "\(configuration.http.port)",
                "tus.base_path": "\(configuration.tus.basePath)", "data.dir": "\(configuration.dataDirectory)",
            ]
        )
        try await group.run()
    }
}

/// Owns the blocking-I/O thread pool: shuts it down after everything else stopped.
struct ThreadPoolService: Service {
    let threadPool: NIOThreadPool

    func run() async throws {
        try? await gracefulShutdown()
        try await threadPool.shutdownGracefully()
    }
}
