import QuiverEngine
import Testing

@Suite("Blow-ups: detected within the step, rolled back to the last checkpoint; a sane pull and a hotter thermostat do not trip the bound")
struct BlowUpTests {
    /// Argon (500 atoms, Langevin 94.4 K, 10 fs) as `quiver run --cells 5` runs it.
    func argon() throws -> Simulation {
        try BuiltinSystems.argonLiquid(cells: 5).makeSimulation(options: SimulationOptions(threads: 2, seed: 7))
    }

    func allFinite(_ sim: Simulation) -> Bool {
        sim.positions().allSatisfy { $0.x.isFinite && $0.y.isFinite && $0.z.isFinite }
            && sim.velocities().allSatisfy { $0.x.isFinite && $0.y.isFinite && $0.z.isFinite }
    }

    @Test("the absurd pull of issue 12 (spring, scale 1e30, default max_force, atoms 0-9): run throws a blow-up at the step it happens, every step before it finite; rollback restores the checkpoint (velocities bitwise, positions as the same points) and the dynamics continues without the pull")
    func absurdPull() throws {
        let sim = try argon()
        try sim.run(steps: 20)
        try sim.checkpoint()
        let goodPositions = sim.unwrappedPositions(), goodVelocities = sim.velocities()
        #expect(sim.checkpointStep == 20)
        try sim.interactions.set(Interaction(id: "a", kind: .spring, position: SIMD3(0.5, 0.5, 0.5), particles: Array(0..<10), scale: 1e30))
        sim.applyInteractionChanges()
        var caught: EngineError?
        for _ in 0..<2000 {
            do {
                try sim.run(steps: 1, energy: true)
            } catch let e as EngineError {
                caught = e
                break
            }
            // Every step the check let through is finite, energies too.
            #expect(allFinite(sim), "non-finite state at step \(sim.step) passed the check")
            let e = try sim.energies()
            #expect(e.potential.isFinite && e.kinetic.isFinite)
        }
        let error = try #require(caught, "2000 steps of the absurd pull, and no blow-up was detected")
        #expect(error.isBlowUp, "\(error)")
        print("absurd pull: \(error) (\(sim.step - 20) steps after the pull started)")
        if case .kineticEnergyJump(let step, _, _) = error { #expect(step == sim.step) }
        if case .nonFinite(let step) = error { #expect(step == sim.step) }

        _ = sim.interactions.removeAll()
        #expect(try sim.rollback() == 20)
        #expect(sim.step == 20)
        // Velocities exactly; positions as the same points (the neighbour-list rebuild after the
        // rollback may wrap an atom back into the box, changing its image count, not the point).
        let velocitiesBack = sim.velocities() == goodVelocities
        #expect(velocitiesBack, "the rollback did not restore the checkpoint's velocities")
        var positionError = 0.0
        for (a, b) in zip(sim.unwrappedPositions(), goodPositions) {
            let d: SIMD3<Double> = a - b
            positionError = max(positionError, abs(d.x), abs(d.y), abs(d.z))
        }
        #expect(positionError < 1e-5, "the rollback did not restore the checkpoint's positions (\(positionError) nm off)")
        let e = try sim.energies()
        #expect(e.potential.isFinite && e.kinetic.isFinite && e.temperature < 200)
        try sim.run(steps: 200)
        #expect(allFinite(sim) && sim.step == 220)
    }

    @Test("no checkpoint: rollback returns nil and changes nothing")
    func noCheckpoint() throws {
        let sim = try argon()
        try sim.run(steps: 3)
        let before = sim.dynamicState()
        #expect(try sim.rollback() == nil)
        #expect(sim.dynamicState() == before && sim.checkpointStep == nil)
    }

    @Test("a strong but sane pull (spring 2000 kJ/mol/nm^2 on 10 atoms for 20 ps) and a thermostat raised from 94 K to 3000 K with friction 50/ps do not trip the bound")
    func saneRunsDoNotTrip() throws {
        let sim = try argon()
        try sim.checkpoint()
        try sim.interactions.set(Interaction(id: "p", kind: .spring, position: SIMD3(2, 2, 2), particles: Array(0..<10), scale: 2000))
        for k in 0..<20 {
            try sim.run(steps: 100, energy: true)
            if k % 2 == 0 { try sim.checkpoint() }
        }
        _ = sim.interactions.removeAll()
        try sim.setParameter("friction", to: 50)
        try sim.setParameter("temperature", to: 3000)
        try sim.run(steps: 500, energy: true)
        #expect(try sim.energies().temperature > 1000)
        #expect(allFinite(sim))
    }

    @Test("the bound: 10 x the largest of the checkpoint's kinetic energy and the equipartition energy at the thermostat's temperature and at 100 K; none without a guard")
    func bound() throws {
        let sim = try argon()
        let dof = Double(sim.degreesOfFreedom)
        func equipartition(_ t: Double) -> Double { 0.5 * dof * Units.boltzmann * t }
        try sim.checkpoint()
        #expect(abs(sim.kineticBound - 10 * max(sim.kineticEnergy, equipartition(100))) < 1e-6 * sim.kineticBound)
        try sim.setParameter("temperature", to: 5000)
        #expect(abs(sim.kineticBound - 10 * equipartition(5000)) < 1e-6 * sim.kineticBound)
        sim.blowUpGuard = nil
        #expect(sim.kineticBound == .infinity)
        sim.blowUpGuard = Simulation.BlowUpGuard(kineticFactor: 3, floorTemperature: 10)
        #expect(abs(sim.kineticBound - 3 * equipartition(5000)) < 1e-6 * sim.kineticBound)
    }
}
