import Foundation

/// The engine's state saved to a file (`engine-state.bin` in the run directory) when the run stops
/// because the engine kept failing: the newest consistent engine snapshot of the segment, for a
/// later `--resume`. Written atomically (`AtomicFile`). Layout, little-endian, version 1:
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 8 | magic `QVENGST\0` |
/// | 8 | 4 | version (1) |
/// | 12 | 4 | header size in bytes (96) |
/// | 16 | 4 | atom count N |
/// | 20 | 4 | pid of the engine that wrote the snapshot |
/// | 24 | 8 | step |
/// | 32 | 8 | time, ps (float64) |
/// | 40 | 24 | box x, y, z, nm (float64) |
/// | 64 | 8 | frames published when the snapshot was taken |
/// | 72 | 8 | snapshot index |
/// | 80 | 8 | FNV-1a 64 of the whole file with these 8 bytes zero |
/// | 88 | 8 | reserved (0) |
/// | 96 | 24 N | x, y, z, vx, vy, vz: N float32 each, nm and nm/ps |
/// | 96 + 24 N | 12 N | image counts x, y, z: N int32 each |
public enum EngineStateFile {
    public static let magic: [UInt8] = Array("QVENGST".utf8) + [0]
    public static let version: UInt32 = 1
    public static let headerSize = 96
    /// Its name in the run directory.
    public static let fileName = "engine-state.bin"

    /// Not a state file, a version this build does not read, or damaged.
    public struct Invalid: Error, CustomStringConvertible, Sendable {
        public let reason: String
        public var description: String { "not a valid engine state file: \(reason)" }
    }

    public static func encode(_ s: EngineSnapshot) -> [UInt8] {
        let n = s.x.count
        var out = [UInt8]()
        out.reserveCapacity(headerSize + 36 * n)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        out += magic
        put(version); put(UInt32(headerSize)); put(UInt32(n)); put(s.writerPID)
        put(s.step); put(s.time.bitPattern)
        put(s.box.x.bitPattern); put(s.box.y.bitPattern); put(s.box.z.bitPattern)
        put(s.framesPublished); put(s.index)
        put(UInt64(0)); put(UInt64(0))
        for a in [s.x, s.y, s.z, s.vx, s.vy, s.vz] { for v in a { put(v.bitPattern) } }
        for a in [s.imageX, s.imageY, s.imageZ] { for v in a { put(v) } }
        let sum = fnv1a(out)
        withUnsafeBytes(of: sum.littleEndian) { raw in for k in 0..<8 { out[80 + k] = raw[k] } }
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws -> EngineSnapshot {
        guard bytes.count >= headerSize, Array(bytes[0..<8]) == magic else { throw Invalid(reason: "no header") }
        func get<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            var v = T.zero
            withUnsafeMutableBytes(of: &v) { raw in for k in 0..<MemoryLayout<T>.size { raw[k] = bytes[at + k] } }
            return T(littleEndian: v)
        }
        let v = get(8, UInt32.self)
        guard v == version else { throw Invalid(reason: "version \(v), this build reads \(version)") }
        let header = Int(get(12, UInt32.self)), n = Int(get(16, UInt32.self))
        guard header >= headerSize, bytes.count == header + 36 * n else { throw Invalid(reason: "\(bytes.count) bytes for \(n) atoms") }
        var zeroed = bytes
        for k in 80..<88 { zeroed[k] = 0 }
        guard fnv1a(zeroed) == get(80, UInt64.self) else { throw Invalid(reason: "checksum mismatch") }
        var s = EngineSnapshot()
        s.writerPID = get(20, Int32.self)
        s.step = get(24, UInt64.self)
        s.time = Double(bitPattern: get(32, UInt64.self))
        s.box = SIMD3(Double(bitPattern: get(40, UInt64.self)), Double(bitPattern: get(48, UInt64.self)), Double(bitPattern: get(56, UInt64.self)))
        s.framesPublished = get(64, UInt64.self)
        s.index = get(72, UInt64.self)
        func floats(_ k: Int) -> [Float] { (0..<n).map { Float(bitPattern: get(header + 4 * (k * n + $0), UInt32.self)) } }
        func ints(_ k: Int) -> [Int32] { (0..<n).map { get(header + 4 * (k * n + $0), Int32.self) } }
        s.x = floats(0); s.y = floats(1); s.z = floats(2); s.vx = floats(3); s.vy = floats(4); s.vz = floats(5)
        s.imageX = ints(6); s.imageY = ints(7); s.imageZ = ints(8)
        return s
    }

    /// Writes `snapshot` to `path` atomically (mode 0600). Throws `AtomicFile.Failure`.
    public static func write(_ snapshot: EngineSnapshot, to path: String) throws {
        try AtomicFile.write(encode(snapshot), to: path)
    }

    /// Reads the state file at `path`. Throws `Invalid`, or the error reading it.
    public static func read(_ path: String) throws -> EngineSnapshot {
        try decode(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
    }

    static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}
