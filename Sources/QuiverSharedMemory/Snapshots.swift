import CQuiverShm
import Glibc

/// An engine snapshot: the state a respawned engine continues from.
public struct EngineSnapshot: Sendable, Equatable {
    public var index: UInt64 = 0
    public var step: UInt64 = 0
    public var time: Double = 0
    public var box: SIMD3<Double> = .zero
    public var framesPublished: UInt64 = 0
    public var writerPID: Int32 = 0
    public var x: [Float] = [], y: [Float] = [], z: [Float] = []
    public var vx: [Float] = [], vy: [Float] = [], vz: [Float] = []
    public var imageX: [Int32] = [], imageY: [Int32] = [], imageZ: [Int32] = []
    public init() {}
}

/// The engine snapshots of a segment (`segment.snapshots`): two buffers written alternately, so a
/// writer killed mid-snapshot leaves the previous one intact and `read` falls back to it.
public struct SnapshotStore: Sendable {
    let mapping: Mapping
    let layout: SegmentLayout

    /// Snapshots written so far.
    public var written: UInt64 { mapping.with { qv_shm_snapshots_written($0) } }

    /// Writes an engine snapshot into the older of the two buffers. Throws `.capacity` when the
    /// arrays differ in length or exceed the segment.
    public func write(_ s: EngineSnapshot) throws {
        let n = s.x.count
        guard n <= layout.atomCapacity, [s.y, s.z, s.vx, s.vy, s.vz].allSatisfy({ $0.count == n }),
              [s.imageX, s.imageY, s.imageZ].allSatisfy({ $0.count == n }) else {
            throw SharedMemoryError.capacity("snapshot arrays must all have the same length <= \(layout.atomCapacity)")
        }
        var info = qv_shm_snapshot_info()
        info.step = s.step
        info.time_ps = s.time
        info.atom_count = UInt32(n)
        info.writer_pid = getpid()
        info.box = (s.box.x, s.box.y, s.box.z)
        info.frames_published = s.framesPublished
        let rc = withPointers(to: [s.x, s.y, s.z, s.vx, s.vy, s.vz]) { floats in
            withPointers(to: [s.imageX, s.imageY, s.imageZ]) { ints in
                mapping.with { qv_shm_write_snapshot($0, &info, floats, ints) }
            }
        }
        guard rc == Int32(QV_SHM_OK) else {
            throw SharedMemoryError.capacity("snapshot of \(n) atoms does not fit a segment of \(layout.atomCapacity)")
        }
    }

    /// The newest consistent snapshot (the older buffer when the newest is torn by a dead writer or
    /// corrupt), or nil when none was written. Throws a `ReadFailure` when neither buffer holds a
    /// consistent snapshot (`.corrupt`, `.abandoned`) or a writer kept it busy (`.busy`).
    public func read() throws(ReadFailure) -> EngineSnapshot? {
        let cap = layout.atomCapacity
        var info = qv_shm_snapshot_info()
        var ints = [Int32](repeating: 0, count: 3 * cap)
        let (status, floats) = readFlat(count: 6, capacity: cap) { f in
            ints.withUnsafeMutableBufferPointer { buffer in
                let p: [UnsafeMutablePointer<Int32>?] = (0..<3).map { buffer.baseAddress! + $0 * cap }
                return p.withUnsafeBufferPointer { images in
                    mapping.with { qv_shm_read_snapshot($0, &info, f, images.baseAddress!, UInt32(cap), qv_shm_pid_alive) }
                }
            }
        }
        if status == Int32(QV_SHM_READ_EMPTY) { return nil }
        if let failure = ReadFailure(status: status) { throw failure }
        let n = Int(info.atom_count)
        var s = EngineSnapshot()
        s.index = info.snapshot_index
        s.step = info.step
        s.time = info.time_ps
        s.box = SIMD3(info.box.0, info.box.1, info.box.2)
        s.framesPublished = info.frames_published
        s.writerPID = info.writer_pid
        func f(_ a: Int) -> [Float] { Array(floats[(a * cap)..<(a * cap + n)]) }
        func i(_ a: Int) -> [Int32] { Array(ints[(a * cap)..<(a * cap + n)]) }
        s.x = f(0); s.y = f(1); s.z = f(2); s.vx = f(3); s.vy = f(4); s.vz = f(5)
        s.imageX = i(0); s.imageY = i(1); s.imageZ = i(2)
        return s
    }
}
