import QuiverEngine

/// Harmonic position restraints, a custom force field written in Swift:
///
///     E = sum over restrained atoms i of  k/2 |r_i - r0_i|^2      F_i = -k (r_i - r0_i)
///
/// with the minimum image in the periodic box, so an atom that crossed the boundary is still held
/// to its reference. The reference positions are the atoms' positions when the simulation is
/// created (or given explicitly). Plug it into a simulation next to the built-in force fields:
///
///     let restraints = PositionRestraints(atoms: Array(0..<10), k: 5000)
///     let sim = try setup.makeSimulation(extraForceFields: [restraints])
public final class PositionRestraints: ForceField {
    public let name = "restraints"
    public let atoms: [Int]
    /// Force constant, kJ/mol/nm^2.
    public let k: Double
    /// Reference positions (nm) of `atoms`, in the same order; taken in `prepare` when not given.
    public private(set) var reference: [SIMD3<Double>]

    public init(atoms: [Int], k: Double, reference: [SIMD3<Double>]? = nil) {
        self.atoms = atoms
        self.k = k
        self.reference = reference ?? []
    }

    /// Checks the atoms and the force constant against the system, and takes the reference positions.
    public func prepare(_ setup: ForceFieldSetup) throws {
        let n = setup.system.count
        guard k >= 0, k.isFinite else { throw EngineError.invalidParameter("restraints: k must be finite and >= 0, got \(k)") }
        if let bad = atoms.first(where: { $0 < 0 || $0 >= n }) {
            throw EngineError.invalidParameter("restraints: atom \(bad) is not in 0..<\(n)")
        }
        guard Set(atoms).count == atoms.count else { throw EngineError.invalidParameter("restraints: an atom is listed twice") }
        if reference.isEmpty {
            reference = atoms.map { SIMD3<Double>(setup.system.positions[$0]) }
        } else if reference.count != atoms.count {
            throw EngineError.invalidParameter("restraints: \(reference.count) reference positions for \(atoms.count) atoms")
        }
    }

    public func addForces(_ c: ForceContext) throws -> Double {
        let box = SIMD3(c.box.x, c.box.y, c.box.z)
        var energy = 0.0
        for (n, i) in atoms.enumerated() {
            var d = SIMD3(Double(c.x[i]), Double(c.y[i]), Double(c.z[i])) - reference[n]
            d -= box * (d / box).rounded(.toNearestOrEven) // minimum image
            c.fx[i] += Float(-k * d.x)
            c.fy[i] += Float(-k * d.y)
            c.fz[i] += Float(-k * d.z)
            energy += 0.5 * k * (d * d).sum()
        }
        return energy
    }
}
