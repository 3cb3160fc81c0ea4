import Foundation
import QuiverZMQ
import Testing

/// Thread-safe storage for a value produced on another thread.
final class Shared<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); defer { lock.unlock() }; stored = newValue }
    }
}

@Suite("ZeroMQ errors and shutdown", .timeLimit(.minutes(1)))
struct ErrorTests {
    @Test("invalid endpoints map to EINVAL, EPROTONOSUPPORT, ENAMETOOLONG")
    func invalidEndpoints() throws {
        try withFixture { f in
            let s = try f.socket(.pull)
            #expect(throws: ZMQError.protocolNotSupported) { try s.bind("foo://bar") }
            #expect(throws: ZMQError.invalidArgument) { try s.bind("no-transport") }
            #expect(throws: ZMQError.invalidArgument) { try s.bind("tcp://127.0.0.1") }
            #expect(throws: ZMQError.invalidArgument) { try s.bind("tcp://127.0.0.1:notaport") }
            #expect(throws: ZMQError.invalidArgument) { try s.connect("tcp://127.0.0.1") }
            #expect(throws: ZMQError.protocolNotSupported) { try s.connect("foo://bar") }
            let long = "ipc://\(f.directory)/" + String(repeating: "x", count: 200)
            #expect(throws: ZMQError.nameTooLong) { try s.bind(long) }
            #expect(throws: ZMQError.nameTooLong) { try ZMQDefaults.ipcEndpoint(.frames, in: "/tmp/" + String(repeating: "d", count: 120)) }
            #expect(try ZMQDefaults.ipcEndpoint(.control, in: "/run/q/") == "ipc:///run/q/control.ipc")
            #expect(throws: ZMQError.noSuchEndpoint) { try s.unbind("tcp://127.0.0.1:1") }
            #expect(throws: ZMQError.noSuchEndpoint) { try s.disconnect("tcp://127.0.0.1:1") }
        }
    }

    @Test("binding a TCP port twice: EADDRINUSE; unbind frees it")
    func addressInUse() throws {
        try withFixture { f in
            let first = try f.socket(.rep)
            let second = try f.socket(.rep)
            let endpoint = try first.bind(ZMQDefaults.loopbackAnyPort)
            #expect(throws: ZMQError.addressInUse) { try second.bind(endpoint) }
            #expect(throws: ZMQError.addressInUse) { try first.bind(endpoint) }
            try first.unbind(endpoint)
            // The listener closes asynchronously; the port is free again shortly.
            let deadline = ContinuousClock.now.advanced(by: .seconds(5))
            var bound = false
            while !bound && ContinuousClock.now < deadline {
                do { try second.bind(endpoint); bound = true } catch ZMQError.addressInUse {
                    Thread.sleep(forTimeInterval: 0.01)
                }
            }
            #expect(bound)
        }
    }

    @Test("binding an ipc path twice takes it over (libzmq unlinks the old file): no EADDRINUSE")
    func ipcRebind() throws {
        try withFixture { f in
            let first = try f.socket(.pull)
            let second = try f.socket(.pull)
            let endpoint = try f.ipc("twice")
            try first.bind(endpoint)
            try second.bind(endpoint)          // succeeds: the run directory's lock must prevent this
            let push = try f.socket(.push)
            try push.connect(endpoint)
            try push.send([5])
            #expect(try second.receive(timeout: .seconds(5)) == [5])
            #expect(try first.tryReceive() == nil)
        }
    }

    @Test("calls out of turn or unsupported by the socket type: EFSM, ENOTSUP, EINVAL, EHOSTUNREACH")
    func wrongCalls() throws {
        try withFixture { f in
            let req = try f.socket(.req)
            try req.connect(try f.ipc("nobody"))
            #expect(throws: ZMQError.invalidState) { try req.receive() }
            try req.send([1])
            #expect(throws: ZMQError.invalidState) { try req.send([2]) }

            let pub = try f.socket(.pub)
            #expect(throws: ZMQError.notSupported) { try pub.receive() }
            #expect(throws: ZMQError.notSupported) { try pub.tryReceive() }
            let sub = try f.socket(.sub)
            #expect(throws: ZMQError.notSupported) { try sub.send([1]) }

            #expect(throws: ZMQError.invalidArgument) { try req.subscribe("x") }
            #expect(throws: ZMQError.invalidArgument) { try req.sendMultipart([[UInt8]]()) }

            let router = try f.socket(.router, [.routerMandatory(true)])
            try router.bind(ZMQDefaults.loopbackAnyPort)
            #expect(throws: ZMQError.hostUnreachable) { try router.sendMultipart(["nobody".bytes, [1]]) }
        }
    }

    @Test("a closed socket: every call throws ENOTSOCK; close is idempotent")
    func closedSocket() throws {
        try withFixture { f in
            let push = try f.socket(.push)
            try push.bind(try f.ipc("closed"))
            push.close()
            push.close()
            #expect(push.isClosed)
            #expect(throws: ZMQError.notSocket) { try push.send([1]) }
            #expect(throws: ZMQError.notSocket) { try push.trySend([1]) }
            #expect(throws: ZMQError.notSocket) { try push.tryReceive() }
            #expect(throws: ZMQError.notSocket) { try push.bind(try f.ipc("again")) }
            #expect(throws: ZMQError.notSocket) { try push.connect("tcp://127.0.0.1:1") }
            #expect(throws: ZMQError.notSocket) { try push.set(.linger(.zero)) }
            #expect(throws: ZMQError.notSocket) { try push.linger }
            #expect(throws: ZMQError.notSocket) { try ZMQ.poll([.socket(push)], timeout: .zero) }
        }
    }

    @Test("errors carry errno, operation and zmq_strerror text; catch patterns match by code")
    func errorValues() throws {
        try withFixture { f in
            let s = try f.socket(.pull)
            do {
                try s.bind("foo://bar")
                Issue.record("bind to foo:// succeeded")
            } catch ZMQError.protocolNotSupported {
                // matched by code through ~=
            }
            do {
                try s.bind("foo://bar")
            } catch let error as ZMQError {
                #expect(error.code == EPROTONOSUPPORT)
                #expect(error.operation == "zmq_bind(foo://bar)")
                #expect(error.message == String(cString: strerror(EPROTONOSUPPORT)))
                #expect(error.description.contains("zmq_bind(foo://bar)"))
                #expect(error.description.contains("errno \(EPROTONOSUPPORT)"))
            }
            #expect(ZMQError.terminated.message == "Context was terminated")
            #expect(ZMQError.invalidState.message == "Operation cannot be accomplished in current state")
            #expect(ZMQError(code: EAGAIN, operation: "x") == .again)
        }
    }

    @Test("context termination with linger 0 does not wait for unsent messages")
    func terminationLingerZero() throws {
        let context = try ZMQContext()
        var seconds = 0.0
        do {
            // Connected to a port nobody listens on: messages stay queued.
            let push = try ZMQSocket(context: context, type: .push, options: ZMQDefaults.testSocketOptions)
            try push.connect("tcp://127.0.0.1:1")
            for _ in 0..<10 { try push.send([UInt8](repeating: 1, count: 1000)) }
            seconds = elapsed {
                push.close()
                context.close()
            }
        }
        #expect(context.isClosed)
        #expect(seconds < 1)
        // Closing twice is harmless; a closed context makes no sockets.
        context.close()
        #expect(throws: ZMQError.terminated) { try context.socket(.pull) }
    }

    @Test("context termination with the default linger waits at most the linger period")
    func terminationDefaultLinger() throws {
        let context = try ZMQContext()
        let push = try context.socket(.push)       // ZMQDefaults.socketOptions: linger 200 ms
        #expect(try push.linger == ZMQDefaults.linger)
        try push.connect("tcp://127.0.0.1:1")
        try push.send([1])
        let seconds = elapsed {
            push.close()
            context.close()
        }
        #expect(seconds >= 0.15)
        #expect(seconds < 2)
    }

    @Test("shutdown ends a blocking receive in another thread with ETERM")
    func shutdownWakesBlockedThread() throws {
        let context = try ZMQContext()
        let outcome = Shared<String>("not started")
        let ready = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            do {
                let pull = try ZMQSocket(context: context, type: .pull, options: [.linger(.zero)])
                defer { pull.close() }
                try pull.bind("inproc://blocked")
                outcome.value = "waiting"
                ready.signal()
                _ = try pull.receive()                 // no receive timeout: blocks until shutdown
                outcome.value = "received"
            } catch ZMQError.terminated {
                outcome.value = "terminated"
            } catch {
                outcome.value = "\(error)"
            }
            ready.signal()
            done.signal()
        }
        thread.start()
        #expect(ready.wait(timeout: .now() + 10) == .success)
        Thread.sleep(forTimeInterval: 0.05)            // let it enter zmq_msg_recv
        try context.shutdown()
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(outcome.value == "terminated")
        let seconds = elapsed { context.close() }
        #expect(seconds < 1)
        #expect(throws: ZMQError.terminated) { try ZMQSocket(context: context, type: .pull) }
    }
}
