import ArgumentParser
import CQuiverOS
import Foundation
import QuiverConfig
import QuiverEngine
import QuiverLog
import QuiverSharedMemory
import QuiverServer
import QuiverSupervisor
import QuiverWire
import QuiverWorkers
import QuiverZMQ

/// The flags of `quiver run`: each sets the configuration key it names, through the same setter as
/// the TOML file (docs/configuration.md), over the file's value; unset flags leave it alone.
/// Numeric flags take the next argument whatever it looks like (`--cells -5`), so a negative number
/// gets the configuration's message naming the flag and its range, not "Missing value".
struct ConfigurationFlags: ParsableArguments {
    @Option(help: "System: argon (liquid argon under Langevin at 94.4 K; the default) or lj (LAMMPS in.lj). [system] builtin")
    var system: String?
    @Option(parsing: .unconditional, help: "fcc unit cells per edge (4 cells^3 atoms; default 10, 4000 atoms). [system] cells")
    var cells: Int?
    @Option(parsing: .unconditional, help: "Seed for velocities and the thermostat (default 2024). [system] seed")
    var seed: Int?
    @Option(parsing: .unconditional, help: "Steps to run (default: until stopped). [engine] steps")
    var steps: Int?
    @Option(parsing: .unconditional, help: "Threads of the engine (default: every core this process may use). [engine] threads")
    var threads: Int?
    @Option(parsing: .unconditional, help: "Print a progress line every this many steps (default: about once a second). [engine] report_every")
    var reportEvery: Int?
    @Option(help: "Kernel variant: auto, scalar or avx2. [engine] kernel")
    var kernel: String?
    @Option(parsing: .unconditional, help: "Steps between frames written to shared memory (default 10). [engine] frame_interval")
    var frameInterval: Int?
    @Option(help: "The run directory: lock, connection.json, control.sock (default ./quiver-run). [server] run_dir")
    var runDir: String?
    @Option(parsing: .unconditional, help: "Seconds a worker may go without progress before it is killed and restarted (default 30). [server] watchdog")
    var watchdog: Double?
    @Option(parsing: .unconditional, help: "Seconds a worker gets to exit after SIGTERM before SIGKILL (default 5). [server] grace")
    var grace: Double?
    @Option(help: "Frame codec for clients: raw, lossless or quantized (default). [frames] codec")
    var codec: String?
    @Option(parsing: .unconditional, help: "Quantisation step of positions in nm (default 0.001). [frames] precision")
    var precision: Double?
    @Option(help: "Address the frame and heartbeat sockets listen on (default 127.0.0.1). [frames] address")
    var address: String?
    @Option(parsing: .unconditional, help: "TCP port of the frame socket (default 0: any free port, written to connection.json). [frames] port")
    var port: Int?
    @Option(parsing: .unconditional, help: "TCP port of the command socket (default 0: any free port, written to connection.json). [control] port")
    var controlPort: Int?
    @Option(parsing: .unconditional, help: "Seconds without a request after which a client has left (default 10). [control] session_lease")
    var sessionLease: Double?
    @Option(help: "A C plugin force field (shared library, docs/plugins.md) added to the system's forces. [forcefield] plugin")
    var plugin: String?
    @Option(help: "The options string handed to the plugin. [forcefield] plugin_options")
    var pluginOptions: String?
    @Option(help: "Lowest log level written: trace, debug, info (default), notice, warning, error, critical. [log] level")
    var logLevel: String?
    @Option(help: "Append the supervisor's and every worker's log lines to this file (default: stderr). [log] file")
    var logFile: String?
    @Option(help: "Log lines as text (default) or json (one object per line). [log] format")
    var logFormat: String?

    /// Relative paths given on the command line are relative to the working directory.
    static func absolute(_ path: String?) -> String? {
        path.map { $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0 }
    }

    /// Each flag and the key it sets.
    var settings: [(key: String, value: ConfigurationValue?)] {
        [("system.builtin", system.map(ConfigurationValue.string)), ("system.cells", cells.map(ConfigurationValue.integer)),
         ("system.seed", seed.map(ConfigurationValue.integer)), ("engine.steps", steps.map(ConfigurationValue.integer)),
         ("engine.threads", threads.map(ConfigurationValue.integer)), ("engine.report_every", reportEvery.map(ConfigurationValue.integer)),
         ("engine.kernel", kernel.map(ConfigurationValue.string)), ("engine.frame_interval", frameInterval.map(ConfigurationValue.integer)),
         ("server.run_dir", runDir.map(ConfigurationValue.string)), ("server.watchdog", watchdog.map(ConfigurationValue.number)),
         ("server.grace", grace.map(ConfigurationValue.number)), ("frames.codec", codec.map(ConfigurationValue.string)),
         ("frames.precision", precision.map(ConfigurationValue.number)), ("frames.address", address.map(ConfigurationValue.string)),
         ("frames.port", port.map(ConfigurationValue.integer)), ("control.port", controlPort.map(ConfigurationValue.integer)),
         ("control.session_lease", sessionLease.map(ConfigurationValue.number)),
         ("forcefield.plugin", Self.absolute(plugin).map(ConfigurationValue.string)),
         ("forcefield.plugin_options", pluginOptions.map(ConfigurationValue.string)),
         ("log.level", logLevel.map(ConfigurationValue.string)), ("log.file", Self.absolute(logFile).map(ConfigurationValue.string)),
         ("log.format", logFormat.map(ConfigurationValue.string))]
    }

    func apply(to c: inout RunConfiguration) throws {
        for (key, value) in settings { if let value { try c.set(key, to: value, source: "command line") } }
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

    @OptionGroup var flags: ConfigurationFlags

    /// Defaults, then the file, then the flags; validated once.
    func configuration() throws -> RunConfiguration {
        var c: RunConfiguration
        do { c = try config.map { try RunConfiguration.load(path: $0) } ?? RunConfiguration() } catch { throw ValidationError("\(error)") }
        do { try flags.apply(to: &c) } catch { throw ValidationError("\(error)") }
        return try c.checked()
    }

    func validate() throws { _ = try configuration() }

    func run() throws {
        let c = try configuration()
        try c.bootstrapLogging()
        let logger = Logger(label: "quiver")
        let setup = try c.simulationSetup()
        let resources = try ServerResources(runDirectory: c.runDirectory, segmentName: "quiver-run-\(getpid())",
                                            atomCapacity: setup.system.count, configuration: c)
        defer { resources.close() }
        let directory = resources.directory
        let supervisor: Supervisor
        do {
            // Elements from the type names (argon's "Ar": Z = 18), as for any dynamics.
            try TopologyFile.write(TopologyFile.topology(types: setup.system.types, typeNames: setup.system.typeNames), firstFrame: 0,
                                   to: directory.topologyFilePath)
            supervisor = Supervisor(runDirectory: directory, segment: resources.segment, executable: try Self.executablePath(),
                                    workers: try resources.workerSpecs(WorkerRoles.all, firstIndex: 0), grace: c.grace, logger: logger)
        } catch {
            // Nothing ran: a run directory made for this run goes again.
            resources.abandon()
            throw error
        }
        if let mode = directory.previousMode {
            logger.warning("run directory \(directory.path) had mode \(String(mode, radix: 8)), open to other users; set to 700")
        }
        if let previous = directory.tookOverFrom { logger.notice("took over \(directory.path) from a server that is gone (pid \(previous))") }
        logger.info("frames on \(resources.listeners[.frames]?.endpoint ?? "?") and \(resources.ipcEndpoints[.frames] ?? "?"); connection file \(directory.connectionFilePath)")
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

/// A worker process: started by the supervisor, never by hand (`WorkerProcess`).
struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run one worker of a server (started by the supervisor).", shouldDisplay: false)

    @Argument(help: "The role (engine, broadcaster, heartbeat, control).")
    var role: String

    @Argument(help: "The launch document (JSON) the supervisor made.")
    var launch: String

    func run() throws {
        try WorkerProcess.main(role: role, launch: launch)
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
        if let degraded = root["degraded"] as? [String], !degraded.isEmpty {
            print("degraded: \(degraded.joined(separator: ", ")) down or failing; the simulation goes on")
        }
        for w in root["workers"] as? [[String: Any]] ?? [] {
            print("  \(w["role"] ?? "?")  pid \(w["pid"] ?? 0)  \(w["state"] ?? "?")  restarts \(w["restarts"] ?? 0)")
        }
    }
}
