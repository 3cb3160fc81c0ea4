#if canImport(Glibc)
import Glibc
#endif

/// The project's one clock helper, in nanoseconds or seconds. CLOCK_MONOTONIC for every lease,
/// timeout, deadline, rate and heartbeat (system-wide on Linux, so comparable between the
/// processes of a run, and never stepped by NTP or an operator); CLOCK_REALTIME only for times
/// that leave the machine or are compared with another clock: frame publication times, signed
/// request timestamps, log lines.
public enum SystemClock {
    public static var monotonicNanoseconds: UInt64 { read(CLOCK_MONOTONIC) }
    public static var realtimeNanoseconds: UInt64 { read(CLOCK_REALTIME) }
    /// CLOCK_MONOTONIC in seconds (leases, timeouts, rates).
    public static var monotonicSeconds: Double { Double(monotonicNanoseconds) / 1e9 }
    /// CLOCK_REALTIME in seconds since 1970 (timestamps that leave the machine).
    public static var realtimeSeconds: Double { Double(realtimeNanoseconds) / 1e9 }

    private static func read(_ id: clockid_t) -> UInt64 {
        var t = timespec()
        clock_gettime(id, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }
}
