import CQuiverWire

/// Encodes frames. Stateless and thread-safe; allocates the message and, for the lossless codec,
/// one scratch buffer the size of the raw field.
public enum FrameEncoder {
    /// Codec per field. User forces (few entries) are written lossless unless positions are raw.
    public struct Options: Sendable, Hashable {
        public var positions: Codec
        public var velocities: Codec
        public var forces: Codec
        /// The quantized encoder's build; nil: `QuantizedEncoder.current`. A build this CPU cannot
        /// run is an `invalidInput` error when a field is quantized.
        public var quantizedEncoder: QuantizedEncoder?

        public init(positions: Codec = .quantized(), velocities: Codec = .lossless, forces: Codec = .lossless,
                    quantizedEncoder: QuantizedEncoder? = nil) {
            self.positions = positions
            self.velocities = velocities
            self.forces = forces
            self.quantizedEncoder = quantizedEncoder
        }

        /// The same codec for positions, velocities and forces.
        public init(all codec: Codec) {
            self.init(positions: codec, velocities: codec, forces: codec)
        }
    }

    /// Encodes `frame` with `codec` for positions, velocities and forces.
    /// Throws `WireError.invalidInput` for an inconsistent frame, `.notQuantizable` or
    /// `.invalidPrecision` for the quantized codec.
    public static func encode(_ frame: Frame, codec: Codec = .quantized()) throws(WireError) -> [UInt8] {
        try encode(frame, options: Options(all: codec))
    }

    public static func encode(_ frame: Frame, options: Options) throws(WireError) -> [UInt8] {
        try frame.borrowed { (b) throws(WireError) in try encode(b, options: options) }
    }

    /// Encodes a frame whose arrays are borrowed (for example a shared-memory slot read in place).
    public static func encode(_ frame: BorrowedFrame, options: Options) throws(WireError) -> [UInt8] {
        let (header, fields) = try pending(frame, options: options)
        return try MessageBuilder.build(kind: .frame, header: header, atomCount: UInt32(frame.atomCount), fields: fields)
    }

    /// Encodes into `buffer` (grown when needed, reused across calls: no allocation once it is large
    /// enough) and returns the message, valid until the buffer is next used.
    public static func encode(_ frame: BorrowedFrame, options: Options, into buffer: MessageBuffer) throws(WireError) -> UnsafeRawBufferPointer {
        let (header, fields) = try pending(frame, options: options)
        return try MessageBuilder.build(kind: .frame, header: header, atomCount: UInt32(frame.atomCount), fields: fields, into: buffer)
    }

    static func pending(_ frame: BorrowedFrame, options: Options) throws(WireError) -> (qw_frame_header, [PendingField]) {
        let n = frame.atomCount
        guard frame.positions.isConsistent else { throw .invalidInput("positions: x, y and z have different lengths") }
        guard n <= Int(UInt32.max) else { throw .invalidInput("\(n) atoms do not fit in 32 bits") }
        var fields: [PendingField] = []
        let encoder = options.quantizedEncoder ?? .current
        fields.append(try vectorField(.positions, frame.positions, codec: options.positions, encoder: encoder))
        fields.append(scalarField(.box, [frame.box.x, frame.box.y, frame.box.z]))
        fields.append(scalarField(.energies, [frame.energies.potential, frame.energies.kinetic, frame.energies.total]))
        fields.append(scalarField(.temperature, [frame.temperature]))
        if let v = frame.velocities {
            guard v.isConsistent, v.count == n else { throw .invalidInput("velocities: \(v.count) vectors for \(n) atoms") }
            fields.append(try vectorField(.velocities, v, codec: options.velocities, encoder: encoder))
        }
        if let f = frame.forces {
            guard f.isConsistent, f.count == n else { throw .invalidInput("forces: \(f.count) vectors for \(n) atoms") }
            fields.append(try vectorField(.forces, f, codec: options.forces, encoder: encoder))
        }
        if let e = frame.userEnergy { fields.append(scalarField(.userEnergy, [e])) }
        if let forces = frame.userForces {
            fields.append(try userForcesField(forces, atoms: n, lossless: options.positions != .raw))
        }
        if let w = frame.userWork { fields.append(scalarField(.userWork, [w])) }
        if let t = frame.publishedAt { fields.append(scalarField(.publishedAt, [t])) }
        var header = qw_frame_header()
        header.frame_index = frame.index
        header.step = frame.step
        header.time = frame.time
        return (header, fields)
    }

    /// A vector field, written straight into the message by every codec (the pointers must stay
    /// valid until the message is built).
    static func vectorField(_ id: FieldID, _ v: BorrowedVectors, codec: Codec, encoder: QuantizedEncoder) throws(WireError) -> PendingField {
        let n = v.count
        let planes: Planes = [UnsafeRawPointer(v.x.baseAddress), UnsafeRawPointer(v.y.baseAddress), UnsafeRawPointer(v.z.baseAddress)]
        switch codec {
        case .raw, .lossless:
            let lossless = codec == .lossless
            return PendingField(id: id.rawValue, codec: codec.wireValue, count: UInt32(n),
                                bound: WordCoding.bound(lossless: lossless, words: 3 * n)) { (out) throws(WireError) -> Int in
                try WordCoding.write(planes, n: n, lossless: lossless, field: id, into: out)
            }
        case .quantized(let precision):
            let p = try QuantizedCoding.check(precision)
            guard encoder.isSupported else { throw .invalidInput("the \(encoder.rawValue) quantized encoder does not run on this CPU") }
            return PendingField(id: id.rawValue, codec: codec.wireValue, count: UInt32(n),
                                bound: QuantizedCoding.bound(planes: 3, n: n)) { (out) throws(WireError) -> Int in
                try QuantizedCoding.write(planes, n: n, precision: p, encoder: encoder, field: id, into: out)
            }
        }
    }

    static func scalarField(_ id: FieldID, _ values: [Double]) -> PendingField {
        PendingField(id: id.rawValue, codec: UInt8(QW_CODEC_RAW), count: UInt32(values.count), bound: 8 * values.count) { out in
            for (i, v) in values.enumerated() { out.storeBytes(of: v, toByteOffset: 8 * i, as: Double.self) }
            return 8 * values.count
        }
    }

    static func userForcesField(_ forces: [UserForce], atoms: Int, lossless: Bool) throws(WireError) -> PendingField {
        guard forces.count <= atoms else { throw .invalidInput("user forces: \(forces.count) entries for \(atoms) atoms") }
        var words = [UInt32]()
        words.reserveCapacity(4 * forces.count)
        for f in forces {
            guard Int(f.index) < atoms else { throw .invalidInput("user forces: atom index \(f.index) out of range (\(atoms) atoms)") }
            words += [f.index, f.force.x.bitPattern, f.force.y.bitPattern, f.force.z.bitPattern]
        }
        let id = FieldID.userForces
        return PendingField(id: id.rawValue, codec: (lossless ? Codec.lossless : .raw).wireValue, count: UInt32(forces.count),
                            bound: WordCoding.bound(lossless: lossless, words: words.count)) { (out) throws(WireError) -> Int in
            try words.withUnsafeBufferPointer { (w) throws(WireError) -> Int in
                try WordCoding.write([UnsafeRawPointer(w.baseAddress)], n: words.count, lossless: lossless, field: id, into: out)
            }
        }
    }
}

/// Decodes frames. Never trusts a size: every count and length is checked against the bytes left
/// and against `DecodeLimits` before anything is allocated; LZ4 runs only through its safe decoder.
public enum FrameDecoder {
    /// Decodes one frame message. Unknown fields are skipped. Throws `WireError` for any malformed
    /// input; `bytes` is only read, and only during the call.
    public static func decode(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits = .default) throws(WireError) -> Frame {
        let message = try MessageReader(bytes, kind: .frame, minimumHeaderSize: WireFormat.frameHeaderSize, limits: limits)
        let header = message.header(as: qw_frame_header.self)
        let n = message.atomCount
        var budget = Budget(limit: limits.maxBytes, used: 0)
        var seen = Set<UInt16>()
        var positions: AtomVectors?, velocities: AtomVectors?, forces: AtomVectors?
        var box: [Double]?, energies: [Double]?, temperature: [Double]?
        var userEnergy: [Double]?, userWork: [Double]?, userForces: [UserForce]?, publishedAt: [Double]?
        for field in message.fields {
            guard FieldID.names[field.id] != nil else { continue } // unknown: skipped
            guard seen.insert(field.id.rawValue).inserted else { throw .duplicateField(field.id) }
            switch field.id {
            case .positions: positions = try readVectors(field, atoms: n, budget: &budget)
            case .velocities: velocities = try readVectors(field, atoms: n, budget: &budget)
            case .forces: forces = try readVectors(field, atoms: n, budget: &budget)
            case .box: box = try readScalars(field, count: 3)
            case .energies: energies = try readScalars(field, count: 3)
            case .temperature: temperature = try readScalars(field, count: 1)
            case .userEnergy: userEnergy = try readScalars(field, count: 1)
            case .userWork: userWork = try readScalars(field, count: 1)
            case .publishedAt: publishedAt = try readScalars(field, count: 1)
            case .userForces: userForces = try readUserForces(field, atoms: n, budget: &budget)
            default: continue
            }
        }
        guard let positions else { throw .missingField(.positions) }
        guard let box else { throw .missingField(.box) }
        guard let energies else { throw .missingField(.energies) }
        guard let temperature else { throw .missingField(.temperature) }
        return Frame(index: header.frame_index, step: header.step, time: header.time,
                     box: SIMD3(box[0], box[1], box[2]),
                     energies: Frame.Energies(potential: energies[0], kinetic: energies[1], total: energies[2]),
                     temperature: temperature[0], positions: positions, velocities: velocities, forces: forces,
                     userEnergy: userEnergy?[0], userForces: userForces, userWork: userWork?[0],
                     publishedAt: publishedAt?[0])
    }

    /// `decode` on an array.
    public static func decode(_ bytes: [UInt8], limits: DecodeLimits = .default) throws(WireError) -> Frame {
        try bytes.withUnsafeBufferPointer { (buffer) throws(WireError) -> Frame in
            try decode(UnsafeRawBufferPointer(buffer), limits: limits)
        }
    }

    static func readVectors(_ field: ReceivedField, atoms n: Int, budget: inout Budget) throws(WireError) -> AtomVectors {
        guard field.count == n else { throw .badFieldCount(field: field.id, count: field.count, expected: n) }
        // Every size is checked before the arrays are allocated.
        var quantized: (Double, UnsafeRawBufferPointer)?
        switch field.codec {
        case UInt8(QW_CODEC_RAW):
            guard field.data.count == 12 * n else { throw .badFieldSize(field: field.id, size: field.data.count, expected: 12 * n) }
        case UInt8(QW_CODEC_LOSSLESS):
            _ = try WordCoding.losslessBlock(field, decodedSize: 12 * n)
        case UInt8(QW_CODEC_QUANTIZED):
            quantized = try QuantizedCoding.validate(field, planes: 3, n: n)
        default:
            throw .unsupportedCodec(field: field.id, codec: field.codec)
        }
        try budget.take(12 * n)
        var v = AtomVectors(zeros: n)
        try v.x.withUnsafeMutableBufferPointer { (x) throws(WireError) in
            try v.y.withUnsafeMutableBufferPointer { (y) throws(WireError) in
                try v.z.withUnsafeMutableBufferPointer { (z) throws(WireError) in
                    let planes: MutablePlanes = [UnsafeMutableRawPointer(x.baseAddress), UnsafeMutableRawPointer(y.baseAddress),
                                                 UnsafeMutableRawPointer(z.baseAddress)]
                    if let (precision, stream) = quantized {
                        try QuantizedCoding.read(field, precision: precision, stream: stream, into: planes, n: n)
                    } else {
                        try WordCoding.read(field, into: planes, n: n, budget: &budget)
                    }
                }
            }
        }
        return v
    }

    /// What a frame message says about itself without decoding its per-atom fields: the header,
    /// validated with its checksum, and the scalar fields. For clients that only follow the
    /// stream (monitoring, delivery benchmarks).
    public struct Summary: Sendable, Equatable {
        public var index: UInt64
        public var step: Int64
        public var time: Double
        public var atomCount: Int
        public var temperature: Double?
        public var potentialEnergy: Double?
        public var publishedAt: Double?
    }

    /// The header and scalar fields of a frame message; the per-atom fields are left undecoded.
    public static func summary(_ bytes: [UInt8], limits: DecodeLimits = .default) throws(WireError) -> Summary {
        try bytes.withUnsafeBufferPointer { (buffer) throws(WireError) -> Summary in
            try summary(UnsafeRawBufferPointer(buffer), limits: limits)
        }
    }

    /// `summary` of bytes read in place (`bytes` is only read, and only during the call).
    public static func summary(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits = .default) throws(WireError) -> Summary {
        let message = try MessageReader(bytes, kind: .frame, minimumHeaderSize: WireFormat.frameHeaderSize, limits: limits)
        let header = message.header(as: qw_frame_header.self)
        var s = Summary(index: header.frame_index, step: header.step, time: header.time, atomCount: message.atomCount)
        for field in message.fields {
            switch field.id {
            case .temperature: s.temperature = try readScalars(field, count: 1)[0]
            case .energies: s.potentialEnergy = try readScalars(field, count: 3)[0]
            case .publishedAt: s.publishedAt = try readScalars(field, count: 1)[0]
            default: continue
            }
        }
        return s
    }

    static func readScalars(_ field: ReceivedField, count: Int) throws(WireError) -> [Double] {
        guard field.codec == UInt8(QW_CODEC_RAW) else { throw .unsupportedCodec(field: field.id, codec: field.codec) }
        guard field.count == count else { throw .badFieldCount(field: field.id, count: field.count, expected: count) }
        guard field.data.count == 8 * count else { throw .badFieldSize(field: field.id, size: field.data.count, expected: 8 * count) }
        return (0..<count).map { field.data.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self) }
    }

    static func readUserForces(_ field: ReceivedField, atoms n: Int, budget: inout Budget) throws(WireError) -> [UserForce] {
        let m = field.count
        guard m <= n else { throw .badFieldCount(field: field.id, count: m, expected: nil) }
        // Per force: atom index, fx, fy, fz as u32 words (sizes checked before allocating).
        let words = try WordCoding.readWords(field, words: 4 * m, budget: &budget)
        try budget.take(MemoryLayout<UserForce>.stride * m)
        var forces: [UserForce] = []
        forces.reserveCapacity(m)
        for i in 0..<m {
            let index = words[4 * i]
            guard Int(index) < n else { throw .corruptField(field: field.id, reason: "atom index \(index) out of range (\(n) atoms)") }
            forces.append(UserForce(index: index, force: SIMD3(Float(bitPattern: words[4 * i + 1]), Float(bitPattern: words[4 * i + 2]),
                                                               Float(bitPattern: words[4 * i + 3]))))
        }
        return forces
    }
}
