import CQuiverOS
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The server side of the control socket, driven by the supervisor's poll loop and never blocking
/// it: the listening socket and every accepted connection are non-blocking, each connection has
/// its own request buffer, reply buffer and deadline. A client that writes nothing, writes too
/// slowly, writes too much or never reads its reply is dropped at its deadline; nothing a client
/// does delays reaping, restarts or the watchdog.
///
/// Bounds: `maxConnections` open at once (one more evicts the oldest), requests up to
/// `UnixSocket.maxRequest` bytes, `deadline` seconds from accept to the last byte of the reply.
final class ControlServer {
    static let maxConnections = 16
    static let deadline = 1.0

    final class Connection {
        let fd: Int32
        let deadline: Double
        var request: [UInt8] = []
        var reply: [UInt8]?
        var sent = 0
        init(fd: Int32, deadline: Double) {
            self.fd = fd
            self.deadline = deadline
        }
    }

    let listenFD: Int32
    private(set) var connections: [Connection] = []
    /// Connections dropped at their deadline or evicted (for the log and tests).
    private(set) var dropped = 0

    init(listenFD: Int32) { self.listenFD = listenFD }

    /// The descriptors to poll: the listening socket, then each connection (readable while its
    /// request is incomplete, writable while its reply is pending).
    func pollDescriptors() -> [pollfd] {
        [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)]
            + connections.map { pollfd(fd: $0.fd, events: Int16($0.reply == nil ? POLLIN : POLLOUT), revents: 0) }
    }

    /// Seconds until the earliest deadline (nil: no connection).
    func secondsToNextDeadline(now: Double) -> Double? {
        connections.map(\.deadline).min().map { max(0, $0 - now) }
    }

    /// Serves what poll reported (`fds` as `pollDescriptors` made them, with revents): accepts new
    /// connections, reads requests, answers complete ones with `answer(command)`, writes replies,
    /// and drops connections past their deadline. Never blocks.
    func serve(_ fds: [pollfd], now: Double, answer: (String) -> String) {
        // Connections first (their order matches fds[1...]), then new ones.
        var finished = Set<Int32>()
        for (k, c) in connections.enumerated() where k + 1 < fds.count && fds[k + 1].fd == c.fd && fds[k + 1].revents != 0 {
            if c.reply == nil { read(c, answer: answer) }
            if c.reply != nil && !write(c) { finished.insert(c.fd) }
            else if c.reply == nil && fds[k + 1].revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 && c.request.isEmpty { finished.insert(c.fd) }
        }
        for c in connections where finished.contains(c.fd) || now >= c.deadline {
            if !finished.contains(c.fd) { dropped += 1 }
            close(c.fd)
        }
        connections.removeAll { finished.contains($0.fd) || now >= $0.deadline }
        if fds.first?.revents ?? 0 != 0 { acceptAll(now: now, answer: answer) }
    }

    private func acceptAll(now: Double, answer: (String) -> String) {
        while true {
            let fd = qv_os_accept(listenFD) // close-on-exec
            if fd < 0 { break }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            if connections.count >= Self.maxConnections {
                let oldest = connections.removeFirst()
                close(oldest.fd)
                dropped += 1
            }
            let c = Connection(fd: fd, deadline: now + Self.deadline)
            connections.append(c)
            // A client that wrote before connecting is answered at once, without another pass.
            read(c, answer: answer)
            if c.reply != nil && !write(c) {
                close(c.fd)
                connections.removeLast()
            }
        }
    }

    /// Reads what is there; makes the reply once the request is a line, the client closed its
    /// side, or the request reached the size limit.
    private func read(_ c: Connection, answer: (String) -> String) {
        var buffer = [UInt8](repeating: 0, count: 512)
        while c.reply == nil {
            let n = recv(c.fd, &buffer, min(buffer.count, UnixSocket.maxRequest - c.request.count), 0)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { if errno != EAGAIN && errno != EWOULDBLOCK { c.reply = [] }; return }
            if n > 0 { c.request += buffer[0..<n] }
            let line = c.request.firstIndex(of: UInt8(ascii: "\n"))
            if n == 0 || line != nil || c.request.count >= UnixSocket.maxRequest {
                let text: String
                if line == nil && c.request.count >= UnixSocket.maxRequest {
                    text = "{\"ok\":false,\"error\":\"request longer than \(UnixSocket.maxRequest) bytes\"}"
                } else if n == 0 && c.request.isEmpty {
                    c.reply = [] // closed without asking: nothing to answer
                    return
                } else {
                    let command = String(decoding: c.request[..<(line ?? c.request.endIndex)], as: UTF8.self)
                    text = answer(command.trimmingCharacters(in: .whitespacesAndNewlines))
                }
                c.reply = Array((text + "\n").utf8)
            }
        }
    }

    /// Writes what the socket takes; false when the connection is done (all sent, or failed).
    private func write(_ c: Connection) -> Bool {
        guard let reply = c.reply else { return true }
        while c.sent < reply.count {
            let n = reply[c.sent...].withUnsafeBytes { send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return errno == EAGAIN || errno == EWOULDBLOCK }
            c.sent += n
        }
        return false
    }

    /// Closes every connection (the run ends).
    func closeAll() {
        for c in connections { close(c.fd) }
        connections.removeAll()
    }
}
