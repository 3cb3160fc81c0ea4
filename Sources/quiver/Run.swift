import ArgumentParser
import CQuiverOS
import Foundation
import QuiverConfig
import QuiverEngine
import QuiverSharedMemory
import QuiverServer
import QuiverSupervisor
import QuiverWire
import QuiverWorkers
import QuiverZMQ

/// Flags that describe the simulation, shared by `run` and the engine worker. Each overrides the
/// same field of the configuration file (docs/configuration.md); unset flags leave it alone.
struct SimulationFlags: ParsableArguments {
    @Option(help: "System: argon (liquid argon under Langevin at 94.4 K; the default) or lj (LAMMPS in.lj).")
    var system: String?

    @Option(help: "fcc unit cells per edge (4 cells^3 atoms; default 10, 4000 atoms).")
    var cells: Int?

    @Option(help: "Steps to run (default: until stopped).")
    var steps: Int?

    @Option(help: "Threads of the engine (default: every core this process may use).")
    var threads: Int?

    @Option(help: "Seed for velocities and the thermostat (default 2024).")
    var seed: UInt64?

    @Option(help: "Print a progress line every this many steps (default: about once a second).")
    var reportEvery: Int?

    @Option(help: "Kernel variant: auto, scalar or avx2.")
    var kernel: String?

    @Option(help: "Steps between frames written to shared memory (default 10).")
    var frameInterval: Int?

    func apply(to c: inout RunConfiguration) {
        if let system { c.system = system }
        if let cells { c.cells = cells }
        if let steps { c.steps = steps }
        if let threads { c.threads = threads }
        if let seed { c.seed = seed }
        if let reportEvery { c.reportEvery = reportEvery }
        if let kernel { c.kernel = kernel }
        if let frameInterval { c.frameInterval = frameInterval }
    }
}

extension RunConfiguration {
    /// Validates, including what only this machine can tell (the kernel variant), as a usage error.
    func checked() throws -> RunConfiguration {
        do { try validateForThisMachine() } catch { throw ValidationError("\(error)") }
        return self
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

    @Argument(help: "A TOML configuration file (docs/configuration.md); flags override it.")
    var config: String?

    @OptionGroup var simulation: SimulationFlags

    @Option(help: "The run directory: lock, connection.json, control.sock (default ./quiver-run).")
    var runDir: String?

    @Option(help: "Seconds a worker may go without progress before it is killed and restarted (default 30).")
    var watchdog: Double?

    @Option(help: "Seconds a worker gets to exit after SIGTERM before SIGKILL (default 5).")
    var grace: Double?

    @Option(help: "Frame codec for clients: raw, lossless or quantized (default).")
    var codec: String?

    @Option(help: "Quantisation step of positions in nm (default 0.001).")
    var precision: Double?

    @Option(help: "Address the frame and heartbeat sockets listen on (default 127.0.0.1).")
    var address: String?

    @Option(help: "TCP port of the frame socket (default 0: any free port, written to connection.json).")
    var port: Int?

    @Option(help: "TCP port of the command socket (default 0: any free port, written to connection.json).")
    var controlPort: Int?

    @Option(help: "Seconds without a request after which a client has left (default 10).")
    var sessionLease: Double?

    @Option(help: "A C plugin force field (shared library, docs/plugins.md) added to the system's forces.")
    var plugin: String?

    @Option(help: "The options string handed to the plugin.")
    var pluginOptions: String?

    /// Defaults, then the file, then the flags; validated once.
    func configuration() throws -> RunConfiguration {
        var c: RunConfiguration
        do { c = try config.map { try RunConfiguration.load(path: $0) } ?? RunConfiguration() } catch { throw ValidationError("\(error)") }
        simulation.apply(to: &c)
        if let runDir { c.runDirectory = runDir }
        if let watchdog { c.watchdog = watchdog }
        if let grace { c.grace = grace }
        if let codec { c.codec = codec }
        if let precision { c.precision = precision }
        if let address { c.address = address }
        if let port { c.port = port }
        if let controlPort { c.controlPort = controlPort }
        if let sessionLease { c.sessionLease = sessionLease }
        if let plugin { c.plugin = plugin.hasPrefix("/") ? plugin : FileManager.default.currentDirectoryPath + "/" + plugin }
        if let pluginOptions { c.pluginOptions = pluginOptions }
        return try c.checked()
    }

    func validate() throws { _ = try configuration() }

    func run() throws {
        let c = try configuration()
        let setup = try c.simulationSetup()
        let resources = try ServerResources(runDirectory: c.runDirectory, segmentName: "quiver-run-\(getpid())",
                                            atomCapacity: setup.system.count, configuration: c)
        defer { resources.close() }
        let directory = resources.directory
        // Elements from the type names (argon's "Ar": Z = 18), as for any dynamics.
        try TopologyFile.write(TopologyFile.topology(types: setup.system.types, typeNames: setup.system.typeNames), firstFrame: 0,
                               to: directory.topologyFilePath)
        let supervisor = Supervisor(runDirectory: directory, segment: resources.segment, executable: try Self.executablePath(),
                                    workers: try resources.workerSpecs(WorkerRoles.all, firstIndex: 0), grace: c.grace, log: Log.line)
        if let previous = directory.tookOverFrom { Log.line("took over \(directory.path) from a server that is gone (pid \(previous))") }
        Log.line("frames on \(resources.listeners[.frames]?.endpoint ?? "?") and \(resources.ipcEndpoints[.frames] ?? "?"); connection file \(directory.connectionFilePath)")
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

/// A worker process: started by the supervisor, never by hand (`WorkerProcess`).
struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run one worker of a server (started by the supervisor).", shouldDisplay: false)

    @Argument(help: "The role (engine, broadcaster, heartbeat, control).")
    var role: String

    @Argument(help: "The launch document (JSON) the supervisor made.")
    var launch: String

    func run() throws {
        try WorkerProcess.run(role: role, launch: launch)
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
