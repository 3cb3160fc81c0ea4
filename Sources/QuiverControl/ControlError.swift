/// The error codes of the control channel, as they appear in a reply's `error.code`
/// (docs/control.md, "Error codes").
public enum ControlErrorCode: String, Sendable, CaseIterable, Codable {
    /// The message is not a well-formed request: wrong frame count, body too large, not JSON, a
    /// missing or ill-typed field.
    case malformed
    /// The request has no signature frame (or an empty one).
    case unsigned
    /// The signature is not HMAC-SHA256(key, body) (or not 32 bytes).
    case badSignature = "bad_signature"
    /// The request's `time` is further than the replay window from the server's clock.
    case stale
    /// The (client, nonce) pair was already used within the replay window.
    case replayed
    /// No such command.
    case unknownCommand = "unknown_command"
    /// An argument is unknown, missing, of the wrong type or out of range.
    case invalidArgument = "invalid_argument"
    /// The client sent more requests than its rate allows.
    case rateLimited = "rate_limited"
    /// A shared-state key is locked by another client.
    case locked
    /// The request is valid but the server will not do it now (a limit is reached, a feature is off).
    case refused
    /// The engine rejected or failed the operation.
    case engine
    /// The server did not answer in time (client side), or an internal wait expired (server side).
    case timeout
    /// The service cannot take the request now (overloaded, starting, stopping, a bounded table full).
    case unavailable
    /// The engine's command queue is full, or the engine took no command for the command timeout:
    /// the command was not applied and never will be, so sending it again is safe.
    case busy
    /// A bug or an unexpected failure in the server.
    case `internal`

    /// Lets `catch ControlErrorCode.locked` match a thrown `ControlError` with that code.
    public static func ~= (pattern: ControlErrorCode, value: any Error) -> Bool {
        (value as? ControlError)?.code == pattern
    }
}

/// The one error type of this module: a code a program acts on and a message for people.
///
/// `requestID` is the id of the request the error answers when it is known (it is not when the
/// body was too large, unsigned or wrongly signed: the server does not read an unauthenticated
/// body). It is part of the reply, not of the error's identity for callers.
public struct ControlError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: ControlErrorCode
    public var message: String
    /// The request id this error answers, when the server could read it from an authenticated body.
    public var requestID: String?

    public init(_ code: ControlErrorCode, _ message: String, requestID: String? = nil) {
        self.code = code
        self.message = message
        self.requestID = requestID
    }

    public var description: String { "\(code.rawValue): \(message)" }

    // Shorthands used throughout the module.
    static func malformed(_ message: String, id: String? = nil) -> ControlError { ControlError(.malformed, message, requestID: id) }
    static func invalidArgument(_ message: String) -> ControlError { ControlError(.invalidArgument, message) }
}
