/// A lock on a shared-state key: only `owner` may write or unlock the key until `expires`.
public struct StateLock: Sendable, Equatable {
    public var owner: String
    /// Absolute time (the clock of whoever holds this value) when the lock ends.
    public var expires: Double

    public init(owner: String, expires: Double) {
        self.owner = owner
        self.expires = expires
    }

    /// Whether the lock still holds at `now` (a lock is free from `expires` on).
    public func isActive(at now: Double) -> Bool { now < expires }
}

/// The whole shared state at one version.
public struct StateSnapshot: Sendable, Equatable {
    public var version: UInt64
    public var values: [String: JSONValue]
    public var locks: [String: StateLock]

    public init(version: UInt64, values: [String: JSONValue], locks: [String: StateLock]) {
        self.version = version
        self.values = values
        self.locks = locks
    }

    /// The same snapshot restricted to `keys` (values and locks); all of it for nil.
    public func filtered(keys: [String]?) -> StateSnapshot {
        guard let keys else { return self }
        let wanted = Set(keys)
        return StateSnapshot(version: version, values: values.filter { wanted.contains($0.key) },
                             locks: locks.filter { wanted.contains($0.key) })
    }
}

/// The changes between two versions, coalesced: the last value of each key changed (`.null`: the
/// key was removed) and the last lock state of each key whose lock changed (nil: unlocked).
/// Applying it to the state at `base` (or at any version between `base` and `version`) gives the
/// state at `version`.
public struct StateDelta: Sendable, Equatable {
    public var version: UInt64
    /// The version of the previous delta (0 for the first).
    public var base: UInt64
    public var values: [String: JSONValue]
    public var locks: [String: StateLock?]

    public init(version: UInt64, base: UInt64, values: [String: JSONValue], locks: [String: StateLock?]) {
        self.version = version
        self.base = base
        self.values = values
        self.locks = locks
    }
}

/// The shared key-value state of a run: what clients share with each other (avatars, selections,
/// settings), with per-key ownership and locks (docs/control.md, "Shared state").
///
/// Every method takes the time explicitly. A value type owned by one thread (the control worker).
///
/// - Ownership: the last client to write a key owns it. When a client leaves (`clientLeft`), the
///   keys it owns that it did not write with `persist: true` are removed, and its locks released.
/// - Locks: a client may lock keys (present or not) for up to an hour; while the lock holds, no
///   other client may write, delete, lock or unlock them. An expired lock is free at once, and
///   dropped from the tables (and reported as unlocked) at the next `expire(now:)`.
/// - Bounded: keys and their values are checked against `Limits` before anything changes.
public struct SharedStateStore: Sendable {
    public struct Limits: Sendable, Equatable {
        /// Most keys in the store (and most locks).
        public var maxKeys = 10_000
        /// Longest key, UTF-8 bytes.
        public var maxKeyBytes = 256
        /// Longest value, bytes of its JSON encoding.
        public var maxValueBytes = 64 << 10
        /// Most bytes of all values together (JSON encodings), so a snapshot fits one message
        /// (a client's ZeroMQ maximum message size is 64 MiB).
        public var maxTotalValueBytes = 32 << 20
        /// Longest lock, seconds.
        public var maxLockSeconds: Double = 3600

        public init() {}
    }

    /// A stored value with its bookkeeping.
    public struct Entry: Sendable, Equatable {
        public var value: JSONValue
        /// The last client that wrote it.
        public var owner: String
        /// Whether that write asked for the key to outlive its owner.
        public var persist: Bool
        /// Bytes of the value's JSON encoding.
        public var bytes: Int

        public init(value: JSONValue, owner: String, persist: Bool, bytes: Int) {
            self.value = value
            self.owner = owner
            self.persist = persist
            self.bytes = bytes
        }
    }

    public let limits: Limits
    /// Bumped once by every call that changes anything (values, owners, locks).
    public internal(set) var version: UInt64 = 0
    var entries: [String: Entry] = [:]
    var locks: [String: StateLock] = [:]
    var totalBytes = 0
    // Changes since the last takeDelta.
    private var pendingValues: [String: JSONValue] = [:]
    private var pendingLocks: [String: StateLock?] = [:]
    private var deltaBase: UInt64 = 0

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    // MARK: Reading

    /// Keys stored.
    public var count: Int { entries.count }
    /// Bytes of all values (JSON encodings).
    public var totalValueBytes: Int { totalBytes }
    /// The value of `key`, or nil.
    public func value(_ key: String) -> JSONValue? { entries[key]?.value }
    /// The value of `key` with its owner and persist flag, or nil.
    public func entry(_ key: String) -> Entry? { entries[key] }
    /// The lock on `key` that holds at `now`, or nil.
    public func lock(on key: String, now: Double) -> StateLock? {
        guard let lock = locks[key], lock.isActive(at: now) else { return nil }
        return lock
    }

    /// Every value and every lock not yet dropped by `expire(now:)` (call it first for a
    /// snapshot without expired locks; `StateMessage` also leaves expired ones out).
    public func snapshot() -> StateSnapshot {
        StateSnapshot(version: version, values: entries.mapValues(\.value), locks: locks)
    }

    // MARK: Keys and values

    /// Checks a key: 1...maxKeyBytes UTF-8 bytes, no control characters.
    /// - Throws: `invalid_argument` naming the problem.
    public static func validate(key: String, limits: Limits = Limits()) throws(ControlError) {
        let bytes = key.utf8.count
        guard bytes >= 1 && bytes <= limits.maxKeyBytes else {
            throw .invalidArgument("state key must be 1...\(limits.maxKeyBytes) bytes, got \(bytes)")
        }
        guard !key.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .invalidArgument("state key \(quoted(key)) contains a control character")
        }
    }

    // MARK: Changing

    /// Sets (or, with `.null`, deletes) several keys at once, all or nothing.
    ///
    /// - Throws: `invalid_argument` (a bad key, a value over `maxValueBytes` or with a non-finite
    ///   number), `locked` (a key is locked by another client: names the first such key and its
    ///   owner), `refused` (the store would exceed `maxKeys` or `maxTotalValueBytes`). Nothing
    ///   changes when it throws.
    public mutating func update(client: String, set changes: [String: JSONValue], persist: Bool, now: Double) throws(ControlError) {
        let keys = changes.keys.sorted()
        var sizes: [String: Int] = [:]
        for key in keys {
            try Self.validate(key: key, limits: limits)
            let value = changes[key]!
            if value.isNull { continue }
            guard value.isFinite else { throw .invalidArgument("state value of \(Self.quoted(key)) has a non-finite number") }
            let size = value.encoded().count
            guard size <= limits.maxValueBytes else {
                throw .invalidArgument("state value of \(Self.quoted(key)) is \(size) bytes encoded, at most \(limits.maxValueBytes)")
            }
            sizes[key] = size
        }
        try checkNotLockedByOthers(keys, client: client, now: now)
        var newCount = entries.count
        var newTotal = totalBytes
        for key in keys {
            let old = entries[key]
            if let size = sizes[key] {
                if old == nil { newCount += 1 }
                newTotal += size - (old?.bytes ?? 0)
            } else if let old {
                newCount -= 1
                newTotal -= old.bytes
            }
        }
        guard newCount <= limits.maxKeys else {
            throw ControlError(.refused, "the shared state would hold \(newCount) keys, at most \(limits.maxKeys)")
        }
        guard newTotal <= limits.maxTotalValueBytes else {
            throw ControlError(.refused, "the shared state would hold \(newTotal) bytes of values, at most \(limits.maxTotalValueBytes)")
        }
        var changed = false
        for key in keys {
            let value = changes[key]!
            if let size = sizes[key] {
                entries[key] = Entry(value: value, owner: client, persist: persist, bytes: size)
                pendingValues[key] = value
                changed = true
            } else if entries.removeValue(forKey: key) != nil {
                pendingValues[key] = .null
                changed = true
            }
        }
        totalBytes = newTotal
        if changed { version += 1 }
    }

    /// Locks `keys` (present or not) for `client` until `now + seconds`, all or nothing; the
    /// owner may lock again to set a new end.
    /// - Throws: `invalid_argument` (no keys, a bad key, seconds not in (0, maxLockSeconds]),
    ///   `locked` (a key is locked by another client), `refused` (more than `maxKeys` locks).
    public mutating func lock(client: String, keys: [String], seconds: Double, now: Double) throws(ControlError) {
        guard !keys.isEmpty else { throw .invalidArgument("no keys to lock") }
        guard seconds.isFinite && seconds > 0 && seconds <= limits.maxLockSeconds else {
            throw .invalidArgument("lock seconds must be in (0, \(Int(limits.maxLockSeconds))], got \(seconds)")
        }
        let keys = Array(Set(keys)).sorted()
        for key in keys { try Self.validate(key: key, limits: limits) }
        try checkNotLockedByOthers(keys, client: client, now: now)
        let added = keys.filter { locks[$0] == nil }.count
        guard locks.count + added <= limits.maxKeys else {
            throw ControlError(.refused, "the shared state would hold \(locks.count + added) locks, at most \(limits.maxKeys)")
        }
        for key in keys {
            let lock = StateLock(owner: client, expires: now + seconds)
            locks[key] = lock
            pendingLocks[key] = .some(lock)
        }
        version += 1
    }

    /// Releases `client`'s locks on `keys`, all or nothing. A key that is not locked (or whose
    /// lock expired) is left as it is.
    /// - Throws: `invalid_argument` (a bad key), `locked` (a key is locked by another client).
    public mutating func unlock(client: String, keys: [String], now: Double) throws(ControlError) {
        let keys = Array(Set(keys)).sorted()
        for key in keys { try Self.validate(key: key, limits: limits) }
        try checkNotLockedByOthers(keys, client: client, now: now)
        var changed = false
        for key in keys {
            guard let lock = locks[key], lock.owner == client || !lock.isActive(at: now) else { continue }
            locks[key] = nil
            pendingLocks[key] = .some(nil)
            changed = true
        }
        if changed { version += 1 }
    }

    /// Drops the locks that ended at or before `now`.
    public mutating func expire(now: Double) {
        let ended = locks.filter { !$0.value.isActive(at: now) }.keys
        guard !ended.isEmpty else { return }
        for key in ended {
            locks[key] = nil
            pendingLocks[key] = .some(nil)
        }
        version += 1
    }

    /// `client` left: removes the keys it owns that it did not write with `persist`, and its locks.
    public mutating func clientLeft(_ client: String) {
        var changed = false
        for (key, entry) in entries where entry.owner == client && !entry.persist {
            entries[key] = nil
            totalBytes -= entry.bytes
            pendingValues[key] = .null
            changed = true
        }
        for (key, lock) in locks where lock.owner == client {
            locks[key] = nil
            pendingLocks[key] = .some(nil)
            changed = true
        }
        if changed { version += 1 }
    }

    /// The changes since the last call (or since the store was made), coalesced per key, with
    /// the current version; nil when nothing changed.
    public mutating func takeDelta() -> StateDelta? {
        guard !pendingValues.isEmpty || !pendingLocks.isEmpty else { return nil }
        let delta = StateDelta(version: version, base: deltaBase, values: pendingValues, locks: pendingLocks)
        pendingValues = [:]
        pendingLocks = [:]
        deltaBase = version
        return delta
    }

    // MARK: Helpers

    private func checkNotLockedByOthers(_ sortedKeys: [String], client: String, now: Double) throws(ControlError) {
        for key in sortedKeys {
            if let lock = lock(on: key, now: now), lock.owner != client {
                throw ControlError(.locked, "state key \(Self.quoted(key)) is locked by client '\(lock.owner)' for \(Self.seconds(lock.expires - now)) more")
            }
        }
    }

    static func quoted(_ key: String) -> String {
        let shown = key.unicodeScalars.count > 64 ? String(String.UnicodeScalarView(key.unicodeScalars.prefix(64))) + "..." : key
        return "'" + shown.unicodeScalars.map { $0.properties.generalCategory == .control ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined() + "'"
    }

    static func seconds(_ s: Double) -> String {
        s >= 10 ? "\(Int(s.rounded())) s" : "\((max(0, s) * 10).rounded() / 10) s"
    }
}
