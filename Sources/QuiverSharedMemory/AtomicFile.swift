import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Files of a run directory replaced atomically: written to `<path>.tmp` (mode 0600, not
/// following a symbolic link), then renamed over `path`, so a reader sees the old file or the new
/// one, never a mix. Shared by the connection file and the topology file.
public enum AtomicFile {
    /// What failed: the system call, the path it was given, and errno.
    public struct Failure: Error, Sendable {
        public let operation: String
        public let path: String
        public let errno: Int32
    }

    /// Throws `Failure`.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw Failure(operation: "open", path: temporary, errno: Glibc.errno) }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let e = written < 0 ? Glibc.errno : ENOSPC
        close(fd)
        guard written == bytes.count else {
            unlink(temporary)
            throw Failure(operation: "write", path: temporary, errno: e)
        }
        guard rename(temporary, path) == 0 else {
            let e = Glibc.errno
            unlink(temporary)
            throw Failure(operation: "rename", path: path, errno: e)
        }
    }
}
