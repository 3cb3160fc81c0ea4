/// Everything encoding or decoding a wire message can fail with.
///
/// Decoding cases name the first thing found wrong with a message; none of them is ever a crash or
/// an allocation beyond `DecodeLimits.maxBytes`. The encoding cases (the last three) say what is
/// wrong with the value handed to an encoder.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The message is shorter than its header says (`needed` bytes, `available` given).
    case truncated(needed: Int, available: Int)
    /// The message is longer than its header says, or its fields do not fill its payload exactly.
    case sizeMismatch(expected: Int, actual: Int)
    /// The first 4 bytes are not "QVWR".
    case badMagic(UInt32)
    /// A protocol version this reader does not understand.
    case unsupportedVersion(UInt16)
    /// A message kind byte this reader does not know.
    case unknownMessageKind(UInt8)
    /// A valid message of another kind (a topology handed to the frame decoder, say).
    case wrongMessageKind(expected: MessageKind, actual: MessageKind)
    /// The header size field is smaller than the header of this kind.
    case badHeaderSize(Int)
    /// The CRC-32C stored in the header does not match the message.
    case checksumMismatch(stored: UInt32, computed: UInt32)
    /// More atoms than `DecodeLimits.maxAtoms`.
    case tooManyAtoms(count: Int, limit: Int)
    /// The message, or what decoding it would allocate, exceeds `DecodeLimits.maxBytes`.
    case tooLarge(bytes: Int, limit: Int)
    /// A field's encoded size runs past the end of the message.
    case fieldOverrun(field: FieldID, size: UInt64, available: Int)
    /// A known field with a codec it cannot have.
    case unsupportedCodec(field: FieldID, codec: UInt8)
    /// A known field with the wrong number of elements (`expected` when there is one right value).
    case badFieldCount(field: FieldID, count: Int, expected: Int?)
    /// A field whose encoded size does not fit its count and codec.
    case badFieldSize(field: FieldID, size: Int, expected: Int?)
    /// A known field appears twice.
    case duplicateField(FieldID)
    /// A field the message kind requires is absent.
    case missingField(FieldID)
    /// LZ4 rejected a field's compressed block, or it did not decompress to the announced size.
    case decompressionFailed(field: FieldID)
    /// A field's content is invalid (a quantized stream that does not decode, an index out of range,
    /// a name that is not UTF-8, ...).
    case corruptField(field: FieldID, reason: String)
    /// Encoding: the value is inconsistent (array lengths differ, an index is out of range, a count
    /// does not fit in 32 bits).
    case invalidInput(String)
    /// Encoding: a value cannot be quantized (NaN, infinite, or |value / precision| >= 2^30).
    case notQuantizable(field: FieldID)
    /// Encoding: a quantization precision outside [1e-12, 1e6] or not finite.
    case invalidPrecision(Double)

    public var description: String {
        switch self {
        case .truncated(let needed, let available): return "truncated message: \(available) bytes, \(needed) needed"
        case .sizeMismatch(let expected, let actual): return "size mismatch: \(actual) bytes where \(expected) were announced"
        case .badMagic(let magic): return "not a Quiver wire message (magic 0x\(String(magic, radix: 16)))"
        case .unsupportedVersion(let v): return "unsupported wire protocol version \(v) (this reader supports \(WireFormat.version))"
        case .unknownMessageKind(let k): return "unknown message kind \(k)"
        case .wrongMessageKind(let expected, let actual): return "expected a \(expected) message, got a \(actual) message"
        case .badHeaderSize(let size): return "header size \(size) is too small"
        case .checksumMismatch(let stored, let computed):
            return "checksum mismatch: stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16))"
        case .tooManyAtoms(let count, let limit): return "\(count) atoms exceed the limit of \(limit)"
        case .tooLarge(let bytes, let limit): return "\(bytes) bytes exceed the limit of \(limit)"
        case .fieldOverrun(let field, let size, let available): return "\(field): \(size) bytes announced, \(available) left in the message"
        case .unsupportedCodec(let field, let codec): return "\(field): unsupported codec \(codec)"
        case .badFieldCount(let field, let count, let expected):
            return "\(field): \(count) elements" + (expected.map { ", expected \($0)" } ?? " is invalid")
        case .badFieldSize(let field, let size, let expected):
            return "\(field): \(size) bytes" + (expected.map { ", expected \($0)" } ?? " cannot hold its elements")
        case .duplicateField(let field): return "\(field) appears twice"
        case .missingField(let field): return "\(field) is missing"
        case .decompressionFailed(let field): return "\(field): LZ4 decompression failed"
        case .corruptField(let field, let reason): return "\(field): \(reason)"
        case .invalidInput(let message): return "cannot encode: \(message)"
        case .notQuantizable(let field): return "\(field): a value is not finite or too large for the quantization precision"
        case .invalidPrecision(let p): return "quantization precision \(p) is outside [1e-12, 1e6]"
        }
    }
}
