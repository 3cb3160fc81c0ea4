import Foundation
import Testing
import QuiverEngine

/// A simulation whose only force field is the interactive one, so `forces()` are the user forces.
private func userOnly(_ positions: [SIMD3<Float>], masses: [Float], box: Box = Box(cube: 10)) throws -> (Simulation, InteractiveForces) {
    let user = InteractiveForces()
    let system = ParticleSystem(positions: positions, masses: masses, box: box)
    let sim = try Simulation(system: system, forceFields: [user], integrator: .velocityVerlet(timestep: 0.001),
                             options: SimulationOptions(threads: 1, seed: 11))
    return (sim, user)
}

private func spring(_ id: String, _ particles: [Int], to target: SIMD3<Double>, scale: Double, massWeighted: Bool = true,
                    maxForce: Double = Interaction.defaultMaxForce) -> Interaction {
    Interaction(id: id, kind: .spring, position: target, particles: particles, scale: scale, massWeighted: massWeighted, maxForce: maxForce)
}

/// Expects `a` == `b` component-wise within `tolerance` (absolute).
private func expectClose(_ a: SIMD3<Float>, _ b: SIMD3<Double>, _ tolerance: Double = 1e-5, _ what: String = "",
                         sourceLocation: SourceLocation = #_sourceLocation) {
    let d = SIMD3<Double>(a) - b
    #expect(max(abs(d.x), abs(d.y), abs(d.z)) <= tolerance, "\(what): got \(a), expected \(b)", sourceLocation: sourceLocation)
}

private func expectClose(_ a: Double, _ b: Double, _ tolerance: Double = 1e-9, _ what: String = "",
                         sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(abs(a - b) <= tolerance, "\(what): got \(a), expected \(b)", sourceLocation: sourceLocation)
}

/// Centre of mass of `particles` with the minimum image, computed independently of the engine.
private func centreOfMass(_ sim: Simulation, _ particles: [Int], masses: [Double]) -> SIMD3<Double> {
    let p = sim.unwrappedPositions()
    let box = SIMD3<Double>(sim.box.x, sim.box.y, sim.box.z)
    let r0 = p[particles[0]]
    var sum = SIMD3<Double>.zero, total = 0.0
    for (k, i) in particles.enumerated() {
        var d = p[i] - r0
        d -= box * (d / box).rounded(.toNearestOrEven)
        sum += masses[k] * (r0 + d)
        total += masses[k]
    }
    return sum / total
}

@Suite("Interactive forces")
struct InteractiveForceTests {
    @Test("spring: closed form; mass-weighted split versus equal split")
    func springClosedForm() throws {
        // masses 1 and 3: centre of mass (1.75, 1, 1); target (0.75, 1, 1): d = (1, 0, 0);
        // s = 2: E = s |d|^2 / 2 = 1, F = -s d = (-2, 0, 0).
        let (sim, user) = try userOnly([[1, 1, 1], [2, 1, 1], [5, 5, 5]], masses: [1, 3, 7])
        try user.set(spring("s", [0, 1], to: [0.75, 1, 1], scale: 2))
        try sim.evaluateForces()
        var f = sim.forces()
        expectClose(f[0], [-0.5, 0, 0], 1e-6, "mass-weighted, atom 0 (1/4 of F)")
        expectClose(f[1], [-1.5, 0, 0], 1e-6, "mass-weighted, atom 1 (3/4 of F)")
        expectClose(f[2], .zero, 0, "atom outside the interaction")
        expectClose(user.energy, 1.0, 1e-12, "energy")
        #expect(try sim.energies().potential == 0, "the user energy is not potential energy")

        try user.set(spring("s", [0, 1], to: [0.75, 1, 1], scale: 2, massWeighted: false))
        try sim.evaluateForces()
        f = sim.forces()
        expectClose(f[0], [-1, 0, 0], 1e-6, "equal split, atom 0")
        expectClose(f[1], [-1, 0, 0], 1e-6, "equal split, atom 1")
        expectClose(user.energy, 1.0, 1e-12, "energy does not depend on the split")
        #expect(user.interactions.count == 1, "the same id replaces")
    }

    @Test("gaussian: closed form (sigma = 1 nm)")
    func gaussianClosedForm() throws {
        // One atom at (2, 3, 4), target (1, 1, 2): d = (1, 2, 2), |d|^2 = 9; s = 3:
        // E = -3 exp(-4.5) = -0.033326989614726918, F = -3 exp(-4.5) d.
        let (sim, user) = try userOnly([[2, 3, 4], [6, 6, 6]], masses: [12, 1])
        try user.set(Interaction(id: "g", kind: .gaussian, position: [1, 1, 2], particles: [0], scale: 3))
        try sim.evaluateForces()
        let e45 = 0.011108996538242306
        expectClose(user.energy, -3 * e45, 1e-15, "energy")
        expectClose(user.energy, -0.033326989614726918, 1e-15, "energy, hand value")
        expectClose(sim.forces()[0], [-0.033326989614726918, -0.066653979229453836, -0.066653979229453836], 1e-8, "force")
        let u = user.userForces()
        #expect(u.map(\.index) == [0])
    }

    @Test("constant: closed form, zero at the target")
    func constantClosedForm() throws {
        // centre of mass of atoms 0 and 1 (equal masses): (4, 5, 1); target (1, 1, 1): d = (3, 4, 0), |d| = 5;
        // s = 10: E = 50, F = -10 d / |d| = (-6, -8, 0), equal split (-3, -4, 0).
        let (sim, user) = try userOnly([[3, 5, 1], [5, 5, 1]], masses: [2, 2])
        try user.set(Interaction(id: "c", kind: .constant, position: [1, 1, 1], particles: [0, 1], scale: 10))
        try sim.evaluateForces()
        expectClose(user.energy, 50, 1e-12, "energy")
        expectClose(sim.forces()[0], [-3, -4, 0], 1e-6, "atom 0")
        expectClose(sim.forces()[1], [-3, -4, 0], 1e-6, "atom 1")
        try user.set(Interaction(id: "c", kind: .constant, position: [4, 5, 1], particles: [0, 1], scale: 10))
        try sim.evaluateForces()
        expectClose(user.energy, 0, 0, "energy at d = 0")
        expectClose(sim.forces()[0], .zero, 0, "no force at d = 0")
    }

    @Test("periodic box: particles straddling the edge, target on the other side or outside the box")
    func periodic() throws {
        // Box 4 nm. Atom 0 at x = 0.1 (mass 1), atom 1 at x = 3.9 (mass 3), i.e. at -0.1 next to atom 0:
        // centre of mass x = (0.1 - 0.3) / 4 = -0.05, so com = (-0.05, 1, 1).
        // Target (3.45, 1, 1.5): com - target = (-3.5, 0, -0.5) -> minimum image d = (0.5, 0, -0.5).
        // s = 4: F = (-2, 0, 2), E = 4 * 0.5 / 2 = 1; mass-weighted 1/4 and 3/4.
        let box = Box(cube: 4)
        for atom1 in [SIMD3<Float>(3.9, 1, 1), SIMD3<Float>(-0.1, 1, 1), SIMD3<Float>(7.9, 5, -3)] {
            for target in [SIMD3<Double>(3.45, 1, 1.5), SIMD3<Double>(-0.55, 1, 1.5), SIMD3<Double>(7.45, 1, -2.5)] {
                let (sim, user) = try userOnly([[0.1, 1, 1], atom1], masses: [1, 3], box: box)
                try user.set(spring("p", [0, 1], to: target, scale: 4))
                try sim.evaluateForces()
                let f = sim.forces()
                expectClose(f[0], [-0.5, 0, 0.5], 1e-5, "atom 0, atom 1 at \(atom1), target \(target)")
                expectClose(f[1], [-1.5, 0, 1.5], 1e-5, "atom 1 at \(atom1), target \(target)")
                expectClose(user.energy, 1.0, 1e-5, "energy, atom 1 at \(atom1), target \(target)")
            }
        }
        // The order of the particles does not matter (unwrapping starts from another atom).
        let (sim, user) = try userOnly([[0.1, 1, 1], [3.9, 1, 1]], masses: [1, 3], box: box)
        try user.set(spring("p", [1, 0], to: [3.45, 1, 1.5], scale: 4))
        try sim.evaluateForces()
        expectClose(sim.forces()[0], [-0.5, 0, 0.5], 1e-5, "reversed order, atom 0")
        expectClose(sim.forces()[1], [-1.5, 0, 1.5], 1e-5, "reversed order, atom 1")
    }

    @Test("max_force clips every component on every particle; the energy is not clipped")
    func clipping() throws {
        // Equal split over 2 atoms of F = -s d with s = 100, d = (2, -0.2, 0.5): F = (-200, 20, -50),
        // per atom (-100, 10, -25); maxForce 20 -> (-20, 10, -20).
        let (sim, user) = try userOnly([[1, 1, 1], [3, 1, 1]], masses: [1, 1])
        try user.set(spring("big", [0, 1], to: [0, 1.2, 0.5], scale: 100, massWeighted: false, maxForce: 20))
        try sim.evaluateForces()
        expectClose(sim.forces()[0], [-20, 10, -20], 1e-5, "atom 0")
        expectClose(sim.forces()[1], [-20, 10, -20], 1e-5, "atom 1")
        expectClose(user.energy, 0.5 * 100 * (4 + 0.04 + 0.25), 1e-9, "energy from the formula")
        let u = user.userForces()
        #expect(u.count == 2)
        expectClose(u[1].force, [-20, 10, -20], 1e-5, "userForces reports the applied force")
    }

    @Test("several interactions at once, overlapping atoms: forces and energies add")
    func several() throws {
        let (sim, user) = try userOnly([[1, 1, 1], [2, 1, 1], [3, 1, 1], [8, 8, 8]], masses: [1, 1, 1, 1])
        // a: atoms 0, 1 (com (1.5, 1, 1)), target (1.5, 0, 1): d = (0, 1, 0), s = 2 -> F = (0, -2, 0), E = 1
        // b: atoms 2, 1 (com (2.5, 1, 1)), target (2.5, 1, 3): d = (0, 0, -2), s = 1 -> F = (0, 0, 2), E = 2
        // c: atom 3, gaussian at its own position: F = 0, E = -0.5
        try user.set(spring("a", [0, 1], to: [1.5, 0, 1], scale: 2))
        try user.set(spring("b", [2, 1], to: [2.5, 1, 3], scale: 1))
        try user.set(Interaction(id: "c", kind: .gaussian, position: [8, 8, 8], particles: [3], scale: 0.5))
        try sim.evaluateForces()
        let f = sim.forces()
        expectClose(f[0], [0, -1, 0], 1e-6, "atom 0: a only")
        expectClose(f[1], [0, -1, 1], 1e-6, "atom 1: a and b")
        expectClose(f[2], [0, 0, 1], 1e-6, "atom 2: b only")
        expectClose(f[3], .zero, 1e-7, "atom 3: at the gaussian's centre")
        expectClose(user.energy, 1 + 2 - 0.5, 1e-12, "energies add")
        let u = user.userForces()
        #expect(u.map(\.index) == [0, 1, 2, 3], "one entry per atom, sorted")
        for (i, entry) in u.enumerated() { expectClose(entry.force, SIMD3<Double>(f[entry.index]), 1e-6, "userForces[\(i)]") }
        #expect(user.interactions.map(\.id) == ["a", "b", "c"])
        try user.set(spring("a", [0, 1], to: [1.5, 0, 1], scale: 4))
        #expect(user.interactions.map(\.id) == ["a", "b", "c"], "replacing keeps the order")
        #expect(user.interactions[0].scale == 4)
        #expect(user.remove(id: "b")?.id == "b")
        #expect(user.remove(id: "b") == nil)
        #expect(user.interactions.map(\.id) == ["a", "c"])
        #expect(user.userForces().count == 4, "userForces describes the last evaluation")
        #expect(user.removeAll().map(\.id) == ["a", "c"])
        try sim.evaluateForces()
        #expect(user.userForces().isEmpty)
        #expect(user.energy == 0)
        #expect(sim.forces().allSatisfy { $0 == .zero })
    }

    @Test("invalid interactions are rejected with a clear error and change nothing")
    func validation() throws {
        #expect(throws: EngineError.invalidParameter("interaction 'early': the interactive force field has not joined a simulation yet (create the Simulation with it first)")) {
            try InteractiveForces().set(spring("early", [0], to: .zero, scale: 1))
        }
        let (_, user) = try userOnly([[1, 1, 1], [2, 2, 2], [3, 3, 3]], masses: [1, 1, 1])
        try user.set(spring("ok", [0, 1], to: .zero, scale: 1))
        #expect(throws: EngineError.invalidParameter("interaction 'x': particle index 3 is out of range 0..<3")) {
            try user.set(spring("x", [0, 3], to: .zero, scale: 1))
        }
        #expect(throws: EngineError.invalidParameter("interaction 'x': particle index -1 is out of range 0..<3")) {
            try user.set(spring("x", [-1], to: .zero, scale: 1))
        }
        #expect(throws: EngineError.invalidParameter("interaction 'x': particle 1 is listed twice")) {
            try user.set(spring("x", [1, 2, 1], to: .zero, scale: 1))
        }
        #expect(throws: EngineError.invalidParameter("interaction 'x': position must be finite")) {
            try user.set(spring("x", [1], to: [0, .nan, 0], scale: 1))
        }
        #expect(throws: EngineError.invalidParameter("interaction 'x': scale must be finite and >= 0, got -1.0")) {
            try user.set(spring("x", [1], to: .zero, scale: -1))
        }
        #expect(throws: EngineError.invalidParameter("interaction 'x': no particles")) {
            try user.set(spring("x", [], to: .zero, scale: 1))
        }
        #expect(throws: EngineError.invalidParameter("interaction 'ok': max_force must be > 0, got 0.0")) {
            try user.set(spring("ok", [1], to: .zero, scale: 1, maxForce: 0))
        }
        #expect(user.interactions.map(\.id) == ["ok"])
        #expect(user.interactions[0].particles == [0, 1], "a rejected replacement leaves the interaction as it was")
    }

    @Test("work: nothing at a new interaction's first evaluation or at unchanged positions; settable")
    func workBookkeeping() throws {
        let setup = try BuiltinSystems.lennardJonesBench(cells: 3)
        let user = InteractiveForces()
        let sim = try setup.makeSimulation(options: SimulationOptions(threads: 1), extraForceFields: [user])
        try sim.run(steps: 5)
        try user.set(spring("w", [0, 1, 2], to: [1, 1, 1], scale: 20))
        try sim.evaluateForces()
        #expect(user.work == 0)
        try sim.evaluateForces()
        _ = try sim.energies()
        #expect(user.work == 0, "same positions, no work")
        try sim.run(steps: 3)
        #expect(user.work != 0)
        user.work = 100
        let before = user.work
        try sim.evaluateForces()
        #expect(user.work == before, "settable, and continues from the set value")
        try sim.run(steps: 1)
        #expect(user.work != before)
        // Replacing positions from outside restarts the bookkeeping: a jump is not a path.
        let w = user.work
        var p = sim.positions()
        p[0].x += 0.3
        try sim.setPositions(p)
        #expect(user.work == w)
    }

    @Test("a spring pulls the centre of mass of a few atoms to the target in a Lennard-Jones liquid; removal ends it")
    func springPulls() throws {
        let setup = try BuiltinSystems.lennardJonesBench(cells: 4)
        let user = InteractiveForces()
        let sim = try Simulation(system: setup.system, forceFields: [LennardJones(setup.lennardJones), user],
                                 integrator: .langevin(timestep: 0.005, temperature: BuiltinSystems.reducedTemperature(1.0, epsilon: 1), friction: 1),
                                 options: SimulationOptions(threads: 1, seed: 3))
        try sim.run(steps: 100)
        let group = [10, 11, 12, 13]
        let masses = group.map { Double(setup.system.masses[$0]) }
        let start = centreOfMass(sim, group, masses: masses)
        // 2 nm away along x, across the periodic boundary when the group sits near the edge.
        let target = start + SIMD3(2, 0, 0)
        try user.set(spring("pull", group, to: target, scale: 200))
        func distance() -> Double {
            var d = centreOfMass(sim, group, masses: masses) - target
            let box = SIMD3<Double>(sim.box.x, sim.box.y, sim.box.z)
            d -= box * (d / box).rounded(.toNearestOrEven)
            return simd_length(d)
        }
        var reached: Int?
        for block in 1...100 {
            try sim.run(steps: 10)
            if distance() < 0.3 { reached = block * 10; break }
        }
        #expect(reached != nil, "centre of mass still \(distance()) nm from the target after 1000 steps")
        print("spring: the centre of mass came within 0.3 nm of a target 2 nm away in \(reached ?? -1) steps")
        #expect(user.energy < 0.5 * 200 * 0.3 * 0.3 + 1e-9)
        // After removal: no user force, LJ forces sum to zero again.
        user.remove(id: "pull")
        try sim.run(steps: 1)
        #expect(user.userForces().isEmpty)
        #expect(user.energy == 0)
        var net = SIMD3<Double>.zero
        for f in sim.forces() { net += SIMD3<Double>(f) }
        #expect(simd_length(net) < 1e-2, "net force \(net) after removal")
    }

    @Test("work equals the integral of the applied force along the path; under NVE the total energy changes by the work")
    func workAndEnergy() throws {
        var setup = try BuiltinSystems.lennardJonesBench(cells: 4)
        setup.lennardJones.shift = true
        let user = InteractiveForces()
        let sim = try setup.makeSimulation(options: SimulationOptions(threads: 1), extraForceFields: [user])
        try sim.run(steps: 200) // melt
        let group = [3, 50, 51, 52, 53] // not contiguous on purpose
        let masses = group.map { Double(setup.system.masses[$0]) }
        let start = centreOfMass(sim, group, masses: masses)
        try user.set(spring("w", group, to: start + SIMD3(1.5, -1.0, 0.5), scale: 30))
        try sim.evaluateForces()
        let e0 = try sim.energies().total
        var positions = sim.unwrappedPositions()
        var forces = Dictionary(uniqueKeysWithValues: user.userForces().map { ($0.index, SIMD3<Double>($0.force)) })
        var integral = 0.0
        let steps = 400
        for k in 1...steps {
            if k == steps / 2 {
                // Halfway, the user changes the interaction: the work keeps integrating.
                try user.set(Interaction(id: "w", kind: .gaussian, position: start, particles: group, scale: 60))
            }
            try sim.run(steps: 1, energy: k == steps)
            let now = sim.unwrappedPositions()
            let newForces = Dictionary(uniqueKeysWithValues: user.userForces().map { ($0.index, SIMD3<Double>($0.force)) })
            for (i, f) in newForces {
                let old = forces[i] ?? .zero
                integral += 0.5 * ((old + f) * (now[i] - positions[i])).sum()
            }
            positions = now
            forces = newForces
        }
        let e1 = try sim.energies().total
        print("work \(user.work), integral \(integral), total energy change \(e1 - e0) kJ/mol")
        #expect(abs(user.work) > 5, "the test needs a sizeable amount of work, got \(user.work)")
        #expect(abs(user.work - integral) <= 0.01 * abs(integral), "work \(user.work) vs integral \(integral)")
        #expect(abs((e1 - e0) - user.work) <= 0.03 * abs(user.work), "energy change \(e1 - e0) vs work \(user.work)")
    }

    @Test("applyInteractionChanges: a pull set between steps moves the atom in the very next step; removal stops it at once")
    func changesApplyAtTheNextStep() throws {
        let m: Float = 1, dt = 0.001, pull = 5000.0
        func oneStep(refresh: Bool) throws -> (moved: Double, afterRemoval: Double) {
            // The simulation's own interactive forces (the ones the engine loop changes).
            let (sim, _) = try userOnly([SIMD3(5, 5, 5)], masses: [m])
            // One atom at rest and nothing else: any pull multiplies its kinetic energy, so the
            // blow-up bound (relative to the system's own kinetic energy) is off here.
            sim.blowUpGuard = nil
            let user = sim.interactions
            try sim.run(steps: 3)
            try user.set(Interaction(id: "c", kind: .constant, position: [9, 5, 5], particles: [0], scale: pull))
            if refresh { sim.applyInteractionChanges() }
            try sim.run(steps: 1)
            let moved = Double(sim.positions()[0].x) - 5
            _ = user.remove(id: "c")
            if refresh { sim.applyInteractionChanges() }
            let v = Double(sim.velocities()[0].x)
            try sim.run(steps: 1)
            // With the pull gone at once, the atom coasts at v (plus the last half-kick it already had).
            return (moved, Double(sim.positions()[0].x) - 5 - moved - v * dt)
        }
        let late = try oneStep(refresh: false)
        let atOnce = try oneStep(refresh: true)
        // Velocity Verlet: the first half-kick with F, then the drift: dx = F dt^2 / (2 m).
        let expected = pull / Double(m) * dt * dt / 2
        #expect(abs(late.moved) < 1e-3 * expected, "without applying the change the first step cannot move the atom: \(late.moved)")
        #expect(abs(atOnce.moved - expected) < 1e-3 * expected + 1e-8, "moved \(atOnce.moved), expected \(expected)")
        #expect(abs(atOnce.afterRemoval) < 1e-2 * expected, "the removed pull still acted: \(atOnce.afterRemoval)")
        #expect(abs(late.afterRemoval) > expected / 2, "without applying the removal the old force acts once more")
    }

    @Test("applyInteractionChanges keeps the work exact: changes applied between steps, under NVE the energy changes by the work")
    func workWithChangesApplied() throws {
        var setup = try BuiltinSystems.lennardJonesBench(cells: 4)
        setup.lennardJones.shift = true
        let sim = try setup.makeSimulation(options: SimulationOptions(threads: 1))
        let user = sim.interactions
        try sim.run(steps: 200)
        let group = [7, 60, 61, 90]
        let masses = group.map { Double(setup.system.masses[$0]) }
        let start = centreOfMass(sim, group, masses: masses)
        let e0 = try sim.energies().total
        var positions = sim.unwrappedPositions()
        var forces: [Int: SIMD3<Double>] = [:]
        var integral = 0.0
        func record() {
            let now = sim.unwrappedPositions()
            let newForces = Dictionary(uniqueKeysWithValues: user.userForces().map { ($0.index, SIMD3<Double>($0.force)) })
            for (i, f) in newForces { integral += 0.5 * (((forces[i] ?? .zero) + f) * (now[i] - positions[i])).sum() }
            positions = now
            forces = newForces
        }
        for k in 1...400 {
            if k == 1 { try user.set(spring("w", group, to: start + SIMD3(1.5, -1.0, 0.5), scale: 30)) }
            if k == 150 { try user.set(Interaction(id: "w", kind: .gaussian, position: start, particles: group, scale: 60)) }
            if k == 300 { _ = user.remove(id: "w") }
            if k == 1 || k == 150 || k == 300 { sim.applyInteractionChanges(); record() }
            try sim.run(steps: 1, energy: k == 400)
            record()
        }
        let e1 = try sim.energies().total
        #expect(abs(user.work) > 5, "the test needs a sizeable amount of work, got \(user.work)")
        #expect(abs(user.work - integral) <= 0.01 * abs(integral), "work \(user.work) vs integral \(integral)")
        #expect(abs((e1 - e0) - user.work) <= 0.03 * abs(user.work), "energy change \(e1 - e0) vs work \(user.work)")
    }

    @Test("resetVelocities: Maxwell-Boltzmann at the temperature, per mass; deterministic; only those atoms; errors")
    func resetVelocities() throws {
        let n = 30_000
        var rng = TestRandom(seed: 5)
        let massChoices: [Float] = [1, 12, 40]
        let positions = (0..<n).map { _ in SIMD3<Float>(Float(rng.uniform(0, 20)), Float(rng.uniform(0, 20)), Float(rng.uniform(0, 20))) }
        let masses = (0..<n).map { massChoices[$0 % 3] }
        func make() throws -> Simulation {
            try Simulation(system: ParticleSystem(positions: positions, masses: masses, box: Box(cube: 20)), forceFields: [],
                           integrator: .velocityVerlet(timestep: 0.001), options: SimulationOptions(threads: 1, seed: 99))
        }
        let sim = try make()
        let all = Array(0..<n)
        let t = 300.0
        try sim.resetVelocities(of: all, temperature: t)
        let v = sim.velocities()
        for (c, m) in massChoices.enumerated() {
            var sum2 = SIMD3<Double>.zero, sum = SIMD3<Double>.zero, count = 0.0
            for i in stride(from: c, to: n, by: 3) {
                let vi = SIMD3<Double>(v[i])
                sum += vi; sum2 += vi * vi; count += 1
            }
            let sigma2 = Units.boltzmann * t / Double(m)
            let variance = sum2 / count
            for k in 0..<3 {
                // 10,000 samples: the relative standard error of <v^2> is sqrt(2/10^4) = 1.4 %; allow 3.2 of them.
                #expect(abs(variance[k] / sigma2 - 1) < 0.045, "mass \(m), component \(k): <v^2> \(variance[k]) vs \(sigma2)")
                #expect(abs(sum[k] / count) < 4 * (sigma2 / count).squareRoot(), "mass \(m), component \(k): mean \(sum[k] / count)")
            }
        }
        let measured = 2 * sim.kineticEnergy / (3 * Double(n) * Units.boltzmann)
        #expect(abs(measured / t - 1) < 0.02, "temperature \(measured) K")

        let again = try make()
        try again.resetVelocities(of: all, temperature: t)
        #expect(again.velocities() == v, "same seed and step, same velocities")
        try again.resetVelocities(of: [7, 8], temperature: t)
        #expect(again.velocities() == v, "a reset depends on the atom, not on the other atoms of the call")
        try again.run(steps: 1)
        let before = again.velocities()
        try again.resetVelocities(of: [7, 8], temperature: t)
        let after = again.velocities()
        #expect(after[7] != v[7] && after[8] != v[8], "another step draws other numbers")
        #expect(after[7] != before[7])
        for i in 0..<n where i != 7 && i != 8 { if after[i] != before[i] { Issue.record("atom \(i) changed"); break } }

        #expect(throws: EngineError.invalidParameter("particle index \(n) is out of range 0..<\(n)")) {
            try sim.resetVelocities(of: [0, n], temperature: t)
        }
        #expect(throws: EngineError.invalidParameter("particle index -1 is out of range 0..<\(n)")) {
            try sim.resetVelocities(of: [-1], temperature: t)
        }
        for bad in [0, -10, Double.nan, Double.infinity] {
            #expect(throws: EngineError.self, "temperature \(bad)") { try sim.resetVelocities(of: [0], temperature: bad) }
        }
        #expect(throws: EngineError.invalidParameter("temperature for new velocities must be positive and finite, got 0.0")) {
            try sim.resetVelocities(of: [0], temperature: 0)
        }
    }
}
