import Testing
import QuiverWire

/// Valid messages of every kind and codec, the material the malformed-input tests break.
func validMessages(atoms: Int = 150) throws -> [(name: String, bytes: [UInt8])] {
    let frame = sampleFrame(atoms: atoms)
    return [
        ("frame raw", try FrameEncoder.encode(frame, codec: .raw)),
        ("frame lossless", try FrameEncoder.encode(frame, codec: .lossless)),
        ("frame quantized", try FrameEncoder.encode(frame, codec: .quantized())),
        ("frame minimal", try FrameEncoder.encode(sampleFrame(atoms: atoms, full: false))),
        ("topology compressed", try TopologyEncoder.encode(sampleTopology(atoms: atoms))),
        ("topology raw", try TopologyEncoder.encode(sampleTopology(atoms: atoms), compressed: false)),
    ]
}

/// Decodes with the decoder of the message's own kind (or the frame decoder when the kind is unreadable).
@discardableResult
func decodeAny(_ bytes: [UInt8], limits: DecodeLimits = .default) throws(WireError) -> Any {
    switch try? MessageKind.peek(bytes) {
    case .topology?: return try TopologyDecoder.decode(bytes, limits: limits)
    default: return try FrameDecoder.decode(bytes, limits: limits)
    }
}

func decodeError(_ bytes: [UInt8], limits: DecodeLimits = .default) -> WireError? {
    wireError { try decodeAny(bytes, limits: limits) }
}

@Suite("Malformed input")
struct MalformedTests {
    @Test("every proper prefix of a valid message is rejected as truncated")
    func truncatedEverywhere() throws {
        for (name, message) in try validMessages() {
            for length in 0..<message.count {
                let error = decodeError(Array(message[0..<length]))
                guard case .truncated? = error else {
                    Issue.record("\(name) cut to \(length) of \(message.count) bytes: \(String(describing: error))")
                    continue
                }
            }
            #expect(decodeError(message) == nil, "\(name) decodes whole")
            #expect(decodeError(message + [0]) == .sizeMismatch(expected: message.count, actual: message.count + 1))
        }
    }

    @Test("wrong magic, version and kind")
    func envelope() throws {
        let message = try FrameEncoder.encode(sampleFrame(atoms: 20))
        var m = message
        m[0] = UInt8(ascii: "X")
        #expect(decodeError(m) == .badMagic(0x5257_5658))
        #expect(wireError { try MessageKind.peek(m) } == .badMagic(0x5257_5658))
        for version: UInt16 in [0, 2, 0xFFFF] {
            m = message
            store(version, &m, 4)
            #expect(decodeError(m) == .unsupportedVersion(version))
            #expect(wireError { try MessageKind.peek(m) } == .unsupportedVersion(version))
        }
        m = message
        m[6] = 3
        #expect(decodeError(m) == .unknownMessageKind(3))
        #expect(wireError { try MessageKind.peek([0x51, 0x56, 0x57]) } == .truncated(needed: 8, available: 3))
        // A header size below the kind's header, with the checksum made valid for it.
        m = message
        store(UInt16(32), &m, 8)
        #expect(decodeError(m) == .badHeaderSize(32))
    }

    @Test("checksum mismatch: any single changed byte without resealing")
    func checksum() throws {
        for (name, message) in try validMessages(atoms: 40) {
            for offset in 0..<message.count {
                var m = message
                m[offset] ^= 0x10
                let error = decodeError(m)
                if offset < 24 {
                    // The prefix: magic, version, kind, sizes and counts fail their own checks first.
                    #expect(error != nil, "\(name): byte \(offset) changed and still decoded")
                } else {
                    #expect({ if case .checksumMismatch? = error { return true }; return false }(),
                            "\(name) byte \(offset): \(String(describing: error))")
                }
            }
        }
    }

    @Test("huge atom counts are rejected before anything is allocated", arguments: [
        UInt32(Int32.max), UInt32.max, 10_000_001, 1 << 24,
    ])
    func hugeAtomCounts(count: UInt32) throws {
        for codec in [Codec.raw, .lossless, .quantized()] {
            let message = try FrameEncoder.encode(sampleFrame(atoms: 100), codec: codec)
            // Header only: caught by the atom limit.
            let headerOnly = try resealed(message) { store(count, &$0, 12) }
            #expect(decodeError(headerOnly) == .tooManyAtoms(count: Int(count), limit: DecodeLimits.default.maxAtoms) || count <= 10_000_000)
            // Header and the positions entry agree, with no limit on atoms: the field sizes give it away.
            let both = try resealed(message) { m in
                store(count, &m, 12)
                store(count, &m, entry(m, id: 1).entryOffset + 4)
            }
            let error = decodeError(both, limits: DecodeLimits(maxAtoms: Int.max, maxBytes: 1 << 30))
            switch error {
            case .badFieldSize?, .corruptField?, .tooLarge?: break
            default: Issue.record("\(codec), \(count) atoms: \(String(describing: error))")
            }
        }
        let topology = try TopologyEncoder.encode(sampleTopology(atoms: 100))
        let t = try resealed(topology) { m in
            store(count, &m, 12)
            for e in fieldTable(m) where e.id != 2 && e.id != 5 { store(count, &m, e.entryOffset + 4) }
        }
        #expect(decodeError(t, limits: DecodeLimits(maxAtoms: Int.max)) != nil)
    }

    @Test("huge size fields are rejected against the bytes present", arguments: [
        UInt64(Int32.max), UInt64(UInt32.max), UInt64(Int64.max), UInt64.max, 1 << 40,
    ])
    func hugeSizes(size: UInt64) throws {
        let message = try FrameEncoder.encode(sampleFrame(atoms: 100), codec: .lossless)
        // Payload size.
        let payload = try resealed(message) { store(size, &$0, 16) }
        #expect({ if case .truncated? = decodeError(payload) { return true }; return false }())
        // A field's encoded size.
        for e in fieldTable(message) {
            let m = try resealed(message) { store(size, &$0, e.entryOffset + 8) }
            #expect({ if case .fieldOverrun? = decodeError(m) { return true }; return false }(), "field \(e.id)")
        }
        // A lossless field's announced decoded size.
        let positions = entry(message, id: 1)
        let announced = try resealed(message) { store(size, &$0, positions.dataOffset) }
        #expect({ if case .corruptField? = decodeError(announced) { return true }; return false }())
        // Element counts of variable-length fields.
        let topology = try TopologyEncoder.encode(sampleTopology(atoms: 100))
        for id: UInt16 in [2, 5] {
            let m = try resealed(topology) { store(UInt32(truncatingIfNeeded: size), &$0, entry($0, id: id).entryOffset + 4) }
            #expect(decodeError(m) != nil, "topology field \(id)")
        }
        let frame = try FrameEncoder.encode(sampleFrame(atoms: 100), codec: .raw)
        let userForces = try resealed(frame) { store(UInt32(truncatingIfNeeded: size), &$0, entry($0, id: 8).entryOffset + 4) }
        #expect(decodeError(userForces) != nil)
        // Field count.
        let fieldCount = try resealed(message) { store(UInt16.max, &$0, 10) }
        #expect({ if case .truncated? = decodeError(fieldCount) { return true }; return false }())
    }

    @Test("limits: atoms and bytes below what a message needs")
    func limits() throws {
        let message = try FrameEncoder.encode(sampleFrame(atoms: 1000), codec: .lossless)
        #expect(decodeError(message, limits: DecodeLimits(maxAtoms: 999)) == .tooManyAtoms(count: 1000, limit: 999))
        #expect(decodeError(message, limits: DecodeLimits(maxAtoms: 1000)) == nil)
        #expect(decodeError(message, limits: DecodeLimits(maxBytes: message.count - 1)) == .tooLarge(bytes: message.count, limit: message.count - 1))
        // The message fits, what it decodes into (three 12 kB vector fields plus scratch) does not.
        if case .tooLarge? = decodeError(message, limits: DecodeLimits(maxBytes: message.count + 20_000)) {} else {
            Issue.record("decoding past maxBytes was not refused")
        }
        let quantized = try FrameEncoder.encode(sampleFrame(atoms: 1000, full: false), codec: .quantized())
        if case .tooLarge? = decodeError(quantized, limits: DecodeLimits(maxBytes: 11_999)) {} else {
            Issue.record("decoding past maxBytes was not refused")
        }
    }

    @Test("corrupt LZ4 blocks fail as decompression errors (or decode, when LZ4 cannot tell)")
    func corruptLZ4() throws {
        let message = try FrameEncoder.encode(sampleFrame(atoms: 500), codec: .lossless)
        let positions = entry(message, id: 1)
        let block = (positions.dataOffset + 8)..<(positions.dataOffset + Int(positions.size))
        // All 0xFF: literal lengths that run past the block.
        let garbage = try resealed(message) { m in for i in block { m[i] = 0xFF } }
        #expect(decodeError(garbage) == .decompressionFailed(field: .positions))
        // Zeros: a token for an empty literal run and an offset of 0.
        let zeros = try resealed(message) { m in for i in block { m[i] = 0 } }
        #expect(decodeError(zeros) == .decompressionFailed(field: .positions))
        // Every byte of the block flipped in turn.
        var failures = 0
        for i in block {
            let m = try resealed(message) { $0[i] ^= 0xFF }
            switch decodeError(m) {
            case nil: break
            case .decompressionFailed(.positions)?: failures += 1
            case let other?: Issue.record("byte \(i): \(other)")
            }
        }
        #expect(failures > 0)
        // A block cut short, with the sizes made consistent again.
        let short = try resealed(Array(message[0..<(block.upperBound - 10)]) + message[block.upperBound...]) { m in
            store(UInt64(Int(positions.size) - 10), &m, positions.entryOffset + 8)
            store(UInt64(m.count - 64), &m, 16)
        }
        #expect(decodeError(short) == .decompressionFailed(field: .positions))
        // A wrong announced size.
        let announced = try resealed(message) { store(UInt64(500 * 12 - 4), &$0, positions.dataOffset) }
        #expect({ if case .corruptField(.positions, _)? = decodeError(announced) { return true }; return false }())
    }

    @Test("corrupt quantized streams fail as field errors")
    func corruptQuantized() throws {
        let message = try FrameEncoder.encode(sampleFrame(atoms: 500), codec: .quantized())
        let positions = entry(message, id: 1)
        let precision = positions.dataOffset
        for bad in [0.0, -0.001, .nan, .infinity, 1e-300, 1e300] {
            let m = try resealed(message) { store(bad.bitPattern, &$0, precision) }
            #expect({ if case .corruptField(.positions, _)? = decodeError(m) { return true }; return false }(), "precision \(bad)")
        }
        let stream = (positions.dataOffset + 8)..<(positions.dataOffset + Int(positions.size))
        for i in stream {
            let m = try resealed(message) { $0[i] ^= 0x5A }
            switch decodeError(m) {
            case nil, .corruptField(.positions, _)?: break
            case let other?: Issue.record("byte \(i): \(other)")
            }
        }
        // Stream shorter than one bit per value.
        let short = try resealed(Array(message[0..<(stream.lowerBound + 10)]) + message[stream.upperBound...]) { m in
            store(UInt64(18), &m, positions.entryOffset + 8)
            store(UInt64(m.count - 64), &m, 16)
        }
        #expect({ if case .badFieldSize(.positions, _, _)? = decodeError(short) { return true }; return false }())
    }

    @Test("structural errors: unsupported codec, counts, sizes, duplicates, missing fields")
    func structure() throws {
        let message = try FrameEncoder.encode(sampleFrame(atoms: 100), codec: .raw)
        let table = fieldTable(message)
        func edited(_ edit: (inout [UInt8]) -> Void) throws -> WireError? { decodeError(try resealed(message, edit)) }
        #expect(try edited { $0[table[0].entryOffset + 2] = 7 } == .unsupportedCodec(field: .positions, codec: 7))
        #expect(try edited { $0[table[1].entryOffset + 2] = 1 } == .unsupportedCodec(field: .box, codec: 1))
        #expect(try edited { $0[table[3].entryOffset + 2] = 2 } == .unsupportedCodec(field: .temperature, codec: 2))
        #expect(try edited { store(UInt32(99), &$0, table[0].entryOffset + 4) } == .badFieldCount(field: .positions, count: 99, expected: 100))
        #expect(try edited { store(UInt32(4), &$0, table[1].entryOffset + 4) } == .badFieldCount(field: .box, count: 4, expected: 3))
        #expect(try edited { store(UInt16(1), &$0, table[1].entryOffset) } == .duplicateField(.positions))
        #expect(try edited { store(UInt16(300), &$0, table[2].entryOffset) } == .missingField(.energies))
        // Sizes shifted between two fields: both entries still sum to the payload.
        #expect(try edited { m in
            store(table[0].size + 8, &m, table[0].entryOffset + 8)
            store(table[1].size - 8, &m, table[1].entryOffset + 8)
        } == .badFieldSize(field: .positions, size: 1208, expected: 1200))
        // Field sizes that do not fill the payload.
        #expect(try edited { store(table[8].size - 8, &$0, table[8].entryOffset + 8) } == .sizeMismatch(expected: message.count, actual: message.count - 8))
        // A user force on an atom that does not exist.
        let userForces = entry(message, id: 8)
        #expect({ if case .corruptField(.userForces, _)? = try? edited({ store(UInt32(100), &$0, userForces.dataOffset) }) { return true }; return false }())

        let topology = try TopologyEncoder.encode(sampleTopology(atoms: 30), compressed: false)
        let t = fieldTable(topology)
        func editedTopology(_ edit: (inout [UInt8]) -> Void) throws -> WireError? { decodeError(try resealed(topology, edit)) }
        #expect({ if case .corruptField(.types, _)? = try? editedTopology({ store(UInt32(2), &$0, t[0].dataOffset) }) { return true }; return false }())
        #expect({ if case .corruptField(.bonds, _)? = try? editedTopology({ store(UInt32(30), &$0, t[4].dataOffset) }) { return true }; return false }())
        // Atom names: a length running past the table, and bytes that are not UTF-8.
        #expect({ if case .corruptField(.atomNames, _)? = try? editedTopology({ store(UInt32(1000), &$0, t[3].dataOffset) }) { return true }; return false }())
        #expect({ if case .corruptField(.atomNames, _)? = try? editedTopology({ $0[t[3].dataOffset + 4 * 30] = 0xFF }) { return true }; return false }())
        #expect(try editedTopology { store(UInt16(9), &$0, t[0].entryOffset) } == .missingField(.types))
    }
}
