import CQuiverShm

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Errors of shared-memory segments. System failures keep the errno.
public enum SharedMemoryError: Error, Equatable, CustomStringConvertible {
    /// A system call failed.
    case system(operation: String, path: String, errno: Int32)
    /// `create` found a segment of that name already.
    case exists(path: String)
    /// `open` found no segment of that name.
    case notFound(path: String)
    /// The backing store could not hold the segment (a full or small /dev/shm, a file size limit).
    case noSpace(path: String, bytes: Int, errno: Int32)
    /// The segment is not a Quiver segment of this layout version, or is inconsistent.
    case invalidSegment(path: String, reason: String)
    /// Layout parameters out of range.
    case invalidLayout(String)
    /// A frame or snapshot does not fit the segment.
    case capacity(String)

    public var description: String {
        switch self {
        case .system(let op, let path, let e): return "\(op) \(path): \(String(cString: strerror(e)))"
        case .exists(let path): return "shared-memory segment \(path) already exists"
        case .notFound(let path): return "no shared-memory segment \(path)"
        case .noSpace(let path, let bytes, let e):
            return "cannot allocate \(bytes) bytes for \(path): \(String(cString: strerror(e))) (is /dev/shm large enough?)"
        case .invalidSegment(let path, let reason): return "\(path) is not a usable Quiver segment: \(reason)"
        case .invalidLayout(let m): return "invalid shared-memory layout: \(m)"
        case .capacity(let m): return m
        }
    }
}

/// The shape of a segment: how many atoms, frame slots and workers it holds.
public struct SegmentLayout: Sendable, Equatable {
    public var atomCapacity: Int
    public var slotCount: Int
    public var workerCapacity: Int
    public var velocities: Bool
    public var forces: Bool
    /// Command ring: slots, and bytes per slot (64-byte header + 4 KiB reply + payload).
    public var commandSlots: Int = 32
    public var commandSlotSize: Int = 64 << 10
    /// Data bytes of the engine's control-state blob and of the shared-state blob.
    public var engineBlobCapacity: Int = 2 << 20
    public var stateBlobCapacity: Int = 4 << 20

    public init(atomCapacity: Int, slotCount: Int = 8, workerCapacity: Int = 8, velocities: Bool = false, forces: Bool = false) {
        self.atomCapacity = atomCapacity
        self.slotCount = slotCount
        self.workerCapacity = workerCapacity
        self.velocities = velocities
        self.forces = forces
    }

    /// Sparse user forces a frame slot holds: min(atoms, 65536).
    public var userForceCapacity: Int { min(atomCapacity, 65536) }

    var fields: UInt32 { (velocities ? UInt32(QV_SHM_FIELD_VELOCITIES) : 0) | (forces ? UInt32(QV_SHM_FIELD_FORCES) : 0) }

    func computed() throws -> qv_shm_layout {
        var l = qv_shm_layout()
        guard atomCapacity > 0, atomCapacity <= 1 << 28, slotCount >= 2, slotCount <= 1024, workerCapacity > 0, workerCapacity <= 256,
              commandSlots >= 2, commandSlots <= 1024, commandSlotSize >= 8192, commandSlotSize <= 16 << 20, commandSlotSize % 64 == 0,
              engineBlobCapacity >= 4096, stateBlobCapacity >= 4096, engineBlobCapacity <= 1 << 30, stateBlobCapacity <= 1 << 30 else {
            throw SharedMemoryError.invalidLayout("atoms 1...2^28, slots 2...1024, workers 1...256, command slots 2...1024 of 8 KiB...16 MiB, blobs 4 KiB...1 GiB; got \(atomCapacity), \(slotCount), \(workerCapacity), \(commandSlots) x \(commandSlotSize), \(engineBlobCapacity), \(stateBlobCapacity)")
        }
        let blobs: [UInt64] = [UInt64(engineBlobCapacity + 63) / 64 * 64, UInt64(stateBlobCapacity + 63) / 64 * 64]
        let rc = blobs.withUnsafeBufferPointer {
            qv_shm_compute_layout(UInt32(atomCapacity), UInt32(slotCount), UInt32(workerCapacity), fields, UInt32(commandSlots),
                                  UInt64(commandSlotSize), $0.baseAddress, &l)
        }
        guard rc == Int32(QV_SHM_OK) else { throw SharedMemoryError.invalidLayout("inconsistent layout parameters") }
        return l
    }

    /// Bytes the segment occupies.
    public func totalBytes() throws -> Int { Int(try computed().total_size) }
}

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
/// inside `SharedSegment.withFrame`'s body (and what the body makes of them counts only if that
/// call succeeds).
public struct FrameView {
    /// Index, step, time, box, energies, temperature, user energy and work.
    public var scalars: SharedSegment.FrameScalars
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

/// Why a frame could not be read (the seqlock's verdicts).
public enum FrameReadFailure: Error, Equatable, Sendable {
    /// Not published yet.
    case empty
    /// Its live writer is writing that slot now.
    case busy
    /// It changed while being copied.
    case torn
    /// The slot already holds a newer frame: the reader was lapped.
    case lapped
    /// The slot's writer died mid-write; the frame is lost.
    case abandoned
    /// The slot's contents are inconsistent (size or checksum).
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

/// The lifecycle state of a worker, as stored in the status table.
public enum WorkerState: UInt32, Sendable, CaseIterable {
    case empty = 0, spawned = 1, ready = 2, stopping = 3, exited = 4, failed = 5
}

/// A POSIX shared-memory segment holding a run's frame ring, engine snapshots and worker status.
///
/// The segment is a file in `directory` (by default /dev/shm, which is where `shm_open` keeps
/// them on Linux) created with mode 0600 and fully allocated with `posix_fallocate`, so touching it
/// never raises SIGBUS on a small /dev/shm. One creator (the supervisor) unlinks it; other
/// processes `open` it. The mapping lives until the object is released.
public final class SharedSegment: @unchecked Sendable {
    public let name: String
    public let directory: String
    public var path: String { directory + "/" + name }
    let base: UnsafeMutableRawPointer
    let mappedSize: Int
    public let layout: SegmentLayout

    private init(name: String, directory: String, base: UnsafeMutableRawPointer, mappedSize: Int, layout: SegmentLayout) {
        self.name = name
        self.directory = directory
        self.base = base
        self.mappedSize = mappedSize
        self.layout = layout
    }

    deinit { munmap(base, mappedSize) }

    static func checkName(_ name: String) throws {
        guard !name.isEmpty, name.count < 200, !name.contains("/"), name != ".", name != ".." else {
            throw SharedMemoryError.invalidLayout("segment names are one path component, got '\(name)'")
        }
    }

    /// Creates a new segment (fails with `.exists` if one of that name exists).
    public static func create(name: String, directory: String = "/dev/shm", layout: SegmentLayout) throws -> SharedSegment {
        try checkName(name)
        let l = try layout.computed()
        let path = directory + "/" + name
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if fd < 0 {
            let e = errno
            if e == EEXIST { throw SharedMemoryError.exists(path: path) }
            throw SharedMemoryError.system(operation: "create", path: path, errno: e)
        }
        defer { close(fd) }
        let size = Int(l.total_size)
        var rc: Int32
        repeat { rc = posix_fallocate(fd, 0, off_t(size)) } while rc == EINTR
        if rc != 0 {
            Glibc.unlink(path)
            if rc == ENOSPC || rc == EFBIG { throw SharedMemoryError.noSpace(path: path, bytes: size, errno: rc) }
            throw SharedMemoryError.system(operation: "posix_fallocate", path: path, errno: rc)
        }
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            let e = errno
            Glibc.unlink(path)
            throw SharedMemoryError.system(operation: "mmap", path: path, errno: e)
        }
        qv_shm_initialize(base, [l], getpid(), UInt64(Clock.realtimeNanoseconds))
        return SharedSegment(name: name, directory: directory, base: base, mappedSize: size, layout: layout)
    }

    /// Opens an existing segment and validates its header.
    public static func open(name: String, directory: String = "/dev/shm") throws -> SharedSegment {
        try checkName(name)
        let path = directory + "/" + name
        let fd = Glibc.open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            let e = errno
            if e == ENOENT { throw SharedMemoryError.notFound(path: path) }
            throw SharedMemoryError.system(operation: "open", path: path, errno: e)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SharedMemoryError.system(operation: "fstat", path: path, errno: errno) }
        let size = Int(st.st_size)
        guard size >= 256 else { throw SharedMemoryError.invalidSegment(path: path, reason: "only \(size) bytes") }
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw SharedMemoryError.system(operation: "mmap", path: path, errno: errno)
        }
        let v = qv_shm_validate(base, UInt64(size))
        guard v == Int32(QV_SHM_OK) else {
            munmap(base, size)
            let reason: String
            switch v {
            case Int32(QV_SHM_ERR_MAGIC): reason = "bad magic (not initialised yet, or not a Quiver segment)"
            case Int32(QV_SHM_ERR_VERSION): reason = "layout version differs from \(QV_SHM_LAYOUT_VERSION)"
            case Int32(QV_SHM_ERR_SIZE): reason = "file is smaller than its header says"
            default: reason = "inconsistent header"
            }
            throw SharedMemoryError.invalidSegment(path: path, reason: reason)
        }
        var h = qv_shm_header_info()
        qv_shm_read_header(base, &h)
        var layout = SegmentLayout(atomCapacity: Int(h.atom_capacity), slotCount: Int(h.slot_count), workerCapacity: Int(h.worker_capacity),
                                   velocities: h.fields & UInt32(QV_SHM_FIELD_VELOCITIES) != 0,
                                   forces: h.fields & UInt32(QV_SHM_FIELD_FORCES) != 0)
        layout.commandSlots = Int(h.command_slots)
        layout.commandSlotSize = Int(qv_shm_command_capacity(base)) + 64 + Int(QV_SHM_COMMAND_REPLY)
        layout.engineBlobCapacity = Int(qv_shm_blob_capacity(base, UInt32(QV_SHM_BLOB_ENGINE)))
        layout.stateBlobCapacity = Int(qv_shm_blob_capacity(base, UInt32(QV_SHM_BLOB_STATE)))
        return SharedSegment(name: name, directory: directory, base: base, mappedSize: size, layout: layout)
    }

    /// Removes the segment's name (the memory lives on until every mapping is gone).
    public func unlink() throws {
        if Glibc.unlink(path) != 0 && errno != ENOENT {
            throw SharedMemoryError.system(operation: "unlink", path: path, errno: errno)
        }
    }

    /// Removes segments in `directory` whose names start with `prefix` and whose creator process is
    /// gone (read from the header, or from a trailing `-<pid>` in the name when the header is
    /// unreadable). Returns the names removed.
    @discardableResult
    public static func removeStale(prefix: String, directory: String = "/dev/shm") -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var removed: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
            guard name.hasPrefix(prefix) else { continue }
            var creator: Int32 = 0
            if let segment = try? SharedSegment.open(name: name, directory: directory) {
                creator = segment.header.creatorPID
            } else if let last = name.split(separator: "-").last, let pid = Int32(last) {
                creator = pid
            }
            if creator > 0 && qv_shm_pid_alive(creator) != 0 { continue }
            if Glibc.unlink(directory + "/" + name) == 0 { removed.append(name) }
        }
        return removed
    }

    /// Header values.
    public struct Header: Sendable {
        public let creatorPID: Int32
        public let createdUnixNanoseconds: UInt64
        public let totalBytes: Int
        public let framesPublished: UInt64
        public let snapshotsWritten: UInt64
    }

    public var header: Header {
        var h = qv_shm_header_info()
        qv_shm_read_header(base, &h)
        return Header(creatorPID: h.creator_pid, createdUnixNanoseconds: h.created_unix_ns, totalBytes: Int(h.total_size),
                      framesPublished: h.frames_published, snapshotsWritten: h.snapshots_written)
    }

    /// Frames published so far; the newest has index `framesPublished - 1`.
    public var framesPublished: UInt64 { header.framesPublished }

    // MARK: command ring

    /// Why a command could not be posted.
    public enum PostFailure: Error, Equatable, Sendable {
        /// Every slot holds a command the engine has not finished (is it running?).
        case full
        /// The payload is larger than a slot carries.
        case tooLarge(bytes: Int, capacity: Int)
    }

    /// The engine's verdict on a command.
    public struct CommandResult: Sendable, Equatable {
        /// 0: applied; anything else: refused (the reply says why).
        public var status: Int32
        /// The step at which it took effect.
        public var appliedStep: UInt64
        public var reply: [UInt8]
    }

    /// Payload bytes one command may carry.
    public var commandCapacity: Int { Int(qv_shm_command_capacity(base)) }
    /// Commands posted so far (the newest has this sequence number).
    public var commandsPosted: UInt64 { qv_shm_commands_posted(base) }
    /// Commands the engine finished, in order.
    public var commandsApplied: UInt64 { qv_shm_commands_applied(base) }

    /// Posts a command for the engine (one poster per segment). Returns its sequence number.
    public func postCommand(_ payload: [UInt8]) throws(PostFailure) -> UInt64 {
        guard payload.count <= commandCapacity else { throw .tooLarge(bytes: payload.count, capacity: commandCapacity) }
        let seq = payload.withUnsafeBytes { qv_shm_command_post(base, $0.baseAddress, UInt32($0.count)) }
        if seq == 0 { throw .full }
        if seq == UInt64.max { throw .tooLarge(bytes: payload.count, capacity: commandCapacity) }
        return seq
    }

    /// The engine's result for command `seq`: nil while it is pending. Throws `.full` when the
    /// slot was reused (the result is gone).
    public func commandResult(_ seq: UInt64) throws(PostFailure) -> CommandResult? {
        var status: Int32 = 0, step: UInt64 = 0, length: UInt32 = 0
        var reply = [UInt8](repeating: 0, count: Int(QV_SHM_COMMAND_REPLY))
        let rc = reply.withUnsafeMutableBytes {
            qv_shm_command_result(base, seq, &status, &step, $0.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32($0.count), &length)
        }
        if rc < 0 { throw .full }
        if rc == 0 { return nil }
        return CommandResult(status: status, appliedStep: step, reply: Array(reply.prefix(Int(length))))
    }

    /// Engine side: the payload of command `seq`, nil when that slot does not hold it.
    public func takeCommand(_ seq: UInt64) -> [UInt8]? {
        var payload = [UInt8](repeating: 0, count: commandCapacity)
        let n = payload.withUnsafeMutableBytes { qv_shm_command_take(base, seq, $0.baseAddress, UInt32($0.count)) }
        return n < 0 ? nil : Array(payload.prefix(Int(n)))
    }

    /// Engine side: the verdict and reply (at most 4 KiB, cut beyond) of command `seq`.
    public func finishCommand(_ seq: UInt64, status: Int32, appliedStep: UInt64, reply: [UInt8]) {
        reply.withUnsafeBytes {
            qv_shm_command_finish(base, seq, status, appliedStep, $0.baseAddress?.assumingMemoryBound(to: CChar.self), UInt32($0.count), getpid())
        }
    }

    // MARK: blobs

    /// Variable-length byte strings one process keeps in the segment, double-buffered.
    public enum Blob: UInt32, Sendable {
        /// The engine's control state (run parameters, interactions).
        case engine = 0
        /// The control worker's shared-state store.
        case state = 1
    }

    public func blobCapacity(_ blob: Blob) -> Int { Int(qv_shm_blob_capacity(base, blob.rawValue)) }

    /// Writes a new version of `blob` (one writer per blob). Throws `.capacity` when it does not fit.
    public func writeBlob(_ blob: Blob, _ bytes: [UInt8]) throws {
        let rc = bytes.withUnsafeBytes { qv_shm_blob_write(base, blob.rawValue, $0.baseAddress, UInt64($0.count), getpid()) }
        guard rc == Int32(QV_SHM_OK) else {
            throw SharedMemoryError.capacity("\(bytes.count) bytes do not fit the \(blob) blob of \(blobCapacity(blob)) bytes")
        }
    }

    /// The newest consistent version of `blob`, nil when it was never written.
    public func readBlob(_ blob: Blob) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: blobCapacity(blob))
        var length: UInt64 = 0
        let rc = out.withUnsafeMutableBytes { qv_shm_blob_read(base, blob.rawValue, $0.baseAddress, UInt64($0.count), &length, qv_shm_pid_alive) }
        return rc == Int32(QV_SHM_READ_OK) ? Array(out.prefix(Int(length))) : nil
    }

    // MARK: frames

    /// The scalar part of a frame, for publishing straight from the writer's own buffers.
    public struct FrameScalars: Sendable {
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
    }

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
        u.indices.withUnsafeBufferPointer { ui in
            u.x.withUnsafeBufferPointer { ux in
                u.y.withUnsafeBufferPointer { uy in
                    u.z.withUnsafeBufferPointer { uz in
                        var user = qv_shm_user_forces(count: UInt32(u.count), index: ui.baseAddress, fx: ux.baseAddress, fy: uy.baseAddress, fz: uz.baseAddress)
                        arrays.withUnsafeBufferPointer { qv_shm_publish_frame(base, &info, $0.baseAddress, &user) }
                    }
                }
            }
        }
    }

    /// Publishes `frame` (its arrays) into slot `frame.index % slotCount` (single writer).
    public func publish(_ frame: FrameRecord) throws {
        let scalars = FrameScalars(index: frame.index, step: frame.step, time: frame.time, box: frame.box,
                                   potentialEnergy: frame.potentialEnergy, kineticEnergy: frame.kineticEnergy,
                                   temperature: frame.temperature, userEnergy: frame.userEnergy, userWork: frame.userWork)
        try frame.x.withUnsafeBufferPointer { x in
            try frame.y.withUnsafeBufferPointer { y in
                try frame.z.withUnsafeBufferPointer { z in
                    try withOptionalTriple(frame.velocities) { v in
                        try withOptionalTriple(frame.forces) { f in
                            try publish(scalars, x: x, y: y, z: z, velocities: v, forces: f, userForces: frame.userForces)
                        }
                    }
                }
            }
        }
    }

    /// Copies frame `index` into `frame`. Throws a `FrameReadFailure`.
    public func read(frame index: UInt64, into frame: inout FrameRecord) throws(FrameReadFailure) {
        let cap = layout.atomCapacity
        let k = 3 + (layout.velocities ? 3 : 0) + (layout.forces ? 3 : 0)
        var info = qv_shm_frame_info()
        // Room for the user forces: what the slot says now (they are few), at least 64.
        var peek = qv_shm_frame_info()
        let userCap = qv_shm_read_frame_info(base, index, &peek, nil) == Int32(QV_SHM_READ_OK)
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
                            let rc = qv_shm_read_frame(base, index, &info, arrays, UInt32(cap), &user, qv_shm_pid_alive)
                            return rc == Int32(QV_SHM_READ_CORRUPT) && info.user_force_count > UInt32(userCap) ? Int32(QV_SHM_READ_TORN) : rc
                        }
                    }
                }
            }
        }
        if let failure = FrameReadFailure(status: status) { throw failure }
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
    public func withFrame<R, E: Error>(_ index: UInt64, _ body: (FrameView) throws(E) -> R) throws(E) -> Result<R, FrameReadFailure> {
        var info = qv_shm_frame_info()
        var view = qv_shm_frame_view()
        if let failure = FrameReadFailure(status: qv_shm_view_frame(base, index, &info, &view, qv_shm_pid_alive)) { return .failure(failure) }
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
        let nu = Int(info.user_force_count)
        let frame = FrameView(scalars: FrameScalars(info), publishedUnixNanoseconds: info.publish_unix_ns,
                              positions: triple(0)!, velocities: triple(3), forces: triple(6),
                              userForceIndices: UnsafeBufferPointer(start: view.user_index, count: nu),
                              userForces: (UnsafeBufferPointer(start: view.user_fx, count: nu), UnsafeBufferPointer(start: view.user_fy, count: nu),
                                           UnsafeBufferPointer(start: view.user_fz, count: nu)))
        let result: R
        do {
            result = try body(frame)
        } catch {
            guard qv_shm_view_valid(base, index, &view) == Int32(QV_SHM_READ_OK) else { return .failure(.torn) }
            throw error
        }
        guard qv_shm_view_valid(base, index, &view) == Int32(QV_SHM_READ_OK) else { return .failure(.torn) }
        return .success(result)
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
            Result { () throws(FrameReadFailure) in
                try read(frame: index, into: &frame)
                return frame
            }
        }
    }

    /// The newest-frame policy of every reader: `read` the newest published frame; on busy, torn
    /// or lapped the writer moved on, so try the newest again; on abandoned or corrupt fall back to
    /// the frame before it, once.
    private func latest<R, E: Error>(attempts: Int, _ read: (UInt64) throws(E) -> Result<R, FrameReadFailure>) throws(E) -> R? {
        for _ in 0..<attempts {
            let published = framesPublished
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

    /// The scalars (index, step, time, box, energies) of the newest published frame, without
    /// copying its arrays; nil when nothing is published or the writer keeps it busy.
    public func latestFrameScalars(attempts: Int = 1000) -> FrameScalars? {
        latest(attempts: attempts) { index in
            var info = qv_shm_frame_info()
            if let failure = FrameReadFailure(status: qv_shm_read_frame_info(base, index, &info, qv_shm_pid_alive)) { return .failure(failure) }
            return .success(FrameScalars(info))
        }
    }

    // MARK: snapshots

    /// Writes an engine snapshot into the older of the two buffers.
    public func writeSnapshot(_ s: EngineSnapshot) throws {
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
        withPointers(to: [s.x, s.y, s.z, s.vx, s.vy, s.vz]) { floats in
            withPointers(to: [s.imageX, s.imageY, s.imageZ]) { ints in
                qv_shm_write_snapshot(base, &info, floats, ints)
            }
        }
    }

    /// The newest consistent snapshot (the older buffer when the newest is torn by a dead writer),
    /// or nil when none was written.
    public func readSnapshot() -> EngineSnapshot? {
        let cap = layout.atomCapacity
        var info = qv_shm_snapshot_info()
        var ints = [Int32](repeating: 0, count: 3 * cap)
        let (status, floats) = readFlat(count: 6, capacity: cap) { f in
            ints.withUnsafeMutableBufferPointer { buffer in
                let p: [UnsafeMutablePointer<Int32>?] = (0..<3).map { buffer.baseAddress! + $0 * cap }
                return p.withUnsafeBufferPointer { qv_shm_read_snapshot(base, &info, f, $0.baseAddress!, UInt32(cap), qv_shm_pid_alive) }
            }
        }
        guard status == Int32(QV_SHM_READ_OK) else { return nil }
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

    // MARK: worker status

    /// The status entry of worker `index` (0 ..< workerCapacity).
    public func worker(_ index: Int) -> WorkerStatus {
        precondition(index >= 0 && index < layout.workerCapacity, "worker index \(index) out of 0..<\(layout.workerCapacity)")
        return WorkerStatus(segment: self, index: UInt32(index))
    }
}

/// A view of one entry of the worker status table; every access is atomic.
public struct WorkerStatus: Sendable {
    let segment: SharedSegment
    let index: UInt32
    var base: UnsafeMutableRawPointer { segment.base }

    public var pid: Int32 {
        get { qv_shm_worker_pid(base, index) }
        nonmutating set { qv_shm_worker_set_pid(base, index, newValue) }
    }
    public var state: WorkerState {
        get { WorkerState(rawValue: qv_shm_worker_state(base, index)) ?? .failed }
        nonmutating set { qv_shm_worker_set_state(base, index, newValue.rawValue) }
    }
    public var progress: UInt64 { qv_shm_worker_progress(base, index) }
    /// CLOCK_MONOTONIC nanoseconds of the last `advance()`.
    public var heartbeatNanoseconds: UInt64 { qv_shm_worker_heartbeat_ns(base, index) }
    public var restarts: UInt32 {
        get { qv_shm_worker_restarts(base, index) }
        nonmutating set { qv_shm_worker_set_restarts(base, index, newValue) }
    }
    public var role: UInt32 { qv_shm_worker_role(base, index) }
    public var name: String {
        var buffer = [CChar](repeating: 0, count: 32)
        qv_shm_worker_name(base, index, &buffer)
        return String(cString: buffer)
    }
    public func setIdentity(role: UInt32, name: String) { qv_shm_worker_set_identity(base, index, role, name) }
    /// Counts one unit of progress and stamps the heartbeat.
    public func advance() { qv_shm_worker_advance(base, index, Clock.monotonicNanoseconds) }
}

/// The two clocks the segment's timestamps use, in nanoseconds: CLOCK_REALTIME (publication times,
/// comparable across machines with synchronised clocks) and CLOCK_MONOTONIC (heartbeats, leases:
/// system-wide, so comparable between the processes of a run).
public enum Clock {
    public static var realtimeNanoseconds: UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }
    public static var monotonicNanoseconds: UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
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
