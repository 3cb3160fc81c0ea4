import CQuiverOS
import Foundation
import QuiverLog
import QuiverConfig
import QuiverEngine
import QuiverSharedMemory

#if canImport(Glibc)
import Glibc
#endif

/// The engine process: steps the dynamics, publishes a frame into shared memory every
/// `frameInterval` steps (straight from its buffers), applies client commands from the command
/// ring between steps, writes a snapshot every `snapshotInterval` seconds and when it stops,
/// advances its progress counter, and prints progress lines on stdout. Started again after a
/// crash, it continues from the newest consistent snapshot (and the control state: paused,
/// parameters, interactions) and publishes only once past the newest published step, so clients
/// never see a step go back.
public struct EngineWorker: Worker {
    public static let role = "engine"
    public static let events: [EventName] = [.commandsPosted, .commandsDone, .framePublished]
    public static let ownsDynamics = true
    public static let exitEndsRun = true

    /// Seconds between engine snapshots (and at stop): a respawned engine recomputes at most this
    /// much before it publishes again (a frame resumes within about 0.25 s of an engine kill). A
    /// snapshot of 4000 atoms costs tens of microseconds; for a system whose snapshot costs more
    /// than 1/50 of this, the interval grows to keep snapshots under 2 % of the time (`EngineLoop`).
    static let snapshotInterval = 0.05

    let context: WorkerContext
    let setup: SimulationSetup
    let extraForceFields: [any ForceField]

    public init(context: WorkerContext) throws {
        self.context = context
        let c = context.configuration
        try c.validateForThisMachine()
        setup = try c.simulationSetup()
        extraForceFields = try c.plugin.map { [try PluginForceField(path: $0, options: c.pluginOptions)] } ?? []
    }

    /// Runs until the configured steps were taken (a clean exit that ends the run) or SIGTERM/SIGINT.
    public func run() async throws {
        let (segment, status) = (context.segment, context.status)
        let c = context.configuration
        let sim = try setup.makeSimulation(options: c.simulationOptions, extraForceFields: extraForceFields)
        guard sim.count <= segment.layout.atomCapacity else {
            throw EngineError.invalidParameter("the system has \(sim.count) atoms, the shared-memory segment room for \(segment.layout.atomCapacity)")
        }
        let initial = sim.dynamicState()
        var resumedFrom: Int32?
        if let snap = (try? segment.snapshots.read()), snap.x.count == sim.count {
            try sim.restore(DynamicState(step: Int(snap.step), time: snap.time, x: snap.x, y: snap.y, z: snap.z,
                                         vx: snap.vx, vy: snap.vy, vz: snap.vz,
                                         imageX: snap.imageX, imageY: snap.imageY, imageZ: snap.imageZ))
            resumedFrom = snap.writerPID
        }
        let control = EngineControl(dynamics: sim, segment: segment, frameInterval: c.frameInterval, initial: initial,
                                    postedFD: context.event(.commandsPosted), doneFD: context.event(.commandsDone))
        control.logger = context.logger
        // A respawn (it resumed from a snapshot): the respawn rule drops the interactions that may
        // have ended the previous engine (EngineControl.restoreFromSegment).
        let restoredControl = control.restoreFromSegment(resumedAtStep: resumedFrom == nil ? nil : sim.step)
        let reporter = ProgressReporter(dynamics: sim, totalSteps: c.steps, reportEvery: c.reportEvery)
        if let resumedFrom {
            reporter.line("engine resumed from step \(sim.step) (snapshot of pid \(resumedFrom))\(restoredControl ? (control.paused ? ", paused" : "") + ", \(control.state.interactions.count) interactions" : "")")
        } else {
            reporter.header(setup: setup, simulation: sim)
        }
        let loop = EngineLoop(dynamics: sim, segment: segment, control: control, status: status, reporter: reporter,
                              snapshotInterval: Self.snapshotInterval)
        loop.frameFD = context.event(.framePublished)
        loop.endOnUnpulledBlowUp = c.steps != nil
        if resumedFrom == nil {
            try loop.snapshot()
            try loop.publishFrame()
            try reporter.report()
            if context.fault == .blowUp {
                // Tests only: two atoms 0.003 nm apart, so the first step's forces send them flying.
                var x = sim.positions()
                x[1] = x[0] + SIMD3(0.003, 0, 0)
                try sim.setPositions(x)
            }
        }
        context.ready()
        status.advance()
        _ = try loop.run(totalSteps: c.steps) { context.stopRequested }
        try loop.snapshot()
        control.persistIfNeeded()
        try reporter.finish()
    }
}

/// The engine's loop around any `Dynamics`: one step at a time, commands between steps, frames at
/// the frame interval (and when a `step N` pauses), throttles, snapshots, progress. Used by the
/// engine worker and, in-process, by an embedding `Session`.
public final class EngineLoop {
    let dynamics: any Dynamics
    let segment: SharedSegment
    public let control: EngineControl
    let status: WorkerStatus?
    let reporter: ProgressReporter?
    let snapshotInterval: Double?
    /// Frames are published only past this step (a respawned engine catching up publishes nothing).
    let newestPublishedAtStart: Int
    private(set) var lastPublishedStep: Int
    /// An eventfd written after every published frame (wakes the broadcaster); nil: none.
    public var frameFD: Int32?
    /// A run with a step limit (a batch run): a blow-up with no interaction active is the system's
    /// own, and rolling back would only meet it again, with nobody there to press play. The loop
    /// then throws `BatchBlowUp` once the rolled-back state is in the snapshot. Otherwise (the
    /// default) it pauses.
    public var endOnUnpulledBlowUp = false
    /// Seconds the last snapshot took: snapshots are at least 50 times that apart.
    private var snapshotCost = 0.0

    /// `publishedStep`: frames are published once past this step; nil: the newest step in the
    /// ring (a respawned engine), -1 for a dynamics shown anew.
    public init(dynamics: any Dynamics, segment: SharedSegment, control: EngineControl, status: WorkerStatus?, reporter: ProgressReporter?,
                snapshotInterval: Double?, publishedStep: Int? = nil) {
        self.dynamics = dynamics
        self.segment = segment
        self.control = control
        self.status = status
        self.reporter = reporter
        self.snapshotInterval = snapshotInterval
        newestPublishedAtStart = publishedStep ?? segment.frames.latestScalars().map { Int($0.step) } ?? -1
        lastPublishedStep = newestPublishedAtStart
    }

    static var now: UInt64 { SystemClock.monotonicNanoseconds }

    /// Runs until `stop()` or `totalSteps`; returns true when the steps were reached.
    ///
    /// A blow-up (`advance` throws an `EngineError` with `isBlowUp`: non-finite values or a
    /// kinetic-energy jump, found within the step) does not end the loop: `recover(from:)`.
    public func run(totalSteps: Int?, stop: () -> Bool) throws -> Bool {
        var lastSnapshot = Self.now
        var notBefore: UInt64 = 0
        var stepClock: UInt64 = 0
        if !checkpointed { try checkpoint() }
        while !stop() {
            control.processCommands()
            control.expireLeases()
            let remaining = totalSteps.map { $0 - dynamics.step } ?? Int.max
            if remaining <= 0 { return true }
            let t = Self.now
            if control.paused || t < notBefore {
                // A rolled-back state is published (positionsChanged) unless clients already saw a
                // later step (a respawn catching up): frames never go back.
                if control.paused && (dynamics.step > lastPublishedStep || (control.positionsChanged && dynamics.step >= lastPublishedStep)) {
                    try guarded { try publishFrame() }
                }
                housekeeping(&lastSnapshot)
                control.wait(seconds: control.paused ? 0.05 : min(0.05, Double(notBefore - t) / 1e9))
                continue
            }
            dynamics.applyInteractionChanges()
            let interval = control.frameInterval
            let boundary = (dynamics.step + 1) % interval == 0 || dynamics.step + 1 == totalSteps
            let stepped = try guarded { try dynamics.advance(steps: 1, energy: boundary) }
            guard stepped else {
                housekeeping(&lastSnapshot)
                continue
            }
            let pausedNow = control.afterStep()
            let after = Self.now
            if control.maxStepsPerSecond > 0 {
                let period = UInt64(1e9 / control.maxStepsPerSecond)
                stepClock = max(stepClock &+ period, after &- min(after, period))
                notBefore = stepClock
            }
            if (boundary || pausedNow) && dynamics.step > lastPublishedStep {
                try guarded { try publishFrame() }
                if control.maxFramesPerSecond > 0 { notBefore = max(notBefore, after + UInt64(1e9 / control.maxFramesPerSecond)) }
            }
            housekeeping(&lastSnapshot)
        }
        return false
    }

    @discardableResult
    /// Runs `body`; a blow-up it throws is recovered from (`recover(from:)`) and false returned.
    /// Other errors end the loop.
    private func guarded(_ body: () throws -> Void) throws -> Bool {
        do {
            try body()
            return true
        } catch let error as EngineError where error.isBlowUp {
            try recover(from: error)
            return false
        }
    }

    /// Whether the loop has a last good state to roll back to.
    private(set) var checkpointed = false

    /// Keeps the current state as the last good one (`Dynamics.checkpoint`): done at every
    /// published frame, whose state passed the step's check.
    public func checkpoint() throws {
        try dynamics.checkpoint()
        checkpointed = true
    }

    /// The dynamics blew up within a step: rolls back to the last good state (the last published
    /// frame's), pauses, ends every interaction (EngineControl.blewUp), takes their forces out,
    /// publishes the rolled-back state (a new frame at the same step) and writes a snapshot of it
    /// at once, so a respawn continues from there and not from the blown-up run. Nothing
    /// non-finite is published. Throws only when the rollback itself fails.
    public func recover(from error: EngineError) throws {
        let pulled = control.activeInteractions > 0
        let touched = Array(Set(control.state.interactions.flatMap { $0.request.interaction.particles })).sorted()
        let back = try dynamics.rollback()
        var text = control.blewUp(error, rolledBackTo: back)
        dynamics.applyInteractionChanges()
        if back != nil {
            // The last frame's state can already carry a step or two of the pull (its kinetic
            // energy below the bound): the pulled atoms fly, and after `play` they would crash
            // into their neighbours and blow the dynamics up again. So the forces are computed
            // anew at that state without the ended interactions, and the atoms they pulled get
            // fresh velocities at the thermostat's temperature (the run's, without a thermostat).
            _ = try dynamics.rollback()
            let t = dynamics.parameters()["temperature"] ?? ((try? dynamics.energies().temperature) ?? 0)
            if !touched.isEmpty && t > 0 && t.isFinite {
                do {
                    try dynamics.resetVelocities(of: touched, temperature: t)
                    text += "; velocities of the \(touched.count) pulled atoms drawn anew at \(fmt(t, 1)) K"
                    control.noteBlowUpText(text)
                } catch {
                    control.logger.warning("could not draw new velocities for the pulled atoms: \(error)")
                }
            }
        }
        reporter?.line("blow-up: \(text)")
        if back != nil {
            // The repaired state is the new rollback point at once: a `play` already waiting in
            // the ring runs before the paused loop would publish (and checkpoint) it.
            try? dynamics.checkpoint()
            control.positionsChanged = true
            try? snapshot()
        } else {
            // Nothing to go back to: the blown-up state is never published.
            lastPublishedStep = max(lastPublishedStep, dynamics.step)
            control.positionsChanged = false
        }
        if endOnUnpulledBlowUp && !pulled { throw BatchBlowUp(detail: text, step: dynamics.step) }
    }

    private func housekeeping(_ lastSnapshot: inout UInt64) {
        let t = Self.now
        if let every = snapshotInterval, Double(t - lastSnapshot) / 1e9 >= max(every, 50 * snapshotCost) {
            try? snapshot()
            lastSnapshot = t
            snapshotCost = Double(Self.now - t) / 1e9
        }
        status?.advance()
        if let reporter, reporter.due { try? reporter.report() }
    }

    /// Writes an engine snapshot (the state a respawned engine continues from).
    public func snapshot() throws {
        guard let state = dynamics.saveState() else { return }
        var snap = EngineSnapshot()
        snap.step = UInt64(state.step)
        snap.time = state.time
        snap.box = SIMD3(dynamics.box.x, dynamics.box.y, dynamics.box.z)
        snap.framesPublished = segment.frames.published
        snap.x = state.x; snap.y = state.y; snap.z = state.z
        snap.vx = state.vx; snap.vy = state.vy; snap.vz = state.vz
        snap.imageX = state.imageX; snap.imageY = state.imageY; snap.imageZ = state.imageZ
        try segment.snapshots.write(snap)
    }

    /// Publishes the current positions, energies and interactive forces as the next frame,
    /// straight from the dynamics' buffers.
    ///
    /// The last line of defence against a blow-up the step did not catch (a `Dynamics` of your
    /// own): positions or energies that are not finite are never published; it throws
    /// `EngineError.nonFinite` instead (the loop recovers from it). Takes a checkpoint of the
    /// published state (the state a blow-up rolls back to).
    public func publishFrame() throws {
        let e = try dynamics.energies()
        let finite = e.potential.isFinite && e.kinetic.isFinite && e.temperature.isFinite
            && dynamics.withPositions { x, y, z in FiniteCheck.all(x, y, z) }
        guard finite else { throw EngineError.nonFinite(step: dynamics.step) }
        let forces = dynamics.interactiveForces
        var user = SparseForces()
        if let forces {
            for (index, f) in forces.userForces() {
                user.indices.append(UInt32(index)); user.x.append(f.x); user.y.append(f.y); user.z.append(f.z)
            }
        }
        let scalars = FrameScalars(
            index: segment.frames.published, step: UInt64(dynamics.step), time: dynamics.time,
            box: SIMD3(dynamics.box.x, dynamics.box.y, dynamics.box.z),
            potentialEnergy: e.potential, kineticEnergy: e.kinetic, temperature: e.temperature,
            userEnergy: forces?.energy ?? 0, userWork: forces?.work ?? 0)
        try dynamics.withPositions { x, y, z in try segment.frames.publish(scalars, x: x, y: y, z: z, userForces: user) }
        lastPublishedStep = dynamics.step
        control.positionsChanged = false
        if let frameFD { var one: UInt64 = 1; _ = Glibc.write(frameFD, &one, 8) }
        try checkpoint()
    }
}

/// A batch run's dynamics blew up with no interaction active (`EngineLoop.endOnUnpulledBlowUp`):
/// the engine exits with `WorkerExitStatus.fatal`, and the supervisor stops the run with the
/// rolled-back state saved in engine-state.bin.
public struct BatchBlowUp: FatalWorkerError, CustomStringConvertible {
    public let detail: String
    public let step: Int
    public var description: String {
        "the dynamics blew up with no interaction active in a run with a step limit: \(detail); the run stops, its state at step \(step) kept for a resume"
    }
}

/// Progress lines: step, time, temperature, energies, ns/day over the last interval, an ETA when
/// the step count is known; flushed at once (they go to a batch log).
public final class ProgressReporter {
    let sim: any Dynamics
    let totalSteps: Int?
    private var lastStep = -1
    private var lastTime = SystemClock.monotonicSeconds
    private let start = SystemClock.monotonicSeconds
    private let startStep: Int
    public var reportEvery: Int?

    public init(dynamics: any Dynamics, totalSteps: Int?, reportEvery: Int? = nil) {
        sim = dynamics
        self.totalSteps = totalSteps
        self.reportEvery = reportEvery
        startStep = dynamics.step
    }

    var due: Bool {
        if let every = reportEvery { return sim.step % every == 0 && sim.step != lastStep }
        return SystemClock.monotonicSeconds - lastTime >= 1.0
    }

    /// One progress line on stdout, written at once (a batch log reads it as it comes).
    public func line(_ text: String) { LogSink.standardOutput.write(text) }

    var timestep: Double { sim.parameters()["timestep"] ?? 0 }

    public func header(setup: SimulationSetup, simulation sim: Simulation) {
        let integrator: String
        switch sim.integrator {
        case .velocityVerlet(let dt): integrator = "velocity Verlet, dt \(dt) ps"
        case .langevin(let dt, let t, let g): integrator = "Langevin \(t) K, friction \(g)/ps, dt \(dt) ps"
        }
        line("quiver run: system \(setup.name), \(sim.count) atoms, box \(fmt(sim.box.x, 3)) x \(fmt(sim.box.y, 3)) x \(fmt(sim.box.z, 3)) nm, \(integrator), \(sim.threads) threads, \(sim.kernel.rawValue) kernel")
    }

    public func report() throws {
        let e = try sim.energies()
        let now = SystemClock.monotonicSeconds
        let dt = now - lastTime
        let steps = lastStep < 0 ? 0 : sim.step - lastStep
        var text = "step \(sim.step)  time \(fmt(sim.time, 3)) ps  T \(fmt(e.temperature, 2)) K  PE \(fmt(e.potential, 3))  KE \(fmt(e.kinetic, 3))  E \(fmt(e.total, 3)) kJ/mol"
        if steps > 0 && dt > 0 {
            text += "  \(fmt(Double(steps) * timestep / 1000 / dt * 86400, 1)) ns/day"
            if let total = totalSteps { text += "  ETA \(clock(Double(total - sim.step) * dt / Double(steps)))" }
        }
        line(text)
        lastStep = sim.step
        lastTime = now
    }

    /// The last progress line (unless it was just printed) and the summary.
    public func finish() throws {
        if lastStep != sim.step { try report() }
        let elapsed = SystemClock.monotonicSeconds - start
        let taken = sim.step - startStep
        let rate = elapsed > 0 ? Double(taken) * Double(sim.atomCount) / elapsed : 0
        let nsPerDay = elapsed > 0 ? Double(taken) * timestep / 1000 / elapsed * 86400 : 0
        line("done: \(taken) steps in \(fmt(elapsed, 2)) s, \(fmt(nsPerDay, 1)) ns/day, \(fmt(rate / 1e6, 3)) M atom-steps/s")
    }
}

func fmt(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }

func clock(_ seconds: Double) -> String {
    let s = max(0, Int(seconds.rounded()))
    return String(format: "%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60)
}
