import Foundation
import QuiverClient
import QuiverSupervisor
import QuiverWire
import QuiverZMQ
import Testing

/// Hostile bytes on every endpoint of a running server: nothing a peer sends may end a worker.
@Suite("Garbage on every endpoint", .serialized)
struct GarbageTests {
    func workers(_ server: TestServer) throws -> [String: (pid: Int32, restarts: Int)] {
        var out: [String: (pid: Int32, restarts: Int)] = [:]
        for w in (try server.status()["workers"] as? [[String: Any]]) ?? [] {
            out[w["role"] as? String ?? "?"] = (Int32(w["pid"] as? Int ?? 0), w["restarts"] as? Int ?? 0)
        }
        return out
    }

    @Test("a multipart request to the heartbeat is answered whole, and the heartbeat keeps running", .timeLimit(.minutes(1)))
    func multipartHeartbeat() throws {
        let server = try TestServer()
        let connection = try #require(server.connection)
        let before = try #require(try workers(server)["heartbeat"])
        let context = try ZMQContext()
        defer { context.close() }
        let dealer = try context.socket(.dealer, options: [.linger(.zero)])
        defer { dealer.close() }
        try dealer.connect(try #require(connection.endpoints["heartbeat"]))
        // DEALER to REP: an empty delimiter, then the request's parts.
        let parts: [[UInt8]] = [[], Array("a".utf8), [0, 1, 2], Array("health".utf8)]
        try dealer.sendMultipart(parts)
        let reply = try #require(try dealer.receiveMultipart(timeout: .seconds(10)), "no reply to a multipart request")
        #expect(reply == parts)
        let client = try QuiverClient(connectionFile: server.directory.path + "/connection.json")
        #expect(try client.ping(timeout: 5) != nil)
        let after = try #require(try workers(server)["heartbeat"])
        #expect(after.pid == before.pid && after.restarts == before.restarts, "the heartbeat was restarted")
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
    }

    @Test("random bytes on every TCP and IPC endpoint and control.sock, random messages of every socket type: no worker restarts", .timeLimit(.minutes(2)))
    func garbageEverywhere() throws {
        let server = try TestServer()
        let connection = try #require(server.connection)
        let before = try workers(server)
        var endpoints = Array(connection.endpoints.values)
        endpoints.append("ipc://" + server.directory.path + "/control.sock")
        for endpoint in endpoints.sorted() {
            for size in [1, 7, 64, 4096, 65536] {
                RawSocket.write(endpoint: endpoint, bytes: (0..<size).map { _ in UInt8.random(in: 0...255) })
            }
        }
        let context = try ZMQContext()
        for (name, type) in [("control", ZMQSocket.SocketType.dealer), ("heartbeat", .dealer), ("heartbeat", .req),
                             ("frames", .xsub), ("state", .xsub), ("control", .req)] {
            let s = try context.socket(type, options: [.linger(.zero)])
            try s.connect(try #require(connection.endpoints[name]))
            for _ in 0..<(type == .req ? 1 : 50) {
                let parts = (0..<Int.random(in: 1...3)).map { _ in (0..<Int.random(in: 0...512)).map { _ in UInt8.random(in: 0...255) } }
                _ = try s.sendMultipart(parts, timeout: .seconds(5))
            }
            // What comes back (an error reply, an echo) is read until quiet; then the peer leaves.
            if type == .req {
                _ = try s.receiveMultipart(timeout: .seconds(2))
            } else {
                while try s.receiveMultipart(timeout: .milliseconds(200)) != nil {}
            }
            s.close()
        }
        context.close()
        // The server still answers on every channel; a worker that crashed would show a restart.
        let client = try QuiverClient(connectionFile: server.directory.path + "/connection.json")
        #expect(try client.ping(timeout: 5) != nil)
        #expect(try client.nextFrame(timeout: 10) != nil)
        let commands = try server.commandClient()
        #expect(try commands.send("get", args: [:]).isOK)
        let after = try workers(server)
        for (role, b) in before {
            #expect(after[role]?.pid == b.pid && after[role]?.restarts == b.restarts, "\(role) was restarted by garbage")
        }
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
    }
}

/// A plain stream socket to a `tcp://` or `ipc://` endpoint: writes bytes, reads what comes back
/// for a moment, closes.
enum RawSocket {
    static func write(endpoint: String, bytes: [UInt8]) {
        let fd: Int32
        if endpoint.hasPrefix("tcp://") {
            let rest = endpoint.dropFirst(6)
            guard let colon = rest.lastIndex(of: ":"), let port = UInt16(rest[rest.index(after: colon)...]) else { return }
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            addr.sin_addr.s_addr = inet_addr(String(rest[..<colon]))
            let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard ok == 0 else { close(fd); return }
        } else if endpoint.hasPrefix("ipc://") {
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let path = Array(endpoint.dropFirst(6).utf8)
            withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: path.prefix($0.count - 1) + [0]) }
            let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            guard ok == 0 else { close(fd); return }
        } else {
            return
        }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var sink = [UInt8](repeating: 0, count: 4096)
        _ = recv(fd, &sink, sink.count, 0)
        close(fd)
    }
}
