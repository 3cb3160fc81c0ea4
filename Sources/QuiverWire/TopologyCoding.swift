import CQuiverWire

/// Encodes topology messages.
public enum TopologyEncoder {
    /// Encodes `topology`; `compressed` writes the per-atom tables with the lossless codec (LZ4),
    /// otherwise raw. Throws `WireError.invalidInput` for an inconsistent topology (a type index
    /// without a name, per-atom arrays of the wrong length, a bond to a missing atom).
    public static func encode(_ topology: Topology, compressed: Bool = true) throws(WireError) -> [UInt8] {
        let n = topology.atomCount
        guard n <= Int(UInt32.max), topology.typeNames.count <= Int(UInt32.max) else {
            throw .invalidInput("topology too large for 32-bit counts")
        }
        for (i, t) in topology.types.enumerated() where Int(t) >= topology.typeNames.count {
            throw .invalidInput("atom \(i) has type \(t) but there are \(topology.typeNames.count) type names")
        }
        var fields: [PendingField] = []
        fields.append(wordField(.types, count: n, words: topology.types, lossless: compressed))
        fields.append(try stringField(.typeNames, topology.typeNames, lossless: compressed))
        if let elements = topology.elements {
            guard elements.count == n else { throw .invalidInput("elements: \(elements.count) for \(n) atoms") }
            fields.append(byteField(.elements, count: n, bytes: elements, lossless: compressed))
        }
        if let names = topology.atomNames {
            guard names.count == n else { throw .invalidInput("atom names: \(names.count) for \(n) atoms") }
            fields.append(try stringField(.atomNames, names, lossless: compressed))
        }
        if let bonds = topology.bonds {
            guard bonds.count <= Int(UInt32.max) / 2 else { throw .invalidInput("too many bonds") }
            var words = [UInt32]()
            words.reserveCapacity(2 * bonds.count)
            for b in bonds {
                guard Int(b.x) < n, Int(b.y) < n else { throw .invalidInput("bond \(b.x)-\(b.y) refers to a missing atom (\(n) atoms)") }
                words.append(b.x)
                words.append(b.y)
            }
            fields.append(wordField(.bonds, count: bonds.count, words: words, lossless: compressed))
        }
        return try MessageBuilder.build(kind: .topology, header: qw_topology_header(), atomCount: UInt32(n), fields: fields)
    }

    static func wordField(_ id: FieldID, count: Int, words: [UInt32], lossless: Bool) -> PendingField {
        PendingField(id: id.rawValue, codec: (lossless ? Codec.lossless : .raw).wireValue, count: UInt32(count),
                     bound: WordCoding.bound(lossless: lossless, words: words.count)) { (out) throws(WireError) -> Int in
            try words.withUnsafeBufferPointer { (w) throws(WireError) -> Int in
                try WordCoding.write([UnsafeRawPointer(w.baseAddress)], n: words.count, lossless: lossless, field: id, into: out)
            }
        }
    }

    static func byteField(_ id: FieldID, count: Int, bytes: [UInt8], lossless: Bool) -> PendingField {
        PendingField(id: id.rawValue, codec: (lossless ? Codec.lossless : .raw).wireValue, count: UInt32(count),
                     bound: ByteCoding.bound(lossless: lossless, count: bytes.count)) { (out) throws(WireError) -> Int in
            try bytes.withUnsafeBufferPointer { (b) throws(WireError) -> Int in
                try ByteCoding.write(UnsafeRawBufferPointer(b), lossless: lossless, field: id, into: out)
            }
        }
    }

    /// A string table: `count` u32 byte lengths, then the UTF-8 bytes of every string back to back.
    static func stringField(_ id: FieldID, _ strings: [String], lossless: Bool) throws(WireError) -> PendingField {
        var table = [UInt8]()
        var utf8 = [UInt8]()
        table.reserveCapacity(4 * strings.count)
        for s in strings {
            let bytes = Array(s.utf8)
            guard bytes.count <= Int(UInt32.max) else { throw .invalidInput("\(id): a name is longer than 4 GiB") }
            withUnsafeBytes(of: UInt32(bytes.count).littleEndian) { table += $0 }
            utf8 += bytes
        }
        return byteField(id, count: strings.count, bytes: table + utf8, lossless: lossless)
    }
}

/// Decodes topology messages, with the same guarantees as `FrameDecoder`.
public enum TopologyDecoder {
    /// Decodes one topology message. Unknown fields are skipped.
    public static func decode(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits = .default) throws(WireError) -> Topology {
        let message = try MessageReader(bytes, kind: .topology, minimumHeaderSize: WireFormat.topologyHeaderSize, limits: limits)
        let n = message.atomCount
        var budget = Budget(limit: limits.maxBytes, used: 0)
        var seen = Set<UInt16>()
        var types: [UInt32]?, typeNames: [String]?, elements: [UInt8]?, atomNames: [String]?, bonds: [SIMD2<UInt32>]?
        for field in message.fields {
            guard FieldID.names[field.id] != nil else { continue } // unknown: skipped
            guard seen.insert(field.id.rawValue).inserted else { throw .duplicateField(field.id) }
            switch field.id {
            case .types:
                guard field.count == n else { throw .badFieldCount(field: field.id, count: field.count, expected: n) }
                types = try WordCoding.readWords(field, words: n, budget: &budget)
            case .typeNames:
                guard field.count <= limits.maxAtoms else { throw .badFieldCount(field: field.id, count: field.count, expected: nil) }
                typeNames = try readStrings(field, budget: &budget)
            case .elements:
                guard field.count == n else { throw .badFieldCount(field: field.id, count: field.count, expected: n) }
                elements = try ByteCoding.read(field, exactSize: n, budget: &budget)
            case .atomNames:
                guard field.count == n else { throw .badFieldCount(field: field.id, count: field.count, expected: n) }
                atomNames = try readStrings(field, budget: &budget)
            case .bonds:
                let m = field.count
                let words = try WordCoding.readWords(field, words: 2 * m, budget: &budget)
                try budget.take(MemoryLayout<SIMD2<UInt32>>.stride * m)
                var pairs: [SIMD2<UInt32>] = []
                pairs.reserveCapacity(m)
                for i in 0..<m {
                    let pair = SIMD2(words[2 * i], words[2 * i + 1])
                    guard Int(pair.x) < n, Int(pair.y) < n else {
                        throw .corruptField(field: field.id, reason: "bond \(pair.x)-\(pair.y) refers to a missing atom (\(n) atoms)")
                    }
                    pairs.append(pair)
                }
                bonds = pairs
            default:
                continue
            }
        }
        guard let types else { throw .missingField(.types) }
        guard let typeNames else { throw .missingField(.typeNames) }
        for t in types where Int(t) >= typeNames.count {
            throw .corruptField(field: .types, reason: "type \(t) has no name (\(typeNames.count) type names)")
        }
        return Topology(types: types, typeNames: typeNames, elements: elements, atomNames: atomNames, bonds: bonds)
    }

    /// `decode` on an array.
    public static func decode(_ bytes: [UInt8], limits: DecodeLimits = .default) throws(WireError) -> Topology {
        try bytes.withUnsafeBufferPointer { (buffer) throws(WireError) -> Topology in
            try decode(UnsafeRawBufferPointer(buffer), limits: limits)
        }
    }

    /// A string table of `field.count` strings (see `TopologyEncoder.stringField`).
    static func readStrings(_ field: ReceivedField, budget: inout Budget) throws(WireError) -> [String] {
        let count = field.count
        let bytes = try ByteCoding.read(field, exactSize: nil, budget: &budget)
        guard count <= bytes.count / 4 else { throw .corruptField(field: field.id, reason: "\(count) names in \(bytes.count) bytes") }
        try budget.take(MemoryLayout<String>.stride * count + bytes.count)
        return try bytes.withUnsafeBufferPointer { (raw) throws(WireError) -> [String] in
            let lengths = UnsafeRawBufferPointer(raw)
            var offset = 4 * count
            var strings: [String] = []
            strings.reserveCapacity(count)
            for i in 0..<count {
                let length = Int(lengths.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                guard length <= raw.count - offset else { throw .corruptField(field: field.id, reason: "name \(i) runs past the table") }
                guard let s = String(validating: raw[offset..<(offset + length)], as: UTF8.self) else {
                    throw .corruptField(field: field.id, reason: "name \(i) is not UTF-8")
                }
                strings.append(s)
                offset += length
            }
            guard offset == raw.count else { throw .corruptField(field: field.id, reason: "\(raw.count - offset) bytes after the last name") }
            return strings
        }
    }
}
