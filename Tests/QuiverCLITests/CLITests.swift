import Foundation
import Testing

/// Runs the built `quiver` binary as a real process, with a deadline, and always reaps it.
struct QuiverProcess {
    static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["QUIVER_BINARY"] { return URL(fileURLWithPath: path) }
        // Tests/QuiverCLITests/CLITests.swift -> package root
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for config in ["release", "debug"] {
            let candidate = root.appendingPathComponent(".build/\(config)/quiver")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        return root.appendingPathComponent(".build/release/quiver")
    }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// Runs to completion; kills (by pid) and fails if it outlives `timeout` seconds.
    static func run(_ arguments: [String], timeout: Double = 120) throws -> Result {
        let p = Process()
        p.executableURL = binary
        p.arguments = arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let outData = Drain(out.fileHandleForReading), errData = Drain(err.fileHandleForReading)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            Issue.record("quiver \(arguments.joined(separator: " ")) ran past \(timeout) s and was killed")
        }
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: outData.finish(), stderr: errData.finish())
    }
}

/// Collects a pipe's bytes on a background thread so a chatty child never blocks on a full pipe.
final class Drain: @unchecked Sendable {
    private let handle: FileHandle
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()

    init(_ handle: FileHandle) {
        self.handle = handle
        Thread.detachNewThread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                lock.lock(); data.append(chunk); lock.unlock()
            }
            done.signal()
        }
    }

    /// What has arrived so far.
    var text: String {
        lock.lock(); defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }

    func finish() -> String {
        done.wait()
        return text
    }
}

@Suite("quiver command line")
struct CLITests {
    @Test("bench --format json prints one object per run with the documented fields")
    func benchJSON() throws {
        let r = try QuiverProcess.run(["bench", "lj", "--cells", "4,5", "--steps", "20", "--threads", "1,2", "--format", "json"])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 4)
        let keys = ["system", "atoms", "steps", "threads", "seconds", "atom_steps_per_second", "epair_per_atom_step0",
                    "etotal_per_atom_step0", "etotal_per_atom_end", "peak_rss_bytes", "kernel", "ns_per_day", "neighbor_rebuilds"]
        var seen: [(Int, Int)] = []
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            for key in keys { #expect(object[key] != nil, "missing \(key)") }
            #expect(object["system"] as? String == "lj")
            #expect(object["steps"] as? Int == 20)
            let atoms = try #require(object["atoms"] as? Int)
            let threads = try #require(object["threads"] as? Int)
            seen.append((atoms, threads))
            let epair = try #require(object["epair_per_atom_step0"] as? Double)
            #expect(abs(epair - -6.7733681) / 6.7733681 < 1e-6)
            #expect((object["atom_steps_per_second"] as? Double ?? 0) > 0)
            #expect((object["peak_rss_bytes"] as? Int ?? 0) > 1_000_000)
        }
        #expect(seen.map(\.0) == [256, 256, 500, 500])
        #expect(seen.map(\.1) == [1, 2, 1, 2])
    }

    @Test("bench prints a readable table by default")
    func benchTable() throws {
        let r = try QuiverProcess.run(["bench", "lj", "--cells", "4", "--steps", "10", "--threads", "1", "--kernel", "scalar"])
        #expect(r.status == 0)
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines[0].contains("Matom-steps/s"))
        #expect(lines[1].contains("scalar") && lines[1].contains("256"))
    }

    @Test("run prints progress with energies, ns/day and an ETA, then a summary")
    func runWithSteps() throws {
        let dir = TemporaryRunDirectory()
        let r = try QuiverProcess.run(["run", "--cells", "4", "--steps", "60", "--report-every", "20", "--threads", "1", "--run-dir", dir.path])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.contains("256 atoms") == true)
        let progress = lines.filter { $0.hasPrefix("step ") }
        #expect(progress.map { $0.split(separator: " ")[1] } == ["0", "20", "40", "60"])
        for line in progress.dropFirst() {
            #expect(line.contains(" K ") && line.contains("kJ/mol") && line.contains("ns/day") && line.contains("ETA"), "\(line)")
        }
        #expect(lines.last?.hasPrefix("done: 60 steps") == true)
    }

    @Test("run with no step count runs the default system until SIGINT, then exits 0")
    func runUntilSignal() throws {
        let p = Process()
        p.executableURL = QuiverProcess.binary
        let dir = TemporaryRunDirectory()
        p.arguments = ["run", "--threads", "1", "--report-every", "10", "--run-dir", dir.path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let drain = Drain(out.fileHandleForReading)
        let deadline = Date().addingTimeInterval(60)
        while !drain.text.contains("step 20 ") && Date() < deadline && p.isRunning { usleep(20_000) }
        #expect(drain.text.contains("4000 atoms"), "the default system is 4000 atoms of argon")
        #expect(drain.text.contains("step 20 "))
        kill(p.processIdentifier, SIGINT)
        let stopDeadline = Date().addingTimeInterval(10)
        while p.isRunning && Date() < stopDeadline { usleep(10_000) }
        #expect(!p.isRunning, "quiver run must stop promptly on SIGINT")
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        let text = drain.finish()
        #expect(p.terminationStatus == 0)
        #expect(text.contains("stopped by SIGINT"))
        #expect(text.contains("done: "))
    }

    @Test("bad arguments give a clear error and a non-zero exit", arguments: [
        (["bench", "lj", "--cells", "0"], "--cells"),
        (["bench", "lj", "--threads", "1,x"], "--threads"),
        (["bench", "water"], "water"),
        (["bench", "lj", "--steps", "0"], "--steps"),
        (["bench", "lj", "--kernel", "avx512"], "--kernel"),
        (["run", "--threads", "0"], "--threads"),
        (["run", "--cells", "-3"], "--cells"),
        (["frobnicate"], "frobnicate"),
    ])
    func badArguments(arguments: [String], mentions: String) throws {
        let r = try QuiverProcess.run(arguments, timeout: 30)
        #expect(r.status != 0)
        #expect(r.stderr.contains(mentions), "stderr: \(r.stderr)")
    }

    @Test("info names the kernel variant and the linked libraries")
    func info() throws {
        let r = try QuiverProcess.run(["info"])
        #expect(r.status == 0)
        for word in ["kernel:", "libzmq:", "liblz4:", "openblas:", "cores available:"] { #expect(r.stdout.contains(word)) }
    }
}

@Suite("quiver run with a configuration file")
struct ConfigurationFileTests {
    func write(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "quiver-config-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).toml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("the file sets the run; flags override it")
    func fileAndFlags() throws {
        let path = try write("""
            [system]
            builtin = "lj"
            cells = 3

            [engine]
            threads = 1
            steps = 20
            report_every = 10
            """)
        defer { unlink(path) }
        let dir = TemporaryRunDirectory()
        let r = try QuiverProcess.run(["run", path, "--run-dir", dir.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("system lj, 108 atoms"))
        #expect(r.stdout.split(separator: "\n").filter { $0.hasPrefix("step ") }.map { $0.split(separator: " ")[1] } == ["0", "10", "20"])
        let dir2 = TemporaryRunDirectory()
        let o = try QuiverProcess.run(["run", path, "--cells", "4", "--steps", "10", "--run-dir", dir2.path])
        #expect(o.status == 0)
        #expect(o.stdout.contains("system lj, 256 atoms"))
        #expect(o.stdout.contains("done: 10 steps"))
    }

    @Test("a bad file is refused with the file, section and key named, and nothing starts")
    func badFile() throws {
        let path = try write("[engine]\nthreds = 2\n")
        defer { unlink(path) }
        let dir = TemporaryRunDirectory()
        let r = try QuiverProcess.run(["run", path, "--run-dir", dir.path], timeout: 30)
        #expect(r.status != 0)
        #expect(r.stderr.contains(path) && r.stderr.contains("unknown key 'threds' in [engine]"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.path), "nothing may be created for a refused configuration")
        let missing = try QuiverProcess.run(["run", "/nonexistent/q.toml"], timeout: 30)
        #expect(missing.status != 0 && missing.stderr.contains("/nonexistent/q.toml"))
    }
}

@Suite("quiver run: logs")
struct LogTests {
    @Test("--log-file with --log-format json: the supervisor's events as JSON lines, one object a line, progress stays on stdout")
    func jsonLogFile() throws {
        let dir = TemporaryRunDirectory()
        let log = dir.path + ".log"
        defer { unlink(log) }
        let r = try QuiverProcess.run(["run", "--system", "lj", "--cells", "3", "--steps", "20", "--report-every", "10", "--run-dir", dir.path,
                                       "--log-file", log, "--log-format", "json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("done: 20 steps"))
        #expect(!r.stderr.contains("worker engine started"), "log lines went to stderr: \(r.stderr)")
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        let objects = try lines.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any], "not JSON: \($0)") }
        let started = objects.filter { ($0["message"] as? String)?.hasPrefix("worker engine started") == true }
        #expect(started.count == 1)
        #expect(started.first?["worker.role"] as? String == "engine" && started.first?["worker.pid"] is Int && started.first?["level"] as? String == "info")
        #expect(objects.contains { ($0["message"] as? String) == "worker engine finished" })
        #expect(objects.allSatisfy { $0["time"] is String && $0["logger"] is String && $0["pid"] is Int })
    }

    @Test("--log-level warning keeps info lines out; a bad level is a usage error naming flag and key")
    func level() throws {
        let dir = TemporaryRunDirectory()
        let r = try QuiverProcess.run(["run", "--system", "lj", "--cells", "3", "--steps", "10", "--run-dir", dir.path, "--log-level", "warning"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!r.stderr.contains("started"), "\(r.stderr)")
        let bad = try QuiverProcess.run(["run", "--log-level", "loud", "--run-dir", dir.path], timeout: 30)
        #expect(bad.status == 64 && bad.stderr.contains("--log-level ([log] level)"), "\(bad.stderr)")
    }
}
