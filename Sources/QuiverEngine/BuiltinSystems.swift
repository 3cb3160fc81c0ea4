import Foundation

/// A ready-to-run setup: a system, its force field parameters and an integrator.
public struct SimulationSetup: Sendable {
    public var name: String
    public var system: ParticleSystem
    public var lennardJones: LennardJones.Parameters
    public var integrator: Integrator

    /// Builds the simulation (the LJ force field plus any `extraForceFields`).
    public func makeSimulation(options: SimulationOptions = SimulationOptions(), extraForceFields: [any ForceField] = []) throws -> Simulation {
        try Simulation(system: system, forceFields: [LennardJones(lennardJones)] + extraForceFields,
                       integrator: integrator, options: options)
    }
}

/// Lattices and the systems that ship with Quiver.
public enum BuiltinSystems {
    /// Face-centred cubic lattice of `cells` unit cells per edge with lattice constant `a` (nm):
    /// 4 cells^3 sites, basis (0,0,0), (1/2,1/2,0), (1/2,0,1/2), (0,1/2,1/2), in LAMMPS's order.
    public static func fccLattice(cells: (Int, Int, Int), latticeConstant a: Double) throws -> (positions: [SIMD3<Float>], box: Box) {
        let (nx, ny, nz) = cells
        guard nx >= 1, ny >= 1, nz >= 1 else { throw EngineError.invalidParameter("lattice needs at least one cell per edge, got \(cells)") }
        guard 4 * nx * ny * nz <= 64_000_000 else { throw EngineError.invalidParameter("lattice of \(4 * nx * ny * nz) atoms is too large") }
        guard a > 0, a.isFinite else { throw EngineError.invalidParameter("lattice constant must be positive, got \(a)") }
        let basis: [SIMD3<Double>] = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
        var positions: [SIMD3<Float>] = []
        positions.reserveCapacity(4 * nx * ny * nz)
        for k in 0..<nz { for j in 0..<ny { for i in 0..<nx {
            for b in basis {
                let p = (SIMD3<Double>(Double(i), Double(j), Double(k)) + b) * a
                positions.append(SIMD3<Float>(p))
            }
        } } }
        return (positions, Box(x: Double(nx) * a, y: Double(ny) * a, z: Double(nz) * a))
    }

    /// LAMMPS `bench/in.lj` in canonical units (sigma = 1 nm, epsilon = 1 kJ/mol, m = 1 amu, so
    /// tau = 1 ps): fcc at reduced density 0.8442, T* = 1.44 with zero total momentum, cutoff 2.5,
    /// skin 0.3, dt 0.005, NVE. `cells` unit cells per edge, 4 cells^3 atoms.
    public static func lennardJonesBench(cells: Int, seed: UInt64 = 87287) throws -> SimulationSetup {
        let density = 0.8442
        let a = pow(4.0 / density, 1.0 / 3.0)
        let lattice = try fccLattice(cells: (cells, cells, cells), latticeConstant: a)
        var system = ParticleSystem(positions: lattice.positions, masses: Array(repeating: 1, count: lattice.positions.count),
                                    typeNames: ["LJ"], box: lattice.box)
        system.assignVelocities(temperature: reducedTemperature(1.44, epsilon: 1), seed: seed)
        return SimulationSetup(
            name: "lj", system: system,
            lennardJones: LennardJones.Parameters(epsilon: 1, sigma: 1, cutoff: 2.5, skin: 0.3, shift: false),
            integrator: .velocityVerlet(timestep: 0.005))
    }

    /// The system `quiver run` uses with no input: liquid argon (Rahman 1964: 94.4 K, 1.374 g/cm^3),
    /// sigma 0.3405 nm, eps/kB 120 K, m 39.948 amu, shifted cutoff 2.5 sigma, Langevin at 94.4 K with
    /// friction 1/ps and a 10 fs step. `cells` fcc unit cells per edge (4 cells^3 atoms; 10 gives 4000).
    public static func argonLiquid(cells: Int = 10, seed: UInt64 = 2024) throws -> SimulationSetup {
        let mass = 39.948
        let sigma = 0.3405
        let epsilon = 120.0 * Units.boltzmann
        let gramsPerCm3 = 1.374
        let numberDensity = gramsPerCm3 / mass * 6.02214076e23 * 1e-21 // atoms / nm^3
        let a = pow(4.0 / numberDensity, 1.0 / 3.0)
        let lattice = try fccLattice(cells: (cells, cells, cells), latticeConstant: a)
        let temperature = 94.4
        var system = ParticleSystem(positions: lattice.positions, masses: Array(repeating: Float(mass), count: lattice.positions.count),
                                    typeNames: ["Ar"], box: lattice.box)
        system.assignVelocities(temperature: temperature, seed: seed)
        return SimulationSetup(
            name: "argon", system: system,
            lennardJones: LennardJones.Parameters(epsilon: epsilon, sigma: sigma, cutoff: 2.5 * sigma, skin: 0.1, shift: true),
            integrator: .langevin(timestep: 0.01, temperature: temperature, friction: 1.0))
    }

    /// Kelvin for a reduced LJ temperature T* = kB T / epsilon (epsilon in kJ/mol).
    public static func reducedTemperature(_ reduced: Double, epsilon: Double) -> Double {
        reduced * epsilon / Units.boltzmann
    }
}
