import Foundation
import QuiverModel
import QuiverConfig
import QuiverSharedMemory
import QuiverZMQ

/// The heartbeat process: a REP socket on TCP and ipc. A request `health` is answered with a JSON
/// summary of every worker (from the shared status table); any other request is echoed back
/// unchanged (a ping). Requests are capped at 64 KiB.
public struct Heartbeat: Worker {
    public static let role = "heartbeat"
    public static func listeners(_ c: RunConfiguration) -> [ListenerDeclaration] { [ListenerDeclaration(.heartbeat)] }

    let context: WorkerContext
    let listener: HandedListener

    public init(context: WorkerContext) throws {
        self.context = context
        listener = try context.listener(.heartbeat)
    }

    /// Runs until SIGTERM/SIGINT.
    public func run() async throws {
        let segment = context.segment
        let zmq = try ZMQContext()
        defer { zmq.close() }
        let rep = try zmq.socket(.rep, options: ZMQDefaults.socketOptions + [.maxMessageSize(64 << 10)])
        defer { rep.close() }
        try rep.bind(listener)
        context.ready()
        while !context.stopRequested {
            // A request is read whole, every part: REP answers each request exactly once, and a
            // reply sent with parts of the request unread fails (EFSM) and would end the worker.
            if let request = try rep.receiveMultipart(timeout: .milliseconds(100)) {
                if request == [Array("health".utf8)] {
                    try rep.send(Array(Self.health(segment).utf8))
                } else {
                    try rep.sendMultipart(request)
                }
            }
            context.advance()
        }
    }

    /// Milliseconds from the heartbeat `beat` to `now` (monotonic nanoseconds); -1 for no beat yet.
    /// A beat stamped after `now` was read (a worker advancing meanwhile) is 0 ms old, not 2^64 ns.
    public static func millisecondsSince(beat: UInt64, now: UInt64) -> Int {
        beat == 0 ? -1 : now > beat ? Int((now - beat) / 1_000_000) : 0
    }

    /// The health document. `state`: `ok`, or `degraded` when a worker is down (being restarted
    /// or given up; `degraded` names them). The heartbeat itself being down is told only by the
    /// supervisor's `status` (control.sock).
    static func health(_ segment: SharedSegment) -> String {
        var workers: [[String: Any]] = []
        var degraded: [String] = []
        let nowNs = SystemClock.monotonicNanoseconds
        for i in 0..<segment.layout.workerCapacity {
            let w = segment.workers[i]
            guard w.state != .empty else { continue }
            let beat = w.heartbeatNanoseconds
            if w.state == .failed { degraded.append(w.name) }
            workers.append([
                "role": w.name, "pid": Int(w.pid), "state": "\(w.state)", "progress": Int(w.progress),
                "restarts": Int(w.restarts), "last_progress_ms": millisecondsSince(beat: beat, now: nowNs),
            ])
        }
        let latest = segment.frames.latestScalars()
        let root: [String: Any] = [
            "ok": true, "workers": workers, "frames_published": Int(segment.frames.published),
            "step": latest.map { Int($0.step) } ?? 0, "state": degraded.isEmpty ? "ok" : "degraded", "degraded": degraded,
        ]
        let data = (try? JSONSerialization.data(withJSONObject: root, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
