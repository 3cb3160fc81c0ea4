import CZeroMQ

/// A connection event of a monitored socket (`zmq_socket_monitor`, version 1 events).
public struct ZMQSocketEvent: Sendable, Hashable {
    /// Which event (one flag).
    public let kind: Kind
    /// The event's value: a file descriptor, an errno or an interval, depending on `kind`.
    public let value: UInt32
    /// The endpoint concerned.
    public let endpoint: String

    /// Event flags, also used to choose which events to monitor.
    public struct Kind: OptionSet, Sendable, Hashable {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        public static let connected = Kind(rawValue: UInt16(ZMQ_EVENT_CONNECTED))
        public static let connectDelayed = Kind(rawValue: UInt16(ZMQ_EVENT_CONNECT_DELAYED))
        public static let connectRetried = Kind(rawValue: UInt16(ZMQ_EVENT_CONNECT_RETRIED))
        public static let listening = Kind(rawValue: UInt16(ZMQ_EVENT_LISTENING))
        public static let bindFailed = Kind(rawValue: UInt16(ZMQ_EVENT_BIND_FAILED))
        public static let accepted = Kind(rawValue: UInt16(ZMQ_EVENT_ACCEPTED))
        public static let acceptFailed = Kind(rawValue: UInt16(ZMQ_EVENT_ACCEPT_FAILED))
        public static let closed = Kind(rawValue: UInt16(ZMQ_EVENT_CLOSED))
        public static let closeFailed = Kind(rawValue: UInt16(ZMQ_EVENT_CLOSE_FAILED))
        /// The connection was dropped: the peer went away, a heartbeat timed out, or the peer sent
        /// a message above `maxMessageSize`.
        public static let disconnected = Kind(rawValue: UInt16(ZMQ_EVENT_DISCONNECTED))
        public static let monitorStopped = Kind(rawValue: UInt16(ZMQ_EVENT_MONITOR_STOPPED))
        public static let handshakeFailedNoDetail = Kind(rawValue: UInt16(ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL))
        public static let handshakeSucceeded = Kind(rawValue: UInt16(ZMQ_EVENT_HANDSHAKE_SUCCEEDED))
        public static let handshakeFailedProtocol = Kind(rawValue: UInt16(ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL))
        public static let handshakeFailedAuth = Kind(rawValue: UInt16(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH))
        /// Every event.
        public static let all = Kind(rawValue: 0xFFFF)
    }

    /// Decodes the two frames libzmq sends per event: 6 bytes (16-bit event, 32-bit value, host
    /// byte order) and the endpoint. `nil` for anything else.
    public init?(parts: [[UInt8]]) {
        guard parts.count == 2, parts[0].count == 6 else { return nil }
        let head = parts[0]
        let event = head.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: UInt16.self) }
        value = head.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 2, as: UInt32.self) }
        kind = Kind(rawValue: event)
        endpoint = String(decoding: parts[1], as: UTF8.self)
    }
}

/// Receives the connection events of one socket: a PAIR socket connected to the monitor libzmq
/// runs for it. Same threading rules as a socket. Monitoring stops when the monitored socket is
/// closed or `ZMQSocket.stopMonitor()` is called; close this afterwards (or let it go).
public final class ZMQSocketMonitor {
    /// The PAIR socket the events arrive on (poll it alongside others if needed).
    public let socket: ZMQSocket

    init(socket: ZMQSocket) { self.socket = socket }

    /// The next event, waiting at most `timeout`; `nil` if none came.
    public func next(timeout: ZMQTimeout) throws(ZMQError) -> ZMQSocketEvent? {
        guard let parts = try socket.receiveMultipart(timeout: timeout) else { return nil }
        guard let event = ZMQSocketEvent(parts: parts) else {
            throw ZMQError(code: ZMQError.invalidArgument.code, operation: "monitor event (\(parts.count) parts)")
        }
        return event
    }

    /// Waits at most `timeout` for an event of one of `kinds`, skipping others; `nil` if none came.
    public func wait(for kinds: ZMQSocketEvent.Kind, timeout: ZMQTimeout) throws(ZMQError) -> ZMQSocketEvent? {
        let deadline = ZMQDeadline(timeout)
        while let remaining = deadline.remaining {
            guard let event = try next(timeout: remaining) else { return nil }
            if !kinds.isDisjoint(with: event.kind) { return event }
        }
        return nil
    }

    /// Closes the PAIR socket.
    public func close() { socket.close() }
}

@available(*, unavailable)
extension ZMQSocketMonitor: Sendable {}

extension ZMQSocket {
    /// Starts monitoring this socket's connections for `events` and returns the receiving end.
    /// Start it before `bind`/`connect` to see every event.
    public func monitor(_ events: ZMQSocketEvent.Kind = .all) throws(ZMQError) -> ZMQSocketMonitor {
        let handle = try openHandle()
        let endpoint = "inproc://quiver.zmq.monitor.\(UInt64.random(in: 0 ... .max))"
        try zmqCall("zmq_socket_monitor") { zmq_socket_monitor(handle, endpoint, Int32(events.rawValue)) }
        do throws(ZMQError) {
            let pair = try ZMQSocket(context: context, type: .pair, options: [.linger(.zero)])
            try pair.connect(endpoint)
            return ZMQSocketMonitor(socket: pair)
        } catch {
            _ = zmq_socket_monitor(handle, nil, 0)
            throw error
        }
    }

    /// Stops the monitor started by `monitor(_:)`.
    public func stopMonitor() throws(ZMQError) {
        let handle = try openHandle()
        try zmqCall("zmq_socket_monitor") { zmq_socket_monitor(handle, nil, 0) }
    }
}
