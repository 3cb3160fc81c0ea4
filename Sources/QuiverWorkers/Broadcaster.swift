import CQuiverOS
import Foundation
import QuiverModel
import QuiverConfig
import QuiverSharedMemory
import QuiverWire
import QuiverZMQ

/// The broadcaster process: reads the newest frame from the shared-memory ring, encodes it once
/// (docs/protocol.md) and publishes it as one message on an XPUB socket bound to TCP and ipc.
/// It never waits for a client: a slow subscriber loses frames (per-subscriber high-water mark),
/// the engine is never slowed (it only reads shared memory). Each subscription (XPUB_VERBOSE
/// passes repeated ones too) is answered with the topology and the latest frame, so a late joiner
/// has both at once. The topology comes from the run's topology file; when it is replaced (an
/// embedding session shows another dynamics) every subscriber gets the new one before the next
/// frame.
public struct Broadcaster: Worker {
    public static let role = "broadcaster"
    public static func listeners(_ c: RunConfiguration) -> [ListenerDeclaration] { [ListenerDeclaration(.frames, port: c.port)] }
    public static let events: [EventName] = [.framePublished]

    let context: WorkerContext
    let listener: HandedListener
    let codec: Codec
    /// An eventfd the engine writes after every frame it publishes: the broadcaster sleeps on it
    /// (and on its socket) instead of polling the ring every millisecond. nil: poll.
    let frameFD: Int32?

    public init(context: WorkerContext) throws {
        self.context = context
        listener = try context.listener(.frames)
        codec = context.configuration.wireCodec
        frameFD = context.event(.framePublished)
    }

    /// Runs until SIGTERM/SIGINT.
    public func run() async throws {
        let segment = context.segment
        let zmq = try ZMQContext()
        defer { zmq.close() }
        let publisher = try zmq.socket(.xpub, options: ZMQDefaults.socketOptions + ZMQDefaults.framePublisherOptions + SubscriberGuard.publisherOptions)
        defer { publisher.close() }
        // Subscriptions and connections, with bounded memory whoever connects (started before the
        // binds, so no connection is missed).
        let subscribers = try SubscriberGuard(socket: publisher)
        defer { subscribers.close() }
        try publisher.bind(listener)
        let topology = TopologyWatcher(path: context.topologyFile)
        guard var sentTopology = topology.encoded else { throw RunFileError("topology file \(context.topologyFile) is missing or not a topology message") }
        // A replaced topology file names the first frame it describes: it goes out just before
        // that frame, never before an older one.
        var topologyPending = false
        /// Takes up a replaced topology file once `newest` (the frame about to go out) is one it
        /// describes; true when `sentTopology` changed.
        func adoptTopology(forFrame newest: UInt64?) -> Bool {
            if topology.refresh() { topologyPending = true }
            guard topologyPending, let newest, newest >= topology.firstFrame, let t = topology.encoded else { return false }
            sentTopology = t
            topologyPending = false
            return true
        }
        context.ready()

        // Frames are encoded straight from the ring slot into a pooled buffer that ZeroMQ then
        // sends (and keeps, shared, for late joiners) without a copy; libzmq hands the buffer
        // back when the last subscriber has it, so steady state allocates and faults in nothing.
        let pool = MessageBufferPool()
        var buffer = pool.take()
        let options = FrameEncoder.Options(all: codec)
        var latest: ZMQMessage?
        var latestIndex: UInt64?
        // A subscriber whose queue was full when the newest frame went out lost it, and a paused
        // engine sends no other: once the stream goes quiet the newest frame is sent again, up to
        // three times 100 ms apart (clients drop a repeated index).
        var lastSentNs: UInt64 = 0
        var resends = 0
        // Frames are encoded only while a peer is connected or someone subscribes to them: a run
        // nobody watches (a batch job) costs the machine no encoding, and a new subscriber gets the
        // newest frame at once. Both are counted because neither alone can be trusted: libzmq
        // passes up an unsubscription from a peer that never held the topic (a raw ZMTP peer can
        // send one), and a missed connection event must not silence a subscriber.
        let framePrefix = MessageKind.frame.subscriptionPrefix
        // Woken by a subscription, a connection event or (with the eventfd) a published frame; at
        // least 10 times a second for the progress counter and a stop request. Without the
        // eventfd the ring is polled every millisecond.
        var pollItems: [ZMQPollItem] = subscribers.pollItems
        if let fd = frameFD { pollItems.append(.fileDescriptor(fd)) }
        let pollTimeout: ZMQTimeout = frameFD != nil ? .milliseconds(100) : .milliseconds(1)
        while !context.stopRequested {
            let ready = try ZMQ.poll(pollItems, timeout: pollTimeout)
            if let fd = frameFD, ready[2].contains(.readable) { var count: UInt64 = 0; _ = read(fd, &count, 8) }
            // Subscriptions arrive as messages on the XPUB socket: byte 1 = subscribe, 0 = the last
            // subscriber of a topic is gone.
            let greet = try subscribers.handleInput()
            let published = segment.frames.published
            let wanted = subscribers.connections > 0 || subscribers.topics.wants(framePrefix)
            if greet {
                // The topology of the newest frame (the file may have been replaced while nobody
                // was connected), with that frame; a frame older than the newest (none is encoded
                // while nobody is connected) is not sent: the newest goes out just below.
                _ = adoptTopology(forFrame: published > 0 ? published - 1 : nil)
                _ = try publisher.trySend(sentTopology)
                if latestIndex == published &- 1, let copy = try latest?.copy() { try Self.send(copy, on: publisher) }
            }
            if wanted, published > 0, latestIndex.map({ $0 < published - 1 }) ?? true,
               let index = try segment.frames.withLatestFrame({ (frame) throws(WireError) -> UInt64 in
                   _ = try FrameEncoder.encode(Self.wireFrame(frame), options: options, into: buffer)
                   return frame.scalars.index
               }) {
                // The owner of the dynamics replaces the topology before it publishes the first
                // frame of another system: one stat per frame catches it, and it is sent just
                // before that frame.
                if adoptTopology(forFrame: index) { _ = try publisher.trySend(sentTopology) }
                let message = try pool.message(sending: buffer)
                buffer = pool.take()
                latest = try message.copy()
                try Self.send(message, on: publisher)
                latestIndex = index
                lastSentNs = SystemClock.monotonicNanoseconds
                resends = 0
            } else if wanted, resends < 3, SystemClock.monotonicNanoseconds &- lastSentNs >= 100_000_000, let copy = try latest?.copy() {
                try Self.send(copy, on: publisher)
                lastSentNs = SystemClock.monotonicNanoseconds
                resends += 1
            }
            context.advance()
        }
    }

    /// Output buffers for encoded frames, recycled: one is encoded into, sent as a ZeroMQ message
    /// without copying, and comes back (from libzmq's I/O thread) once every subscriber queue
    /// has let go of it. Up to `retained` idle buffers are kept; more are freed.
    public final class MessageBufferPool: @unchecked Sendable {
        private let lock = NSLock()
        private var idle: [MessageBuffer] = []
        public let retained: Int

        public init(retained: Int = 4) { self.retained = retained }

        /// An idle buffer, or a new one.
        public func take() -> MessageBuffer {
            lock.lock()
            defer { lock.unlock() }
            return idle.popLast() ?? MessageBuffer()
        }

        /// Buffers waiting to be reused.
        public var idleCount: Int { lock.lock(); defer { lock.unlock() }; return idle.count }

        /// The last message encoded into `buffer`, as a message that uses its bytes in place; the
        /// buffer returns to the pool when libzmq releases the message. Do not touch `buffer`
        /// after this call.
        public func message(sending buffer: MessageBuffer) throws(ZMQError) -> ZMQMessage {
            let bytes = buffer.bytes
            nonisolated(unsafe) let owned = buffer
            return try ZMQMessage(bytes: bytes.baseAddress!, count: bytes.count) { [self] in self.put(owned) }
        }

        private func put(_ buffer: MessageBuffer) {
            lock.lock()
            defer { lock.unlock() }
            if idle.count < retained { idle.append(buffer) }
        }
    }

    /// Queues `message` without blocking; a subscriber whose queue is full misses it.
    static func send(_ message: consuming ZMQMessage, on socket: ZMQSocket) throws {
        var message = message
        _ = try socket.trySend(&message)
    }

    /// The wire form of a frame read in place from the ring (its arrays still in the slot).
    static func wireFrame(_ f: FrameView) -> BorrowedFrame {
        let s = f.scalars
        return BorrowedFrame(index: s.index, step: Int64(s.step), time: s.time, box: s.box,
                             energies: Frame.Energies(potential: s.potentialEnergy, kinetic: s.kineticEnergy),
                             temperature: s.temperature, positions: BorrowedVectors(x: f.positions.x, y: f.positions.y, z: f.positions.z),
                             userEnergy: s.userEnergy,
                             userForces: f.userForceIndices.isEmpty ? nil : (0..<f.userForceIndices.count).map {
                                 UserForce(index: f.userForceIndices[$0], force: SIMD3(f.userForces.x[$0], f.userForces.y[$0], f.userForces.z[$0]))
                             },
                             userWork: s.userWork,
                             publishedAt: Double(f.publishedUnixNanoseconds) / 1e9)
    }
}
