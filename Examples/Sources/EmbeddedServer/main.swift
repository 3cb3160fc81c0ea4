// embedded-server: a program that embeds Quiver.
//
// It builds its own simulation (liquid argon plus a custom Swift force field, PositionRestraints),
// serves it with a Session (the broadcaster, heartbeat and control workers run as processes of the
// quiver executable), watches its own frames with the client library, pulls on a few atoms with a
// signed command, closes the session, and prints a JSON summary on stdout. With --plugin it first
// checks that the C plugin (libLJPlugin.so from this package) computes the built-in LJ forces.
// Exit status 0 when every check held, 1 otherwise (the reason on stderr).
//
//     swift build --package-path Examples
//     QUIVER_EXECUTABLE=$PWD/.build/release/quiver Examples/.build/debug/embedded-server \
//         --plugin Examples/.build/debug/libLJPlugin.so
import Foundation
import QuiverClient
import QuiverControl
import QuiverEngine
import QuiverServer
import QuiverWire
import Restraints

struct Arguments {
    var frames = 40
    var cells = 4
    var plugin: String?
    var timeout = 60.0

    init(_ argv: [String]) throws {
        var i = 1
        func value() throws -> String {
            i += 1
            guard i < argv.count else { throw ExampleError("\(argv[i - 1]) needs a value") }
            return argv[i]
        }
        while i < argv.count {
            switch argv[i] {
            case "--frames": frames = Int(try value()) ?? 0
            case "--cells": cells = Int(try value()) ?? 0
            case "--plugin": plugin = try value()
            case "--timeout": timeout = Double(try value()) ?? 0
            case "--help", "-h":
                print("usage: embedded-server [--frames N (40)] [--cells C (4)] [--plugin libLJPlugin.so] [--timeout S (60)]")
                exit(0)
            default: throw ExampleError("unknown argument '\(argv[i])' (see --help)")
            }
            i += 1
        }
        guard frames >= 10, cells >= 3, timeout > 0 else { throw ExampleError("--frames must be >= 10, --cells >= 3, --timeout > 0") }
    }
}

struct ExampleError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The client side, on its own thread: frames in, one pull out.
final class Watcher: @unchecked Sendable {
    private let lock = NSLock()
    private var _done = false
    private(set) var frames = 0
    private(set) var firstIndex: UInt64?
    private(set) var lastIndex: UInt64 = 0
    private(set) var ordered = true
    private(set) var topologyAtoms = 0
    private(set) var restrainedMax = 0.0
    private(set) var freeSquared = 0.0
    private(set) var freeSamples = 0
    private(set) var userForcesSeen = false
    private(set) var pullWork = 0.0
    private(set) var failure: String?

    private var _stop = false
    var done: Bool { lock.lock(); defer { lock.unlock() }; return _done }
    /// Asks the thread to finish (the session stopped).
    func stop() { lock.lock(); _stop = true; lock.unlock() }
    private var stopping: Bool { lock.lock(); defer { lock.unlock() }; return _stop }

    func start(connectionFile: String, connection: ConnectionInfo, wanted: Int, restrained: [Int], reference: [SIMD3<Double>],
               start: [SIMD3<Float>], pulled: [Int], box: SIMD3<Double>) {
        Thread { [self] in
            defer { lock.lock(); _done = true; lock.unlock() }
            do {
                let client = try QuiverClient(connectionFile: connectionFile)
                let commands = try CommandClient(endpoint: connection.endpoints["control"] ?? "", keyHex: connection.key, clientID: "embedded-example")
                var lastStep: Int64 = -1
                var pulling = false
                let deadline = Date().addingTimeInterval(60)
                while frames < wanted && Date() < deadline && !stopping {
                    guard let f = try client.nextFrame(timeout: 0.2)?.frame else { continue }
                    frames += 1
                    if firstIndex == nil { firstIndex = f.index }
                    if f.index <= lastIndex && frames > 1 || f.step <= lastStep { ordered = false }
                    lastIndex = f.index
                    lastStep = f.step
                    topologyAtoms = client.topology?.atomCount ?? 0
                    func displacement(_ i: Int, from r0: SIMD3<Double>) -> Double {
                        var d = SIMD3(Double(f.positions.x[i]), Double(f.positions.y[i]), Double(f.positions.z[i])) - r0
                        d -= box * (d / box).rounded(.toNearestOrEven)
                        return (d * d).sum().squareRoot()
                    }
                    for (n, i) in restrained.enumerated() { restrainedMax = max(restrainedMax, displacement(i, from: reference[n])) }
                    for i in 0..<f.atomCount where !restrained.contains(i) && !pulled.contains(i) {
                        let d = displacement(i, from: SIMD3<Double>(start[i]))
                        freeSquared += d * d
                        freeSamples += 1
                    }
                    // Steer: a spring on a few atoms from the 5th frame, removed once frames show it.
                    if frames == 5 {
                        let reply = try commands.send("interaction.set", args: [
                            "id": "tug", "type": "spring", "particles": .array(pulled.map { .number(Double($0)) }),
                            "position": .array([.number(box.x / 2), .number(box.y / 2), .number(box.z / 2)]), "scale": 200,
                        ])
                        guard reply.isOK else { throw ExampleError("interaction.set refused: \(reply)") }
                        pulling = true
                    }
                    if pulling, let forces = f.userForces, Set(forces.map { Int($0.index) }) == Set(pulled) {
                        userForcesSeen = true
                        pullWork = f.userWork ?? 0
                        if frames >= wanted / 2 {
                            guard try commands.send("interaction.remove", args: ["id": "tug"]).isOK else { throw ExampleError("interaction.remove refused") }
                            pulling = false
                        }
                    }
                }
                // Leaving while the session still runs: `bye` ends this client's interactions
                // (the engine answers it). When the session stopped, close ends everything.
                if !stopping { _ = try? commands.send("bye") }
            } catch {
                failure = "\(error)"
            }
        }.start()
    }
}

func main() throws -> Int32 {
    let args = try Arguments(CommandLine.arguments)
    var summary: [String: Any] = [:]
    var problems: [String] = []

    // The dynamics: liquid argon plus a custom force field in Swift.
    let setup = try BuiltinSystems.argonLiquid(cells: args.cells, seed: 11)
    let restrained = Array(0..<8)
    let restraints = PositionRestraints(atoms: restrained, k: 20_000)
    let simulation = try setup.makeSimulation(options: SimulationOptions(threads: 1), extraForceFields: [restraints])
    let start = simulation.positions()

    // The C plugin computes what the built-in LJ computes.
    if let plugin = args.plugin {
        let lj = setup.lennardJones
        let options = "epsilon=\(lj.epsilon[0]) sigma=\(lj.sigma[0]) cutoff=\(lj.cutoff) shift=\(lj.shift ? 1 : 0)"
        let builtin = try Simulation(system: setup.system, forceFields: [LennardJones(lj)], integrator: setup.integrator, options: SimulationOptions(threads: 1))
        let viaPlugin = try Simulation(system: setup.system, forceFields: [try PluginForceField(path: plugin, options: options)],
                                       integrator: setup.integrator, options: SimulationOptions(threads: 1))
        // The fcc start has (nearly) no forces by symmetry: compare on a configuration 50 steps on.
        try builtin.run(steps: 50)
        try viaPlugin.setPositions(builtin.positions())
        try builtin.evaluateForces(energy: true)
        try viaPlugin.evaluateForces(energy: true)
        let a = builtin.forces(), b = viaPlugin.forces()
        let norm = a.map { Double(($0 * $0).sum()) }.reduce(0, +).squareRoot()
        let error = zip(a, b).map { Double((($0 - $1) * ($0 - $1)).sum()) }.reduce(0, +).squareRoot() / max(norm, 1e-30)
        let (ea, eb) = (try builtin.energies().potential, try viaPlugin.energies().potential)
        summary["plugin_force_relative_error"] = error
        summary["plugin_energy_difference"] = abs(ea - eb)
        if error > 1e-4 || abs(ea - eb) > 1e-5 * abs(ea) { problems.append("the plugin's forces differ from the built-in LJ: relative error \(error), energy \(ea) vs \(eb)") }
    }

    // The session: this program is the engine; the workers are processes of the quiver executable.
    var options = SessionOptions()
    options.frameInterval = 10
    options.server.grace = 2
    let session = try Session(simulation, options: options)
    let directory = session.runDirectory
    FileHandle.standardError.write(Data("embedded-server: serving \(simulation.count) atoms; frames on port \(session.port), commands on port \(session.controlPort); connection file \(session.connectionFile)\n".utf8))
    let status = try JSONSerialization.jsonObject(with: Data(try session.status().utf8)) as? [String: Any]
    let pids = (status?["workers"] as? [[String: Any]] ?? []).compactMap { $0["pid"] as? Int }.filter { $0 != Int(getpid()) }

    let watcher = Watcher()
    let box = SIMD3(simulation.box.x, simulation.box.y, simulation.box.z)
    watcher.start(connectionFile: session.connectionFile, connection: session.connection, wanted: args.frames, restrained: restrained,
                  reference: restraints.reference, start: start, pulled: [100, 101, 102, 103], box: box)
    let deadline = Date().addingTimeInterval(args.timeout)
    let stop = try session.run(until: { watcher.done || Date() > deadline })
    watcher.stop()
    while !watcher.done { usleep(10_000) }
    session.close()

    let freeRMS = watcher.freeSamples > 0 ? (watcher.freeSquared / Double(watcher.freeSamples)).squareRoot() : 0
    summary["stop"] = "\(stop)"
    summary["atoms"] = simulation.count
    summary["steps"] = simulation.step
    summary["frames"] = watcher.frames
    summary["frames_ordered"] = watcher.ordered
    summary["first_index"] = Int(watcher.firstIndex ?? 0)
    summary["last_index"] = Int(watcher.lastIndex)
    summary["topology_atoms"] = watcher.topologyAtoms
    summary["restrained_max_displacement_nm"] = watcher.restrainedMax
    summary["free_rms_displacement_nm"] = freeRMS
    summary["user_forces_seen"] = watcher.userForcesSeen
    summary["pull_work_kj_mol"] = watcher.pullWork
    summary["worker_pids"] = pids
    summary["run_directory_removed"] = !FileManager.default.fileExists(atPath: directory)
    if let failure = watcher.failure { problems.append("client: \(failure)") }
    if watcher.frames < args.frames { problems.append("received \(watcher.frames) of \(args.frames) frames") }
    if !watcher.ordered { problems.append("frame index or step went back") }
    if watcher.topologyAtoms != simulation.count { problems.append("topology of \(watcher.topologyAtoms) atoms") }
    if !watcher.userForcesSeen { problems.append("frames never carried the pull's user forces") }
    if summary["run_directory_removed"] as? Bool != true { problems.append("\(directory) is left after close") }
    let data = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
    for p in problems { FileHandle.standardError.write(Data("embedded-server: \(p)\n".utf8)) }
    return problems.isEmpty ? 0 : 1
}

do {
    exit(try main())
} catch {
    FileHandle.standardError.write(Data("embedded-server: \(error)\n".utf8))
    exit(1)
}
