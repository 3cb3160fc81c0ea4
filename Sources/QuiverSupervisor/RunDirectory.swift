import Foundation
import QuiverWire
import QuiverSharedMemory

#if canImport(Glibc)
import Glibc
#endif

/// Errors of the supervisor and its run directory.
public enum SupervisorError: Error, Equatable, CustomStringConvertible {
    /// Another live server holds the run directory's lock.
    case runDirectoryInUse(path: String, pid: Int32)
    /// A system call failed.
    case system(operation: String, path: String, errno: Int32)
    /// The essential worker (the engine) kept failing: it was restarted `restarts` times, then given up.
    case workerFailed(role: String, restarts: Int, lastExit: String)
    /// The run directory belongs to another user (its files could be swapped under the run).
    case runDirectoryNotOwned(path: String, owner: UInt32)
    /// A worker could not be spawned at all.
    case spawnFailed(role: String, errno: Int32)
    /// The control socket answered something unexpected, or nothing.
    case control(String)

    public var description: String {
        switch self {
        case .runDirectoryInUse(let path, let pid): return "run directory \(path) is in use by a running server (pid \(pid)); stop it first or use another directory"
        case .system(let op, let path, let e): return "\(op) \(path): \(String(cString: strerror(e)))"
        case .workerFailed(let role, let restarts, let last):
            return "worker '\(role)' \(restarts == 0 ? "failed" : "failed \(restarts + 1) times") (last: \(last)); the run stopped"
        case .runDirectoryNotOwned(let path, let owner):
            return "run directory \(path) belongs to uid \(owner), not to this user (uid \(getuid())); use a directory of your own"
        case .spawnFailed(let role, let e): return "could not start worker '\(role)': \(String(cString: strerror(e)))"
        case .control(let m): return m
        }
    }
}

/// A run directory held by one server: created private (0700), locked with `flock` on `lock` (the
/// kernel releases the lock when its holder dies, so a dead server's directory is taken over), and
/// holding `connection.json` and the control socket while the run lives. An existing directory of
/// this user that others may read or write is made private (0700; `previousMode` says it was
/// not, and the server warns); one of another user is refused.
public final class RunDirectory {
    public let path: String
    private var lockFD: Int32
    /// The pid a dead server left in the lock file, when this run took its directory over.
    public let tookOverFrom: Int32?
    /// Whether this run created the directory (an early failure then removes it again).
    public let created: Bool
    /// The permission bits an existing directory had when they let others in (now 0700); nil otherwise.
    public let previousMode: UInt32?

    public var lockPath: String { path + "/lock" }
    public var connectionFilePath: String { path + "/connection.json" }
    public var controlSocketPath: String { path + "/control.sock" }
    /// The topology clients are sent (written by the owner of the dynamics).
    public var topologyFilePath: String { path + "/topology.bin" }

    /// Creates (if needed) and locks `path`. Throws `runDirectoryInUse` when a live server holds it.
    public static func acquire(_ path: String) throws -> RunDirectory {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let created = mkdir(absolute, 0o700) == 0
        if !created && errno != EEXIST {
            throw SupervisorError.system(operation: "mkdir", path: absolute, errno: errno)
        }
        var st = stat()
        guard stat(absolute, &st) == 0 else { throw SupervisorError.system(operation: "stat", path: absolute, errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw SupervisorError.system(operation: "run directory", path: absolute, errno: ENOTDIR) }
        guard st.st_uid == getuid() else { throw SupervisorError.runDirectoryNotOwned(path: absolute, owner: st.st_uid) }
        var previousMode: UInt32?
        if st.st_mode & 0o077 != 0 {
            previousMode = UInt32(st.st_mode & 0o7777)
            guard chmod(absolute, 0o700) == 0 else { throw SupervisorError.system(operation: "chmod 0700", path: absolute, errno: errno) }
        }
        let lockPath = absolute + "/lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw SupervisorError.system(operation: "open", path: lockPath, errno: errno) }
        let previous = Self.readPID(fd)
        var rc: Int32
        repeat { rc = flock(fd, LOCK_EX | LOCK_NB) } while rc != 0 && errno == EINTR
        if rc != 0 {
            let e = errno
            close(fd)
            if e == EWOULDBLOCK { throw SupervisorError.runDirectoryInUse(path: absolute, pid: previous ?? 0) }
            throw SupervisorError.system(operation: "flock", path: lockPath, errno: e)
        }
        let line = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = line.withCString { pwrite(fd, $0, strlen($0), 0) }
        let dir = RunDirectory(path: absolute, lockFD: fd, tookOverFrom: previous.flatMap { $0 != getpid() ? $0 : nil }, created: created,
                               previousMode: previousMode)
        // Files a dead server left behind.
        unlink(dir.controlSocketPath)
        unlink(dir.connectionFilePath)
        unlink(dir.topologyFilePath)
        return dir
    }

    private init(path: String, lockFD: Int32, tookOverFrom: Int32?, created: Bool, previousMode: UInt32?) {
        self.path = path
        self.lockFD = lockFD
        self.tookOverFrom = tookOverFrom
        self.created = created
        self.previousMode = previousMode
    }

    private static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = pread(fd, &buffer, 31, 0)
        guard n > 0 else { return nil }
        return Int32(String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Writes the connection file atomically (temporary file, then rename), mode 0600.
    public func writeConnectionFile(_ info: ConnectionInfo) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(info)
        do { try AtomicFile.write(Array(data), to: connectionFilePath) } catch let error as AtomicFile.Failure {
            throw SupervisorError.system(operation: error.operation, path: error.path, errno: error.errno)
        }
    }

    /// Removes the connection file, topology file and control socket, empties and unlocks the lock file.
    public func release() {
        guard lockFD >= 0 else { return }
        unlink(connectionFilePath)
        unlink(controlSocketPath)
        unlink(topologyFilePath)
        _ = ftruncate(lockFD, 0)
        flock(lockFD, LOCK_UN)
        close(lockFD)
        lockFD = -1
    }

    /// After a run that failed before it started: `release`, then, if this run created the
    /// directory, removes the lock file and the directory (when nothing else is in it).
    public func abandon() {
        // The lock file goes while still locked: no other server can have taken it meanwhile.
        if lockFD >= 0 && created { unlink(lockPath) }
        release()
        if created { rmdir(path) }
    }

    deinit { release() }
}
