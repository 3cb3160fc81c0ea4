import CZeroMQ

/// A socket option with its value, typed. Apply with `ZMQSocket.set(_:)` (one) or pass a list to
/// `ZMQSocket(context:type:options:)`; read back through `ZMQSocket`'s throwing properties.
///
/// Most options only affect later `bind`/`connect` calls; set them right after creating the socket
/// (the initialiser does). `linger`, `subscribe`/`unsubscribe`, `routerMandatory` and the
/// high-water marks may be changed at any time.
public enum ZMQSocketOption: Sendable, Hashable {
    /// ZMQ_LINGER: how long unsent messages are kept after `close()`/`disconnect` (and so how long
    /// context termination may wait for this socket). `.zero` drops them at once.
    case linger(ZMQTimeout)
    /// ZMQ_SNDHWM: at most this many messages queued per peer for sending; beyond it PUB drops,
    /// ROUTER drops (or fails with `routerMandatory`), others block. 0 means no limit.
    case sendHighWaterMark(Int)
    /// ZMQ_RCVHWM: at most this many messages queued per peer for receiving. 0 means no limit.
    case receiveHighWaterMark(Int)
    /// ZMQ_MAXMSGSIZE: a peer that sends a larger message is disconnected (the message is never
    /// delivered). `nil` means no limit.
    case maxMessageSize(Int?)
    /// ZMQ_SNDTIMEO: how long a blocking send waits before failing with `ZMQError.again`.
    case sendTimeout(ZMQTimeout)
    /// ZMQ_RCVTIMEO: how long a blocking receive waits before failing with `ZMQError.again`.
    case receiveTimeout(ZMQTimeout)
    /// ZMQ_SUBSCRIBE (SUB): receive messages whose first frame starts with this prefix (empty: all).
    case subscribe([UInt8])
    /// ZMQ_UNSUBSCRIBE (SUB): remove one earlier `subscribe` of the same prefix.
    case unsubscribe([UInt8])
    /// ZMQ_CONFLATE (PUB, SUB, PUSH, PULL, DEALER): keep only the newest message in the queue.
    /// Single-part messages only; set before `connect`/`bind`.
    case conflate(Bool)
    /// ZMQ_IMMEDIATE: queue messages only to completed connections (REQ, PUSH, DEALER do not lose
    /// messages to a peer that is still connecting).
    case immediate(Bool)
    /// ZMQ_ROUTER_MANDATORY (ROUTER): sending to an unknown routing id fails with
    /// `ZMQError.hostUnreachable` instead of being dropped silently.
    case routerMandatory(Bool)
    /// ZMQ_IPV6: allow IPv6 addresses on TCP endpoints (IPv4-only otherwise).
    case ipv6(Bool)
    /// ZMQ_ROUTING_ID: this socket's identity as seen by a ROUTER peer (1-255 bytes, not starting
    /// with 0). Set before `connect`.
    case routingId([UInt8])
    /// ZMQ_TCP_KEEPALIVE: the OS's TCP keepalive on TCP connections.
    case tcpKeepalive(TCPKeepalive)
    /// ZMQ_TCP_KEEPALIVE_IDLE: idle time before the first keepalive probe (whole seconds).
    case tcpKeepaliveIdle(Duration)
    /// ZMQ_TCP_KEEPALIVE_INTVL: time between keepalive probes (whole seconds).
    case tcpKeepaliveInterval(Duration)
    /// ZMQ_TCP_KEEPALIVE_CNT: unanswered probes before the connection is dropped.
    case tcpKeepaliveCount(Int)
    /// ZMQ_HEARTBEAT_IVL: send a ZMTP PING this often on every connection (`.zero`: no heartbeats).
    case heartbeatInterval(Duration)
    /// ZMQ_HEARTBEAT_TIMEOUT: drop a connection that sent nothing this long after our PING.
    case heartbeatTimeout(Duration)
    /// ZMQ_HEARTBEAT_TTL: ask the peer to drop the connection if it hears nothing from us this
    /// long (resolution 100 ms, at most 6553.5 s).
    case heartbeatTimeToLive(Duration)
    /// ZMQ_RECONNECT_IVL: wait this long before reconnecting a dropped connection.
    case reconnectInterval(Duration)
    /// ZMQ_USE_FD: serve a listening socket the process already has (bound and listening on the
    /// address `bind` then names) instead of creating one; how a restarted worker keeps the port
    /// its supervisor opened. Set before `bind`.
    case useFileDescriptor(Int32)
    /// ZMQ_XPUB_VERBOSE: an XPUB socket passes on every subscription, also repeated ones, so a
    /// publisher can greet each late joiner (last value cache).
    case xpubVerbose(Bool)

    /// The OS's TCP keepalive setting.
    public enum TCPKeepalive: Int32, Sendable, Hashable {
        /// Leave the OS default (libzmq's -1).
        case systemDefault = -1
        case off = 0
        case on = 1
    }

    /// libzmq's option name.
    public var name: Int32 {
        switch self {
        case .linger: return ZMQ_LINGER
        case .sendHighWaterMark: return ZMQ_SNDHWM
        case .receiveHighWaterMark: return ZMQ_RCVHWM
        case .maxMessageSize: return ZMQ_MAXMSGSIZE
        case .sendTimeout: return ZMQ_SNDTIMEO
        case .receiveTimeout: return ZMQ_RCVTIMEO
        case .subscribe: return ZMQ_SUBSCRIBE
        case .unsubscribe: return ZMQ_UNSUBSCRIBE
        case .conflate: return ZMQ_CONFLATE
        case .immediate: return ZMQ_IMMEDIATE
        case .routerMandatory: return ZMQ_ROUTER_MANDATORY
        case .ipv6: return ZMQ_IPV6
        case .routingId: return ZMQ_ROUTING_ID
        case .tcpKeepalive: return ZMQ_TCP_KEEPALIVE
        case .tcpKeepaliveIdle: return ZMQ_TCP_KEEPALIVE_IDLE
        case .tcpKeepaliveInterval: return ZMQ_TCP_KEEPALIVE_INTVL
        case .tcpKeepaliveCount: return ZMQ_TCP_KEEPALIVE_CNT
        case .heartbeatInterval: return ZMQ_HEARTBEAT_IVL
        case .heartbeatTimeout: return ZMQ_HEARTBEAT_TIMEOUT
        case .heartbeatTimeToLive: return ZMQ_HEARTBEAT_TTL
        case .reconnectInterval: return ZMQ_RECONNECT_IVL
        case .useFileDescriptor: return ZMQ_USE_FD
        case .xpubVerbose: return ZMQ_XPUB_VERBOSE
        }
    }

    /// The C value: an `int`, an `int64_t` or bytes.
    enum Value {
        case int32(Int32)
        case int64(Int64)
        case bytes([UInt8])
    }

    var value: Value {
        switch self {
        case .linger(let t), .sendTimeout(let t), .receiveTimeout(let t):
            return .int32(t.milliseconds)
        case .sendHighWaterMark(let n), .receiveHighWaterMark(let n), .tcpKeepaliveCount(let n):
            return .int32(Int32(clamping: n))
        case .maxMessageSize(let n):
            return .int64(n.map { Int64($0) } ?? -1)
        case .subscribe(let b), .unsubscribe(let b), .routingId(let b):
            return .bytes(b)
        case .conflate(let f), .immediate(let f), .routerMandatory(let f), .ipv6(let f), .xpubVerbose(let f):
            return .int32(f ? 1 : 0)
        case .tcpKeepalive(let k):
            return .int32(k.rawValue)
        case .useFileDescriptor(let fd):
            return .int32(fd)
        case .tcpKeepaliveIdle(let d), .tcpKeepaliveInterval(let d):
            return .int32(Int32(clamping: (d.wholeMillisecondsRoundedUp + 999) / 1000))
        case .heartbeatInterval(let d), .heartbeatTimeout(let d), .heartbeatTimeToLive(let d),
             .reconnectInterval(let d):
            return .int32(Int32(clamping: d.wholeMillisecondsRoundedUp))
        }
    }
}

extension ZMQSocket {
    /// Sets one option (`zmq_setsockopt`).
    /// - Throws: `ZMQError.invalidArgument` for a value libzmq rejects or an option this socket
    ///   type does not have; `.notSocket` once closed; `.terminated` after context shutdown.
    public func set(_ option: ZMQSocketOption) throws(ZMQError) {
        let handle = try openHandle()
        let name = option.name
        let operation = "zmq_setsockopt(\(name))"
        switch option.value {
        case .int32(var v):
            try zmqCall(operation) { zmq_setsockopt(handle, name, &v, MemoryLayout<Int32>.size) }
        case .int64(var v):
            try zmqCall(operation) { zmq_setsockopt(handle, name, &v, MemoryLayout<Int64>.size) }
        case .bytes(let b):
            try zmqCall(operation) { b.withUnsafeBytes { zmq_setsockopt(handle, name, $0.baseAddress, $0.count) } }
        }
    }

    /// Sets several options, in order.
    public func set(_ options: [ZMQSocketOption]) throws(ZMQError) {
        for option in options { try set(option) }
    }

    // MARK: Reading options back

    /// ZMQ_LINGER.
    public var linger: ZMQTimeout { get throws(ZMQError) { ZMQTimeout(milliseconds: try int32Option(ZMQ_LINGER)) } }
    /// ZMQ_SNDHWM (0: no limit).
    public var sendHighWaterMark: Int { get throws(ZMQError) { Int(try int32Option(ZMQ_SNDHWM)) } }
    /// ZMQ_RCVHWM (0: no limit).
    public var receiveHighWaterMark: Int { get throws(ZMQError) { Int(try int32Option(ZMQ_RCVHWM)) } }
    /// ZMQ_MAXMSGSIZE (`nil`: no limit).
    public var maxMessageSize: Int? {
        get throws(ZMQError) {
            let n = try int64Option(ZMQ_MAXMSGSIZE)
            return n < 0 ? nil : Int(n)
        }
    }
    /// ZMQ_SNDTIMEO.
    public var sendTimeout: ZMQTimeout { get throws(ZMQError) { ZMQTimeout(milliseconds: try int32Option(ZMQ_SNDTIMEO)) } }
    /// ZMQ_RCVTIMEO.
    public var receiveTimeout: ZMQTimeout { get throws(ZMQError) { ZMQTimeout(milliseconds: try int32Option(ZMQ_RCVTIMEO)) } }
    /// ZMQ_IMMEDIATE.
    public var immediate: Bool { get throws(ZMQError) { try int32Option(ZMQ_IMMEDIATE) != 0 } }
    /// ZMQ_IPV6.
    public var ipv6: Bool { get throws(ZMQError) { try int32Option(ZMQ_IPV6) != 0 } }
    /// ZMQ_CONFLATE.
    public var conflate: Bool { get throws(ZMQError) { try int32Option(ZMQ_CONFLATE) != 0 } }
    /// ZMQ_ROUTING_ID (empty when none was set).
    public var routingId: [UInt8] { get throws(ZMQError) { try bytesOption(ZMQ_ROUTING_ID, capacity: 256) } }
    /// ZMQ_TCP_KEEPALIVE.
    public var tcpKeepalive: ZMQSocketOption.TCPKeepalive {
        get throws(ZMQError) { ZMQSocketOption.TCPKeepalive(rawValue: try int32Option(ZMQ_TCP_KEEPALIVE)) ?? .systemDefault }
    }
    /// ZMQ_HEARTBEAT_IVL (`.zero`: no heartbeats).
    public var heartbeatInterval: Duration { get throws(ZMQError) { .milliseconds(try int32Option(ZMQ_HEARTBEAT_IVL)) } }
    /// ZMQ_HEARTBEAT_TIMEOUT.
    public var heartbeatTimeout: Duration { get throws(ZMQError) { .milliseconds(try int32Option(ZMQ_HEARTBEAT_TIMEOUT)) } }
    /// ZMQ_HEARTBEAT_TTL (libzmq keeps it in whole deciseconds).
    public var heartbeatTimeToLive: Duration { get throws(ZMQError) { .milliseconds(try int32Option(ZMQ_HEARTBEAT_TTL)) } }

    /// ZMQ_LAST_ENDPOINT: the endpoint of the last `bind` or `connect`, resolved, so a bind to
    /// `tcp://127.0.0.1:*` reads back as `tcp://127.0.0.1:<port>`. Empty before any.
    public var lastEndpoint: String {
        get throws(ZMQError) {
            let bytes = try bytesOption(ZMQ_LAST_ENDPOINT, capacity: 1024)
            return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// The TCP port of the last bind or connect, parsed from `lastEndpoint`; `nil` for other
    /// transports.
    public var lastTCPPort: Int? {
        get throws(ZMQError) {
            let endpoint = try lastEndpoint
            guard endpoint.hasPrefix("tcp://"), let colon = endpoint.lastIndex(of: ":") else { return nil }
            return Int(endpoint[endpoint.index(after: colon)...])
        }
    }

    /// ZMQ_EVENTS: whether a message can be received (`.readable`) or sent (`.writable`) now,
    /// without blocking. Reading it also processes pending commands, as libzmq documents.
    public var events: ZMQEvents { get throws(ZMQError) { ZMQEvents(rawValue: Int16(truncatingIfNeeded: try int32Option(ZMQ_EVENTS))) } }

    /// ZMQ_FD: a file descriptor that becomes readable when `events` may have changed, for an
    /// external event loop. Edge-triggered: after it signals, read `events` and receive until
    /// `.readable` is clear. Owned by libzmq: never read, write or close it.
    public var fileDescriptor: Int32 { get throws(ZMQError) { try int32Option(ZMQ_FD) } }

    /// ZMQ_RCVMORE: whether the part last received has more parts after it.
    public var hasMoreParts: Bool { get throws(ZMQError) { try int32Option(ZMQ_RCVMORE) != 0 } }

    // MARK: zmq_getsockopt, once per C type

    func int32Option(_ name: Int32) throws(ZMQError) -> Int32 {
        let handle = try openHandle()
        var value: Int32 = 0
        var size = MemoryLayout<Int32>.size
        try zmqCall("zmq_getsockopt(\(name))") { zmq_getsockopt(handle, name, &value, &size) }
        return value
    }

    func int64Option(_ name: Int32) throws(ZMQError) -> Int64 {
        let handle = try openHandle()
        var value: Int64 = 0
        var size = MemoryLayout<Int64>.size
        try zmqCall("zmq_getsockopt(\(name))") { zmq_getsockopt(handle, name, &value, &size) }
        return value
    }

    func bytesOption(_ name: Int32, capacity: Int) throws(ZMQError) -> [UInt8] {
        let handle = try openHandle()
        var buffer = [UInt8](repeating: 0, count: capacity)
        var size = capacity
        try zmqCall("zmq_getsockopt(\(name))") {
            buffer.withUnsafeMutableBytes { zmq_getsockopt(handle, name, $0.baseAddress, &size) }
        }
        return Array(buffer.prefix(size))
    }
}
