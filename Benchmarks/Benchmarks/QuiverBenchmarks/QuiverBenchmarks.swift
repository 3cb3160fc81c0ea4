// Micro-benchmarks of the engine's hot paths on LAMMPS's in.lj system at 20 fcc cells per edge
// (32,000 atoms): one LJ force evaluation per kernel variant, a neighbour-list build, and MD steps.
//
// Simulations are created in each benchmark's `setup` hook, outside the measured region. One sample
// (iteration) is one force evaluation, or `sim.run(steps: 10)` for the MD benchmarks; package-benchmark's
// scaling factors are powers of 1000 only, far too many inner iterations here, so it stays `.one`.
// Besides the standard metrics each benchmark reports a custom metric `atom-steps/s` (atoms x force
// evaluations or steps per second of wall clock, timed inside the sample), which normalises per step
// and compares across system sizes and with LAMMPS's numbers. CPU time comes from /proc at 10 ms
// resolution, so it is coarse for the millisecond-scale force samples.

import Benchmark
import QuiverEngine

/// Cells per edge of the in.lj system: 4 * 20^3 = 32,000 atoms.
let cells = 20

/// MD steps per sample of the MD benchmarks.
let mdSteps = 10

let atomStepsPerSecond = BenchmarkMetric.custom("atom-steps/s", polarity: .prefersLarger, useScalingFactor: false)

/// A simulation of the in.lj system plus its LJ force field (for `positionsReplaced` and statistics).
final class LJBench {
    let simulation: Simulation
    let lennardJones: LennardJones

    init(threads: Int?, kernel: KernelVariant, checkRebuilds: Bool = false) throws {
        let setup = try BuiltinSystems.lennardJonesBench(cells: cells)
        lennardJones = LennardJones(setup.lennardJones)
        simulation = try Simulation(system: setup.system, forceFields: [lennardJones], integrator: setup.integrator,
                                    options: SimulationOptions(threads: threads, kernel: kernel))
        if checkRebuilds { try self.checkRebuilds() }
    }

    /// Checks, once and outside the measurement, that a plain evaluation reuses the neighbour list
    /// and that `positionsReplaced()` makes the next one rebuild it, so the benchmarks time what
    /// their names say.
    func checkRebuilds() throws {
        let before = lennardJones.statistics.rebuilds
        try simulation.evaluateForces()
        guard lennardJones.statistics.rebuilds == before else { throw BenchError("evaluateForces() rebuilt the neighbour list") }
        lennardJones.positionsReplaced()
        try simulation.evaluateForces()
        guard lennardJones.statistics.rebuilds == before + 1 else { throw BenchError("positionsReplaced() did not cause one rebuild") }
    }

    var atoms: Int { simulation.count }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body` once, timed, and records atoms x `steps` per second as the custom metric.
func timed(_ benchmark: Benchmark, atoms: Int, steps: Int, _ body: () throws -> Void) rethrows {
    let clock = ContinuousClock()
    let start = clock.now
    try body()
    let elapsed = start.duration(to: clock.now)
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    if seconds > 0 { benchmark.measurement(atomStepsPerSecond, Int((Double(atoms * steps) / seconds).rounded())) }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .cpuTotal, .peakMemoryResident, atomStepsPerSecond],
        timeUnits: .microseconds,
        warmupIterations: 1,
        maxDuration: .seconds(2),
        maxIterations: 200
    )

    // 1. One force evaluation, neighbour list reused (no atom moves, so no rebuild), one thread.
    var kernels: [KernelVariant] = [.scalar]
    if KernelVariant.avx2.isSupported { kernels.insert(.avx2, at: 0) }
    for kernel in kernels {
        Benchmark("LJ forces 32k (\(kernel.rawValue))") { benchmark, bench in
            try timed(benchmark, atoms: bench.atoms, steps: 1) {
                try bench.simulation.evaluateForces()
            }
        } setup: {
            try LJBench(threads: 1, kernel: kernel, checkRebuilds: true)
        }
    }

    // 2. Neighbour-list build plus one force evaluation (best kernel, one thread) per sample; less
    //    "LJ forces 32k" of the same kernel, this is the cost of a build.
    Benchmark("Neighbour list build 32k (\(KernelVariant.best.rawValue))") { benchmark, bench in
        bench.lennardJones.positionsReplaced()
        try timed(benchmark, atoms: bench.atoms, steps: 1) {
            try bench.simulation.evaluateForces()
        }
    } setup: {
        try LJBench(threads: 1, kernel: .auto, checkRebuilds: true)
    }

    // 3. Velocity-Verlet MD steps (kick, drift, forces with rebuilds as atoms move, kick), best kernel,
    //    `sim.run(steps: 10)` per sample, so the time metrics are per 10 steps. The system keeps
    //    evolving across samples, as in a real run.
    for (label, threads) in [("1 thread", 1), ("all threads", nil as Int?)] {
        Benchmark("MD step 32k, \(label)", configuration: .init(timeUnits: .milliseconds, maxDuration: .seconds(3), maxIterations: 100)) { benchmark, bench in
            try timed(benchmark, atoms: bench.atoms, steps: mdSteps) {
                try bench.simulation.run(steps: mdSteps)
            }
        } setup: {
            try LJBench(threads: threads, kernel: .auto)
        }
    }
}
