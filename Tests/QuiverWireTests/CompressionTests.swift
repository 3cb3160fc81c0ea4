import Testing
import QuiverEngine
import QuiverWire

@Suite("Compression on an engine liquid")
struct CompressionTests {
    /// Positions of a 32,000-atom liquid made by the engine: `in.lj` (sigma = 1 nm) scaled to argon's
    /// sigma of 0.34 nm, and liquid argon itself, each after 200 steps from the fcc lattice.
    static func liquid(_ name: String) throws -> (positions: AtomVectors, box: SIMD3<Double>) {
        let setup = name == "argon" ? try BuiltinSystems.argonLiquid(cells: 20) : try BuiltinSystems.lennardJonesBench(cells: 20)
        let scale: Float = name == "argon" ? 1 : 0.34
        let sim = try setup.makeSimulation(options: SimulationOptions(threads: 1))
        try sim.run(steps: 200)
        let positions = AtomVectors(sim.positions().map { $0 * scale })
        return (positions, SIMD3(sim.box.x, sim.box.y, sim.box.z) * Double(scale))
    }

    @Test("quantized at 0.001 nm: >= 3x smaller than float32 positions, error <= precision/2", arguments: ["lj", "argon"])
    func ratio(system: String) throws {
        let (positions, box) = try Self.liquid(system)
        #expect(positions.count == 32_000)
        let frame = Frame(index: 0, step: 200, time: 1, box: box, energies: .init(potential: -1, kinetic: 1), temperature: 100,
                          positions: positions)
        let message = try FrameEncoder.encode(frame, codec: .quantized(precision: 0.001))
        // The whole message (header and scalar fields included) against the bare float32 positions.
        let ratio = Double(12 * positions.count) / Double(message.count)
        #expect(ratio >= 3.0, "\(system): \(ratio)x")
        let decoded = try FrameDecoder.decode(message)
        #expect(withinQuantization(decoded.positions.x, positions.x, precision: 0.001))
        #expect(withinQuantization(decoded.positions.y, positions.y, precision: 0.001))
        #expect(withinQuantization(decoded.positions.z, positions.z, precision: 0.001))
        // Lossless: exact, and smaller than raw.
        let lossless = try FrameEncoder.encode(frame, codec: .lossless)
        #expect(lossless.count < 12 * positions.count)
        #expect(bitwiseEqual(try FrameDecoder.decode(lossless).positions, positions))
    }
}
