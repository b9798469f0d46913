import Synchronization

/// Why an in-flight append was asked to stop before its body ended.
public enum StopReason: Sendable, Equatable {
    /// A newer request on the same upload wants the lock.
    case superseded
    /// The server is shutting down.
    case shutdown
}

/// A one-shot signal that a running append should save what it has and finish.
public final class StopSignal: Sendable {
    private let reasonShot = OneShot<StopReason>()

    public init() {}

    public var reason: StopReason? { reasonShot.current }

    /// Fires the signal; the first reason wins.
    public func fire(_ reason: StopReason) { reasonShot.fulfill(reason) }

    /// Waits until the signal fires; returns nil if the waiting task is cancelled first.
    public func wait() async -> StopReason? { await reasonShot.wait() }
}
