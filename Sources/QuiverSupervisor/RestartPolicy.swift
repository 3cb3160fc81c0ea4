/// When to restart a worker that exited, with numbers: the first restart after `firstDelay`,
/// then doubling up to `maxDelay`, at most `maxRestarts` restarts within `window`; one more
/// failure inside the window gives up (the run then stops with an error naming the worker).
public struct RestartPolicy: Sendable, Equatable {
    public var firstDelay: Double = 0.1
    public var maxDelay: Double = 2.0
    public var maxRestarts: Int = 5
    public var window: Double = 30

    public init(firstDelay: Double = 0.1, maxDelay: Double = 2.0, maxRestarts: Int = 5, window: Double = 30) {
        self.firstDelay = firstDelay
        self.maxDelay = maxDelay
        self.maxRestarts = maxRestarts
        self.window = window
    }

    /// The delay before the next restart given the times (seconds, monotonic) of the restarts
    /// already made, or nil to give up.
    public func delay(now: Double, previousRestarts: [Double]) -> Double? {
        let recent = previousRestarts.filter { now - $0 < window }
        guard recent.count < maxRestarts else { return nil }
        var d = firstDelay
        for _ in 0..<recent.count { d = min(maxDelay, d * 2) }
        return d
    }
}
