import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The run's UNIX control socket: a client connects, writes one command line (`status`, `stop`),
/// reads one JSON line back, and the connection closes. Requests are capped at 4 KiB.
enum UnixSocket {
    static let maxRequest = 4096

    static func address(_ path: String) throws -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { throw SupervisorError.control("socket path too long (\(bytes.count) bytes, at most \(capacity - 1)): \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return addr
    }

    /// A listening, non-blocking, close-on-exec socket at `path` (mode 0600).
    static func listen(at path: String) throws -> Int32 {
        var addr = try address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw SupervisorError.system(operation: "socket", path: path, errno: errno) }
        unlink(path)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard bound == 0 else { let e = errno; close(fd); throw SupervisorError.system(operation: "bind", path: path, errno: e) }
        chmod(path, 0o600)
        guard Glibc.listen(fd, 16) == 0 else { let e = errno; close(fd); throw SupervisorError.system(operation: "listen", path: path, errno: e) }
        return fd
    }

    /// Sends `command` to the socket at `path` and returns the reply line; bounded by `timeout` seconds.
    static func request(_ command: String, at path: String, timeout: Double = 5) throws -> String {
        var addr = try address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SupervisorError.system(operation: "socket", path: path, errno: errno) }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard connected == 0 else { throw SupervisorError.system(operation: "connect", path: path, errno: errno) }
        let line = command + "\n"
        let sent = line.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        guard sent == line.utf8.count else { throw SupervisorError.system(operation: "send", path: path, errno: errno) }
        var reply = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while reply.count < 1 << 20 {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw SupervisorError.system(operation: "recv", path: path, errno: errno) }
            if n == 0 { break }
            reply += buffer[0..<n]
            if reply.last == UInt8(ascii: "\n") { break }
        }
        guard !reply.isEmpty else { throw SupervisorError.control("no reply from \(path)") }
        return String(decoding: reply, as: UTF8.self).trimmingCharacters(in: .newlines)
    }
}

/// Client side of the control socket, for `quiver stop` and `quiver status`.
public enum ControlClient {
    /// Sends one command to the run in `runDirectory` and returns its JSON reply.
    public static func send(_ command: String, runDirectory: String, timeout: Double = 5) throws -> String {
        let path = URL(fileURLWithPath: runDirectory).standardizedFileURL.path + "/control.sock"
        return try UnixSocket.request(command, at: path, timeout: timeout)
    }
}
