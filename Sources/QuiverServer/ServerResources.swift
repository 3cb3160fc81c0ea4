import CQuiverOS
import Foundation
import QuiverConfig
import QuiverSharedMemory
import QuiverSupervisor
import QuiverWire
import QuiverWorkers
import QuiverZMQ

#if canImport(Glibc)
import Glibc
#endif

/// The resources of one run: the locked run directory, the shared-memory segment, the public
/// listening sockets the worker roles declare (bound here and handed to the workers by name, so a
/// restarted worker keeps its port), the eventfds the roles share and the connection file.
/// `close` releases all of them and removes every file they made.
public final class ServerResources {
    public let directory: RunDirectory
    public let segment: SharedSegment
    public let configuration: RunConfiguration
    /// The listening sockets, by name, and their `ipc://` twins in the run directory.
    public let listeners: [ListenerName: Listener]
    public let ipcEndpoints: [ListenerName: String]
    /// The eventfds the roles share, by name.
    public let events: [EventName: Int32]
    public let connection: ConnectionInfo
    private var closed = false

    /// Takes the run directory (throws `SupervisorError.runDirectoryInUse` when a live server
    /// holds it), removes stale segments of dead runs, creates the segment with room for
    /// `atomCapacity` atoms, binds the sockets every role in `WorkerRoles.all` declares, makes
    /// their eventfds and writes the connection file.
    public init(runDirectory: String, segmentName: String, atomCapacity: Int, configuration: RunConfiguration) throws {
        SharedSegment.removeStale(prefix: "quiver-run-")
        self.configuration = configuration
        let directory = try RunDirectory.acquire(runDirectory)
        var undo: [() -> Void] = [{ directory.abandon() }]
        do {
            let segment = try SharedSegment.create(name: segmentName, layout: SegmentLayout(atomCapacity: atomCapacity))
            undo.append { try? segment.unlink() }
            var listeners: [ListenerName: Listener] = [:]
            var ipc: [ListenerName: String] = [:]
            var endpoints = ["control-socket": directory.controlSocketPath]
            for declared in WorkerRoles.listeners(configuration) {
                let l = try Listener(host: configuration.address, port: declared.port)
                undo.append { l.close() }
                listeners[declared.name] = l
                ipc[declared.name] = try ZMQDefaults.ipcEndpoint(path: directory.path + "/\(declared.name).ipc")
                endpoints[declared.name.rawValue] = l.endpoint
                endpoints["\(declared.name)-ipc"] = ipc[declared.name]
            }
            var events: [EventName: Int32] = [:]
            for name in WorkerRoles.events {
                let fd = qv_os_eventfd()
                guard fd >= 0 else { throw SupervisorError.system(operation: "eventfd", path: name.rawValue, errno: errno) }
                undo.append { Glibc.close(fd) }
                events[name] = fd
            }
            let connection = ConnectionInfo(
                protocolVersion: Int(WireFormat.version), runDirectory: directory.path, supervisorPID: getpid(),
                endpoints: endpoints, segment: segmentName, key: ConnectionInfo.randomKey())
            try directory.writeConnectionFile(connection)
            self.directory = directory
            self.segment = segment
            self.listeners = listeners
            ipcEndpoints = ipc
            self.events = events
            self.connection = connection
        } catch {
            for u in undo.reversed() { u() }
            throw error
        }
    }

    /// The TCP port of listener `name` (0 when no role declares it).
    public func port(_ name: ListenerName) -> Int { listeners[name]?.port ?? 0 }

    /// The names of every file a run makes in its run directory besides the lock: the connection
    /// and topology files (and their temporaries), the control socket and each listener's ipc socket.
    public static func runFileNames(_ configuration: RunConfiguration) -> Set<String> {
        Set(["connection.json", "connection.json.tmp", "control.sock", "topology.bin", "topology.bin.tmp"]
            + WorkerRoles.listeners(configuration).map { "\($0.name).ipc" })
    }

    /// How the supervisor starts `roles` (status-table entries `firstIndex`...): `quiver worker ROLE
    /// LAUNCH`, each handed the listeners and eventfds its role declares, by name.
    public func workerSpecs(_ roles: [any Worker.Type], firstIndex: Int) throws -> [WorkerSpec] {
        try roles.enumerated().map { try workerSpec($0.element, index: firstIndex + $0.offset) }
    }

    /// The one place descriptors are handed over: the k-th passed descriptor becomes 3 + k in the
    /// worker, and the launch names each by that number.
    func workerSpec(_ role: any Worker.Type, index: Int) throws -> WorkerSpec {
        var passed: [Int32] = []
        var handed: [ListenerName: HandedListener] = [:]
        for declared in role.listeners(configuration) {
            guard let l = listeners[declared.name], let ipc = ipcEndpoints[declared.name] else { continue }
            handed[declared.name] = HandedListener(fd: 3 + Int32(passed.count), tcpEndpoint: l.endpoint, ipcEndpoint: ipc)
            passed.append(l.fd)
        }
        var handedEvents: [EventName: Int32] = [:]
        for name in role.events {
            guard let fd = events[name] else { continue }
            handedEvents[name] = 3 + Int32(passed.count)
            passed.append(fd)
        }
        let launch = WorkerLaunch(role: role.role, segment: segment.name, index: index, supervisorPID: getpid(),
                                  runDirectory: directory.path, listeners: handed, events: handedEvents, configuration: configuration)
        return WorkerSpec(role: role.role, arguments: ["worker", role.role, try launch.encoded()], watchdog: configuration.watchdog,
                          exitEndsRun: role.exitEndsRun, essential: role.ownsDynamics, passedDescriptors: passed)
    }

    /// Closes the sockets and eventfds, removes the ipc socket files, the segment, the connection
    /// and topology files and the control socket, and unlocks the run directory. Idempotent.
    public func close() { close(abandoning: false) }

    /// `close`, after a run that failed before it started: a run directory this run created is
    /// removed as well (`RunDirectory.abandon`).
    public func abandon() { close(abandoning: true) }

    private func close(abandoning: Bool) {
        guard !closed else { return }
        closed = true
        for l in listeners.values { l.close() }
        for fd in events.values { Glibc.close(fd) }
        for name in listeners.keys { unlink(directory.path + "/\(name).ipc") }
        unlink(directory.topologyFilePath + ".tmp")
        try? segment.unlink()
        if abandoning { directory.abandon() } else { directory.release() }
    }

    deinit { close() }
}

/// A listening TCP socket the supervisor owns and hands to a worker.
public struct Listener: Sendable {
    public let fd: Int32
    public let port: Int
    public let endpoint: String

    public init(host: String, port: Int) throws {
        var bound: Int32 = 0
        let fd = qv_os_tcp_listen(host, Int32(port), &bound)
        guard fd >= 0 else {
            throw SupervisorError.system(operation: "listen on", path: "\(host):\(port)", errno: errno)
        }
        self.fd = fd
        self.port = Int(bound)
        endpoint = host.contains(":") ? "tcp://[\(host)]:\(bound)" : "tcp://\(host):\(bound)"
    }

    public func close() { Glibc.close(fd) }
}
