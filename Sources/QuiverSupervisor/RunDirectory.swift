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
    /// A worker kept failing: it was restarted `restarts` times within the window, then given up.
    case workerFailed(role: String, restarts: Int, lastExit: String)
    /// A worker could not be spawned at all.
    case spawnFailed(role: String, errno: Int32)
    /// The control socket answered something unexpected, or nothing.
    case control(String)

    public var description: String {
        switch self {
        case .runDirectoryInUse(let path, let pid): return "run directory \(path) is in use by a running server (pid \(pid)); stop it first or use another directory"
        case .system(let op, let path, let e): return "\(op) \(path): \(String(cString: strerror(e)))"
        case .workerFailed(let role, let restarts, let last):
            return "worker '\(role)' failed \(restarts + 1) times in a row (last: \(last)); the run stopped"
        case .spawnFailed(let role, let e): return "could not start worker '\(role)': \(String(cString: strerror(e)))"
        case .control(let m): return m
        }
    }
}

/// A run directory held by one server: created private (0700), locked with `flock` on `lock` (the
/// kernel releases the lock when its holder dies, so a dead server's directory is taken over), and
/// holding `connection.json` and the control socket while the run lives.
public final class RunDirectory {
    public let path: String
    private var lockFD: Int32
    /// The pid a dead server left in the lock file, when this run took its directory over.
    public let tookOverFrom: Int32?

    public var lockPath: String { path + "/lock" }
    public var connectionFilePath: String { path + "/connection.json" }
    public var controlSocketPath: String { path + "/control.sock" }
    /// The topology clients are sent (written by the owner of the dynamics).
    public var topologyFilePath: String { path + "/topology.bin" }

    /// Creates (if needed) and locks `path`. Throws `runDirectoryInUse` when a live server holds it.
    public static func acquire(_ path: String) throws -> RunDirectory {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        if mkdir(absolute, 0o700) != 0 && errno != EEXIST {
            throw SupervisorError.system(operation: "mkdir", path: absolute, errno: errno)
        }
        var st = stat()
        guard stat(absolute, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw SupervisorError.system(operation: "stat", path: absolute, errno: errno == 0 ? ENOTDIR : errno)
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
        let dir = RunDirectory(path: absolute, lockFD: fd, tookOverFrom: previous.flatMap { $0 != getpid() ? $0 : nil })
        // Files a dead server left behind.
        unlink(dir.controlSocketPath)
        unlink(dir.connectionFilePath)
        unlink(dir.topologyFilePath)
        return dir
    }

    private init(path: String, lockFD: Int32, tookOverFrom: Int32?) {
        self.path = path
        self.lockFD = lockFD
        self.tookOverFrom = tookOverFrom
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

    deinit { release() }
}
