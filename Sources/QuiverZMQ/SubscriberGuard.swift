import CZeroMQ
import Glibc

/// Keeps an XPUB socket's memory bounded whoever connects to it (no key is needed to subscribe):
///
/// - every inbound message, subscriptions included, is at most `ZMQDefaults.publisherMaxInbound`
///   bytes (`publisherOptions`: ZMQ_MAXMSGSIZE; libzmq disconnects a peer that sends more before
///   it allocates anything), so a topic is at most 255 bytes;
/// - a connection that subscribes more than `subscriptionsPerPeer` times is disconnected
///   (`shutdown(2)` of its descriptor, which libzmq names on each message: ZMQ_SRCFD). `topics`
///   holds at most that many per connection; libzmq's trie holds what it took from the connection
///   before the guard read the 33rd (it reads as they arrive), until the connection is gone;
/// - when connections close, the memory libzmq and this process freed is handed back to the
///   system (`malloc_trim`, 0.3 s after a disconnect and again once none came for a second), so the
///   worker's resident size comes back.
///
/// It also keeps what a publisher needs to know: the topics subscribers hold (`topics`) and the
/// connections counted from the socket monitor (`connections`). Create it before the socket is
/// bound (the monitor must see every connection); call `handleInput()` on every pass of the loop.
public final class SubscriberGuard {
    public let socket: ZMQSocket
    let monitor: ZMQSocketMonitor
    /// Most subscriptions one connection may send over its life.
    public let subscriptionsPerPeer: Int
    /// The topics subscribers hold (see `SubscriptionTopics`).
    public private(set) var topics = SubscriptionTopics()
    /// Connections open now: accepted minus disconnected.
    public private(set) var connections = 0
    /// Connections disconnected for sending too many subscriptions.
    public private(set) var peersDisconnected = 0
    /// Subscriptions seen per connection (by descriptor), from its accept to its disconnect.
    private var perPeer: [Int32: Int] = [:]
    /// When to give freed memory back (CLOCK_MONOTONIC ns), after connections closed.
    private var trimAt: UInt64?
    private var finalTrimAt: UInt64?
    private var message = ZMQMessage()

    /// Options an XPUB needs for this guard (after the project defaults): the inbound size bound;
    /// a receive high-water mark of one connection's allowance (subscribers send nothing else, so
    /// little waits in a pipe); and ZMQ_XPUB_VERBOSE, so every subscription is seen.
    public static let publisherOptions: [ZMQSocketOption] = [
        .maxMessageSize(ZMQDefaults.publisherMaxInbound),
        .receiveHighWaterMark(ZMQDefaults.subscriptionsPerPeer),
        .xpubVerbose(true),
    ]

    /// Watches `socket` (an XPUB made with `publisherOptions`, not bound yet).
    public init(socket: ZMQSocket, subscriptionsPerPeer: Int = ZMQDefaults.subscriptionsPerPeer) throws(ZMQError) {
        self.socket = socket
        self.subscriptionsPerPeer = subscriptionsPerPeer
        monitor = try socket.monitor([.accepted, .disconnected])
    }

    /// The socket and the monitor, to poll.
    public var pollItems: [ZMQPollItem] { [.socket(socket), .socket(monitor.socket)] }

    /// Handles connection events and what subscribers sent. Returns true when a subscription
    /// arrived from a connection within its bound (a new subscriber may want a greeting).
    public func handleInput() throws(ZMQError) -> Bool {
        handleEvents()
        var subscribed = false
        while try socket.tryReceive(into: &message) {
            guard message.count > 0 else { continue }
            let kind = message.withUnsafeBytes { $0[0] }
            if kind == 1, let fd = message.sourceDescriptor {
                let seen = perPeer[fd, default: 0] + 1
                perPeer[fd] = seen
                if seen > subscriptionsPerPeer {
                    // libzmq added it to its trie already: it goes with the connection (libzmq then
                    // passes up an unsubscription for each topic nobody else holds; one of these,
                    // never added here, changes nothing).
                    if seen == subscriptionsPerPeer + 1 {
                        peersDisconnected += 1
                        shutdown(fd, Int32(SHUT_RDWR))
                    }
                    continue
                }
            }
            if topics.apply(message.bytes) { subscribed = true }
        }
        handleEvents()
        // libzmq frees a connection's objects after its disconnect event, partly on this thread's
        // next calls: trim a little after a disconnect (at most every 300 ms while connections
        // keep closing) and once more when none closed for a second.
        let now = SystemNanoseconds.monotonic
        if let at = trimAt, now >= at { trimAt = nil; _ = mallocTrim?(0) }
        if let at = finalTrimAt, now >= at { finalTrimAt = nil; _ = mallocTrim?(0) }
        return subscribed
    }

    private func handleEvents() {
        while let event = try? monitor.next(timeout: .zero) {
            let fd = Int32(bitPattern: event.value)
            if event.kind == .accepted {
                connections += 1
                perPeer[fd] = 0
            } else if event.kind == .disconnected {
                connections = max(0, connections - 1)
                perPeer[fd] = nil
                let now = SystemNanoseconds.monotonic
                trimAt = min(trimAt ?? .max, now + 300_000_000)
                finalTrimAt = now + 1_000_000_000
            }
        }
        if perPeer.isEmpty && perPeer.capacity > 64 { perPeer = [:] }
    }

    /// Closes the monitor (the socket is the caller's).
    public func close() { monitor.close() }
}

/// glibc's `malloc_trim` (not in Swift's Glibc module), looked up once; nil where there is none.
private let mallocTrim: (@convention(c) (Int) -> Int32)? = {
    guard let symbol = dlsym(nil, "malloc_trim") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
}()

/// CLOCK_MONOTONIC in nanoseconds.
enum SystemNanoseconds {
    static var monotonic: UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }
}
