/// When to restart a worker that exited, with numbers.
///
/// Backoff: a failure after a healthy run (the worker ran `healthyAfter` seconds and made progress)
/// is isolated: restarted after `firstDelay`. Failures in a row without a healthy run between
/// double the delay, up to `maxDelay`.
///
/// Escalation by role: a non-essential worker (broadcaster, heartbeat, control, a proxy) is
/// retried for ever at the capped backoff; while it is down, or after more than `maxRestarts`
/// failures in a row, the run is reported `degraded`. An essential worker (the one that owns the
/// dynamics) gives up after `maxRestarts` restarts in a row, or `maxRestartsInWindow` restarts
/// within `window` seconds however healthy between (a crash loop that always lasts a little
/// while); the run then stops with an error naming it.
public struct RestartPolicy: Sendable, Equatable {
    public var firstDelay: Double = 0.1
    public var maxDelay: Double = 2.0
    /// Restarts in a row (no healthy run between) an essential worker gets; one more failure gives up.
    public var maxRestarts: Int = 5
    /// Restarts within `window` seconds an essential worker gets, healthy runs or not.
    public var maxRestartsInWindow: Int = 20
    public var window: Double = 60
    /// Seconds a worker must have run, making progress, for its next failure to count as isolated.
    public var healthyAfter: Double = 0.5

    public init(firstDelay: Double = 0.1, maxDelay: Double = 2.0, maxRestarts: Int = 5, maxRestartsInWindow: Int = 20,
                window: Double = 60, healthyAfter: Double = 0.5) {
        self.firstDelay = firstDelay
        self.maxDelay = maxDelay
        self.maxRestarts = maxRestarts
        self.maxRestartsInWindow = maxRestartsInWindow
        self.window = window
        self.healthyAfter = healthyAfter
    }

    /// The delay before restarting a worker that failed `failuresInARow` times in a row (1: an
    /// isolated failure): `firstDelay`, doubling, capped at `maxDelay`.
    public func delay(failuresInARow: Int) -> Double {
        var d = firstDelay
        var n = 1
        while n < failuresInARow && d < maxDelay { d *= 2; n += 1 }
        return min(maxDelay, d)
    }

    /// Whether an essential worker gives up: it failed `failuresInARow` times in a row, or was
    /// restarted `restartsInWindow` times within the window (this failure not counted).
    public func givesUp(failuresInARow: Int, restartsInWindow: Int) -> Bool {
        failuresInARow > maxRestarts || restartsInWindow >= maxRestartsInWindow
    }
}
