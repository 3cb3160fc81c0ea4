import Testing
import QuiverWire

@Suite("Frame and topology round trips")
struct RoundTripTests {
    static let codecs: [Codec] = [.raw, .lossless, .quantized(), .quantized(precision: 0.01), .quantized(precision: 0.0001)]
    static let sizes = [0, 1, 7, 127, 128, 129, 1000]

    @Test("raw and lossless are bit-exact for every field", arguments: [Codec.raw, .lossless], sizes)
    func exact(codec: Codec, atoms: Int) throws {
        let frame = sampleFrame(atoms: atoms, seed: UInt64(atoms + 1))
        let decoded = try FrameDecoder.decode(FrameEncoder.encode(frame, codec: codec))
        #expect(bitwiseEqual(decoded.positions, frame.positions))
        #expect(bitwiseEqual(decoded.velocities, frame.velocities))
        #expect(bitwiseEqual(decoded.forces, frame.forces))
        #expect(decoded == frame)
    }

    @Test("quantized stays within precision/2 per component, negative and out-of-box coordinates included",
          arguments: codecs.filter { $0 != .raw && $0 != .lossless }, sizes)
    func quantized(codec: Codec, atoms: Int) throws {
        guard case .quantized(let precision) = codec else { return }
        let frame = sampleFrame(atoms: atoms, seed: UInt64(atoms + 7))
        #expect(atoms < 100 || frame.positions.x.contains { $0 < 0 })
        #expect(atoms < 100 || frame.positions.x.contains { $0 > 3 })
        let decoded = try FrameDecoder.decode(FrameEncoder.encode(frame, codec: codec))
        for (d, o) in [(decoded.positions, frame.positions), (decoded.velocities!, frame.velocities!)] {
            #expect(withinQuantization(d.x, o.x, precision: precision))
            #expect(withinQuantization(d.y, o.y, precision: precision))
            #expect(withinQuantization(d.z, o.z, precision: precision))
        }
        // Everything that is not a per-atom vector is exact.
        #expect(decoded.index == frame.index && decoded.step == frame.step && decoded.time == frame.time)
        #expect(decoded.box == frame.box && decoded.energies == frame.energies && decoded.temperature == frame.temperature)
        #expect(decoded.userEnergy == frame.userEnergy && decoded.userWork == frame.userWork && decoded.userForces == frame.userForces)
    }

    @Test("quantized error bound holds at rounding boundaries and large coordinates")
    func quantizedBoundaries() throws {
        let p = 0.001
        // Values at and next to half-quantum boundaries, far from the origin, and of both signs.
        var values: [Float] = []
        for k in [0, 1, 2, 999, 1000, 123_456, 1_000_000, 99_999_999] {
            let half = (Double(k) + 0.5) * Double(p)
            for v in [half, -half, Double(k) * Double(p)] {
                let f = Float(v)
                values += [f, f.nextUp, f.nextDown]
            }
        }
        let positions = AtomVectors(x: values, y: values.reversed(), z: values.map { -$0 })
        let frame = Frame(index: 0, step: 0, time: 0, box: [1, 1, 1], energies: .init(potential: 0, kinetic: 0),
                          temperature: 0, positions: positions)
        let decoded = try FrameDecoder.decode(FrameEncoder.encode(frame, codec: .quantized(precision: p)))
        #expect(withinQuantization(decoded.positions.x, values, precision: p))
        #expect(withinQuantization(decoded.positions.y, values.reversed(), precision: p))
        #expect(withinQuantization(decoded.positions.z, values.map { -$0 }, precision: p))
    }

    @Test("a frame of one repeated position (Rice parameter 0, all-zero residuals)")
    func constant() throws {
        let positions = AtomVectors(Array(repeating: SIMD3<Float>(1.5, -2.25, 0), count: 1000))
        let frame = Frame(index: 1, step: 2, time: 3, box: [4, 4, 4], energies: .init(potential: 1, kinetic: 2),
                          temperature: 5, positions: positions)
        let message = try FrameEncoder.encode(frame, codec: .quantized())
        #expect(message.count < 64 + 4 * 16 + 8 * 7 + 8 + 3 * 1000 / 8 + 3 * 8 * 8 + 8)
        let decoded = try FrameDecoder.decode(message).positions
        #expect(withinQuantization(decoded.x, positions.x, precision: 0.001))
        #expect(withinQuantization(decoded.y, positions.y, precision: 0.001))
        #expect(decoded.z == positions.z)
        // Values on the 0.001 grid come back as the nearest float (the precision is a double).
        #expect(decoded.x.allSatisfy { $0 == 1.5 } && decoded.y.allSatisfy { $0 == -2.25 })
    }

    @Test("optional fields absent stay absent; each present alone survives", arguments: 0..<7)
    func optionalFields(which: Int) throws {
        var frame = sampleFrame(atoms: 50, full: false)
        let full = sampleFrame(atoms: 50, full: true)
        switch which {
        case 1: frame.velocities = full.velocities
        case 2: frame.forces = full.forces
        case 3: frame.userEnergy = full.userEnergy
        case 4: frame.userForces = full.userForces
        case 5: frame.userWork = full.userWork
        case 6: frame.publishedAt = full.publishedAt
        default: break
        }
        for codec in [Codec.raw, .lossless, .quantized()] {
            let decoded = try FrameDecoder.decode(FrameEncoder.encode(frame, options: .init(positions: codec)))
            #expect((decoded.velocities == nil) == (frame.velocities == nil))
            #expect((decoded.forces == nil) == (frame.forces == nil))
            #expect(decoded.userEnergy == frame.userEnergy)
            #expect(decoded.userForces == frame.userForces)
            #expect(decoded.userWork == frame.userWork)
            #expect(decoded.publishedAt == frame.publishedAt)
            #expect(bitwiseEqual(decoded.velocities, frame.velocities)) // lossless by default
            #expect(bitwiseEqual(decoded.forces, frame.forces))
        }
    }

    @Test("codec per field: quantized positions, lossless velocities, raw forces")
    func mixedCodecs() throws {
        let frame = sampleFrame(atoms: 300)
        let message = try FrameEncoder.encode(frame, options: .init(positions: .quantized(), velocities: .lossless, forces: .raw))
        let codecs = Dictionary(uniqueKeysWithValues: fieldTable(message).map { ($0.id, $0.codec) })
        #expect(codecs[1] == 2 && codecs[5] == 1 && codecs[6] == 0)
        let decoded = try FrameDecoder.decode(message)
        #expect(withinQuantization(decoded.positions.x, frame.positions.x, precision: 0.001))
        #expect(bitwiseEqual(decoded.velocities, frame.velocities))
        #expect(bitwiseEqual(decoded.forces, frame.forces))
    }

    @Test("header values survive at their extremes")
    func headerExtremes() throws {
        var frame = sampleFrame(atoms: 3, full: false)
        for (index, step, time) in [(UInt64.max, Int64.min, -1.0e300), (0, Int64.max, 0.0), (1, -1, Double.leastNonzeroMagnitude)] {
            frame.index = index
            frame.step = step
            frame.time = time
            let decoded = try FrameDecoder.decode(FrameEncoder.encode(frame, codec: .lossless))
            #expect(decoded.index == index && decoded.step == step && decoded.time == time)
        }
    }

    @Test("lossless keeps NaN and infinities bit for bit; quantized refuses them")
    func nonFinite() throws {
        var frame = sampleFrame(atoms: 10, full: false)
        frame.positions.x[3] = .nan
        frame.positions.y[4] = -.infinity
        frame.positions.z[5] = Float(bitPattern: 0x7FC0_1234) // a NaN with a payload
        let decoded = try FrameDecoder.decode(FrameEncoder.encode(frame, codec: .lossless))
        #expect(bitwiseEqual(decoded.positions, frame.positions))
        #expect(wireError { try FrameEncoder.encode(frame, codec: .quantized()) } == .notQuantizable(field: .positions))
        var far = sampleFrame(atoms: 10, full: false)
        far.positions.x[0] = 2e6 // 2e9 quanta of 0.001 nm: beyond 2^30
        #expect(wireError { try FrameEncoder.encode(far, codec: .quantized()) } == .notQuantizable(field: .positions))
        #expect(throws: Never.self) { try FrameEncoder.encode(far, codec: .quantized(precision: 0.01)) }
    }

    @Test("invalid precisions and inconsistent frames are refused by the encoder")
    func encoderRefuses() {
        let frame = sampleFrame(atoms: 10)
        for p in [0, -0.001, .nan, .infinity, 1e-13, 2e6] {
            let error = wireError { try FrameEncoder.encode(frame, codec: .quantized(precision: p)) }
            #expect({ if case .invalidPrecision? = error { return true }; return false }(), "precision \(p): \(String(describing: error))")
        }
        var ragged = frame
        ragged.positions.z.removeLast()
        #expect(wireError { try FrameEncoder.encode(ragged) } != nil)
        var shortVelocities = frame
        shortVelocities.velocities = AtomVectors(zeros: 9)
        #expect(wireError { try FrameEncoder.encode(shortVelocities) } != nil)
        var badUserForce = frame
        badUserForce.userForces = [UserForce(index: 10, force: [1, 1, 1])]
        #expect(wireError { try FrameEncoder.encode(badUserForce) } != nil)
        var badTopology = sampleTopology(atoms: 9)
        badTopology.types[4] = 2
        #expect(wireError { try TopologyEncoder.encode(badTopology) } != nil)
        badTopology = sampleTopology(atoms: 9)
        badTopology.bonds = [SIMD2(0, 9)]
        #expect(wireError { try TopologyEncoder.encode(badTopology) } != nil)
        badTopology = sampleTopology(atoms: 9)
        badTopology.atomNames?.removeLast()
        #expect(wireError { try TopologyEncoder.encode(badTopology) } != nil)
    }

    @Test("topology round trip, compressed and raw, with and without optional tables", arguments: [true, false], [0, 1, 3, 300])
    func topology(compressed: Bool, atoms: Int) throws {
        for full in [true, false] {
            var topology = sampleTopology(atoms: atoms, full: full)
            if full, atoms > 0 { topology.atomNames![0] = "Ĉα-ünïcode" }
            let message = try TopologyEncoder.encode(topology, compressed: compressed)
            #expect(try MessageKind.peek(message) == .topology)
            #expect(try TopologyDecoder.decode(message) == topology)
        }
    }

    @Test("peek tells frames from topologies; each decoder refuses the other kind")
    func kinds() throws {
        let frame = try FrameEncoder.encode(sampleFrame(atoms: 5))
        let topology = try TopologyEncoder.encode(sampleTopology(atoms: 5))
        #expect(try MessageKind.peek(frame) == .frame)
        #expect(try MessageKind.peek(topology) == .topology)
        #expect(wireError { try FrameDecoder.decode(topology) } == .wrongMessageKind(expected: .frame, actual: .topology))
        #expect(wireError { try TopologyDecoder.decode(frame) } == .wrongMessageKind(expected: .topology, actual: .frame))
    }

    @Test("unknown fields are skipped wherever they sit, whatever their codec")
    func unknownFieldsSkipped() throws {
        let frame = sampleFrame(atoms: 200)
        for codec in [Codec.raw, .lossless, .quantized()] {
            let message = try FrameEncoder.encode(frame, codec: codec)
            let expected = try FrameDecoder.decode(message)
            let fieldCount = fieldTable(message).count
            for position in [0, 1, fieldCount] {
                for (id, fieldCodec) in [(UInt16(100), UInt8(0)), (UInt16(0xFFFF), UInt8(250))] {
                    let extended = try insertField(message, at: position, id: id, codec: fieldCodec, count: 0xFFFF_FFFF,
                                                   data: [UInt8](repeating: 0xAB, count: 37))
                    #expect(try FrameDecoder.decode(extended) == expected)
                }
            }
            let empty = try insertField(message, at: 2, id: 4000, codec: 0, count: 0, data: [])
            #expect(try FrameDecoder.decode(empty) == expected)
        }
        let topology = sampleTopology(atoms: 30)
        let t = try TopologyEncoder.encode(topology)
        #expect(try TopologyDecoder.decode(insertField(t, at: 1, id: 6, codec: 1, count: 30, data: [1, 2, 3])) == topology)
    }

    @Test("a longer header (a later minor addition) is skipped; reserved bytes and flags are ignored")
    func forwardCompatibleHeader() throws {
        let frame = sampleFrame(atoms: 40)
        let message = try FrameEncoder.encode(frame)
        let hs = headerSize(message)
        var longer = Array(message[0..<(hs - 4)]) + [UInt8](repeating: 0x5A, count: 8) + message[(hs - 4)...]
        store(UInt16(hs + 8), &longer, 8)
        try WireChecksum.reseal(&longer)
        #expect(try FrameDecoder.decode(longer) == FrameDecoder.decode(message))
        let flagged = try resealed(message) { m in
            m[7] = 0xFF                                      // message flags
            for i in 48..<60 { m[i] = 0xEE }                 // reserved header bytes
            for e in fieldTable(m) { m[e.entryOffset + 3] = 0x77 } // field flags
        }
        #expect(try FrameDecoder.decode(flagged) == FrameDecoder.decode(message))
    }

    @Test("a summary reads the header and scalar fields without the per-atom ones, and checks the checksum")
    func summary() throws {
        let frame = sampleFrame(atoms: 300)
        var bytes = try FrameEncoder.encode(frame, codec: .quantized())
        let s = try FrameDecoder.summary(bytes)
        #expect(s.index == frame.index && s.step == frame.step && s.time == frame.time && s.atomCount == 300)
        #expect(s.temperature == frame.temperature && s.potentialEnergy == frame.energies.potential && s.publishedAt == frame.publishedAt)
        bytes[bytes.count - 1] ^= 0x40
        #expect(throws: WireError.self) { _ = try FrameDecoder.summary(bytes) }
        #expect(throws: WireError.self) { _ = try FrameDecoder.summary(Array(bytes.prefix(40))) }
    }

    @Test("the documented layout: magic, version, kind, sizes, checksum, field ids and sizes")
    func documentedLayout() throws {
        let frame = sampleFrame(atoms: 10)
        let m = try FrameEncoder.encode(frame, options: .init(positions: .raw, velocities: .raw, forces: .raw))
        #expect(Array(m[0..<4]) == Array("QVWR".utf8))
        #expect(load(m, 4, as: UInt16.self) == 1 && m[6] == 1)
        #expect(headerSize(m) == 64)
        #expect(load(m, 12, as: UInt32.self) == 10)
        #expect(load(m, 16, as: UInt64.self) == UInt64(m.count - 64))
        #expect(load(m, 24, as: UInt64.self) == 41 && load(m, 32, as: Int64.self) == 8200)
        #expect(Double(bitPattern: load(m, 40, as: UInt64.self)) == 16.4)
        let crc = WireChecksum.crc32c(Array(m[0..<60]) + Array(m[64...]))
        #expect(load(m, 60, as: UInt32.self) == crc)
        #expect(WireChecksum.crc32c(Array("123456789".utf8)) == 0xE306_9283)
        let table = fieldTable(m)
        #expect(table.map(\.id) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        #expect(Double(bitPattern: load(m, table[9].dataOffset, as: UInt64.self)) == frame.publishedAt)
        let positions = table[0]
        #expect(positions.count == 10 && positions.size == 120)
        // Raw positions are the x plane, then y, then z, float32 little-endian.
        #expect(Float(bitPattern: load(m, positions.dataOffset, as: UInt32.self)) == frame.positions.x[0])
        #expect(Float(bitPattern: load(m, positions.dataOffset + 40, as: UInt32.self)) == frame.positions.y[0])
        let box = table[1]
        #expect(Double(bitPattern: load(m, box.dataOffset, as: UInt64.self)) == 3)
        let t = try TopologyEncoder.encode(sampleTopology(atoms: 4), compressed: false)
        #expect(t[6] == 2 && headerSize(t) == 32 && load(t, 28, as: UInt32.self) == WireChecksum.crc32c(Array(t[0..<28]) + Array(t[32...])))
        #expect(fieldTable(t).map(\.id) == [1, 2, 3, 4, 5])
    }
}
