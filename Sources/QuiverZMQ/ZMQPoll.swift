import CZeroMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Readiness flags of `zmq_poll` (and of `ZMQSocket.events`).
public struct ZMQEvents: OptionSet, Sendable, Hashable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }

    /// ZMQ_POLLIN: at least one message can be received without blocking.
    public static let readable = ZMQEvents(rawValue: Int16(ZMQ_POLLIN))
    /// ZMQ_POLLOUT: at least one message can be sent without blocking.
    public static let writable = ZMQEvents(rawValue: Int16(ZMQ_POLLOUT))
    /// ZMQ_POLLERR: an error condition (file descriptors only).
    public static let error = ZMQEvents(rawValue: Int16(ZMQ_POLLERR))
    /// ZMQ_POLLPRI: urgent data (file descriptors only).
    public static let priority = ZMQEvents(rawValue: Int16(ZMQ_POLLPRI))
}

/// One entry of a `ZMQ.poll`: a socket or a plain file descriptor, and the events of interest.
/// Holds the socket for the duration of the poll.
public struct ZMQPollItem {
    enum Target {
        case socket(ZMQSocket)
        case fileDescriptor(Int32)
    }

    let target: Target
    /// The events to wait for.
    public let events: ZMQEvents

    /// Waits for `events` on a ZeroMQ socket.
    public static func socket(_ socket: ZMQSocket, _ events: ZMQEvents = .readable) -> ZMQPollItem {
        ZMQPollItem(target: .socket(socket), events: events)
    }

    /// Waits for `events` on a file descriptor (a pipe, a UNIX socket, a signalfd...). The caller
    /// owns the descriptor and keeps it open during the poll.
    public static func fileDescriptor(_ fd: Int32, _ events: ZMQEvents = .readable) -> ZMQPollItem {
        ZMQPollItem(target: .fileDescriptor(fd), events: events)
    }
}

/// Library-wide functions: poll, version, capabilities.
public enum ZMQ {
    /// Waits until at least one item has one of its events, or `timeout` expires (`zmq_poll`).
    /// There is no default timeout: waiting forever takes `.infinite`, by name. A signal does not
    /// end the wait early; the poll resumes for the time left.
    /// - Returns: the ready events of each item, in the order of `items` (all empty on timeout).
    /// - Throws: `.notSocket` for a closed socket, `.terminated` after context shutdown.
    public static func poll(_ items: [ZMQPollItem], timeout: ZMQTimeout) throws(ZMQError) -> [ZMQEvents] {
        var raw: [zmq_pollitem_t] = []
        raw.reserveCapacity(items.count)
        for item in items {
            switch item.target {
            case .socket(let socket):
                raw.append(zmq_pollitem_t(socket: try socket.openHandle(), fd: -1, events: item.events.rawValue, revents: 0))
            case .fileDescriptor(let fd):
                raw.append(zmq_pollitem_t(socket: nil, fd: fd, events: item.events.rawValue, revents: 0))
            }
        }
        let deadline = ZMQDeadline(timeout)
        var wait = timeout
        while true {
            let ms = Int(wait.milliseconds)
            let rc = withExtendedLifetime(items) {
                raw.withUnsafeMutableBufferPointer { zmq_poll($0.baseAddress, Int32($0.count), ms) }
            }
            if rc >= 0 { return raw.map { ZMQEvents(rawValue: $0.revents) } }
            let code = zmq_errno()
            guard code == EINTR else { throw ZMQError(code: code, operation: "zmq_poll") }
            guard let remaining = deadline.remaining else { return items.map { _ in [] } }
            wait = remaining
        }
    }

    /// The libzmq version linked at run time.
    public static var version: (major: Int, minor: Int, patch: Int) {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return (Int(major), Int(minor), Int(patch))
    }

    /// Whether libzmq was built with a capability: "ipc", "curve", "draft", ... (`zmq_has`).
    public static func has(_ capability: String) -> Bool {
        zmq_has(capability) != 0
    }
}
