import QuiverZMQ

/// Every limit and default of the control channel in one place (docs/control.md).
public enum ControlDefaults {
    /// Largest request body, bytes; checked before anything else (before the signature).
    public static let maxBodyBytes = 1 << 20
    /// Largest part a control ROUTER accepts (ZMQ_MAXMSGSIZE, per part): a peer sending more is
    /// disconnected by libzmq before anything is allocated. Above `maxBodyBytes`, so a body a little
    /// too large still gets a `malformed` reply rather than a silent disconnect.
    public static let serverMaxPartBytes = 2 << 20
    /// Replay window, seconds: a request whose `time` is further than this from the server's clock
    /// is `stale`; a (client, nonce) pair is remembered for twice this long.
    public static let replayWindow: Double = 30
    /// Most (client, nonce) pairs remembered; at the bound, new requests get `unavailable`.
    public static let nonceCapacity = 100_000
    /// Request id: 1...64 UTF-8 bytes.
    public static let idBytes = 1...64
    /// Client id: 1...64 characters of [A-Za-z0-9._-].
    public static let clientIDLength = 1...64
    /// Nonce: 16...64 hex characters.
    public static let nonceLength = 16...64
    /// Command name: 1...64 UTF-8 bytes.
    public static let commandBytes = 1...64
    /// Per-client rate limit: requests per second...
    public static let rate: Double = 200
    /// ...and burst (bucket size).
    public static let burst: Double = 400
    /// Most clients the rate limiter tracks at once; new clients beyond it are refused until
    /// others go idle.
    public static let rateLimitedClients = 10_000
    /// A client not heard from for this long (no request, not even `renew`) is considered gone:
    /// its interactions, locks and non-persistent state are dropped (`ClientSessions`). The
    /// server's default; `[control] session_lease` sets it per run.
    public static let sessionLease: Double = 10
    /// Commands for the engine the control worker holds while the engine's command ring is full
    /// (posted in arrival order as the engine frees slots); beyond either bound a command is
    /// answered `busy`, with nothing applied.
    public static let engineQueueLength = 1024
    /// ...and their encoded bytes together.
    public static let engineQueueBytes = 8 << 20
    /// Seconds a command for the engine waits (queued, then posted) before the control worker
    /// answers: `busy` when it was still queued (dropped, never applied), `timeout` when the engine
    /// had it and has not applied it yet (it will be, once the engine runs).
    public static let engineTimeout: Double = 5
    /// Client reply timeout.
    public static let clientTimeout: Duration = .seconds(5)

    /// Options for the server's ROUTER: the project defaults with a small part size limit.
    public static let serverSocketOptions: [ZMQSocketOption] = ZMQDefaults.socketOptions + [
        .maxMessageSize(serverMaxPartBytes),
    ]
    /// Options for a client's DEALER: the project defaults with no linger (an unsent request is
    /// dropped on close).
    public static let clientSocketOptions: [ZMQSocketOption] = ZMQDefaults.socketOptions + [
        .linger(.zero),
    ]
}
