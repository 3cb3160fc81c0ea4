import Foundation
import QuiverClient
import QuiverControl
import QuiverEngine
import QuiverServer
import QuiverSharedMemory
import QuiverWire
import Testing

/// A dynamics of the test's own: atoms on circles, positions known in closed form at every step.
final class Orbits: Dynamics {
    let name = "orbits"
    let atomCount: Int
    private(set) var step = 0
    var time: Double { Double(step) * 0.002 }
    let box = Box(cube: 8)
    let types: [Int32]
    let typeNames = ["C", "O"]
    let masses: [Float]
    private var x: [Float], y: [Float], z: [Float]
    var bonds: [(Int, Int)]? { (1..<atomCount).map { ($0 - 1, $0) } }

    init(atoms: Int) {
        atomCount = atoms
        types = (0..<atoms).map { Int32($0 % 2) }
        masses = types.map { $0 == 0 ? 12.011 : 15.999 }
        x = Array(repeating: 0, count: atoms); y = x; z = x
        place()
    }

    static func position(atom i: Int, step: Int) -> SIMD3<Float> {
        let angle = 0.01 * Double(step) + Double(i) * 0.7
        let r = 1 + 0.05 * Double(i % 7)
        return SIMD3(Float(4 + r * cos(angle)), Float(4 + r * sin(angle)), Float(1 + 0.2 * Double(i % 11)))
    }

    private func place() {
        for i in 0..<atomCount {
            let p = Self.position(atom: i, step: step)
            x[i] = p.x; y[i] = p.y; z[i] = p.z
        }
    }

    func advance(steps: Int, energy: Bool) throws {
        step += steps
        place()
    }

    func energies() throws -> Energies { Energies(step: step, potential: -Double(atomCount), kinetic: 0.5, temperature: 300) }

    func withPositions<R>(_ body: (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try x.withUnsafeBufferPointer { px in try y.withUnsafeBufferPointer { py in try z.withUnsafeBufferPointer { pz in try body(px, py, pz) } } }
    }
}

/// A dynamics of the test's own that takes interactive forces: free, damped particles moved only
/// by the clients' pulls (InteractiveForces' plain-buffer API).
final class Drifters: Dynamics {
    let name = "drifters"
    let atomCount: Int
    private(set) var step = 0
    var time: Double { Double(step) * 0.001 }
    let box = Box(cube: 6)
    let types: [Int32]
    let typeNames = ["Ne"]
    let masses: [Float]
    let interactions = InteractiveForces()
    var interactiveForces: InteractiveForces? { interactions }
    private var x: [Float], y: [Float], z: [Float]
    private var vx: [Float], vy: [Float], vz: [Float]
    private var fx: [Float], fy: [Float], fz: [Float]

    init(atoms: Int) throws {
        atomCount = atoms
        types = Array(repeating: 0, count: atoms)
        masses = Array(repeating: 20, count: atoms)
        x = (0..<atoms).map { 1 + 0.1 * Float($0) }; y = Array(repeating: 1, count: atoms); z = y
        vx = Array(repeating: 0, count: atoms); vy = vx; vz = vx; fx = vx; fy = vx; fz = vx
        try interactions.prepare(masses: masses)
    }

    func advance(steps: Int, energy: Bool) throws {
        let dt: Float = 0.001
        for _ in 0..<steps {
            for i in 0..<atomCount { fx[i] = 0; fy[i] = 0; fz[i] = 0 }
            x.withUnsafeBufferPointer { px in y.withUnsafeBufferPointer { py in z.withUnsafeBufferPointer { pz in
                fx.withUnsafeMutableBufferPointer { gx in fy.withUnsafeMutableBufferPointer { gy in fz.withUnsafeMutableBufferPointer { gz in
                    interactions.addForces(x: px, y: py, z: pz, fx: gx, fy: gy, fz: gz, box: box)
                } } }
            } } }
            for i in 0..<atomCount {
                vx[i] = 0.98 * vx[i] + fx[i] / masses[i] * dt; x[i] += vx[i] * dt
                vy[i] = 0.98 * vy[i] + fy[i] / masses[i] * dt; y[i] += vy[i] * dt
                vz[i] = 0.98 * vz[i] + fz[i] / masses[i] * dt; z[i] += vz[i] * dt
            }
            step += 1
        }
    }

    func energies() throws -> Energies { Energies(step: step, potential: 0, kinetic: 0, temperature: 0) }

    func withPositions<R>(_ body: (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try x.withUnsafeBufferPointer { px in try y.withUnsafeBufferPointer { py in try z.withUnsafeBufferPointer { pz in try body(px, py, pz) } } }
    }
}

/// Frames a client receives on a background thread while the test's thread runs the session.
final class FrameCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var _frames: [Frame] = []
    private var _topologyCounts: [Int?] = []
    private var _topologies: [Topology] = []
    private var _error: String?
    private var stopFlag = false
    private let finished = DispatchSemaphore(value: 0)

    init(connectionFile: String) {
        Thread { [self] in
            defer { finished.signal() }
            do {
                let client = try QuiverClient(connectionFile: connectionFile)
                while !stopped {
                    guard let r = try client.nextFrame(timeout: 0.1) else { continue }
                    lock.lock()
                    _frames.append(r.frame)
                    _topologyCounts.append(r.topology?.atomCount)
                    if let t = client.topology, _topologies.last != t { _topologies.append(t) }
                    lock.unlock()
                }
            } catch {
                lock.lock(); _error = "\(error)"; lock.unlock()
            }
        }.start()
    }

    private var stopped: Bool { lock.lock(); defer { lock.unlock() }; return stopFlag }
    var frames: [Frame] { lock.lock(); defer { lock.unlock() }; return _frames }
    /// Atom count of the topology each frame was delivered with.
    var topologyCounts: [Int?] { lock.lock(); defer { lock.unlock() }; return _topologyCounts }
    var topologies: [Topology] { lock.lock(); defer { lock.unlock() }; return _topologies }
    var error: String? { lock.lock(); defer { lock.unlock() }; return _error }

    func stop() {
        lock.lock(); stopFlag = true; lock.unlock()
        finished.wait()
    }
}

/// Runs `body` on another thread; `wait` returns when it finished.
final class Background: @unchecked Sendable {
    private let finished = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var _done = false
    var done: Bool { lock.lock(); defer { lock.unlock() }; return _done }

    init(_ body: @escaping @Sendable () throws -> Void) {
        Thread { [self] in
            do { try body() } catch { Issue.record(error) }
            lock.lock(); _done = true; lock.unlock()
            finished.signal()
        }.start()
    }

    func wait() { finished.wait() }
}

func sessionOptions(frameInterval: Int = 5, capacity: Int? = nil) -> SessionOptions {
    var o = SessionOptions()
    o.workerExecutable = QuiverProcess.binary.path
    o.frameInterval = frameInterval
    o.atomCapacity = capacity
    o.stopOnSignals = false
    o.server.grace = 2
    o.logger = QuiverLogging.silent
    return o
}

/// The pids of the session's workers, by role.
func workerPIDs(_ session: Session) throws -> [String: Int32] {
    let root = try #require(try JSONSerialization.jsonObject(with: Data(session.status().utf8)) as? [String: Any])
    var pids: [String: Int32] = [:]
    for w in root["workers"] as? [[String: Any]] ?? [] {
        if let role = w["role"] as? String, let pid = w["pid"] as? Int { pids[role] = Int32(pid) }
    }
    return pids
}

/// Checks that nothing of a closed session is left: processes, shared memory, files.
func expectNothingLeft(directory: String, segment: String, pids: [Int32], sourceLocation: SourceLocation = #_sourceLocation) {
    for pid in pids { #expect(!alive(pid), "worker pid \(pid) outlived close", sourceLocation: sourceLocation) }
    #expect(!FileManager.default.fileExists(atPath: "/dev/shm/" + segment), "the segment is left in /dev/shm", sourceLocation: sourceLocation)
    #expect(!FileManager.default.fileExists(atPath: directory), "the run directory \(directory) is left", sourceLocation: sourceLocation)
}

@Suite("Embedding: a Session around your own dynamics", .serialized)
struct SessionTests {
    @Test("a session serves its own dynamics: connection info, topology and frames to a client, commands applied between steps, close leaves nothing")
    func ownDynamics() throws {
        let orbits = Orbits(atoms: 40)
        let session = try Session(orbits, options: sessionOptions())
        let directory = session.runDirectory, segment = session.connection.segment
        #expect(session.port > 0 && session.controlPort > 0 && session.port != session.controlPort)
        #expect(session.connection.endpoints["frames"] == "tcp://127.0.0.1:\(session.port)")
        #expect(FileManager.default.fileExists(atPath: session.connectionFile))
        let pids = try workerPIDs(session)
        #expect(pids["engine"] == getpid(), "the host is the engine")
        for role in ["broadcaster", "heartbeat", "control"] { #expect(alive(pids[role] ?? 0), "\(role) is not running") }

        let collector = FrameCollector(connectionFile: session.connectionFile)
        let key = session.connection.key, endpoint = try #require(session.connection.endpoints["control"])
        // A client pauses, steps 3, plays, while this thread runs the session.
        let commands = Background {
            let client = try CommandClient(endpoint: endpoint, keyHex: key, clientID: "operator", timeout: .milliseconds(5000))
            #expect(eventually(within: 10) { collector.frames.count >= 5 })
            let paused = try client.send("pause")
            #expect(paused.isOK, "\(paused)")
            let at = try #require(number(paused, "applied_step"))
            #expect(eventually(within: 15) { collector.frames.last.map { Double($0.step) } == at }, "no frame at the paused step")
            usleep(300_000)
            #expect(collector.frames.last.map { Double($0.step) } == at, "frames went on past the pause")
            let stepped = try client.send("step", args: ["count": 3])
            #expect(stepped.isOK && number(stepped, "until_step") == at + 3)
            #expect(eventually(within: 15) { collector.frames.last.map { Double($0.step) } == at + 3 })
            #expect(try client.send("play").isOK)
            #expect(eventually(within: 15) { (collector.frames.last?.step ?? 0) > Int64(at) + 50 })
            let refused = try client.send("interaction.set", args: ["id": "p", "type": "spring", "particles": [1, 2], "position": [4, 4, 4]])
            #expect(!refused.isOK, "the orbits take no interactions: \(refused)")
        }
        let stop = try session.run(until: { commands.done })
        commands.wait()
        #expect(stop == .condition)
        let ran = try session.run(steps: 20)
        #expect(ran == .steps)
        usleep(200_000)
        collector.stop()
        #expect(collector.error == nil, "\(collector.error ?? "")")

        let frames = collector.frames
        #expect(frames.count >= 10)
        for (a, b) in zip(frames, frames.dropFirst()) {
            #expect(b.index > a.index && b.step > a.step, "frames \(a.index)@\(a.step) then \(b.index)@\(b.step)")
        }
        // Positions as the dynamics computed them, to the codec's precision (0.001 nm).
        var worst: Float = 0
        for f in frames {
            for i in 0..<40 {
                let p = Orbits.position(atom: i, step: Int(f.step))
                worst = max(worst, abs(f.positions.x[i] - p.x), abs(f.positions.y[i] - p.y), abs(f.positions.z[i] - p.z))
            }
        }
        #expect(worst <= 0.0006, "decoded positions differ by \(worst) nm")
        let topology = try #require(collector.topologies.last)
        #expect(topology.atomCount == 40 && topology.typeNames == ["C", "O"])
        #expect(topology.elements?.prefix(2) == [6, 8], "elements inferred from the type names")
        #expect(topology.bonds?.count == 39)

        session.close()
        expectNothingLeft(directory: directory, segment: segment, pids: [pids["broadcaster"], pids["heartbeat"], pids["control"]].compactMap { $0 })
        #expect(throws: SessionError.closed) { try session.run(steps: 1) }
        session.close() // idempotent
    }

    @Test("your own dynamics takes interactive forces: a client's spring pulls its atoms to the target; removal stops the pull")
    func ownDynamicsInteractions() throws {
        let drifters = try Drifters(atoms: 6)
        let session = try Session(drifters, options: sessionOptions(frameInterval: 20))
        let collector = FrameCollector(connectionFile: session.connectionFile)
        let key = session.connection.key, endpoint = try #require(session.connection.endpoints["control"])
        let pull = Background {
            let client = try CommandClient(endpoint: endpoint, keyHex: key, clientID: "puller", timeout: .milliseconds(5000))
            let set = try client.send("interaction.set", args: ["id": "s", "type": "spring", "particles": [0, 1], "position": [3, 4, 2], "scale": 400])
            #expect(set.isOK, "\(set)")
            // The centre of mass of atoms 0 and 1 reaches the target (it starts 3.3 nm away).
            let reached = eventually(within: 10) {
                guard let f = collector.frames.last else { return false }
                let com = SIMD3<Float>((f.positions.x[0] + f.positions.x[1]) / 2, (f.positions.y[0] + f.positions.y[1]) / 2, (f.positions.z[0] + f.positions.z[1]) / 2)
                let d = com - SIMD3(3, 4, 2)
                return (d * d).sum().squareRoot() < 0.2 && (f.userForces?.count ?? 0) == 2 && (f.userWork ?? 0) > 0
            }
            #expect(reached, "the spring never brought the atoms to the target: \(String(describing: collector.frames.last?.positions.x.prefix(2)))")
            #expect(collector.frames.last.map { abs($0.positions.x[5] - 1.5) < 0.001 && abs($0.positions.y[5] - 1) < 0.001 } ?? false, "an atom nobody pulled moved")
            #expect(try client.send("interaction.remove", args: ["id": "s"]).isOK)
            #expect(eventually(within: 15) { collector.frames.last.map { $0.userForces == nil } ?? false }, "user forces after the removal")
        }
        try session.run(until: { pull.done })
        pull.wait()
        collector.stop()
        #expect(drifters.interactions.interactions.isEmpty)
        session.close()
    }

    @Test("show another dynamics: same workers and sockets, clients get the new topology and frames; a built-in simulation takes interactions; too large is refused")
    func show() throws {
        let first = try Drifters(atoms: 30)
        let session = try Session(first, options: sessionOptions(capacity: 600))
        let directory = session.runDirectory, segment = session.connection.segment
        let before = try workerPIDs(session)
        let collector = FrameCollector(connectionFile: session.connectionFile)
        let key0 = session.connection.key, endpoint0 = try #require(session.connection.endpoints["control"])
        // A client pulls on the first system; show must end that pull.
        let pullFirst = Background {
            let client = try CommandClient(endpoint: endpoint0, keyHex: key0, clientID: "early", timeout: .milliseconds(5000))
            let set = try client.send("interaction.set", args: ["id": "old", "type": "spring", "particles": [0, 1], "position": [3, 3, 3], "lease": 60])
            #expect(set.isOK, "\(set)")
        }
        let deadline = Date().addingTimeInterval(10)
        try session.run(until: { (pullFirst.done && collector.frames.count >= 3) || Date() > deadline })
        pullFirst.wait()
        #expect(first.interactions.interactions.count == 1)
        let lastOrbitIndex = try #require(collector.frames.last?.index)

        let argon = try BuiltinSystems.argonLiquid(cells: 5, seed: 7).makeSimulation(options: SimulationOptions(threads: 1))
        try session.show(argon)
        #expect(first.interactions.interactions.isEmpty, "the first system's pull outlived show")
        // Shown at once: the first frame of the new dynamics is in the ring before any step.
        let ring = try SharedSegment.open(name: segment)
        var newest = FrameRecord()
        #expect(ring.frames.readLatest(into: &newest) != nil && newest.atomCount == 500 && newest.step == 0)
        let key = session.connection.key, endpoint = try #require(session.connection.endpoints["control"])
        let pull = Background {
            let client = try CommandClient(endpoint: endpoint, keyHex: key, clientID: "pull", timeout: .milliseconds(5000))
            #expect(eventually(within: 10) { collector.frames.last?.atomCount == 500 })
            let set = try client.send("interaction.set", args: ["id": "s", "type": "spring", "particles": [0, 1, 2], "position": [1, 1, 1], "scale": 50])
            #expect(set.isOK, "\(set)")
            #expect(eventually(within: 15) { collector.frames.last?.userForces?.count == 3 })
            let outOfRange = try client.send("interaction.set", args: ["id": "t", "type": "spring", "particles": [550], "position": [1, 1, 1]])
            #expect(outOfRange.error?.code == .invalidArgument, "index 550 of a 500-atom system: \(outOfRange)")
        }
        try session.run(until: { pull.done })
        pull.wait()
        collector.stop()
        #expect(collector.error == nil, "\(collector.error ?? "")")
        #expect(try workerPIDs(session) == before, "show restarted a worker")

        let frames = collector.frames
        let firstNew = try #require(frames.firstIndex { $0.atomCount == 500 })
        #expect(frames[..<firstNew].allSatisfy { $0.atomCount == 30 } && frames[firstNew...].allSatisfy { $0.atomCount == 500 })
        #expect(frames[firstNew].index > lastOrbitIndex, "frame indices keep counting across show")
        // Every frame came with the topology of its own system.
        let counts = collector.topologyCounts
        #expect(zip(frames, counts).allSatisfy { $0.atomCount == $1 }, "a frame was delivered with another system's topology")
        #expect(collector.topologies.map(\.atomCount) == [30, 500])
        #expect(collector.topologies.last?.elements?.first == 18, "argon")

        #expect(throws: SessionError.tooManyAtoms(atoms: 601, capacity: 600)) { try session.show(Orbits(atoms: 601)) }
        session.close()
        expectNothingLeft(directory: directory, segment: segment, pids: [before["broadcaster"], before["heartbeat"], before["control"]].compactMap { $0 })
    }

    @Test("show while no client is connected: one that joins later is told only the new system's topology, with its frames")
    func showUnwatched() throws {
        let session = try Session(try Drifters(atoms: 30), options: sessionOptions(capacity: 600))
        let directory = session.runDirectory, segment = session.connection.segment
        let before = try workerPIDs(session)
        let ring = try SharedSegment.open(name: segment)
        try session.run(until: { ring.frames.published >= 5 })
        // Nobody is connected: the broadcaster encodes nothing and has not looked at the topology.
        try session.show(try BuiltinSystems.argonLiquid(cells: 5, seed: 7).makeSimulation(options: SimulationOptions(threads: 1)))
        let shownAt = ring.frames.published
        try session.run(until: { ring.frames.published >= shownAt + 5 })
        let collector = FrameCollector(connectionFile: session.connectionFile)
        let deadline = Date().addingTimeInterval(10)
        try session.run(until: { collector.frames.count >= 3 || Date() > deadline })
        collector.stop()
        #expect(collector.error == nil, "\(collector.error ?? "")")
        let frames = collector.frames
        #expect(frames.count >= 3 && frames.allSatisfy { $0.atomCount == 500 }, "\(frames.map(\.atomCount))")
        #expect(collector.topologyCounts.allSatisfy { $0 == 500 })
        #expect(collector.topologies.map(\.atomCount) == [500], "the late joiner was first told the old system's topology")
        session.close()
        expectNothingLeft(directory: directory, segment: segment, pids: [before["broadcaster"], before["heartbeat"], before["control"]].compactMap { $0 })
    }

    @Test("health: a killed worker is restarted and the run goes on; one that keeps dying leaves the session running, degraded, and comes back; close cleans up")
    func health() throws {
        let session = try Session(Orbits(atoms: 20), options: sessionOptions())
        let directory = session.runDirectory, segment = session.connection.segment
        let first = try workerPIDs(session)
        let control = try #require(first["control"])
        kill(control, SIGKILL)
        let deadline = Date().addingTimeInterval(10)
        // Restarted (a new pid) while the run goes on, without an error.
        try session.run(until: {
            let pid = (try? workerPIDs(session))?["control"] ?? 0
            return (pid != control && pid > 0) || Date() > deadline
        })
        let second = try workerPIDs(session)
        #expect(second["control"] != control && alive(second["control"] ?? 0), "the control worker was not restarted")
        let endpoint = try #require(session.connection.endpoints["control"]), key = session.connection.key
        let list = Background {
            let client = try CommandClient(endpoint: endpoint, keyHex: key, timeout: .milliseconds(3000))
            let reply = try client.send("list")
            #expect(reply.isOK, "the restarted control worker does not answer: \(reply)")
        }
        try session.run(until: { list.done })
        list.wait()

        // The broadcaster killed again and again: it is not essential, so the session goes on
        // (degraded while it is down, retried with capped backoff) and never throws.
        var killed: Set<Int32> = []
        let giveUp = Date().addingTimeInterval(30)
        var sawDegraded = false
        try session.run(until: {
            if let pid = try? workerPIDs(session)["broadcaster"], pid > 0, !killed.contains(pid) {
                killed.insert(pid)
                kill(pid, SIGKILL)
            }
            if let root = try? JSONSerialization.jsonObject(with: Data(session.status().utf8)) as? [String: Any],
               (root["degraded"] as? [String])?.contains("broadcaster") == true, root["state"] as? String == "degraded" { sawDegraded = true }
            return killed.count >= 8 || Date() > giveUp
        })
        #expect(killed.count >= 8, "the broadcaster was restarted only \(killed.count) times")
        #expect(sawDegraded, "status never said degraded while the broadcaster was down")
        try session.checkHealth()
        // It comes back: a live broadcaster again, the session still running.
        let back = Date().addingTimeInterval(15)
        try session.run(until: {
            let pid = (try? workerPIDs(session))?["broadcaster"] ?? 0
            return (pid > 0 && !killed.contains(pid) && alive(pid)) || Date() > back
        })
        let third = try workerPIDs(session)
        #expect(alive(third["broadcaster"] ?? 0) && !killed.contains(third["broadcaster"] ?? 0), "the broadcaster did not come back")
        session.close()
        expectNothingLeft(directory: directory, segment: segment, pids: Array(killed) + [third["broadcaster"], second["heartbeat"], second["control"]].compactMap { $0 })
    }

    @Test("stop from another thread: run returns .stopped with the reason, later runs too; close cleans up")
    func stopHandle() throws {
        let session = try Session(Orbits(atoms: 10), options: sessionOptions())
        let directory = session.runDirectory, segment = session.connection.segment
        let pids = try workerPIDs(session)
        let handle = session.stopHandle
        let stopper = Background { usleep(300_000); handle.requestStop(reason: "operator") }
        let stop = try session.run()
        stopper.wait()
        #expect(stop == .stopped(reason: "operator"))
        #expect(try session.run(steps: 10) == .stopped(reason: "operator"))
        session.close()
        expectNothingLeft(directory: directory, segment: segment, pids: [pids["broadcaster"], pids["heartbeat"], pids["control"]].compactMap { $0 })
    }

    @Test("stopOnSignals: the session's SIGINT/SIGTERM handlers replace the host's while it is open, and the host's come back at close")
    func signalHandlersRestored() throws {
        func handler(_ signal: Int32) -> UnsafeRawPointer? {
            var sa = sigaction()
            sigaction(signal, nil, &sa)
            return unsafeBitCast(sa.__sigaction_handler.sa_handler, to: UnsafeRawPointer?.self)
        }
        let (int0, term0) = (handler(SIGINT), handler(SIGTERM))
        var o = sessionOptions()
        o.stopOnSignals = true
        let session = try Session(Orbits(atoms: 5), options: o)
        #expect(handler(SIGINT) != int0 && handler(SIGTERM) != term0, "the session did not install its handlers")
        session.close()
        #expect(handler(SIGINT) == int0 && handler(SIGTERM) == term0, "the host's handlers were not restored")
    }

    @Test("a session removes the private directories of sessions that died without close; a live one's stays")
    func staleDirectoriesRemoved() throws {
        let base = NSTemporaryDirectory().hasSuffix("/") ? String(NSTemporaryDirectory().dropLast()) : NSTemporaryDirectory()
        // A dead session's directory: a free lock, its connection file and sockets.
        let stale = base + "/quiver-session-stale\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: stale, withIntermediateDirectories: false)
        for f in ["lock", "connection.json", "frames.ipc", "topology.bin"] { FileManager.default.createFile(atPath: stale + "/" + f, contents: Data("x".utf8)) }
        // Another directory of that name holding something a session never makes: left alone.
        let foreign = base + "/quiver-session-foreign\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: foreign, withIntermediateDirectories: false)
        for f in ["lock", "notes.txt"] { FileManager.default.createFile(atPath: foreign + "/" + f, contents: Data("x".utf8)) }
        defer { try? FileManager.default.removeItem(atPath: foreign); try? FileManager.default.removeItem(atPath: stale) }
        let live = try Session(Orbits(atoms: 5), options: sessionOptions())
        let second = try Session(Orbits(atoms: 5), options: sessionOptions())
        #expect(!FileManager.default.fileExists(atPath: stale), "the dead session's directory is still there")
        #expect(FileManager.default.fileExists(atPath: foreign + "/notes.txt"), "a directory with other files was touched")
        #expect(FileManager.default.fileExists(atPath: live.connectionFile), "the second session removed a live session's files")
        second.close()
        live.close()
    }

    @Test("a start that fails (frame port in use) leaves no run directory, segment or process")
    func failedStartCleansUp() throws {
        let taken = try Listener(host: "127.0.0.1", port: 0)
        defer { taken.close() }
        let base = NSTemporaryDirectory().hasSuffix("/") ? String(NSTemporaryDirectory().dropLast()) : NSTemporaryDirectory()
        func sessions() -> Set<String> { Set(((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).filter { $0.hasPrefix("quiver-session-") }) }
        func segments() -> Set<String> { Set(((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).filter { $0.hasSuffix("-\(getpid())") }) }
        let (dirsBefore, segmentsBefore) = (sessions(), segments())
        var o = sessionOptions()
        o.server.port = taken.port
        #expect { try Session(Orbits(atoms: 5), options: o) } throws: { "\($0)".contains("\(taken.port)") }
        // Other suites' sessions may come and go meanwhile; theirs are locked by a live process.
        func abandoned(_ name: String) -> Bool {
            let fd = open(base + "/" + name + "/lock", O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { return FileManager.default.fileExists(atPath: base + "/" + name) }
            defer { close(fd) }
            return flock(fd, LOCK_EX | LOCK_NB) == 0
        }
        // (A session being opened or closed elsewhere is briefly unlocked: look again.)
        #expect(eventually(within: 15) { sessions().subtracting(dirsBefore).filter(abandoned).isEmpty },
                "a failed start left \(sessions().subtracting(dirsBefore).filter(abandoned))")
        #expect(segments() == segmentsBefore, "a failed start left a segment")
    }

    @Test("bad input: no worker executable, a frame interval of 0, a run directory in use — clear errors, nothing left behind")
    func badInput() throws {
        var o = sessionOptions()
        o.workerExecutable = "/nonexistent/quiver"
        #expect { try Session(Orbits(atoms: 5), options: o) } throws: { "\($0)".contains("/nonexistent/quiver") && "\($0)".contains("QUIVER_EXECUTABLE") }
        o = sessionOptions(frameInterval: 0)
        #expect { try Session(Orbits(atoms: 5), options: o) } throws: { "\($0)".contains("frameInterval") }

        let held = try Session(Orbits(atoms: 5), options: sessionOptions())
        o = sessionOptions()
        o.runDirectory = held.runDirectory
        #expect { try Session(Orbits(atoms: 5), options: o) } throws: { "\($0)".contains("in use") }
        #expect(FileManager.default.fileExists(atPath: held.connectionFile), "the refused session touched the first one's files")
        held.close()
        // A run directory the caller chose stays, empty but for its lock file.
        let chosen = TemporaryRunDirectory()
        o.runDirectory = chosen.path
        let s = try Session(Orbits(atoms: 5), options: o)
        let segment = s.connection.segment
        s.close()
        #expect(try FileManager.default.contentsOfDirectory(atPath: chosen.path) == ["lock"])
        #expect(!FileManager.default.fileExists(atPath: "/dev/shm/" + segment))
    }
}
