import Foundation
import QuiverLog
import QuiverModel
import QuiverSupervisor
import Testing

@Suite("Supervisor decisions, without processes")
struct LifecycleTests {
    @Test("the restart policy: 100 ms for an isolated failure, doubling per failure in a row up to the 2 s cap; an essential worker gives up after 5 restarts in a row or 20 within 60 s")
    func restartPolicy() {
        let p = RestartPolicy()
        #expect((1...8).map { p.delay(failuresInARow: $0) } == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])
        #expect(!p.givesUp(failuresInARow: 5, restartsInWindow: 4) && p.givesUp(failuresInARow: 6, restartsInWindow: 5))
        #expect(!p.givesUp(failuresInARow: 1, restartsInWindow: 19) && p.givesUp(failuresInARow: 1, restartsInWindow: 20))
        let capped = RestartPolicy(firstDelay: 0.5, maxDelay: 1, maxRestarts: 10)
        #expect(capped.delay(failuresInARow: 5) == 1)
    }

    @Test("an essential worker that keeps failing at start: five restarts with backoff 0.1, 0.2, 0.4, 0.8, 1.6 s, then give up")
    func failing() {
        var w = WorkerLifecycle(policy: RestartPolicy(), exitEndsRun: false, essential: true, watchdog: nil)
        var now = 0.0
        var delays: [Double] = []
        w.started(at: now, progress: 0)
        while case .restart(let delay, let n) = w.exited(.exited(code: 3), at: now, stopping: false, progress: 0) {
            delays.append(delay)
            #expect(n == delays.count)
            now += delay
            w.started(at: now, progress: 0)
        }
        #expect(delays == [0.1, 0.2, 0.4, 0.8, 1.6])
        do { let d = w.exited(.killed(signal: 11), at: now, stopping: false); #expect(d == .giveUp(restarts: 5)) }
        #expect("\(w.lastExit!)" == "killed by signal 11 (SIGSEGV)")
    }

    @Test("a non-essential worker is never given up: killed six times in 3.4 s (and sixty more) it is restarted, backoff capped at 2 s, and reported failing")
    func nonEssentialNeverGivesUp() {
        var w = WorkerLifecycle(policy: RestartPolicy(), exitEndsRun: false, essential: false, watchdog: nil)
        var now = 0.0
        var delays: [Double] = []
        for k in 0..<66 {
            w.started(at: now, progress: UInt64(k))
            // Killed 0.1 s after its start, before it counts as healthy.
            now += 0.1
            guard case .restart(let delay, let n) = w.exited(.killed(signal: 9), at: now, stopping: false, progress: UInt64(k) + 1) else {
                Issue.record("gave up on a non-essential worker after \(k) kills"); return
            }
            #expect(n == k + 1)
            delays.append(delay)
            now += delay
        }
        #expect(Array(delays.prefix(7)) == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0] && delays.max() == 2.0)
        #expect(w.failing && w.failuresInARow == 66)
    }

    @Test("the backoff resets after a healthy run (0.5 s up and progress): isolated kills a second apart are each restarted after 100 ms; a run without progress is not healthy")
    func backoffResets() {
        var w = WorkerLifecycle(policy: RestartPolicy(), exitEndsRun: true, essential: true, watchdog: nil)
        var now = 0.0
        var progress: UInt64 = 0
        for _ in 0..<10 {
            w.started(at: now, progress: progress)
            progress += 50
            now += 0.9
            let d = w.exited(.killed(signal: 9), at: now, stopping: false, progress: progress)
            #expect(d == .restart(delay: 0.1, restarts: w.restarts))
            now += 0.1
        }
        #expect(w.failuresInARow == 1 && !w.failing)
        // Up long enough but no progress (hung at start): not healthy, the backoff doubles.
        w.started(at: now, progress: progress)
        now += 5
        do { let d = w.exited(.killed(signal: 9), at: now, stopping: false, progress: progress); #expect(d == .restart(delay: 0.2, restarts: 11)) }
        // Progress seen by the watchdog's observation counts too.
        w.started(at: now, progress: progress)
        do { let s = w.stalled(progress: progress + 1, at: now + 0.2); #expect(!s) }
        #expect(w.healthy(at: now + 0.6) && !w.healthy(at: now + 0.4))
    }

    @Test("an essential worker in a crash loop that lasts a while each time gives up after 20 restarts within 60 s")
    func crashLoopGivesUp() {
        var w = WorkerLifecycle(policy: RestartPolicy(), exitEndsRun: true, essential: true, watchdog: nil)
        var now = 0.0
        var progress: UInt64 = 0
        var restarts = 0
        while true {
            w.started(at: now, progress: progress)
            progress += 10
            now += 1.0
            guard case .restart(let delay, _) = w.exited(.killed(signal: 11), at: now, stopping: false, progress: progress) else { break }
            #expect(delay == 0.1)
            restarts += 1
            now += delay
        }
        #expect(restarts == 20)
    }

    @Test("a clean exit ends the run only for a worker that says so; a crash of that worker restarts it; a stopping run restarts nothing")
    func exits() {
        var engine = WorkerLifecycle(policy: RestartPolicy(), exitEndsRun: true, essential: true, watchdog: nil)
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

    @Test("a fatal exit (status 65: a restart cannot fix it) gives up an essential worker at once; a non-essential one is restarted as after any failure")
    func fatalExit() {
        var engine = WorkerLifecycle(policy: RestartPolicy(), exitEndsRun: true, essential: true, watchdog: nil)
        #expect(engine.exited(.exited(code: WorkerExitStatus.fatal), at: 0, stopping: false) == .giveUp(restarts: 0))
        var heartbeat = WorkerLifecycle(policy: RestartPolicy(), exitEndsRun: false, watchdog: nil)
        #expect(heartbeat.exited(.killed(signal: 9), at: 0, stopping: false) == .restart(delay: 0.1, restarts: 1))
        #expect(heartbeat.exited(.exited(code: WorkerExitStatus.fatal), at: 1, stopping: false) == .restart(delay: 0.2, restarts: 2))
        #expect("\(WorkerExit.exited(code: WorkerExitStatus.fatal))".contains("a restart cannot fix"))
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
        // A worker the watchdog killed was not healthy, even though it once made progress: the backoff doubles.
        #expect(!w.healthy(at: 13.2))
        do { let d = w.exited(.killed(signal: 9), at: 13.2, stopping: false, progress: 6); #expect(d == .restart(delay: 0.1, restarts: 1)) }
        w.started(at: 13.3, progress: 6)
        do { let s = w.stalled(progress: 7, at: 13.5); #expect(!s) }
        do { let s = w.stalled(progress: 7, at: 14.6); #expect(s) }
        do { let d = w.exited(.killed(signal: 9), at: 14.7, stopping: false, progress: 7); #expect(d == .restart(delay: 0.2, restarts: 2)) }
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
