import CQuiverOS
import Foundation
@_exported import QuiverLog
@_exported import QuiverConfig
import QuiverEngine
import QuiverSharedMemory
import QuiverSupervisor
import QuiverWire
import QuiverWorkers

#if canImport(Glibc)
import Glibc
#endif

/// Settings of an embedding `Session`.
public struct SessionOptions: Sendable {
    /// The run directory (lock, connection.json, sockets). nil: a new private directory under
    /// $TMPDIR (or /tmp), removed by `close`.
    public var runDirectory: String?
    /// The run configuration the workers get as it is (the same as `quiver run`'s,
    /// docs/configuration.md): a session uses its [server], [frames] and [control] settings and
    /// the frame interval; the host's dynamics takes the place of [system].
    public var server = RunConfiguration()
    /// Steps between frames (clients may change it with `set frame_interval`): `server.frameInterval`.
    public var frameInterval: Int {
        get { server.frameInterval }
        set { server.frameInterval = newValue }
    }
    /// Atoms the shared memory has room for, so `show` can switch to a larger system; nil: the
    /// first dynamics' atom count.
    public var atomCapacity: Int?
    /// The `quiver` executable the workers run as (`quiver worker ...`). nil: $QUIVER_EXECUTABLE,
    /// then `quiver` beside this program's executable, then `quiver` on $PATH.
    public var workerExecutable: String?
    /// Whether SIGINT and SIGTERM make `run` return `.stopped` (so the host can `close` and leave
    /// nothing behind). While a session with it is open, process-wide handlers that only record
    /// the signal (with SA_RESTART) replace the host's; the last `close` restores the host's. Turn
    /// it off when the host handles these signals itself.
    public var stopOnSignals = true
    /// Seconds the workers get to report ready before `Session.init` gives up.
    public var startTimeout = 15.0
    /// The log of the supervisor (worker starts, exits, restarts) and of the engine (interactions
    /// that ended). nil: `Logger(label: "quiver.session")`, which goes where the host program's
    /// `LoggingSystem` sends it (stderr unless the host bootstrapped it).
    public var logger: Logger?

    public init() {}
}

/// Why `Session.run` returned.
public enum SessionStop: Equatable, Sendable {
    /// The requested number of steps were taken.
    case steps
    /// The `until` condition became true.
    case condition
    /// A signal (SIGINT, SIGTERM), `requestStop`, or `quiver stop` on the run directory.
    case stopped(reason: String)
}

public enum SessionError: Error, Equatable, CustomStringConvertible {
    /// No `quiver` executable for the worker processes.
    case workerExecutableNotFound(searched: [String])
    /// An essential worker kept failing (the restart policy gave up); the session's workers are
    /// stopped. A session's workers are not essential: kept for an embedding with one that is.
    case workerFailed(role: String, restarts: Int, lastExit: String)
    /// The workers did not report ready in time, or the supervisor could not start them.
    case startFailed(String)
    /// `show` of a dynamics larger than the shared memory the session was opened with.
    case tooManyAtoms(atoms: Int, capacity: Int)
    /// The session was closed.
    case closed
    /// `options.server` holds a value `RunConfiguration.validate()` refuses (the message names the key).
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .workerExecutableNotFound(let searched):
            return "the session's workers run the quiver executable, and none was found (looked at: \(searched.joined(separator: ", "))); build it with `swift build -c release --product quiver` and set SessionOptions.workerExecutable or QUIVER_EXECUTABLE"
        case .workerFailed(let role, let restarts, let last):
            return "worker '\(role)' failed \(restarts + 1) times in a row (last: \(last)); the session's workers are stopped"
        case .startFailed(let m): return "the session could not start its workers: \(m)"
        case .tooManyAtoms(let atoms, let capacity):
            return "the dynamics has \(atoms) atoms and the session's shared memory room for \(capacity); open the session with SessionOptions.atomCapacity >= \(atoms)"
        case .closed: return "the session is closed"
        case .invalidConfiguration(let m): return "SessionOptions.server: \(m)"
        }
    }
}

/// A Quiver server around your own dynamics, inside your program.
///
/// Your program is the engine: `run` steps the dynamics on the calling thread, publishes frames
/// and applies clients' commands and interactive forces between steps. The supervisor runs on a
/// background thread and starts the broadcaster, heartbeat and control workers as processes of
/// the `quiver` executable, restarting them by the usual policy; clients connect with the
/// connection file exactly as to `quiver run`.
///
/// ```swift
/// let session = try Session(myDynamics)
/// print(session.connectionFile, session.port)
/// try session.run(until: { done })   // a worker that keeps failing is retried; status() says degraded
/// try session.show(otherDynamics)    // same server, same clients, another system
/// session.close()                    // stops every worker, removes every file
/// ```
///
/// Use a session from one thread; only `requestStop` may be called from another.
public final class Session {
    /// The connection information clients use (also in `connectionFile`, mode 0600).
    public var connection: ConnectionInfo { resources.connection }
    public var connectionFile: String { resources.directory.connectionFilePath }
    public var runDirectory: String { resources.directory.path }
    /// TCP port of the frame socket.
    public var port: Int { resources.port(.frames) }
    /// TCP port of the command socket.
    public var controlPort: Int { resources.port(.control) }
    /// The dynamics shown now.
    public private(set) var dynamics: any Dynamics
    /// Whether a client paused the run (`run` then waits for commands instead of stepping).
    public var paused: Bool { control.paused }

    private let resources: ServerResources
    private let runner: SupervisorRunner
    private let ownsDirectory: Bool
    private let capacity: Int
    private let stopsOnSignals: Bool
    private let logger: Logger
    private var control: EngineControl
    private var loop: EngineLoop
    private var closed = false
    private var holdsSignals = false
    /// The workers' roles, in status-table order after the engine.
    private let workerRoles: [String]

    /// Status-table entry of the host engine; the workers follow it.
    static let engineIndex = 0

    private static let counter = Counter()
    private static let signalLock = NSLock()

    /// Stops a running session from any thread (`Session` itself is used from one thread).
    public var stopHandle: SessionStopHandle { SessionStopHandle(runner: runner) }

    /// Opens a session around `dynamics`: run directory, shared memory, sockets, connection file,
    /// then the workers, ready when this returns. The first frame is published at once.
    public init(_ dynamics: any Dynamics, options: SessionOptions = SessionOptions()) throws {
        let executable = try Self.workerExecutable(options.workerExecutable)
        capacity = max(options.atomCapacity ?? dynamics.atomCount, dynamics.atomCount)
        guard options.frameInterval >= 1 else { throw EngineError.invalidParameter("frameInterval must be at least 1, got \(options.frameInterval)") }
        // The workers get this configuration whole: refuse what they would refuse, here, once.
        do { try options.server.validate() } catch { throw SessionError.invalidConfiguration("\(error)") }
        let directory: String
        if let given = options.runDirectory {
            directory = given
            ownsDirectory = false
        } else {
            let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
            Self.removeStaleDirectories(in: base)
            var template = Array("\(base)/quiver-session-XXXXXX".utf8CString)
            guard let made = mkdtemp(&template) else {
                throw SupervisorError.system(operation: "mkdtemp", path: base, errno: errno)
            }
            directory = String(cString: made)
            ownsDirectory = true
        }
        let segmentName = "quiver-run-s\(Self.counter.next())-\(getpid())"
        do {
            resources = try ServerResources(runDirectory: directory, segmentName: segmentName, atomCapacity: capacity, configuration: options.server)
        } catch {
            if ownsDirectory { unlink(directory + "/lock"); rmdir(directory) }
            throw error
        }
        self.dynamics = dynamics
        stopsOnSignals = options.stopOnSignals
        let segment = resources.segment
        let status = segment.workers[Self.engineIndex]
        status.setIdentity(role: UInt32(Self.engineIndex), name: "engine")
        status.pid = getpid()
        control = EngineControl(dynamics: dynamics, segment: segment, frameInterval: options.frameInterval, initial: dynamics.saveState(),
                                postedFD: resources.events[.commandsPosted], doneFD: resources.events[.commandsDone])
        loop = EngineLoop(dynamics: dynamics, segment: segment, control: control, status: status, reporter: nil, snapshotInterval: nil)
        loop.frameFD = resources.events[.framePublished]
        let logger = options.logger ?? Logger(label: "quiver.session")
        control.logger = logger
        self.logger = logger
        let services: [WorkerSpec]
        do { services = try resources.workerSpecs(WorkerRoles.services, firstIndex: Self.engineIndex + 1) } catch {
            resources.close()
            if ownsDirectory { unlink(directory + "/lock"); rmdir(directory) }
            throw error
        }
        workerRoles = services.map(\.role)
        let supervisor = Supervisor(runDirectory: resources.directory, segment: segment, executable: executable,
                                    workers: services,
                                    grace: options.server.grace, handlesSignals: false, firstStatusIndex: Self.engineIndex + 1, logger: logger)
        runner = SupervisorRunner(supervisor)
        do {
            try TopologyFile.write(TopologyFile.topology(of: dynamics), firstFrame: 0, to: resources.directory.topologyFilePath)
            try loop.publishFrame()
            status.state = .ready
            if options.stopOnSignals {
                Self.signalLock.lock()
                let rc = qv_signal_session_begin()
                Self.signalLock.unlock()
                guard rc == 0 else { throw SupervisorError.system(operation: "sigaction", path: "SIGINT/SIGTERM", errno: errno) }
                holdsSignals = true
            }
            runner.start()
            try awaitWorkers(timeout: options.startTimeout)
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Steps the dynamics, publishing frames and applying clients' commands between steps, until
    /// `steps` more steps were taken, `until` returns true (checked before every step, and about
    /// 20 times a second while paused), or a stop is requested. Throws when the supervisor failed
    /// (the health check; the session's workers are not essential, so one that keeps failing is
    /// retried and reported degraded in `status()`, never an error), and whatever the dynamics throws.
    @discardableResult
    public func run(steps: Int? = nil, until: () -> Bool = { false }) throws -> SessionStop {
        guard !closed else { throw SessionError.closed }
        try checkHealth()
        if let stopped = runner.stoppedReason { return .stopped(reason: stopped) }
        let target = steps.map { dynamics.step + max(0, $0) }
        var why: SessionStop?
        let reached = try loop.run(totalSteps: target) {
            if runner.ended {
                why = .stopped(reason: runner.stoppedReason ?? "the supervisor ended")
                return true
            }
            if stopsOnSignals, let signal = Self.pendingSignal {
                why = .stopped(reason: signal)
                return true
            }
            if until() { why = .condition; return true }
            return false
        }
        control.persistIfNeeded()
        try checkHealth()
        return reached ? .steps : why ?? .condition
    }

    /// Throws `SessionError.workerFailed` when a worker failed for good (or `.startFailed` when the
    /// supervisor itself failed). `run` checks before and after, and stops at once when the
    /// supervisor ends (one lock per step).
    public func checkHealth() throws {
        guard let failure = runner.failure else { return }
        if case .workerFailed(let role, let restarts, let last) = failure as? SupervisorError {
            throw SessionError.workerFailed(role: role, restarts: restarts, lastExit: last)
        }
        throw SessionError.startFailed("\(failure)")
    }

    /// The workers as the supervisor reports them: the JSON document of `quiver status --format
    /// json` (asked on the control socket, so the supervisor's thread answers it).
    public func status() throws -> String {
        guard !closed else { throw SessionError.closed }
        return try ControlClient.send("status", runDirectory: resources.directory.path)
    }

    /// Shows another dynamics without restarting anything: clients get its topology, then its
    /// frames, on the same sockets. The pause state, frame interval and throttles carry over;
    /// interactions end (their atoms belonged to the previous system). Call it between `run`s.
    public func show(_ next: any Dynamics) throws {
        guard !closed else { throw SessionError.closed }
        guard next.atomCount <= capacity else { throw SessionError.tooManyAtoms(atoms: next.atomCount, capacity: capacity) }
        let segment = resources.segment
        // The new topology first, naming the index of the next frame (the first of `next`): the
        // broadcaster sends it just before that frame.
        try TopologyFile.write(TopologyFile.topology(of: next), firstFrame: segment.frames.published, to: resources.directory.topologyFilePath)
        let nextControl = EngineControl(dynamics: next, segment: segment, frameInterval: control.frameInterval, initial: next.saveState(),
                                        postedFD: resources.events[.commandsPosted], doneFD: resources.events[.commandsDone])
        nextControl.logger = logger
        nextControl.carrySettings(from: control)
        control = nextControl
        dynamics = next
        loop = EngineLoop(dynamics: next, segment: segment, control: nextControl, status: segment.workers[Self.engineIndex], reporter: nil,
                          snapshotInterval: nil, publishedStep: -1)
        loop.frameFD = resources.events[.framePublished]
        try loop.publishFrame()
    }

    /// Makes `run` return `.stopped(reason:)` and stops the workers (from another thread: use
    /// `stopHandle`).
    public func requestStop(reason: String = "requestStop") {
        runner.supervisor.requestStop(reason: reason)
    }

    /// Stops every worker (SIGTERM, the grace period, then SIGKILL), removes the shared memory,
    /// the sockets, the connection and topology files, and the run directory when the session
    /// made it. Idempotent; also done when the session is released.
    public func close() {
        guard !closed else { return }
        closed = true
        runner.stop(reason: "session closed")
        let status = resources.segment.workers[Self.engineIndex]
        status.state = .exited
        status.pid = 0
        if holdsSignals {
            Self.signalLock.lock()
            qv_signal_session_end()
            Self.signalLock.unlock()
            holdsSignals = false
        }
        let path = resources.directory.path
        resources.close()
        if ownsDirectory {
            unlink(path + "/lock")
            rmdir(path)
        }
    }

    // MARK: -

    private static var pendingSignal: String? {
        switch qv_signal_stop_requested() {
        case 0: return nil
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        case let s: return "signal \(s)"
        }
    }

    private func awaitWorkers(timeout: Double) throws {
        let deadline = SystemClock.monotonicNanoseconds + UInt64(timeout * 1e9)
        while true {
            try checkHealth()
            if runner.ended { throw SessionError.startFailed(runner.stoppedReason ?? "the supervisor ended") }
            let states = workerRoles.indices.map { resources.segment.workers[Self.engineIndex + 1 + $0].state }
            if states.allSatisfy({ $0 == .ready }) { return }
            if SystemClock.monotonicNanoseconds > deadline {
                let waiting = zip(workerRoles, states).filter { $0.1 != .ready }.map { "\($0.0) (\($0.1))" }
                throw SessionError.startFailed("not ready after \(timeout) s: \(waiting.joined(separator: ", "))")
            }
            usleep(10_000)
        }
    }

    /// Removes the private run directories (`quiver-session-*`) of sessions that died without
    /// `close` (SIGKILL): their lock is free. Only the files a session makes are removed, so a
    /// directory holding anything else stays.
    static func removeStaleDirectories(in base: String) {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: base) else { return }
        let known = ServerResources.runFileNames(RunConfiguration()).union(["lock"])
        for name in entries where name.hasPrefix("quiver-session-") {
            let path = base + "/" + name
            let fd = open(path + "/lock", O_RDWR | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else { continue }
            defer { Glibc.close(fd) }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { continue } // a live session holds it
            let files = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            guard files.allSatisfy({ known.contains($0) }) else { continue }
            for f in files where f != "lock" { unlink(path + "/" + f) }
            unlink(path + "/lock")
            rmdir(path)
        }
    }

    /// The `quiver` executable the workers run as.
    static func workerExecutable(_ given: String?) throws -> String {
        var candidates: [String] = []
        if let given { candidates.append(given) }
        else {
            if let env = ProcessInfo.processInfo.environment["QUIVER_EXECUTABLE"], !env.isEmpty { candidates.append(env) }
            var buffer = [CChar](repeating: 0, count: 4096)
            if qv_os_executable_path(&buffer, buffer.count) == 0 {
                let own = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                candidates.append((own as NSString).deletingLastPathComponent + "/quiver")
            }
            for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") where !dir.isEmpty {
                candidates.append("\(dir)/quiver")
            }
        }
        for c in candidates {
            var st = stat()
            if stat(c, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(c, X_OK) == 0 {
                return URL(fileURLWithPath: c).standardizedFileURL.path
            }
        }
        throw SessionError.workerExecutableNotFound(searched: candidates.isEmpty ? ["(nothing to search)"] : candidates)
    }
}

/// Stops a running session from any thread: `run` returns `.stopped(reason:)` and the workers stop.
public struct SessionStopHandle: Sendable {
    let runner: SupervisorRunner
    public func requestStop(reason: String = "requestStop") { runner.supervisor.requestStop(reason: reason) }
}

/// Runs a supervisor on its own thread and keeps how it ended.
final class SupervisorRunner: @unchecked Sendable {
    let supervisor: Supervisor
    private let lock = NSLock()
    private let finished = DispatchSemaphore(value: 0)
    private var started = false
    private var _ended = false
    private var _failure: Error?
    private var _stopped: String?

    init(_ supervisor: Supervisor) { self.supervisor = supervisor }

    func start() {
        started = true
        let thread = Thread { [self] in
            do {
                let outcome = try supervisor.run()
                lock.lock()
                if case .stopped(let reason) = outcome { _stopped = reason } else { _stopped = "\(outcome)" }
                lock.unlock()
            } catch {
                lock.lock(); _failure = error; lock.unlock()
            }
            lock.lock(); _ended = true; lock.unlock()
            finished.signal()
        }
        thread.name = "quiver-supervisor"
        thread.start()
    }

    var ended: Bool { lock.lock(); defer { lock.unlock() }; return _ended }
    var failure: Error? { lock.lock(); defer { lock.unlock() }; return _failure }
    var stoppedReason: String? { lock.lock(); defer { lock.unlock() }; return _stopped }

    /// Asks the supervisor to stop its workers and waits until it did.
    func stop(reason: String) {
        guard started else { return }
        started = false
        supervisor.requestStop(reason: reason)
        finished.wait()
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int { lock.lock(); defer { lock.unlock() }; value += 1; return value }
}
