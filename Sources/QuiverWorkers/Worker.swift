import CQuiverOS
import Foundation
import QuiverConfig
import QuiverLog
import QuiverModel
import QuiverSharedMemory
import QuiverZMQ

#if canImport(Glibc)
import Glibc
#endif

/// One role of a server's worker processes (the engine, the broadcaster, the control worker, the
/// heartbeat, ...), as a type.
///
/// A role declares what it needs from the supervisor by name: the TCP listening sockets it serves
/// (bound by the supervisor, so a restarted worker keeps its port; each has an `ipc://` twin in the
/// run directory) and the eventfds it shares with other roles. The supervisor starts it as
/// `quiver worker ROLE LAUNCH` with one `WorkerLaunch` (JSON): the run's whole `RunConfiguration`
/// as it is, the segment, its status-table entry and the handed-over descriptors by name.
///
/// The lifecycle follows swift-service-lifecycle's `Service`: one `run() async throws` that returns
/// when its task is cancelled. SIGTERM/SIGINT (recorded by an async-signal-safe handler) cancel
/// it; a worker whose loop is synchronous checks `context.stopRequested` on every pass, one built
/// on async code (a server on swift-nio, a `ServiceGroup`) simply honours cancellation. The
/// supervisor stops roles in reverse start order (SIGTERM, a grace period, SIGKILL).
/// Readiness and progress go to the worker's status entry (`context.ready()`,
/// `context.advance()`): the supervisor's watchdog kills a worker whose progress stops.
///
/// Adding a role: a type conforming to `Worker`, and one line in `WorkerRoles.all`.
public protocol Worker {
    /// The role's name: status table, logs, `QUIVER_FAULT`, `quiver worker ROLE`.
    static var role: String { get }
    /// The TCP listening sockets (with their ipc twins) this role serves, with the port each is
    /// bound to (0: any free port).
    static func listeners(_ configuration: RunConfiguration) -> [ListenerDeclaration]
    /// The eventfds this role shares with other roles (both sides name the same one).
    static var events: [EventName] { get }
    /// Whether the role owns the dynamics (an embedding `Session`'s host program takes its place).
    static var ownsDynamics: Bool { get }
    /// Whether a clean exit (status 0) ends the run (the engine after its steps).
    static var exitEndsRun: Bool { get }

    /// Opens what the role needs (the segment is already open in `context`); binds nothing yet.
    init(context: WorkerContext) throws
    /// Serves until cancelled (`context.stopRequested`); reports ready and progress through `context`.
    func run() async throws
}

extension Worker {
    public static func listeners(_ configuration: RunConfiguration) -> [ListenerDeclaration] { [] }
    public static var events: [EventName] { [] }
    public static var ownsDynamics: Bool { false }
    public static var exitEndsRun: Bool { false }
}

/// The roles a server runs, in start order (stopped in reverse). One line per role.
public enum WorkerRoles {
    public static var all: [any Worker.Type] {
        [
            EngineWorker.self,
            Broadcaster.self,
            Heartbeat.self,
            ControlWorker.self,
        ]
    }

    /// The role named `name`.
    public static func named(_ name: String) -> (any Worker.Type)? { all.first { $0.role == name } }

    /// The roles an embedding session starts: all but the one that owns the dynamics (the host is it).
    public static var services: [any Worker.Type] { all.filter { !$0.ownsDynamics } }

    /// Every listener the roles declare, each once (first declaration wins), in role order.
    public static func listeners(_ configuration: RunConfiguration) -> [ListenerDeclaration] {
        var seen = Set<ListenerName>()
        return all.flatMap { $0.listeners(configuration) }.filter { seen.insert($0.name).inserted }
    }

    /// Every eventfd the roles share, each once, in role order.
    public static var events: [EventName] {
        var seen = Set<EventName>()
        return all.flatMap { $0.events }.filter { seen.insert($0).inserted }
    }
}

/// The name of a descriptor the supervisor hands to workers, typed by its kind (`ListenerName`,
/// `EventName`) so a listener's name is never taken for an eventfd's.
public struct HandoverName<Kind>: RawRepresentable, Hashable, Codable, CodingKeyRepresentable, Sendable, ExpressibleByStringLiteral,
    CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }
}

public enum ListenerKind {}
public enum EventKind {}

/// The name of a listening socket a role serves; also its key in connection.json (`NAME` for the
/// TCP endpoint, `NAME-ipc` for the ipc one) and its ipc socket file (`NAME.ipc`).
public typealias ListenerName = HandoverName<ListenerKind>

/// The name of an eventfd that roles share (a counter one role writes and another sleeps on).
public typealias EventName = HandoverName<EventKind>

extension HandoverName where Kind == ListenerKind {
    /// Compressed frames and topology (the broadcaster's XPUB).
    public static let frames: ListenerName = "frames"
    /// Pings and the health summary (the heartbeat's REP).
    public static let heartbeat: ListenerName = "heartbeat"
    /// Signed commands (the control worker's ROUTER).
    public static let control: ListenerName = "control"
    /// The shared state (the control worker's XPUB).
    public static let state: ListenerName = "state"
}

extension HandoverName where Kind == EventKind {
    /// Control -> engine: commands were posted to the ring.
    public static let commandsPosted: EventName = "commands-posted"
    /// Engine -> control: commands were applied.
    public static let commandsDone: EventName = "commands-done"
    /// Engine -> broadcaster: a frame was published.
    public static let framePublished: EventName = "frame-published"
}

/// A listening socket a role declares: its name and the TCP port to bind (0: any free port).
public struct ListenerDeclaration: Sendable, Equatable {
    public var name: ListenerName
    public var port: Int
    public init(_ name: ListenerName, port: Int = 0) {
        self.name = name
        self.port = port
    }
}

/// A listening socket as handed to a worker: the descriptor in the worker's process and the
/// endpoints to bind (the TCP one through the descriptor, the ipc one anew).
public struct HandedListener: Codable, Sendable, Equatable {
    /// The descriptor in the worker (3 + its position among the handed-over descriptors).
    public var fd: Int32
    public var tcpEndpoint: String
    public var ipcEndpoint: String

    public init(fd: Int32, tcpEndpoint: String, ipcEndpoint: String) {
        self.fd = fd
        self.tcpEndpoint = tcpEndpoint
        self.ipcEndpoint = ipcEndpoint
    }
}

/// Everything a worker process is started with, in one piece (the `LAUNCH` argument of
/// `quiver worker ROLE LAUNCH`, JSON). It holds no secret: the control worker reads the signing key
/// from the connection file (mode 0600), never from its arguments, which every user can read.
public struct WorkerLaunch: Codable, Sendable, Equatable {
    public var role: String
    /// The run's shared-memory segment (in /dev/shm).
    public var segment: String
    /// This worker's entry in the status table.
    public var index: Int
    /// The supervisor: the worker exits when it dies.
    public var supervisorPID: Int32
    /// The run directory (connection.json, topology.bin, the ipc sockets).
    public var runDirectory: String
    /// Handed-over listening sockets and eventfds, by name.
    public var listeners: [ListenerName: HandedListener]
    public var events: [EventName: Int32]
    /// The run's configuration, as it is.
    public var configuration: RunConfiguration

    public init(role: String, segment: String, index: Int, supervisorPID: Int32, runDirectory: String,
                listeners: [ListenerName: HandedListener], events: [EventName: Int32], configuration: RunConfiguration) {
        self.role = role
        self.segment = segment
        self.index = index
        self.supervisorPID = supervisorPID
        self.runDirectory = runDirectory
        self.listeners = listeners
        self.events = events
        self.configuration = configuration
    }

    public func encoded() throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return String(decoding: try e.encode(self), as: UTF8.self)
    }

    public static func decode(_ text: String) throws -> WorkerLaunch {
        do { return try JSONDecoder().decode(WorkerLaunch.self, from: Data(text.utf8)) } catch {
            throw WorkerError.badLaunch("\(error)")
        }
    }
}

/// A worker could not start.
public enum WorkerError: Error, Equatable, CustomStringConvertible {
    /// `quiver worker` was given a role no type in `WorkerRoles` has.
    case unknownRole(String, known: [String])
    /// The launch document is not one (`quiver worker` is started by the supervisor, not by hand).
    case badLaunch(String)
    /// The role needs a handed-over descriptor the launch does not name.
    case missingDescriptor(role: String, name: String)

    public var description: String {
        switch self {
        case .unknownRole(let r, let known): return "unknown worker role '\(r)' (known: \(known.joined(separator: ", ")))"
        case .badLaunch(let m): return "not a worker launch document (workers are started by the supervisor): \(m)"
        case .missingDescriptor(let role, let name): return "worker \(role) needs the descriptor '\(name)', which its launch does not hand over"
        }
    }
}

/// What a worker process has while it runs: its launch, the open segment, its status entry,
/// the handed-over descriptors by name, and the stop request.
public final class WorkerContext {
    public let launch: WorkerLaunch
    public var configuration: RunConfiguration { launch.configuration }
    public let segment: SharedSegment
    public let status: WorkerStatus
    /// A fault injected for reliability tests (`QUIVER_FAULT=ROLE:MODE`); nil in production.
    public let fault: Fault?
    /// This worker's logger (label `quiver.ROLE`), writing where the configuration's [log] says.
    public let logger: Logger

    public init(launch: WorkerLaunch, segment: SharedSegment, fault: Fault? = nil, logger: Logger? = nil) {
        self.launch = launch
        self.segment = segment
        status = segment.workers[launch.index]
        self.fault = fault
        self.logger = logger ?? Logger(label: "quiver.\(launch.role)")
    }

    /// Whether the worker must stop: its task was cancelled, or SIGTERM or SIGINT arrived.
    public var stopRequested: Bool { Task.isCancelled || qv_signal_stop_requested() != 0 }

    /// The run directory's topology file (`TopologyFile`).
    public var topologyFile: String { launch.runDirectory + "/topology.bin" }
    /// The run directory's connection file.
    public var connectionFile: String { launch.runDirectory + "/connection.json" }

    /// The listening socket `name`, handed over by the supervisor.
    public func listener(_ name: ListenerName) throws -> HandedListener {
        guard let l = launch.listeners[name] else { throw WorkerError.missingDescriptor(role: launch.role, name: name.rawValue) }
        return l
    }

    /// The eventfd `name`, or nil when the launch hands none over (the worker then polls).
    public func event(_ name: EventName) -> Int32? { launch.events[name] }

    /// Marks the worker ready in the status table. With the `hang` fault injected, it then makes no
    /// progress until asked to stop (the watchdog's test), and the worker's loop ends at once.
    public func ready() {
        status.state = .ready
        if fault == .hang { while !stopRequested { usleep(100_000) } }
    }

    /// Counts one unit of progress (the watchdog's counter) and stamps the heartbeat.
    public func advance() { status.advance() }

    /// Marks the worker exited in the status table (after its loop ended).
    public func exited() { status.state = .exited }
}

extension ZMQSocket {
    /// Binds a handed-over listener: the TCP endpoint through its descriptor (ZMQ_USE_FD, so a
    /// restarted worker serves the same port), then the ipc endpoint anew.
    public func bind(_ listener: HandedListener) throws {
        try set(.useFileDescriptor(listener.fd))
        _ = try bind(listener.tcpEndpoint)
        try set(.useFileDescriptor(-1))
        _ = try bind(listener.ipcEndpoint)
    }
}

/// Starts a worker process: checks the launch, arms the parent-death signal and the stop
/// handlers, applies an injected fault, opens the segment and runs the role.
public enum WorkerProcess {
    /// Runs role `role` with the launch document `launchText` on this (the main) thread until the
    /// worker stopped. Throws `WorkerError` for an unknown role or a bad launch, and whatever the
    /// role throws. The descriptors open at entry (what the process inherited, before the Swift
    /// runtime opens its own) are logged at debug level.
    ///
    /// The parent-death signal is armed here, on the main thread, which lives as long as the
    /// process: Linux keeps it per thread, and a thread of the concurrency pool that armed it may
    /// exit while idle, leaving an orphan behind when the supervisor dies.
    public static func main(role: String, launch launchText: String) throws {
        let inherited = openDescriptors()
        guard let type = WorkerRoles.named(role) else { throw WorkerError.unknownRole(role, known: WorkerRoles.all.map { $0.role }) }
        let launch = try WorkerLaunch.decode(launchText)
        guard launch.role == role else { throw WorkerError.badLaunch("the launch is for role '\(launch.role)', not '\(role)'") }
        qv_signal_install_stop_handlers()
        try launch.configuration.bootstrapLogging()
        guard qv_os_die_with_parent(SIGTERM, launch.supervisorPID) == 0 else {
            throw WorkerError.badLaunch("the supervisor (pid \(launch.supervisorPID)) is gone")
        }
        let fault = Fault.injected(into: role)
        if fault == .exit { exit(3) }
        if fault == .ignoreTerm { signal(SIGTERM, SIG_IGN) }
        let segment = try SharedSegment.open(name: launch.segment)
        let context = WorkerContext(launch: launch, segment: segment, fault: fault)
        context.status.pid = getpid()
        context.logger.debug("worker \(role) started with descriptors \(inherited.map { "\($0.fd) \($0.target)" }.joined(separator: ", "))",
                             metadata: ["worker.inherited_fds": .array(inherited.map { .stringConvertible($0.fd) })])
        // Made here, run only by the task below: handed over, never shared.
        let worker = Handoff(try type.init(context: context))
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let task = Task {
            do { try await worker.value.run() } catch { outcome.error = error }
            done.signal()
        }
        // The signal handler only records the signal: this thread turns it into cancellation
        // while the worker's task runs on the concurrency pool.
        while done.wait(timeout: .now() + .milliseconds(20)) == .timedOut {
            if qv_signal_stop_requested() != 0 { task.cancel() }
        }
        if let error = outcome.error {
            if error is any FatalWorkerError {
                context.logger.critical("\(error)")
                FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
                Foundation.exit(WorkerExitStatus.fatal)
            }
            throw error
        }
        context.exited()
    }

    /// The descriptors this process has open, each with what it refers to (`/proc/self/fd`).
    public static func openDescriptors() -> [(fd: Int32, target: String)] {
        let listing = "/proc/self/fd"
        let own = "/proc/\(getpid())/fd"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: listing)) ?? []
        return names.compactMap { Int32($0) }.sorted().compactMap { fd in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(listing)/\(fd)"), target != own else { return nil }
            return (fd, target)
        }
    }
}

/// An error after which restarting the worker cannot help: the process exits with
/// `WorkerExitStatus.fatal` and the supervisor stops the run (saving the engine's state) instead of
/// restarting it.
public protocol FatalWorkerError: Error {}

/// A value made on one task and used only by another from then on.
private final class Handoff<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// How a worker ended, handed from its task to the blocked main thread.
private final class Outcome: @unchecked Sendable {
    var error: (any Error)?
}
