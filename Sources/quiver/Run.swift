import ArgumentParser
import CQuiverCore
import Foundation
import QuiverEngine

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a simulation (default: the embedded liquid-argon system) and print progress.",
        discussion: "Stops after --steps steps, or on SIGINT/SIGTERM (exit 0 after a final line).")

    @Option(help: "System: argon (the default, 4000 atoms of liquid argon under Langevin at 94.4 K) or lj (LAMMPS in.lj).")
    var system: Bench.SystemName = .argon

    @Option(help: "fcc unit cells per edge (4 cells^3 atoms).")
    var cells: Int = 10

    @Option(help: "Steps to run (default: until stopped).")
    var steps: Int?

    @Option(help: "Threads (default: every core this process may use).")
    var threads: Int?

    @Option(help: "Seed for velocities and the thermostat.")
    var seed: UInt64 = 2024

    @Option(help: "Print a progress line every this many steps (default: about once a second).")
    var reportEvery: Int?

    @Option(help: "Kernel variant: auto, scalar or avx2.")
    var kernel: KernelVariant = .auto

    func validate() throws {
        guard cells >= 1 && cells <= 200 else { throw ValidationError("--cells must be between 1 and 200") }
        if let steps { guard steps >= 0 else { throw ValidationError("--steps must be >= 0") } }
        if let threads { guard threads >= 1 && threads <= 1024 else { throw ValidationError("--threads must be between 1 and 1024") } }
        if let reportEvery { guard reportEvery >= 1 else { throw ValidationError("--report-every must be >= 1") } }
        guard kernel.isSupported else { throw ValidationError("--kernel \(kernel.rawValue) is not supported on this CPU (it needs AVX2 and FMA)") }
    }

    func run() throws {
        qv_signal_install_stop_handlers()
        let setup: SimulationSetup
        switch system {
        case .argon: setup = try BuiltinSystems.argonLiquid(cells: cells, seed: seed)
        case .lj: setup = try BuiltinSystems.lennardJonesBench(cells: cells, seed: seed)
        }
        let sim = try setup.makeSimulation(options: SimulationOptions(threads: threads, seed: seed, kernel: kernel))
        let integrator: String
        switch sim.integrator {
        case .velocityVerlet(let dt): integrator = "velocity Verlet, dt \(dt) ps"
        case .langevin(let dt, let t, let g): integrator = "Langevin \(t) K, friction \(g)/ps, dt \(dt) ps"
        }
        print("quiver run: system \(setup.name), \(sim.count) atoms, box \(fmt(sim.box.x, 3)) x \(fmt(sim.box.y, 3)) x \(fmt(sim.box.z, 3)) nm, \(integrator), \(sim.threads) threads, \(sim.kernel.rawValue) kernel")
        let progress = Progress(simulation: sim, totalSteps: steps)
        try progress.report()
        let wallStart = DispatchTime.now()
        var lastReport = DispatchTime.now()
        var stopSignal: Int32 = 0
        while steps.map({ sim.step < $0 }) ?? true {
            let remaining = steps.map { $0 - sim.step } ?? Int.max
            var chunk = min(10, remaining)
            if let every = reportEvery { chunk = min(chunk, every - sim.step % every) }
            try sim.run(steps: chunk)
            stopSignal = qv_signal_stop_requested()
            if stopSignal != 0 { break }
            let due = reportEvery.map { sim.step % $0 == 0 } ?? (elapsedSeconds(since: lastReport) >= 1.0)
            if due {
                try progress.report()
                lastReport = DispatchTime.now()
            }
        }
        if progress.lastStep != sim.step { try progress.report() }
        let elapsed = elapsedSeconds(since: wallStart)
        let taken = sim.step
        let rate = elapsed > 0 ? Double(taken) * Double(sim.count) / elapsed : 0
        let nsPerDay = elapsed > 0 ? Double(taken) * sim.timestep / 1000 / elapsed * 86400 : 0
        if stopSignal != 0 {
            print("stopped by \(stopSignal == SIGINT ? "SIGINT" : "SIGTERM") at step \(taken)")
        }
        print("done: \(taken) steps in \(fmt(elapsed, 2)) s, \(fmt(nsPerDay, 1)) ns/day, \(fmt(rate / 1e6, 3)) M atom-steps/s")
    }
}

/// Prints one progress line per call: step, time, temperature, energies, ns/day over the last
/// interval, and an ETA when the step count is known.
final class Progress {
    let sim: Simulation
    let totalSteps: Int?
    private(set) var lastStep = -1
    private var lastTime = DispatchTime.now()

    init(simulation: Simulation, totalSteps: Int?) {
        sim = simulation
        self.totalSteps = totalSteps
    }

    func report() throws {
        let e = try sim.energies()
        let now = DispatchTime.now()
        let dt = Double(now.uptimeNanoseconds - lastTime.uptimeNanoseconds) / 1e9
        let steps = lastStep < 0 ? 0 : sim.step - lastStep
        var line = "step \(sim.step)  time \(fmt(sim.time, 3)) ps  T \(fmt(e.temperature, 2)) K  PE \(fmt(e.potential, 3))  KE \(fmt(e.kinetic, 3))  E \(fmt(e.total, 3)) kJ/mol"
        if steps > 0 && dt > 0 {
            let nsPerDay = Double(steps) * sim.timestep / 1000 / dt * 86400
            line += "  \(fmt(nsPerDay, 1)) ns/day"
            if let total = totalSteps {
                let eta = Double(total - sim.step) * dt / Double(steps)
                line += "  ETA \(clock(eta))"
            }
        }
        print(line)
        fflush(nil)
        lastStep = sim.step
        lastTime = now
    }
}

func fmt(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }

func clock(_ seconds: Double) -> String {
    let s = max(0, Int(seconds.rounded()))
    return String(format: "%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60)
}
