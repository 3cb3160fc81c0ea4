import Foundation
import QuiverLog
import QuiverSupervisor
import Testing

@Suite("Supervisor decisions, without processes")
struct LifecycleTests {
    @Test("the restart policy: 100 ms doubling to the cap, at most five restarts in the window, then give up; old restarts age out")
    func restartPolicy() {
        let p = RestartPolicy()
        #expect(p.delay(now: 0, previousRestarts: []) == 0.1)
        #expect(p.delay(now: 10, previousRestarts: [9]) == 0.2)
        #expect(p.delay(now: 10, previousRestarts: [6, 7, 8, 9]) == 1.6)
        #expect(p.delay(now: 10, previousRestarts: [5, 6, 7, 8, 9]) == nil)
        // Outside the 30 s window, earlier restarts no longer count.
        #expect(p.delay(now: 100, previousRestarts: [5, 6, 7, 8, 9]) == 0.1)
        let capped = RestartPolicy(firstDelay: 0.5, maxDelay: 1, maxRestarts: 10, window: 30)
        #expect(capped.delay(now: 10, previousRestarts: [1, 2, 3, 4]) == 1)
    }

    @Test("a worker that keeps failing: five restarts with backoff 0.1, 0.2, 0.4, 0.8, 1.6 s, then give up naming the restarts")
    func failing() {
        var w = WorkerLifecycle(policy: RestartPolicy(), exitEndsRun: false, watchdog: nil)
        var now = 0.0
        var delays: [Double] = []
        while case .restart(let delay, let n) = w.exited(.exited(code: 3), at: now, stopping: false) {
            delays.append(delay)
            #expect(n == delays.count)
            now += delay
        }
        #expect(delays == [0.1, 0.2, 0.4, 0.8, 1.6])
        do { let d = w.exited(.killed(signal: 11), at: now, stopping: false); #expect(d == .giveUp(restarts: 5)) }
        #expect("\(w.lastExit!)" == "killed by signal 11 (SIGSEGV)")
    }

    @Test("a clean exit ends the run only for a worker that says so; a crash of that worker restarts it; a stopping run restarts nothing")
    func exits() {
        var engine = WorkerLifecycle(policy: RestartPolicy(), exitEndsRun: true, watchdog: nil)
        do { let d = engine.exited(.killed(signal: 9), at: 0, stopping: false); #expect(d == .restart(delay: 0.1, restarts: 1)) }
        do { let d = engine.exited(.exited(code: 0), at: 1, stopping: false); #expect(d == .finished) }
        var broadcaster = WorkerLifecycle(policy: RestartPolicy(), exitEndsRun: false, watchdog: nil)
        do { let d = broadcaster.exited(.exited(code: 0), at: 0, stopping: false); #expect(d == .restart(delay: 0.1, restarts: 1)) }
        do { let d = broadcaster.exited(.killed(signal: 9), at: 1, stopping: true); #expect(d == .stopped) }
        #expect(broadcaster.restarts == 1)
        #expect(WorkerExit(waitStatus: 3 << 8) == .exited(code: 3))
        #expect(WorkerExit(waitStatus: 9) == .killed(signal: 9))
        #expect("\(WorkerExit.unknown)" == "exit status 127")
    }

    @Test("the watchdog kills once per stall: progress resets it, no progress past the limit fires, and the clock starts again")
    func watchdog() {
        var w = WorkerLifecycle(policy: RestartPolicy(), exitEndsRun: false, watchdog: 1)
        w.started(at: 10, progress: 5)
        do { let s = w.stalled(progress: 5, at: 10.9); #expect(!s) }
        do { let s = w.stalled(progress: 6, at: 10.95); #expect(!s) }
        do { let s = w.stalled(progress: 6, at: 11.9); #expect(!s) }
        do { let s = w.stalled(progress: 6, at: 12.0); #expect(s) }
        do { let s = w.stalled(progress: 6, at: 12.5); #expect(!s) }
        do { let s = w.stalled(progress: 6, at: 13.1); #expect(s) }
        var none = WorkerLifecycle(policy: RestartPolicy(), exitEndsRun: false, watchdog: nil)
        none.started(at: 0, progress: 0)
        do { let s = none.stalled(progress: 0, at: 1e6); #expect(!s) }
    }
}

@Suite("Log lines")
struct LogLineTests {
    let time = Date(timeIntervalSince1970: 1_800_000_000.25)

    @Test("text: today's readable line, the worker's role after quiver, warning and error marked, no metadata repeated")
    func text() {
        let line = QuiverLogHandler.render(label: "quiver", level: .info, message: "worker engine started, pid 7",
                                           metadata: ["worker.pid": .stringConvertible(7)], format: .text, time: time)
        #expect(line.hasPrefix("[") && line.hasSuffix("] quiver: worker engine started, pid 7"), "\(line)")
        let warning = QuiverLogHandler.render(label: "quiver.engine", level: .warning, message: "m", metadata: [:], format: .text, time: time)
        #expect(warning.hasSuffix("] quiver engine: warning: m"), "\(warning)")
        #expect(QuiverLogHandler.render(label: "quiver", level: .critical, message: "m", metadata: [:], format: .text, time: time).hasSuffix("error: m"))
    }

    @Test("json: one object with time (UTC), level, logger, pid, message and each metadata key, numbers as numbers")
    func json() throws {
        let line = QuiverLogHandler.render(label: "quiver.control", level: .error, message: "a \"quoted\"\nline",
                                           metadata: ["worker.pid": .stringConvertible(Int32(7)), "worker.role": "control",
                                                      "list": .array(["a"]), "message": "not the message"],
                                           format: .json, time: time)
        #expect(!line.contains("\n"))
        let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(o["time"] as? String == "2027-01-15T08:00:00.250Z")
        #expect(o["level"] as? String == "error" && o["logger"] as? String == "quiver.control" && o["message"] as? String == "a \"quoted\"\nline")
        #expect(o["worker.pid"] as? Int == 7 && o["worker.role"] as? String == "control" && o["list"] as? [String] == ["a"])
        #expect(o["pid"] as? Int == Int(getpid()))
    }

    @Test("a log file is appended to, one whole line per write, by several writers")
    func sink() throws {
        let path = NSTemporaryDirectory() + "quiver-log-\(getpid()).log"
        defer { unlink(path) }
        try "old\n".write(toFile: path, atomically: true, encoding: .utf8)
        let a = try LogSink(appendingTo: path), b = try LogSink(appendingTo: path)
        DispatchQueue.concurrentPerform(iterations: 200) { i in (i % 2 == 0 ? a : b).write(String(repeating: "x", count: 1000) + "\(i)") }
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 201 && lines[0] == "old")
        #expect(lines.dropFirst().allSatisfy { $0.hasPrefix(String(repeating: "x", count: 1000)) && $0.count <= 1003 })
        #expect(throws: LogError.self) { _ = try LogSink(appendingTo: "/nonexistent/dir/x.log") }
    }
}
