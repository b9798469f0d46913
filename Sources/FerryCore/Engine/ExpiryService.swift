import Logging
import ServiceLifecycle

/// Periodically expires incomplete uploads; a `Service` so it stops with the server.
public struct ExpiryService: Service {
    let engine: UploadEngine
    let interval: Duration

    public init(engine: UploadEngine, interval: Duration = .seconds(60)) {
        self.engine = engine
        self.interval = interval
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            await engine.expireDue()
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                return
            }
        }
    }
}

/// At the start of a graceful shutdown, tells running appends to save and finish, so the
/// HTTP server can drain quickly. List it after the HTTP server in the `ServiceGroup`
/// (services shut down in reverse order).
public struct AppendDrainService: Service {
    let engine: UploadEngine

    public init(engine: UploadEngine) { self.engine = engine }

    public func run() async throws {
        try? await gracefulShutdown()
        engine.beginShutdown()
    }
}
