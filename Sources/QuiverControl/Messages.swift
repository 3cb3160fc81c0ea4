/// A command request as the client sends it: the JSON body of frame 1 (docs/control.md).
///
/// `parse(body:)` validates every field; a request built in code is checked the same way when
/// the server parses its body.
public struct CommandRequest: Sendable, Equatable {
    /// Chosen by the client (1...64 UTF-8 bytes); the reply carries it back.
    public var id: String
    /// The client's id (1...64 of [A-Za-z0-9._-]): the owner of its interactions, locks and
    /// state, and the key of its rate limit and session.
    public var client: String
    /// 16...64 hex characters, never reused by this client within the replay window (compared
    /// case-insensitively).
    public var nonce: String
    /// The client's clock when it sent the request, UNIX seconds.
    public var time: Double
    /// The command name, such as `play` or `interaction.set`.
    public var command: String
    /// The command's arguments (an empty object when absent).
    public var args: [String: JSONValue]

    public init(id: String, client: String, nonce: String, time: Double, command: String, args: [String: JSONValue] = [:]) {
        self.id = id
        self.client = client
        self.nonce = nonce
        self.time = time
        self.command = command
        self.args = args
    }

    /// The fields a body may have.
    public static let fields: Set<String> = ["id", "client", "nonce", "time", "command", "args"]

    /// The JSON body (deterministic; `args` omitted when empty).
    public var body: [UInt8] {
        var object: [String: JSONValue] = [
            "id": .string(id), "client": .string(client), "nonce": .string(nonce),
            "time": .number(time), "command": .string(command),
        ]
        if !args.isEmpty { object["args"] = .object(args) }
        return JSONValue.object(object).encoded()
    }

    /// The frames a client sends: `[body, HMAC-SHA256(key, body)]`.
    public func frames(signedWith signer: CommandSigner) -> [[UInt8]] {
        let body = self.body
        return [body, signer.signature(for: body)]
    }

    /// Parses and validates a body (the signature is checked elsewhere, before this).
    /// - Throws: `malformed` naming the first problem; `requestID` is set once the id was read.
    public static func parse(body: [UInt8]) throws(ControlError) -> CommandRequest {
        guard case .object(let object) = try JSONValue.parse(body) else {
            throw .malformed("the body must be a JSON object")
        }
        guard case .string(let id)? = object["id"] else { throw .malformed("field 'id' must be a string") }
        guard ControlDefaults.idBytes.contains(id.utf8.count) else {
            throw .malformed("field 'id' must be \(ControlDefaults.idBytes.lowerBound)...\(ControlDefaults.idBytes.upperBound) bytes, got \(id.utf8.count)")
        }
        if let unknown = object.keys.sorted().first(where: { !fields.contains($0) }) {
            throw .malformed("unknown field '\(unknown)'", id: id)
        }
        guard case .string(let client)? = object["client"], isValidClientID(client) else {
            throw .malformed("field 'client' must be a string of 1...64 characters [A-Za-z0-9._-]", id: id)
        }
        guard case .string(let nonce)? = object["nonce"], ControlDefaults.nonceLength.contains(nonce.utf8.count), Hex.isHex(nonce) else {
            throw .malformed("field 'nonce' must be a string of 16...64 hex characters", id: id)
        }
        guard case .number(let time)? = object["time"], time.isFinite else {
            throw .malformed("field 'time' must be a number (UNIX seconds)", id: id)
        }
        guard case .string(let command)? = object["command"], ControlDefaults.commandBytes.contains(command.utf8.count) else {
            throw .malformed("field 'command' must be a string of 1...64 bytes", id: id)
        }
        var args: [String: JSONValue] = [:]
        switch object["args"] {
        case nil: break
        case .object(let a)?: args = a
        case let other?: throw .malformed("field 'args' must be an object, got \(other.typeName)", id: id)
        }
        return CommandRequest(id: id, client: client, nonce: nonce, time: time, command: command, args: args)
    }

    /// Whether `client` is 1...64 characters of [A-Za-z0-9._-].
    public static func isValidClientID(_ client: String) -> Bool {
        ControlDefaults.clientIDLength.contains(client.utf8.count) && client.utf8.allSatisfy { c in
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
    }

    /// A fresh nonce: 16 random bytes as 32 hex characters (libsodium's CSPRNG).
    public static func randomNonce() -> String { Hex.encode(Sodium.randomBytes(16)) }
}

/// A reply: the JSON body of frame 1 (docs/control.md), `{"id", "ok": true, "result"}` or
/// `{"id", "ok": false, "error": {"code", "message"}}`, signed like a request.
public struct CommandReply: Sendable, Equatable {
    /// The id of the request answered; nil (JSON null) when the server could not read it (the
    /// request was too large, unsigned or wrongly signed).
    public var id: String?
    public var outcome: Result<JSONValue, ControlError>

    public init(id: String?, outcome: Result<JSONValue, ControlError>) {
        self.id = id
        self.outcome = outcome
    }

    /// A success.
    public static func success(id: String?, _ result: JSONValue = .null) -> CommandReply {
        CommandReply(id: id, outcome: .success(result))
    }

    /// A failure; the id defaults to the error's `requestID`.
    public static func failure(id: String?? = nil, _ error: ControlError) -> CommandReply {
        CommandReply(id: id ?? error.requestID, outcome: .failure(error))
    }

    public var isOK: Bool { if case .success = outcome { return true } else { return false } }
    /// The result of a success, else nil.
    public var result: JSONValue? { if case .success(let r) = outcome { return r } else { return nil } }
    /// The error of a failure, else nil.
    public var error: ControlError? { if case .failure(let e) = outcome { return e } else { return nil } }
    /// The result, or the error thrown.
    public func get() throws(ControlError) -> JSONValue {
        switch outcome {
        case .success(let r): return r
        case .failure(let e): throw e
        }
    }

    /// The JSON body (deterministic).
    public var json: JSONValue {
        let idValue: JSONValue = id.map { .string($0) } ?? .null
        switch outcome {
        case .success(let result):
            return ["id": idValue, "ok": true, "result": result]
        case .failure(let error):
            return ["id": idValue, "ok": false, "error": ["code": .string(error.code.rawValue), "message": .string(error.message)]]
        }
    }

    public var body: [UInt8] { json.encoded() }

    /// The frames a server sends after the client's routing id: `[body, HMAC-SHA256(key, body)]`.
    public func frames(signedWith signer: CommandSigner) -> [[UInt8]] {
        let body = self.body
        return [body, signer.signature(for: body)]
    }

    /// Checks the signature of reply frames, then parses the body.
    /// - Throws: `malformed` (not two frames, not a reply), `bad_signature` (wrong or missing).
    public static func decode(frames: [[UInt8]], verifyingWith signer: CommandSigner) throws(ControlError) -> CommandReply {
        guard frames.count == 2 else { throw .malformed("a reply has 2 frames [body, signature], got \(frames.count)") }
        guard signer.isValid(signature: frames[1], for: frames[0]) else {
            throw ControlError(.badSignature, "the reply's signature does not match its body")
        }
        return try parse(body: frames[0])
    }

    /// Parses a reply body (no signature check).
    /// - Throws: `malformed`.
    public static func parse(body: [UInt8]) throws(ControlError) -> CommandReply {
        guard case .object(let object) = try JSONValue.parse(body) else { throw .malformed("a reply body must be a JSON object") }
        let id: String?
        switch object["id"] {
        case .string(let s)?: id = s
        case .null?, nil: id = nil
        default: throw .malformed("a reply's 'id' must be a string or null")
        }
        switch object["ok"] {
        case .bool(true)?:
            return .success(id: id, object["result"] ?? .null)
        case .bool(false)?:
            guard case .object(let e)? = object["error"], case .string(let codeText)? = e["code"] else {
                throw .malformed("a failed reply needs 'error': {'code', 'message'}")
            }
            let message = e["message"]?.stringValue ?? ""
            // A code this version does not know (a newer server) is kept in the message.
            guard let code = ControlErrorCode(rawValue: codeText) else {
                return .failure(id: id, ControlError(.internal, "\(codeText): \(message)", requestID: id))
            }
            return .failure(id: id, ControlError(code, message, requestID: id))
        default:
            throw .malformed("a reply's 'ok' must be true or false")
        }
    }
}
