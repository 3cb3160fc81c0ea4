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
    /// Seconds between engine snapshots (and at stop): a respawned engine loses at most this much.
    public var snapshotInterval: Double = 0.5

    public init(segment: String, index: Int, frameInterval: Int, totalSteps: Int?, reportEvery: Int?, simulation: SimulationOptions) {
        self.segment = segment
        self.index = index
        self.frameInterval = frameInterval
        self.totalSteps = totalSteps
        self.reportEvery = reportEvery
        self.simulation = simulation
    }
}

/// The engine process: steps the dynamics, publishes a frame into shared memory every
/// `frameInterval` steps (straight from its buffers), writes a snapshot every `snapshotInterval`
/// seconds and when it stops, advances its progress counter, and prints progress lines on stdout.
/// Started again after a crash, it continues from the newest consistent snapshot and publishes
/// only once past the newest published step, so clients never see a step go back.
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
        // A respawned engine continues from the newest snapshot, which may be older than the newest
        // frame: it publishes nothing until it is past the newest published step, so clients never
        // see a step go back.
        let newestPublishedStep = segment.latestFrameScalars().map { Int($0.step) } ?? -1
        var lastPublishedStep = newestPublishedStep
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
            try snapshot(sim, into: segment)
            try publishFrame(sim, into: segment)
            lastPublishedStep = sim.step
            try reporter.report()
        }
        status.state = .ready
        status.advance()
        if fault == .hang { while qv_signal_stop_requested() == 0 { usleep(100_000) } }

        var finished = false
        let snapshotEvery = UInt64(options.snapshotInterval * 1e9)
        var lastSnapshot = DispatchTime.now().uptimeNanoseconds
        while qv_signal_stop_requested() == 0 {
            let remaining = options.totalSteps.map { $0 - sim.step } ?? Int.max
            if remaining <= 0 { finished = true; break }
            var chunk = min(options.frameInterval - sim.step % options.frameInterval, remaining)
            if let every = options.reportEvery { chunk = min(chunk, every - sim.step % every) }
            try sim.run(steps: chunk, energy: sim.step + chunk == options.totalSteps || (sim.step + chunk) % options.frameInterval == 0)
            if (sim.step % options.frameInterval == 0 || sim.step == options.totalSteps) && sim.step > newestPublishedStep {
                try publishFrame(sim, into: segment)
                lastPublishedStep = sim.step
            }
            let now = DispatchTime.now().uptimeNanoseconds
            if now - lastSnapshot >= snapshotEvery {
                try snapshot(sim, into: segment)
                lastSnapshot = now
            }
            status.advance()
            if reporter.due { try reporter.report() }
        }
        try snapshot(sim, into: segment)
        if sim.step > lastPublishedStep { try publishFrame(sim, into: segment) }
        try reporter.finish()
        status.state = .exited
        return finished
    }

    /// Writes an engine snapshot (the state a respawned engine continues from).
    static func snapshot(_ sim: Simulation, into segment: SharedSegment) throws {
        let state = sim.dynamicState()
        var snap = EngineSnapshot()
        snap.step = UInt64(state.step)
        snap.time = state.time
        snap.box = SIMD3(sim.box.x, sim.box.y, sim.box.z)
        snap.framesPublished = segment.framesPublished
        snap.x = state.x; snap.y = state.y; snap.z = state.z
        snap.vx = state.vx; snap.vy = state.vy; snap.vz = state.vz
        snap.imageX = state.imageX; snap.imageY = state.imageY; snap.imageZ = state.imageZ
        try segment.writeSnapshot(snap)
    }

    /// Publishes the current positions and energies as the next frame, straight from the engine's
    /// buffers.
    static func publishFrame(_ sim: Simulation, into segment: SharedSegment) throws {
        let e = try sim.energies()
        let scalars = SharedSegment.FrameScalars(
            index: segment.framesPublished, step: UInt64(sim.step), time: sim.time, box: SIMD3(sim.box.x, sim.box.y, sim.box.z),
            potentialEnergy: e.potential, kineticEnergy: e.kinetic, temperature: e.temperature)
        try sim.withPositions { x, y, z in try segment.publish(scalars, x: x, y: y, z: z) }
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
