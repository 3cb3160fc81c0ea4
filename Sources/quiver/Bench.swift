import ArgumentParser
import Foundation
import QuiverModel
import QuiverEngine

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

extension KernelVariant: ExpressibleByArgument {}

/// A comma-separated list of positive integers ("10,20,40").
struct IntList: ExpressibleByArgument {
    let values: [Int]
    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { return nil }
        values = parts.map { $0! }
    }
    var defaultValueDescription: String { values.map(String.init).joined(separator: ",") }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a standard system and report atom-steps/s, ns/day, energies and memory.",
        discussion: """
        `quiver bench lj` is LAMMPS bench/in.lj (fcc at density 0.8442, T* 1.44, cutoff 2.5, skin 0.3, \
        dt 0.005, NVE) at --cells^3 unit cells (4 cells^3 atoms). Setup is not timed; the timed loop is \
        --steps steps, as LAMMPS's "Loop time". Lists in --cells and --threads run every combination.
        """)

    enum SystemName: String, ExpressibleByArgument, CaseIterable { case lj, argon }

    @Argument(help: "The system to run: \(SystemName.allCases.map(\.rawValue).joined(separator: ", ")).")
    var system: SystemName

    @Option(help: "Unit cells per edge, or a comma-separated list (4 cells^3 atoms).")
    var cells: IntList = IntList(argument: "20")!

    @Option(help: "Timed steps per run.")
    var steps: Int = 100

    @Option(help: "Threads, or a comma-separated list (default: every core this process may use).")
    var threads: IntList?

    @Option(help: "Kernel variant: \(KernelVariant.allCases.map(\.rawValue).joined(separator: ", ")).")
    var kernel: KernelVariant = .auto

    @Option(help: "Velocity seed.")
    var seed: UInt64 = 87287

    @Option(help: "Output: table or json (one object per run, one per line).")
    var format: OutputFormat = .table

    @Option(help: "Spring interactions (interactive forces) active during the timed run, each on its own 10 atoms, or a comma-separated list (0,10 measures the baseline and the cost in one call).")
    var interactions: IntList = IntList(argument: "0")!

    func validate() throws {
        guard cells.values.allSatisfy({ $0 >= 1 && $0 <= 200 }) else { throw ValidationError("--cells must be between 1 and 200") }
        guard steps >= 1 && steps <= 100_000_000 else { throw ValidationError("--steps must be between 1 and 10^8") }
        if let threads { guard threads.values.allSatisfy({ $0 >= 1 && $0 <= 1024 }) else { throw ValidationError("--threads must be between 1 and 1024") } }
        guard interactions.values.allSatisfy({ $0 >= 0 && $0 <= 100_000 }) else { throw ValidationError("--interactions must be between 0 and 100000") }
        for c in cells.values {
            let atoms = 4 * c * c * c
            if let n = interactions.values.first(where: { $0 * BenchResult.atomsPerInteraction > atoms }) {
                throw ValidationError("--interactions \(n) needs \(n * BenchResult.atomsPerInteraction) atoms, --cells \(c) has \(atoms)")
            }
        }
        guard kernel.isSupported else { throw ValidationError("--kernel \(kernel.rawValue) is not supported on this CPU (it needs AVX2 and FMA)") }
    }

    func run() throws {
        let threadList = threads?.values ?? [Machine.availableCores]
        var results: [BenchResult] = []
        if format == .table { print(BenchResult.tableHeader) }
        for c in cells.values {
            for t in threadList {
                for n in interactions.values {
                    let result = try BenchResult.measure(system: system, cells: c, steps: steps, threads: t, kernel: kernel, seed: seed,
                                                         interactions: n)
                    results.append(result)
                    switch format {
                    case .json: print(result.json)
                    case .table: print(result.tableRow)
                    }
                    fflush(nil)
                }
            }
        }
    }
}

struct BenchResult {
    let system: String
    let atoms: Int
    let steps: Int
    let threads: Int
    let kernel: String
    let setupSeconds: Double
    let seconds: Double
    let timestep: Double
    let epairStep0: Double
    let etotalStep0: Double
    let etotalEnd: Double
    let temperatureStep0: Double
    let temperatureEnd: Double
    let rebuilds: Int
    let neighborBytes: Int
    let stateBytes: Int
    let peakRSS: Int
    let interactions: Int

    var atomStepsPerSecond: Double { Double(atoms) * Double(steps) / seconds }
    var nsPerDay: Double { Double(steps) * timestep / 1000 / seconds * 86400 }

    /// Atoms per benchmark interaction (disjoint groups of consecutive atoms).
    static let atomsPerInteraction = 10

    static func measure(system: Bench.SystemName, cells: Int, steps: Int, threads: Int, kernel: KernelVariant, seed: UInt64,
                        interactions: Int = 0) throws -> BenchResult {
        let setupStart = SystemClock.monotonicSeconds
        let setup: SimulationSetup
        switch system {
        case .lj: setup = try BuiltinSystems.lennardJonesBench(cells: cells, seed: seed)
        case .argon: setup = try BuiltinSystems.argonLiquid(cells: cells, seed: seed)
        }
        let lj = LennardJones(setup.lennardJones)
        let user = InteractiveForces()
        let sim = try Simulation(system: setup.system, forceFields: interactions > 0 ? [lj, user] : [lj], integrator: setup.integrator,
                                 options: SimulationOptions(threads: threads, seed: seed, kernel: kernel))
        try addSprings(interactions, to: user, simulation: sim, lennardJones: setup.lennardJones)
        let e0 = try sim.energies()
        let setupSeconds = elapsedSeconds(since: setupStart)
        let start = SystemClock.monotonicSeconds
        try sim.run(steps: steps, energy: true)
        let elapsed = elapsedSeconds(since: start)
        let e1 = try sim.energies()
        let n = Double(sim.count)
        return BenchResult(
            system: setup.name, atoms: sim.count, steps: steps, threads: threads, kernel: sim.kernel.rawValue,
            setupSeconds: setupSeconds, seconds: elapsed, timestep: sim.timestep,
            epairStep0: e0.potential / n, etotalStep0: e0.total / n, etotalEnd: e1.total / n,
            temperatureStep0: e0.temperature, temperatureEnd: e1.temperature,
            rebuilds: lj.statistics.rebuilds, neighborBytes: lj.statistics.bytes,
            stateBytes: sim.count * (12 * 4 + 3 * 4), peakRSS: ResourceUsage.peakResidentBytes, interactions: interactions)
    }

    /// `count` springs, interaction k on atoms 10k ..< 10k + 10, each pulling its group's centre of
    /// mass toward a point half a sigma away (stiffness 10 eps / sigma^2): a steady, modest pull.
    static func addSprings(_ count: Int, to user: InteractiveForces, simulation sim: Simulation, lennardJones: LennardJones.Parameters) throws {
        guard count > 0 else { return }
        let positions = sim.unwrappedPositions()
        let box = SIMD3<Double>(sim.box.x, sim.box.y, sim.box.z)
        let sigma = lennardJones.sigma[0], epsilon = lennardJones.epsilon[0]
        for k in 0..<count {
            let group = Array(k * atomsPerInteraction ..< (k + 1) * atomsPerInteraction)
            let first = positions[group[0]]
            var sum = SIMD3<Double>.zero
            for i in group {
                var d = positions[i] - first
                d -= box * (d / box).rounded(.toNearestOrEven)
                sum += d
            }
            let centre = first + sum / Double(group.count)
            try user.set(Interaction(id: "bench-\(k)", kind: .spring, position: centre + SIMD3(0.5 * sigma, 0, 0), particles: group,
                                     scale: 10 * epsilon / (sigma * sigma)))
        }
    }

    static let tableHeader = [
        pad("system", 7), pad("atoms", 9), pad("threads", 8), pad("kernel", 7), pad("steps", 7), pad("seconds", 9),
        pad("Matom-steps/s", 14), pad("ns/day", 10), pad("Epair/N step0", 14), pad("Etot/N drift", 13), pad("rebuilds", 9),
        pad("peak RSS MiB", 12), pad("interactions", 12),
    ].joined(separator: " ")

    var tableRow: String {
        [
            BenchResult.pad(system, 7), BenchResult.pad("\(atoms)", 9), BenchResult.pad("\(threads)", 8), BenchResult.pad(kernel, 7),
            BenchResult.pad("\(steps)", 7), BenchResult.pad(String(format: "%.3f", seconds), 9),
            BenchResult.pad(String(format: "%.3f", atomStepsPerSecond / 1e6), 14), BenchResult.pad(String(format: "%.1f", nsPerDay), 10),
            BenchResult.pad(String(format: "%.7f", epairStep0), 14), BenchResult.pad(String(format: "%.2e", etotalEnd - etotalStep0), 13),
            BenchResult.pad("\(rebuilds)", 9), BenchResult.pad(String(format: "%.1f", Double(peakRSS) / 1048576), 12),
            BenchResult.pad("\(interactions)", 12),
        ].joined(separator: " ")
    }

    var json: String {
        let fields: [(String, String)] = [
            ("system", "\"\(system)\""), ("atoms", "\(atoms)"), ("steps", "\(steps)"), ("threads", "\(threads)"),
            ("kernel", "\"\(kernel)\""), ("seconds", num(seconds)), ("setup_seconds", num(setupSeconds)),
            ("atom_steps_per_second", num(atomStepsPerSecond)), ("ns_per_day", num(nsPerDay)), ("timestep_ps", num(timestep)),
            ("epair_per_atom_step0", num(epairStep0)), ("etotal_per_atom_step0", num(etotalStep0)),
            ("etotal_per_atom_end", num(etotalEnd)), ("energy_drift_per_atom", num(etotalEnd - etotalStep0)),
            ("temperature_step0", num(temperatureStep0)), ("temperature_end", num(temperatureEnd)),
            ("neighbor_rebuilds", "\(rebuilds)"), ("neighbor_bytes", "\(neighborBytes)"), ("state_bytes", "\(stateBytes)"),
            ("peak_rss_bytes", "\(peakRSS)"), ("interactions", "\(interactions)"),
        ]
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    private func num(_ v: Double) -> String { v.isFinite ? String(format: "%.10g", v) : "null" }
    static func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
}

func elapsedSeconds(since start: Double) -> Double {
    SystemClock.monotonicSeconds - start
}

enum ResourceUsage {
    /// Peak resident set size of this process so far, in bytes.
    static var peakResidentBytes: Int {
        var usage = rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return 0 }
        return Int(usage.ru_maxrss) * 1024
    }
}
