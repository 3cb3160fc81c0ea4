import Foundation
import QuiverZMQ
import Testing

/// A context, the sockets made from it and a private temporary directory for `ipc://` endpoints,
/// torn down in the right order by `close()`: sockets, then the context (which must not wait:
/// test sockets have linger 0), then the directory and any socket files left in it.
final class Fixture {
    let context: ZMQContext
    let directory: String
    private var sockets: [ZMQSocket] = []

    init() throws {
        context = try ZMQContext()
        var template = Array("/tmp/quiver-zmq-XXXXXX".utf8CString)
        guard let path = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            context.close()
            throw FixtureError("mkdtemp failed (errno \(errno))")
        }
        directory = String(cString: path)
    }

    /// A socket with the test options (linger 0, 10 s send/receive timeouts) plus `extra`.
    func socket(_ type: ZMQSocket.SocketType, _ extra: [ZMQSocketOption] = []) throws -> ZMQSocket {
        let socket = try ZMQSocket(context: context, type: type, options: ZMQDefaults.testSocketOptions + extra)
        sockets.append(socket)
        return socket
    }

    /// An `ipc://` endpoint in the fixture's directory.
    func ipc(_ name: String) throws -> String {
        try ZMQDefaults.ipcEndpoint(path: "\(directory)/\(name).ipc")
    }

    func close() {
        for socket in sockets { socket.close() }
        sockets.removeAll()
        context.close()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body` with a fresh fixture and always tears it down.
func withFixture<R>(_ body: (Fixture) throws -> R) throws -> R {
    let fixture = try Fixture()
    defer { fixture.close() }
    return try body(fixture)
}

/// Seconds elapsed while running `body`.
func elapsed(_ body: () throws -> Void) rethrows -> Double {
    let start = ContinuousClock.now
    try body()
    let d = start.duration(to: .now)
    return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}

/// Publishes `probe` on `pub` until `sub` receives a message with that first part (the
/// subscription has reached the publisher: PUB drops everything before that), then drains the
/// probes still in flight. Bounded by `timeout`.
func synchronise(pub: ZMQSocket, sub: ZMQSocket, probe: [UInt8], timeout: Duration = .seconds(10)) throws {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
        try pub.send(probe)
        if let parts = try sub.receiveMultipart(timeout: .milliseconds(20)), parts.first == probe {
            while let parts = try sub.receiveMultipart(timeout: .milliseconds(50)) {
                guard parts.first == probe else { throw FixtureError("unexpected message while synchronising") }
            }
            return
        }
    }
    throw FixtureError("subscriber did not receive the probe within \(timeout)")
}

/// The little-endian bytes of `n`.
func counter(_ n: UInt64) -> [UInt8] { withUnsafeBytes(of: n.littleEndian) { Array($0) } }
/// The counter in `bytes` (8 little-endian bytes).
func counterValue(_ bytes: [UInt8]) -> UInt64? {
    guard bytes.count == 8 else { return nil }
    return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}
