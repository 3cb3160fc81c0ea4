import Foundation
import Testing
import QuiverEngine

@Suite("LJ kernels against closed forms and a double-precision reference")
struct KernelTests {
    static func twoParticles(r: Double, across boundary: Bool) -> ParticleSystem {
        let edge = 10.0
        let a: SIMD3<Float> = boundary ? [Float(edge - r / 2), 3, 4] : [2, 3, 4]
        var b = a + SIMD3<Float>(Float(r), 0, 0)
        if boundary { b.x -= Float(edge) }
        return ParticleSystem(positions: [a, b], masses: [1, 1], box: Box(cube: edge))
    }

    @Test("two particles: force and energy equal the closed form", arguments: kernels)
    func twoParticleClosedForm(kernel: KernelVariant) throws {
        let eps = 0.7, sig = 0.9, cutoff = 2.5
        for shift in [false, true] {
            for boundary in [false, true] {
                for r in [0.8, 1.0, 1.0102, 1.3, 2.0, 2.45, 2.6] {
                    let params = LennardJones.Parameters(epsilon: eps, sigma: sig, cutoff: cutoff, skin: 0.3, shift: shift)
                    let (sim, _) = try makeSimulation(Self.twoParticles(r: r, across: boundary), params, kernel: kernel)
                    let sr6 = pow(sig / r, 6), sc6 = pow(sig / cutoff, 6)
                    let inside = r < cutoff
                    let expectedE = inside ? 4 * eps * (sr6 * sr6 - sr6) - (shift ? 4 * eps * (sc6 * sc6 - sc6) : 0) : 0
                    let expectedF = inside ? 24 * eps * (2 * sr6 * sr6 - sr6) / r : 0 // on b, along +x
                    let f = sim.forces()
                    let e = try sim.energies().potential
                    let scaleF = inside ? 24 * eps * (2 * sr6 * sr6 + sr6) / r : 1 // size of the terms that cancel
                    #expect(abs(Double(f[1].x) - expectedF) / scaleF < 2e-6, "r \(r) boundary \(boundary): fx \(f[1].x) vs \(expectedF)")
                    #expect(abs(Double(f[0].x) + expectedF) / scaleF < 2e-6)
                    #expect(f[0].y == 0 && f[0].z == 0 && f[1].y == 0 && f[1].z == 0)
                    #expect(abs(e - expectedE) <= 2e-6 * (inside ? 4 * eps * (sr6 * sr6 + sr6) : 1), "r \(r): E \(e) vs \(expectedE)")
                }
            }
        }
    }

    static let referenceCases: [(String, Bool, Int)] = [("one type", false, 1), ("one type, shifted", true, 2), ("three types", false, 2), ("three types, shifted", true, 1)]

    @Test("random periodic configurations match the O(N^2) double reference", arguments: kernels)
    func againstReference(kernel: KernelVariant) throws {
        for (name, shift, threads) in Self.referenceCases {
            let multitype = name.hasPrefix("three")
            for seed: UInt64 in [1, 2, 3] {
                let lattice = jitteredLattice(cells: (8, 9, 10), spacing: 1.15, jitter: 0.25, seed: seed)
                let n = lattice.positions.count
                var rng = TestRandom(seed: seed + 100)
                let types: [Int32] = multitype ? (0..<n).map { _ in Int32(rng.next() % 3) } : Array(repeating: 0, count: n)
                let system = ParticleSystem(positions: lattice.positions, masses: Array(repeating: 2, count: n), types: types,
                                            typeNames: multitype ? ["A", "B", "C"] : ["A"], box: lattice.box)
                let params = multitype
                    ? LennardJones.Parameters.mixing(epsilon: [1.0, 0.5, 1.7], sigma: [1.0, 0.85, 1.05], cutoff: 2.5, skin: 0.3, shift: shift)
                    : LennardJones.Parameters(epsilon: 1, sigma: 1, cutoff: 2.5, skin: 0.3, shift: shift)
                let (sim, _) = try makeSimulation(system, params, kernel: kernel, threads: threads)
                let ref = referenceForces(params, system: system)
                let err = relativeNormError(sim.forces(), ref.forces)
                let e = try sim.energies().potential
                #expect(err < 1e-5, "\(name) seed \(seed): force error \(err)")
                #expect(abs(e - ref.energy) / abs(ref.energy) < 1e-6, "\(name) seed \(seed): energy \(e) vs \(ref.energy)")
            }
        }
    }

    @Test("the vector kernel agrees with the scalar one")
    func vectorMatchesScalar() throws {
        guard KernelVariant.avx2.isSupported else { return }
        let setup = try BuiltinSystems.lennardJonesBench(cells: 6)
        let (a, _) = try makeSimulation(setup.system, setup.lennardJones, kernel: .scalar)
        let (b, _) = try makeSimulation(setup.system, setup.lennardJones, kernel: .avx2)
        try a.run(steps: 50)
        try b.run(steps: 50)
        let fa = a.forces(), fb = b.forces()
        let err = relativeNormError(fb, fa.map { SIMD3<Double>($0) })
        #expect(err < 1e-4)
        #expect(abs(try a.energies().potential - b.energies().potential) / abs(try a.energies().potential) < 1e-5)
    }
}

@Suite("Neighbour lists")
struct NeighborListTests {
    @Test("after large displacements the list is rebuilt and forces match brute force", arguments: kernels)
    func largeDisplacements(kernel: KernelVariant) throws {
        let lattice = jitteredLattice(cells: (9, 9, 9), spacing: 1.1, jitter: 0.1, seed: 11)
        let n = lattice.positions.count
        // Heavy atoms: the kicks are negligible, so each step moves atoms by velocity x dt exactly as set.
        let system = ParticleSystem(positions: lattice.positions, masses: Array(repeating: 1e30, count: n), box: lattice.box)
        let params = LennardJones.Parameters(epsilon: 1, sigma: 1, cutoff: 2.5, skin: 0.3)
        let (sim, lj) = try makeSimulation(system, params, kernel: kernel, threads: 2)
        #expect(lj.statistics.rebuilds == 1)
        var rng = TestRandom(seed: 5)

        // Small moves (< skin/2 per atom): no rebuild, the list still covers every pair.
        let dt = 0.001
        let small = (0..<n).map { _ in SIMD3<Float>(Float(rng.uniform(-1, 1)), Float(rng.uniform(-1, 1)), Float(rng.uniform(-1, 1))) * Float(0.08 / 1.8 / dt) }
        try sim.setVelocities(small)
        let rebuildsBefore = lj.statistics.rebuilds
        try sim.run(steps: 1)
        #expect(lj.statistics.rebuilds == rebuildsBefore, "a move below skin/2 must not rebuild")
        var ref = referenceForces(params, system: system, positions: sim.positions())
        #expect(relativeNormError(sim.forces(), ref.forces) < 1e-5)

        // Large moves (up to 0.9 nm, across the periodic boundary): rebuilt automatically.
        for round in 0..<3 {
            let large = (0..<n).map { _ in SIMD3<Float>(Float(rng.uniform(-1, 1)), Float(rng.uniform(-1, 1)), Float(rng.uniform(-1, 1))) * Float(0.9 / dt) }
            try sim.setVelocities(large)
            let before = lj.statistics.rebuilds
            try sim.run(steps: 1)
            #expect(lj.statistics.rebuilds == before + 1, "round \(round): large moves must rebuild")
            ref = referenceForces(params, system: system, positions: sim.positions())
            let err = relativeNormError(sim.forces(), ref.forces)
            #expect(err < 1e-5, "round \(round): force error \(err)")
            #expect(abs(try sim.energies().potential - ref.energy) / abs(ref.energy) < 1e-6)
        }
        // Every position is back in the box after a rebuild (up to the step's own move).
        let box = sim.box
        for p in sim.positions() {
            #expect(p.x >= -1 && Double(p.x) < box.x + 1 && p.y >= -1 && Double(p.y) < box.y + 1)
        }
    }

    @Test("storage grows when the local density rises far above the mean", arguments: kernels)
    func storageGrows(kernel: KernelVariant) throws {
        // 343 atoms spread through a 24 nm box (about 2 neighbours each), then packed into a 6 nm cube (about 100 each).
        let dilute = jitteredLattice(cells: (7, 7, 7), spacing: 24.0 / 7, jitter: 0.2, seed: 3)
        let system = ParticleSystem(positions: dilute.positions, masses: Array(repeating: 1, count: 343), box: Box(cube: 24))
        let params = LennardJones.Parameters(epsilon: 1, sigma: 1, cutoff: 2.5, skin: 0.3)
        let (sim, lj) = try makeSimulation(system, params, kernel: kernel, threads: 2)
        let bytesBefore = lj.statistics.bytes
        let dense = jitteredLattice(cells: (7, 7, 7), spacing: 0.9, jitter: 0.05, seed: 4).positions.map { $0 + SIMD3<Float>(2, 2, 2) }
        try sim.setPositions(dense)
        #expect(lj.statistics.bytes > bytesBefore, "neighbour storage must have grown")
        let ref = referenceForces(params, system: system, positions: dense)
        #expect(relativeNormError(sim.forces(), ref.forces) < 1e-5)
        #expect(abs(try sim.energies().potential - ref.energy) / abs(ref.energy) < 1e-6)
    }

    @Test("a box shorter than cutoff + skin is refused")
    func boxTooSmall() throws {
        let system = ParticleSystem(positions: [[0, 0, 0], [1, 1, 1]], masses: [1, 1], box: Box(x: 10, y: 2.7, z: 10))
        let params = LennardJones.Parameters(epsilon: 1, sigma: 1, cutoff: 2.5, skin: 0.3)
        #expect(throws: EngineError.boxTooSmall(edge: 2.7, required: 2.8)) {
            _ = try makeSimulation(system, params, kernel: .scalar)
        }
    }
}
