import Foundation
import QuiverClient
import QuiverSharedMemory
import QuiverSupervisor
import Testing

/// A connected client socket of the UNIX socket at `path` (blocking; closed by the caller).
func unixConnect(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    try #require(fd >= 0)
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        let bytes = Array(path.utf8)
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    if rc != 0 { let e = errno; close(fd); Issue.record("connect \(path): \(String(cString: strerror(e)))"); throw POSIXError(.ECONNREFUSED) }
    return fd
}

/// What arrives on `fd` until EOF or `timeout` seconds: (bytes, whether the peer closed).
func readAll(_ fd: Int32, timeout: Double) -> (text: String, closed: Bool) {
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var out = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return (String(decoding: out, as: UTF8.self), n == 0) }
        out += buffer[0..<n]
    }
}

extension TestServer {
    /// The status entry of worker `role`.
    func worker(_ role: String) throws -> [String: Any] {
        try #require((try status()["workers"] as? [[String: Any]])?.first { $0["role"] as? String == role })
    }

    func pid(_ role: String) throws -> Int32 { Int32(try worker(role)["pid"] as? Int ?? 0) }

    /// Lines of the supervisor's log that say `role` is restarted, with their delay in ms.
    func restartDelays(_ role: String) -> [Int] {
        err.text.components(separatedBy: "\n").filter { $0.contains("worker \(role) ") && $0.contains("restarting in ") }.compactMap { line in
            Int(line.components(separatedBy: "restarting in ").last?.split(separator: " ").first ?? "")
        }
    }
}

@Suite("Supervisor faults: control-socket clients, escalation by role, early failures", .serialized)
struct SupervisorFaultTests {
    @Test("idle, slow and hostile clients of control.sock delay nothing: a killed broadcaster is respawned at once and status answers; idle clients are dropped at their deadline; connections are bounded")
    func idleControlClients() throws {
        let server = try TestServer()
        let socketPath = server.directory.path + "/control.sock"
        let before = try server.pid("broadcaster")
        // Eight clients that connect and write nothing.
        let idle = try (0..<8).map { _ in try unixConnect(socketPath) }
        defer { for fd in idle { close(fd) } }
        kill(before, SIGKILL)
        let killedAt = ContinuousClock.now
        var after: Int32 = 0
        #expect(eventually(within: 5) { after = (try? server.pid("broadcaster")) ?? 0; return after != 0 && after != before })
        let respawn = seconds(since: killedAt)
        print("respawn of the broadcaster with 8 idle control clients: \(Int(respawn * 1000)) ms (poll of status included)")
        // 100 ms of backoff, then a spawn; the bound is generous for a loaded machine (it was 7.2 s).
        #expect(respawn < 1.5, "respawned \(respawn) s after SIGKILL")
        #expect(server.restartDelays("broadcaster") == [100])
        // The idle clients are dropped at their deadline (1 s), with no reply.
        for fd in idle {
            let r = readAll(fd, timeout: 5)
            #expect(r.closed && r.text.isEmpty, "an idle client was not dropped: \(r)")
        }
        // A request longer than 4 KiB without a newline is answered with an error, not waited on.
        let long = try unixConnect(socketPath)
        defer { close(long) }
        let junk = [UInt8](repeating: UInt8(ascii: "x"), count: 5000)
        _ = junk.withUnsafeBytes { send(long, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        let reply = readAll(long, timeout: 5)
        #expect(reply.text.contains("\"ok\":false") && reply.text.contains("longer than 4096"), "\(reply)")
        // A request whose writer closes its side without a newline is answered.
        let halfClosed = try unixConnect(socketPath)
        defer { close(halfClosed) }
        _ = "status".withCString { send(halfClosed, $0, 6, Int32(MSG_NOSIGNAL)) }
        shutdown(halfClosed, Int32(SHUT_WR))
        #expect(readAll(halfClosed, timeout: 5).text.contains("\"workers\""))
        // Forty idle connections at once: the oldest are evicted, a real request is still served.
        let many = try (0..<40).map { _ in try unixConnect(socketPath) }
        defer { for fd in many { close(fd) } }
        let started = ContinuousClock.now
        let s = try server.status()
        #expect(s["ok"] as? Bool == true)
        #expect(seconds(since: started) < 2, "status took \(seconds(since: started)) s with 40 idle clients")
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
        #expect(server.process.terminationStatus == 0)
    }

    @Test("the heartbeat killed eight times as fast as it comes back: the run stays up, degraded in status while it is down, the simulation goes on, the heartbeat comes back")
    func heartbeatKilledRepeatedly() throws {
        let server = try TestServer()
        let stepBefore = try server.engine().step
        var killed: [Int32] = []
        var sawDegraded = false
        let deadline = Date().addingTimeInterval(40)
        while killed.count < 8 && Date() < deadline && server.process.isRunning {
            if let pid = try? server.pid("heartbeat"), pid > 0, !killed.contains(pid) {
                kill(pid, SIGKILL)
                killed.append(pid)
            } else if let s = try? server.status(), s["state"] as? String == "degraded", (s["degraded"] as? [String]) == ["heartbeat"] {
                sawDegraded = true
            }
            usleep(5_000)
        }
        #expect(killed.count == 8)
        #expect(server.process.isRunning, "the run stopped: \(server.err.text)")
        // Down for 2 s now, and failing until healthy again: the status table says so.
        let table = try QuiverProcess.run(["status", server.directory.path], timeout: 20)
        #expect(table.status == 0 && table.stdout.contains("degraded: heartbeat"), "\(table.stdout)")
        #expect(sawDegraded, "status never said degraded")
        // Capped backoff, never a give-up.
        let delays = server.restartDelays("heartbeat")
        #expect(delays.count == 8 && delays.allSatisfy { $0 <= 2000 } && delays.last == 2000, "\(delays)")
        #expect(!server.err.text.contains("giving up"))
        #expect(try eventually(within: 15) { try server.engine().step > stepBefore + 100 }, "the simulation stopped")
        // Back: a new live heartbeat that answers health, and the run no longer degraded.
        let back = try eventually(within: 15) {
            let pid = try server.pid("heartbeat")
            let state = try server.status()["state"] as? String
            return pid > 0 && !killed.contains(pid) && alive(pid) && state == "running"
        }
        #expect(back, "the heartbeat did not come back: \(String(describing: try? server.status()))")
        let client = try QuiverClient(connectionFile: server.directory.path + "/connection.json")
        let health = try #require(try client.health(timeout: 5))
        #expect(health.contains("\"state\":\"ok\""), "\(health)")
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
        #expect(server.process.terminationStatus == 0)
    }

    @Test("an engine that keeps failing stops the run (exit 1) with its newest snapshot saved to engine-state.bin in the run directory")
    func engineKeepsFailing() throws {
        let server = try TestServer(["--frame-interval", "5"])
        let segment = try SharedSegment.open(name: try #require(server.connection?.segment))
        // A snapshot past step 200 first (the engine writes one every 50 ms).
        #expect(eventually(within: 15) { ((try? segment.snapshots.read())?.step ?? 0) > 200 })
        var killed: Set<Int32> = []
        let deadline = Date().addingTimeInterval(60)
        while server.process.isRunning && Date() < deadline {
            // Each new engine is killed as soon as it shows: it never gets healthy.
            if let pid = try? server.pid("engine"), pid > 0, !killed.contains(pid) {
                kill(pid, SIGKILL)
                killed.insert(pid)
            }
            usleep(2_000)
        }
        #expect(server.waitForExit(within: 10))
        #expect(server.process.terminationStatus == 1)
        let log = server.err.finish()
        #expect(log.contains("worker 'engine' failed") && log.contains("engine state at step"), "\(log)")
        #expect(killed.count >= 6)
        let path = server.directory.path + "/" + EngineStateFile.fileName
        let state = try EngineStateFile.read(path)
        // The segment's mapping outlives its unlinking: the newest consistent snapshot, as saved.
        let newest = try #require(try segment.snapshots.read())
        #expect(state == newest)
        #expect(state.x.count == 500 && state.step > 200, "state at step \(state.step) of \(state.x.count) atoms")
        #expect(log.contains("engine state at step \(state.step) saved to \(path)"))
        let files = try FileManager.default.contentsOfDirectory(atPath: server.directory.path).sorted()
        #expect(files == [EngineStateFile.fileName, "lock"], "\(files)")
    }

    @Test("isolated kills of every worker: each restarted after 100 ms (the backoff reset by a healthy run), respawned and frames resumed; figures printed")
    func isolatedKills() throws {
        let server = try TestServer(["--frame-interval", "5"])
        let client = try QuiverClient(connectionFile: server.directory.path + "/connection.json")
        let segment = try SharedSegment.open(name: try #require(server.connection?.segment))
        #expect(try client.nextSummary(timeout: 10) != nil)
        var figures: [String: [(respawn: Double, frames: Double)]] = [:]
        for round in 0..<2 {
            for role in ["broadcaster", "heartbeat", "control", "engine"] {
                // Healthy first: up past the 0.5 s healthy time, making progress.
                let pid = try server.pid(role)
                let progress = try server.worker(role)["progress"] as? Int ?? 0
                let upSince = ContinuousClock.now
                let healthy = try eventually(within: 10) {
                    let now = try server.worker(role)["progress"] as? Int ?? 0
                    return seconds(since: upSince) > 0.8 && now > progress
                }
                #expect(healthy, "\(role) made no progress")
                kill(pid, SIGKILL)
                let killedAt = ContinuousClock.now
                // The newest step published when it died (a dead engine publishes no more).
                let lastStep = Int64(try #require(segment.frames.latestScalars()).step)
                var respawn = 0.0
                #expect(eventually(within: 5) { let p = (try? server.pid(role)) ?? 0; return p != 0 && p != pid }, "\(role) round \(round): no respawn")
                respawn = seconds(since: killedAt)
                // Frames: the next frame past the step seen before the kill reaches a subscriber.
                var resumed = false
                let until = Date().addingTimeInterval(10)
                while !resumed && Date() < until {
                    if let f = try client.nextSummary(timeout: 0.5), f.summary.step > lastStep { resumed = true }
                }
                #expect(resumed, "\(role) round \(round): frames did not resume")
                figures[role, default: []].append((respawn, seconds(since: killedAt)))
            }
        }
        for (role, f) in figures.sorted(by: { $0.key < $1.key }) {
            print("isolated kill of \(role): respawn seen in status after \(f.map { "\(Int($0.respawn * 1000))" }.joined(separator: ", ")) ms; next frame at a subscriber after \(f.map { "\(Int($0.frames * 1000))" }.joined(separator: ", ")) ms")
        }
        // The mechanism: every kill after a healthy run is restarted after 100 ms, never a longer backoff.
        for role in ["broadcaster", "heartbeat", "control", "engine"] {
            #expect(server.restartDelays(role) == [100, 100], "\(role): \(server.restartDelays(role))")
        }
        // Generous bounds for a loaded machine; the tight figures are measured by scripts/bench-restarts.
        for (role, f) in figures {
            #expect(f.allSatisfy { $0.respawn < 2 && $0.frames < 3 }, "\(role): \(f)")
        }
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
    }

    @Test("health never reports an underflowed last_progress_ms while workers advance")
    func healthNoUnderflow() throws {
        let server = try TestServer()
        let client = try QuiverClient(connectionFile: server.directory.path + "/connection.json")
        var worst = 0
        for _ in 0..<3000 {
            guard let h = try client.health(timeout: 5),
                  let root = try JSONSerialization.jsonObject(with: Data(h.utf8)) as? [String: Any] else { continue }
            for w in root["workers"] as? [[String: Any]] ?? [] { worst = max(worst, w["last_progress_ms"] as? Int ?? 0) }
        }
        #expect(worst < 60_000, "last_progress_ms \(worst)")
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
    }

    @Test("a run directory open to other users (0777) is made private (0700), with a warning")
    func openRunDirectory() throws {
        let dir = TemporaryRunDirectory()
        #expect(mkdir(dir.path, 0o700) == 0 && chmod(dir.path, 0o777) == 0)
        let r = try QuiverProcess.run(["run", "--run-dir", dir.path, "--cells", "3", "--threads", "1", "--steps", "20"], timeout: 60)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("had mode 777") && r.stderr.contains("set to 700"), "\(r.stderr)")
        var st = stat()
        #expect(stat(dir.path, &st) == 0 && st.st_mode & 0o777 == 0o700)
    }

    @Test("negative numbers for numeric flags get the flag's range, not 'Missing value'", arguments: [
        (["--cells", "-5"], "--cells", "between 1 and 200"), (["--grace", "-1"], "--grace", "0.1"), (["--port", "-1"], "--port", "65535"),
    ])
    func negativeFlags(args: [String], flag: String, range: String) throws {
        let dir = TemporaryRunDirectory()
        let r = try QuiverProcess.run(["run", "--run-dir", dir.path] + args, timeout: 30)
        #expect(r.status == 64)
        #expect(r.stderr.contains(flag) && r.stderr.contains(range) && !r.stderr.contains("Missing value"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.path))
    }

    @Test("an address that cannot be listened on: a clear error, and no run directory, segment or file left behind")
    func badAddress() throws {
        let dir = TemporaryRunDirectory()
        let r = try QuiverProcess.run(["run", "--run-dir", dir.path, "--cells", "3", "--address", "203.0.113.1"], timeout: 30)
        #expect(r.status == 1)
        #expect(r.stderr.contains("203.0.113.1") && r.stderr.contains("Cannot assign requested address"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.path), "left: \((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? [])")
        // A directory that was there before stays, holding nothing of the failed run but the unlocked lock.
        #expect(mkdir(dir.path, 0o700) == 0)
        let again = try QuiverProcess.run(["run", "--run-dir", dir.path, "--cells", "3", "--address", "203.0.113.1"], timeout: 30)
        #expect(again.status == 1)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).allSatisfy { $0 == "lock" })
        // A run directory that is a file: said so, not "File exists".
        let file = dir.path + "/file"
        #expect(FileManager.default.createFile(atPath: file, contents: Data()))
        let notDirectory = try QuiverProcess.run(["run", "--run-dir", file, "--cells", "3"], timeout: 30)
        #expect(notDirectory.status == 1 && notDirectory.stderr.contains("Not a directory"), "\(notDirectory.stderr)")
    }
}
