import CZeroMQ
import Foundation

/// A libzmq socket.
///
/// **Not thread-safe, not `Sendable`.** Use a socket from one thread at a time; it may be handed
/// to another thread (created, then moved into a thread's closure), as libzmq allows with a full
/// memory barrier, which the hand-over provides. It keeps its context alive.
///
/// **Lifetime.** `close()` (or `deinit`) closes it (`zmq_close`); unsent messages are kept for the
/// `linger` period, during which context termination waits. Every call on a closed socket throws
/// `ZMQError.notSocket`.
///
/// **Waiting.** Each send and receive comes three ways:
/// - blocking (`send`, `receive`): waits as long as the socket's send/receive timeout option
///   allows (forever by default in libzmq; bounded in `ZMQDefaults.testSocketOptions`) and throws
///   `ZMQError.again` when it expires;
/// - non-blocking (`trySend` -> `false`, `tryReceive` -> `nil` when it would block: `ZMQ_DONTWAIT`);
/// - bounded (`send(_:timeout:)`, `receive(timeout:)`): polls up to the timeout; `false` / `nil`
///   when it expires.
/// Signals (EINTR) are retried internally; a blocking call with an infinite timeout then keeps
/// waiting, so loops that must notice a signal flag use the bounded variants.
public final class ZMQSocket {
    /// The socket types of libzmq 4.3 (stable ones).
    public enum SocketType: Int32, Sendable, CaseIterable {
        case pair = 0   // ZMQ_PAIR
        case pub = 1    // ZMQ_PUB
        case sub = 2    // ZMQ_SUB
        case req = 3    // ZMQ_REQ
        case rep = 4    // ZMQ_REP
        case dealer = 5 // ZMQ_DEALER
        case router = 6 // ZMQ_ROUTER
        case pull = 7   // ZMQ_PULL
        case push = 8   // ZMQ_PUSH
        case xpub = 9   // ZMQ_XPUB
        case xsub = 10  // ZMQ_XSUB
    }

    /// The context this socket belongs to (kept alive by the socket).
    public let context: ZMQContext
    /// The socket type.
    public let type: SocketType
    /// nil once closed.
    private var handle: UnsafeMutableRawPointer?

    /// Creates a socket and applies `options` in order (the project defaults unless told
    /// otherwise; pass `[]` for libzmq's own, or add to the defaults:
    /// `ZMQDefaults.socketOptions + [.subscribe([])]`).
    /// - Throws: `ZMQError.terminated` if the context is closed or shut down, `.tooManyOpenFiles`
    ///   at the context's socket limit, `.invalidArgument` for an option the type does not take.
    public init(context: ZMQContext, type: SocketType,
                options: [ZMQSocketOption] = ZMQDefaults.socketOptions) throws(ZMQError) {
        self.context = context
        self.type = type
        handle = try context.withHandle { (contextHandle) throws(ZMQError) in
            try zmqCall("zmq_socket") { zmq_socket(contextHandle, type.rawValue) }
        }
        do throws(ZMQError) {
            try set(options)
        } catch {
            close()
            throw error
        }
    }

    deinit {
        close()
    }

    /// Closes the socket (`zmq_close`). Pending outgoing messages stay for the linger period.
    /// Idempotent.
    public func close() {
        guard let handle else { return }
        self.handle = nil
        _ = zmq_close(handle)  // fails only with ENOTSOCK, which an open handle never is
    }

    /// Whether `close()` has been called.
    public var isClosed: Bool { handle == nil }

    /// The open handle, or `ZMQError.notSocket` once closed.
    func openHandle() throws(ZMQError) -> UnsafeMutableRawPointer {
        guard let handle else { throw ZMQError(code: ZMQError.notSocket.code, operation: "ZMQSocket (closed)") }
        return handle
    }

    // MARK: - Endpoints

    /// Binds to `endpoint` (`tcp://127.0.0.1:5555`, `tcp://127.0.0.1:*` for any free port,
    /// `ipc:///path`, `inproc://name`) and returns the endpoint as bound (the port filled in).
    /// An `ipc://` bind replaces a socket file already at that path (libzmq unlinks it first).
    /// - Throws: `.addressInUse` (port taken), `.invalidArgument` (malformed endpoint),
    ///   `.protocolNotSupported` (unknown transport), `.noDevice` (no such interface),
    ///   `.addressNotAvailable` (not a local address), `.nameTooLong` (ipc path too long).
    @discardableResult
    public func bind(_ endpoint: String) throws(ZMQError) -> String {
        let handle = try openHandle()
        try zmqCall("zmq_bind(\(endpoint))") { zmq_bind(handle, endpoint) }
        return try lastEndpoint
    }

    /// Connects to `endpoint`. Asynchronous: the connection is made (and remade after a drop) in
    /// the background; messages queue meanwhile unless `immediate` is set.
    /// - Throws: `.invalidArgument` or `.protocolNotSupported` for a malformed endpoint.
    public func connect(_ endpoint: String) throws(ZMQError) {
        let handle = try openHandle()
        try zmqCall("zmq_connect(\(endpoint))") { zmq_connect(handle, endpoint) }
    }

    /// Stops listening on an endpoint returned by `bind` (use the resolved form, not `*`).
    /// - Throws: `.noSuchEndpoint` if it is not bound.
    public func unbind(_ endpoint: String) throws(ZMQError) {
        let handle = try openHandle()
        try zmqCall("zmq_unbind(\(endpoint))") { zmq_unbind(handle, endpoint) }
    }

    /// Disconnects from an endpoint given to `connect`.
    /// - Throws: `.noSuchEndpoint` if it is not connected.
    public func disconnect(_ endpoint: String) throws(ZMQError) {
        let handle = try openHandle()
        try zmqCall("zmq_disconnect(\(endpoint))") { zmq_disconnect(handle, endpoint) }
    }

    /// Subscribes a SUB socket to messages whose first part starts with `prefix` (empty: all).
    public func subscribe(_ prefix: [UInt8] = []) throws(ZMQError) { try set(.subscribe(prefix)) }
    /// Subscribes to a UTF-8 topic prefix.
    public func subscribe(_ prefix: String) throws(ZMQError) { try set(.subscribe(Array(prefix.utf8))) }
    /// Removes one subscription to `prefix`.
    public func unsubscribe(_ prefix: [UInt8] = []) throws(ZMQError) { try set(.unsubscribe(prefix)) }
    /// Removes one subscription to a UTF-8 topic prefix.
    public func unsubscribe(_ prefix: String) throws(ZMQError) { try set(.unsubscribe(Array(prefix.utf8))) }

    // MARK: - Sending

    /// Sends one part, copied into a new libzmq message (`zmq_send`); `more: true` announces
    /// further parts of the same message. Blocks while the socket cannot queue it (HWM reached
    /// on PUSH, DEALER, REQ, ...; PUB and ROUTER drop instead), up to the send timeout.
    /// - Throws: `.again` when the send timeout expired, `.invalidState` out of turn (REQ/REP),
    ///   `.notSupported` (e.g. SUB), `.hostUnreachable` (ROUTER with `routerMandatory`),
    ///   `.terminated` after context shutdown.
    public func send<Bytes: ContiguousBytes>(_ bytes: Bytes, more: Bool = false) throws(ZMQError) {
        guard try sendPart(bytes, flags: more ? ZMQ_SNDMORE : 0) else { throw timedOut("zmq_send") }
    }

    /// As `send`, without blocking (`ZMQ_DONTWAIT`): `false` if the part could not be queued now.
    public func trySend<Bytes: ContiguousBytes>(_ bytes: Bytes, more: Bool = false) throws(ZMQError) -> Bool {
        try sendPart(bytes, flags: ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0))
    }

    /// As `send`, waiting at most `timeout` for room: `false` if it expired.
    public func send<Bytes: ContiguousBytes>(_ bytes: Bytes, more: Bool = false, timeout: ZMQTimeout) throws(ZMQError) -> Bool {
        try retry(until: timeout, waitingFor: .writable) { () throws(ZMQError) in try trySend(bytes, more: more) }
    }

    /// Sends a multipart message (each part copied); all parts are delivered or none.
    /// - Throws: as `send`; `.invalidArgument` for an empty list.
    public func sendMultipart<Part: ContiguousBytes>(_ parts: [Part]) throws(ZMQError) {
        guard try sendParts(parts, flags: 0) else { throw timedOut("zmq_send") }
    }

    /// As `sendMultipart`, without blocking: `false` if the message could not be queued now
    /// (nothing is sent then).
    public func trySendMultipart<Part: ContiguousBytes>(_ parts: [Part]) throws(ZMQError) -> Bool {
        try sendParts(parts, flags: ZMQ_DONTWAIT)
    }

    /// As `sendMultipart`, waiting at most `timeout` for room: `false` if it expired.
    public func sendMultipart<Part: ContiguousBytes>(_ parts: [Part], timeout: ZMQTimeout) throws(ZMQError) -> Bool {
        try retry(until: timeout, waitingFor: .writable) { () throws(ZMQError) in try trySendMultipart(parts) }
    }

    /// Sends a `ZMQMessage` without copying its bytes; libzmq takes its buffer. If it throws, the
    /// message is closed (dropped); `trySend(_:more:)` keeps an unsent message instead.
    public func send(_ message: consuming ZMQMessage, more: Bool = false) throws(ZMQError) {
        guard try sendMessage(message, flags: more ? ZMQ_SNDMORE : 0) else { throw timedOut("zmq_msg_send") }
    }

    /// As `send(_:more:)` for a `ZMQMessage`, without blocking. `true`: queued, and `message` is
    /// now empty; `false`: not queued, `message` unchanged (retry or drop it).
    public func trySend(_ message: inout ZMQMessage, more: Bool = false) throws(ZMQError) -> Bool {
        try sendMessage(message, flags: ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0))
    }

    private func sendPart<Bytes: ContiguousBytes>(_ bytes: Bytes, flags: Int32) throws(ZMQError) -> Bool {
        let handle = try openHandle()
        return try zmqCallUnlessAgain("zmq_send") {
            bytes.withUnsafeBytes { zmq_send(handle, $0.baseAddress, $0.count, flags) }
        } != nil
    }

    private func sendParts<Part: ContiguousBytes>(_ parts: [Part], flags: Int32) throws(ZMQError) -> Bool {
        guard !parts.isEmpty else { throw ZMQError(code: ZMQError.invalidArgument.code, operation: "sendMultipart (no parts)") }
        for (i, part) in parts.enumerated() {
            let more = i < parts.count - 1 ? ZMQ_SNDMORE : 0
            if try sendPart(part, flags: flags | more) { continue }
            // libzmq applies the high-water mark to whole messages, so only the first part can
            // fail to queue; later parts always follow it.
            if i == 0 { return false }
            throw ZMQError(code: ZMQError.again.code, operation: "zmq_send (part \(i) of a multipart message)")
        }
        return true
    }

    /// `zmq_msg_send`: on success libzmq empties the message; on failure it is left as it was.
    private func sendMessage(_ message: borrowing ZMQMessage, flags: Int32) throws(ZMQError) -> Bool {
        let handle = try openHandle()
        return try zmqCallUnlessAgain("zmq_msg_send") { zmq_msg_send(message.pointer, handle, flags) } != nil
    }

    // MARK: - Receiving

    /// Receives one part, copied into an array. Blocks up to the receive timeout.
    /// - Throws: `.again` when the receive timeout expired, `.invalidState` out of turn,
    ///   `.notSupported` (e.g. PUB), `.terminated` after context shutdown.
    public func receive() throws(ZMQError) -> [UInt8] {
        var message = ZMQMessage()
        guard try receivePart(into: &message, flags: 0) else { throw timedOut("zmq_msg_recv") }
        return message.bytes
    }

    /// As `receive`, without blocking: `nil` if no message is waiting.
    public func tryReceive() throws(ZMQError) -> [UInt8]? {
        var message = ZMQMessage()
        guard try receivePart(into: &message, flags: ZMQ_DONTWAIT) else { return nil }
        return message.bytes
    }

    /// As `receive`, waiting at most `timeout`: `nil` if it expired.
    public func receive(timeout: ZMQTimeout) throws(ZMQError) -> [UInt8]? {
        var result: [UInt8]?
        guard try retry(until: timeout, waitingFor: .readable, { () throws(ZMQError) in
            result = try tryReceive()
            return result != nil
        }) else { return nil }
        return result
    }

    /// Receives every part of the next message. Blocks up to the receive timeout.
    public func receiveMultipart() throws(ZMQError) -> [[UInt8]] {
        guard let parts = try receiveParts(flags: 0) else { throw timedOut("zmq_msg_recv") }
        return parts
    }

    /// As `receiveMultipart`, without blocking: `nil` if no message is waiting.
    public func tryReceiveMultipart() throws(ZMQError) -> [[UInt8]]? {
        try receiveParts(flags: ZMQ_DONTWAIT)
    }

    /// As `receiveMultipart`, waiting at most `timeout`: `nil` if it expired.
    public func receiveMultipart(timeout: ZMQTimeout) throws(ZMQError) -> [[UInt8]]? {
        var result: [[UInt8]]?
        guard try retry(until: timeout, waitingFor: .readable, { () throws(ZMQError) in
            result = try tryReceiveMultipart()
            return result != nil
        }) else { return nil }
        return result
    }

    /// Receives one part without copying it. Check `hasMore` for further parts. Blocks up to the
    /// receive timeout.
    public func receiveMessage() throws(ZMQError) -> ZMQMessage {
        var message = ZMQMessage()
        guard try receivePart(into: &message, flags: 0) else { throw timedOut("zmq_msg_recv") }
        return message
    }

    /// Receives one part into `message` (its old content is released) without blocking and
    /// without copying: `false` if nothing is waiting.
    public func tryReceive(into message: inout ZMQMessage) throws(ZMQError) -> Bool {
        try receivePart(into: &message, flags: ZMQ_DONTWAIT)
    }

    /// Receives one part into `message` without copying, waiting at most `timeout`: `false` if
    /// it expired.
    public func receive(into message: inout ZMQMessage, timeout: ZMQTimeout) throws(ZMQError) -> Bool {
        try retry(until: timeout, waitingFor: .readable) { () throws(ZMQError) in try tryReceive(into: &message) }
    }

    /// Latest-frame receive for multipart messages (which `conflate` cannot handle): waits at
    /// most `timeout` for a message, then takes every message already queued and returns only
    /// the newest (the older ones are dropped); `nil` if none came. It skips what reached this
    /// socket's queue; it cannot skip what still waits in the publisher's queue, so keep the
    /// receive high-water mark large enough for the messages that arrive between two reads
    /// (with a high-water mark of 1 the publisher drops the *newest* messages instead).
    /// See docs/zmq.md.
    public func receiveLatestMultipart(timeout: ZMQTimeout) throws(ZMQError) -> [[UInt8]]? {
        guard var latest = try receiveMultipart(timeout: timeout) else { return nil }
        while let newer = try tryReceiveMultipart() { latest = newer }
        return latest
    }

    private func receivePart(into message: inout ZMQMessage, flags: Int32) throws(ZMQError) -> Bool {
        let handle = try openHandle()
        return try zmqCallUnlessAgain("zmq_msg_recv") { zmq_msg_recv(message.pointer, handle, flags) } != nil
    }

    private func receiveParts(flags: Int32) throws(ZMQError) -> [[UInt8]]? {
        var message = ZMQMessage()
        guard try receivePart(into: &message, flags: flags) else { return nil }
        var parts = [message.bytes]
        while message.hasMore {
            // Messages arrive whole, so the remaining parts are already queued.
            guard try receivePart(into: &message, flags: ZMQ_DONTWAIT) else {
                throw ZMQError(code: ZMQError.again.code, operation: "zmq_msg_recv (part \(parts.count) of a multipart message)")
            }
            parts.append(message.bytes)
        }
        return parts
    }

    // MARK: - Waiting

    /// Waits at most `timeout` until one of `events` is ready on this socket (`zmq_poll`);
    /// returns the ready events (empty if the timeout expired).
    public func poll(_ events: ZMQEvents = .readable, timeout: ZMQTimeout) throws(ZMQError) -> ZMQEvents {
        try ZMQ.poll([.socket(self, events)], timeout: timeout)[0]
    }

    /// Calls `attempt` (a non-blocking operation) until it succeeds or `timeout` expires,
    /// polling for `events` in between. Returns whether it succeeded.
    private func retry(until timeout: ZMQTimeout, waitingFor events: ZMQEvents,
                       _ attempt: () throws(ZMQError) -> Bool) throws(ZMQError) -> Bool {
        let deadline = ZMQDeadline(timeout)
        while true {
            if try attempt() { return true }
            guard let remaining = deadline.remaining else { return false }
            _ = try poll(events, timeout: remaining)
        }
    }

    private func timedOut(_ operation: String) -> ZMQError {
        ZMQError(code: ZMQError.again.code, operation: "\(operation) (timed out)")
    }
}

/// A socket is used from one thread at a time (see `ZMQSocket`).
@available(*, unavailable)
extension ZMQSocket: Sendable {}

/// A point in time a bounded wait ends at (`nil` instant: never).
struct ZMQDeadline {
    private let end: ContinuousClock.Instant?

    init(_ timeout: ZMQTimeout) {
        switch timeout {
        case .infinite: end = nil
        case .after(let duration): end = ContinuousClock.now.advanced(by: max(duration, .zero))
        }
    }

    /// The time left (`.infinite` for no deadline); `nil` once it has passed.
    var remaining: ZMQTimeout? {
        guard let end else { return .infinite }
        let left = ContinuousClock.now.duration(to: end)
        return left > .zero ? .after(left) : nil
    }
}
