/// How long a call may wait: a bounded `Duration` or, only when asked for by name, forever.
///
/// libzmq counts in milliseconds, with -1 for "forever"; a duration is rounded up to the next whole
/// millisecond (so a non-zero wait never becomes a zero one) and clamped to `Int32.max` ms
/// (about 24 days). Negative durations count as zero.
public enum ZMQTimeout: Sendable, Hashable, CustomStringConvertible {
    /// Wait until the event happens (libzmq's -1). Never a default anywhere in this module.
    case infinite
    /// Wait at most this long.
    case after(Duration)

    /// Do not wait.
    public static let zero = ZMQTimeout.after(.zero)
    public static func milliseconds(_ ms: Int) -> ZMQTimeout { .after(.milliseconds(ms)) }
    public static func seconds(_ s: Int) -> ZMQTimeout { .after(.seconds(s)) }

    /// libzmq's representation: milliseconds, -1 for infinite.
    public var milliseconds: Int32 {
        switch self {
        case .infinite:
            return -1
        case .after(let duration):
            return Int32(clamping: duration.wholeMillisecondsRoundedUp)
        }
    }

    /// From libzmq's representation (any negative value is infinite).
    public init(milliseconds: Int32) {
        self = milliseconds < 0 ? .infinite : .after(.milliseconds(Int(milliseconds)))
    }

    public var description: String {
        switch self {
        case .infinite: return "infinite"
        case .after(let duration): return "\(duration.wholeMillisecondsRoundedUp) ms"
        }
    }
}

extension Duration {
    /// Whole milliseconds, rounded up; 0 for zero or negative durations.
    var wholeMillisecondsRoundedUp: Int64 {
        let (seconds, attoseconds) = components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
        let attosecondsPerMillisecond: Int64 = 1_000_000_000_000_000
        let (ms, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return Int64.max }
        let extra = (attoseconds + attosecondsPerMillisecond - 1) / attosecondsPerMillisecond
        return ms.addingReportingOverflow(extra).overflow ? Int64.max : ms + extra
    }
}
