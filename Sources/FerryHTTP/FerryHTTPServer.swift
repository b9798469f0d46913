import FerryCore
import FerryProtocol
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import CoreMetrics

/// Builds the Hummingbird application that serves Ferry: the tus dialect under its base
/// path, `/healthz`, `/metrics`, and optionally `PUT /discard` (a benchmark ceiling).
public enum FerryHTTPServer {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// A connection that sends nothing for this long while a request is read is closed
        /// (its PATCH saves what it received).
        public var readTimeout: Duration
        public var cors: CORSConfiguration
        /// Serve `PUT /discard`, which reads and drops its body (for benchmarks only).
        public var discardEndpoint: Bool
        /// Bearer token of the admin API (`/admin/...`); nil leaves it off.
        public var adminToken: String?
        /// Connections, slow bodies and heads, header size.
        public var limits: ConnectionLimits
        /// TLS, HTTP/2 and its windows.
        public var transport: HTTPTransport

        public init(
            host: String = "127.0.0.1",
            port: Int = 8080,
            readTimeout: Duration = .seconds(30),
            cors: CORSConfiguration = CORSConfiguration(),
            discardEndpoint: Bool = false,
            adminToken: String? = nil,
            limits: ConnectionLimits = ConnectionLimits(),
            transport: HTTPTransport = HTTPTransport()
        ) {
            self.transport = transport
            self.limits = limits
            self.host = host
            self.port = port
            self.readTimeout = readTimeout
            self.cors = cors
            self.discardEndpoint = discardEndpoint
            self.adminToken = adminToken
        }
    }

    /// The router, also used directly by tests.
    public static func router(
        endpoints: UploadEndpoints,
        outbox: any OutboxCatalog,
        configuration: Configuration,
        metricsFactory: any MetricsFactory,
        metricsText: @escaping @Sendable () -> String,
        health: @escaping @Sendable () async -> Bool,
        consoleLogger: Logger = Logger(label: "ferry")
    ) -> Router<FerryRequestContext> {
        let router = Router(context: FerryRequestContext.self)
        let routes = endpoints.routes
        router.add(
            middleware: MetricsMiddleware(factory: metricsFactory) { path in
                if routes.handles(path: path) { return routes.template(of: path) }
                if path.hasPrefix("/admin/") { return "/admin" }
                if path.hasPrefix("/telemetry/") { return "/telemetry" }
                if path.hasPrefix("/console") { return "/console" }
                return ["/healthz", "/metrics", "/discard"].contains(path) ? path : "other"
            }
        )
        if configuration.cors.isEnabled {
            router.add(middleware: CORSMiddleware(configuration: configuration.cors))
        }
        router.add(middleware: UploadMiddleware(endpoints: endpoints))
        router.get("/healthz") { _, _ -> Response in
            let healthy = await health()
            return Response(
                status: healthy ? .ok : .serviceUnavailable,
                headers: [.contentType: "text/plain", .cacheControl: "no-store"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: healthy ? "ok\n" : "unhealthy\n"))
            )
        }
        router.get("/metrics") { _, _ -> Response in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: metricsText()))
            )
        }
        if let token = configuration.adminToken {
            AdminRoutes.add(to: router, token: token, catalog: outbox)
            if let stats = endpoints.statistics?.store {
                StatsRoutes.add(to: router, token: token, stats: stats, catalog: outbox)
            }
        }
        ConsoleRoutes.add(to: router, endpoints: endpoints, adminAPI: configuration.adminToken != nil, logger: consoleLogger)
        if endpoints.statistics != nil {
            router.post("/telemetry/:id") { request, context -> Response in
                await TelemetryRoute.receive(request, context, endpoints: endpoints)
            }
        }
        if configuration.discardEndpoint {
            router.put("/discard") { request, _ -> Response in
                for try await _ in request.body {}
                return Response(status: .noContent)
            }
        }
        return router
    }

    /// The HTTP server as a `Service`. `certificates` is required when the transport has TLS
    /// (the caller keeps it to reload the certificate); `census` counts connections.
    public static func application(
        router: Router<FerryRequestContext>,
        configuration: Configuration,
        certificates: CertificateStore? = nil,
        census: ConnectionCensus,
        logger: Logger,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        precondition((certificates == nil) == (configuration.transport.tls == nil), "a TLS transport needs its certificate store")
        let channel = FerryHTTPChannel.Configuration(
            transport: configuration.transport,
            certificates: certificates,
            limits: configuration.limits,
            idleTimeout: configuration.readTimeout,
            counter: ConnectionCounter(),
            census: census
        )
        return Application(
            router: router,
            server: HTTPServerBuilder { responder in FerryHTTPChannel(responder: responder, configuration: channel) },
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: onServerRunning,
            logger: logger
        )
    }
}
