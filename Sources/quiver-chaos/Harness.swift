import Foundation
import Glibc
import QuiverClient
import QuiverControl
import QuiverModel
import QuiverSupervisor
import QuiverWire
import QuiverZMQ

/// A worker as the supervisor's `status` reports it.
struct WorkerStatus { var pid: Int32; var state: String; var restarts: Int }

/// Frames as a real client sees them, from a thread of its own: when each arrived (monotonic),
/// whether it was finite, whether the index or step went back.
final class FrameWatch: @unchecked Sendable {
    private let lock = NSLock()
    private var arrivals: [Double] = []
    private var lastIndex: UInt64?
    private var lastStep: Int64?
    private(set) var latestStep: Int64 = -1
    private var stopped = false
    private var thread: Thread?
    var count = 0, nonFinite = 0, backwards = 0, decodeErrors = 0

    func start(connectionFile: String) throws {
        nonisolated(unsafe) let client = try QuiverClient(connectionFile: connectionFile)
        let t = Thread { [self] in
            while !locked({ stopped }) {
                do {
                    guard let r = try client.nextFrame(timeout: 0.2) else { continue }
                    let now = SystemClock.monotonicSeconds
                    let f = r.frame
                    let finite = f.positions.x.allSatisfy(\.isFinite) && f.positions.y.allSatisfy(\.isFinite)
                        && f.positions.z.allSatisfy(\.isFinite) && f.energies.potential.isFinite
                        && f.energies.kinetic.isFinite && f.temperature.isFinite
                    locked {
                        count += 1
                        arrivals.append(now)
                        if !finite { nonFinite += 1 }
                        if let i = lastIndex, f.index < i { backwards += 1 }
                        if let s = lastStep, f.step < s { backwards += 1 }
                        lastIndex = f.index
                        lastStep = f.step
                        latestStep = f.step
                    }
                } catch {
                    locked { decodeErrors += 1 }
                }
            }
        }
        thread = t
        t.start()
    }

    func stop() { locked { stopped = true }; while thread?.isFinished == false { usleep(10_000) } }

    func locked<T>(_ body: () throws -> T) rethrows -> T { lock.lock(); defer { lock.unlock() }; return try body() }

    /// When the first frame after `t` arrived; nil: none yet.
    func firstArrival(after t: Double) -> Double? {
        locked {
            var i = arrivals.count
            while i > 0 && arrivals[i - 1] > t { i -= 1 }
            return i < arrivals.count ? arrivals[i] : nil
        }
    }
    var lastArrival: Double? { locked { arrivals.last } }
    var snapshot: (count: Int, nonFinite: Int, step: Int64) { locked { (count, nonFinite, latestStep) } }
}

final class Harness {
    let executable: String
    let cells: Int
    let watchdog: Double
    let verbose: Bool
    let runDirectory: String
    var server: Process?
    var connection: ConnectionInfo!
    let watch = FrameWatch()
    var commands: CommandClient!
    var seenPIDs: Set<Int32> = []
    /// The server's stderr (its log), kept when the run fails.
    let logFile = NSTemporaryDirectory() + "quiver-chaos-\(getpid()).log"

    init(executable: String, cells: Int, watchdog: Double, verbose: Bool) throws {
        self.executable = executable
        self.cells = cells
        self.watchdog = watchdog
        self.verbose = verbose
        var template = Array((NSTemporaryDirectory() + "quiver-chaos-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw ChaosError("cannot make a temporary run directory") }
        runDirectory = String(cString: made)
    }

    func log(_ s: String) { if verbose { FileHandle.standardError.write(Data("chaos: \(s)\n".utf8)) } }

    func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = ["run", "--run-dir", runDirectory, "--cells", String(cells), "--threads", "1", "--watchdog", String(watchdog)]
        p.standardOutput = FileHandle.nullDevice
        FileManager.default.createFile(atPath: logFile, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: logFile)
        try p.run()
        server = p
        let file = runDirectory + "/connection.json"
        guard wait(10, { access(file, R_OK) == 0 && (try? ConnectionInfo.read(from: file)) != nil }) else {
            throw ChaosError("the server wrote no connection file within 10 s")
        }
        connection = try ConnectionInfo.read(from: file)
        guard wait(20, { allRunning() }) else { throw ChaosError("the workers were not all running within 20 s") }
        try watch.start(connectionFile: file)
        commands = try CommandClient(endpoint: connection.endpoints["control"]!, keyHex: connection.key, clientID: "chaos", timeout: .seconds(10))
        guard wait(20, { watch.snapshot.count >= 3 }) else { throw ChaosError("no frames within 20 s") }
    }

    // MARK: observing the run

    func status() -> [String: Any]? {
        guard let text = try? ControlClient.send("status", runDirectory: runDirectory, timeout: 2),
              let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { return nil }
        return object
    }

    func workers() -> [String: WorkerStatus] {
        var out: [String: WorkerStatus] = [:]
        for w in (status()?["workers"] as? [[String: Any]]) ?? [] {
            guard let role = w["role"] as? String else { continue }
            let pid = Int32((w["pid"] as? NSNumber)?.intValue ?? 0)
            if pid > 0 { seenPIDs.insert(pid) }
            out[role] = WorkerStatus(pid: pid, state: (w["state"] as? String) ?? "?", restarts: (w["restarts"] as? NSNumber)?.intValue ?? 0)
        }
        return out
    }

    func allRunning() -> Bool {
        let w = workers()
        return !w.isEmpty && w.values.allSatisfy { $0.state == "running" && $0.pid > 0 }
    }

    /// Waits (polling every 5 ms) until `condition` holds; false when `seconds` passed first.
    @discardableResult
    func wait(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = SystemClock.monotonicSeconds + seconds
        while SystemClock.monotonicSeconds < deadline {
            if condition() { return true }
            usleep(5_000)
        }
        return condition()
    }

    /// Until every worker runs and a frame newer than now arrived (at most 15 s), then a further
    /// second of quiet so the next fault is an isolated one.
    func settle() {
        wait(15) { allRunning() }
        let t = SystemClock.monotonicSeconds
        wait(15) { watch.firstArrival(after: t) != nil }
        usleep(1_000_000)
    }

    func resources() -> [String: WorkerResources] {
        var out: [String: WorkerResources] = [:]
        for (role, w) in workers() where w.pid > 0 { if let r = Self.resources(of: w.pid) { out[role] = r } }
        if let p = server?.processIdentifier, let r = Self.resources(of: p) { out["supervisor"] = r }
        return out
    }

    static func resources(of pid: Int32) -> WorkerResources? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        let rss = text.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
            .flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") } ?? 0
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
        return WorkerResources(pid: pid, rssKiB: rss, fds: fds)
    }

    func stillUp() -> String? {
        guard let server, server.isRunning else { return "the server exited" }
        guard status()?["ok"] as? Bool == true else { return "status is not ok" }
        guard wait(15, { allRunning() }) else { return "not every worker is running: \(workers())" }
        let t = SystemClock.monotonicSeconds
        guard wait(10, { watch.firstArrival(after: t) != nil }) else { return "no frame for 10 s" }
        return nil
    }

    func stopWatching(into report: inout Report) {
        watch.stop()
        let s = watch.locked { (watch.count, watch.nonFinite, watch.backwards, watch.decodeErrors) }
        (report.frames, report.nonFinite, report.backwards, report.decodeErrors) = s
    }

    /// Stops the server (SIGTERM, SIGKILL after 10 s) and removes the run directory: for an
    /// interrupted run, from a signal handler's queue.
    func abort() {
        if let server, server.isRunning {
            kill(server.processIdentifier, SIGTERM)
            if !wait(10, { !server.isRunning }) { kill(server.processIdentifier, SIGKILL) }
        }
        try? FileManager.default.removeItem(atPath: runDirectory)
        FileHandle.standardError.write(Data("quiver-chaos: interrupted; the server was stopped (its log: \(logFile))\n".utf8))
    }

    /// SIGTERM, then: exit status 0, no worker left, the segment removed; the run directory goes.
    func shutdown(into report: inout Report) {
        guard !report.shutdownDone else { return }
        report.shutdownDone = true
        commands?.close()
        if let server, server.isRunning {
            _ = workers()
            kill(server.processIdentifier, SIGTERM)
            if !wait(30, { !server.isRunning }) {
                kill(server.processIdentifier, SIGKILL)
                report.shutdown = "the server did not stop within 30 s of SIGTERM"
            } else if server.terminationStatus != 0 {
                report.shutdown = "the server exited with status \(server.terminationStatus)"
            }
            server.waitUntilExit()
        }
        // Pids are reused, so only a process still named quiver counts as a survivor.
        let survivors = seenPIDs.filter { pid in
            (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8))?.contains("quiver") == true
        }
        if !survivors.isEmpty {
            report.shutdown = (report.shutdown.map { $0 + "; " } ?? "") + "workers left: \(survivors.sorted())"
            for pid in survivors { kill(pid, SIGKILL) }
        }
        if let segment = connection?.segment,
           let names = try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm"), names.contains(where: { $0.hasPrefix(segment.trimmingCharacters(in: ["/"])) }) {
            report.shutdown = (report.shutdown.map { $0 + "; " } ?? "") + "segment \(segment) left in /dev/shm"
        }
        try? FileManager.default.removeItem(atPath: runDirectory)
    }
}

struct ChaosError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
