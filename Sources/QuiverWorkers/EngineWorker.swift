import CQuiverOS
import Foundation
import QuiverEngine
import QuiverSharedMemory

#if canImport(Glibc)
import Glibc
#endif

/// Settings of the engine worker.
public struct EngineWorkerOptions: Sendable {
    /// The run's shared-memory segment (in /dev/shm).
    public var segment: String
    /// This worker's entry in the status table.
    public var index: Int
    /// Steps between frames published into the ring.
    public var frameInterval: Int
    /// Stop (successfully) at this step; nil: run until stopped.
    public var totalSteps: Int?
    /// Progress line every this many steps; nil: about once a second.
    public var reportEvery: Int?
    public var simulation: SimulationOptions

    public init(segment: String, index: Int, frameInterval: Int, totalSteps: Int?, reportEvery: Int?, simulation: SimulationOptions) {
        self.segment = segment
        self.index = index
        self.frameInterval = frameInterval
        self.totalSteps = totalSteps
        self.reportEvery = reportEvery
        self.simulation = simulation
    }
}

/// The engine process: steps the dynamics, writes a snapshot and then a frame into shared memory
/// every `frameInterval` steps (so a respawned engine never publishes a step older than one
/// already seen), advances its progress counter, and prints progress lines on stdout. Started
/// again after a crash, it continues from the newest consistent snapshot.
public enum EngineWorker {
    /// Returns true when `totalSteps` were reached, false when stopped by SIGTERM/SIGINT.
    public static func run(setup: SimulationSetup, options: EngineWorkerOptions, fault: Fault?) throws -> Bool {
        let segment = try SharedSegment.open(name: options.segment)
        let status = segment.worker(options.index)
        status.pid = getpid()
        let sim = try setup.makeSimulation(options: options.simulation)
        guard sim.count <= segment.layout.atomCapacity else {
            throw EngineError.invalidParameter("the system has \(sim.count) atoms, the shared-memory segment room for \(segment.layout.atomCapacity)")
        }
        var resumedFrom: Int32?
        if let snap = segment.readSnapshot(), snap.x.count == sim.count {
            try sim.restore(DynamicState(step: Int(snap.step), time: snap.time, x: snap.x, y: snap.y, z: snap.z,
                                         vx: snap.vx, vy: snap.vy, vz: snap.vz,
                                         imageX: snap.imageX, imageY: snap.imageY, imageZ: snap.imageZ))
            resumedFrom = snap.writerPID
        }
        let reporter = ProgressReporter(simulation: sim, totalSteps: options.totalSteps, reportEvery: options.reportEvery)
        if let resumedFrom {
            reporter.line("engine resumed from step \(sim.step) (snapshot of pid \(resumedFrom))")
        } else {
            reporter.header(setup: setup)
            try publish(sim, into: segment)
            try reporter.report()
        }
        status.state = .ready
        status.advance()
        if fault == .hang { while qv_signal_stop_requested() == 0 { usleep(100_000) } }

        var finished = false
        while qv_signal_stop_requested() == 0 {
            let remaining = options.totalSteps.map { $0 - sim.step } ?? Int.max
            if remaining <= 0 { finished = true; break }
            var chunk = min(options.frameInterval - sim.step % options.frameInterval, remaining)
            if let every = options.reportEvery { chunk = min(chunk, every - sim.step % every) }
            try sim.run(steps: chunk, energy: sim.step + chunk == options.totalSteps || (sim.step + chunk) % options.frameInterval == 0)
            if sim.step % options.frameInterval == 0 || sim.step == options.totalSteps { try publish(sim, into: segment) }
            status.advance()
            if reporter.due { try reporter.report() }
        }
        if !finished { try publish(sim, into: segment) }
        try reporter.finish()
        status.state = .exited
        return finished
    }

    /// Snapshot first, then the frame: a crash between the two leaves a snapshot at least as new
    /// as the newest frame.
    static func publish(_ sim: Simulation, into segment: SharedSegment) throws {
        let state = sim.dynamicState()
        let published = segment.framesPublished
        var snap = EngineSnapshot()
        snap.step = UInt64(state.step)
        snap.time = state.time
        snap.box = SIMD3(sim.box.x, sim.box.y, sim.box.z)
        snap.framesPublished = published
        snap.x = state.x; snap.y = state.y; snap.z = state.z
        snap.vx = state.vx; snap.vy = state.vy; snap.vz = state.vz
        snap.imageX = state.imageX; snap.imageY = state.imageY; snap.imageZ = state.imageZ
        try segment.writeSnapshot(snap)
        let e = try sim.energies()
        var frame = FrameRecord()
        frame.index = published
        frame.step = UInt64(state.step)
        frame.time = state.time
        frame.box = snap.box
        frame.potentialEnergy = e.potential
        frame.kineticEnergy = e.kinetic
        frame.temperature = e.temperature
        frame.x = state.x; frame.y = state.y; frame.z = state.z
        try segment.publish(frame)
    }
}

/// Progress lines: step, time, temperature, energies, ns/day over the last interval, an ETA when
/// the step count is known; flushed at once (they go to a batch log).
public final class ProgressReporter {
    let sim: Simulation
    let totalSteps: Int?
    private var lastStep = -1
    private var lastTime = DispatchTime.now()
    private let start = DispatchTime.now()
    private let startStep: Int
    public var reportEvery: Int?

    public init(simulation: Simulation, totalSteps: Int?, reportEvery: Int? = nil) {
        sim = simulation
        self.totalSteps = totalSteps
        self.reportEvery = reportEvery
        startStep = simulation.step
    }

    var due: Bool {
        if let every = reportEvery { return sim.step % every == 0 }
        return Double(DispatchTime.now().uptimeNanoseconds - lastTime.uptimeNanoseconds) / 1e9 >= 1.0
    }

    public func line(_ text: String) {
        print(text)
        fflush(nil)
    }

    public func header(setup: SimulationSetup) {
        let integrator: String
        switch sim.integrator {
        case .velocityVerlet(let dt): integrator = "velocity Verlet, dt \(dt) ps"
        case .langevin(let dt, let t, let g): integrator = "Langevin \(t) K, friction \(g)/ps, dt \(dt) ps"
        }
        line("quiver run: system \(setup.name), \(sim.count) atoms, box \(fmt(sim.box.x, 3)) x \(fmt(sim.box.y, 3)) x \(fmt(sim.box.z, 3)) nm, \(integrator), \(sim.threads) threads, \(sim.kernel.rawValue) kernel")
    }

    public func report() throws {
        let e = try sim.energies()
        let now = DispatchTime.now()
        let dt = Double(now.uptimeNanoseconds - lastTime.uptimeNanoseconds) / 1e9
        let steps = lastStep < 0 ? 0 : sim.step - lastStep
        var text = "step \(sim.step)  time \(fmt(sim.time, 3)) ps  T \(fmt(e.temperature, 2)) K  PE \(fmt(e.potential, 3))  KE \(fmt(e.kinetic, 3))  E \(fmt(e.total, 3)) kJ/mol"
        if steps > 0 && dt > 0 {
            text += "  \(fmt(Double(steps) * sim.timestep / 1000 / dt * 86400, 1)) ns/day"
            if let total = totalSteps { text += "  ETA \(clock(Double(total - sim.step) * dt / Double(steps)))" }
        }
        line(text)
        lastStep = sim.step
        lastTime = now
    }

    /// The last progress line (unless it was just printed) and the summary.
    public func finish() throws {
        if lastStep != sim.step { try report() }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        let taken = sim.step - startStep
        let rate = elapsed > 0 ? Double(taken) * Double(sim.count) / elapsed : 0
        let nsPerDay = elapsed > 0 ? Double(taken) * sim.timestep / 1000 / elapsed * 86400 : 0
        line("done: \(taken) steps in \(fmt(elapsed, 2)) s, \(fmt(nsPerDay, 1)) ns/day, \(fmt(rate / 1e6, 3)) M atom-steps/s")
    }
}

func fmt(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }

func clock(_ seconds: Double) -> String {
    let s = max(0, Int(seconds.rounded()))
    return String(format: "%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60)
}
