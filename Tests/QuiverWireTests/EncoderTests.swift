import CQuiverWire
import QuiverEngine
import QuiverWire
import Testing

/// The quantized encoder is compiled several times (portable, AVX2, AVX-512) and picked at run
/// time; the checksum runs three CRC chains on long inputs. These tests hold every variant to the
/// same bytes and to the decoder, on data that takes each path: small and odd sizes, blocks with
/// escapes (a residual whose Rice quotient reaches 24), blocks whose residuals pass 2^24 quanta,
/// and a liquid.
@Suite("Encoder variants and the checksum")
struct EncoderTests {
    static let variants = ["portable", "avx2", "avx512"]

    /// Encodes `planes` (each `n` floats) with `variant`; nil when this CPU cannot run it.
    static func encode(_ planes: [[Float]], n: Int, precision: Double, variant: String) -> (status: Int32, bytes: [UInt8])? {
        guard qw_quant_encoder_supported(variant) != 0 else { return nil }
        let bound = qw_quant_bound(planes.count, n)
        var out = [UInt8](repeating: 0xEE, count: bound)
        var size = 0
        let status = withPointers(planes) { pointers in
            variant.withCString { name in
                out.withUnsafeMutableBufferPointer { qw_quant_encode_variant(name, pointers, planes.count, n, precision, $0.baseAddress, bound, &size) }
            }
        }
        return (status, Array(out.prefix(size)))
    }

    static func withPointers<R>(_ planes: [[Float]], _ body: (UnsafePointer<UnsafePointer<Float>?>) -> R) -> R {
        var bases: [UnsafePointer<Float>?] = []
        var copies: [UnsafeMutableBufferPointer<Float>] = []
        for p in planes {
            let c = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(p.count, 1))
            _ = c.initialize(from: p)
            copies.append(c)
            bases.append(UnsafePointer(c.baseAddress))
        }
        defer { copies.forEach { $0.deallocate() } }
        return bases.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// Planes that exercise every path of the encoder.
    static func cases() -> [(name: String, planes: [[Float]], precision: Double)] {
        var rng = TestRandom(seed: 7)
        func plane(_ n: Int, _ f: (Int) -> Double) -> [Float] { (0..<n).map { Float(f($0)) } }
        var result: [(String, [[Float]], Double)] = []
        for n in [1, 2, 3, 7, 127, 128, 129, 255, 1000, 4097] {
            result.append(("lattice \(n)", (0..<3).map { d in plane(n) { i in Double(i % 17) * 0.5 + Double(d) + rng.uniform(-0.05, 0.05) } }, 0.001))
        }
        // Escapes: a smooth plane with rare huge jumps (the Rice quotient of the jump passes 24).
        result.append(("escapes", [plane(3000) { i in i % 97 == 0 ? rng.uniform(-900, 900) : Double(i) * 0.01 }], 0.001))
        // k = 0 blocks (nearly constant) with one spike of 50 quanta each: an escape in a block whose
        // pairs would otherwise fit.
        result.append(("spikes", [plane(1000) { i in i % 50 == 0 ? 1.3 : 1.25 }], 0.001))
        // Residuals beyond 2^24 quanta: the 64-bit predictor sums.
        result.append(("wide", [plane(2000) { i in i % 3 == 0 ? 5000 : -5000 }, plane(2000) { _ in rng.uniform(-1e5, 1e5) }], 0.001))
        // Large Rice parameters (pairs that do not fit 56 bits).
        result.append(("coarse", [plane(1500) { _ in rng.uniform(-5e5, 5e5) }], 0.001))
        result.append(("constant", [plane(300) { _ in 1.25 }, plane(300) { _ in 0 }, plane(300) { _ in -1.25 }], 0.01))
        return result
    }

    @Test("every encoder variant writes the same bytes, and the decoder gives back the quantized values")
    func variantsAgree() throws {
        #expect(Self.variants.contains(String(cString: qw_quant_encoder_variant())))
        #expect(qw_quant_encoder_supported("portable") == 1)
        for c in Self.cases() {
            let n = c.planes[0].count
            let reference = try #require(Self.encode(c.planes, n: n, precision: c.precision, variant: "portable"))
            #expect(reference.status == Int32(QW_OK), "\(c.name)")
            for v in Self.variants.dropFirst() {
                guard let other = Self.encode(c.planes, n: n, precision: c.precision, variant: v) else { continue }
                #expect(other.status == Int32(QW_OK) && other.bytes == reference.bytes, "\(c.name): \(v) differs from portable")
            }
            // Decode and compare with the values rounded to the precision.
            var decoded = c.planes.map { [Float](repeating: .nan, count: $0.count) }
            let status = decoded.withUnsafeMutableBufferPointer { outer -> Int32 in
                var pointers: [UnsafeMutablePointer<Float>?] = []
                for i in outer.indices { pointers.append(outer[i].withUnsafeMutableBufferPointer { $0.baseAddress }) }
                return reference.bytes.withUnsafeBufferPointer { bytes in
                    pointers.withUnsafeBufferPointer { qw_quant_read(bytes.baseAddress, bytes.count, c.planes.count, n, c.precision, $0.baseAddress) }
                }
            }
            #expect(status == Int32(QW_OK), "\(c.name)")
            for (plane, back) in zip(c.planes, decoded) {
                let exact = zip(plane, back).allSatisfy { v, d in d == Float((Double(v) / c.precision).rounded(.toNearestOrEven) * c.precision) }
                #expect(exact, "\(c.name): decoded values differ from the quantized ones")
            }
        }
    }

    @Test("an unknown or unsupported variant, NaN and out-of-range values are errors in every variant")
    func errors() throws {
        // Straight through C: an unknown name, and every build this CPU lacks, is an argument error.
        func status(_ variant: String) -> Int32 {
            var out = [UInt8](repeating: 0, count: qw_quant_bound(1, 3))
            var size = 0
            return Self.withPointers([[1, 2, 3]]) { pointers in
                variant.withCString { name in
                    out.withUnsafeMutableBufferPointer { qw_quant_encode_variant(name, pointers, 1, 3, 0.001, $0.baseAddress, $0.count, &size) }
                }
            }
        }
        #expect(status("sse9") == Int32(QW_ERR_ARGUMENT))
        #expect(qw_quant_encoder_supported("sse9") == 0)
        for v in Self.variants {
            #expect(status(v) == (qw_quant_encoder_supported(v) != 0 ? Int32(QW_OK) : Int32(QW_ERR_ARGUMENT)), "\(v)")
        }
        for v in QuantizedEncoder.allCases where !v.isSupported {
            let options = FrameEncoder.Options(positions: .quantized(), quantizedEncoder: v)
            #expect(throws: WireError.self) { try FrameEncoder.encode(sampleFrame(atoms: 4), options: options) }
        }
        #expect(QuantizedEncoder.current.isSupported)
        for v in Self.variants {
            guard let nan = Self.encode([[1, .nan, 3]], n: 3, precision: 0.001, variant: v) else { continue }
            #expect(nan.status == Int32(QW_ERR_RANGE), "\(v)")
            #expect(Self.encode([[1, 2, 3e7]], n: 3, precision: 0.001, variant: v)?.status == Int32(QW_ERR_RANGE), "\(v)")
        }
    }

    /// Integer formulas (so that C and Swift make the same floats: one multiply, no addition to
    /// fuse) whose streams from the encoder before the rewrite (d427ce7) were recorded: size and
    /// CRC-32C. A change of predictor or parameter choice would still decode; this catches it.
    static func golden(_ c: Int, _ i: Int64, _ p: Int64) -> Int64 {
        switch c {
        case 0: return (i % 4) * 289 + ((i / 4) * 578) % 20000 + ((i * 7919 + p * 104729) % 61) - 30 + p * 3000
        case 1: return i * 10 + (i % 97 == 0 ? 900000 : 0)
        case 2: return (i % 3 == 0 ? 5000000 : -5000000) + i
        case 3: return (i * 2654435761 + p * 40503) % 1000000000 - 500000000
        default: return i % 50 == 0 ? 1300 : 1250
        }
    }

    @Test("the bytes of the encoder before the rewrite, for every build", arguments: [
        (0, 1000, 3, 4254, 0x85B1_06E1 as UInt32), (1, 700, 1, 1265, 0x86ED_F46D), (2, 500, 2, 547, 0x1350_1783),
        (3, 1500, 1, 5362, 0x9F0B_D099), (4, 1000, 1, 429, 0x48BD_8EAA),
    ])
    func previousBytes(c: Int, n: Int, planes: Int, size: Int, crc: UInt32) throws {
        let data = (0..<planes).map { p in (0..<n).map { i in Float(Self.golden(c, Int64(i), Int64(p))) * 0.001 } }
        for v in Self.variants {
            guard let out = Self.encode(data, n: n, precision: 0.001, variant: v) else { continue }
            #expect(out.status == Int32(QW_OK) && out.bytes.count == size && WireChecksum.crc32c(out.bytes) == crc, "case \(c), \(v)")
        }
    }

    @Test("a liquid's frame: the same bytes from every variant, through FrameEncoder and into a reused buffer")
    func liquid() throws {
        let setup = try BuiltinSystems.argonLiquid(cells: 10)
        let sim = try setup.makeSimulation(options: SimulationOptions(threads: 1))
        try sim.run(steps: 50)
        let positions = AtomVectors(sim.positions())
        let planes = [positions.x, positions.y, positions.z]
        let reference = try #require(Self.encode(planes, n: positions.count, precision: 0.001, variant: "portable"))
        for v in Self.variants.dropFirst() {
            guard let other = Self.encode(planes, n: positions.count, precision: 0.001, variant: v) else { continue }
            #expect(other.bytes == reference.bytes, "\(v)")
        }
        let frame = Frame(index: 3, step: 50, time: 0.1, box: SIMD3(sim.box.x, sim.box.y, sim.box.z),
                          energies: .init(potential: -1, kinetic: 1), temperature: 90, positions: positions,
                          userForces: [UserForce(index: 5, force: SIMD3(1, 2, 3))], publishedAt: 1.5)
        let buffer = MessageBuffer()
        for codec in [Codec.quantized(), .lossless, .raw] {
            let array = try FrameEncoder.encode(frame, codec: codec)
            let inPlace = try frame.borrowed { (b) throws(WireError) in
                Array(try FrameEncoder.encode(b, options: .init(all: codec), into: buffer))
            }
            #expect(inPlace == array, "\(codec)")
            // The array does not keep the encoder's bound (several times the quantized size).
            #expect(array.capacity < 2 * array.count, "\(codec): capacity \(array.capacity) for \(array.count) bytes")
            #expect(try FrameDecoder.summary(array).index == 3)
        }
        // The buffer keeps its memory: a smaller message reuses it.
        let small = sampleFrame(atoms: 10)
        let smallBytes = try small.borrowed { (b) throws(WireError) in Array(try FrameEncoder.encode(b, options: .init(), into: buffer)) }
        #expect(try FrameDecoder.decode(smallBytes) == FrameDecoder.decode(try FrameEncoder.encode(small, options: .init())))
    }

    @Test("CRC-32C: the three-chain hardware path equals the byte-wise reference at every length and alignment")
    func crc() {
        var rng = TestRandom(seed: 11)
        let data = (0..<(200_000 + 16)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        data.withUnsafeBytes { raw in
            var lengths = [0, 1, 7, 8, 9, 24_575, 24_576, 24_577, 49_152, 73_729, 200_000]
            for _ in 0..<60 { lengths.append(rng.below(200_000)) }
            for length in lengths {
                let offset = rng.below(16)
                let seed = UInt32(truncatingIfNeeded: rng.next())
                let p = raw.baseAddress! + offset
                #expect(qw_crc32c_update(seed, p, length) == qw_crc32c_update_portable(seed, p, length), "length \(length) offset \(offset)")
            }
        }
        #expect(WireChecksum.crc32c(Array("123456789".utf8)) == 0xE306_9283)
    }
}
