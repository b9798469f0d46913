/// A `Clock` measuring in `Duration`, whatever clock is behind it: what components store when
/// they take `some Clock<Duration>` (`.continuous` by default, a test clock in tests) without
/// becoming generic themselves.
public struct AnyClock: Clock, Sendable {
    public struct Instant: InstantProtocol, Sendable {
        /// Time since the clock's own origin.
        public var offset: Duration

        public init(offset: Duration) { self.offset = offset }

        public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - offset }
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
        public static func - (lhs: Instant, rhs: Instant) -> Duration { lhs.offset - rhs.offset }
        public static func - (lhs: Instant, rhs: Duration) -> Instant { Instant(offset: lhs.offset - rhs) }
        public static func + (lhs: Instant, rhs: Duration) -> Instant { Instant(offset: lhs.offset + rhs) }
    }

    private let read: @Sendable () -> Duration
    private let wait: @Sendable (Duration) async throws -> Void
    public let minimumResolution: Duration

    public init<C: Clock>(_ clock: C) where C.Duration == Duration {
        let origin = clock.now
        read = { origin.duration(to: clock.now) }
        wait = { duration in try await clock.sleep(until: clock.now.advanced(by: duration), tolerance: nil) }
        minimumResolution = clock.minimumResolution
    }

    /// The system's monotonic clock.
    public static var continuous: AnyClock { AnyClock(ContinuousClock()) }

    public var now: Instant { Instant(offset: read()) }

    public func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        try await wait(now.duration(to: deadline))
    }
}
