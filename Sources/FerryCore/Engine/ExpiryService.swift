import Logging
import ServiceLifecycle

/// Periodically expires incomplete uploads and, less often, sweeps bytes no upload owns;
/// a `Service` so it stops with the server.
public struct ExpiryService: Service {
    let engine: UploadEngine
    let interval: Duration
    let sweepInterval: Duration
    let orphanAge: Duration
    let clock: AnyClock

    public init(
        engine: UploadEngine,
        interval: Duration = .seconds(60),
        sweepInterval: Duration = .seconds(6 * 3600),
        orphanAge: Duration = .seconds(3600),
        clock: some Clock<Duration> = ContinuousClock()
    ) {
        self.engine = engine
        self.clock = AnyClock(clock)
        self.interval = interval
        self.sweepInterval = sweepInterval
        self.orphanAge = orphanAge
    }

    public func run() async throws {
        var lastSweep: AnyClock.Instant?
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            await engine.expireDue()
            if lastSweep.map({ $0.duration(to: clock.now) >= sweepInterval }) ?? true {
                await engine.sweepOrphans(olderThan: orphanAge)
                lastSweep = clock.now
            }
            do {
                try await cancelWhenGracefulShutdown { [clock, interval] in try await clock.sleep(for: interval) }
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

/// Retries `pre-finish` callbacks that failed or timed out, until they succeed or give up.
public struct BusinessRetryService: Service {
    let engine: UploadEngine
    let interval: Duration
    let clock: AnyClock

    public init(engine: UploadEngine, interval: Duration = .seconds(1), clock: some Clock<Duration> = ContinuousClock()) {
        self.engine = engine
        self.interval = interval
        self.clock = AnyClock(clock)
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            await engine.retryPendingBusiness()
            do {
                try await cancelWhenGracefulShutdown { [clock, interval] in try await clock.sleep(for: interval) }
            } catch {
                return
            }
        }
    }
}
