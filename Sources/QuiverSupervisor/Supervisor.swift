import CQuiverOS
import Foundation
import QuiverLog
import QuiverModel
import QuiverSharedMemory

#if canImport(Glibc)
import Glibc
#endif

/// A worker the supervisor runs: `executable` is started with `arguments`.
public struct WorkerSpec: Sendable {
    public var role: String
    public var arguments: [String]
    /// Seconds without progress (in the status table) before the worker is killed and restarted;
    /// nil: no watchdog.
    public var watchdog: Double?
    /// Whether a clean exit (status 0) means the run is complete (the engine after its steps).
    public var exitEndsRun: Bool
    /// Whether the run cannot go on without it (the role that owns the dynamics): a worker that
    /// keeps failing stops the run only when essential; any other is retried for ever, the run
    /// reported degraded meanwhile.
    public var essential: Bool
    /// Descriptors the supervisor owns and hands over: the k-th becomes descriptor 3 + k in the
    /// worker (a listening socket, so a restarted worker serves the same port).
    public var passedDescriptors: [Int32]

    public init(role: String, arguments: [String], watchdog: Double? = nil, exitEndsRun: Bool = false, essential: Bool = false,
                passedDescriptors: [Int32] = []) {
        self.role = role
        self.arguments = arguments
        self.watchdog = watchdog
        self.exitEndsRun = exitEndsRun
        self.essential = essential
        self.passedDescriptors = passedDescriptors
    }
}

/// How a run ended.
public enum RunOutcome: Equatable, Sendable {
    /// A signal or a `stop` command asked it to.
    case stopped(reason: String)
    /// A worker with `exitEndsRun` finished.
    case finished(role: String)
}

/// The thin supervisor: spawns the workers (posix_spawn of this executable, in start order),
/// watches them (SIGCHLD through a self-pipe, a progress watchdog), restarts them by the
/// `RestartPolicy`, serves `status` and `stop` on the control socket (non-blocking: `ControlServer`),
/// and stops them in reverse order (SIGTERM to each worker's process group, `grace` seconds, then
/// SIGKILL). When the essential worker (the engine) is given up, the newest engine snapshot is
/// saved to `engine-state.bin` in the run directory (`EngineStateFile`) before the run stops.
public final class Supervisor {
    public let runDirectory: RunDirectory
    public let segment: SharedSegment
    public let executable: String
    public let policy: RestartPolicy
    public let grace: Double
    private let logger: Logger

    final class Worker {
        let index: Int
        let spec: WorkerSpec
        var pid: pid_t = 0
        var state = "starting"
        var lifecycle: WorkerLifecycle
        var respawnAt: Double?
        var restarts: Int { lifecycle.restarts }
        var lastExit: String { lifecycle.lastExit.map { "\($0)" } ?? "" }
        init(index: Int, spec: WorkerSpec, policy: RestartPolicy) {
            self.index = index
            self.spec = spec
            lifecycle = WorkerLifecycle(policy: policy, exitEndsRun: spec.exitEndsRun, essential: spec.essential, watchdog: spec.watchdog)
        }
    }

    private var workers: [Worker]
    /// Whether SIGINT/SIGTERM/SIGHUP stop the run and SIGCHLD wakes the loop (a process-wide
    /// handler; `quiver run`). Without it (an embedding `Session`), children are reaped by polling
    /// and only `requestStop` or the control socket stop the run.
    private let handlesSignals: Bool
    /// Status-table entry of the first worker (an embedding host is entry 0 itself).
    private let firstStatusIndex: Int
    private var signalFD: Int32 = -1
    /// Stop requests from other threads, and a pipe that wakes the loop for them.
    private let requestLock = NSLock()
    private var requestedStop: String?
    private var wakePipe: [Int32] = [-1, -1]
    private var listenFD: Int32 = -1
    private var control: ControlServer?
    /// Where the engine's state was saved when it was given up, and its step.
    public private(set) var savedState: (path: String, step: UInt64)?
    private var stopReason: String?
    private var failure: SupervisorError?
    private var finishedRole: String?
    private var rateSamples: [(time: Double, step: UInt64)] = []

    public init(runDirectory: RunDirectory, segment: SharedSegment, executable: String, workers: [WorkerSpec],
                policy: RestartPolicy = RestartPolicy(), grace: Double = 5, handlesSignals: Bool = true, firstStatusIndex: Int = 0,
                logger: Logger) {
        self.runDirectory = runDirectory
        self.handlesSignals = handlesSignals
        self.firstStatusIndex = firstStatusIndex
        self.segment = segment
        self.executable = executable
        self.policy = policy
        self.grace = grace
        self.logger = logger
        self.workers = workers.enumerated().map { Worker(index: firstStatusIndex + $0.offset, spec: $0.element, policy: policy) }
    }

    /// Asks a running `run` to stop (from any thread): it stops every worker and returns
    /// `.stopped(reason:)`.
    public func requestStop(reason: String) {
        requestLock.lock()
        defer { requestLock.unlock() }
        if requestedStop == nil { requestedStop = reason }
        // Under the lock: `run` closes the pipe under it too, so the descriptor is still ours.
        if wakePipe[1] >= 0 { var byte: UInt8 = 1; _ = write(wakePipe[1], &byte, 1) }
    }

    private func takeRequestedStop() -> String? {
        requestLock.lock()
        defer { requestLock.unlock() }
        return requestedStop
    }

    static func now() -> Double { SystemClock.monotonicSeconds }

    /// Runs until stopped, finished or failed; always stops every worker before returning.
    /// `tick` is called about once a second (progress lines). Throws `workerFailed` when a worker
    /// exhausted its restarts.
    public func run(tick: (Supervisor) -> Void = { _ in }) throws -> RunOutcome {
        if handlesSignals {
            signalFD = qv_os_signal_pipe_for_supervisor()
            guard signalFD >= 0 else { throw SupervisorError.system(operation: "signal pipe", path: "", errno: errno) }
        }
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else { throw SupervisorError.system(operation: "pipe", path: "", errno: errno) }
        for fd in pipeFDs {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        requestLock.lock(); wakePipe = pipeFDs; requestLock.unlock()
        defer {
            requestLock.lock()
            wakePipe = [-1, -1]
            close(pipeFDs[0]); close(pipeFDs[1])
            requestLock.unlock()
        }
        listenFD = try UnixSocket.listen(at: runDirectory.controlSocketPath)
        let control = ControlServer(listenFD: listenFD)
        self.control = control
        defer { control.closeAll(); self.control = nil; close(listenFD); unlink(runDirectory.controlSocketPath) }

        do { for w in workers { try spawn(w) } } catch { stopAll(); throw error }
        var lastTick = Self.now()
        while stopReason == nil && failure == nil && finishedRole == nil {
            let now = Self.now()
            // Without SIGCHLD, a worker's exit is noticed by polling: keep the pass short.
            var timeout = handlesSignals ? 0.25 : 0.05
            for w in workers { if let at = w.respawnAt { timeout = min(timeout, max(0, at - now)) } }
            if let next = control.secondsToNextDeadline(now: now) { timeout = min(timeout, next) }
            // The signal pipe and the wake pipe first, then the control socket and its clients.
            var fds = [pollfd(fd: pipeFDs[0], events: Int16(POLLIN), revents: 0), pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)]
                + control.pollDescriptors()
            if !handlesSignals { fds[1].fd = -1 }
            // Rounded up: a timeout of 0.4 ms must not become a busy pass of 0 ms.
            let ready = poll(&fds, nfds_t(fds.count), Int32((timeout * 1000).rounded(.up)))
            if ready < 0 && errno != EINTR { throw SupervisorError.system(operation: "poll", path: "", errno: errno) }
            if handlesSignals && fds[1].revents != 0 { handleSignals() }
            if fds[0].revents != 0 { var buffer = [UInt8](repeating: 0, count: 64); _ = read(pipeFDs[0], &buffer, 64) }
            if stopReason == nil, let reason = takeRequestedStop() { stopReason = reason; logger.info("stop requested: \(reason)", metadata: ["stop.reason": "\(reason)"]) }
            reap() // every pass, SIGCHLD or not: cheap, and robust to a signal lost in a full pipe
            control.serve(Array(fds[2...]), now: Self.now(), answer: answerControl)
            let t = Self.now()
            for w in workers where w.respawnAt != nil && w.respawnAt! <= t && stopReason == nil && failure == nil {
                w.respawnAt = nil
                do { try spawn(w) } catch { failure = error as? SupervisorError ?? .spawnFailed(role: w.spec.role, errno: EIO) }
            }
            checkWatchdogs(now: t)
            if t - lastTick >= 1.0 {
                sampleRate(now: t)
                tick(self)
                lastTick = t
            }
        }
        stopAll()
        if let failure { throw failure }
        if let role = finishedRole { return .finished(role: role) }
        return .stopped(reason: stopReason ?? "stopped")
    }

    private func spawn(_ w: Worker) throws {
        let status = segment.workers[w.index]
        status.setIdentity(role: UInt32(w.index), name: w.spec.role)
        status.state = .spawned
        let argv = [executable] + w.spec.arguments
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cArgs.append(nil)
        defer { for p in cArgs { free(p) } }
        var pid: pid_t = 0
        let rc = w.spec.passedDescriptors.withUnsafeBufferPointer {
            qv_os_spawn(executable, cArgs, $0.baseAddress, Int32($0.count), &pid)
        }
        guard rc == 0 else { throw SupervisorError.spawnFailed(role: w.spec.role, errno: rc) }
        w.pid = pid
        w.state = "running"
        w.lifecycle.started(at: Self.now(), progress: status.progress)
        status.pid = pid
        status.restarts = UInt32(w.restarts)
        logger.info("worker \(w.spec.role) started, pid \(pid)\(w.restarts > 0 ? " (restart \(w.restarts))" : "")",
                    metadata: ["worker.role": "\(w.spec.role)", "worker.pid": .stringConvertible(pid), "worker.restarts": .stringConvertible(w.restarts)])
    }

    private func handleSignals() {
        while true {
            let sig = qv_os_read_signal(signalFD)
            if sig <= 0 { break }
            if sig == SIGCHLD { continue } // children are reaped on every pass of the loop
            if stopReason == nil {
                stopReason = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP"
                logger.info("received \(stopReason!), stopping", metadata: ["stop.reason": "\(stopReason!)"])
            }
        }
    }

    /// Collects the workers that exited, each by its own pid: a host process embedding the
    /// supervisor may have children of its own, which are not ours to reap.
    private func reap() {
        for w in workers where w.pid > 0 {
            var status: Int32 = 0
            let pid = waitpid(w.pid, &status, WNOHANG)
            // ECHILD: someone else reaped it (a host calling waitpid(-1), or SIGCHLD ignored): it
            // is gone, its status unknown (reported as exit status 127).
            let reapedElsewhere = pid < 0 && errno == ECHILD
            if pid != w.pid && !reapedElsewhere { continue }
            w.pid = 0
            segment.workers[w.index].pid = 0
            let exit = reapedElsewhere ? WorkerExit.unknown : WorkerExit(waitStatus: status)
            switch w.lifecycle.exited(exit, at: Self.now(), stopping: stopReason != nil, progress: segment.workers[w.index].progress) {
            case .stopped:
                w.state = "stopped"
            case .finished:
                w.state = "finished"
                segment.workers[w.index].state = .exited
                finishedRole = w.spec.role
                logger.info("worker \(w.spec.role) finished", metadata: ["worker.role": "\(w.spec.role)"])
            case .giveUp(let restarts):
                w.state = "failed"
                segment.workers[w.index].state = .failed
                let inARow = w.lifecycle.failuresInARow
                let why = exit.isFatal ? "it reported a failure a restart cannot fix"
                    : inARow > policy.maxRestarts ? "\(inARow) failures in a row" : "\(policy.maxRestartsInWindow) restarts within \(Int(policy.window)) s"
                logger.error("worker \(w.spec.role) \(exit); \(why), giving up",
                             metadata: ["worker.role": "\(w.spec.role)", "worker.exit": "\(exit)"])
                saveEngineState()
                failure = .workerFailed(role: w.spec.role, restarts: restarts, lastExit: "\(exit)")
            case .restart(let delay, _):
                w.respawnAt = Self.now() + delay
                w.state = "restarting"
                segment.workers[w.index].state = .failed
                let failing = !w.spec.essential && w.lifecycle.failing
                logger.warning("worker \(w.spec.role) \(exit); restarting in \(Int((delay * 1000).rounded())) ms\(failing ? " (failed \(w.lifecycle.failuresInARow) times in a row; the run is degraded, the simulation goes on)" : "")",
                               metadata: ["worker.role": "\(w.spec.role)", "worker.exit": "\(exit)", "restart.delay_ms": .stringConvertible(Int((delay * 1000).rounded()))])
            }
        }
    }

    /// Saves the newest consistent engine snapshot of the segment to `engine-state.bin` in the run
    /// directory (atomically), for a later resume; logs where, or why not.
    private func saveEngineState() {
        let path = runDirectory.path + "/" + EngineStateFile.fileName
        do {
            guard let snapshot = try segment.snapshots.read() else {
                logger.error("no engine snapshot was ever written; no state saved")
                return
            }
            try EngineStateFile.write(snapshot, to: path)
            savedState = (path, snapshot.step)
            logger.error("engine state at step \(snapshot.step) saved to \(path)",
                         metadata: ["state.path": "\(path)", "state.step": .stringConvertible(snapshot.step)])
        } catch {
            logger.error("could not save the engine state to \(path): \(error)")
        }
    }

    private func checkWatchdogs(now: Double) {
        for w in workers where w.pid > 0 {
            let idle = w.lifecycle.secondsWithoutProgress(at: now)
            if w.lifecycle.stalled(progress: segment.workers[w.index].progress, at: now) {
                logger.warning("worker \(w.spec.role) made no progress for \(String(format: "%.1f", idle)) s; killing it",
                               metadata: ["worker.role": "\(w.spec.role)", "worker.pid": .stringConvertible(w.pid)])
                kill(-w.pid, SIGKILL)
                kill(w.pid, SIGKILL)
            }
        }
    }

    private func sampleRate(now: Double) {
        guard let step = newestStep else { return }
        rateSamples.append((now, step))
        if rateSamples.count > 5 { rateSamples.removeFirst(rateSamples.count - 5) }
    }

    /// The step of the newest published frame.
    public var newestStep: UInt64? {
        segment.frames.latestScalars()?.step
    }

    /// Engine steps per second over the last few seconds.
    public var stepsPerSecond: Double {
        guard let first = rateSamples.first, let last = rateSamples.last, last.time > first.time else { return 0 }
        return Double(last.step &- first.step) / (last.time - first.time)
    }

    /// The reply to one control-socket command.
    private func answerControl(_ command: String) -> String {
        switch command {
        case "status": return statusJSON()
        case "stop":
            if stopReason == nil { stopReason = "stop command"; logger.info("stop requested on the control socket", metadata: ["stop.reason": "stop command"]) }
            return "{\"ok\":true,\"stopping\":true}"
        default:
            return "{\"ok\":false,\"error\":\"unknown command; expected status or stop\"}"
        }
    }

    /// The roles that are down (being restarted, or failed) or keep failing: the run goes on
    /// without them meanwhile (the essential one is being restarted, or the run stops).
    public func degradedRoles(now: Double) -> [String] {
        workers.filter { w in
            w.state == "restarting" || w.state == "failed" || (w.lifecycle.failing && !w.lifecycle.healthy(at: now))
        }.map(\.spec.role)
    }

    /// The status document served on the control socket.
    public func statusJSON() -> String {
        var root: [String: Any] = [
            "ok": true,
            "run_directory": runDirectory.path,
            "pid": Int(getpid()),
            "frames_published": Int(segment.frames.published),
        ]
        let degraded = degradedRoles(now: Self.now())
        root["state"] = stopReason != nil ? "stopping" : degraded.isEmpty ? "running" : "degraded"
        root["degraded"] = degraded
        // Entries before the first worker belong to the host process (an embedding session's engine).
        let host = (0..<firstStatusIndex).map { i -> [String: Any] in
            let s = segment.workers[i]
            return ["role": s.name, "pid": Int(s.pid), "state": "\(s.state)", "restarts": 0, "progress": Int(s.progress), "last_exit": ""]
        }
        root["workers"] = host + workers.map { w -> [String: Any] in
            let s = segment.workers[w.index]
            return ["role": w.spec.role, "pid": Int(w.pid), "state": w.state, "restarts": w.restarts,
                    "failures_in_a_row": w.lifecycle.failuresInARow, "essential": w.spec.essential,
                    "progress": Int(s.progress), "last_exit": w.lastExit]
        }
        root["engine"] = ["step": newestStep.map { Int($0) } ?? 0, "steps_per_second": stepsPerSecond]
        let data = (try? JSONSerialization.data(withJSONObject: root, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Stops every worker, last started first: SIGTERM to its process group, up to `grace` seconds,
    /// then SIGKILL. Reaps them all.
    private func stopAll() {
        for w in workers.reversed() {
            w.respawnAt = nil
            guard w.pid > 0 else { continue }
            segment.workers[w.index].state = .stopping
            kill(-w.pid, SIGTERM)
            kill(w.pid, SIGTERM)
            let deadline = Self.now() + grace
            var status: Int32 = 0
            var done = false
            while Self.now() < deadline {
                let r = waitpid(w.pid, &status, WNOHANG)
                if r == w.pid || (r < 0 && errno == ECHILD) { done = true; break }
                usleep(10_000)
            }
            if !done {
                logger.warning("worker \(w.spec.role) ignored SIGTERM for \(grace) s; killing it", metadata: ["worker.role": "\(w.spec.role)", "worker.pid": .stringConvertible(w.pid)])
                kill(-w.pid, SIGKILL)
                kill(w.pid, SIGKILL)
                waitpid(w.pid, &status, 0)
            }
            segment.workers[w.index].pid = 0
            segment.workers[w.index].state = .exited
            w.pid = 0
            w.state = "stopped"
        }
    }
}
