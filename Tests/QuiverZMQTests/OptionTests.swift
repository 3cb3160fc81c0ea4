import Foundation
import QuiverZMQ
import Testing

@Suite("ZeroMQ socket options and defaults", .timeLimit(.minutes(1)))
struct OptionTests {
    @Test("libzmq 4.3 or later, with ipc")
    func library() {
        let v = ZMQ.version
        #expect(v.major == 4 && v.minor >= 3)
        #expect(ZMQ.has("ipc"))
    }

    @Test("sockets get ZMQDefaults.socketOptions unless told otherwise")
    func defaultsApplied() throws {
        let context = try ZMQContext()
        defer { context.close() }
        let socket = try context.socket(.dealer)
        defer { socket.close() }
        #expect(try socket.linger == ZMQDefaults.linger)
        #expect(try socket.sendHighWaterMark == ZMQDefaults.highWaterMark)
        #expect(try socket.receiveHighWaterMark == ZMQDefaults.highWaterMark)
        #expect(try socket.maxMessageSize == ZMQDefaults.maxMessageSize)
        #expect(try socket.heartbeatInterval == ZMQDefaults.heartbeatInterval)
        #expect(try socket.heartbeatTimeout == ZMQDefaults.heartbeatTimeout)
        #expect(try socket.heartbeatTimeToLive == ZMQDefaults.heartbeatTimeToLive)
        #expect(try socket.receiveTimeout == .infinite)
        #expect(socket.type == .dealer)

        // No options: libzmq's own defaults, except linger 0 from the context's ZMQ_BLOCKY = 0.
        let plain = try ZMQSocket(context: context, type: .dealer, options: [])
        defer { plain.close() }
        #expect(try plain.linger == .zero)
        #expect(try plain.maxMessageSize == nil)
        #expect(try plain.sendHighWaterMark == 1000)
    }

    @Test("every typed option reads back as set")
    func roundTrip() throws {
        try withFixture { f in
            let s = try f.socket(.dealer)
            try s.set([
                .linger(.milliseconds(1234)),
                .sendHighWaterMark(7),
                .receiveHighWaterMark(9),
                .maxMessageSize(4096),
                .sendTimeout(.milliseconds(300)),
                .receiveTimeout(.infinite),
                .immediate(true),
                .ipv6(true),
                .conflate(true),
                .routingId("me".bytes),
                .tcpKeepalive(.on),
                .tcpKeepaliveIdle(.seconds(30)),
                .tcpKeepaliveInterval(.seconds(5)),
                .tcpKeepaliveCount(4),
                .heartbeatInterval(.milliseconds(500)),
                .heartbeatTimeout(.milliseconds(1500)),
                .heartbeatTimeToLive(.milliseconds(2000)),
                .reconnectInterval(.milliseconds(50)),
            ])
            #expect(try s.linger == .milliseconds(1234))
            #expect(try s.sendHighWaterMark == 7)
            #expect(try s.receiveHighWaterMark == 9)
            #expect(try s.maxMessageSize == 4096)
            #expect(try s.sendTimeout == .milliseconds(300))
            #expect(try s.receiveTimeout == .infinite)
            #expect(try s.immediate)
            #expect(try s.ipv6)
            #expect(try s.conflate)
            #expect(try s.routingId == "me".bytes)
            #expect(try s.tcpKeepalive == .on)
            #expect(try s.heartbeatInterval == .milliseconds(500))
            #expect(try s.heartbeatTimeout == .milliseconds(1500))
            #expect(try s.heartbeatTimeToLive == .milliseconds(2000))
            try s.set(.maxMessageSize(nil))
            #expect(try s.maxMessageSize == nil)
            #expect(try s.lastEndpoint == "")
            #expect(try s.lastTCPPort == nil)
            #expect(try s.fileDescriptor >= 0)
            #expect(try s.hasMoreParts == false)
        }
    }

    @Test("out-of-range values are rejected with EINVAL")
    func invalidValues() throws {
        try withFixture { f in
            let s = try f.socket(.dealer)
            #expect(throws: ZMQError.invalidArgument) { try s.set(.sendHighWaterMark(-1)) }
            #expect(throws: ZMQError.invalidArgument) { try s.set(.routingId([])) }
            #expect(throws: ZMQError.invalidArgument) { try s.set(.heartbeatTimeToLive(.seconds(7000))) }
        }
    }

    @Test("ZMTP heartbeats: a silent peer is dropped after the heartbeat timeout, a live one is kept")
    func heartbeats() throws {
        try withFixture { f in
            // The server pings every 100 ms and drops a connection 300 ms after a ping if nothing
            // came back.
            let server = try f.socket(.router, [.heartbeatInterval(.milliseconds(100)), .heartbeatTimeout(.milliseconds(300))])
            let monitor = try server.monitor([.handshakeSucceeded, .disconnected])
            try server.bind(ZMQDefaults.loopbackAnyPort)
            let port = try #require(try server.lastTCPPort)

            // A live libzmq peer answers pings from its I/O thread: it stays connected.
            let client = try f.socket(.dealer)
            try client.connect(try server.lastEndpoint)
            #expect(try monitor.wait(for: .handshakeSucceeded, timeout: .seconds(5)) != nil)
            try client.send([1])
            #expect(try server.receiveMultipart(timeout: .seconds(5))?.last == [1])
            #expect(try monitor.wait(for: .disconnected, timeout: .seconds(1)) == nil)

            // A peer that completes the ZMTP handshake and then says nothing is dropped.
            let silent = try SilentZMTPPeer(port: port)
            defer { silent.close() }
            #expect(try monitor.wait(for: .handshakeSucceeded, timeout: .seconds(5)) != nil)
            var dropped: Double = 0
            let seconds = try elapsed { dropped = try monitor.wait(for: .disconnected, timeout: .seconds(5)) == nil ? -1 : 1 }
            #expect(dropped == 1)
            #expect(seconds < 3)
        }
    }
}

/// A raw TCP client that speaks just enough ZMTP 3.0 (greeting, NULL mechanism READY as a
/// DEALER) to be accepted, then never answers a heartbeat.
final class SilentZMTPPeer {
    private let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError("socket failed (errno \(errno))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { Glibc.close(fd); throw FixtureError("connect failed (errno \(errno))") }
        var greeting = [UInt8](repeating: 0, count: 64)
        greeting[0] = 0xFF; greeting[9] = 0x7F            // signature
        greeting[10] = 3; greeting[11] = 0                 // ZMTP 3.0
        for (i, c) in "NULL".utf8.enumerated() { greeting[12 + i] = c }  // mechanism; as-server 0
        var ready: [UInt8] = [5] + Array("READY".utf8) + [11] + Array("Socket-Type".utf8) + [0, 0, 0, 6] + Array("DEALER".utf8)
        ready = [0x04, UInt8(ready.count)] + ready         // short command frame
        for bytes in [greeting, ready] {
            guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
                Glibc.close(fd)
                throw FixtureError("write failed (errno \(errno))")
            }
        }
    }

    func close() { Glibc.close(fd) }
}
