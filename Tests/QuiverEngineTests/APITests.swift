import Foundation
import Testing
import QuiverEngine

/// A harmonic tether of every atom to a fixed point: E = k/2 sum |r_i - c|^2 (no periodic image).
final class Tether: ForceField {
    let k: Double
    let center: SIMD3<Float>
    var evaluations = 0
    var prepared = false
    var name: String { "tether" }
    init(k: Double, center: SIMD3<Float>) { self.k = k; self.center = center }
    func prepare(_ setup: ForceFieldSetup) throws { prepared = true }
    func addForces(_ c: ForceContext) throws -> Double {
        evaluations += 1
        var e = 0.0
        for i in 0..<c.count {
            let d = SIMD3<Float>(c.x[i], c.y[i], c.z[i]) - center
            c.fx[i] -= Float(k) * d.x
            c.fy[i] -= Float(k) * d.y
            c.fz[i] -= Float(k) * d.z
            e += 0.5 * k * Double((d * d).sum())
        }
        return e
    }
}

struct Failing: Error {}
final class FailingField: ForceField {
    var name: String { "failing" }
    func addForces(_ context: ForceContext) throws -> Double { throw Failing() }
}

@Suite("Engine API")
struct APITests {
    @Test("custom force fields add to the built-in LJ: forces and energies sum")
    func forceFieldsAddUp() throws {
        let setup = try BuiltinSystems.lennardJonesBench(cells: 4)
        let tether = Tether(k: 3.5, center: [1, 2, 3])
        let combined = try setup.makeSimulation(options: SimulationOptions(threads: 1), extraForceFields: [tether])
        let ljOnly = try setup.makeSimulation(options: SimulationOptions(threads: 1))
        #expect(tether.prepared)
        let fc = combined.forces(), fl = ljOnly.forces()
        let positions = setup.system.positions
        for i in 0..<combined.count {
            let expected = fl[i] - Float(3.5) * (positions[i] - SIMD3<Float>(1, 2, 3))
            #expect(simd_length(fc[i] - expected) <= 1e-4 * max(1, simd_length(expected)))
        }
        let ec = try combined.energies(), el = try ljOnly.energies()
        #expect(ec.terms.map(\.name) == ["lennard-jones", "tether"])
        #expect(abs(ec.terms[0].energy - el.potential) < 1e-9 * abs(el.potential))
        #expect(abs(ec.potential - ec.terms[0].energy - ec.terms[1].energy) < 1e-9 * abs(ec.potential))
        try combined.run(steps: 5)
        #expect(tether.evaluations >= 6)
    }

    @Test("a failing custom force field surfaces as an error naming it")
    func failingForceField() throws {
        let setup = try BuiltinSystems.lennardJonesBench(cells: 4)
        #expect(throws: EngineError.forceField(name: "failing", message: "Failing()")) {
            _ = try setup.makeSimulation(extraForceFields: [FailingField()])
        }
    }

    @Test("invalid systems and parameters are rejected with a clear error")
    func validation() throws {
        let ok = ParticleSystem(positions: [[0, 0, 0], [1.5, 0, 0]], masses: [1, 1], box: Box(cube: 6))
        let params = LennardJones.Parameters(epsilon: 1, sigma: 1, cutoff: 2.5, skin: 0.3)
        func fails(_ system: ParticleSystem, _ integrator: Integrator = .velocityVerlet(timestep: 0.001),
                   _ p: LennardJones.Parameters? = nil, threads: Int = 1) -> EngineError? {
            do {
                _ = try Simulation(system: system, forceFields: [LennardJones(p ?? params)], integrator: integrator,
                                   options: SimulationOptions(threads: threads))
                return nil
            } catch let e as EngineError { return e } catch { return nil }
        }
        #expect(fails(ok) == nil)
        var s = ok; s.masses = [1]
        #expect(fails(s) == .invalidSystem("1 masses for 2 atoms"))
        s = ok; s.masses = [1, -2]
        #expect(fails(s) == .invalidSystem("mass of atom 1 must be positive, got -2.0"))
        s = ok; s.positions[0].y = .nan
        #expect(fails(s) == .invalidSystem("position of atom 0 is not finite"))
        s = ok; s.types = [0, 3]
        #expect(fails(s) == .invalidSystem("type 3 of atom 1 is not in 0..<1"))
        s = ok; s.box = Box(x: 6, y: -1, z: 6)
        if case .invalidSystem = fails(s) {} else { Issue.record("negative box accepted") }
        #expect(fails(ParticleSystem(positions: [], masses: [], box: Box(cube: 6))) == .invalidSystem("no atoms"))
        #expect(fails(ok, .velocityVerlet(timestep: 0)) == .invalidParameter("timestep must be in (0, 1) ps, got 0.0"))
        #expect(fails(ok, .langevin(timestep: 0.002, temperature: -5, friction: 1)) == .invalidParameter("temperature must be >= 0 K, got -5.0"))
        #expect(fails(ok, .langevin(timestep: 0.002, temperature: 300, friction: .nan)) != nil)
        #expect(fails(ok, threads: 0) == .invalidParameter("threads must be in 1...1024, got 0"))
        var bad = params; bad.cutoff = -1
        #expect(fails(ok, .velocityVerlet(timestep: 0.001), bad) == .invalidParameter("LJ cutoff must be positive, got -1.0"))
        bad = params; bad.epsilon = [1, 2]
        #expect(fails(ok, .velocityVerlet(timestep: 0.001), bad) != nil)
        let sim = try Simulation(system: ok, forceFields: [LennardJones(params)], integrator: .velocityVerlet(timestep: 0.001))
        #expect(throws: EngineError.self) { try sim.setPositions([[0, 0, 0]]) }
        #expect(throws: EngineError.self) { try sim.setVelocities([[0, 0, 0], [.infinity, 0, 0]]) }
        #expect(throws: EngineError.self) { try sim.run(steps: -1) }
    }

    @Test("kernel selection: auto picks the best supported variant")
    func kernelSelection() throws {
        #expect(try KernelVariant.auto.resolved() == KernelVariant.best)
        #expect(try KernelVariant.scalar.resolved() == .scalar)
        if KernelVariant.avx2.isSupported {
            #expect(KernelVariant.best == .avx2)
        } else {
            #expect(throws: EngineError.self) { try KernelVariant.avx2.resolved() }
        }
        #expect(Machine.availableCores >= 1)
    }

    @Test("the fcc builder reproduces in.lj's lattice and the default system is sane")
    func builders() throws {
        let lj = try BuiltinSystems.lennardJonesBench(cells: 3)
        #expect(lj.system.count == 108)
        #expect(abs(lj.system.box.x - 3 * pow(4 / 0.8442, 1.0 / 3)) < 1e-9)
        let argon = try BuiltinSystems.argonLiquid()
        #expect(argon.system.count == 4000)
        #expect(argon.integrator.temperature == 94.4)
        let sim = try argon.makeSimulation(options: SimulationOptions(threads: 1))
        try sim.run(steps: 20, energy: true)
        #expect(try sim.energies().potential < 0)
        #expect(throws: EngineError.self) { _ = try BuiltinSystems.fccLattice(cells: (0, 1, 1), latticeConstant: 1) }
    }
}
