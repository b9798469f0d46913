/// When to retry: at once after the first failure (a connection that died after making progress
/// — the common case on mobile links — costs no wait), then exponential backoff with full
/// jitter and a cap; the attempt counter starts over whenever the server's offset advances;
/// `Retry-After` is honoured; the caller's overall deadline — not an attempt count — ends the
/// upload.
public struct RetryPolicy: Sendable, Equatable {
    public var base: Duration
    public var cap: Duration
    /// How long the whole upload may take; hours by default.
    public var deadline: Duration
    /// Give up after this many consecutive attempts without progress (nil: never; the
    /// deadline decides). Only for reproducing fixed-schedule clients.
    public var maximumAttemptsWithoutProgress: Int?
    /// Fixed delays instead of exponential backoff (for reproducing other clients).
    public var fixedDelays: [Duration]?

    public init(
        base: Duration = .milliseconds(500),
        cap: Duration = .seconds(30),
        deadline: Duration = .seconds(6 * 3600),
        maximumAttemptsWithoutProgress: Int? = nil,
        fixedDelays: [Duration]? = nil
    ) {
        self.base = base
        self.cap = cap
        self.deadline = deadline
        self.maximumAttemptsWithoutProgress = maximumAttemptsWithoutProgress
        self.fixedDelays = fixedDelays
    }

    /// The schedule most tus clients ship with: 0, 1, 3, 5 s, then give up.
    public static let typicalTusClient = RetryPolicy(
        deadline: .seconds(24 * 3600),
        maximumAttemptsWithoutProgress: 4,
        fixedDelays: [.zero, .seconds(1), .seconds(3), .seconds(5)]
    )
}

/// The running state of `RetryPolicy` for one upload.
public struct Backoff: Sendable, Equatable {
    public let policy: RetryPolicy
    /// Consecutive failed attempts since the offset last advanced.
    public private(set) var attempt = 0

    public init(policy: RetryPolicy) { self.policy = policy }

    /// The server's offset advanced: failures so far no longer count.
    public mutating func progressed() { attempt = 0 }

    /// The delay before the next attempt, or nil when this policy gives up.
    /// `unit` is a uniform random number in [0, 1) (injected for determinism).
    public mutating func nextDelay(retryAfter: Duration? = nil, unit: Double) -> Duration? {
        defer { attempt += 1 }
        if let limit = policy.maximumAttemptsWithoutProgress, attempt >= limit { return nil }
        let delay: Duration
        if let fixed = policy.fixedDelays {
            delay = fixed[min(attempt, fixed.count - 1)]
        } else {
            let exponential = attempt == 0 ? 0 : policy.base.seconds * pow2(attempt - 1)
            delay = Duration(seconds: unit * min(policy.cap.seconds, exponential))
        }
        if let retryAfter { return max(delay, min(retryAfter, policy.cap * 4)) }
        return delay
    }

    private func pow2(_ exponent: Int) -> Double {
        exponent >= 62 ? .greatestFiniteMagnitude : Double(Int64(1) << Int64(exponent))
    }
}
