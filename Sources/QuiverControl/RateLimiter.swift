/// A token bucket per client: each request takes a token; a client's bucket holds at most `burst`
/// tokens and refills at `rate` tokens per second. A new client starts with a full bucket.
///
/// Memory is bounded: a client idle long enough for its bucket to be full again is forgotten
/// (a fresh bucket is the same thing), and at most `maxClients` are tracked; while that many are
/// active, a client not yet tracked is refused (`allow` is false) rather than evicting one (which
/// would hand the evicted client a full bucket).
public struct RateLimiter: Sendable {
    public let rate: Double
    public let burst: Double
    public let maxClients: Int

    private struct Bucket: Sendable {
        var tokens: Double
        var last: Double
    }

    private var buckets: [String: Bucket] = [:]
    private var lastSweep = -Double.infinity

    /// - Parameters:
    ///   - rate: tokens per second (> 0).
    ///   - burst: bucket size (>= 1).
    ///   - maxClients: most clients tracked at once.
    public init(rate: Double = ControlDefaults.rate, burst: Double = ControlDefaults.burst,
                maxClients: Int = ControlDefaults.rateLimitedClients) {
        self.rate = rate > 0 && rate.isFinite ? rate : 1
        self.burst = burst >= 1 && burst.isFinite ? burst : 1
        self.maxClients = max(1, maxClients)
    }

    /// Clients tracked now.
    public var trackedClients: Int { buckets.count }

    /// Seconds after which an idle client's bucket is full again.
    public var refillTime: Double { burst / rate }

    /// Takes a token for `client` at `now`: true if it had one.
    public mutating func allow(client: String, now: Double) -> Bool {
        if now - lastSweep >= refillTime { forgetIdle(now: now) }
        guard var bucket = buckets[client] else {
            if buckets.count >= maxClients {
                forgetIdle(now: now)
                guard buckets.count < maxClients else { return false }
            }
            buckets[client] = Bucket(tokens: burst - 1, last: now)
            return true
        }
        let elapsed = max(0, now - bucket.last)
        bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
        bucket.last = max(bucket.last, now)
        // A hair of tolerance: refills computed from decimal times (0.1 s at 10/s) land on 0.99999...
        let allowed = bucket.tokens >= 1 - 1e-9
        if allowed { bucket.tokens = max(0, bucket.tokens - 1) }
        buckets[client] = bucket
        return allowed
    }

    /// Tokens `client` has at `now` (burst for a client not tracked).
    public func tokens(client: String, now: Double) -> Double {
        guard let bucket = buckets[client] else { return burst }
        return min(burst, bucket.tokens + max(0, now - bucket.last) * rate)
    }

    /// Forgets every client whose bucket is full at `now`.
    public mutating func forgetIdle(now: Double) {
        lastSweep = now
        buckets = buckets.filter { _, bucket in bucket.tokens + max(0, now - bucket.last) * rate < burst }
    }

    /// Forgets `client` (it left).
    public mutating func remove(client: String) {
        buckets[client] = nil
    }
}
