import CLZ4
import CQuiverWire

// The codecs of single fields (docs/protocol.md, "Codecs"). Word fields are `planes` arrays of `n`
// 4-byte words (float32 or uint32) written one after the other; byte fields are plain bytes.
//
//   raw        the words (or bytes) as they are, little-endian
//   lossless   u64 decoded size, then one LZ4 block of the byte-shuffled words (of the bytes)
//   quantized  f64 precision, then the bit stream of qw_quant.h (per-atom vectors only)

enum LZ4Block {
    /// LZ4's largest input (its sizes are Int32).
    static let maxInput = Int(LZ4_MAX_INPUT_SIZE)

    static func bound(_ n: Int) -> Int { Int(LZ4_compressBound(Int32(n))) }

    /// Compresses `n` bytes into `dst` (at least `bound(n)` bytes); returns the compressed size.
    static func compress(_ src: UnsafeRawPointer?, count n: Int, into dst: UnsafeMutableRawPointer?, capacity: Int) -> Int {
        guard n > 0, let src, let dst else { return 0 }
        return Int(LZ4_compress_default(src.assumingMemoryBound(to: CChar.self), dst.assumingMemoryBound(to: CChar.self),
                                        Int32(n), Int32(min(capacity, Int(Int32.max)))))
    }

    /// Decompresses `src` into exactly `count` bytes with LZ4's bounds-checked decoder.
    static func decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawPointer?, count: Int) -> Bool {
        if count == 0 { return src.isEmpty }
        guard let base = src.baseAddress, let dst, src.count <= Int(Int32.max), count <= maxInput else { return false }
        let n = LZ4_decompress_safe(base.assumingMemoryBound(to: CChar.self), dst.assumingMemoryBound(to: CChar.self),
                                    Int32(src.count), Int32(count))
        return Int(n) == count
    }

    /// LZ4 cannot expand a block by more than 255x (one extra byte per 255 bytes of a match); a claim
    /// beyond that is rejected before anything is allocated.
    static func plausible(decoded: Int, compressed: Int) -> Bool {
        decoded <= maxInput && decoded / 255 <= compressed
    }
}

/// Raw pointers to the planes of one field, valid only inside the `with` call that made them.
typealias Planes = [UnsafeRawPointer?]
typealias MutablePlanes = [UnsafeMutableRawPointer?]

enum WordCoding {
    /// One plane of `words` u32, sizes checked before allocating.
    static func readWords(_ field: ReceivedField, words: Int, budget: inout Budget) throws(WireError) -> [UInt32] {
        switch field.codec {
        case UInt8(QW_CODEC_RAW):
            guard field.data.count == 4 * words else { throw .badFieldSize(field: field.id, size: field.data.count, expected: 4 * words) }
        case UInt8(QW_CODEC_LOSSLESS):
            _ = try WordCoding.losslessBlock(field, decodedSize: 4 * words)
        default:
            throw .unsupportedCodec(field: field.id, codec: field.codec)
        }
        try budget.take(4 * words)
        var out = [UInt32](repeating: 0, count: words)
        try out.withUnsafeMutableBufferPointer { (w) throws(WireError) in
            try WordCoding.read(field, into: [UnsafeMutableRawPointer(w.baseAddress)], n: words, budget: &budget)
        }
        return out
    }

    static func bound(lossless: Bool, words: Int) -> Int {
        lossless ? 8 + LZ4Block.bound(4 * words) : 4 * words
    }

    /// Writes `planes` (each `n` words) with the raw or lossless codec; returns the bytes written.
    static func write(_ planes: Planes, n: Int, lossless: Bool, field: FieldID,
                      into out: UnsafeMutableRawBufferPointer) throws(WireError) -> Int {
        let words = planes.count * n
        guard let base = out.baseAddress else { return 0 }
        if !lossless {
            for (i, plane) in planes.enumerated() where n > 0 {
                (base + 4 * n * i).copyMemory(from: plane!, byteCount: 4 * n)
            }
            return 4 * words
        }
        guard 4 * words <= LZ4Block.maxInput else { throw .invalidInput("\(field): \(4 * words) bytes exceed LZ4's limit") }
        out.storeBytes(of: UInt64(4 * words), toByteOffset: 0, as: UInt64.self)
        guard words > 0 else { return 8 }
        let shuffled = UnsafeMutableRawPointer.allocate(byteCount: 4 * words, alignment: 64)
        defer { shuffled.deallocate() }
        let typed = planes.map { $0?.assumingMemoryBound(to: UInt32.self) }
        typed.withUnsafeBufferPointer { qw_shuffle4($0.baseAddress, planes.count, n, shuffled.assumingMemoryBound(to: UInt8.self)) }
        let compressed = LZ4Block.compress(shuffled, count: 4 * words, into: base + 8, capacity: out.count - 8)
        guard compressed > 0 else { throw .invalidInput("\(field): LZ4 compression failed") }
        return 8 + compressed
    }

    /// Decodes a raw or lossless field into `planes` (each `n` words, allocated by the caller after
    /// checking the budget). `budget` pays for the lossless scratch buffer.
    static func read(_ field: ReceivedField, into planes: MutablePlanes, n: Int, budget: inout Budget) throws(WireError) {
        let words = planes.count * n
        switch field.codec {
        case UInt8(QW_CODEC_RAW):
            guard field.data.count == 4 * words else { throw .badFieldSize(field: field.id, size: field.data.count, expected: 4 * words) }
            for (i, plane) in planes.enumerated() where n > 0 {
                plane!.copyMemory(from: field.data.baseAddress! + 4 * n * i, byteCount: 4 * n)
            }
        case UInt8(QW_CODEC_LOSSLESS):
            let block = try losslessBlock(field, decodedSize: 4 * words)
            guard words > 0 else {
                guard block.isEmpty else { throw .decompressionFailed(field: field.id) }
                return
            }
            try budget.take(4 * words)
            let shuffled = UnsafeMutableRawPointer.allocate(byteCount: 4 * words, alignment: 64)
            defer { shuffled.deallocate() }
            guard LZ4Block.decompress(block, into: shuffled, count: 4 * words) else { throw .decompressionFailed(field: field.id) }
            let typed = planes.map { $0?.assumingMemoryBound(to: UInt32.self) }
            typed.withUnsafeBufferPointer { qw_unshuffle4(shuffled.assumingMemoryBound(to: UInt8.self), planes.count, n, $0.baseAddress) }
        default:
            throw .unsupportedCodec(field: field.id, codec: field.codec)
        }
    }

    /// The LZ4 block of a lossless field whose announced decoded size must be `decodedSize`.
    static func losslessBlock(_ field: ReceivedField, decodedSize: Int) throws(WireError) -> UnsafeRawBufferPointer {
        let (block, size) = try losslessBlock(field)
        guard size == decodedSize else {
            throw .corruptField(field: field.id, reason: "announces \(size) decoded bytes, \(decodedSize) expected")
        }
        return block
    }

    /// The LZ4 block of a lossless field and its announced decoded size, checked against LZ4's limits
    /// and largest expansion (nothing is allocated yet).
    static func losslessBlock(_ field: ReceivedField) throws(WireError) -> (UnsafeRawBufferPointer, Int) {
        guard field.data.count >= 8 else { throw .badFieldSize(field: field.id, size: field.data.count, expected: nil) }
        let announced = field.data.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
        let block = UnsafeRawBufferPointer(rebasing: field.data[8...])
        guard announced <= UInt64(LZ4Block.maxInput), LZ4Block.plausible(decoded: Int(announced), compressed: block.count) else {
            throw .corruptField(field: field.id, reason: "announces \(announced) decoded bytes from a \(block.count)-byte LZ4 block")
        }
        return (block, Int(announced))
    }
}

enum ByteCoding {
    static func bound(lossless: Bool, count: Int) -> Int {
        lossless ? 8 + LZ4Block.bound(count) : count
    }

    static func write(_ bytes: UnsafeRawBufferPointer, lossless: Bool, field: FieldID,
                      into out: UnsafeMutableRawBufferPointer) throws(WireError) -> Int {
        guard let base = out.baseAddress else { return 0 }
        if !lossless {
            if !bytes.isEmpty { base.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
            return bytes.count
        }
        guard bytes.count <= LZ4Block.maxInput else { throw .invalidInput("\(field): \(bytes.count) bytes exceed LZ4's limit") }
        out.storeBytes(of: UInt64(bytes.count), toByteOffset: 0, as: UInt64.self)
        guard !bytes.isEmpty else { return 8 }
        let compressed = LZ4Block.compress(bytes.baseAddress, count: bytes.count, into: base + 8, capacity: out.count - 8)
        guard compressed > 0 else { throw .invalidInput("\(field): LZ4 compression failed") }
        return 8 + compressed
    }

    /// The decoded bytes of a raw or lossless byte field (`exactSize` of them when given), paid from
    /// `budget` before they are allocated.
    static func read(_ field: ReceivedField, exactSize: Int?, budget: inout Budget) throws(WireError) -> [UInt8] {
        switch field.codec {
        case UInt8(QW_CODEC_RAW):
            if let exactSize, field.data.count != exactSize {
                throw .badFieldSize(field: field.id, size: field.data.count, expected: exactSize)
            }
            try budget.take(field.data.count)
            return [UInt8](field.data)
        case UInt8(QW_CODEC_LOSSLESS):
            let (block, size) = try WordCoding.losslessBlock(field)
            if let exactSize, size != exactSize {
                throw .corruptField(field: field.id, reason: "announces \(size) decoded bytes, \(exactSize) expected")
            }
            try budget.take(size)
            var bytes = [UInt8](repeating: 0, count: size)
            let ok = bytes.withUnsafeMutableBufferPointer { LZ4Block.decompress(block, into: $0.baseAddress, count: size) }
            guard ok else { throw .decompressionFailed(field: field.id) }
            return bytes
        default:
            throw .unsupportedCodec(field: field.id, codec: field.codec)
        }
    }
}

enum QuantizedCoding {
    /// `p` when it is a usable precision.
    static func check(_ p: Double) throws(WireError) -> Double {
        guard p.isFinite, p >= QW_QUANT_MIN_PRECISION, p <= QW_QUANT_MAX_PRECISION else { throw .invalidPrecision(p) }
        return p
    }

    /// The most bytes `write` needs for `planes` planes of `n` values.
    static func bound(planes: Int, n: Int) -> Int { 8 + qw_quant_bound(planes, n) }

    /// Writes the field (f64 precision, then the stream) into `out` (at least `bound` bytes) with
    /// the named encoder build (supported by this CPU) and returns its size. `precision` must have
    /// passed `check`.
    static func write(_ planes: Planes, n: Int, precision p: Double, encoder: QuantizedEncoder, field: FieldID,
                      into out: UnsafeMutableRawBufferPointer) throws(WireError) -> Int {
        out.storeBytes(of: p, toByteOffset: 0, as: Double.self)
        var size = 0
        let status = planes.map { $0?.assumingMemoryBound(to: Float.self) }.withUnsafeBufferPointer { pointers in
            qw_quant_encode_variant(encoder.rawValue, pointers.baseAddress, planes.count, n, p,
                                    out.baseAddress!.assumingMemoryBound(to: UInt8.self) + 8, out.count - 8, &size)
        }
        switch status {
        case Int32(QW_OK): return 8 + size
        case Int32(QW_ERR_RANGE): throw .notQuantizable(field: field)
        default: throw .invalidPrecision(p)
        }
    }

    /// Checks the field before anything is allocated: precision and minimum stream size.
    static func validate(_ field: ReceivedField, planes: Int, n: Int) throws(WireError) -> (Double, UnsafeRawBufferPointer) {
        guard field.data.count >= 8 else { throw .badFieldSize(field: field.id, size: field.data.count, expected: nil) }
        let precision = field.data.loadUnaligned(fromByteOffset: 0, as: Double.self)
        guard precision.isFinite, precision >= QW_QUANT_MIN_PRECISION, precision <= QW_QUANT_MAX_PRECISION else {
            throw .corruptField(field: field.id, reason: "quantization precision \(precision) out of range")
        }
        let stream = UnsafeRawBufferPointer(rebasing: field.data[8...])
        guard stream.count >= qw_quant_min_bytes(planes, n) else {
            throw .badFieldSize(field: field.id, size: field.data.count, expected: nil)
        }
        return (precision, stream)
    }

    /// Decodes a validated stream into `planes` (each `n` floats, allocated by the caller).
    static func read(_ field: ReceivedField, precision: Double, stream: UnsafeRawBufferPointer, into planes: MutablePlanes, n: Int) throws(WireError) {
        let status = planes.map { $0?.assumingMemoryBound(to: Float.self) }.withUnsafeBufferPointer { pointers in
            qw_quant_read(stream.baseAddress?.assumingMemoryBound(to: UInt8.self), stream.count, planes.count, n, precision, pointers.baseAddress)
        }
        switch status {
        case Int32(QW_OK): return
        case Int32(QW_ERR_TRUNCATED): throw .corruptField(field: field.id, reason: "quantized stream ends early")
        case Int32(QW_ERR_TRAILING): throw .corruptField(field: field.id, reason: "bytes left after the quantized stream")
        case Int32(QW_ERR_CORRUPT): throw .corruptField(field: field.id, reason: "quantized value out of range")
        default: throw .corruptField(field: field.id, reason: "quantized stream rejected (\(status))")
        }
    }
}
