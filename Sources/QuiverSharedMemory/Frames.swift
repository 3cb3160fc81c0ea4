import CQuiverShm
import Glibc

/// One frame: what the engine publishes into the ring and a reader copies out. Arrays are SoA
/// float32 (nm, nm/ps, kJ/mol/nm).
public struct FrameRecord: Sendable, Equatable {
    public var index: UInt64 = 0
    public var step: UInt64 = 0
    public var time: Double = 0
    public var box: SIMD3<Double> = .zero
    public var potentialEnergy = 0.0
    public var kineticEnergy = 0.0
    public var temperature = 0.0
    public var userEnergy = 0.0
    public var userWork = 0.0
    /// Set by the writer when it publishes; nanoseconds since the Unix epoch.
    public var publishedUnixNanoseconds: UInt64 = 0
    public var writerPID: Int32 = 0
    public var x: [Float] = [], y: [Float] = [], z: [Float] = []
    public var velocities: (x: [Float], y: [Float], z: [Float])?
    public var forces: (x: [Float], y: [Float], z: [Float])?
    /// Sparse interactive (user) forces, kJ/mol/nm.
    public var userForces = SparseForces()

    public init() {}

    public var atomCount: Int { x.count }

    public static func == (a: FrameRecord, b: FrameRecord) -> Bool {
        a.index == b.index && a.step == b.step && a.time == b.time && a.box == b.box && a.x == b.x && a.y == b.y && a.z == b.z
            && a.potentialEnergy == b.potentialEnergy && a.kineticEnergy == b.kineticEnergy && a.temperature == b.temperature
            && a.velocities?.x == b.velocities?.x && a.velocities?.y == b.velocities?.y && a.velocities?.z == b.velocities?.z
            && a.forces?.x == b.forces?.x && a.forces?.y == b.forces?.y && a.forces?.z == b.forces?.z
            && a.userEnergy == b.userEnergy && a.userWork == b.userWork && a.userForces == b.userForces
    }
}

/// Forces on a few atoms (the interactive forces of a frame), structure of arrays.
public struct SparseForces: Sendable, Equatable {
    public var indices: [UInt32] = []
    public var x: [Float] = [], y: [Float] = [], z: [Float] = []
    public init() {}
    public init(indices: [UInt32], x: [Float], y: [Float], z: [Float]) {
        self.indices = indices; self.x = x; self.y = y; self.z = z
    }
    public var count: Int { indices.count }
    public var isEmpty: Bool { indices.isEmpty }
}

/// A frame of the ring read in place: its arrays point into the shared-memory slot, valid only
/// inside `FrameRing.withFrame`'s body (and what the body makes of them counts only if that
/// call succeeds).
public struct FrameView {
    /// Index, step, time, box, energies, temperature, user energy and work.
    public var scalars: FrameScalars
    /// Set by the writer when it publishes; nanoseconds since the Unix epoch.
    public var publishedUnixNanoseconds: UInt64
    public var positions: (x: UnsafeBufferPointer<Float>, y: UnsafeBufferPointer<Float>, z: UnsafeBufferPointer<Float>)
    public var velocities: (x: UnsafeBufferPointer<Float>, y: UnsafeBufferPointer<Float>, z: UnsafeBufferPointer<Float>)?
    public var forces: (x: UnsafeBufferPointer<Float>, y: UnsafeBufferPointer<Float>, z: UnsafeBufferPointer<Float>)?
    /// Sparse interactive (user) forces, kJ/mol/nm.
    public var userForceIndices: UnsafeBufferPointer<UInt32>
    public var userForces: (x: UnsafeBufferPointer<Float>, y: UnsafeBufferPointer<Float>, z: UnsafeBufferPointer<Float>)

    public var atomCount: Int { positions.x.count }
}

/// Why a frame, a snapshot, a blob or a command's result could not be read: the seqlock's
/// verdicts, and `corrupt` for anything the C side found inconsistent in the mapping (a count, a
/// length or a checksum another process wrote over).
public enum ReadFailure: Error, Equatable, Sendable {
    /// Not published yet.
    case empty
    /// Its live writer is writing that slot now.
    case busy
    /// It changed while being copied.
    case torn
    /// The slot already holds a newer frame (or another command): the reader was lapped.
    case lapped
    /// The slot's writer died mid-write; the frame is lost.
    case abandoned
    /// The block's contents are inconsistent: a count or length beyond this process's layout, or
    /// a checksum that does not match.
    case corrupt

    /// The failure a `QV_SHM_READ_*` status stands for; nil for `QV_SHM_READ_OK`.
    init?(status: Int32) {
        switch status {
        case Int32(QV_SHM_READ_OK): return nil
        case Int32(QV_SHM_READ_EMPTY): self = .empty
        case Int32(QV_SHM_READ_BUSY): self = .busy
        case Int32(QV_SHM_READ_TORN): self = .torn
        case Int32(QV_SHM_READ_LAPPED): self = .lapped
        case Int32(QV_SHM_READ_ABANDONED): self = .abandoned
        default: self = .corrupt
        }
    }
}

/// The scalar part of a frame (index, step, time, box, energies, temperature, user energy and
/// work), for publishing straight from the writer's own buffers and for readers that need no arrays.
public struct FrameScalars: Sendable, Equatable {
    public var index: UInt64
    public var step: UInt64
    public var time: Double
    public var box: SIMD3<Double>
    public var potentialEnergy: Double
    public var kineticEnergy: Double
    public var temperature: Double
    public var userEnergy: Double
    public var userWork: Double

    public init(index: UInt64, step: UInt64, time: Double, box: SIMD3<Double>, potentialEnergy: Double = 0,
                kineticEnergy: Double = 0, temperature: Double = 0, userEnergy: Double = 0, userWork: Double = 0) {
        self.index = index; self.step = step; self.time = time; self.box = box
        self.potentialEnergy = potentialEnergy; self.kineticEnergy = kineticEnergy; self.temperature = temperature
        self.userEnergy = userEnergy; self.userWork = userWork
    }

    init(_ info: qv_shm_frame_info) {
        self.init(index: info.frame_index, step: info.step, time: info.time_ps, box: SIMD3(info.box.0, info.box.1, info.box.2),
                  potentialEnergy: info.potential_energy, kineticEnergy: info.kinetic_energy, temperature: info.temperature,
                  userEnergy: info.user_energy, userWork: info.user_work)
    }

    /// The scalars of a copied frame.
    public init(_ frame: FrameRecord) {
        self.init(index: frame.index, step: frame.step, time: frame.time, box: frame.box, potentialEnergy: frame.potentialEnergy,
                  kineticEnergy: frame.kineticEnergy, temperature: frame.temperature, userEnergy: frame.userEnergy, userWork: frame.userWork)
    }
}

/// The frame ring of a segment (`segment.frames`): one writer (the engine) publishes frame `k`
/// into slot `k % slotCount` under a seqlock; readers copy a frame out (`read`, `readLatest`) or
/// use it in place (`withFrame`, `withLatestFrame`), or read only its scalars (`latestScalars`).
/// Every read gives a frame or a `ReadFailure`, whatever another process wrote into the segment.
public struct FrameRing: Sendable {
    let mapping: Mapping
    let layout: SegmentLayout

    /// Frames published so far; the newest has index `published - 1`.
    public var published: UInt64 { mapping.with { qv_shm_frames_published($0) } }

    /// Publishes a frame into slot `index % slotCount` (single writer) from position buffers
    /// (borrowed for the call only), without intermediate copies. Sets the writer pid and the
    /// publication time. Throws `.capacity` when the buffers differ in length or exceed the segment.
    public func publish(_ f: FrameScalars, x: UnsafeBufferPointer<Float>, y: UnsafeBufferPointer<Float>, z: UnsafeBufferPointer<Float>,
                        velocities: (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>)? = nil,
                        forces: (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>)? = nil,
                        userForces: SparseForces = SparseForces()) throws {
        let n = x.count
        let u = userForces
        guard u.x.count == u.count, u.y.count == u.count, u.z.count == u.count, u.indices.allSatisfy({ Int($0) < n }) else {
            throw SharedMemoryError.capacity("user forces: arrays differ in length or an index is out of range")
        }
        guard n <= layout.atomCapacity, y.count == n, z.count == n else {
            throw SharedMemoryError.capacity("frame of \(n) atoms does not fit a segment of \(layout.atomCapacity)")
        }
        var fields: UInt32 = 0
        var arrays: [UnsafePointer<Float>?] = [x.baseAddress, y.baseAddress, z.baseAddress]
        if layout.velocities, let v = velocities {
            guard v.0.count == n, v.1.count == n, v.2.count == n else { throw SharedMemoryError.capacity("velocity arrays differ in length") }
            fields |= UInt32(QV_SHM_FIELD_VELOCITIES)
            arrays += [v.0.baseAddress, v.1.baseAddress, v.2.baseAddress]
        }
        if layout.forces, let g = forces {
            guard g.0.count == n, g.1.count == n, g.2.count == n else { throw SharedMemoryError.capacity("force arrays differ in length") }
            fields |= UInt32(QV_SHM_FIELD_FORCES)
            arrays += [g.0.baseAddress, g.1.baseAddress, g.2.baseAddress]
        }
        var info = qv_shm_frame_info()
        info.frame_index = f.index
        info.step = f.step
        info.time_ps = f.time
        info.atom_count = UInt32(n)
        info.fields = fields
        info.writer_pid = getpid()
        info.box = (f.box.x, f.box.y, f.box.z)
        info.potential_energy = f.potentialEnergy
        info.kinetic_energy = f.kineticEnergy
        info.temperature = f.temperature
        info.user_energy = f.userEnergy
        info.user_work = f.userWork
        let rc = u.indices.withUnsafeBufferPointer { ui in
            u.x.withUnsafeBufferPointer { ux in
                u.y.withUnsafeBufferPointer { uy in
                    u.z.withUnsafeBufferPointer { uz in
                        var user = qv_shm_user_forces(count: UInt32(u.count), index: ui.baseAddress, fx: ux.baseAddress, fy: uy.baseAddress, fz: uz.baseAddress)
                        return arrays.withUnsafeBufferPointer { a in mapping.with { qv_shm_publish_frame($0, &info, a.baseAddress, &user) } }
                    }
                }
            }
        }
        guard rc == Int32(QV_SHM_OK) else {
            throw SharedMemoryError.capacity("frame of \(n) atoms does not fit a segment of \(layout.atomCapacity)")
        }
    }

    /// Publishes `frame` (its arrays) into slot `frame.index % slotCount` (single writer).
    public func publish(_ frame: FrameRecord) throws {
        try frame.x.withUnsafeBufferPointer { x in
            try frame.y.withUnsafeBufferPointer { y in
                try frame.z.withUnsafeBufferPointer { z in
                    try withOptionalTriple(frame.velocities) { v in
                        try withOptionalTriple(frame.forces) { f in
                            try publish(FrameScalars(frame), x: x, y: y, z: z, velocities: v, forces: f, userForces: frame.userForces)
                        }
                    }
                }
            }
        }
    }

    /// Copies frame `index` into `frame`. Throws a `ReadFailure`.
    public func read(_ index: UInt64, into frame: inout FrameRecord) throws(ReadFailure) {
        let cap = layout.atomCapacity
        let k = 3 + (layout.velocities ? 3 : 0) + (layout.forces ? 3 : 0)
        var info = qv_shm_frame_info()
        // Room for the user forces: what the slot says now (they are few), at least 64.
        var peek = qv_shm_frame_info()
        let userCap = mapping.with { qv_shm_read_frame_info($0, index, &peek, nil) } == Int32(QV_SHM_READ_OK)
            ? min(layout.userForceCapacity, max(64, Int(peek.user_force_count))) : 64
        var ui = [UInt32](repeating: 0, count: userCap)
        var ux = [Float](repeating: 0, count: userCap), uy = ux, uz = ux
        let (status, flat) = readFlat(count: k, capacity: cap) { arrays in
            ui.withUnsafeMutableBufferPointer { pi in
                ux.withUnsafeMutableBufferPointer { px in
                    uy.withUnsafeMutableBufferPointer { py in
                        uz.withUnsafeMutableBufferPointer { pz in
                            var user = qv_shm_user_forces_out(capacity: UInt32(userCap), count: 0, index: pi.baseAddress,
                                                              fx: px.baseAddress, fy: py.baseAddress, fz: pz.baseAddress)
                            let rc = mapping.with { qv_shm_read_frame($0, index, &info, arrays, UInt32(cap), &user, qv_shm_pid_alive) }
                            // More user forces than guessed (the slot changed since the peek): try again.
                            return rc == Int32(QV_SHM_READ_CORRUPT) && info.user_force_count > UInt32(userCap)
                                && info.user_force_count <= UInt32(layout.userForceCapacity) ? Int32(QV_SHM_READ_TORN) : rc
                        }
                    }
                }
            }
        }
        if let failure = ReadFailure(status: status) { throw failure }
        let n = Int(info.atom_count)
        func array(_ a: Int) -> [Float] { Array(flat[(a * cap)..<(a * cap + n)]) }
        frame.index = info.frame_index
        frame.step = info.step
        frame.time = info.time_ps
        frame.box = SIMD3(info.box.0, info.box.1, info.box.2)
        frame.potentialEnergy = info.potential_energy
        frame.kineticEnergy = info.kinetic_energy
        frame.temperature = info.temperature
        frame.userEnergy = info.user_energy
        frame.userWork = info.user_work
        frame.publishedUnixNanoseconds = info.publish_unix_ns
        frame.writerPID = info.writer_pid
        frame.x = array(0); frame.y = array(1); frame.z = array(2)
        var next = 3
        frame.velocities = info.fields & UInt32(QV_SHM_FIELD_VELOCITIES) != 0 ? (array(next), array(next + 1), array(next + 2)) : nil
        if info.fields & UInt32(QV_SHM_FIELD_VELOCITIES) != 0 { next += 3 }
        frame.forces = info.fields & UInt32(QV_SHM_FIELD_FORCES) != 0 ? (array(next), array(next + 1), array(next + 2)) : nil
        let nu = Int(info.user_force_count)
        frame.userForces = SparseForces(indices: Array(ui.prefix(nu)), x: Array(ux.prefix(nu)), y: Array(uy.prefix(nu)), z: Array(uz.prefix(nu)))
    }

    /// Calls `body` with frame `index` read in place (no copy) and returns its result when the slot
    /// held that frame, unchanged, for the whole call: the seqlock is checked after `body`, so
    /// whatever `body` computed from a slot the writer overwrote meanwhile is discarded
    /// (`.torn`), even when `body` threw. The checksum is verified (in place) before `body` runs.
    /// The view's buffers point into the mapping and are valid only inside `body`.
    public func withFrame<R, E: Error>(_ index: UInt64, _ body: (FrameView) throws(E) -> R) throws(E) -> Result<R, ReadFailure> {
        try mapping.with { (segment) throws(E) -> Result<R, ReadFailure> in
            var info = qv_shm_frame_info()
            var view = qv_shm_frame_view()
            if let failure = ReadFailure(status: qv_shm_view_frame(segment, index, &info, &view, qv_shm_pid_alive)) { return .failure(failure) }
            let n = Int(info.atom_count)
            func plane(_ a: Int) -> UnsafeBufferPointer<Float>? {
                withUnsafePointer(to: view.arrays) { tuple in
                    tuple.withMemoryRebound(to: UnsafePointer<Float>?.self, capacity: 9) { $0[a] }
                }.map { UnsafeBufferPointer(start: $0, count: n) }
            }
            func triple(_ a: Int) -> (x: UnsafeBufferPointer<Float>, y: UnsafeBufferPointer<Float>, z: UnsafeBufferPointer<Float>)? {
                guard let x = plane(a), let y = plane(a + 1), let z = plane(a + 2) else { return nil }
                return (x, y, z)
            }
            guard let positions = triple(0) else { return .failure(.corrupt) }
            let nu = Int(info.user_force_count)
            let frame = FrameView(scalars: FrameScalars(info), publishedUnixNanoseconds: info.publish_unix_ns,
                                  positions: positions, velocities: triple(3), forces: triple(6),
                                  userForceIndices: UnsafeBufferPointer(start: view.user_index, count: nu),
                                  userForces: (UnsafeBufferPointer(start: view.user_fx, count: nu), UnsafeBufferPointer(start: view.user_fy, count: nu),
                                               UnsafeBufferPointer(start: view.user_fz, count: nu)))
            let result: R
            do throws(E) {
                result = try body(frame)
            } catch {
                guard qv_shm_view_valid(segment, index, &view) == Int32(QV_SHM_READ_OK) else { return .failure(.torn) }
                throw error
            }
            guard qv_shm_view_valid(segment, index, &view) == Int32(QV_SHM_READ_OK) else { return .failure(.torn) }
            return .success(result)
        }
    }

    /// `withFrame` on the newest frame: retries while a writer is busy or the slot changed under
    /// `body`, steps back one frame when the newest was abandoned by a dead writer or is corrupt.
    /// `nil` when nothing is published (or every attempt failed).
    public func withLatestFrame<R, E: Error>(attempts: Int = 1000, _ body: (FrameView) throws(E) -> R) throws(E) -> R? {
        try latest(attempts: attempts) { (index) throws(E) in try withFrame(index, body) }
    }

    /// Reads the newest frame, retrying while a writer is busy or the copy tore and stepping back
    /// one frame when the newest was abandoned by a dead writer. `nil` when nothing is published.
    public func readLatest(into frame: inout FrameRecord, attempts: Int = 1000) -> FrameRecord? {
        latest(attempts: attempts) { index in
            Result { () throws(ReadFailure) in
                try read(index, into: &frame)
                return frame
            }
        }
    }

    /// The scalars (index, step, time, box, energies) of the newest published frame, without
    /// copying its arrays; nil when nothing is published or the writer keeps it busy.
    public func latestScalars(attempts: Int = 1000) -> FrameScalars? {
        latest(attempts: attempts) { index in
            var info = qv_shm_frame_info()
            let status = mapping.with { qv_shm_read_frame_info($0, index, &info, qv_shm_pid_alive) }
            if let failure = ReadFailure(status: status) { return .failure(failure) }
            return .success(FrameScalars(info))
        }
    }

    /// The newest-frame policy of every reader: `read` the newest published frame; on busy, torn
    /// or lapped the writer moved on, so try the newest again; on abandoned or corrupt fall back to
    /// the frame before it, once.
    private func latest<R, E: Error>(attempts: Int, _ read: (UInt64) throws(E) -> Result<R, ReadFailure>) throws(E) -> R? {
        for _ in 0..<attempts {
            let published = self.published
            guard published > 0 else { return nil }
            switch try read(published - 1) {
            case .success(let r): return r
            case .failure(.abandoned), .failure(.corrupt):
                guard published > 1, case .success(let r) = try read(published - 2) else { return nil }
                return r
            case .failure:
                continue
            }
        }
        return nil
    }
}

/// Calls `body` with a C array of pointers to each array's storage (valid only inside `body`).
func withPointers<T, R>(to arrays: [[T]], _ body: (UnsafePointer<UnsafePointer<T>?>) -> R) -> R {
    var pointers: [UnsafePointer<T>?] = []
    func recurse(_ i: Int) -> R {
        if i == arrays.count { return pointers.withUnsafeBufferPointer { body($0.baseAddress!) } }
        return arrays[i].withUnsafeBufferPointer { buffer in
            pointers.append(buffer.baseAddress)
            return recurse(i + 1)
        }
    }
    return recurse(0)
}

/// Runs `body` with `count` pointers into one zeroed scratch buffer of `count * capacity` floats
/// (valid only inside `body`) and returns its result with the buffer.
func readFlat(count: Int, capacity: Int, _ body: (UnsafePointer<UnsafeMutablePointer<Float>?>) -> Int32) -> (Int32, [Float]) {
    var flat = [Float](repeating: 0, count: count * capacity)
    let status = flat.withUnsafeMutableBufferPointer { buffer in
        let pointers: [UnsafeMutablePointer<Float>?] = (0..<count).map { buffer.baseAddress! + $0 * capacity }
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
    return (status, flat)
}

/// Calls `body` with buffer pointers to the three arrays, or nil.
func withOptionalTriple<R>(_ t: (x: [Float], y: [Float], z: [Float])?,
                           _ body: ((UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>)?) throws -> R) rethrows -> R {
    guard let t else { return try body(nil) }
    return try t.x.withUnsafeBufferPointer { x in
        try t.y.withUnsafeBufferPointer { y in
            try t.z.withUnsafeBufferPointer { z in try body((x, y, z)) }
        }
    }
}
