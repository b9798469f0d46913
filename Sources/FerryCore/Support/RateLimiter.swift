import Foundation
import Synchronization

/// Token buckets per key (a client address, a token's subject): `perMinute` events a minute
/// on average, bursts of up to `perMinute`. In memory, per node; bounded in keys.
public final class RateLimiter: Sendable {
    struct Bucket {
        var tokens: Double
        var updated: Date
    }

    public let perMinute: Int
    let maxKeys: Int
    private let buckets = Mutex<[String: Bucket]>([:])

    public init(perMinute: Int, maxKeys: Int = 100_000) {
        self.perMinute = perMinute
        self.maxKeys = maxKeys
    }

    /// Takes one token for `key` at `now`; false (and nothing taken) when the bucket is empty.
    /// The second value is how many seconds until a token is back.
    public func take(_ key: String, now: Date) -> (allowed: Bool, retryAfter: Int) {
        let capacity = Double(perMinute)
        let perSecond = capacity / 60
        return buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: capacity, updated: now)
            let elapsed = max(0, now.timeIntervalSince(bucket.updated))
            bucket.tokens = min(capacity, bucket.tokens + elapsed * perSecond)
            bucket.updated = now
            guard bucket.tokens >= 1 else {
                buckets[key] = bucket
                return (false, max(1, Int(((1 - bucket.tokens) / perSecond).rounded(.up))))
            }
            bucket.tokens -= 1
            if buckets[key] == nil, buckets.count >= maxKeys {
                // Full buckets hold no information: forget them first, then anything.
                buckets = buckets.filter { now.timeIntervalSince($0.value.updated) * perSecond + $0.value.tokens < capacity }
                if buckets.count >= maxKeys { buckets.removeAll(keepingCapacity: true) }
            }
            buckets[key] = bucket
            return (true, 0)
        }
    }
}
