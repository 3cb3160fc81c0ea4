import CQuiverCore
import Foundation

/// Options that do not change the physics.
public struct SimulationOptions: Sendable {
    /// Worker threads for forces and integration; nil means every core this process may use.
    public var threads: Int?
    /// Seed of the thermostat's random numbers.
    public var seed: UInt64
    /// Which kernel variant runs.
    public var kernel: KernelVariant

    public init(threads: Int? = nil, seed: UInt64 = 1, kernel: KernelVariant = .auto) {
        self.threads = threads
        self.seed = seed
        self.kernel = kernel
    }
}

/// The dynamic state of a simulation in structure-of-arrays form (positions nm, velocities nm/ps,
/// periodic image counts).
public struct DynamicState: Sendable, Equatable {
    public var step: Int
    public var time: Double
    public var x, y, z, vx, vy, vz: [Float]
    public var imageX, imageY, imageZ: [Int32]

    public init(step: Int, time: Double, x: [Float], y: [Float], z: [Float], vx: [Float], vy: [Float], vz: [Float],
                imageX: [Int32], imageY: [Int32], imageZ: [Int32]) {
        self.step = step; self.time = time
        self.x = x; self.y = y; self.z = z; self.vx = vx; self.vy = vy; self.vz = vz
        self.imageX = imageX; self.imageY = imageY; self.imageZ = imageZ
    }
}

/// Energies at one step, kJ/mol.
public struct Energies: Sendable {
    public let step: Int
    public let potential: Double
    public let kinetic: Double
    public var total: Double { potential + kinetic }
    /// Temperature in K over the simulation's degrees of freedom.
    public let temperature: Double
    /// The potential energy of each force field, in order.
    public let terms: [(name: String, energy: Double)]
}

/// A molecular dynamics simulation: a system, force fields that add up, and an integrator.
///
/// Deterministic: the same system, seed and thread count give bitwise identical trajectories
/// (forces on an atom are summed by one thread in a fixed order; thermostat noise is counter-based).
/// Not thread-safe: drive one simulation from one thread.
public final class Simulation {
    public let forceFields: [any ForceField]
    public private(set) var integrator: Integrator
    public let threads: Int
    public let kernel: KernelVariant
    public let seed: UInt64
    public let typeNames: [String]
    /// Interactive (user) forces: added after the force fields on every force evaluation. Their
    /// energy is kept apart (`interactions.energy`), not in the potential energy.
    public let interactions = InteractiveForces()
    /// Steps taken since creation.
    public private(set) var step: Int = 0
    /// Simulated time in ps.
    public private(set) var time: Double = 0

    let storage: StateStorage
    let pool: ThreadPool
    private var cached: Energies?

    /// The per-step blow-up check (docs/architecture.md, "Blow-ups: detection and rollback"): after
    /// every step one pass over positions and velocities (`qv_check_state`) sums the kinetic
    /// energy; a NaN or infinity there (a non-finite force shows in the velocities), or a kinetic
    /// energy above `kineticFactor` x the reference, makes `run` throw (`EngineError.nonFinite`,
    /// `.kineticEnergyJump`) at the step it happened, and `rollback()` returns to the last
    /// `checkpoint()`.
    public struct BlowUpGuard: Sendable, Equatable {
        /// A step trips the bound when its kinetic energy exceeds this many times the reference.
        public var kineticFactor: Double
        /// The reference is the largest of: the kinetic energy at the last checkpoint (or at
        /// creation, `restore`, `setVelocities`), the equipartition energy (dof/2) kB T at the
        /// thermostat's temperature, and at this temperature (K), so a cold system may warm up.
        public var floorTemperature: Double

        public init(kineticFactor: Double = 10, floorTemperature: Double = 100) {
            self.kineticFactor = kineticFactor
            self.floorTemperature = floorTemperature
        }
    }

    /// The blow-up check run after every step; nil: none (positions may then become NaN silently
    /// until an energy evaluation sees it).
    public var blowUpGuard: BlowUpGuard? = BlowUpGuard() { didSet { updateKineticBound() } }
    /// Kinetic energy (kJ/mol) a step must not exceed; infinity without a guard.
    public private(set) var kineticBound = Double.infinity
    /// Kinetic energy of the reference state of the bound.
    private var referenceKinetic = 0.0
    /// The last good state (`checkpoint()`), copied into buffers allocated once.
    private var saved: Checkpoint?

    private final class Checkpoint {
        var step = 0
        var time = 0.0
        var kinetic = 0.0
        let floats: [AlignedBuffer<Float>]
        let ints: [AlignedBuffer<Int32>]
        init(count: Int) throws {
            floats = try (0..<6).map { _ in try AlignedBuffer<Float>(count: count, zero: 0) }
            ints = try (0..<3).map { _ in try AlignedBuffer<Int32>(count: count, zero: 0) }
        }
    }

    /// Creates a simulation and computes the initial forces (and energies).
    /// Throws `EngineError` for an invalid system, parameters, or a force field's refusal.
    public init(system: ParticleSystem, forceFields: [any ForceField], integrator: Integrator,
                options: SimulationOptions = SimulationOptions()) throws {
        try system.validate()
        try integrator.validate()
        let threads = options.threads ?? Machine.availableCores
        guard threads >= 1, threads <= 1024 else { throw EngineError.invalidParameter("threads must be in 1...1024, got \(threads)") }
        self.threads = threads
        self.kernel = try options.kernel.resolved()
        self.seed = options.seed
        self.integrator = integrator
        self.forceFields = forceFields
        self.typeNames = system.typeNames
        storage = try StateStorage(system: system)
        pool = try ThreadPool(threads: threads)
        let setup = ForceFieldSetup(system: system, threads: threads, kernel: kernel)
        for field in forceFields { try field.prepare(setup) }
        try interactions.prepare(setup)
        updateThermostat()
        try computeForces(energy: true)
        resetReference()
    }

    public var count: Int { storage.count }
    public var box: Box { storage.box }
    public var timestep: Double { integrator.timestep }

    /// Degrees of freedom used for the temperature: 3N, less 3 when momentum is conserved.
    public var degreesOfFreedom: Int { max(1, 3 * count - (integrator.conservesMomentum ? 3 : 0)) }

    /// Advances `steps` steps. When `energy` is true the last force evaluation also computes the
    /// potential energy, so `energies()` afterwards costs nothing.
    /// Throws `EngineError.nonFinite` when the dynamics blows up (the state is then unusable).
    public func run(steps: Int, energy: Bool = false) throws {
        guard steps >= 0 else { throw EngineError.invalidParameter("steps must be >= 0, got \(steps)") }
        let dt = Float(integrator.timestep)
        var s = storage.cState
        for k in 0..<steps {
            let wantEnergy = energy && k == steps - 1
            switch integrator {
            case .velocityVerlet:
                qv_kick(pool.pointer, &s, 0.5 * dt)
                qv_drift(pool.pointer, &s, dt)
                step += 1
                try computeForces(energy: wantEnergy)
                qv_kick(pool.pointer, &s, 0.5 * dt)
            case .langevin(_, _, let friction):
                qv_kick(pool.pointer, &s, 0.5 * dt)
                qv_drift(pool.pointer, &s, 0.5 * dt)
                let c1 = Float(exp(-friction * Double(dt)))
                qv_langevin_o(pool.pointer, &s, c1, storage.sigmaV.pointer, seed, UInt64(step))
                qv_drift(pool.pointer, &s, 0.5 * dt)
                step += 1
                try computeForces(energy: wantEnergy)
                qv_kick(pool.pointer, &s, 0.5 * dt)
            }
            time += integrator.timestep
            if blowUpGuard != nil {
                let kinetic = qv_check_state(pool.pointer, &s)
                guard kinetic.isFinite else { throw EngineError.nonFinite(step: step) }
                guard kinetic <= kineticBound else { throw EngineError.kineticEnergyJump(step: step, kinetic: kinetic, bound: kineticBound) }
            }
        }
        if energy, let c = cached, c.step == step {
            let kinetic = kineticEnergy
            cached = Energies(step: step, potential: c.potential, kinetic: kinetic, temperature: temperature(kinetic: kinetic), terms: c.terms)
        }
    }

    /// Energies at the current step (computes the potential energy if the last step did not).
    public func energies() throws -> Energies {
        if let c = cached, c.step == step { return c }
        try computeForces(energy: true)
        return cached!
    }

    /// Recomputes the forces (and, if asked, the energies) at the current positions without
    /// stepping. The neighbour list is reused unless an atom moved more than half the skin.
    public func evaluateForces(energy: Bool = false) throws {
        try computeForces(energy: energy)
    }

    /// Interactions changed between steps: takes the previous interactive forces out of the force
    /// buffer and adds the current ones at the current positions, so the next step's first
    /// half-kick uses them (positions at the next step already feel a new pull). Does nothing when
    /// the interactions did not change since the last force evaluation.
    public func applyInteractionChanges() {
        guard interactions.changedSinceEvaluation else { return }
        interactions.subtractLastForces(fx: storage.fx.buffer, fy: storage.fy.buffer, fz: storage.fz.buffer)
        interactions.addForces(x: UnsafeBufferPointer(storage.x.buffer), y: UnsafeBufferPointer(storage.y.buffer), z: UnsafeBufferPointer(storage.z.buffer),
                               fx: storage.fx.buffer, fy: storage.fy.buffer, fz: storage.fz.buffer, box: storage.box)
    }

    /// Kinetic energy in kJ/mol (double accumulation).
    public var kineticEnergy: Double {
        var s = storage.cState
        return qv_kinetic_energy(&s)
    }

    /// Instantaneous temperature in K.
    public var temperature: Double { temperature(kinetic: kineticEnergy) }

    func temperature(kinetic: Double) -> Double { 2 * kinetic / (Double(degreesOfFreedom) * Units.boltzmann) }

    /// Total momentum in amu nm/ps.
    public var momentum: SIMD3<Double> {
        var s = storage.cState
        var p = [0.0, 0.0, 0.0]
        p.withUnsafeMutableBufferPointer { qv_momentum(&s, $0.baseAddress) }
        return SIMD3(p[0], p[1], p[2])
    }

    /// Positions in nm, wrapped into the box at the last neighbour-list rebuild (an atom may be
    /// up to half a skin outside).
    public func positions() -> [SIMD3<Float>] { storage.positions() }
    /// Positions with periodic images undone, in double precision.
    public func unwrappedPositions() -> [SIMD3<Double>] { storage.unwrappedPositions() }
    public func velocities() -> [SIMD3<Float>] { storage.velocities() }
    /// Forces of the last evaluation, kJ/mol/nm.
    public func forces() -> [SIMD3<Float>] { storage.forces() }

    /// Read-only access to the SoA arrays without copying. The buffers are valid only inside `body`.
    public func withPositions<R>(_ body: (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(storage.x.buffer), UnsafeBufferPointer(storage.y.buffer), UnsafeBufferPointer(storage.z.buffer))
    }

    /// Replaces positions (nm) and recomputes forces.
    public func setPositions(_ positions: [SIMD3<Float>]) throws {
        guard positions.count == count else { throw EngineError.invalidSystem("\(positions.count) positions for \(count) atoms") }
        guard positions.allSatisfy({ $0.x.isFinite && $0.y.isFinite && $0.z.isFinite }) else {
            throw EngineError.invalidSystem("positions must be finite")
        }
        storage.setPositions(positions)
        for field in forceFields { field.positionsReplaced() }
        interactions.positionsReplaced()
        try computeForces(energy: true)
    }

    /// Replaces velocities (nm/ps).
    public func setVelocities(_ velocities: [SIMD3<Float>]) throws {
        guard velocities.count == count else { throw EngineError.invalidSystem("\(velocities.count) velocities for \(count) atoms") }
        guard velocities.allSatisfy({ $0.x.isFinite && $0.y.isFinite && $0.z.isFinite }) else {
            throw EngineError.invalidSystem("velocities must be finite")
        }
        storage.setVelocities(velocities)
        cached = nil
        resetReference()
    }

    /// Draws new Maxwell-Boltzmann velocities at `temperature` (K) for `particles`: each component
    /// normal with sigma = sqrt(kB T / m). The others keep theirs; the total momentum is not
    /// corrected. Deterministic: the numbers depend only on the seed, the current step and the atom
    /// index. Throws `EngineError.invalidParameter` for an index outside `0..<count` or a temperature
    /// that is not positive and finite.
    public func resetVelocities(of particles: [Int], temperature: Double) throws {
        guard temperature > 0, temperature.isFinite else {
            throw EngineError.invalidParameter("temperature for new velocities must be positive and finite, got \(temperature)")
        }
        if let bad = particles.first(where: { $0 < 0 || $0 >= count }) {
            throw EngineError.invalidParameter("particle index \(bad) is out of range 0..<\(count)")
        }
        let kT = Units.boltzmann * temperature
        let stream = Random.velocityResetStream(step: step)
        for p in particles {
            let g = Random.gaussian3(seed: seed, stream: stream, index: UInt64(p))
            let v = g * (kT / Double(storage.mass.pointer[p])).squareRoot()
            storage.vx.pointer[p] = Float(v.x)
            storage.vy.pointer[p] = Float(v.y)
            storage.vz.pointer[p] = Float(v.z)
        }
        cached = nil
    }

    /// The dynamic state as SoA arrays: what a checkpoint or a shared-memory snapshot holds.
    public func dynamicState() -> DynamicState {
        let n = count
        func f(_ b: AlignedBuffer<Float>) -> [Float] { Array(UnsafeBufferPointer(start: b.pointer, count: n)) }
        func i(_ b: AlignedBuffer<Int32>) -> [Int32] { Array(UnsafeBufferPointer(start: b.pointer, count: n)) }
        return DynamicState(step: step, time: time, x: f(storage.x), y: f(storage.y), z: f(storage.z),
                            vx: f(storage.vx), vy: f(storage.vy), vz: f(storage.vz),
                            imageX: i(storage.imageX), imageY: i(storage.imageY), imageZ: i(storage.imageZ))
    }

    /// Continues from a saved dynamic state (step counter, time, positions with their periodic
    /// images, velocities) and recomputes forces. Throws `invalidSystem` for a state of another
    /// size or with non-finite values.
    public func restore(_ s: DynamicState) throws {
        let n = count
        guard [s.x, s.y, s.z, s.vx, s.vy, s.vz].allSatisfy({ $0.count == n }), [s.imageX, s.imageY, s.imageZ].allSatisfy({ $0.count == n }) else {
            throw EngineError.invalidSystem("the saved state is for another number of atoms than \(n)")
        }
        guard s.step >= 0, s.time.isFinite, [s.x, s.y, s.z, s.vx, s.vy, s.vz].allSatisfy({ $0.allSatisfy(\.isFinite) }) else {
            throw EngineError.invalidSystem("the saved state has non-finite values or a negative step")
        }
        storage.setPositions((0..<n).map { SIMD3(s.x[$0], s.y[$0], s.z[$0]) })
        storage.setImages(x: s.imageX, y: s.imageY, z: s.imageZ)
        storage.setVelocities((0..<n).map { SIMD3(s.vx[$0], s.vy[$0], s.vz[$0]) })
        step = s.step
        time = s.time
        for field in forceFields { field.positionsReplaced() }
        interactions.positionsReplaced()
        try computeForces(energy: true)
        resetReference()
    }

    /// Keeps the current state (positions, images, velocities, step, time) in memory as the last
    /// good one, `rollback()`'s target, and makes its kinetic energy the blow-up reference. The
    /// buffers are allocated on the first call; each call copies 36 bytes per atom.
    public func checkpoint() throws {
        if saved == nil { saved = try Checkpoint(count: count) }
        guard let c = saved else { return }
        let n = count
        for (k, b) in [storage.x, storage.y, storage.z, storage.vx, storage.vy, storage.vz].enumerated() {
            c.floats[k].pointer.update(from: b.pointer, count: n)
        }
        for (k, b) in [storage.imageX, storage.imageY, storage.imageZ].enumerated() {
            c.ints[k].pointer.update(from: b.pointer, count: n)
        }
        c.step = step
        c.time = time
        c.kinetic = kineticEnergy
        referenceKinetic = c.kinetic
        updateKineticBound()
    }

    /// The step of the last `checkpoint()`; nil when none was taken.
    public var checkpointStep: Int? { saved?.step }

    /// Returns to the last `checkpoint()`: its positions, images, velocities, step and time (the
    /// step counter goes back to it), and recomputes the forces (with the interactions active
    /// now). Returns the step it went back to; nil (and nothing changes) when no checkpoint was taken.
    @discardableResult
    public func rollback() throws -> Int? {
        guard let c = saved else { return nil }
        let n = count
        for (k, b) in [storage.x, storage.y, storage.z, storage.vx, storage.vy, storage.vz].enumerated() {
            b.pointer.update(from: c.floats[k].pointer, count: n)
        }
        for (k, b) in [storage.imageX, storage.imageY, storage.imageZ].enumerated() {
            b.pointer.update(from: c.ints[k].pointer, count: n)
        }
        step = c.step
        time = c.time
        cached = nil
        for field in forceFields { field.positionsReplaced() }
        interactions.positionsReplaced()
        try computeForces(energy: true)
        referenceKinetic = c.kinetic
        updateKineticBound()
        return c.step
    }

    private func resetReference() {
        referenceKinetic = kineticEnergy
        updateKineticBound()
    }

    /// kineticFactor x max(reference, equipartition at the thermostat's and the floor temperature).
    private func updateKineticBound() {
        guard let g = blowUpGuard else { kineticBound = .infinity; return }
        var thermostat = 0.0
        if case .langevin(_, let t, _) = integrator { thermostat = t }
        let equipartition = 0.5 * Double(degreesOfFreedom) * Units.boltzmann * max(thermostat, g.floorTemperature)
        let reference = referenceKinetic.isFinite ? max(referenceKinetic, equipartition) : equipartition
        kineticBound = g.kineticFactor * reference
    }

    /// Changes the integrator (timestep, thermostat) between steps.
    public func setIntegrator(_ integrator: Integrator) throws {
        try integrator.validate()
        self.integrator = integrator
        updateThermostat()
        cached = nil
        updateKineticBound()
    }

    private func updateThermostat() {
        guard case .langevin(let dt, let t, let friction) = integrator else { return }
        let c1 = exp(-friction * dt)
        let kT = Units.boltzmann * t
        for k in 0..<count {
            storage.sigmaV.pointer[k] = Float(((1 - c1 * c1) * kT * Double(storage.invMass.pointer[k])).squareRoot())
        }
    }

    private func computeForces(energy: Bool) throws {
        qv_zero3(pool.pointer, Int32(count), storage.fx.pointer, storage.fy.pointer, storage.fz.pointer)
        var terms: [(name: String, energy: Double)] = []
        var potential = 0.0
        try withUnsafePointer(to: storage.cState) { statePointer in
            let context = ForceContext(
                count: count,
                x: UnsafeBufferPointer(storage.x.buffer), y: UnsafeBufferPointer(storage.y.buffer), z: UnsafeBufferPointer(storage.z.buffer),
                fx: storage.fx.buffer, fy: storage.fy.buffer, fz: storage.fz.buffer,
                box: storage.box, step: step, computeEnergy: energy, state: statePointer, pool: pool)
            for field in forceFields {
                let e: Double
                do {
                    e = try field.addForces(context)
                } catch let error as EngineError {
                    throw error
                } catch {
                    throw EngineError.forceField(name: field.name, message: String(describing: error))
                }
                if energy {
                    terms.append((field.name, e))
                    potential += e
                }
            }
            _ = try interactions.addForces(context)
        }
        if energy {
            guard potential.isFinite else { throw EngineError.nonFinite(step: step) }
            let kinetic = kineticEnergy
            cached = Energies(step: step, potential: potential, kinetic: kinetic, temperature: temperature(kinetic: kinetic), terms: terms)
        }
    }
}
