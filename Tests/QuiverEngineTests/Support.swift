import CQuiverCore
import Foundation
import QuiverEngine

/// Kernel variants this CPU can run: every physics test runs on each.
let kernels: [KernelVariant] = KernelVariant.avx2.isSupported ? [.scalar, .avx2] : [.scalar]

/// A small deterministic generator for test configurations.
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return state
    }
    /// Uniform in [0, 1).
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * uniform() }
}

/// A liquid-like configuration: a simple cubic lattice with random displacements, in a box of
/// `cells` sites per edge with `spacing` nm, displaced by up to `jitter` nm per component.
func jitteredLattice(cells: (Int, Int, Int), spacing: Double, jitter: Double, seed: UInt64) -> (positions: [SIMD3<Float>], box: Box) {
    var rng = TestRandom(seed: seed)
    var p: [SIMD3<Float>] = []
    for k in 0..<cells.2 { for j in 0..<cells.1 { for i in 0..<cells.0 {
        let base = SIMD3<Double>(Double(i), Double(j), Double(k)) * spacing
        let d = SIMD3<Double>(rng.uniform(-jitter, jitter), rng.uniform(-jitter, jitter), rng.uniform(-jitter, jitter))
        p.append(SIMD3<Float>(base + d))
    } } }
    return (p, Box(x: Double(cells.0) * spacing, y: Double(cells.1) * spacing, z: Double(cells.2) * spacing))
}

/// Double-precision O(N^2) minimum-image reference (the C core's, independent of the list code).
func referenceForces(_ params: LennardJones.Parameters, system: ParticleSystem, positions: [SIMD3<Float>]? = nil) -> (forces: [SIMD3<Double>], energy: Double) {
    let pos = positions ?? system.positions
    let n = pos.count
    let x = pos.map(\.x), y = pos.map(\.y), z = pos.map(\.z)
    var fx = [Double](repeating: 0, count: n), fy = fx, fz = fx
    var energy = 0.0
    system.types.withUnsafeBufferPointer { types in
        params.epsilon.withUnsafeBufferPointer { eps in
            params.sigma.withUnsafeBufferPointer { sig in
                var cfg = qv_lj_config(natoms: Int32(n), ntypes: Int32(params.typeCount), types: types.baseAddress,
                                       epsilon: eps.baseAddress, sigma: sig.baseAddress, cutoff: params.cutoff, skin: params.skin,
                                       shift: params.shift ? 1 : 0, kernel: 0, nthreads: 1)
                let box = [system.box.x, system.box.y, system.box.z]
                energy = qv_lj_reference(&cfg, Int32(n), x, y, z, box, &fx, &fy, &fz)
            }
        }
    }
    return ((0..<n).map { SIMD3(fx[$0], fy[$0], fz[$0]) }, energy)
}

/// ||a - b|| / ||b|| over all components.
func relativeNormError(_ a: [SIMD3<Float>], _ b: [SIMD3<Double>]) -> Double {
    var num = 0.0, den = 0.0
    for i in 0..<a.count {
        let d = SIMD3<Double>(a[i]) - b[i]
        num += (d * d).sum()
        den += (b[i] * b[i]).sum()
    }
    return (num / den).squareRoot()
}

func makeSimulation(_ system: ParticleSystem, _ params: LennardJones.Parameters, kernel: KernelVariant, threads: Int = 1,
                    integrator: Integrator = .velocityVerlet(timestep: 0.001), extra: [any ForceField] = []) throws -> (Simulation, LennardJones) {
    let lj = LennardJones(params)
    let sim = try Simulation(system: system, forceFields: [lj] + extra, integrator: integrator,
                             options: SimulationOptions(threads: threads, seed: 7, kernel: kernel))
    return (sim, lj)
}

func simd_length(_ v: SIMD3<Float>) -> Float { (v * v).sum().squareRoot() }
func simd_length(_ v: SIMD3<Double>) -> Double { (v * v).sum().squareRoot() }
