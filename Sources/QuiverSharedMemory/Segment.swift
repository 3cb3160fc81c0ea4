import QuiverModel
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
    /// Command ring: slots, and bytes per slot (64-byte header + 4 KiB reply area + payload; a
    /// longer reply goes after the payload: 128 KiB holds `interaction.list` at its maximum).
    public var commandSlots: Int = 32
    public var commandSlotSize: Int = 128 << 10
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

/// A POSIX shared-memory segment holding a run's frame ring, command ring, blobs, engine snapshots
/// and worker status table.
///
/// The segment is a file in `directory` (by default /dev/shm, which is where `shm_open` keeps
/// them on Linux) created with mode 0600 and fully allocated with `posix_fallocate`, so touching it
/// never raises SIGBUS on a small /dev/shm. One creator (the supervisor) unlinks it; other
/// processes `open` it. This object owns the mapping; the parts (`frames`, `commands`, `blobs`,
/// `snapshots`, `workers`) share it, and it is unmapped when the last of them is released.
/// Every part finds its blocks through the layout this process computed itself, and the C side
/// checks every count and length it reads from the mapping: another process writing over the
/// segment gives readers typed failures, never a crash (docs/shared-memory.md).
public final class SharedSegment: @unchecked Sendable {
    public let name: String
    public let directory: String
    public var path: String { directory + "/" + name }
    public let layout: SegmentLayout
    let mapping: Mapping

    /// The frame ring: the engine publishes, the broadcaster and others read (copying or in place).
    public let frames: FrameRing
    /// The command ring: the control worker posts, the engine takes and answers.
    public let commands: CommandRing
    /// The double-buffered byte strings (the engine's control state, the shared state).
    public let blobs: BlobStore
    /// The two engine snapshots a respawned engine continues from.
    public let snapshots: SnapshotStore
    /// The worker status table.
    public let workers: WorkerTable

    private init(name: String, directory: String, mapping: Mapping, layout: SegmentLayout) {
        self.name = name
        self.directory = directory
        self.mapping = mapping
        self.layout = layout
        frames = FrameRing(mapping: mapping, layout: layout)
        commands = CommandRing(mapping: mapping, slots: layout.commandSlots)
        blobs = BlobStore(mapping: mapping)
        snapshots = SnapshotStore(mapping: mapping, layout: layout)
        workers = WorkerTable(mapping: mapping, capacity: layout.workerCapacity)
    }

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
        qv_shm_initialize(base, [l], getpid(), UInt64(SystemClock.realtimeNanoseconds))
        let mapping = Mapping(qv_shm_segment(base: base, mapped_size: UInt64(size), layout: l))
        return SharedSegment(name: name, directory: directory, mapping: mapping, layout: layout)
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
        var segment = qv_shm_segment()
        let v = qv_shm_attach(base, UInt64(size), &segment)
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
        let l = segment.layout
        var layout = SegmentLayout(atomCapacity: Int(l.atom_capacity), slotCount: Int(l.slot_count), workerCapacity: Int(l.worker_capacity),
                                   velocities: l.fields & UInt32(QV_SHM_FIELD_VELOCITIES) != 0,
                                   forces: l.fields & UInt32(QV_SHM_FIELD_FORCES) != 0)
        layout.commandSlots = Int(l.command_slots)
        layout.commandSlotSize = Int(l.command_slot_size)
        layout.engineBlobCapacity = Int(l.blob_capacity.0)
        layout.stateBlobCapacity = Int(l.blob_capacity.1)
        return SharedSegment(name: name, directory: directory, mapping: Mapping(segment), layout: layout)
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

    /// The header: the sizes from this process's own layout, the rest as the mapping holds it now.
    public var header: Header {
        var h = qv_shm_header_info()
        mapping.with { qv_shm_read_header($0, &h) }
        return Header(creatorPID: h.creator_pid, createdUnixNanoseconds: h.created_unix_ns, totalBytes: Int(h.layout.total_size),
                      framesPublished: h.frames_published, snapshotsWritten: h.snapshots_written)
    }
}

/// The one owner of a segment's mapping and of this process's own copy of its layout (a
/// `qv_shm_segment` the C side finds every block through). The parts of a segment hold a reference
/// to it; it is unmapped when the last one goes. The handle is lent only for the duration of `with`.
final class Mapping: @unchecked Sendable {
    private let handle: UnsafeMutablePointer<qv_shm_segment>

    init(_ segment: qv_shm_segment) {
        handle = .allocate(capacity: 1)
        handle.initialize(to: segment)
    }

    deinit {
        munmap(handle.pointee.base, Int(handle.pointee.mapped_size))
        handle.deallocate()
    }

    /// `body` with the handle (valid only inside `body`).
    @inline(__always)
    func with<R, E: Error>(_ body: (UnsafePointer<qv_shm_segment>) throws(E) -> R) throws(E) -> R {
        try body(handle)
    }
}


