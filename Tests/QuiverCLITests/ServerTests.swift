import Foundation
import QuiverSharedMemory
import QuiverSupervisor
import QuiverWire
import Testing

/// A run directory under /tmp, removed (with anything in it) at the end.
final class TemporaryRunDirectory {
    let path: String
    init() { path = NSTemporaryDirectory() + "quiver-test-run-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A `quiver run` server started for a test: stopped by pid and cleaned up when released.
final class TestServer {
    let process = Process()
    let directory = TemporaryRunDirectory()
    let out: Drain
    let err: Drain
    private(set) var connection: ConnectionInfo?

    init(_ extra: [String] = [], environment: [String: String] = [:], waitForConnection: Bool = true) throws {
        process.executableURL = QuiverProcess.binary
        process.arguments = ["run", "--run-dir", directory.path, "--cells", "5", "--threads", "1"] + extra
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let o = Pipe(), e = Pipe()
        process.standardOutput = o
        process.standardError = e
        try process.run()
        out = Drain(o.fileHandleForReading)
        err = Drain(e.fileHandleForReading)
        if waitForConnection {
            let deadline = Date().addingTimeInterval(20)
            while connection == nil && Date() < deadline && process.isRunning {
                connection = try? ConnectionInfo.read(from: directory.path + "/connection.json")
                if connection == nil { usleep(10_000) }
            }
            try #require(connection != nil, "the server never wrote connection.json; stderr: \(err.text)")
            // Ready: the engine has set up and published its first frame.
            let segment = try SharedSegment.open(name: connection!.segment)
            while segment.frames.published == 0 && Date() < deadline && process.isRunning { usleep(10_000) }
            try #require(segment.frames.published > 0, "the engine never published a frame; stderr: \(err.text)")
        }
    }

    var segmentPath: String? { connection.map { "/dev/shm/" + $0.segment } }

    func status() throws -> [String: Any] {
        let reply = try ControlClient.send("status", runDirectory: directory.path)
        return try #require(try JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any])
    }

    func engine() throws -> (pid: Int32, restarts: Int, step: Int) {
        let s = try status()
        let w = try #require((s["workers"] as? [[String: Any]])?.first { $0["role"] as? String == "engine" })
        let e = s["engine"] as? [String: Any] ?? [:]
        return (Int32(w["pid"] as? Int ?? 0), w["restarts"] as? Int ?? 0, e["step"] as? Int ?? 0)
    }

    /// Waits for the server to exit; false (and SIGKILL) past the deadline.
    func waitForExit(within seconds: Double) -> Bool { reap(process, within: seconds) }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        if let path = segmentPath { unlink(path) }
    }
}

/// Whether a process exists and has not exited. A zombie (exited, not yet reaped by whoever
/// inherited it) counts as gone.
func alive(_ pid: Int32) -> Bool {
    guard pid > 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
    // "pid (comm) S ...": the state follows the last ')'.
    guard let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
    return state != "Z" && state != "X"
}

/// Seconds on the monotonic clock since `start`.
func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = start.duration(to: .now)
    return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}

/// Polls `condition` every 10 ms until it holds or `seconds` pass.
func eventually(within seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    repeat {
        if try condition() { return true }
        usleep(10_000)
    } while Date() < deadline
    return try condition()
}

@Suite("The server: supervisor, engine worker, run directory", .serialized)
struct ServerTests {
    @Test("SIGKILL the engine three times: respawned, frames resume within a second, index and step never go back")
    func engineRespawn() throws {
        let server = try TestServer(["--frame-interval", "5"])
        let segment = try SharedSegment.open(name: try #require(server.connection?.segment))
        var frame = FrameRecord()
        var seen: [(UInt64, UInt64)] = []
        func sample() { if let f = segment.frames.readLatest(into: &frame) { seen.append((f.index, f.step)) } }
        #expect(eventually(within: 10) { sample(); return (seen.last?.1 ?? 0) > 50 })
        for round in 0..<3 {
            let before = try server.engine()
            #expect(alive(before.pid))
            kill(before.pid, SIGKILL)
            let killedAt = Date()
            let frameBefore = segment.frames.published
            #expect(try eventually(within: 15) { let e = try server.engine(); return e.pid != 0 && e.pid != before.pid }, "round \(round): no respawn")
            #expect(eventually(within: 15) { sample(); return segment.frames.published > frameBefore + 2 }, "round \(round): frames did not resume")
            print("engine respawn round \(round): frames resumed \(String(format: "%.0f", Date().timeIntervalSince(killedAt) * 1000)) ms after SIGKILL")
            #expect(try server.engine().restarts == round + 1)
        }
        for _ in 0..<20 { sample(); usleep(5_000) }
        for k in 1..<seen.count {
            #expect(seen[k].0 >= seen[k - 1].0 && seen[k].1 >= seen[k - 1].1, "went back: \(seen[k - 1]) -> \(seen[k])")
        }
        #expect(server.out.text.contains("engine resumed from step"))
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
        #expect(server.process.terminationStatus == 0)
    }

    @Test("a worker that fails at every start: bounded restarts with backoff, then the run stops with an error naming it")
    func failingWorker() throws {
        let server = try TestServer([], environment: ["QUIVER_FAULT": "engine:exit"], waitForConnection: false)
        let started = Date()
        #expect(server.waitForExit(within: 30))
        let elapsed = Date().timeIntervalSince(started)
        #expect(server.process.terminationStatus == 1)
        let log = server.err.finish()
        #expect(log.contains("worker 'engine' failed 6 times"), "\(log)")
        let restarts = log.components(separatedBy: "\n").filter { $0.contains("restarting in") }
        #expect(restarts.count == 5)
        #expect(restarts.map { $0.components(separatedBy: "restarting in ").last ?? "" } == ["100 ms", "200 ms", "400 ms", "800 ms", "1600 ms"])
        // The backoff is a lower bound (load only lengthens the run); the wait above bounds it.
        #expect(elapsed > 3.0, "backoff 0.1+0.2+0.4+0.8+1.6 s, took \(elapsed)")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: server.directory.path)) ?? []
        #expect(files == ["lock"], "left behind: \(files)")
        #expect(!((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).contains { $0.hasSuffix("-\(server.process.processIdentifier)") })
    }

    @Test("status lists every worker with role, pid, state and restarts, and the engine's step and steps/s")
    func statusDocument() throws {
        let server = try TestServer()
        #expect(try eventually(within: 15) {
            let e = try server.status()["engine"] as? [String: Any]
            return (e?["steps_per_second"] as? Double ?? 0) > 0
        }, "steps_per_second stays 0")
        let s = try server.status()
        #expect(s["state"] as? String == "running" && s["pid"] as? Int == Int(server.process.processIdentifier))
        let workers = try #require(s["workers"] as? [[String: Any]])
        #expect(workers.map { $0["role"] as? String ?? "" } == ["engine", "broadcaster", "heartbeat", "control"])
        for w in workers {
            #expect(w["state"] as? String == "running" && w["restarts"] as? Int == 0)
            #expect(alive(Int32(w["pid"] as? Int ?? 0)))
        }
        let table = try QuiverProcess.run(["status", server.directory.path], timeout: 20)
        #expect(table.status == 0 && table.stdout.contains("steps/s") && table.stdout.contains("broadcaster"))
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
        let gone = try QuiverProcess.run(["status", server.directory.path], timeout: 20)
        #expect(gone.status != 0 && gone.stderr.contains("control.sock"), "status of a stopped run must fail clearly: \(gone.stderr)")
    }

    @Test("a worker inherits no descriptors beyond stdin, stdout, stderr and the ones handed to it; what it opens later is its own runtime's")
    func noInheritedDescriptors() throws {
        let server = try TestServer(["--log-level", "debug"])
        let engine = try server.engine()
        let supervisorFDs = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(server.process.processIdentifier)/fd")
        #expect(supervisorFDs.count > 3, "the supervisor holds the lock, the signal pipe and the control socket")
        // At entry (logged before the Swift runtime opens anything): 0-2, then the "commands
        // posted", "commands done" and "frame published" eventfds the supervisor hands the engine.
        let prefix = "worker engine started with descriptors "
        #expect(eventually(within: 10) { server.err.text.contains(prefix) })
        let line = server.err.text.components(separatedBy: "\n").first { $0.contains(prefix) } ?? ""
        let atEntry = line.components(separatedBy: prefix).last ?? ""
        let entries = atEntry.components(separatedBy: ", ")
        #expect(entries.map { $0.split(separator: " ").first.map(String.init) ?? "" } == ["0", "1", "2", "3", "4", "5"]
                && entries.dropFirst(3).allSatisfy { $0.hasSuffix(" anon_inode:[eventfd]") }, "engine descriptors at entry: \(atEntry)")
        // Now: besides those, only what the Swift runtime (libdispatch) opened for itself, never a
        // socket, pipe or file of the supervisor's.
        let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(engine.pid)/fd").compactMap(Int.init).sorted()
        let later = fds.filter { $0 > 5 }.map { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(engine.pid)/fd/\($0)")) ?? "?" }
        #expect(later.allSatisfy { ["anon_inode:[eventpoll]", "anon_inode:[eventfd]", "anon_inode:[timerfd]"].contains($0) }, "\(later)")
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
    }

    @Test("a second server on the same run directory is refused; the first is untouched")
    func secondServerRefused() throws {
        let first = try TestServer()
        let before = try first.engine()
        let second = Process()
        second.executableURL = QuiverProcess.binary
        second.arguments = ["run", "--run-dir", first.directory.path, "--cells", "3"]
        let err = Pipe()
        second.standardError = err
        second.standardOutput = FileHandle.nullDevice
        try second.run()
        let errText = Drain(err.fileHandleForReading)
        #expect(reap(second, within: 20))
        #expect(second.terminationStatus != 0)
        #expect(errText.finish().contains("in use by a running server (pid \(first.process.processIdentifier))"))
        #expect(first.process.isRunning)
        #expect(try eventually(within: 15) { try first.engine().step > before.step })
        #expect(try first.engine().pid == before.pid)
        #expect(FileManager.default.fileExists(atPath: first.directory.path + "/connection.json"))
        _ = try ControlClient.send("stop", runDirectory: first.directory.path)
        #expect(first.waitForExit(within: 10))
    }

    @Test("quiver stop and SIGTERM leave no process, no segment, no socket file", arguments: ["stop", "SIGTERM"])
    func cleanStop(how: String) throws {
        let server = try TestServer()
        let engine = try server.engine()
        let segment = try #require(server.segmentPath)
        #expect(FileManager.default.fileExists(atPath: segment))
        #expect(FileManager.default.fileExists(atPath: server.directory.path + "/control.sock"))
        if how == "stop" {
            let r = try QuiverProcess.run(["stop", server.directory.path], timeout: 20)
            #expect(r.status == 0 && r.stdout.contains("\"stopping\":true"))
        } else {
            kill(server.process.processIdentifier, SIGTERM)
        }
        #expect(server.waitForExit(within: 10))
        #expect(server.process.terminationStatus == 0)
        #expect(!alive(engine.pid))
        #expect(!FileManager.default.fileExists(atPath: segment))
        let files = try FileManager.default.contentsOfDirectory(atPath: server.directory.path)
        #expect(files == ["lock"], "left behind: \(files)")
        #expect(server.out.finish().contains("done: "))
    }

    @Test("a worker that is alive but makes no progress is killed by the watchdog and restarted")
    func watchdog() throws {
        let server = try TestServer(["--watchdog", "1"], environment: ["QUIVER_FAULT": "engine:hang"])
        let first = try server.engine()
        #expect(try eventually(within: 15) { try server.engine().restarts >= 1 })
        #expect(!alive(first.pid))
        #expect(server.err.text.contains("made no progress"))
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
    }

    @Test("a worker that ignores SIGTERM is killed after the grace period; no survivors")
    func ignoresTerm() throws {
        let server = try TestServer(["--grace", "1"], environment: ["QUIVER_FAULT": "engine:ignore-term"])
        let engine = try server.engine()
        let started = Date()
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
        let took = Date().timeIntervalSince(started)
        // The grace is a lower bound (load only lengthens the stop); the wait above bounds it.
        #expect(took >= 0.9, "stopped after \(took) s with a 1 s grace")
        #expect(!alive(engine.pid))
        #expect(server.err.finish().contains("ignored SIGTERM"))
    }

    @Test("SIGKILL the supervisor: every worker exits by itself, also after running a while; the next start takes the directory over and removes the stale segment")
    func supervisorKilled() throws {
        let first = try TestServer()
        let segment = try #require(first.segmentPath)
        var pids: [String: Int32] = [:]
        #expect(eventually(within: 10) {
            let workers = (try? first.status()["workers"] as? [[String: Any]]) ?? nil
            pids = Dictionary(uniqueKeysWithValues: (workers ?? []).compactMap { w in
                (w["role"] as? String).flatMap { role in (w["pid"] as? Int).map { (role, Int32($0)) } }
            })
            return pids.count == 4 && pids.values.allSatisfy { $0 > 0 }
        })
        // The parent-death signal is kept per thread on Linux: a worker that armed it on a thread of
        // the concurrency pool loses it when that thread exits idle (libdispatch lets an idle
        // thread go after about 5 s). Running a while first is what catches that.
        usleep(6_500_000)
        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        // At once: any server another test starts meanwhile removes segments whose creator is gone.
        #expect(FileManager.default.fileExists(atPath: segment), "a SIGKILLed supervisor cannot unlink; the next start must")
        #expect(eventually(within: 15) { pids.values.allSatisfy { !alive($0) } },
                "workers outlived their supervisor: \(pids.filter { alive($0.value) })")
        let second = Process()
        second.executableURL = QuiverProcess.binary
        second.arguments = ["run", "--run-dir", first.directory.path, "--cells", "3", "--threads", "1", "--steps", "20"]
        let err = Pipe()
        second.standardError = err
        second.standardOutput = FileHandle.nullDevice
        try second.run()
        let log = Drain(err.fileHandleForReading)
        #expect(reap(second, within: 20))
        #expect(second.terminationStatus == 0)
        #expect(log.finish().contains("took over"))
        #expect(!FileManager.default.fileExists(atPath: segment), "the stale segment was not removed")
    }
}
