import ArgumentParser
import Foundation
import Glibc
import QuiverClient
import QuiverControl
import QuiverModel
import QuiverSupervisor
import QuiverWire
import QuiverZMQ

/// The fault matrix of docs/operations.md ("Fault matrix") against a real `quiver run`: worker
/// kills, a stopped engine, the absurd pull, a command burst, a subscription flood, idle clients
/// of the control socket, garbage on every endpoint. Prints one table and exits 1 when an
/// invariant broke (the run went down, a non-finite or backward frame, an untrue reply, memory or
/// descriptors not back to baseline, an unclean stop); timing targets are reported, and enforced
/// with `--strict`.
@main
struct Chaos: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quiver-chaos",
        abstract: "Runs the fault matrix against a real quiver server and prints one table.")

    @Option(help: "How long to keep injecting faults (minutes; at least one pass of every row).")
    var minutes: Double = 1

    @Option(help: "The server's system size (lattice cells; 4 atoms per cell).")
    var cells: Int = 10

    @Option(help: "The server's progress watchdog, seconds (the stopped-engine row waits for it).")
    var watchdog: Double = 2

    @Option(help: "The quiver executable (default: the one beside this program).")
    var binary: String?

    @Option(help: "Output: table or json.")
    var format: String = "table"

    @Flag(help: "Also fail when a timing target is missed (respawn p99 <= 200 ms, frames resume <= 500 ms, stopped engine found within watchdog + 1 s).")
    var strict = false

    @Option(help: "Only these rows, comma-separated (\(Row.allCases.map(\.rawValue).joined(separator: ", "))).")
    var only: String?

    @Flag(help: "Print each fault as it is injected.")
    var verbose = false

    func validate() throws {
        guard minutes > 0 && minutes <= 24 * 60 else { throw ValidationError("--minutes must be in (0, 1440]") }
        guard cells >= 2 && cells <= 60 else { throw ValidationError("--cells must be in [2, 60]") }
        guard watchdog >= 0.5 && watchdog <= 60 else { throw ValidationError("--watchdog must be in [0.5, 60]") }
        guard format == "table" || format == "json" else { throw ValidationError("--format must be table or json") }
        for name in only?.split(separator: ",") ?? [] where Row(rawValue: String(name)) == nil {
            throw ValidationError("--only: no row \(name); rows: \(Row.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let executable = binary ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("quiver").path
        guard access(executable, X_OK) == 0 else {
            throw ValidationError("no quiver executable at \(executable) (build first: swift build -c release)")
        }
        let harness = try Harness(executable: executable, cells: cells, watchdog: watchdog, verbose: verbose)
        // Interrupted (Ctrl-C, a CI timeout): the server is stopped by its pid and the run
        // directory removed before exiting.
        nonisolated(unsafe) let interrupted = harness
        let signalSources = [SIGINT, SIGTERM].map { number -> DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                interrupted.abort()
                Foundation.exit(128 + number)
            }
            source.resume()
            return source
        }
        defer { signalSources.forEach { $0.cancel() } }
        var report = Report()
        defer { harness.shutdown(into: &report) }
        try harness.start()
        report.before = harness.resources()
        let deadline = SystemClock.monotonicSeconds + minutes * 60
        var pass = 0
        let rows = only.map { $0.split(separator: ",").compactMap { Row(rawValue: String($0)) } } ?? Row.allCases
        repeat {
            pass += 1
            for row in rows {
                harness.settle()
                harness.inject(row, into: &report)
            }
        } while SystemClock.monotonicSeconds < deadline
        harness.settle()
        report.passes = pass
        report.after = harness.resources()
        report.stillUp = harness.stillUp()
        harness.stopWatching(into: &report)
        harness.shutdown(into: &report)
        let failures = report.failures(strict: strict)
        if format == "json" { print(report.json(failures: failures)) } else { print(report.table(failures: failures)) }
        if !failures.isEmpty {
            FileHandle.standardError.write(Data("quiver-chaos: the server's log is in \(harness.logFile)\n".utf8))
            throw ExitCode(1)
        }
        try? FileManager.default.removeItem(atPath: harness.logFile)
    }
}

/// One kind of fault.
enum Row: String, CaseIterable {
    case killBroadcaster = "kill-broadcaster"
    case killControl = "kill-control"
    case killHeartbeat = "kill-heartbeat"
    case killEngine = "kill-engine"
    case stopEngine = "stop-engine"
    case absurdPull = "absurd-pull"
    case commandBurst = "command-burst"
    case forceStorm = "force-storm"
    case subscriptionFlood = "flood"
    case idleControlClients = "idle-clients"
    case garbage = "garbage"

    var title: String {
        switch self {
        case .killBroadcaster: return "kill -9 broadcaster"
        case .killControl: return "kill -9 control"
        case .killHeartbeat: return "kill -9 heartbeat"
        case .killEngine: return "kill -9 engine"
        case .stopEngine: return "SIGSTOP engine"
        case .absurdPull: return "absurd pull (scale 1e30)"
        case .commandBurst: return "command burst (64 set, 300 renew)"
        case .forceStorm: return "2000 force updates/s from one client, 2 s"
        case .subscriptionFlood: return "subscription + inbound flood"
        case .idleControlClients: return "8 idle control.sock clients + kill"
        case .garbage: return "garbage on every endpoint"
        }
    }

    var role: String? {
        switch self {
        case .killBroadcaster, .idleControlClients: return "broadcaster"
        case .killControl: return "control"
        case .killHeartbeat: return "heartbeat"
        case .killEngine, .stopEngine: return "engine"
        default: return nil
        }
    }
}

/// What one row measured over every time it ran.
struct RowResult {
    var runs = 0
    var respawn: [Double] = []
    var resume: [Double] = []
    var nonFinite = 0
    /// A row's own figure (the force storm: the step-rate drop, %).
    var measures: [Double] = []
    var notes: [String: Int] = [:]
    /// Replies by code (or other counted outcomes), summed over the row's runs.
    var counts: [String: Int] = [:]
    /// The newest run's figures, shown as they are.
    var latest: String?
    var violations: [String] = []
    mutating func note(_ s: String) { notes[s, default: 0] += 1 }
    mutating func count(_ key: String, _ n: Int = 1) { counts[key, default: 0] += n }

    var summary: String {
        var parts = notes.sorted { $0.key < $1.key }.map { $0.value > 1 ? "\($0.key) x\($0.value)" : $0.key }
        if !counts.isEmpty { parts.append(counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")) }
        if !measures.isEmpty, let p50 = percentile(measures, 0.5), let worst = measures.max() {
            parts.append(String(format: "step-rate drop p50 %.1f %%, worst %.1f %%", p50, worst))
        }
        if let latest { parts.append("last: " + latest) }
        return parts.joined(separator: "; ")
    }
}

/// Per role: pid, resident memory (KiB) and open descriptors.
struct WorkerResources { var pid: Int32; var rssKiB: Int; var fds: Int }

struct Report {
    var rows: [Row: RowResult] = [:]
    var before: [String: WorkerResources] = [:]
    var after: [String: WorkerResources] = [:]
    var passes = 0
    var stillUp: String? = "not checked"
    var frames = 0
    var nonFinite = 0
    var backwards = 0
    var decodeErrors = 0
    var shutdown: String?
    var shutdownDone = false

    static let respawnTarget = 0.200, resumeTarget = 0.500

    func failures(strict: Bool) -> [String] {
        var f: [String] = []
        if let s = stillUp { f.append("run not up at the end: \(s)") }
        if nonFinite > 0 { f.append("\(nonFinite) non-finite frames received") }
        if backwards > 0 { f.append("frame index or step went backwards \(backwards) times") }
        if decodeErrors > 0 { f.append("\(decodeErrors) frames failed to decode") }
        if let s = shutdown { f.append("stop: \(s)") }
        for row in Row.allCases { for v in rows[row]?.violations ?? [] { f.append("\(row.title): \(v)") } }
        for (role, b) in before.sorted(by: { $0.key < $1.key }) {
            guard let a = after[role] else { f.append("\(role): not running at the end"); continue }
            // A respawned worker is a new process: its descriptors must match the first one's.
            if a.fds > b.fds + 2 { f.append("\(role): \(a.fds) descriptors at the end against \(b.fds) at the start") }
        }
        if strict {
            for row in Row.allCases {
                guard let r = rows[row] else { continue }
                if let p = percentile(r.respawn, 0.99), p > Self.respawnTarget, row != .stopEngine {
                    f.append("\(row.title): respawn p99 \(ms(p)) ms > 200 ms")
                }
                if let p = percentile(r.resume, 0.99), p > Self.resumeTarget, row != .stopEngine {
                    f.append("\(row.title): frames resume p99 \(ms(p)) ms > 500 ms")
                }
            }
        }
        return f
    }

    func table(failures: [String]) -> String {
        var lines: [String] = []
        lines.append("quiver-chaos: \(passes) passes of \(Row.allCases.count) rows, \(frames) frames received")
        lines.append("")
        lines.append("| fault | n | respawn p50 / p99 ms | frames resume p50 / p99 ms | non-finite frames | notes |")
        lines.append("| --- | ---: | ---: | ---: | ---: | --- |")
        for row in Row.allCases {
            let r = rows[row] ?? RowResult()
            lines.append("| \(row.title) | \(r.runs) | \(pair(r.respawn)) | \(pair(r.resume)) | \(r.nonFinite) | \(r.summary) |")
        }
        lines.append("")
        lines.append("| worker | RSS MB start / end | descriptors start / end |")
        lines.append("| --- | ---: | ---: |")
        for role in ["engine", "broadcaster", "heartbeat", "control", "supervisor"] {
            let b = before[role], a = after[role]
            lines.append("| \(role) | \(b.map { mb($0.rssKiB) } ?? "-") / \(a.map { mb($0.rssKiB) } ?? "-") | \(b.map { String($0.fds) } ?? "-") / \(a.map { String($0.fds) } ?? "-") |")
        }
        lines.append("")
        lines.append("frames: \(frames) received, \(nonFinite) non-finite, \(backwards) backwards, \(decodeErrors) undecodable")
        lines.append("run still up at the end: \(stillUp == nil ? "yes" : "no (\(stillUp!))")")
        lines.append("clean stop: \(shutdown == nil ? "yes (exit 0, no worker left, segment removed)" : "no (\(shutdown!))")")
        lines.append(failures.isEmpty ? "result: PASS" : "result: FAIL\n" + failures.map { "  - " + $0 }.joined(separator: "\n"))
        return lines.joined(separator: "\n")
    }

    func json(failures: [String]) -> String {
        var rowsJSON: [[String: Any]] = []
        for row in Row.allCases {
            let r = rows[row] ?? RowResult()
            rowsJSON.append(["fault": row.title, "runs": r.runs,
                             "respawn_ms_p50": percentile(r.respawn, 0.5).map { $0 * 1000 } as Any,
                             "respawn_ms_p99": percentile(r.respawn, 0.99).map { $0 * 1000 } as Any,
                             "resume_ms_p50": percentile(r.resume, 0.5).map { $0 * 1000 } as Any,
                             "resume_ms_p99": percentile(r.resume, 0.99).map { $0 * 1000 } as Any,
                             "non_finite_frames": r.nonFinite, "notes": r.notes, "counts": r.counts,
                             "measures": r.measures, "latest": r.latest as Any, "violations": r.violations])
        }
        func res(_ m: [String: WorkerResources]) -> [String: Any] {
            m.mapValues { ["pid": Int($0.pid), "rss_kib": $0.rssKiB, "fds": $0.fds] }
        }
        let object: [String: Any] = ["passes": passes, "rows": rowsJSON, "before": res(before), "after": res(after),
                                     "frames": frames, "non_finite_frames": nonFinite, "backwards": backwards,
                                     "still_up": stillUp == nil, "clean_stop": shutdown == nil, "failures": failures]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}

func percentile(_ values: [Double], _ q: Double) -> Double? {
    guard !values.isEmpty else { return nil }
    let s = values.sorted()
    return s[min(s.count - 1, Int((q * Double(s.count)).rounded(.up)) - 1 < 0 ? 0 : Int((q * Double(s.count)).rounded(.up)) - 1)]
}
func ms(_ s: Double) -> String { String(format: "%.0f", s * 1000) }
func mb(_ kib: Int) -> String { String(format: "%.1f", Double(kib) / 1024) }
func pair(_ v: [Double]) -> String {
    guard let a = percentile(v, 0.5), let b = percentile(v, 0.99) else { return "-" }
    return "\(ms(a)) / \(ms(b))"
}
