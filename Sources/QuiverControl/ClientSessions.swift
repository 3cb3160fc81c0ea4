/// When each client was last heard from: a client that sends nothing (not even `renew`) for a
/// lease is considered gone, and the server drops its interactions, locks and non-persistent state.
public struct ClientSessions: Sendable {
    private var lastSeen: [String: Double] = [:]

    public init() {}

    /// Records that `client` was heard from at `now` (a new client starts a session).
    public mutating func touch(_ client: String, now: Double) {
        lastSeen[client] = max(lastSeen[client] ?? now, now)
    }

    /// The clients not heard from for more than `lease` seconds at `now`, sorted; they are removed.
    public mutating func expired(now: Double, lease: Double) -> [String] {
        let gone = lastSeen.filter { now - $0.value > lease }.keys.sorted()
        for client in gone { lastSeen[client] = nil }
        return gone
    }

    /// Ends `client`'s session (it said `bye`); returns whether it had one.
    @discardableResult
    public mutating func remove(_ client: String) -> Bool {
        lastSeen.removeValue(forKey: client) != nil
    }

    /// When `client` was last heard from, or nil.
    public func lastSeen(_ client: String) -> Double? { lastSeen[client] }

    /// Clients with a session, sorted.
    public var clients: [String] { lastSeen.keys.sorted() }

    public var count: Int { lastSeen.count }
}
