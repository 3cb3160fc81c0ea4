/// A shared-state message, as the server publishes it on the frames PUB socket: the multipart
/// message `["state", body]` with a JSON body (docs/control.md, "Shared state"):
///
///     {"kind":"snapshot","version":N,"values":{...},"locks":{key:{"owner":..,"expires_in":s}}}
///     {"kind":"delta","version":N,"base":M,"values":{key: value or null},"locks":{key: {...} or null}}
///
/// Lock ends travel as seconds from the moment of encoding (`expires_in`), since the server's and
/// the client's clocks differ; decoding turns them back into absolute times on the receiver's
/// clock. Locks already ended at encoding time are left out of a snapshot and sent as null
/// (unlocked) in a delta.
public enum StateMessage: Sendable, Equatable {
    case snapshot(StateSnapshot)
    case delta(StateDelta)

    /// The first frame (the PUB topic) of every shared-state message.
    public static let topic = "state"

    public var version: UInt64 {
        switch self {
        case .snapshot(let s): return s.version
        case .delta(let d): return d.version
        }
    }

    /// The body as a JSON value; `now` is the encoder's clock, for `expires_in`.
    public func json(now: Double) -> JSONValue {
        func lockJSON(_ lock: StateLock) -> JSONValue {
            ["owner": .string(lock.owner), "expires_in": .number(lock.expires - now)]
        }
        switch self {
        case .snapshot(let s):
            var locks: [String: JSONValue] = [:]
            for (key, lock) in s.locks where lock.isActive(at: now) { locks[key] = lockJSON(lock) }
            return ["kind": "snapshot", "version": .number(Double(s.version)),
                    "values": .object(s.values), "locks": .object(locks)]
        case .delta(let d):
            var locks: [String: JSONValue] = [:]
            for (key, lock) in d.locks {
                if let lock, lock.isActive(at: now) { locks[key] = lockJSON(lock) } else { locks[key] = .null }
            }
            return ["kind": "delta", "version": .number(Double(d.version)), "base": .number(Double(d.base)),
                    "values": .object(d.values), "locks": .object(locks)]
        }
    }

    /// The body: deterministic UTF-8 JSON.
    public func body(now: Double) -> [UInt8] { json(now: now).encoded() }

    /// The PUB message: `["state", body]`.
    public func frames(now: Double) -> [[UInt8]] { [Array(Self.topic.utf8), body(now: now)] }

    /// Decodes a PUB message `["state", body]`; `now` is the receiver's clock.
    /// - Throws: `malformed`.
    public static func decode(frames: [[UInt8]], now: Double) throws(ControlError) -> StateMessage {
        guard frames.count == 2, frames[0] == Array(topic.utf8) else {
            throw .malformed("a state message is [\"state\", body]")
        }
        return try decode(body: frames[1], now: now)
    }

    /// Decodes a body (also the `result` of `state.get`, which has the snapshot layout).
    /// - Throws: `malformed`.
    public static func decode(body: [UInt8], now: Double) throws(ControlError) -> StateMessage {
        try decode(json: JSONValue.parse(body), now: now)
    }

    /// Decodes a body already parsed.
    /// - Throws: `malformed`.
    public static func decode(json: JSONValue, now: Double) throws(ControlError) -> StateMessage {
        guard case .object(let o) = json, case .string(let kind)? = o["kind"] else {
            throw .malformed("a state message is an object with a 'kind'")
        }
        let version = try versionField(o, "version")
        guard case .object(let values)? = o["values"] else { throw .malformed("a state message needs 'values': {...}") }
        guard case .object(let lockObjects)? = o["locks"] else { throw .malformed("a state message needs 'locks': {...}") }
        var locks: [String: StateLock?] = [:]
        for (key, value) in lockObjects {
            if value.isNull { locks[key] = .some(nil); continue }
            guard case .string(let owner)? = value["owner"], case .number(let expiresIn)? = value["expires_in"] else {
                throw .malformed("lock of '\(key)' needs 'owner' and 'expires_in'")
            }
            locks[key] = StateLock(owner: owner, expires: now + expiresIn)
        }
        switch kind {
        case "snapshot":
            guard !values.values.contains(where: \.isNull), !locks.values.contains(where: { $0 == nil }) else {
                throw .malformed("a snapshot has no null values or locks")
            }
            return .snapshot(StateSnapshot(version: version, values: values, locks: locks.compactMapValues { $0 }))
        case "delta":
            return .delta(StateDelta(version: version, base: try versionField(o, "base"), values: values, locks: locks))
        default:
            throw .malformed("unknown state message kind '\(kind)'")
        }
    }

    private static func versionField(_ o: [String: JSONValue], _ name: String) throws(ControlError) -> UInt64 {
        guard let n = o[name]?.integerValue, n >= 0 else { throw .malformed("'\(name)' must be a non-negative integer") }
        return UInt64(n)
    }
}

/// A client's copy of the shared state, kept from the messages the server publishes.
///
/// It asks for nothing: a late joiner gets a snapshot (from `state.get`, or one the server
/// publishes), and deltas fill in from there. A delta older than the replica is ignored; a delta
/// whose base is newer than the replica means deltas were missed (a PUB socket drops messages
/// for slow or late subscribers): it is applied anyway, and `isConsistent` stays false until the
/// next snapshot.
public struct StateReplica: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// Applied; the replica is at the message's version.
        case applied
        /// Applied, but deltas between the replica's version and the delta's base were missed.
        case appliedWithGap
        /// Not applied: not newer than the replica.
        case ignored
    }

    public private(set) var version: UInt64 = 0
    public private(set) var values: [String: JSONValue] = [:]
    /// Locks as last published (absolute ends on this replica's clock; see `activeLock`).
    public private(set) var locks: [String: StateLock] = [:]
    /// Whether the replica holds the whole state at `version`: true from the start (the store
    /// starts empty at version 0) and after every snapshot, false after a gap.
    public private(set) var isConsistent = true

    public init() {}

    /// Applies a snapshot or a delta.
    @discardableResult
    public mutating func apply(_ message: StateMessage) -> Outcome {
        switch message {
        case .snapshot(let s):
            // An older snapshot would take the replica back in time.
            guard s.version >= version else { return .ignored }
            version = s.version
            values = s.values
            locks = s.locks
            isConsistent = true
            return .applied
        case .delta(let d):
            guard d.version > version else { return .ignored }
            let gap = d.base > version
            for (key, value) in d.values {
                if value.isNull { values[key] = nil } else { values[key] = value }
            }
            for (key, lock) in d.locks {
                locks[key] = lock
            }
            version = d.version
            if gap { isConsistent = false }
            return gap ? .appliedWithGap : .applied
        }
    }

    /// The lock on `key` that holds at `now` (this replica's clock), or nil.
    public func activeLock(_ key: String, now: Double) -> StateLock? {
        guard let lock = locks[key], lock.isActive(at: now) else { return nil }
        return lock
    }
}
