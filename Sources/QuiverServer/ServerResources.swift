import CQuiverOS
import Foundation
import QuiverSharedMemory
import QuiverSupervisor
import QuiverWire
import QuiverWorkers
import QuiverZMQ

#if canImport(Glibc)
import Glibc
#endif

/// Where a server listens and how its workers behave: the part `quiver run` and an embedding
/// `Session` share (docs/configuration.md names the same settings).
public struct ServerSettings: Sendable {
    /// Address of every TCP socket (loopback by default).
    public var address = "127.0.0.1"
    /// TCP ports of the frame and command sockets; 0: any free port (written to connection.json).
    public var port = 0
    public var controlPort = 0
    /// Frame codec for clients: "raw", "lossless" or "quantized", and the quantisation step (nm).
    public var codec = "quantized"
    public var precision = 0.001
    /// Seconds a worker may go without progress before it is restarted; nil: no watchdog.
    public var watchdog: Double? = 30
    /// Seconds a worker gets after SIGTERM before SIGKILL.
    public var grace = 5.0
    /// Seconds without a request after which a control client has left.
    public var sessionLease = 10.0

    public init() {}
}

/// The resources of one run: the locked run directory, the shared-memory segment, the public
/// listening sockets (bound here and handed to the workers, so a restarted worker keeps its port),
/// the engine <-> control eventfds and the connection file. `close` releases all of them and
/// removes every file they made.
public final class ServerResources {
    public let directory: RunDirectory
    public let segment: SharedSegment
    public let settings: ServerSettings
    public let frames: Listener
    public let heartbeat: Listener
    public let control: Listener
    public let state: Listener
    public let framesIPC: String
    public let heartbeatIPC: String
    public let controlIPC: String
    public let stateIPC: String
    /// eventfds: "commands posted" (control -> engine), "commands done" (engine -> control) and
    /// "frame published" (engine -> broadcaster).
    public let posted: Int32
    public let done: Int32
    public let published: Int32
    public let connection: ConnectionInfo
    private var closed = false

    static let ipcNames = ["frames", "heartbeat", "control", "state"]

    /// Takes the run directory (throws `SupervisorError.runDirectoryInUse` when a live server
    /// holds it), removes stale segments of dead runs, creates the segment with room for
    /// `atomCapacity` atoms, binds the sockets and writes the connection file.
    public init(runDirectory: String, segmentName: String, atomCapacity: Int, settings: ServerSettings) throws {
        SharedSegment.removeStale(prefix: "quiver-run-")
        self.settings = settings
        let directory = try RunDirectory.acquire(runDirectory)
        var undo: [() -> Void] = [{ directory.release() }]
        do {
            let segment = try SharedSegment.create(name: segmentName, layout: SegmentLayout(atomCapacity: atomCapacity))
            undo.append { try? segment.unlink() }
            var listeners: [Listener] = []
            for port in [settings.port, 0, settings.controlPort, 0] {
                let l = try Listener(host: settings.address, port: port)
                listeners.append(l)
                undo.append { l.close() }
            }
            let framesIPC = try ZMQDefaults.ipcEndpoint(.frames, in: directory.path)
            let heartbeatIPC = try ZMQDefaults.ipcEndpoint(.heartbeat, in: directory.path)
            let controlIPC = try ZMQDefaults.ipcEndpoint(path: directory.path + "/control.ipc")
            let stateIPC = try ZMQDefaults.ipcEndpoint(path: directory.path + "/state.ipc")
            let events = (0..<3).map { _ in qv_os_eventfd() }
            guard events.allSatisfy({ $0 >= 0 }) else {
                let e = errno
                for fd in events where fd >= 0 { Glibc.close(fd) }
                throw SupervisorError.system(operation: "eventfd", path: "", errno: e)
            }
            let (posted, done, published) = (events[0], events[1], events[2])
            undo.append { for fd in events { Glibc.close(fd) } }
            let connection = ConnectionInfo(
                protocolVersion: Int(WireFormat.version), runDirectory: directory.path, supervisorPID: getpid(),
                endpoints: ["control-socket": directory.controlSocketPath,
                            "frames": listeners[0].endpoint, "frames-ipc": framesIPC,
                            "heartbeat": listeners[1].endpoint, "heartbeat-ipc": heartbeatIPC,
                            "control": listeners[2].endpoint, "control-ipc": controlIPC,
                            "state": listeners[3].endpoint, "state-ipc": stateIPC],
                segment: segmentName, key: ConnectionInfo.randomKey())
            try directory.writeConnectionFile(connection)
            self.directory = directory
            self.segment = segment
            (frames, heartbeat, control, state) = (listeners[0], listeners[1], listeners[2], listeners[3])
            (self.framesIPC, self.heartbeatIPC, self.controlIPC, self.stateIPC) = (framesIPC, heartbeatIPC, controlIPC, stateIPC)
            (self.posted, self.done, self.published) = (posted, done, published)
            self.connection = connection
        } catch {
            for u in undo.reversed() { u() }
            throw error
        }
    }

    /// The broadcaster, heartbeat and control workers (status entries `firstIndex`...), started
    /// as `executable worker --role ...`. `common` is appended to every worker's arguments.
    public func serviceWorkers(firstIndex: Int, common: [String] = []) -> [WorkerSpec] {
        let s = settings
        func arguments(_ role: String, _ index: Int, _ extra: [String]) -> [String] {
            workerArguments(role: role, index: index) + extra + common
        }
        return [
            WorkerSpec(role: "broadcaster",
                       arguments: arguments("broadcaster", firstIndex, ["--tcp-endpoint", frames.endpoint, "--listen-fd", "3", "--ipc-endpoint", framesIPC,
                                                                        "--codec", s.codec, "--precision", "\(s.precision)",
                                                                        "--topology-file", directory.topologyFilePath, "--frame-fd", "4"]),
                       watchdog: s.watchdog, passedDescriptors: [frames.fd, published]),
            WorkerSpec(role: "heartbeat",
                       arguments: arguments("heartbeat", firstIndex + 1, ["--tcp-endpoint", heartbeat.endpoint, "--listen-fd", "3", "--ipc-endpoint", heartbeatIPC]),
                       watchdog: s.watchdog, passedDescriptors: [heartbeat.fd]),
            // The control worker reads the signing key from the connection file (mode 0600), never
            // from its arguments, which every user can read in /proc.
            WorkerSpec(role: "control",
                       arguments: arguments("control", firstIndex + 2, ["--tcp-endpoint", control.endpoint, "--listen-fd", "3", "--ipc-endpoint", controlIPC,
                                                                        "--state-tcp-endpoint", state.endpoint, "--state-listen-fd", "4", "--state-ipc-endpoint", stateIPC,
                                                                        "--connection-file", directory.connectionFilePath,
                                                                        "--topology-file", directory.topologyFilePath,
                                                                        "--posted-fd", "5", "--done-fd", "6", "--session-lease", "\(s.sessionLease)"]),
                       watchdog: s.watchdog, passedDescriptors: [control.fd, state.fd, posted, done]),
        ]
    }

    /// `worker --role ROLE --segment ... --index INDEX --supervisor-pid ...`: how every worker of
    /// this run is started (status-table entry `index`).
    public func workerArguments(role: String, index: Int) -> [String] {
        ["worker", "--role", role, "--segment", segment.name, "--index", "\(index)", "--supervisor-pid", "\(getpid())"]
    }

    /// Closes the sockets and eventfds, removes the ipc socket files, the segment, the connection
    /// and topology files and the control socket, and unlocks the run directory. Idempotent.
    public func close() {
        guard !closed else { return }
        closed = true
        frames.close(); heartbeat.close(); control.close(); state.close()
        Glibc.close(posted); Glibc.close(done); Glibc.close(published)
        for name in Self.ipcNames { unlink(directory.path + "/\(name).ipc") }
        unlink(directory.topologyFilePath + ".tmp")
        try? segment.unlink()
        directory.release()
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
