import CQuiverOS
import Foundation
import QuiverConfig
import QuiverControl
import QuiverWire
import QuiverSharedMemory
import QuiverZMQ

#if canImport(Glibc)
import Glibc
#endif

/// Settings of the control worker that are not in the run configuration.
struct ControlWorkerTimings {
    /// Seconds to wait for the engine to apply a command before answering `busy` (still queued
    /// here, dropped) or `timeout` (the engine has it).
    var commandTimeout = ControlDefaults.engineTimeout
    /// Most shared-state messages per second (deltas are coalesced in between).
    var statePublishRate = 30.0
}

/// The control worker: takes signed commands on a ROUTER socket (docs/control.md), answers the
/// ones it owns itself (`list`, the shared state) and passes the rest to the engine through the
/// shared-memory command ring, answering when the engine reports them applied. It also publishes
/// the shared state on an XPUB socket (a snapshot to each new subscriber, coalesced deltas after)
/// and ends the sessions of clients that went quiet. The store is kept in the segment, so a
/// restarted control worker loses nothing.
public final class ControlWorker: Worker {
    public static let role = "control"
    public static func listeners(_ c: RunConfiguration) -> [ListenerDeclaration] {
        [ListenerDeclaration(.control, port: c.controlPort), ListenerDeclaration(.state)]
    }
    public static let events: [EventName] = [.commandsPosted, .commandsDone]

    /// A command posted into the ring whose result is still to be collected.
    struct Pending {
        let identity: [UInt8]
        let requestID: String
        /// When the request arrived (the engine timeout counts from here).
        let arrivedAt: Double
    }

    /// A command waiting for a free ring slot (`identity` nil: the worker's own, no reply).
    struct Waiting {
        let payload: [UInt8]
        let identity: [UInt8]?
        let requestID: String
        let arrivedAt: Double
        /// Never dropped as `busy`: part of the command was applied here already (`bye`).
        var mustApply = false
    }

    let context: WorkerContext
    let segment: SharedSegment
    let timings = ControlWorkerTimings()
    /// Seconds without any request after which a client has left (its state keys and locks go; its
    /// interactions have their own, shorter leases).
    let sessionLease: Double
    /// eventfds shared with the engine: written here after posting, read here for finished commands.
    let postedFD: Int32?
    let doneFD: Int32?
    let signer: CommandSigner
    var verifier: RequestVerifier
    var limiter = RateLimiter()
    var sessions = ClientSessions()
    var store: SharedStateStore
    var pending: [UInt64: Pending] = [:]
    /// Commands for the engine not posted yet, in arrival order (bounded: `ControlDefaults.engineQueueLength`
    /// and `engineQueueBytes`), and their payload bytes.
    var waiting: [Waiting] = []
    var waitingBytes = 0
    var router: ZMQSocket!
    var publisher: ZMQSocket!
    let topology: TopologyWatcher

    /// Atoms of the system shown now (the topology file is re-read when it was replaced).
    func atomCount() -> Int {
        topology.refresh()
        return topology.atomCount ?? 0
    }

    public init(context: WorkerContext) throws {
        self.context = context
        segment = context.segment
        sessionLease = context.configuration.sessionLease
        postedFD = context.event(.commandsPosted)
        doneFD = context.event(.commandsDone)
        topology = TopologyWatcher(path: context.topologyFile)
        guard topology.atomCount != nil else { throw RunFileError("topology file \(context.topologyFile) is missing or not a topology message") }
        // The signing key comes from the connection file (mode 0600), never from the arguments.
        let info = try ConnectionInfo.read(from: context.connectionFile)
        signer = try CommandSigner(keyHex: info.key)
        verifier = RequestVerifier(signer: signer)
        var limits = SharedStateStore.Limits()
        // The whole store must fit the segment's state blob (values plus keys, owners, framing).
        limits.maxTotalValueBytes = min(limits.maxTotalValueBytes, segment.blobs.capacity(.state) * 3 / 4)
        store = SharedStateStore(limits: limits)
        if let bytes = try? segment.blobs.read(.state), let restored = try? SharedStateStore.restoring(persisted: bytes, limits: limits) {
            store = restored
        }
    }

    /// The clock of leases, locks, rates and timeouts (monotonic); signed requests carry wall-clock
    /// times and are checked against `SystemClock.realtimeSeconds`.
    static var now: Double { SystemClock.monotonicSeconds }

    /// Runs until SIGTERM/SIGINT.
    public func run() async throws {
        let zmq = try ZMQContext()
        defer { zmq.close() }
        router = try zmq.socket(.router, options: ControlDefaults.serverSocketOptions)
        defer { router.close() }
        try router.bind(try context.listener(.control))
        publisher = try zmq.socket(.xpub, options: ZMQDefaults.socketOptions + SubscriberGuard.publisherOptions)
        defer { publisher.close() }
        // Bounded memory whoever subscribes (no key is needed to); started before the bind.
        let subscribers = try SubscriberGuard(socket: publisher)
        defer { subscribers.close() }
        try publisher.bind(try context.listener(.state))
        context.ready()

        var lastHousekeeping = 0.0
        var lastPublish = 0.0
        while !context.stopRequested {
            var items: [ZMQPollItem] = [.socket(router)] + subscribers.pollItems
            if let fd = doneFD { items.append(.fileDescriptor(fd)) }
            let timeout = (pending.isEmpty && waiting.isEmpty) || doneFD != nil ? 20 : 1
            let ready = try ZMQ.poll(items, timeout: .milliseconds(timeout))
            if ready.count > 3 && ready[3].contains(.readable), let fd = doneFD {
                var value: UInt64 = 0
                _ = read(fd, &value, 8)
            }
            if ready[0].contains(.readable) {
                var handled = 0
                while handled < 256, let message = try router.tryReceiveMultipart() {
                    handle(message)
                    handled += 1
                }
            }
            // Each subscription is greeted with a snapshot (to every `state` subscriber).
            if try subscribers.handleInput() {
                _ = try publisher.trySendMultipart(StateMessage.snapshot(store.snapshot()).frames(now: Self.now))
            }
            collectResults()
            let t = Self.now
            if t - lastHousekeeping >= 0.25 {
                housekeeping(now: t)
                lastHousekeeping = t
            }
            if t - lastPublish >= 1 / timings.statePublishRate, let delta = store.takeDelta() {
                _ = try publisher.trySendMultipart(StateMessage.delta(delta).frames(now: t))
                lastPublish = t
            }
            context.advance()
        }
    }

    // MARK: requests

    func reply(_ identity: [UInt8], _ r: CommandReply) {
        _ = try? router.trySendMultipart([identity] + r.frames(signedWith: signer))
    }

    func handle(_ message: [[UInt8]]) {
        guard let identity = message.first else { return }
        let now = Self.now
        let request: CommandRequest
        switch verifier.verify(frames: Array(message.dropFirst()), now: SystemClock.realtimeSeconds) {
        case .failure(let e): reply(identity, .failure(e)); return
        case .success(let r): request = r
        }
        guard limiter.allow(client: request.client, now: now) else {
            reply(identity, .failure(ControlError(.rateLimited, "more than \(Int(limiter.rate)) requests per second from '\(request.client)'", requestID: request.id)))
            return
        }
        sessions.touch(request.client, now: now)
        let command: ParsedCommand
        do { command = try CommandCatalog.parse(request, atomCount: atomCount()) } catch {
            reply(identity, .failure(error))
            return
        }
        let client = request.client
        do throws(ControlError) {
            switch command {
            case .list:
                reply(identity, .success(id: request.id, CommandCatalog.json))
            case .stateGet(let keys):
                reply(identity, .success(id: request.id, StateMessage.snapshot(store.snapshot().filtered(keys: keys)).json(now: now)))
            case .stateUpdate(let set, let persist):
                try changeStore { (s: inout SharedStateStore) throws(ControlError) in try s.update(client: client, set: set, persist: persist, now: now) }
                reply(identity, .success(id: request.id, ["version": .number(Double(store.version))]))
            case .stateLock(let keys, let seconds):
                try changeStore { (s: inout SharedStateStore) throws(ControlError) in try s.lock(client: client, keys: keys, seconds: seconds, now: now) }
                reply(identity, .success(id: request.id, ["version": .number(Double(store.version)), "expires_in": .number(seconds)]))
            case .stateUnlock(let keys):
                try changeStore { (s: inout SharedStateStore) throws(ControlError) in try s.unlock(client: client, keys: keys, now: now) }
                reply(identity, .success(id: request.id, ["version": .number(Double(store.version))]))
            case .bye:
                // Room first: a `busy` bye leaves the session as it was.
                let left = PostedCommand(.clientLeft, client: client)
                try checkRoom(for: try encoded(left).count)
                clientLeft(client)
                // The session is gone from here on, so the engine part is never dropped as
                // `busy` (that would be untrue): at worst it is answered `timeout` and applied
                // once the engine runs again.
                try post(left, identity: identity, requestID: request.id, mustApply: true)
            case .engine(let engine):
                try post(PostedCommand(engine, client: client), identity: identity, requestID: request.id)
            }
        } catch {
            var e = error
            e.requestID = request.id
            reply(identity, .failure(e))
        }
    }

    /// Applies a change to a copy of the store and keeps it only if it also fits the segment.
    func changeStore(_ change: (inout SharedStateStore) throws(ControlError) -> Void) throws(ControlError) {
        var next = store
        try change(&next)
        try commit(next)
    }

    /// Saves `next` into the segment's state blob and makes it the store (unchanged stores are not saved).
    func commit(_ next: SharedStateStore) throws(ControlError) {
        guard next.version != store.version else { return }
        do { try segment.blobs.write(.state, next.persisted()) } catch {
            throw ControlError(.refused, "the shared state would exceed its \(segment.blobs.capacity(.state)) bytes")
        }
        store = next
    }

    /// Queues a command for the engine, posts what the ring takes now and wakes the engine; the
    /// reply goes out when the engine applied it. Throws `busy` (nothing queued, nothing applied)
    /// when the queue is full; a command from the worker itself (`identity` nil: a session that
    /// expired) is always queued.
    func post(_ command: PostedCommand, identity: [UInt8]?, requestID: String, arrivedAt: Double = ControlWorker.now,
              mustApply: Bool = false) throws(ControlError) {
        let payload = try encoded(command)
        if identity != nil && !mustApply { try checkRoom(for: payload.count) }
        waiting.append(Waiting(payload: payload, identity: identity, requestID: requestID, arrivedAt: arrivedAt, mustApply: mustApply))
        waitingBytes += payload.count
        postWaiting()
    }

    /// The ring payload of `command`, or why the engine could not take it.
    func encoded(_ command: PostedCommand) throws(ControlError) -> [UInt8] {
        let payload: [UInt8]
        do { payload = try command.encoded() } catch {
            throw ControlError(.internal, "the command could not be encoded for the engine: \(error)")
        }
        let capacity = segment.commands.capacity
        guard payload.count <= capacity else {
            throw ControlError(.invalidArgument, "the command is \(payload.count) bytes once encoded, more than the \(capacity) the engine takes (fewer particles?)")
        }
        return payload
    }

    /// Throws `busy` when a client's command of `bytes` would not fit the queue.
    func checkRoom(for bytes: Int) throws(ControlError) {
        guard waiting.count < ControlDefaults.engineQueueLength, waitingBytes + bytes <= ControlDefaults.engineQueueBytes else {
            throw ControlError(.busy, "not applied: \(waiting.count) commands are waiting for the engine (at most \(ControlDefaults.engineQueueLength), "
                                      + "\(ControlDefaults.engineQueueBytes) bytes); nothing was done, send it again later")
        }
    }

    /// Posts waiting commands, in order, while the ring has a free slot: one the engine finished
    /// and whose result was collected here. A slot whose result is still to be collected is never
    /// reused, so every result reaches its client.
    func postWaiting() {
        let ring = segment.commands
        let slots = UInt64(ring.slots)
        var posted = false
        while let next = waiting.first {
            let seq = ring.posted &+ 1
            if seq > slots, pending[seq - slots] != nil { break }
            let assigned: UInt64
            do { assigned = try ring.post(next.payload) } catch {
                if case .full = error { break }
                // The slot size cannot change under a running segment; answer rather than stall.
                waiting.removeFirst()
                waitingBytes -= next.payload.count
                if let identity = next.identity {
                    reply(identity, .failure(ControlError(.internal, "the engine's command ring refused the command (\(error))", requestID: next.requestID)))
                }
                continue
            }
            waiting.removeFirst()
            waitingBytes -= next.payload.count
            if let identity = next.identity { pending[assigned] = Pending(identity: identity, requestID: next.requestID, arrivedAt: next.arrivedAt) }
            posted = true
        }
        if posted, let fd = postedFD { var one: UInt64 = 1; _ = write(fd, &one, 8) }
    }

    /// Answers the commands the engine finished, and those it did not finish in time; then posts
    /// what waits, as far as the freed slots allow.
    func collectResults() {
        let now = Self.now
        for (seq, p) in pending {
            let result: CommandResult?
            do { result = try segment.commands.result(seq) } catch {
                // Only this worker posts, and never into a slot whose result it has not collected:
                // a lapped or unreadable slot means another process wrote into the ring.
                pending[seq] = nil
                reply(p.identity, .failure(ControlError(.internal, "the command's result was lost (\(error)): the engine may or may not have applied it", requestID: p.requestID)))
                continue
            }
            if let result {
                pending[seq] = nil
                reply(p.identity, engineReply(result, requestID: p.requestID))
            } else if now - p.arrivedAt > timings.commandTimeout {
                pending[seq] = nil
                reply(p.identity, .failure(ControlError(.timeout, "the engine has the command but did not apply it within \(timings.commandTimeout) s; "
                                                        + "it will be applied, in order, once the engine runs again (check before sending it again)", requestID: p.requestID)))
            }
        }
        postWaiting()
        // A command still queued after the timeout is dropped: the engine never saw it.
        if waiting.contains(where: { $0.identity != nil && now - $0.arrivedAt > timings.commandTimeout }) {
            var kept: [Waiting] = []
            kept.reserveCapacity(waiting.count)
            for w in waiting {
                if let identity = w.identity, now - w.arrivedAt > timings.commandTimeout, w.mustApply {
                    reply(identity, .failure(ControlError(.timeout, "the engine took no command for \(timings.commandTimeout) s (is it restarting?); "
                                                             + "the server keeps the command and it is applied, in order, once the engine runs again", requestID: w.requestID)))
                    kept.append(Waiting(payload: w.payload, identity: nil, requestID: w.requestID, arrivedAt: w.arrivedAt, mustApply: true))
                } else if let identity = w.identity, now - w.arrivedAt > timings.commandTimeout {
                    waitingBytes -= w.payload.count
                    reply(identity, .failure(ControlError(.busy, "not applied: the engine took no command for \(timings.commandTimeout) s (is it restarting?); "
                                                          + "nothing was done, send it again later", requestID: w.requestID)))
                } else {
                    kept.append(w)
                }
            }
            waiting = kept
        }
    }

    /// The client's reply to a command the engine finished (docs/control.md, "Results").
    func engineReply(_ r: CommandResult, requestID: String) -> CommandReply {
        guard let reply = try? EngineReply.decode(r.reply) else {
            return .failure(ControlError(.internal, "unreadable engine reply", requestID: requestID))
        }
        return reply.commandReply(requestID: requestID)
    }

    // MARK: sessions

    func clientLeft(_ client: String) {
        _ = sessions.remove(client)
        limiter.remove(client: client)
        try? changeStore { (s: inout SharedStateStore) throws(ControlError) in s.clientLeft(client) }
    }

    func housekeeping(now: Double) {
        for client in sessions.expired(now: now, lease: sessionLease) {
            clientLeft(client)
            try? post(PostedCommand(.clientLeft, client: client), identity: nil, requestID: "")
        }
        var next = store
        next.expire(now: now)
        try? commit(next)
        limiter.forgetIdle(now: now)
    }
}
