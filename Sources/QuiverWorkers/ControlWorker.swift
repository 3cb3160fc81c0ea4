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
    /// Seconds to wait for the engine to apply a command before answering `timeout`.
    var commandTimeout = 5.0
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

    struct Pending {
        let identity: [UInt8]
        let requestID: String
        let postedAt: Double
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
        publisher = try zmq.socket(.xpub, options: ZMQDefaults.socketOptions + [.xpubVerbose(true)])
        defer { publisher.close() }
        try publisher.bind(try context.listener(.state))
        context.ready()

        var lastHousekeeping = 0.0
        var lastPublish = 0.0
        while !context.stopRequested {
            var items: [ZMQPollItem] = [.socket(router), .socket(publisher)]
            if let fd = doneFD { items.append(.fileDescriptor(fd)) }
            let timeout = pending.isEmpty || doneFD != nil ? 20 : 1
            let ready = try ZMQ.poll(items, timeout: .milliseconds(timeout))
            if ready.count > 2 && ready[2].contains(.readable), let fd = doneFD {
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
            if ready[1].contains(.readable) {
                var greet = false
                while let message = try publisher.tryReceive() { if message.first == 1 { greet = true } }
                if greet { _ = try publisher.trySendMultipart(StateMessage.snapshot(store.snapshot()).frames(now: Self.now)) }
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
                clientLeft(client)
                try post(PostedCommand(.clientLeft, client: client), identity: identity, requestID: request.id)
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

    /// Posts a command into the ring and wakes the engine; the reply goes out when it is applied.
    func post(_ command: PostedCommand, identity: [UInt8]?, requestID: String) throws(ControlError) {
        let payload: [UInt8]
        do { payload = try command.encoded() } catch {
            throw ControlError(.internal, "the command could not be encoded for the engine: \(error)")
        }
        let seq: UInt64
        do { seq = try segment.commands.post(payload) } catch {
            switch error {
            case .full: throw ControlError(.unavailable, "the engine is not taking commands (\(segment.layout.commandSlots) are waiting); is it running?")
            case .tooLarge(let bytes, let capacity):
                throw ControlError(.invalidArgument, "the command is \(bytes) bytes once encoded, more than the \(capacity) the engine takes (fewer particles?)")
            }
        }
        if let fd = postedFD { var one: UInt64 = 1; _ = write(fd, &one, 8) }
        if let identity { pending[seq] = Pending(identity: identity, requestID: requestID, postedAt: Self.now) }
    }

    /// Answers the commands the engine finished, and those it did not finish in time.
    func collectResults() {
        guard !pending.isEmpty else { return }
        let now = Self.now
        for (seq, p) in pending {
            let result: CommandResult?
            do { result = try segment.commands.result(seq) } catch {
                pending[seq] = nil
                reply(p.identity, .failure(ControlError(.internal, "the command's result was lost", requestID: p.requestID)))
                continue
            }
            if let result {
                pending[seq] = nil
                reply(p.identity, engineReply(result, requestID: p.requestID))
            } else if now - p.postedAt > timings.commandTimeout {
                pending[seq] = nil
                reply(p.identity, .failure(ControlError(.timeout, "the engine did not apply the command within \(timings.commandTimeout) s (it may still, once it runs again)", requestID: p.requestID)))
            }
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
