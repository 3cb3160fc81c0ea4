/// Every default of the ZeroMQ layer in one place: socket options, timeouts, endpoint names.
/// Workers and tests take their settings from here rather than spelling numbers at call sites.
/// docs/zmq.md explains each choice.
public enum ZMQDefaults {
    // MARK: Context

    /// I/O threads per context. One thread moves about a gigabyte per second; frames for many
    /// clients may want two in the broadcaster.
    public static let ioThreads = 1

    // MARK: Socket options

    /// Linger on close: unsent messages get this long to leave (a reply or an acknowledgement in
    /// flight at shutdown), then are dropped, so shutdown stays bounded. libzmq's own default is
    /// forever.
    public static let linger: ZMQTimeout = .milliseconds(200)
    /// Linger in tests: none, so tearing down never waits.
    public static let testLinger: ZMQTimeout = .zero
    /// Send and receive high-water mark, in messages per peer, for command and reply sockets
    /// (libzmq's own default; messages there are small).
    public static let highWaterMark = 1000
    /// Send high-water mark of a frame publisher, per subscriber: at 60 frames/s this is about
    /// 130 ms of frames; a subscriber further behind misses frames instead of growing a backlog
    /// (a 100k-atom frame is ~1 MB, so the libzmq default of 1000 would be ~1 GB per client).
    public static let framePublisherHighWaterMark = 8
    /// Largest incoming message accepted (ZMQ_MAXMSGSIZE); a peer sending more is disconnected
    /// before anything is allocated for it. 64 MiB holds a 1M-atom float32 frame with positions,
    /// velocities and forces (36 MB). Sockets facing clients' commands should lower it.
    public static let maxMessageSize = 64 << 20
    /// Largest incoming message on a publisher (XPUB: frames, state): subscribers send only
    /// subscriptions (1 byte + topic), so a topic is at most 255 bytes. A peer sending more is
    /// disconnected before anything is allocated (`SubscriberGuard`).
    public static let publisherMaxInbound = 256
    /// Most subscriptions one connection to a publisher may send over its life (a Quiver client
    /// sends one or two); a connection that sends more is disconnected (`SubscriberGuard`).
    public static let subscriptionsPerPeer = 32
    /// ZMTP heartbeat: a PING on every connection this often...
    public static let heartbeatInterval: Duration = .seconds(1)
    /// ...and a connection that sends nothing back for this long after a PING is dropped...
    public static let heartbeatTimeout: Duration = .seconds(5)
    /// ...and the peer is told to drop us after this long without traffic.
    public static let heartbeatTimeToLive: Duration = .seconds(5)
    /// Send and receive timeout in tests, so a blocking call can never hang a test.
    public static let testTimeout: ZMQTimeout = .seconds(10)

    /// The options every socket gets unless its creator says otherwise.
    public static let socketOptions: [ZMQSocketOption] = [
        .linger(linger),
        .sendHighWaterMark(highWaterMark),
        .receiveHighWaterMark(highWaterMark),
        .maxMessageSize(maxMessageSize),
        .heartbeatInterval(heartbeatInterval),
        .heartbeatTimeout(heartbeatTimeout),
        .heartbeatTimeToLive(heartbeatTimeToLive),
    ]

    /// The options for tests: the defaults with no linger and bounded send/receive timeouts.
    public static let testSocketOptions: [ZMQSocketOption] = socketOptions + [
        .linger(testLinger),
        .sendTimeout(testTimeout),
        .receiveTimeout(testTimeout),
    ]

    /// Added to the defaults for the frame publisher (PUB): a small per-subscriber queue.
    public static let framePublisherOptions: [ZMQSocketOption] = [
        .sendHighWaterMark(framePublisherHighWaterMark),
    ]

    /// Added to the defaults for a live subscriber with latest-frame semantics (SUB, before
    /// `connect`): keep only the newest message. Its I/O thread keeps reading the connection at
    /// full speed, so no back-pressure reaches the publisher and only one frame is held.
    /// **Single-part messages only**: with multipart messages CONFLATE keeps one part, not one
    /// message. A multipart subscriber uses the default queue and
    /// `ZMQSocket.receiveLatestMultipart` instead (docs/zmq.md compares the two).
    public static let latestFrameSubscriberOptions: [ZMQSocketOption] = [
        .conflate(true),
    ]

    // MARK: Endpoints

    /// A TCP endpoint on loopback with a port chosen by the system; read it back from `bind`'s
    /// result or `ZMQSocket.lastEndpoint`. Loopback is the default for anything TCP.
    public static let loopbackAnyPort = "tcp://127.0.0.1:*"

    /// The ZeroMQ channels of a run (docs/zmq.md, ARCHITECTURE.md "Channels"); each has an
    /// `ipc://` endpoint in the run directory, named `<channel>.ipc`.
    public enum Channel: String, Sendable, CaseIterable {
        /// PUB: compressed frames, topology, state changes.
        case frames
        /// ROUTER: commands with replies.
        case control
        /// REP: ping and health summary.
        case heartbeat
    }

    /// The longest path an `ipc://` endpoint may have: a UNIX socket address holds 107 bytes on
    /// Linux (103 on macOS) plus the terminating NUL.
    #if os(Linux)
    public static let ipcPathLimit = 107
    #else
    public static let ipcPathLimit = 103
    #endif

    /// The `ipc://` endpoint of `channel` in `directory` (the run directory, private to the user).
    /// - Throws: `ZMQError.nameTooLong` when the path does not fit a UNIX socket address.
    public static func ipcEndpoint(_ channel: Channel, in directory: String) throws(ZMQError) -> String {
        let base = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        return try ipcEndpoint(path: "\(base)/\(channel.rawValue).ipc")
    }

    /// `ipc://<path>`, checked against `ipcPathLimit`.
    /// - Throws: `ZMQError.nameTooLong` when the path does not fit a UNIX socket address.
    public static func ipcEndpoint(path: String) throws(ZMQError) -> String {
        guard path.utf8.count <= ipcPathLimit else {
            throw ZMQError(code: ZMQError.nameTooLong.code, operation: "ipc endpoint (\(path.utf8.count) bytes > \(ipcPathLimit))")
        }
        return "ipc://\(path)"
    }
}
