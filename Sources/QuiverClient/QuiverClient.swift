import Foundation
import QuiverModel
import QuiverWire
import QuiverZMQ

/// A client of a Quiver run: connects from the run's `connection.json`, receives and decodes
/// frames (latest-frame semantics: a slow client gets the newest frame, never a backlog) and the
/// topology, measures latency, pings the heartbeat worker and asks it for the run's health.
///
/// Not thread-safe: use one client from one thread. It owns its own ZeroMQ context.
public final class QuiverClient {
    public enum Transport: String, Sendable { case tcp, ipc }

    /// A decoded frame with when it arrived and how long it took from the engine.
    public struct Received: Sendable {
        public let frame: Frame
        /// The topology of this frame's system: the newest one, or the one before it for a frame of
        /// the previous system still in flight when the server showed another (told apart by the
        /// atom count).
        public let topology: Topology?
        /// Seconds since the Unix epoch when it was decoded here.
        public let receivedAt: Double
        /// Engine publication to decoded here, seconds (same-machine clocks), when the frame says.
        public var latency: Double? { frame.publishedAt.map { receivedAt - $0 } }
    }

    public let connection: ConnectionInfo
    public let transport: Transport
    public private(set) var topology: Topology?
    private var previousTopology: Topology?
    private let context: ZMQContext
    private let frames: ZMQSocket
    private let topologySocket: ZMQSocket
    private var heartbeat: ZMQSocket?
    private let limits: DecodeLimits

    /// Connects to the run described by `connectionFile`. Throws when the file is unreadable or a
    /// socket cannot be created.
    public init(connectionFile: String, transport: Transport = .tcp, limits: DecodeLimits = .default) throws {
        connection = try ConnectionInfo.read(from: connectionFile)
        self.transport = transport
        self.limits = limits
        guard let endpoint = connection.endpoints[transport == .tcp ? "frames" : "frames-ipc"] else {
            throw ZMQError(code: ZMQError.invalidArgument.code, operation: "connection file has no \(transport.rawValue) frames endpoint")
        }
        context = try ZMQContext()
        // Frames: one message each, conflated, so the newest one waits and older ones are dropped.
        frames = try context.socket(.sub, options: ZMQDefaults.socketOptions + [.conflate(true)])
        try frames.subscribe(MessageKind.frame.subscriptionPrefix)
        try frames.connect(endpoint)
        // Topology: rare, never conflated with frames, so it is not lost behind them.
        topologySocket = try context.socket(.sub, options: ZMQDefaults.socketOptions)
        try topologySocket.subscribe(MessageKind.topology.subscriptionPrefix)
        try topologySocket.connect(endpoint)
        pollItems = [.socket(frames), .socket(topologySocket)]
    }

    deinit {
        frames.close()
        topologySocket.close()
        heartbeat?.close()
        context.close()
    }

    /// The newest frame that arrived, waiting up to `timeout` seconds; nil on timeout. Topology
    /// messages that arrived meanwhile update `topology`. Throws `WireError` for a malformed frame.
    public func nextFrame(timeout: Double) throws -> Received? {
        try nextNewFrame(timeout: timeout, decode: { (bytes, limits) throws(WireError) in try FrameDecoder.decode(bytes, limits: limits) },
                         index: \.index) { frame in
            // Another system is shown (an embedding session's `show`): its topology is sent just
            // before its first frame, on the other subscription, so it may arrive before or after
            // the frames around it.
            var matching = topology
            if let t = topology, t.atomCount != frame.atomCount {
                if let p = previousTopology, p.atomCount == frame.atomCount {
                    matching = p
                } else {
                    try awaitTopology(timeout: topologyGrace) { $0.atomCount == frame.atomCount }
                    matching = topology
                }
            }
            return Received(frame: frame, topology: matching, receivedAt: SystemClock.realtimeSeconds)
        }
    }

    /// Index of the last frame delivered (to drop the repeat a late subscription's greeting can cause).
    private var lastIndex: UInt64?

    /// The last message received, read in place (no copy of the frame's bytes).
    private var message = ZMQMessage()

    /// What `nextMessage` waits on: frames, then topology.
    private let pollItems: [ZMQPollItem]

    /// Like `nextFrame`, but decodes only the header and scalar fields (checksum verified): for
    /// following a stream cheaply (monitoring, delivery benchmarks). Returns the summary and when
    /// it arrived (seconds since the Unix epoch).
    public func nextSummary(timeout: Double) throws -> (summary: FrameDecoder.Summary, receivedAt: Double)? {
        try nextNewFrame(timeout: timeout, decode: { (bytes, limits) throws(WireError) in try FrameDecoder.summary(bytes, limits: limits) },
                         index: \.index) { ($0, SystemClock.realtimeSeconds) }
    }

    /// The one receive path of `nextFrame` and `nextSummary`: waits up to `timeout` seconds for a
    /// frame message, decodes it in place with `decode`, skips a repeat of the frame delivered last
    /// (the greeting a subscription triggers can repeat it) and hands the rest to `deliver`.
    private func nextNewFrame<Decoded, Delivered>(timeout: Double,
                                                  decode: (UnsafeRawBufferPointer, DecodeLimits) throws(WireError) -> Decoded,
                                                  index: (Decoded) -> UInt64,
                                                  deliver: (Decoded) throws -> Delivered) throws -> Delivered? {
        let deadline = SystemClock.monotonicSeconds + timeout
        repeat {
            guard try nextMessage(timeout: max(0, deadline - SystemClock.monotonicSeconds)) else { return nil }
            let limits = limits
            let decoded = try message.withUnsafeBytes { (bytes) throws(WireError) in try decode(bytes, limits) }
            if index(decoded) == lastIndex { continue }
            lastIndex = index(decoded)
            return try deliver(decoded)
        } while SystemClock.monotonicSeconds < deadline
        return nil
    }

    /// Waits up to `timeout` seconds for a frame message and receives it into `message`.
    private func nextMessage(timeout: Double) throws -> Bool {
        let deadline = SystemClock.monotonicSeconds + timeout
        repeat {
            let remaining = max(0, deadline - SystemClock.monotonicSeconds)
            let ready = try ZMQ.poll(pollItems, timeout: .milliseconds(Int(min(remaining, 0.05) * 1000)))
            // The topology first: another system's is sent just before its first frame. zmq_poll
            // reports what is already queued, so a quiet socket costs no receive call per frame.
            if ready[1].contains(.readable) { drainTopology() }
            if ready[0].contains(.readable), try frames.tryReceive(into: &message) {
                if topology == nil { try awaitTopology(timeout: topologyGrace) }
                return true
            }
        } while SystemClock.monotonicSeconds < deadline
        drainTopology()
        return false
    }

    /// How long the first frame waits for the topology, which the publisher sends just before it
    /// but on another subscription: a late joiner gets both at once.
    public var topologyGrace = 0.5

    private func awaitTopology(timeout: Double, until matches: (Topology) -> Bool = { _ in true }) throws {
        let deadline = SystemClock.monotonicSeconds + timeout
        while !(topology.map(matches) ?? false) && SystemClock.monotonicSeconds < deadline {
            _ = try topologySocket.poll(.readable, timeout: .milliseconds(10))
            drainTopology()
        }
    }

    private func drainTopology() {
        while let bytes = try? topologySocket.tryReceive() {
            if let t = try? TopologyDecoder.decode(bytes, limits: limits), t != topology {
                if topology != nil { previousTopology = topology }
                topology = t
            }
        }
    }

    private func heartbeatSocket() throws -> ZMQSocket {
        if let heartbeat { return heartbeat }
        guard let endpoint = connection.endpoints[transport == .tcp ? "heartbeat" : "heartbeat-ipc"] else {
            throw ZMQError(code: ZMQError.invalidArgument.code, operation: "connection file has no heartbeat endpoint")
        }
        let s = try context.socket(.req, options: ZMQDefaults.socketOptions)
        try s.connect(endpoint)
        heartbeat = s
        return s
    }

    /// Sends a request to the heartbeat worker and waits up to `timeout` seconds for the reply.
    /// A REQ socket that timed out is reset so the next request works.
    private func request(_ body: [UInt8], timeout: Double) throws -> [UInt8]? {
        let s = try heartbeatSocket()
        try s.send(body)
        if let reply = try s.receive(timeout: .milliseconds(Int(timeout * 1000))) { return reply }
        s.close()
        heartbeat = nil
        return nil
    }

    /// Round trip of a ping to the heartbeat worker, seconds; nil when it did not answer in time.
    public func ping(timeout: Double = 1) throws -> Double? {
        let payload = Array("ping \(UInt64.random(in: 0...UInt64.max))".utf8)
        let start = SystemClock.monotonicSeconds
        guard let reply = try request(payload, timeout: timeout), reply == payload else { return nil }
        return SystemClock.monotonicSeconds - start
    }

    /// The run's health summary (JSON from the heartbeat worker: every worker's pid, state,
    /// progress, restarts), or nil when it did not answer in time.
    public func health(timeout: Double = 1) throws -> String? {
        try request(Array("health".utf8), timeout: timeout).map { String(decoding: $0, as: UTF8.self) }
    }
}
