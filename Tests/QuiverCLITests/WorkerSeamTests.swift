import Foundation
import QuiverClient
import QuiverServer
import QuiverSupervisor
import QuiverWorkers
import Testing

@Suite("Workers as types: the registry, the launch, descriptors handed over by name")
struct WorkerSeamTests {
    @Test("the registry: unique roles, unique listener names, one role owns the dynamics and the session starts the others")
    func registry() {
        let roles = WorkerRoles.all.map { $0.role }
        #expect(roles == ["engine", "broadcaster", "heartbeat", "control"])
        #expect(Set(roles).count == roles.count)
        #expect(WorkerRoles.all.filter { $0.ownsDynamics }.map { $0.role } == ["engine"])
        #expect(WorkerRoles.services.map { $0.role } == ["broadcaster", "heartbeat", "control"])
        var c = RunConfiguration()
        c.port = 5001
        c.controlPort = 5002
        #expect(WorkerRoles.listeners(c) == [ListenerDeclaration(.frames, port: 5001), ListenerDeclaration(.heartbeat),
                                             ListenerDeclaration(.control, port: 5002), ListenerDeclaration(.state)])
        #expect(Set(WorkerRoles.events) == [.commandsPosted, .commandsDone, .framePublished])
        #expect(WorkerRoles.named("control") is ControlWorker.Type && WorkerRoles.named("proxy") == nil)
    }

    @Test("each worker's launch names every descriptor it is handed, at the number it will have, and carries the configuration whole")
    func handover() throws {
        let dir = TemporaryRunDirectory()
        var c = RunConfiguration()
        c.sessionLease = 7
        c.codec = "lossless"
        let resources = try ServerResources(runDirectory: dir.path, segmentName: "quiver-run-seam-\(getpid())", atomCapacity: 10, configuration: c)
        defer { resources.close() }
        let specs = try resources.workerSpecs(WorkerRoles.all, firstIndex: 0)
        #expect(specs.map(\.role) == WorkerRoles.all.map { $0.role })
        for (k, spec) in specs.enumerated() {
            #expect(spec.arguments.count == 3 && spec.arguments[0] == "worker" && spec.arguments[1] == spec.role)
            let launch = try WorkerLaunch.decode(spec.arguments[2])
            #expect(launch.role == spec.role && launch.index == k && launch.segment == resources.segment.name && launch.runDirectory == resources.directory.path)
            #expect(launch.configuration == c)
            let role = try #require(WorkerRoles.named(spec.role))
            #expect(Set(launch.listeners.keys) == Set(role.listeners(c).map(\.name)))
            #expect(Set(launch.events.keys) == Set(role.events))
            // Descriptor 3 + k in the worker is the k-th passed one: the very socket or eventfd named.
            var named: [Int32: Int32] = [:]
            for (name, handed) in launch.listeners {
                named[handed.fd] = resources.listeners[name]?.fd
                #expect(handed.tcpEndpoint == resources.listeners[name]?.endpoint && handed.ipcEndpoint == resources.ipcEndpoints[name])
            }
            for (name, fd) in launch.events { named[fd] = resources.events[name] }
            #expect(named.count == spec.passedDescriptors.count)
            for (i, fd) in spec.passedDescriptors.enumerated() { #expect(named[3 + Int32(i)] == fd, "\(spec.role): descriptor \(3 + i)") }
            #expect(spec.exitEndsRun == (spec.role == "engine") && spec.watchdog == c.watchdog)
        }
        // connection.json names each listener and its ipc twin, as before.
        let keys = Set(resources.connection.endpoints.keys)
        #expect(keys == ["control-socket", "frames", "frames-ipc", "heartbeat", "heartbeat-ipc", "control", "control-ipc", "state", "state-ipc"])
        #expect(ServerResources.runFileNames(c).isSuperset(of: ["frames.ipc", "heartbeat.ipc", "control.ipc", "state.ipc", "connection.json"]))
    }

    @Test("quiver worker: an unknown role names the known ones; a launch that is not one is refused; neither starts anything")
    func refusals() throws {
        let unknown = try QuiverProcess.run(["worker", "proxy", "{}"], timeout: 30)
        #expect(unknown.status != 0 && unknown.stderr.contains("unknown worker role 'proxy' (known: engine, broadcaster, heartbeat, control)"), "\(unknown.stderr)")
        let bad = try QuiverProcess.run(["worker", "engine", "not json"], timeout: 30)
        #expect(bad.status != 0 && bad.stderr.contains("not a worker launch document"), "\(bad.stderr)")
    }

    @Test("a worker's run() ends when its task is cancelled: the heartbeat, in this process, serves a ping, then stops on cancel", .timeLimit(.minutes(1)))
    func cancellation() async throws {
        let dir = TemporaryRunDirectory()
        let resources = try ServerResources(runDirectory: dir.path, segmentName: "quiver-run-cancel-\(getpid())", atomCapacity: 10,
                                            configuration: RunConfiguration())
        defer { resources.close() }
        let spec = try resources.workerSpecs([Heartbeat.self], firstIndex: 1)[0]
        var launch = try WorkerLaunch.decode(spec.arguments[2])
        // In this process the worker gets a duplicate of each listener, as a worker process gets its
        // own copy: its socket closes that one, and `resources.close()` the original (closing one
        // descriptor twice would close whatever another test opened under that number meanwhile).
        for name in launch.listeners.keys { launch.listeners[name]?.fd = dup(resources.listeners[name]!.fd) }
        let context = WorkerContext(launch: launch, segment: resources.segment)
        let worker = try Heartbeat(context: context)
        // A worker's loop blocks its thread: on a thread of its own, as in a worker process, not on
        // the test runner's cooperative pool (two threads here, shared with the other tests).
        let executor = ThreadExecutor()
        let task = Task(executorPreference: executor) { try await worker.run() }
        let client = try QuiverClient(connectionFile: resources.directory.connectionFilePath)
        #expect(try eventually(within: 10) { try client.ping(timeout: 0.5) != nil }, "the in-process heartbeat never answered")
        task.cancel()
        try await task.value
        #expect(context.status.state == .ready, "run() returned; the process (WorkerProcess) marks it exited")
    }
}

/// A task executor with one thread of its own.
final class ThreadExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    init() {
        // The thread keeps the executor (one per test run; it idles once its jobs are done).
        let thread = Thread { [self] in loop() }
        thread.name = "test-worker-executor"
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        condition.lock()
        jobs.append(unowned)
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
