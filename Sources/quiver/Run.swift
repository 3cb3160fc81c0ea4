import ArgumentParser
import CQuiverOS
import Foundation
import QuiverEngine
import QuiverSharedMemory
import QuiverSupervisor
import QuiverWorkers

/// Options that describe the simulation, shared by `run` and the engine worker.
struct SimulationFlags: ParsableArguments {
    @Option(help: "System: argon (the default, liquid argon under Langevin at 94.4 K) or lj (LAMMPS in.lj).")
    var system: Bench.SystemName = .argon

    @Option(help: "fcc unit cells per edge (4 cells^3 atoms; 10 gives 4000).")
    var cells: Int = 10

    @Option(help: "Steps to run (default: until stopped).")
    var steps: Int?

    @Option(help: "Threads of the engine (default: every core this process may use).")
    var threads: Int?

    @Option(help: "Seed for velocities and the thermostat.")
    var seed: UInt64 = 2024

    @Option(help: "Print a progress line every this many steps (default: about once a second).")
    var reportEvery: Int?

    @Option(help: "Kernel variant: auto, scalar or avx2.")
    var kernel: KernelVariant = .auto

    @Option(help: "Steps between frames written to shared memory.")
    var frameInterval: Int = 10

    func validate() throws {
        guard cells >= 1 && cells <= 200 else { throw ValidationError("--cells must be between 1 and 200") }
        if let steps { guard steps >= 0 else { throw ValidationError("--steps must be >= 0") } }
        if let threads { guard threads >= 1 && threads <= 1024 else { throw ValidationError("--threads must be between 1 and 1024") } }
        if let reportEvery { guard reportEvery >= 1 else { throw ValidationError("--report-every must be >= 1") } }
        guard frameInterval >= 1 && frameInterval <= 1_000_000 else { throw ValidationError("--frame-interval must be between 1 and 10^6") }
        guard kernel.isSupported else { throw ValidationError("--kernel \(kernel.rawValue) is not supported on this CPU (it needs AVX2 and FMA)") }
    }

    func setup() throws -> SimulationSetup {
        switch system {
        case .argon: return try BuiltinSystems.argonLiquid(cells: cells, seed: seed)
        case .lj: return try BuiltinSystems.lennardJonesBench(cells: cells, seed: seed)
        }
    }

    /// The same settings as command-line arguments, for the engine worker.
    var arguments: [String] {
        var a = ["--system", system.rawValue, "--cells", "\(cells)", "--seed", "\(seed)", "--kernel", kernel.rawValue,
                 "--frame-interval", "\(frameInterval)"]
        if let steps { a += ["--steps", "\(steps)"] }
        if let threads { a += ["--threads", "\(threads)"] }
        if let reportEvery { a += ["--report-every", "\(reportEvery)"] }
        return a
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server: a supervisor and its worker processes around a simulation (default: the embedded liquid-argon system).",
        discussion: """
        Creates (or takes over) the run directory, locks it, writes connection.json there, creates the \
        run's shared-memory segment and starts the workers. Progress lines go to stdout, the \
        supervisor's log to stderr. Stops after --steps steps, on SIGINT/SIGTERM, or on `quiver stop` \
        (exit 0 after a final line); a worker that keeps failing stops the run with exit 1.
        """)

    @OptionGroup var simulation: SimulationFlags

    @Option(help: "The run directory (lock, connection.json, control.sock).")
    var runDir: String = "quiver-run"

    @Option(help: "Seconds a worker may go without progress before it is killed and restarted.")
    var watchdog: Double = 30

    @Option(help: "Seconds a worker gets to exit after SIGTERM before SIGKILL.")
    var grace: Double = 5

    func validate() throws {
        guard watchdog >= 0.5 && watchdog <= 86400 else { throw ValidationError("--watchdog must be between 0.5 and 86400 seconds") }
        guard grace >= 0.1 && grace <= 600 else { throw ValidationError("--grace must be between 0.1 and 600 seconds") }
    }

    func run() throws {
        let setup = try simulation.setup()
        SharedSegment.removeStale(prefix: "quiver-run-")
        let directory = try RunDirectory.acquire(runDir)
        defer { directory.release() }
        let segmentName = "quiver-run-\(getpid())"
        let segment = try SharedSegment.create(name: segmentName, layout: SegmentLayout(atomCapacity: setup.system.count))
        defer { try? segment.unlink() }
        try directory.writeConnectionFile(ConnectionInfo(
            protocolVersion: 1, runDirectory: directory.path, supervisorPID: getpid(),
            endpoints: ["control-socket": directory.controlSocketPath], segment: segmentName, key: ConnectionInfo.randomKey()))
        let executable = try Self.executablePath()
        let engine = WorkerSpec(
            role: "engine",
            arguments: ["worker", "--role", "engine", "--segment", segmentName, "--index", "0", "--supervisor-pid", "\(getpid())"] + simulation.arguments,
            watchdog: watchdog, exitEndsRun: true)
        let supervisor = Supervisor(runDirectory: directory, segment: segment, executable: executable, workers: [engine],
                                    grace: grace, log: Log.line)
        if let previous = directory.tookOverFrom { Log.line("took over \(directory.path) from a server that is gone (pid \(previous))") }
        let outcome = try supervisor.run()
        if case .stopped(let reason) = outcome {
            print("stopped by \(reason) at step \(supervisor.newestStep ?? 0)")
        }
    }

    static func executablePath() throws -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        guard qv_os_executable_path(&buffer, buffer.count) == 0 else { throw ValidationError("cannot find this executable (/proc/self/exe)") }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The supervisor's log: one line per event on stderr, prefixed with the time.
enum Log {
    static func line(_ text: String) {
        let t = Date()
        let stamp = ISO8601DateFormatter.string(from: t, timeZone: .current, formatOptions: [.withFullTime, .withFractionalSeconds])
        FileHandle.standardError.write(Data("[\(stamp)] quiver: \(text)\n".utf8))
    }
}

/// A worker process: started by the supervisor, never by hand.
struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run one worker of a server (started by the supervisor).", shouldDisplay: false)

    @Option var role: String
    @Option var segment: String
    @Option var index: Int
    @Option var supervisorPid: Int32
    @OptionGroup var simulation: SimulationFlags

    func run() throws {
        qv_signal_install_stop_handlers()
        guard qv_os_die_with_parent(SIGTERM, supervisorPid) == 0 else { throw ExitCode(2) }
        let fault = Fault.injected(into: role)
        if fault == .exit { throw ExitCode(3) }
        if fault == .ignoreTerm { signal(SIGTERM, SIG_IGN) }
        switch role {
        case "engine":
            let options = EngineWorkerOptions(
                segment: segment, index: index, frameInterval: simulation.frameInterval, totalSteps: simulation.steps,
                reportEvery: simulation.reportEvery,
                simulation: SimulationOptions(threads: simulation.threads, seed: simulation.seed, kernel: simulation.kernel))
            _ = try EngineWorker.run(setup: try simulation.setup(), options: options, fault: fault)
        default:
            throw ValidationError("unknown worker role '\(role)'")
        }
    }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Ask a running server to stop (through its control socket).")

    @Argument(help: "The run directory.")
    var runDir: String = "quiver-run"

    func run() throws {
        print(try ControlClient.send("stop", runDirectory: runDir))
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a running server's workers and progress.")

    @Argument(help: "The run directory.")
    var runDir: String = "quiver-run"

    @Option(help: "Output: table or json.")
    var format: OutputFormat = .table

    func run() throws {
        let reply = try ControlClient.send("status", runDirectory: runDir)
        guard format == .table else { print(reply); return }
        guard let root = try JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any] else { print(reply); return }
        let engine = root["engine"] as? [String: Any] ?? [:]
        print("run \(root["run_directory"] ?? "?")  supervisor pid \(root["pid"] ?? "?")  \(root["state"] ?? "?")")
        print("engine step \(engine["step"] ?? 0)  \(String(format: "%.1f", engine["steps_per_second"] as? Double ?? 0)) steps/s  frames \(root["frames_published"] ?? 0)")
        for w in root["workers"] as? [[String: Any]] ?? [] {
            print("  \(w["role"] ?? "?")  pid \(w["pid"] ?? 0)  \(w["state"] ?? "?")  restarts \(w["restarts"] ?? 0)")
        }
    }
}
