// Frame codec benchmarks: one 100,000-atom frame of liquid argon (an fcc lattice of 25 x 25 x 40
// cells at 1.374 g/cm^3, 200 Langevin steps at 94.4 K from the lattice), encoded and decoded with
// each codec. One sample is one encode or one decode of the whole frame (positions, box, energies,
// temperature; no velocities or forces).
//
// Custom metrics, timed inside the sample:
//   MB/s       float32 position bytes (1.2 MB) per second of wall clock, for encode and decode alike
//   ratio x100 float32 position bytes / message bytes, times 100 (326 means 3.26x smaller)

import Benchmark
import QuiverEngine
import QuiverWire

let megabytesPerSecond = BenchmarkMetric.custom("MB/s", polarity: .prefersLarger, useScalingFactor: false)
let ratioTimes100 = BenchmarkMetric.custom("ratio x100", polarity: .prefersLarger, useScalingFactor: false)

struct SetupError: Error, CustomStringConvertible {
    let description: String
}

/// The liquid frame, made once (globals are initialised lazily and once).
let liquid: Result<Frame, any Error> = Result {
    let argon = try BuiltinSystems.argonLiquid(cells: 10)
    let a = argon.system.box.x / 10
    let lattice = try BuiltinSystems.fccLattice(cells: (25, 25, 40), latticeConstant: a)
    var system = ParticleSystem(positions: lattice.positions, masses: Array(repeating: argon.system.masses[0], count: lattice.positions.count),
                                typeNames: ["Ar"], box: lattice.box)
    system.assignVelocities(temperature: 94.4, seed: 2024)
    let sim = try Simulation(system: system, forceFields: [LennardJones(argon.lennardJones)], integrator: argon.integrator)
    try sim.run(steps: 200)
    let e = try sim.energies()
    return Frame(index: 200, step: Int64(sim.step), time: sim.time, box: SIMD3(sim.box.x, sim.box.y, sim.box.z),
                 energies: Frame.Energies(potential: e.potential, kinetic: e.kinetic), temperature: e.temperature,
                 positions: AtomVectors(sim.positions()))
}

/// Runs `body` once, timed, and records the position bytes per second.
func timed(_ benchmark: Benchmark, bytes: Int, _ body: () throws -> Void) rethrows {
    let clock = ContinuousClock()
    let start = clock.now
    try body()
    let elapsed = start.duration(to: clock.now)
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    if seconds > 0 { benchmark.measurement(megabytesPerSecond, Int((Double(bytes) / seconds / 1e6).rounded())) }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .peakMemoryResident, megabytesPerSecond, ratioTimes100],
        timeUnits: .microseconds,
        warmupIterations: 2,
        maxDuration: .seconds(2),
        maxIterations: 500
    )

    let codecs: [(String, Codec)] = [("raw", .raw), ("lossless", .lossless), ("quantized 0.001 nm", .quantized(precision: 0.001))]
    for (name, codec) in codecs {
        Benchmark("Encode 100k frame (\(name))") { benchmark, frame in
            let bytes = 12 * frame.atomCount
            var message: [UInt8] = []
            try timed(benchmark, bytes: bytes) {
                message = try FrameEncoder.encode(frame, codec: codec)
            }
            benchmark.measurement(ratioTimes100, Int((Double(bytes) / Double(message.count) * 100).rounded()))
            blackHole(message)
        } setup: {
            try liquid.get()
        }

        Benchmark("Decode 100k frame (\(name))") { (benchmark: Benchmark, state: (Frame, [UInt8])) in
            let (frame, message) = state
            try timed(benchmark, bytes: 12 * frame.atomCount) {
                blackHole(try FrameDecoder.decode(message))
            }
            benchmark.measurement(ratioTimes100, Int((Double(12 * frame.atomCount) / Double(message.count) * 100).rounded()))
        } setup: {
            let frame = try liquid.get()
            let message = try FrameEncoder.encode(frame, codec: codec)
            guard try FrameDecoder.decode(message).atomCount == frame.atomCount else { throw SetupError(description: "round trip lost atoms") }
            return (frame, message)
        }
    }

    // The quantized encoder's builds side by side (the same bytes; `FrameEncoder` runs the fastest
    // this CPU supports), and the broadcaster's path: encoding the borrowed arrays into one reused
    // buffer instead of a new array per frame.
    for encoder in QuantizedEncoder.allCases where encoder.isSupported {
        Benchmark("Encode 100k frame (quantized 0.001 nm, \(encoder.rawValue) encoder)") { benchmark, frame in
            let options = FrameEncoder.Options(positions: .quantized(precision: 0.001), quantizedEncoder: encoder)
            var message: [UInt8] = []
            try timed(benchmark, bytes: 12 * frame.atomCount) {
                message = try FrameEncoder.encode(frame, options: options)
            }
            blackHole(message)
        } setup: {
            try liquid.get()
        }
    }
    Benchmark("Encode 100k frame (quantized 0.001 nm, borrowed arrays into a reused buffer)") { benchmark, state in
        let (frame, buffer) = state
        let options = FrameEncoder.Options(positions: .quantized(precision: 0.001))
        try timed(benchmark, bytes: 12 * frame.atomCount) {
            try frame.borrowed { (b) throws(WireError) in blackHole(try FrameEncoder.encode(b, options: options, into: buffer).count) }
        }
    } setup: {
        (try liquid.get(), MessageBuffer())
    }
}
