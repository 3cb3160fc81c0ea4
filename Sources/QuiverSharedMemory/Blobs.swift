import CQuiverShm
import Glibc

/// The blobs of a segment (`segment.blobs`): variable-length byte strings one process each keeps
/// in the segment, double-buffered under a seqlock, so a reader gets the newest consistent version
/// and a writer killed mid-write leaves the previous one.
public struct BlobStore: Sendable {
    let mapping: Mapping

    /// The blobs a segment holds.
    public enum Blob: UInt32, Sendable {
        /// The engine's control state (run parameters, interactions).
        case engine = 0
        /// The control worker's shared-state store.
        case state = 1
    }

    /// Data bytes `blob` holds.
    public func capacity(_ blob: Blob) -> Int { Int(mapping.with { qv_shm_blob_capacity($0, blob.rawValue) }) }

    /// Writes a new version of `blob` (one writer per blob). Throws `.capacity` when it does not fit.
    public func write(_ blob: Blob, _ bytes: [UInt8]) throws {
        let rc = bytes.withUnsafeBytes { b in mapping.with { qv_shm_blob_write($0, blob.rawValue, b.baseAddress, UInt64(b.count), getpid()) } }
        guard rc == Int32(QV_SHM_OK) else {
            throw SharedMemoryError.capacity("\(bytes.count) bytes do not fit the \(blob) blob of \(capacity(blob)) bytes")
        }
    }

    /// The newest consistent version of `blob`, nil when it was never written. Throws a
    /// `ReadFailure` when neither buffer holds a consistent version (`.corrupt`, `.abandoned`) or a
    /// writer kept it busy through every attempt (`.busy`).
    public func read(_ blob: Blob) throws(ReadFailure) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: capacity(blob))
        var length: UInt64 = 0
        let rc = out.withUnsafeMutableBytes { b in
            mapping.with { qv_shm_blob_read($0, blob.rawValue, b.baseAddress, UInt64(b.count), &length, qv_shm_pid_alive) }
        }
        if rc == Int32(QV_SHM_READ_EMPTY) { return nil }
        if let failure = ReadFailure(status: rc) { throw failure }
        return Array(out.prefix(Int(length)))
    }
}
