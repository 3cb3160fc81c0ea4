import QuiverModel

/// How a worker process ended, from its wait status.
public enum WorkerExit: Equatable, Sendable, CustomStringConvertible {
    case exited(code: Int32)
    case killed(signal: Int32)
    /// Reaped by someone else (a host calling waitpid(-1), or SIGCHLD ignored): status unknown.
    case unknown

    /// From a `waitpid` status word.
    public init(waitStatus status: Int32) {
        self = (status & 0x7f) == 0 ? .exited(code: (status >> 8) & 0xff) : .killed(signal: status & 0x7f)
    }

    /// Names of the signals a crashed or stopped worker is usually killed by.
    static let signalNames: [Int32: String] = [
        4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM", 2: "SIGINT",
    ]

    public var description: String {
        switch self {
        case .exited(let code) where code == WorkerExitStatus.fatal: return "exit status \(code) (a failure a restart cannot fix)"
        case .exited(let code): return "exit status \(code)"
        case .killed(let signal): return "killed by signal \(signal)\(Self.signalNames[signal].map { " (\($0))" } ?? "")"
        case .unknown: return "exit status 127"
        }
    }

    var isSuccess: Bool { self == .exited(code: 0) }
    /// The worker said a restart cannot help (`WorkerExitStatus.fatal`).
    public var isFatal: Bool { self == .exited(code: WorkerExitStatus.fatal) }
}

/// The supervisor's decisions about one worker, without processes: what to do when it exits
/// (restart after a delay, give up, or count the run as finished), whether it keeps failing, and
/// when the progress watchdog must kill it. `Supervisor` applies them (spawn, kill, log); tests
/// drive this type directly.
public struct WorkerLifecycle: Sendable, Equatable {
    /// What to do about an exited worker.
    public enum Decision: Equatable, Sendable {
        /// The run is stopping: nothing.
        case stopped
        /// A worker whose clean exit ends the run finished.
        case finished
        /// Start it again after `delay` seconds (the `restarts`-th restart).
        case restart(delay: Double, restarts: Int)
        /// The restart policy gave up on an essential worker: the run stops with an error naming it.
        case giveUp(restarts: Int)
    }

    public let policy: RestartPolicy
    /// Whether a clean exit (status 0) ends the run.
    public let exitEndsRun: Bool
    /// Whether the run cannot go on without it (the engine): only such a worker is ever given up,
    /// and giving up ends the run. A non-essential one is retried for ever.
    public let essential: Bool
    /// Seconds without progress before the watchdog kills the worker; nil: no watchdog.
    public let watchdog: Double?
    public private(set) var restarts = 0
    /// Failures since the last healthy run (0 while it has not failed since).
    public private(set) var failuresInARow = 0
    /// Monotonic times of the restarts made.
    public private(set) var restartTimes: [Double] = []
    public private(set) var lastExit: WorkerExit?
    private var startedAt = 0.0
    private var progressAtStart: UInt64 = 0
    private var lastProgress: UInt64 = 0
    private var lastProgressAt = 0.0
    /// The watchdog fired on this run of the worker: its exit is not after a healthy run.
    private var stalledThisRun = false

    public init(policy: RestartPolicy, exitEndsRun: Bool, essential: Bool = false, watchdog: Double?) {
        self.policy = policy
        self.exitEndsRun = exitEndsRun
        self.essential = essential
        self.watchdog = watchdog
    }

    /// The worker was (re)started at `now`, its progress counter at `progress`.
    public mutating func started(at now: Double, progress: UInt64) {
        startedAt = now
        stalledThisRun = false
        progressAtStart = progress
        lastProgress = progress
        lastProgressAt = now
    }

    /// Records the worker's progress counter (the watchdog does on every pass, the supervisor at exit).
    public mutating func observe(progress: UInt64, at now: Double) {
        if progress != lastProgress {
            lastProgress = progress
            lastProgressAt = now
        }
    }

    /// Whether the current run of the worker is healthy at `now`: up `healthyAfter` seconds, made
    /// progress since its start, and not stalled (the watchdog did not fire on this run).
    public func healthy(at now: Double) -> Bool {
        now - startedAt >= policy.healthyAfter && lastProgress != progressAtStart && !stalledThisRun
    }

    /// Whether the worker keeps failing: more than `maxRestarts` failures in a row (a non-essential
    /// worker then goes on being retried; the run is reported degraded).
    public var failing: Bool { failuresInARow > policy.maxRestarts }

    /// The worker exited at `now` (its progress counter then at `progress`, when known),
    /// `stopping` when the run is being stopped.
    public mutating func exited(_ exit: WorkerExit, at now: Double, stopping: Bool, progress: UInt64? = nil) -> Decision {
        lastExit = exit
        if stopping { return .stopped }
        if exitEndsRun && exit.isSuccess { return .finished }
        if exit.isFatal && essential { return .giveUp(restarts: restarts) }
        if let progress { observe(progress: progress, at: now) }
        if healthy(at: now) { failuresInARow = 0 }
        failuresInARow += 1
        restartTimes = restartTimes.filter { now - $0 < policy.window }
        if essential && policy.givesUp(failuresInARow: failuresInARow, restartsInWindow: restartTimes.count) {
            return .giveUp(restarts: restarts)
        }
        restarts += 1
        restartTimes.append(now)
        return .restart(delay: policy.delay(failuresInARow: failuresInARow), restarts: restarts)
    }

    /// The watchdog, called with the worker's progress counter: true when it made no progress for
    /// longer than `watchdog` seconds and must be killed (the clock then starts again, so one stall
    /// is one kill).
    public mutating func stalled(progress: UInt64, at now: Double) -> Bool {
        if progress != lastProgress {
            observe(progress: progress, at: now)
            return false
        }
        guard let limit = watchdog, now - lastProgressAt > limit else { return false }
        lastProgressAt = now
        stalledThisRun = true
        return true
    }

    /// Seconds since the last progress (for the log line).
    public func secondsWithoutProgress(at now: Double) -> Double { now - lastProgressAt }
}
