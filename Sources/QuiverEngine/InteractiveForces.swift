import Foundation

/// The interactive (user) forces of a simulation: the active `Interaction`s, evaluated every step.
///
/// Add one instance to a simulation's force fields, then `set`, `remove` and `removeAll`
/// interactions between steps (from the thread that drives the simulation: like `Simulation`, this
/// class is not thread-safe). The physics of one interaction is documented on `Interaction`:
/// a force on the centre of mass of its particles (minimum image in the periodic box), split over
/// them by mass or equally, each component on each particle clipped to `±maxForce`.
///
/// Energy and work:
/// - `addForces` adds the user forces but RETURNS 0, so the simulation's potential energy (and its
///   total energy) stays the physical one. The user energy of the last evaluation, from the
///   closed-form formulas and independent of clipping, is `energy`.
/// - `work` is the cumulative work done on the atoms by the forces actually applied (clipped), by the
///   trapezoidal rule between consecutive evaluations: for each particle of each interaction that
///   was present at the previous evaluation, `0.5 * (F_prev + F_now) · Δx`, with Δx the
///   minimum-image displacement since then. A new interaction adds nothing at its first
///   evaluation, nor do repeated evaluations at the same positions. Positions replaced from
///   outside (`Simulation.setPositions`, `restore`) start the bookkeeping afresh: a jump is no path.
///   Under NVE the change of the simulation's total energy follows `work`.
///
/// All arithmetic is in double precision; the per-step path allocates nothing once its buffers have
/// grown to the active interactions.
public final class InteractiveForces: ForceField {
    /// One active interaction and its buffers (index-aligned with `interaction.particles`).
    private final class Active {
        let interaction: Interaction
        /// Mass fractions m_i / M (centre of mass).
        var massFraction: [Double]
        /// Share of the centre-of-mass force each particle gets (mass fraction or 1/n).
        var share: [Double]
        /// Positions (as the simulation held them, possibly wrapped) at the previous evaluation.
        var previousPosition: [SIMD3<Double>]
        /// Clipped force applied to each particle at the previous evaluation.
        var previousForce: [SIMD3<Double>]
        /// Whether the particle has a previous evaluation to integrate the work from.
        var hasPrevious: [Bool]

        init(_ interaction: Interaction, masses: [Double]) {
            self.interaction = interaction
            let n = interaction.particles.count
            massFraction = []
            share = []
            previousPosition = Array(repeating: .zero, count: n)
            previousForce = Array(repeating: .zero, count: n)
            hasPrevious = Array(repeating: false, count: n)
            updateWeights(masses: masses)
        }

        func updateWeights(masses: [Double]) {
            let particles = interaction.particles
            var total = 0.0
            for p in particles { total += masses[p] }
            massFraction = particles.map { masses[$0] / total }
            share = interaction.massWeighted ? massFraction : Array(repeating: 1 / Double(particles.count), count: particles.count)
        }

        /// Carries the work bookkeeping of the particles `old` shares with this one.
        func continueFrom(_ old: Active) {
            var slot: [Int: Int] = [:]
            for (k, p) in old.interaction.particles.enumerated() where old.hasPrevious[k] { slot[p] = k }
            for (k, p) in interaction.particles.enumerated() {
                guard let j = slot[p] else { continue }
                previousPosition[k] = old.previousPosition[j]
                previousForce[k] = old.previousForce[j]
                hasPrevious[k] = true
            }
        }
    }

    public var name: String { "interactive" }

    private var active: [Active] = []
    private var masses: [Double] = []
    private var atomCount: Int?
    /// Applied forces of the last evaluation, one entry per particle per interaction (unsorted).
    private var lastForces: [(index: Int, force: SIMD3<Double>)] = []

    /// Whether interactions were set or removed since the last evaluation (the forces held by the
    /// simulation are then those of the previous set; `Simulation.applyInteractionChanges`).
    public private(set) var changedSinceEvaluation = false

    /// User energy of the last evaluation, kJ/mol: the sum of the interactions' energies from their
    /// formulas (not reduced by clipping). Not part of the simulation's potential energy.
    public private(set) var energy: Double = 0

    /// Cumulative work done by the applied (clipped) user forces on the atoms, kJ/mol. Settable so a
    /// restarted engine can continue the count.
    public var work: Double = 0

    public init() {}

    /// The active interactions, in the order they were first set.
    public var interactions: [Interaction] { active.map(\.interaction) }

    /// Adds `interaction`, or replaces the active one with the same id (in place, keeping the work
    /// bookkeeping of the particles both share). Throws `EngineError.invalidParameter` when the
    /// interaction is invalid for the simulation's system (`Interaction.validate(atomCount:)`), or
    /// when this force field has not joined a simulation yet.
    public func set(_ interaction: Interaction) throws {
        guard let atomCount else {
            throw EngineError.invalidParameter("interaction '\(interaction.id)': the interactive force field has not joined a simulation yet (create the Simulation with it first)")
        }
        try interaction.validate(atomCount: atomCount)
        let entry = Active(interaction, masses: masses)
        changedSinceEvaluation = true
        if let k = active.firstIndex(where: { $0.interaction.id == interaction.id }) {
            entry.continueFrom(active[k])
            active[k] = entry
        } else {
            active.append(entry)
        }
    }

    /// Removes the interaction with this id and returns it; nil when there is none.
    @discardableResult
    public func remove(id: String) -> Interaction? {
        guard let k = active.firstIndex(where: { $0.interaction.id == id }) else { return nil }
        changedSinceEvaluation = true
        return active.remove(at: k).interaction
    }

    /// Removes every interaction and returns them, in order.
    @discardableResult
    public func removeAll() -> [Interaction] {
        let all = interactions
        if !active.isEmpty { changedSinceEvaluation = true }
        active.removeAll()
        return all
    }

    /// The forces applied at the last evaluation, kJ/mol/nm: one entry per affected atom (summed
    /// where interactions overlap), sorted by atom index. Empty when no interaction was active.
    public func userForces() -> [(index: Int, force: SIMD3<Float>)] {
        let sorted = lastForces.sorted { $0.index < $1.index }
        var out: [(index: Int, force: SIMD3<Float>)] = []
        out.reserveCapacity(sorted.count)
        var k = 0
        while k < sorted.count {
            let index = sorted[k].index
            var sum = SIMD3<Double>.zero
            while k < sorted.count && sorted[k].index == index {
                sum += sorted[k].force
                k += 1
            }
            out.append((index, SIMD3<Float>(sum)))
        }
        return out
    }

    public func prepare(_ setup: ForceFieldSetup) throws {
        try prepare(masses: setup.system.masses)
    }

    /// For a `Dynamics` of your own: joins a system of `masses.count` atoms with these masses (amu).
    /// Call it once before the first `set`, and again if the atoms change.
    public func prepare(masses: [Float]) throws {
        for entry in active { try entry.interaction.validate(atomCount: masses.count) }
        guard masses.allSatisfy({ $0 > 0 && $0.isFinite }) else { throw EngineError.invalidParameter("interactive forces: every mass must be positive and finite") }
        self.masses = masses.map(Double.init)
        atomCount = masses.count
        for entry in active {
            entry.updateWeights(masses: self.masses)
            for k in entry.hasPrevious.indices { entry.hasPrevious[k] = false }
        }
        lastForces.removeAll(keepingCapacity: true)
        energy = 0
    }

    public func positionsReplaced() {
        for entry in active {
            for k in entry.hasPrevious.indices { entry.hasPrevious[k] = false }
        }
    }

    /// Adds the user forces and returns 0 (see the type's documentation: the user energy is
    /// `energy`, not part of the potential energy).
    public func addForces(_ context: ForceContext) throws -> Double {
        addForces(x: context.x, y: context.y, z: context.z, fx: context.fx, fy: context.fy, fz: context.fz, box: context.box)
        return 0
    }

    /// For a `Dynamics` of your own: adds the interactive forces (kJ/mol/nm) at positions `x, y, z`
    /// (nm) to `fx, fy, fz` on every step, updates `energy`, `work` and `userForces()`. The arrays
    /// hold the `prepare(masses:)` atoms, in the same order.
    public func addForces(x: UnsafeBufferPointer<Float>, y: UnsafeBufferPointer<Float>, z: UnsafeBufferPointer<Float>,
                          fx: UnsafeMutableBufferPointer<Float>, fy: UnsafeMutableBufferPointer<Float>, fz: UnsafeMutableBufferPointer<Float>,
                          box b: Box) {
        changedSinceEvaluation = false
        guard !active.isEmpty else {
            lastForces.removeAll(keepingCapacity: true)
            energy = 0
            return
        }
        precondition(x.count == masses.count && y.count == x.count && z.count == x.count && fx.count == x.count && fy.count == x.count && fz.count == x.count,
                     "interactive forces: arrays of \(x.count) atoms for a system of \(masses.count) (call prepare(masses:) first)")
        lastForces.removeAll(keepingCapacity: true)
        var totalEnergy = 0.0
        var workDone = 0.0
        let box = SIMD3<Double>(b.x, b.y, b.z)
        for entry in active {
            let interaction = entry.interaction
            let particles = interaction.particles
            let n = particles.count
            // Centre of mass: unwrap every particle next to the first with the minimum image.
            let p0 = particles[0]
            let r0 = SIMD3<Double>(Double(x[p0]), Double(y[p0]), Double(z[p0]))
            var offset = SIMD3<Double>.zero
            entry.massFraction.withUnsafeBufferPointer { fraction in
                for k in 1..<n {
                    let p = particles[k]
                    let r = SIMD3<Double>(Double(x[p]), Double(y[p]), Double(z[p]))
                    offset += fraction[k] * Self.minimumImage(r - r0, box)
                }
            }
            let com = r0 + offset
            let d = Self.minimumImage(com - interaction.position, box)
            let (e, force) = Self.evaluate(interaction.kind, scale: interaction.scale, d: d)
            totalEnergy += e
            let limit = interaction.maxForce
            for k in 0..<n {
                let p = particles[k]
                var f = force * entry.share[k]
                f = SIMD3(min(max(f.x, -limit), limit), min(max(f.y, -limit), limit), min(max(f.z, -limit), limit))
                fx[p] += Float(f.x)
                fy[p] += Float(f.y)
                fz[p] += Float(f.z)
                let r = SIMD3<Double>(Double(x[p]), Double(y[p]), Double(z[p]))
                if entry.hasPrevious[k] {
                    let dx = Self.minimumImage(r - entry.previousPosition[k], box)
                    workDone += 0.5 * ((entry.previousForce[k] + f) * dx).sum()
                }
                entry.previousPosition[k] = r
                entry.previousForce[k] = f
                entry.hasPrevious[k] = true
                lastForces.append((p, f))
            }
        }
        energy = totalEnergy
        work += workDone
    }

    /// Takes the forces of the last evaluation back out of `fx, fy, fz` (before evaluating a changed
    /// set of interactions at the same positions).
    public func subtractLastForces(fx: UnsafeMutableBufferPointer<Float>, fy: UnsafeMutableBufferPointer<Float>, fz: UnsafeMutableBufferPointer<Float>) {
        for (p, f) in lastForces where p < fx.count {
            fx[p] -= Float(f.x)
            fy[p] -= Float(f.y)
            fz[p] -= Float(f.z)
        }
        lastForces.removeAll(keepingCapacity: true)
    }

    /// Energy (kJ/mol) and force on the centre of mass (kJ/mol/nm) for the vector `d` from the
    /// target to the centre of mass (the formulas documented on `Interaction`).
    static func evaluate(_ kind: Interaction.Kind, scale s: Double, d: SIMD3<Double>) -> (energy: Double, force: SIMD3<Double>) {
        let r2 = (d * d).sum()
        switch kind {
        case .gaussian:
            // sigma = 1 nm
            let g = exp(-0.5 * r2)
            return (-s * g, -s * g * d)
        case .spring:
            return (0.5 * s * r2, -s * d)
        case .constant:
            let r = r2.squareRoot()
            return r > 0 ? (s * r, -s / r * d) : (0, .zero)
        }
    }

    @inline(__always)
    static func minimumImage(_ v: SIMD3<Double>, _ box: SIMD3<Double>) -> SIMD3<Double> {
        v - box * (v / box).rounded(.toNearestOrEven)
    }
}
