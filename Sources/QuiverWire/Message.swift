import CQuiverWire

/// One field an encoder is about to write: its table entry, an upper bound of its encoded size, and
/// the function that writes it (returning the bytes written, at most `bound`).
struct PendingField {
    var id: UInt16
    var codec: UInt8
    var count: UInt32
    var bound: Int
    var write: (UnsafeMutableRawBufferPointer) throws(WireError) -> Int
}

/// A reusable output buffer for encoders: grows to the largest message asked of it and keeps that
/// memory, so a long-lived encoder (the broadcaster) allocates and faults in its pages once.
/// Not thread-safe: one owner.
public final class MessageBuffer {
    private var storage: UnsafeMutableRawBufferPointer
    /// Bytes of the last message written.
    public internal(set) var count = 0

    public init(capacity: Int = 0) {
        storage = .allocate(byteCount: max(capacity, 0), alignment: 64)
    }

    deinit { storage.deallocate() }

    /// The last message written.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[0..<count]) }

    /// Room for `capacity` bytes (the old contents are dropped when it grows).
    func reserve(_ capacity: Int) -> UnsafeMutableRawBufferPointer {
        if storage.count < capacity {
            storage.deallocate()
            storage = .allocate(byteCount: capacity, alignment: 64)
        }
        count = 0
        return storage
    }
}

/// Lays out a message: header, field table, field data, then sizes and checksum.
enum MessageBuilder {
    /// `header` is the kind's header struct with its kind-specific members set; the prefix and the
    /// checksum are filled in here.
    static func build<Header: BitwiseCopyable>(kind: MessageKind, header: Header, atomCount: UInt32,
                                                fields: [PendingField]) throws(WireError) -> [UInt8] {
        let capacity = try self.capacity(header: Header.self, fields: fields)
        var failure: WireError?
        let message = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
            do throws(WireError) {
                count = try write(kind: kind, header: header, atomCount: atomCount, fields: fields, into: UnsafeMutableRawBufferPointer(buffer))
            } catch {
                count = 0
                failure = error
            }
        }
        if let failure { throw failure }
        // A quantized field's bound is several times its size: the caller gets an array that does
        // not hold on to the unused part (one copy, as the separate field buffer cost before).
        return message.count * 2 < capacity ? message.withUnsafeBufferPointer { Array($0) } : message
    }

    /// As `build`, into `buffer`; returns the message (valid until the buffer is next used).
    static func build<Header: BitwiseCopyable>(kind: MessageKind, header: Header, atomCount: UInt32, fields: [PendingField],
                                                into buffer: MessageBuffer) throws(WireError) -> UnsafeRawBufferPointer {
        let raw = buffer.reserve(try capacity(header: Header.self, fields: fields))
        buffer.count = try write(kind: kind, header: header, atomCount: atomCount, fields: fields, into: raw)
        return buffer.bytes
    }

    static func capacity<Header>(header: Header.Type, fields: [PendingField]) throws(WireError) -> Int {
        guard fields.count <= Int(UInt16.max) else { throw .invalidInput("too many fields") }
        var capacity = MemoryLayout<Header>.size + fields.count * WireFormat.fieldEntrySize
        for field in fields { capacity += field.bound }
        return capacity
    }

    /// Writes the message into `raw` (at least `capacity` bytes); returns its size.
    static func write<Header: BitwiseCopyable>(kind: MessageKind, header: Header, atomCount: UInt32, fields: [PendingField],
                                                into raw: UnsafeMutableRawBufferPointer) throws(WireError) -> Int {
        let headerSize = MemoryLayout<Header>.size
        let tableSize = fields.count * WireFormat.fieldEntrySize
        raw.storeBytes(of: header, toByteOffset: 0, as: Header.self)
        var offset = headerSize + tableSize
        for (i, field) in fields.enumerated() {
            let region = UnsafeMutableRawBufferPointer(rebasing: raw[offset..<(offset + field.bound)])
            let written = try field.write(region)
            precondition(written <= field.bound, "a field wrote past its bound")
            let entry = qw_field_entry(id: field.id, codec: field.codec, flags: 0, count: field.count, size: UInt64(written))
            raw.storeBytes(of: entry, toByteOffset: headerSize + i * WireFormat.fieldEntrySize, as: qw_field_entry.self)
            offset += written
        }
        let prefix = qw_prefix(magic: QW_MAGIC, version: WireFormat.version, kind: kind.rawValue, flags: 0,
                               header_size: UInt16(headerSize), field_count: UInt16(fields.count),
                               atom_count: atomCount, payload_size: UInt64(offset - headerSize))
        raw.storeBytes(of: prefix, toByteOffset: 0, as: qw_prefix.self)
        let crc = WireChecksum.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<offset]), headerSize: headerSize)
        raw.storeBytes(of: crc, toByteOffset: headerSize - 4, as: UInt32.self)
        return offset
    }
}

/// A field of a received message: its table entry and its encoded bytes (inside the message).
struct ReceivedField {
    var id: FieldID
    var codec: UInt8
    var count: Int
    var data: UnsafeRawBufferPointer
}

/// Allocation accounting for one decode: every allocation is taken from `DecodeLimits.maxBytes`.
struct Budget {
    let limit: Int
    private(set) var used: Int

    init(limit: Int, used: Int) {
        self.limit = limit
        self.used = used
    }

    mutating func take(_ bytes: Int) throws(WireError) {
        guard bytes >= 0, bytes <= limit - used else {
            throw .tooLarge(bytes: used.addingReportingOverflow(max(bytes, 0)).partialValue, limit: limit)
        }
        used += bytes
    }
}

/// The checked envelope of a received message: prefix, sizes, limits and checksum verified, the field
/// table walked with every size checked against what is left.
struct MessageReader {
    let bytes: UnsafeRawBufferPointer
    let headerSize: Int
    let atomCount: Int
    let fields: [ReceivedField]

    /// Checks, in this order: magic, version, kind, header size, length against the header (truncated
    /// or trailing bytes), the size and atom limits, the checksum, then the field table.
    init(_ bytes: UnsafeRawBufferPointer, kind: MessageKind, minimumHeaderSize: Int, limits: DecodeLimits) throws(WireError) {
        let actual = try MessageKind.peek(bytes)
        guard actual == kind else { throw .wrongMessageKind(expected: kind, actual: actual) }
        let prefixSize = MemoryLayout<qw_prefix>.size
        guard bytes.count >= prefixSize else { throw .truncated(needed: prefixSize, available: bytes.count) }
        let prefix = bytes.loadUnaligned(fromByteOffset: 0, as: qw_prefix.self)
        let headerSize = Int(prefix.header_size)
        guard headerSize >= minimumHeaderSize else { throw .badHeaderSize(headerSize) }
        guard bytes.count >= headerSize else { throw .truncated(needed: headerSize, available: bytes.count) }
        // header_size is at most 65535, so the sum only overflows for payload sizes no message has.
        guard prefix.payload_size <= UInt64(Int.max - headerSize) else {
            throw .truncated(needed: Int.max, available: bytes.count)
        }
        let total = headerSize + Int(prefix.payload_size)
        guard bytes.count >= total else { throw .truncated(needed: total, available: bytes.count) }
        guard bytes.count == total else { throw .sizeMismatch(expected: total, actual: bytes.count) }
        guard total <= limits.maxBytes else { throw .tooLarge(bytes: total, limit: limits.maxBytes) }
        let atoms = Int(prefix.atom_count)
        guard atoms <= limits.maxAtoms else { throw .tooManyAtoms(count: atoms, limit: limits.maxAtoms) }
        let stored = bytes.loadUnaligned(fromByteOffset: headerSize - 4, as: UInt32.self)
        let computed = WireChecksum.checksum(bytes, headerSize: headerSize)
        guard stored == computed else { throw .checksumMismatch(stored: stored, computed: computed) }

        let tableSize = Int(prefix.field_count) * WireFormat.fieldEntrySize
        guard tableSize <= total - headerSize else {
            throw .truncated(needed: headerSize + tableSize, available: total)
        }
        var fields: [ReceivedField] = []
        fields.reserveCapacity(Int(prefix.field_count))
        var offset = headerSize + tableSize
        for i in 0..<Int(prefix.field_count) {
            let entry = bytes.loadUnaligned(fromByteOffset: headerSize + i * WireFormat.fieldEntrySize, as: qw_field_entry.self)
            let id = FieldID(kind, entry.id)
            let available = total - offset
            guard entry.size <= UInt64(available) else { throw .fieldOverrun(field: id, size: entry.size, available: available) }
            let size = Int(entry.size)
            fields.append(ReceivedField(id: id, codec: entry.codec, count: Int(entry.count),
                                        data: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + size)])))
            offset += size
        }
        guard offset == total else { throw .sizeMismatch(expected: total, actual: offset) }
        self.bytes = bytes
        self.headerSize = headerSize
        self.atomCount = atoms
        self.fields = fields
    }

    func header<Header: BitwiseCopyable>(as type: Header.Type) -> Header {
        bytes.loadUnaligned(fromByteOffset: 0, as: Header.self)
    }
}

extension MessageKind {
    /// The first 7 bytes of every message of this kind and protocol version (magic, version,
    /// kind): a ZeroMQ subscription prefix that selects frames or topology on one publisher.
    public var subscriptionPrefix: [UInt8] {
        WireFormat.magic + [UInt8(WireFormat.version & 0xff), UInt8(WireFormat.version >> 8), rawValue]
    }
}
