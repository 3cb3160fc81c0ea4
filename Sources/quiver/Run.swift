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
    /// Validates, including what only this machine can tell (the kernel variant).
    func checked() throws -> RunConfiguration {
        do { try validate() } catch { throw ValidationError("\(error)") }
        guard let variant = KernelVariant(rawValue: kernel), variant.isSupported else {
            throw ValidationError("--kernel ([engine] kernel) '\(kernel)' is not supported on this CPU (avx2 needs AVX2 and FMA)")
        }
        return self
    }

    var kernelVariant: KernelVariant { KernelVariant(rawValue: kernel) ?? .auto }

    func simulationSetup() throws -> SimulationSetup {
        system == "lj" ? try BuiltinSystems.lennardJonesBench(cells: cells, seed: seed) : try BuiltinSystems.argonLiquid(cells: cells, seed: seed)
    }

    /// The settings `quiver run` shares with an embedding session.
    var serverSettings: ServerSettings {
        var s = ServerSettings()
        s.address = address
        s.port = port
        s.controlPort = controlPort
        s.codec = codec
        s.precision = precision
        s.watchdog = watchdog
        s.grace = grace
        s.sessionLease = sessionLease
        return s
    }

    var wireCodec: Codec {
        switch codec {
        case "raw": return .raw
        case "lossless": return .lossless
        default: return .quantized(precision: precision)
        }
    }

    /// The simulation settings as flags, for the engine worker.
    var simulationArguments: [String] {
        var a = ["--system", system, "--cells", "\(cells)", "--seed", "\(seed)", "--kernel", kernel, "--frame-interval", "\(frameInterval)"]
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
                                            atomCapacity: setup.system.count, settings: c.serverSettings)
        defer { resources.close() }
        let directory = resources.directory
        // Elements from the type names (argon's "Ar": Z = 18), as for any dynamics.
        try TopologyFile.write(TopologyFile.topology(types: setup.system.types, typeNames: setup.system.typeNames), firstFrame: 0,
                               to: directory.topologyFilePath)
        let executable = try Self.executablePath()
        let engine = WorkerSpec(
            role: "engine",
            arguments: resources.workerArguments(role: "engine", index: 0)
                + ["--posted-fd", "3", "--done-fd", "4", "--frame-fd", "5"] + c.pluginArguments + c.simulationArguments,
            watchdog: c.watchdog, exitEndsRun: true, passedDescriptors: [resources.posted, resources.done, resources.published])
        let workers = [engine] + resources.serviceWorkers(firstIndex: 1)
        let supervisor = Supervisor(runDirectory: directory, segment: resources.segment, executable: executable, workers: workers,
                                    grace: c.grace, log: Log.line)
        if let previous = directory.tookOverFrom { Log.line("took over \(directory.path) from a server that is gone (pid \(previous))") }
        Log.line("frames on \(resources.frames.endpoint) and \(resources.framesIPC); connection file \(directory.connectionFilePath)")
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
    @Option var tcpEndpoint: String?
    @Option var listenFd: Int32?
    @Option var ipcEndpoint: String?
    @Option var codec: String?
    @Option var precision: Double?
    @Option var postedFd: Int32?
    @Option var doneFd: Int32?
    @Option var frameFd: Int32?
    @Option var stateTcpEndpoint: String?
    @Option var stateListenFd: Int32?
    @Option var stateIpcEndpoint: String?
    @Option var connectionFile: String?
    @Option var topologyFile: String?
    @Option var sessionLease: Double?
    @Option var plugin: String?
    @Option var pluginOptions: String?

    func run() throws {
        qv_signal_install_stop_handlers()
        guard qv_os_die_with_parent(SIGTERM, supervisorPid) == 0 else { throw ExitCode(2) }
        let fault = Fault.injected(into: role)
        if fault == .exit { throw ExitCode(3) }
        if fault == .ignoreTerm { signal(SIGTERM, SIG_IGN) }
        var c = RunConfiguration()
        simulation.apply(to: &c)
        c = try c.checked()
        switch role {
        case "engine":
            let options = EngineWorkerOptions(
                segment: segment, index: index, frameInterval: c.frameInterval, totalSteps: c.steps, reportEvery: c.reportEvery,
                simulation: SimulationOptions(threads: c.threads, seed: c.seed, kernel: c.kernelVariant))
            let extra: [any ForceField] = try plugin.map { [try PluginForceField(path: $0, options: pluginOptions ?? "")] } ?? []
            _ = try EngineWorker.run(setup: try c.simulationSetup(), options: options, fault: fault, extraForceFields: extra,
                                     postedFD: postedFd, doneFD: doneFd, frameFD: frameFd)
        case "control":
            guard let tcpEndpoint, let ipcEndpoint, let stateTcpEndpoint, let stateIpcEndpoint, let connectionFile, let topologyFile else {
                throw ValidationError("control needs its endpoints, --connection-file and --topology-file")
            }
            if fault == .hang { while qv_signal_stop_requested() == 0 { usleep(100_000) }; return }
            let info = try ConnectionInfo.read(from: connectionFile)
            var o = ControlWorkerOptions(segment: segment, index: index, tcpEndpoint: tcpEndpoint, listenFD: listenFd, ipcEndpoint: ipcEndpoint,
                                         stateTCPEndpoint: stateTcpEndpoint, stateListenFD: stateListenFd, stateIPCEndpoint: stateIpcEndpoint,
                                         keyHex: info.key, topologyFile: topologyFile, postedFD: postedFd, doneFD: doneFd)
            if let sessionLease { o.sessionLease = sessionLease }
            try ControlWorker.run(o)
        case "broadcaster", "heartbeat":
            guard let tcpEndpoint, let ipcEndpoint else { throw ValidationError("\(role) needs --tcp-endpoint and --ipc-endpoint") }
            if fault == .hang { while qv_signal_stop_requested() == 0 { usleep(100_000) }; return }
            if role == "heartbeat" {
                try Heartbeat.run(segmentName: segment, index: index, tcpEndpoint: tcpEndpoint, listenFD: listenFd, ipcEndpoint: ipcEndpoint)
            } else {
                if let codec { c.codec = codec }
                if let precision { c.precision = precision }
                c = try c.checked()
                guard let topologyFile else { throw ValidationError("broadcaster needs --topology-file") }
                try Broadcaster.run(BroadcasterOptions(
                    segment: segment, index: index, tcpEndpoint: tcpEndpoint, listenFD: listenFd, ipcEndpoint: ipcEndpoint,
                    codec: c.wireCodec, topologyFile: topologyFile, frameFD: frameFd))
            }
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
