import CQuiverWire

/// CRC-32C (Castagnoli), the checksum every message carries in the last 4 bytes of its header. It
/// covers every byte of the message except those 4. Uses the SSE4.2 instruction when the CPU has it.
public enum WireChecksum {
    /// CRC-32C of `bytes`, continuing from `crc` (0 to start). `crc32c("123456789")` is 0xE3069283.
    public static func crc32c(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return crc }
        return qw_crc32c_update(crc, base, bytes.count)
    }

    public static func crc32c(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { crc32c($0, continuing: crc) }
    }

    /// The checksum `message` should carry, whatever is stored in it now. Reads only the header
    /// size (bytes 8-9); throws when the message cannot hold the header it announces.
    public static func expected(for message: UnsafeRawBufferPointer) throws(WireError) -> UInt32 {
        let headerSize = try checksummedHeaderSize(message)
        return checksum(message, headerSize: headerSize)
    }

    /// Recomputes and stores the checksum of `message` (for tools and tests that edit a message).
    public static func reseal(_ message: inout [UInt8]) throws(WireError) {
        try message.withUnsafeMutableBufferPointer { (buffer) throws(WireError) in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            let headerSize = try checksummedHeaderSize(UnsafeRawBufferPointer(raw))
            let crc = checksum(UnsafeRawBufferPointer(raw), headerSize: headerSize)
            raw.storeBytes(of: crc, toByteOffset: headerSize - 4, as: UInt32.self)
        }
    }

    static func checksummedHeaderSize(_ message: UnsafeRawBufferPointer) throws(WireError) -> Int {
        let prefix = MemoryLayout<qw_prefix>.size
        guard message.count >= prefix else { throw .truncated(needed: prefix, available: message.count) }
        let headerSize = Int(message.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
        guard headerSize >= prefix + 4 else { throw .badHeaderSize(headerSize) }
        guard message.count >= headerSize else { throw .truncated(needed: headerSize, available: message.count) }
        return headerSize
    }

    /// CRC-32C of `message` without the 4 bytes before `headerSize`.
    static func checksum(_ message: UnsafeRawBufferPointer, headerSize: Int) -> UInt32 {
        let head = crc32c(UnsafeRawBufferPointer(rebasing: message[0..<(headerSize - 4)]))
        return crc32c(UnsafeRawBufferPointer(rebasing: message[headerSize...]), continuing: head)
    }
}
