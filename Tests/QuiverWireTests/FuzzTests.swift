import Testing
import QuiverWire

@Suite("Fuzz")
struct FuzzTests {
    /// Random byte changes to valid messages, half of them resealed so that the decoder gets past the
    /// checksum into the fields. Every outcome must be a decoded value or a `WireError` (the typed
    /// throw guarantees the type; a crash, a trap or a runaway allocation fails the run).
    @Test("random byte flips of valid messages, fixed seed")
    func byteFlips() throws {
        var rng = TestRandom(seed: 0x5EED)
        let corpus = try validMessages(atoms: 200) + [
            ("frame quantized 1", try FrameEncoder.encode(sampleFrame(atoms: 1), codec: .quantized())),
            ("frame quantized 129", try FrameEncoder.encode(sampleFrame(atoms: 129, seed: 3), codec: .quantized(precision: 0.0001))),
            ("frame empty", try FrameEncoder.encode(sampleFrame(atoms: 0), codec: .lossless)),
        ]
        let limits = DecodeLimits(maxAtoms: 1 << 20, maxBytes: 1 << 24)
        var outcomes = [String: Int]()
        for iteration in 0..<4000 {
            let (name, message) = corpus[rng.below(corpus.count)]
            var m = message
            let flips = 1 + rng.below(4)
            for _ in 0..<flips {
                // Mostly inside the payload, sometimes in the header.
                let offset = rng.below(4) == 0 ? rng.below(min(64, m.count)) : rng.below(m.count)
                m[offset] ^= UInt8(1 + rng.below(255))
            }
            let reseal = iteration % 2 == 0
            if reseal { try? WireChecksum.reseal(&m) }
            let error = decodeError(m, limits: limits)
            let key = error.map { Mirror(reflecting: $0).children.first?.label ?? "\($0)" } ?? "decoded"
            outcomes[key, default: 0] += 1
            if !reseal && flips == 1 {
                #expect(error != nil, "\(name): one changed byte went unnoticed")
            }
        }
        // The loop reached past the envelope into the field decoders.
        #expect(outcomes.count >= 10 && outcomes["decoded", default: 0] > 0, "\(outcomes)")
    }

    @Test("random bytes after a valid header")
    func randomPayloads() throws {
        var rng = TestRandom(seed: 77)
        for kind in [MessageKind.frame, .topology] {
            let headerSize = kind == .frame ? 64 : 32
            for _ in 0..<1000 {
                let length = rng.below(400)
                var m = [UInt8](repeating: 0, count: headerSize + length)
                for i in headerSize..<m.count { m[i] = UInt8(truncatingIfNeeded: rng.next()) }
                m[0..<4] = [0x51, 0x56, 0x57, 0x52]
                store(UInt16(1), &m, 4)
                m[6] = kind.rawValue
                store(UInt16(headerSize), &m, 8)
                store(UInt16(rng.below(12)), &m, 10)
                store(UInt32(rng.below(64)), &m, 12)
                store(UInt64(length), &m, 16)
                try WireChecksum.reseal(&m)
                _ = decodeError(m)
            }
        }
    }
}
