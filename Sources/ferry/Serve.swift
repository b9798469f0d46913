import ArgumentParser
import FerryServer
import Foundation
import Logging

/// `ferry serve`: every option can also come from a `FERRY_*` environment variable;
/// a flag given on the command line wins.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve tus 1.0 uploads: on local disk and SQLite, or on S3 and PostgreSQL for several nodes.",
        discussion: """
            Every option can also be set with an environment variable: FERRY_ followed by the option's \
            name in capitals with underscores (--data-dir → FERRY_DATA_DIR; --cors-origin → FERRY_CORS_ORIGIN, \
            comma-separated). Durations take a unit: 500ms, 30s, 15m, 24h. Sizes are bytes or take K/M/G/T (binary).
            """
    )

    @Option(help: "Address to listen on. [env: FERRY_HOST] (default: \(Defaults.http.host))")
    var host: String?

    @Option(help: "Port to listen on. [env: FERRY_PORT] (default: \(Defaults.http.port))")
    var port: Int?

    @Option(help: "URL path of the upload collection. [env: FERRY_BASE_PATH] (default: \(Defaults.routes.basePath))")
    var basePath: String?

    @Option(help: "Absolute URL prefix for Location headers, e.g. https://up.example.com/files/; by default built from the Host header. [env: FERRY_PUBLIC_URL]")
    var publicURL: String?

    @Flag(help: "Trust X-Forwarded-Proto/-Host (only behind a proxy that sets them). [env: FERRY_TRUST_FORWARDED_HEADERS]")
    var trustForwardedHeaders = false

    @Option(help: "Folder for upload data and the catalog. [env: FERRY_DATA_DIR] (default: \(Defaults.server.dataDirectory))")
    var dataDir: String?

    @Option(help: "disk, or s3://BUCKET[/PREFIX] for S3-compatible object storage (several nodes). [env: FERRY_STORAGE] (default: disk)")
    var storage: String?

    @Option(help: "S3 endpoint URL, e.g. http://127.0.0.1:7480. [env: FERRY_S3_ENDPOINT]")
    var s3Endpoint: String?

    @Option(help: "S3 signing region. [env: FERRY_S3_REGION] (default: \(Defaults.s3.region))")
    var s3Region: String?

    @Option(help: "S3 access key id; prefer the environment. [env: FERRY_S3_ACCESS_KEY]")
    var s3AccessKey: String?

    @Option(help: "S3 secret key; prefer the environment. [env: FERRY_S3_SECRET_KEY]")
    var s3SecretKey: String?

    @Option(help: "Bytes per S3 part, 5M-5G. [env: FERRY_S3_PART_SIZE] (default: \(Defaults.bytes(Defaults.s3.partSize)))")
    var s3PartSize: String?

    @Option(help: "Parts of one upload sent to S3 at once. [env: FERRY_S3_PART_CONCURRENCY] (default: \(Defaults.s3.partConcurrency))")
    var s3PartConcurrency: Int?

    @Option(help: "Most bytes spooled on this node on their way to S3 (in <data-dir>/spool). [env: FERRY_SPOOL_LIMIT] (default: \(Defaults.bytes(Defaults.s3.spoolLimit)))")
    var spoolLimit: String?

    @Flag(help: "Create the bucket at start-up if it is missing. [env: FERRY_S3_CREATE_BUCKET]")
    var s3CreateBucket = false

    @Option(help: "sqlite, or postgres://USER:PASSWORD@HOST:PORT/DATABASE shared by several nodes. [env: FERRY_CATALOG] (default: sqlite)")
    var catalog: String?

    @Option(help: "Largest upload accepted (0: no limit). [env: FERRY_MAX_SIZE] (default: \(Defaults.bytes(Defaults.engine.maxSize)))")
    var maxSize: String?

    @Option(help: "Incomplete uploads expire this long after their last byte (0: never). [env: FERRY_EXPIRY] (default: \(Defaults.duration(Defaults.engine.expiry)))")
    var expiry: String?

    @Option(help: "How often expired uploads are deleted. [env: FERRY_EXPIRY_INTERVAL] (default: \(Defaults.duration(Defaults.server.expiryInterval)))")
    var expiryInterval: String?

    @Option(help: "Stored bytes no upload owns (left by a crash) are deleted once untouched this long; swept at start and every 6 h. [env: FERRY_ORPHAN_AGE] (default: \(Defaults.duration(Defaults.server.orphanAge)))")
    var orphanAge: String?

    @Option(help: "Close a connection that sends no byte of its request for this long; its PATCH keeps what arrived. [env: FERRY_READ_TIMEOUT] (default: \(Defaults.duration(Defaults.http.readTimeout)))")
    var readTimeout: String?

    @Option(help: "How long a new request waits for an interrupted one to save its bytes. [env: FERRY_LOCK_TIMEOUT] (default: \(Defaults.duration(Defaults.engine.lockTimeout)))")
    var lockTimeout: String?

    @Option(help: "A long PATCH commits its progress at least this often. [env: FERRY_CHECKPOINT_INTERVAL] (default: \(Defaults.duration(Defaults.engine.checkpointInterval)))")
    var checkpointInterval: String?

    @Option(help: "...and at least every this many bytes. [env: FERRY_CHECKPOINT_SIZE] (default: \(Defaults.bytes(Defaults.engine.checkpointBytes)))")
    var checkpointSize: String?

    @Option(help: "Longest graceful shutdown on SIGTERM before work is cancelled. [env: FERRY_SHUTDOWN_TIMEOUT] (default: \(Defaults.duration(Defaults.server.shutdownTimeout)))")
    var shutdownTimeout: String?

    @Option(help: "Allow browser uploads from this origin (repeatable; * for any). CORS is off without it. [env: FERRY_CORS_ORIGIN]")
    var corsOrigin: [String] = []

    @Flag(help: "Refuse DELETE (disables the tus termination extension). [env: FERRY_NO_TERMINATION]")
    var noTermination = false

    @Option(help: "Threads for blocking file I/O. [env: FERRY_IO_THREADS] (default: \(Defaults.server.ioThreads))")
    var ioThreads: Int?

    @Option(help: "trace, debug, info, notice, warning, error or critical. [env: FERRY_LOG_LEVEL] (default: \(Defaults.logLevel))")
    var logLevel: String?

    @Option(help: "text or json. [env: FERRY_LOG_FORMAT] (default: \(Defaults.logFormat))")
    var logFormat: String?

    @Option(help: "Configuration file: scenarios, tokens, quotas, callbacks, webhooks (docs/business.md). Without it: one open scenario. [env: FERRY_CONFIG]")
    var config: String?

    @Flag(help: "Serve PUT /discard, which reads and drops a body (benchmark ceiling only). [env: FERRY_BENCH_DISCARD]")
    var benchDiscard = false

    @Flag(help: "Keep no per-upload statistics (docs/statistics.md). [env: FERRY_NO_STATS]")
    var noStats = false

    @Option(help: "Statistics of uploads created longer ago are pruned. [env: FERRY_STATS_RETENTION] (default: \(Defaults.duration(Defaults.stats?.retention)))")
    var statsRetention: String?

    @Option(help: "PEM certificate chain (leaf first): serve HTTPS, HTTP/2 and HTTP/1.1 chosen by ALPN; re-read on SIGHUP. Also [tls] certificate in --config. [env: FERRY_TLS_CERT]")
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert; re-read on SIGHUP. Also [tls] key in --config. [env: FERRY_TLS_KEY]")
    var tlsKey: String?

    @Flag(help: "Accept plain-text HTTP/2 with prior knowledge beside HTTP/1.1 (behind a proxy speaking h2 to upstreams). [env: FERRY_H2C]")
    var h2c = false

    @Option(help: "HTTP/2 window of one stream: one upload's speed is at most window / RTT. [env: FERRY_H2_STREAM_WINDOW] (default: \(Defaults.bytes(Int64(Defaults.http.transport.http2.streamWindow))))")
    var h2StreamWindow: String?

    @Option(help: "HTTP/2 window of a connection: the most its unread request bodies hold in memory. [env: FERRY_H2_CONNECTION_WINDOW] (default: \(Defaults.bytes(Int64(Defaults.http.transport.http2.connectionWindow))))")
    var h2ConnectionWindow: String?

    @Option(help: "HTTP/2 streams one connection may have open at once. [env: FERRY_H2_MAX_STREAMS] (default: \(Defaults.http.transport.http2.maxConcurrentStreams))")
    var h2MaxStreams: Int?

    @Option(help: "Largest HTTP/2 frame a client may send; fewer, larger DATA frames cost both ends less CPU. [env: FERRY_H2_MAX_FRAME] (default: \(Defaults.bytes(Int64(Defaults.http.transport.http2.maxFrameSize))))")
    var h2MaxFrame: String?

    @Option(help: "Connections open at once; more are answered 503. [env: FERRY_MAX_CONNECTIONS] (default: \(Defaults.limits.maxConnections))")
    var maxConnections: Int?

    @Option(help: "Cut a request body that arrives slower than this many bytes/s over 30 s of waiting (0: never). [env: FERRY_MIN_BODY_RATE] (default: \(Defaults.limits.minBodyRate))")
    var minBodyRate: Int?

    @Option(help: "Largest request head; larger ones are answered 431. [env: FERRY_MAX_HEADER_SIZE] (default: \(Defaults.bytes(Int64(Defaults.limits.maxHeaderBytes))))")
    var maxHeaderSize: String?

    @Option(help: "Free space upload writes leave on the data file system, for the catalog (disk storage). [env: FERRY_DISK_RESERVE] (default: \(Defaults.bytes(Defaults.server.diskReserve)))")
    var diskReserve: String?

    @Option(help: "Uploads one client (token subject, else address) may create a minute on a node (0: no limit). [env: FERRY_CREATION_RATE] (default: \(Defaults.engine.creationsPerMinutePerClient ?? 0))")
    var creationRate: Int?

    @Option(help: "Incomplete uploads one anonymous client address may hold (0: no limit); overrides [anonymous] open-uploads. [env: FERRY_ANONYMOUS_OPEN_UPLOADS] (default: \(Defaults.anonymousOpenUploads))")
    var anonymousOpenUploads: Int?

    func run() async throws {
        let settings = Settings(environment: ProcessInfo.processInfo.environment)
        var configuration = try makeConfiguration(settings)
        if let path = config ?? settings.environment["FERRY_CONFIG"] {
            do {
                let text = try String(contentsOfFile: path, encoding: .utf8)
                configuration.business = try ConfigFile.parse(text, path: path) { file in
                    // Key files are named relative to the configuration file.
                    let resolved = file.hasPrefix("/") ? file : URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(file).path
                    return try String(contentsOfFile: resolved, encoding: .utf8)
                }
                try await configuration.business.prepare()
                if configuration.http.transport.tls == nil, var files = configuration.business.tls {
                    // Files named in the configuration file are relative to it.
                    let folder = URL(fileURLWithPath: path).deletingLastPathComponent()
                    func resolve(_ file: String) -> String { file.hasPrefix("/") ? file : folder.appendingPathComponent(file).path }
                    files.certificateChain = resolve(files.certificateChain)
                    files.privateKey = resolve(files.privateKey)
                    configuration.http.transport.tls = files
                }
            } catch let error as CocoaError {
                throw ValidationError("\(path): cannot read the configuration file (\(error.localizedDescription))")
            } catch {
                // A ConfigurationError names its file and line; a key that fails to load says why.
                throw ValidationError("\(error)")
            }
        }
        // -1: not given, the configuration file's value (or the default) stands.
        let open = try settings.value(anonymousOpenUploads.map(String.init), "FERRY_ANONYMOUS_OPEN_UPLOADS", default: -1) { Int($0).flatMap { $0 >= 0 ? $0 : nil } }
        if open >= 0 { configuration.business.anonymousQuotas.openUploads = open == 0 ? nil : open }
        let level = try settings.value(logLevel, "FERRY_LOG_LEVEL", default: Logger.Level.info) { Logger.Level(rawValue: $0.lowercased()) }
        let json = try settings.value(logFormat, "FERRY_LOG_FORMAT", default: false) { format -> Bool? in
            switch format.lowercased() {
            case "text": false
            case "json": true
            default: nil
            }
        }
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "ferry")
        let server: FerryServer
        do {
            server = try FerryServer(configuration: configuration, logger: logger)
        } catch {
            // A setting it cannot run with (`ConfigurationError`: the flag), or storage it cannot open.
            throw ValidationError("\(error)")
        }
        try await server.run()
    }

    /// The embedded defaults (`Defaults.server`), changed by every flag or variable given.
    func makeConfiguration(_ settings: Settings) throws -> FerryServerConfiguration {
        var configuration = Defaults.server
        let maxSize = try settings.value(self.maxSize, "FERRY_MAX_SIZE", default: Defaults.engine.maxSize ?? 0, parse: Settings.bytes)
        let expiry = try settings.value(self.expiry, "FERRY_EXPIRY", default: Defaults.engine.expiry ?? .zero, parse: Settings.duration)
        configuration.engine.maxSize = maxSize == 0 ? nil : maxSize
        configuration.engine.expiry = expiry == .zero ? nil : expiry
        configuration.engine.lockTimeout = try settings.value(lockTimeout, "FERRY_LOCK_TIMEOUT", default: Defaults.engine.lockTimeout, parse: Settings.duration)
        configuration.engine.checkpointBytes = try settings.value(
            checkpointSize, "FERRY_CHECKPOINT_SIZE", default: Defaults.engine.checkpointBytes, parse: Settings.bytes
        )
        configuration.engine.checkpointInterval = try settings.value(
            checkpointInterval, "FERRY_CHECKPOINT_INTERVAL", default: Defaults.engine.checkpointInterval, parse: Settings.duration
        )
        configuration.engine.allowsTermination = !(noTermination || settings.flag("FERRY_NO_TERMINATION"))
        let rate = try settings.value(creationRate.map(String.init), "FERRY_CREATION_RATE", default: Defaults.engine.creationsPerMinutePerClient ?? 0) { Int($0) }
        configuration.engine.creationsPerMinutePerClient = rate == 0 ? nil : rate
        configuration.http.limits.maxConnections = try settings.value(
            maxConnections.map(String.init), "FERRY_MAX_CONNECTIONS", default: Defaults.limits.maxConnections
        ) { Int($0) }
        configuration.http.limits.minBodyRate = try settings.value(minBodyRate.map(String.init), "FERRY_MIN_BODY_RATE", default: Defaults.limits.minBodyRate) { Int($0) }
        configuration.http.limits.maxHeaderBytes = Int(
            try settings.value(maxHeaderSize, "FERRY_MAX_HEADER_SIZE", default: Int64(Defaults.limits.maxHeaderBytes), parse: Settings.bytes)
        )
        var origins = corsOrigin
        if origins.isEmpty, let list = settings.environment["FERRY_CORS_ORIGIN"] {
            origins = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        configuration.http.cors.allowedOrigins = origins
        try applyTransport(settings, to: &configuration)
        configuration.http.host = settings.value(host, "FERRY_HOST", default: Defaults.http.host)
        configuration.http.port = try settings.value(port.map(String.init), "FERRY_PORT", default: Defaults.http.port) { Int($0) }
        configuration.http.readTimeout = try settings.value(readTimeout, "FERRY_READ_TIMEOUT", default: Defaults.http.readTimeout, parse: Settings.duration)
        configuration.http.discardEndpoint = benchDiscard || settings.flag("FERRY_BENCH_DISCARD")
        configuration.tus.basePath = settings.value(basePath, "FERRY_BASE_PATH", default: Defaults.routes.basePath)
        configuration.tus.publicBaseURL = publicURL ?? settings.environment["FERRY_PUBLIC_URL"]
        configuration.tus.trustForwardedHeaders = trustForwardedHeaders || settings.flag("FERRY_TRUST_FORWARDED_HEADERS")
        configuration.dataDirectory = settings.value(dataDir, "FERRY_DATA_DIR", default: Defaults.server.dataDirectory)
        configuration.storage = try makeStorage(settings)
        configuration.catalog = try makeCatalog(settings)
        configuration.ioThreads = try settings.value(ioThreads.map(String.init), "FERRY_IO_THREADS", default: Defaults.server.ioThreads) { Int($0) }
        configuration.expiryInterval = try settings.value(
            expiryInterval, "FERRY_EXPIRY_INTERVAL", default: Defaults.server.expiryInterval, parse: Settings.duration
        )
        configuration.orphanAge = try settings.value(orphanAge, "FERRY_ORPHAN_AGE", default: Defaults.server.orphanAge, parse: Settings.duration)
        configuration.shutdownTimeout = try settings.value(
            shutdownTimeout, "FERRY_SHUTDOWN_TIMEOUT", default: Defaults.server.shutdownTimeout, parse: Settings.duration
        )
        if noStats || settings.flag("FERRY_NO_STATS") {
            configuration.statistics = nil
        } else if let retention = Defaults.stats?.retention {
            configuration.statistics?.retention = try settings.value(statsRetention, "FERRY_STATS_RETENTION", default: retention, parse: Settings.duration)
        }
        configuration.diskReserve = try settings.value(diskReserve, "FERRY_DISK_RESERVE", default: Defaults.server.diskReserve, parse: Settings.bytes)
        do {
            try configuration.validate()
        } catch {
            throw ValidationError(error.description)
        }
        return configuration
    }

    func makeStorage(_ settings: Settings) throws -> StorageConfiguration {
        let text = settings.value(storage, "FERRY_STORAGE", default: "disk")
        if text == "disk" { return .disk }
        guard let location = S3StorageConfiguration.parseLocation(text) else {
            throw ValidationError("--storage must be disk or s3://BUCKET[/PREFIX]")
        }
        let endpointText = settings.value(s3Endpoint, "FERRY_S3_ENDPOINT", default: "")
        guard let endpoint = URL(string: endpointText), !endpointText.isEmpty else {
            throw ValidationError("S3 storage needs --s3-endpoint (FERRY_S3_ENDPOINT)")
        }
        return .s3(
            S3StorageConfiguration(
                endpoint: endpoint,
                bucket: location.bucket,
                keyPrefix: location.prefix,
                region: settings.value(s3Region, "FERRY_S3_REGION", default: Defaults.s3.region),
                accessKeyID: settings.value(s3AccessKey, "FERRY_S3_ACCESS_KEY", default: ""),
                secretAccessKey: settings.value(s3SecretKey, "FERRY_S3_SECRET_KEY", default: ""),
                partSize: try settings.value(s3PartSize, "FERRY_S3_PART_SIZE", default: Defaults.s3.partSize, parse: Settings.bytes),
                partConcurrency: try settings.value(s3PartConcurrency.map(String.init), "FERRY_S3_PART_CONCURRENCY", default: Defaults.s3.partConcurrency) { Int($0) },
                spoolLimit: try settings.value(spoolLimit, "FERRY_SPOOL_LIMIT", default: Defaults.s3.spoolLimit, parse: Settings.bytes),
                createBucket: s3CreateBucket || settings.flag("FERRY_S3_CREATE_BUCKET")
            )
        )
    }

    func makeCatalog(_ settings: Settings) throws -> CatalogConfiguration {
        let text = settings.value(catalog, "FERRY_CATALOG", default: "sqlite")
        if text == "sqlite" { return .sqlite }
        guard text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") else {
            throw ValidationError("--catalog must be sqlite or a postgres:// URL")
        }
        return .postgres(url: text)
    }

    /// TLS and HTTP/2: `--tls-cert` and `--tls-key` go together.
    func applyTransport(_ settings: Settings, to configuration: inout FerryServerConfiguration) throws {
        var transport = Defaults.http.transport
        let certificate = tlsCert ?? settings.environment["FERRY_TLS_CERT"]
        let key = tlsKey ?? settings.environment["FERRY_TLS_KEY"]
        switch (certificate, key) {
        case (nil, nil): break
        case (let certificate?, let key?): transport.tls = .init(certificateChain: certificate, privateKey: key)
        case (nil, _): throw ValidationError("--tls-key needs --tls-cert (FERRY_TLS_CERT)")
        case (_, nil): throw ValidationError("--tls-cert needs --tls-key (FERRY_TLS_KEY)")
        }
        transport.h2c = h2c || settings.flag("FERRY_H2C")
        let http2 = transport.http2
        transport.http2.streamWindow = Int(
            try settings.value(h2StreamWindow, "FERRY_H2_STREAM_WINDOW", default: Int64(http2.streamWindow), parse: Settings.bytes)
        )
        transport.http2.connectionWindow = Int(
            try settings.value(h2ConnectionWindow, "FERRY_H2_CONNECTION_WINDOW", default: Int64(http2.connectionWindow), parse: Settings.bytes)
        )
        transport.http2.maxConcurrentStreams = try settings.value(
            h2MaxStreams.map(String.init), "FERRY_H2_MAX_STREAMS", default: http2.maxConcurrentStreams
        ) { Int($0) }
        transport.http2.maxFrameSize = Int(
            try settings.value(h2MaxFrame, "FERRY_H2_MAX_FRAME", default: Int64(http2.maxFrameSize), parse: Settings.bytes)
        )
        configuration.http.transport = transport
    }
}
