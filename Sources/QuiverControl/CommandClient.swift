import Foundation
import QuiverZMQ

/// A client of the control channel: sends signed commands over a DEALER socket and waits for the
/// signed reply (docs/control.md).
///
/// One request at a time: `send` returns when the reply with the request's id arrives (or with
/// a null id, which the server uses when it could not read the id: see `CommandReply.id`), and
/// drops replies to earlier requests that timed out. Not thread-safe (it owns a socket); use it
/// from one thread at a time.
public final class CommandClient {
    public let clientID: String
    public let timeout: Duration
    public let endpoint: String
    private let signer: CommandSigner
    private let context: ZMQContext
    private let ownsContext: Bool
    private let socket: ZMQSocket
    private var counter: UInt64 = 0

    /// Connects a DEALER (linger 0) to `endpoint`. The connection is made in the background: a
    /// server that is not up yet is reached when it comes up, within the timeout of each `send`.
    /// - Parameters:
    ///   - keyHex: the `key` of the run's connection.json.
    ///   - clientID: 1...64 of [A-Za-z0-9._-]; default a random `client-<16 hex>`.
    ///   - timeout: how long `send` waits for a reply.
    ///   - context: a context to share (default: the client makes and owns one).
    /// - Throws: `ControlError` `invalid_argument` for a malformed key or client id; `ZMQError`
    ///   when the socket cannot be made or the endpoint is malformed.
    public init(endpoint: String, keyHex: String, clientID: String? = nil,
                timeout: Duration = ControlDefaults.clientTimeout, context: ZMQContext? = nil) throws {
        signer = try CommandSigner(keyHex: keyHex)
        let id = clientID ?? "client-" + Hex.encode(Sodium.randomBytes(8))
        guard CommandRequest.isValidClientID(id) else {
            throw ControlError(.invalidArgument, "client id must be 1...64 characters of [A-Za-z0-9._-]")
        }
        self.clientID = id
        self.timeout = timeout
        self.endpoint = endpoint
        if let context {
            self.context = context
            ownsContext = false
        } else {
            self.context = try ZMQContext()
            ownsContext = true
        }
        do {
            socket = try self.context.socket(.dealer, options: ControlDefaults.clientSocketOptions)
            try socket.connect(endpoint)
        } catch {
            if ownsContext { self.context.close() }
            throw error
        }
    }

    deinit {
        close()
    }

    /// Closes the socket (and the context when the client made it). Idempotent.
    public func close() {
        socket.close()
        if ownsContext { context.close() }
    }

    /// Sends `command` with `args`, signed, with a fresh random nonce and the current time, and
    /// waits for its reply.
    /// - Returns: the reply; a failure reply (`ok: false`) is returned, not thrown (`reply.get()`
    ///   throws it).
    /// - Throws: `ControlError` `timeout` (no reply within the timeout), `bad_signature` (a reply
    ///   not signed with the key), `malformed` (a reply that is not one); `ZMQError` from the socket.
    public func send(_ command: String, args: [String: JSONValue] = [:]) throws -> CommandReply {
        let request = makeRequest(command, args: args)
        return try exchange(request.frames(signedWith: signer), id: request.id)
    }

    /// The request `send` would send (a fresh id and nonce, the current time), for tests that
    /// alter it before signing.
    public func makeRequest(_ command: String, args: [String: JSONValue] = [:]) -> CommandRequest {
        counter += 1
        return CommandRequest(id: "\(counter)-" + Hex.encode(Sodium.randomBytes(4)), client: clientID,
                              nonce: CommandRequest.randomNonce(), time: Date().timeIntervalSince1970,
                              command: command, args: args)
    }

    /// Signs `request` with this client's key: `[body, signature]`.
    public func sign(_ request: CommandRequest) -> [[UInt8]] { request.frames(signedWith: signer) }

    /// Sends `frames` as they are (unsigned, tampered, replayed: for tests) and waits for the next
    /// reply whatever its id, checking its signature.
    /// - Throws: as `send`.
    public func sendRaw(frames: [[UInt8]]) throws -> CommandReply {
        try exchange(frames, id: nil)
    }

    /// Sends, then waits until `timeout` for a reply to `id` (any reply when nil).
    private func exchange(_ frames: [[UInt8]], id: String?) throws -> CommandReply {
        let start = ContinuousClock.now
        let deadline = start.advanced(by: timeout)
        // Replies to earlier requests that timed out may be waiting: drop them.
        while try socket.tryReceiveMultipart() != nil {}
        guard try socket.sendMultipart(frames, timeout: .after(timeout)) else {
            throw ControlError(.timeout, "could not queue the request within \(timeout) (no connection to \(endpoint))", requestID: id)
        }
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero, let replyFrames = try socket.receiveMultipart(timeout: .after(left)) else {
                throw ControlError(.timeout, "no reply within \(timeout) from \(endpoint)", requestID: id)
            }
            let reply = try CommandReply.decode(frames: replyFrames, verifyingWith: signer)
            if id == nil || reply.id == nil || reply.id == id { return reply }
            // A late reply to an earlier request: keep waiting for ours.
        }
    }
}
