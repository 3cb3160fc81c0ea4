import CQuiverWire

/// Protocol constants (docs/protocol.md).
public enum WireFormat {
    /// The protocol version this module writes and reads.
    public static let version: UInt16 = UInt16(QW_VERSION)
    /// The first 4 bytes of every message: "QVWR".
    public static let magic: [UInt8] = [0x51, 0x56, 0x57, 0x52]
    /// Bytes of the frame header.
    public static let frameHeaderSize = MemoryLayout<qw_frame_header>.size
    /// Bytes of the topology header.
    public static let topologyHeaderSize = MemoryLayout<qw_topology_header>.size
    /// Bytes of one field table entry.
    public static let fieldEntrySize = MemoryLayout<qw_field_entry>.size
    /// Values per block of the quantized codec.
    public static let quantizedBlock = Int(QW_QUANT_BLOCK)
}

/// How per-atom vectors (positions, velocities, forces) are encoded.
public enum Codec: Sendable, Hashable, CustomStringConvertible {
    /// float32 as is: 12 bytes per atom. For debugging.
    case raw
    /// Bit-exact: byte shuffle then LZ4 (about 1.3x on the positions of a liquid).
    case lossless
    /// Each component rounded to the nearest multiple of `precision` (error at most precision / 2,
    /// plus float32 rounding of the result), predicted per block and Rice-coded. Precision is in the
    /// field's unit: nm for positions, nm/ps for velocities, kJ/mol/nm for forces.
    case quantized(precision: Double = 0.001)

    var wireValue: UInt8 {
        switch self {
        case .raw: return UInt8(QW_CODEC_RAW)
        case .lossless: return UInt8(QW_CODEC_LOSSLESS)
        case .quantized: return UInt8(QW_CODEC_QUANTIZED)
        }
    }

    public var description: String {
        switch self {
        case .raw: return "raw"
        case .lossless: return "lossless"
        case .quantized(let p): return "quantized(\(p))"
        }
    }
}

/// The builds of the quantized encoder. They write the same bytes; the fastest one the CPU runs
/// is picked at load time (`current`). Naming one is for tests and benchmarks.
public enum QuantizedEncoder: String, Sendable, CaseIterable {
    /// Plain C, every CPU.
    case portable
    /// x86-64 with AVX2, BMI2 and FMA.
    case avx2
    /// x86-64 with AVX-512 (F, BW, VL, DQ) as well.
    case avx512

    /// The one `FrameEncoder` uses on this CPU.
    public static var current: QuantizedEncoder { QuantizedEncoder(rawValue: String(cString: qw_quant_encoder_variant())) ?? .portable }

    /// Whether this CPU can run it.
    public var isSupported: Bool { qw_quant_encoder_supported(rawValue) != 0 }
}

/// Bounds a decoder enforces before it allocates anything.
public struct DecodeLimits: Sendable, Hashable {
    /// The most atoms a message may declare.
    public var maxAtoms: Int
    /// The largest message accepted, and the most bytes the decoder allocates for one message.
    public var maxBytes: Int

    public init(maxAtoms: Int = 10_000_000, maxBytes: Int = 1 << 30) {
        self.maxAtoms = maxAtoms
        self.maxBytes = maxBytes
    }

    /// 10 million atoms, 1 GiB.
    public static let `default` = DecodeLimits()
}

/// The kind of a message (byte 6).
public enum MessageKind: UInt8, Sendable, CustomStringConvertible {
    case frame = 1
    case topology = 2

    public var description: String {
        switch self {
        case .frame: return "frame"
        case .topology: return "topology"
        }
    }

    /// The kind of the message in `bytes`, from its first 8 bytes (magic, version, kind), for a
    /// subscriber that receives both kinds on one stream. Does not validate the rest.
    public static func peek(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> MessageKind {
        guard bytes.count >= 8 else { throw .truncated(needed: 8, available: bytes.count) }
        let magic = bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
        guard magic == QW_MAGIC else { throw .badMagic(magic) }
        let version = bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
        guard version == WireFormat.version else { throw .unsupportedVersion(version) }
        let kind = bytes[6]
        guard let known = MessageKind(rawValue: kind) else { throw .unknownMessageKind(kind) }
        return known
    }

    /// `peek` on an array.
    public static func peek(_ bytes: [UInt8]) throws(WireError) -> MessageKind {
        try bytes.withUnsafeBufferPointer { (buffer) throws(WireError) -> MessageKind in try peek(UnsafeRawBufferPointer(buffer)) }
    }
}

/// A field's identity: its message kind and its 16-bit id (docs/protocol.md lists them).
public struct FieldID: Hashable, Sendable, CustomStringConvertible {
    public var kind: MessageKind
    public var rawValue: UInt16

    public init(_ kind: MessageKind, _ rawValue: UInt16) {
        self.kind = kind
        self.rawValue = rawValue
    }

    // Frame fields.
    public static let positions = FieldID(.frame, 1)
    public static let box = FieldID(.frame, 2)
    public static let energies = FieldID(.frame, 3)
    public static let temperature = FieldID(.frame, 4)
    public static let velocities = FieldID(.frame, 5)
    public static let forces = FieldID(.frame, 6)
    public static let userEnergy = FieldID(.frame, 7)
    public static let userForces = FieldID(.frame, 8)
    public static let userWork = FieldID(.frame, 9)
    public static let publishedAt = FieldID(.frame, 10)

    // Topology fields.
    public static let types = FieldID(.topology, 1)
    public static let typeNames = FieldID(.topology, 2)
    public static let elements = FieldID(.topology, 3)
    public static let atomNames = FieldID(.topology, 4)
    public static let bonds = FieldID(.topology, 5)

    static let names: [FieldID: String] = [
        .positions: "positions", .box: "box", .energies: "energies", .temperature: "temperature",
        .velocities: "velocities", .forces: "forces", .userEnergy: "user energy",
        .userForces: "user forces", .userWork: "user work", .publishedAt: "published at",
        .types: "types", .typeNames: "type names", .elements: "elements", .atomNames: "atom names",
        .bonds: "bonds",
    ]

    public var description: String {
        if let name = FieldID.names[self] { return "\(kind) field \(name)" }
        return "\(kind) field \(rawValue)"
    }
}
