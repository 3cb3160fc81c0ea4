import CQuiverOS
import Foundation
import QuiverControl
import QuiverSharedMemory
import QuiverZMQ

#if canImport(Glibc)
import Glibc
#endif

/// Settings of the control worker.
public struct ControlWorkerOptions: Sendable {
    public var segment: String
    public var index: Int
    /// The command ROUTER: TCP endpoint (the supervisor's listening socket `listenFD`) and ipc.
    public var tcpEndpoint: String
    public var listenFD: Int32?
    public var ipcEndpoint: String
    /// The shared-state XPUB: TCP endpoint (listening socket `stateListenFD`) and ipc.
    public var stateTCPEndpoint: String
    public var stateListenFD: Int32?
    public var stateIPCEndpoint: String
    /// The signing key (hex, from connection.json).
    public var keyHex: String
    /// The run's topology file: interaction indices are checked against its atom count, followed
    /// when it is replaced.
    public var topologyFile: String
    /// eventfds shared with the engine: written here after posting, read here for finished commands.
    public var postedFD: Int32?
    public var doneFD: Int32?
    /// Seconds to wait for the engine to apply a command before answering `timeout`.
    public var commandTimeout = 5.0
    /// Seconds without any request after which a client has left (its state keys and locks go; its
    /// interactions have their own, shorter leases).
    public var sessionLease = ControlDefaults.sessionLease
    /// Most shared-state messages per second (deltas are coalesced in between).
    public var statePublishRate = 30.0

    public init(segment: String, index: Int, tcpEndpoint: String, listenFD: Int32?, ipcEndpoint: String,
                stateTCPEndpoint: String, stateListenFD: Int32?, stateIPCEndpoint: String, keyHex: String, topologyFile: String,
                postedFD: Int32?, doneFD: Int32?) {
        self.segment = segment
        self.index = index
        self.tcpEndpoint = tcpEndpoint
        self.listenFD = listenFD
        self.ipcEndpoint = ipcEndpoint
        self.stateTCPEndpoint = stateTCPEndpoint
        self.stateListenFD = stateListenFD
        self.stateIPCEndpoint = stateIPCEndpoint
        self.keyHex = keyHex
        self.topologyFile = topologyFile
        self.postedFD = postedFD
        self.doneFD = doneFD
    }
}

/// The control worker: takes signed commands on a ROUTER socket (docs/control.md), answers the
/// ones it owns itself (`list`, the shared state) and passes the rest to the engine through the
/// shared-memory command ring, answering when the engine reports them applied. It also publishes
/// the shared state on an XPUB socket (a snapshot to each new subscriber, coalesced deltas after)
/// and ends the sessions of clients that went quiet. The store is kept in the segment, so a
/// restarted control worker loses nothing.
public final class ControlWorker {
    struct Pending {
        let identity: [UInt8]
        let requestID: String
        let postedAt: Double
    }

    let o: ControlWorkerOptions
    let segment: SharedSegment
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

    init(_ o: ControlWorkerOptions) throws {
        self.o = o
        segment = try SharedSegment.open(name: o.segment)
        topology = TopologyWatcher(path: o.topologyFile)
        guard topology.atomCount != nil else { throw RunFileError("topology file \(o.topologyFile) is missing or not a topology message") }
        signer = try CommandSigner(keyHex: o.keyHex)
        verifier = RequestVerifier(signer: signer)
        var limits = SharedStateStore.Limits()
        // The whole store must fit the segment's state blob (values plus keys, owners, framing).
        limits.maxTotalValueBytes = min(limits.maxTotalValueBytes, segment.blobs.capacity(.state) * 3 / 4)
        store = SharedStateStore(limits: limits)
        if let bytes = try? segment.blobs.read(.state), let restored = try? SharedStateStore.restoring(persisted: bytes, limits: limits) {
            store = restored
        }
    }

    static var now: Double { Date().timeIntervalSince1970 }

    /// Runs until SIGTERM/SIGINT.
    public static func run(_ o: ControlWorkerOptions) throws {
        try ControlWorker(o).serve()
    }

    func serve() throws {
        let status = segment.workers[o.index]
        status.pid = getpid()
        let context = try ZMQContext()
        defer { context.close() }
        router = try context.socket(.router, options: ControlDefaults.serverSocketOptions)
        defer { router.close() }
        if let fd = o.listenFD { try router.set(.useFileDescriptor(fd)) }
        _ = try router.bind(o.tcpEndpoint)
        if o.listenFD != nil { try router.set(.useFileDescriptor(-1)) }
        _ = try router.bind(o.ipcEndpoint)
        publisher = try context.socket(.xpub, options: ZMQDefaults.socketOptions + [.xpubVerbose(true)])
        defer { publisher.close() }
        if let fd = o.stateListenFD { try publisher.set(.useFileDescriptor(fd)) }
        _ = try publisher.bind(o.stateTCPEndpoint)
        if o.stateListenFD != nil { try publisher.set(.useFileDescriptor(-1)) }
        _ = try publisher.bind(o.stateIPCEndpoint)
        status.state = .ready

        var lastHousekeeping = 0.0
        var lastPublish = 0.0
        while qv_signal_stop_requested() == 0 {
            var items: [ZMQPollItem] = [.socket(router), .socket(publisher)]
            if let fd = o.doneFD { items.append(.fileDescriptor(fd)) }
            let timeout = pending.isEmpty || o.doneFD != nil ? 20 : 1
            let ready = try ZMQ.poll(items, timeout: .milliseconds(timeout))
            if ready.count > 2 && ready[2].contains(.readable), let fd = o.doneFD {
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
            if t - lastPublish >= 1 / o.statePublishRate, let delta = store.takeDelta() {
                _ = try publisher.trySendMultipart(StateMessage.delta(delta).frames(now: t))
                lastPublish = t
            }
            status.advance()
        }
        status.state = .exited
    }

    // MARK: requests

    func reply(_ identity: [UInt8], _ r: CommandReply) {
        _ = try? router.trySendMultipart([identity] + r.frames(signedWith: signer))
    }

    func handle(_ message: [[UInt8]]) {
        guard let identity = message.first else { return }
        let now = Self.now
        let request: CommandRequest
        switch verifier.verify(frames: Array(message.dropFirst()), now: now) {
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
                try post(EngineCommand(kind: .clientLeft, client: client), identity: identity, requestID: request.id)
            default:
                guard let engine = engineCommand(command, client: client) else {
                    throw ControlError(.internal, "command '\(request.command)' has no engine form")
                }
                try post(engine, identity: identity, requestID: request.id)
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

    /// The engine's form of a command it applies; nil for those the control worker answers itself.
    func engineCommand(_ c: ParsedCommand, client: String) -> EngineCommand? {
        switch c {
        case .play: return EngineCommand(kind: .play, client: client)
        case .pause: return EngineCommand(kind: .pause, client: client)
        case .reset: return EngineCommand(kind: .reset, client: client)
        case .renew: return EngineCommand(kind: .renew, client: client)
        case .step(let n): return EngineCommand(kind: .step, client: client, count: n)
        case .get(let names): return EngineCommand(kind: .get, client: client, names: names?.map(\.rawValue))
        case .set(let values):
            return EngineCommand(kind: .set, client: client, values: Dictionary(uniqueKeysWithValues: values.map { ($0.key.rawValue, $0.value) }))
        case .interactionSet(let i, let lease): return EngineCommand(kind: .interactionSet, client: client, interaction: InteractionSpec(i, lease: lease))
        case .interactionRemove(let id): return EngineCommand(kind: .interactionRemove, client: client, id: id)
        case .interactionList: return EngineCommand(kind: .interactionList, client: client)
        case .list, .bye, .stateGet, .stateUpdate, .stateLock, .stateUnlock: return nil
        }
    }

    /// Posts a command into the ring and wakes the engine; the reply goes out when it is applied.
    func post(_ command: EngineCommand, identity: [UInt8]?, requestID: String) throws(ControlError) {
        let seq: UInt64
        do { seq = try segment.commands.post(command.encoded()) } catch {
            switch error {
            case .full: throw ControlError(.unavailable, "the engine is not taking commands (\(segment.layout.commandSlots) are waiting); is it running?")
            case .tooLarge(let bytes, let capacity):
                throw ControlError(.invalidArgument, "the command is \(bytes) bytes once encoded, more than the \(capacity) the engine takes (fewer particles?)")
            }
        }
        if let fd = o.postedFD { var one: UInt64 = 1; _ = write(fd, &one, 8) }
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
            } else if now - p.postedAt > o.commandTimeout {
                pending[seq] = nil
                reply(p.identity, .failure(ControlError(.timeout, "the engine did not apply the command within \(o.commandTimeout) s (it may still, once it runs again)", requestID: p.requestID)))
            }
        }
    }

    func engineReply(_ r: CommandResult, requestID: String) -> CommandReply {
        guard let reply = try? JSONDecoder().decode(EngineReply.self, from: Data(r.reply)) else {
            return .failure(ControlError(.internal, "unreadable engine reply", requestID: requestID))
        }
        if let error = reply.error { return .failure(ControlError(.refused, error, requestID: requestID)) }
        var result: [String: JSONValue] = [:]
        if let text = reply.result, let value = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)), case .object(let object) = value {
            result = object
        }
        result["applied_step"] = .number(Double(reply.appliedStep))
        return .success(id: requestID, .object(result))
    }

    // MARK: sessions

    func clientLeft(_ client: String) {
        _ = sessions.remove(client)
        limiter.remove(client: client)
        try? changeStore { (s: inout SharedStateStore) throws(ControlError) in s.clientLeft(client) }
    }

    func housekeeping(now: Double) {
        for client in sessions.expired(now: now, lease: o.sessionLease) {
            clientLeft(client)
            try? post(EngineCommand(kind: .clientLeft, client: client), identity: nil, requestID: "")
        }
        var next = store
        next.expire(now: now)
        try? commit(next)
        limiter.forgetIdle(now: now)
    }
}
