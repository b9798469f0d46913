import FerryCore
import FerryDiskStore
import FerryHooks
import AsyncHTTPClient
import FerryHTTP
import FerryPostgres
import FerryS3
import FerryS3Store
import FerrySQLite
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import UnixSignals

/// Wires a configuration into running services: the store (disk or S3), the catalog and locks
/// (SQLite and in-process, or PostgreSQL shared by nodes), the engine, the HTTP server, expiry
/// and graceful shutdown.
public struct FerryServer: Sendable {
    public let engine: UploadEngine
    public let services: [any Service]
    public let registry: PrometheusCollectorRegistry
    /// Connections per protocol (tests, benchmarks, `/metrics`).
    public let census: ConnectionCensus
    /// The TLS certificate, reloaded on SIGHUP; nil when serving plain text.
    public let certificates: CertificateStore?
    let configuration: FerryServerConfiguration
    /// Created before the server starts serving (`--s3-create-bucket`).
    let bucketToCreate: S3Client?
    let threadPool: NIOThreadPool
    let logger: Logger

    /// Opens storage and builds the services. `onServerRunning` receives the listening
    /// channel (tests read the bound port from it). Throws `ConfigurationError` for a setting
    /// it cannot run with, `FerryError` when storage cannot be opened.
    public init(
        configuration: FerryServerConfiguration,
        logger: Logger,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) throws {
        try configuration.validate()
        // Before anything is opened: a certificate the server cannot use leaves nothing to release.
        let certificates = try configuration.http.transport.tls.map { files throws(ConfigurationError) in try CertificateStore(files: files) }
        if let certificates {
            logger.info("tls.certificate_loaded", metadata: ["tls.certificate": "\(certificates.summary)"])
        }
        self.configuration = configuration
        self.logger = logger
        let threadPool = NIOThreadPool(numberOfThreads: configuration.ioThreads)
        threadPool.start()
        var storageServices: [any Service] = []
        var bucketToCreate: S3Client?
        var httpClient: HTTPClient?
        let store: any ByteStore
        // Scenarios with a directory of their own get a store of their own (docs/business.md).
        let directories = Dictionary(
            configuration.business.scenarios.scenarios.values.compactMap { scenario in scenario.directory.map { (scenario.name, $0) } },
            uniquingKeysWith: { $1 }
        )
        switch configuration.storage {
        case .disk:
            let root = configuration.dataDirectory + "/uploads"
            let fallback = try DiskByteStore(configuration: .init(directory: root, freeSpaceReserve: configuration.diskReserve), threadPool: threadPool)
            var stores: [String: DiskByteStore] = [:]
            for directory in Set(directories.values) {
                stores[directory] = try DiskByteStore(
                    configuration: .init(directory: root + "/" + directory, freeSpaceReserve: configuration.diskReserve), threadPool: threadPool
                )
            }
            store = directories.isEmpty ? fallback : ScenarioRoutedStore(default: fallback, routes: directories.compactMapValues { stores[$0] })
        case .s3(let s3):
            let http = HTTPClientService.makeClient()
            httpClient = http
            storageServices.append(HTTPClientService(client: http))
            if s3.createBucket { bucketToCreate = Self.s3Client(s3, http) }
            func makeStore(_ prefix: String) throws(FerryError) -> S3ByteStore {
                try S3ByteStore(
                    storage: Self.s3Client(s3, http),
                    configuration: S3StoreConfiguration(
                        keyPrefix: prefix,
                        partSize: s3.partSize,
                        partConcurrency: s3.partConcurrency,
                        spoolDirectory: configuration.dataDirectory + "/spool",
                        spoolLimit: s3.spoolLimit
                    ),
                    threadPool: threadPool,
                    logger: logger
                )
            }
            let fallback = try makeStore(s3.keyPrefix)
            var stores: [String: S3ByteStore] = [:]
            for directory in Set(directories.values) { stores[directory] = try makeStore(s3.keyPrefix + directory + "/") }
            store = directories.isEmpty ? fallback : ScenarioRoutedStore(default: fallback, routes: directories.compactMapValues { stores[$0] })
        }
        let catalog: any EngineCatalog & OutboxCatalog
        let locker: any UploadLocker
        // The statistics live in the catalog's database, in tables of their own.
        let statsStore: any StatsStore
        var catalogServices: [any Service] = []
        switch configuration.catalog {
        case .sqlite:
            let sqlite = try SQLiteCatalog(path: configuration.dataDirectory + "/catalog.sqlite")
            (catalog, statsStore, locker) = (sqlite, sqlite, LocalUploadLocker())
        case .postgres(let url):
            let postgres = try PostgresCatalog(url: url, logger: logger)
            let shared = PostgresUploadLocker(catalog: postgres)
            (catalog, statsStore, locker) = (postgres, postgres, shared)
            catalogServices = [postgres, shared]
        }
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[StatsRecorder.durationMetric] = StatsRecorder.durationBuckets
        factory.valueHistogramBuckets[StatsRecorder.goodputMetric] = StatsRecorder.goodputBuckets
        var statistics: StatsRecorder?
        if let settings = configuration.statistics {
            statistics = StatsRecorder(store: statsStore, configuration: settings, logger: logger, metricsFactory: factory)
        }
        let business = configuration.business
        if business.needsHTTPClient, httpClient == nil {
            let http = HTTPClientService.makeClient()
            httpClient = http
            storageServices.append(HTTPClientService(client: http))
        }
        // Business POSTs to http:// URLs go over Ferry's own kept-alive connections, the rest
        // through AsyncHTTPClient (`CallbackHTTP`).
        var callbackHTTP: CallbackHTTP?
        if business.needsHTTPClient, let httpClient {
            let keptAlive = KeptAliveHTTP1()
            callbackHTTP = CallbackHTTP(client: httpClient, keptAlive: keptAlive)
            storageServices.append(keptAlive)
        }
        let engine = UploadEngine(
            store: store,
            catalog: catalog,
            locker: locker,
            configuration: configuration.engine,
            business: BusinessRules(
                scenarios: business.scenarios,
                quotas: business.quotas,
                anonymousQuotas: business.anonymousQuotas,
                callbacks: callbackHTTP.map { HTTPBusinessCallbacks(http: $0) } ?? NoBusinessCallbacks()
            ),
            logger: logger,
            observers: [MetricsObserver(factory: factory, backend: store.name)] + (statistics.map { [$0] } ?? [])
        )
        var businessServices: [any Service] = [BusinessRetryService(engine: engine)]
        if business.hasWebhooks, let callbackHTTP {
            businessServices.append(
                WebhookDispatcher(
                    catalog: catalog,
                    scenarios: business.scenarios,
                    http: callbackHTTP,
                    wakeup: engine.outboxWritten,
                    configuration: business.events,
                    logger: logger,
                    metricsFactory: factory
                )
            )
        }
        let endpoints = UploadEndpoints(engine: engine, routes: configuration.tus, authenticator: business.authenticator, statistics: statistics)
        var http = configuration.http
        http.adminToken = business.adminToken
        let router = FerryHTTPServer.router(
            endpoints: endpoints,
            outbox: catalog,
            configuration: http,
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
        let census = ConnectionCensus(factory: factory)
        let application = FerryHTTPServer.application(
            router: router,
            configuration: configuration.http,
            certificates: certificates,
            census: census,
            logger: logger,
            onServerRunning: onServerRunning
        )
        self.census = census
        self.certificates = certificates
        self.engine = engine
        self.registry = registry
        self.bucketToCreate = bucketToCreate
        self.threadPool = threadPool
        // Graceful shutdown runs in reverse order: first stop appends, then drain HTTP, then
        // stop expiry, close the storage client, release the I/O threads, and last give up the
        // cross-node locks and the database pool.
        self.services = catalogServices + [ThreadPoolService(threadPool: threadPool)] + storageServices + [
            ExpiryService(engine: engine, interval: configuration.expiryInterval, orphanAge: configuration.orphanAge),
        ] + businessServices + (statistics.map { [$0] } ?? []) + [
            application,
            AppendDrainService(engine: engine),
        ] + (certificates.map { [CertificateReloadService(store: $0, logger: logger)] } ?? [])
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
        do {
            try await prepareStorage()
        } catch {
            // Nothing ran yet: release what the services would have released.
            try? await bucketToCreate?.http.shutdown()
            try? await threadPool.shutdownGracefully()
            throw error
        }
        try await group.run()
    }

    /// Creates the bucket when asked, before any request is accepted; a store that does not
    /// answer stops the start with a clear error instead of failing a running server later.
    public func prepareStorage() async throws(FerryError) {
        guard var client = bucketToCreate else { return }
        client.timeout = .seconds(15)
        do {
            try await client.createBucket()
        } catch {
            throw FerryError(.storageFailure, "could not create or reach the bucket \(client.location.bucket) at \(client.location.endpoint)", underlying: error)
        }
        logger.info("s3.bucket_ready", metadata: ["s3.bucket": "\(client.location.bucket)"])
    }
}

extension FerryServer {
    static func s3Client(_ s3: S3StorageConfiguration, _ http: HTTPClient) -> S3Client {
        S3Client(
            http: http,
            location: S3Location(endpoint: s3.endpoint, bucket: s3.bucket),
            signer: SigV4Signer(credentials: S3Credentials(accessKeyID: s3.accessKeyID, secretAccessKey: s3.secretAccessKey), region: s3.region)
        )
    }
}

/// Owns the HTTP client that talks to object storage: shuts it down after the HTTP server and
/// the appends stopped.
struct HTTPClientService: Service {
    let client: HTTPClient

    /// Connections to the store are reused; many parts travel at once.
    static func makeClient() -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        configuration.decompression = .disabled
        // Ferry installs no tracer; without this each request still opens a no-op span and
        // computes its attributes (about 2 % of the CPU of a node that calls back per upload).
        configuration.tracing.tracer = nil
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
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

/// Reads the TLS certificate and key again on SIGHUP (a renewed certificate): new connections
/// get it, open ones keep theirs; a file that cannot be used is logged and the old one stays.
struct CertificateReloadService: Service {
    let store: CertificateStore
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in signals {
                    do {
                        let summary = try await store.reload()
                        logger.info("tls.certificate_reloaded", metadata: ["tls.certificate": "\(summary)"])
                    } catch {
                        logger.error("tls.certificate_reload_failed", metadata: ["error": "\(error)", "tls.certificate": "\(store.summary)"])
                    }
                }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
    }
}
