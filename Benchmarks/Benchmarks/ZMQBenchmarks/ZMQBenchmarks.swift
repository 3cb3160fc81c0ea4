// ZeroMQ transport through the QuiverZMQ wrapper, for comparison with the figures PERFORMANCE.md
// gives from Python (REQ/REP 64 B round trip p50 ~130 us, p99 ~225 us; PUSH/PULL 400 KB messages
// ~3 GB/s over IPC, ~2.4 GB/s over TCP loopback).
//
// - "REQ/REP 64 B round trip (ipc|tcp, two contexts|one context)": one sample is one request and its
//   reply; the REP side echoes in its own thread, with its own context ("two contexts": separate I/O
//   threads, as between two processes) or the REQ side's ("one context": one I/O thread serves both
//   ends). The wall-clock percentiles are the round-trip latency.
// - "PUSH/PULL 400 KB (ipc|tcp, copying|zero-copy)": one sample is 100 messages of 400,000 bytes
//   pushed and all received by a PULL socket in another thread, which acknowledges the batch on a
//   second socket; the custom metric MB/s is payload bytes per second of wall clock. "copying" uses
//   the `[UInt8]` API on both ends (one copy into the message when sending, one out of it when
//   receiving); "zero-copy" sends shared `ZMQMessage`s (zmq_msg_copy, no byte copy) and receives into
//   a `ZMQMessage` (the bytes are still copied by the kernel socket, as with any transport).
//
// Every socket gets ZMQDefaults.socketOptions. Setup and teardown (threads, sockets, a temporary
// directory for ipc endpoints) are outside the measurement.

import Benchmark
import Foundation
import QuiverZMQ

/// Payload bytes of the latency benchmark.
let requestBytes = 64
/// Message size and messages per sample of the throughput benchmark.
let bulkBytes = 400_000
let bulkBatch = 100

let megabytesPerSecond = BenchmarkMetric.custom("MB/s", polarity: .prefersLarger, useScalingFactor: false)

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A value shared with a peer thread, under a lock.
final class Shared<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); defer { lock.unlock() }; stored = newValue }
    }
}

enum Transport: String, CaseIterable {
    case ipc, tcp

    /// A bind endpoint: a socket file in `directory`, or any free port on loopback.
    func endpoint(_ name: String, in directory: String) throws -> String {
        switch self {
        case .ipc: return try ZMQDefaults.ipcEndpoint(path: "\(directory)/\(name).ipc")
        case .tcp: return ZMQDefaults.loopbackAnyPort
        }
    }
}

/// Test-free options for the benchmark sockets: the project defaults, plus send/receive timeouts so
/// that a failed peer ends a run with an error instead of a hang.
let benchOptions = ZMQDefaults.socketOptions + [.sendTimeout(.seconds(10)), .receiveTimeout(.seconds(10))]

/// A peer thread with its own sockets, its own context unless given one (as a separate process
/// would have: its own I/O thread), and a private directory for ipc endpoints.
/// The peer binds, reports its endpoints, then serves until `stop()`; it polls with a bounded
/// timeout, so it notices the stop flag.
final class Peer {
    typealias Serve = @Sendable (_ context: ZMQContext, _ directory: String,
                                 _ ready: @Sendable ([String]) -> Void, _ stopping: @Sendable () -> Bool) throws -> Void

    /// The peer's own context (nil when it shares its creator's).
    private let context: ZMQContext?
    private let directory: String
    /// The endpoints the peer bound, in the order it reported them.
    let endpoints: [String]
    private let stopping = Shared(false)
    private let finished = DispatchSemaphore(value: 0)
    private let failure = Shared<String?>(nil)

    /// Runs `serve` on a new thread, with `context` or else a context of its own.
    init(context shared: ZMQContext? = nil, _ serve: @escaping Serve) throws {
        let context = try shared ?? ZMQContext()
        let ownsContext = shared == nil
        var template = Array("/tmp/quiver-zmq-bench-XXXXXX".utf8CString)
        guard let path = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw BenchError("mkdtemp failed")
        }
        let directory = String(cString: path)
        let bound = Shared<[String]?>(nil)
        let ready = DispatchSemaphore(value: 0)
        let (stopping, finished, failure) = (stopping, finished, failure)
        let thread = Thread {
            do {
                try serve(context, directory, { bound.value = $0; ready.signal() }, { stopping.value })
            } catch {
                failure.value = "\(error)"
                ready.signal()
            }
            finished.signal()
        }
        thread.start()
        guard ready.wait(timeout: .now() + 10) == .success, let endpoints = bound.value else {
            stopping.value = true
            _ = finished.wait(timeout: .now() + 10)
            if ownsContext { context.close() }
            try? FileManager.default.removeItem(atPath: directory)
            throw BenchError("peer did not start: \(failure.value ?? "timeout")")
        }
        self.context = ownsContext ? context : nil
        self.directory = directory
        self.endpoints = endpoints
    }

    /// Stops the peer thread (bounded wait; it closes its sockets), terminates its context and
    /// removes the directory.
    func stop() throws {
        stopping.value = true
        guard finished.wait(timeout: .now() + 10) == .success else { throw BenchError("peer did not stop") }
        context?.close()
        try? FileManager.default.removeItem(atPath: directory)
        if let failure = failure.value { throw BenchError("peer failed: \(failure)") }
    }
}

/// A REQ socket connected to a REP peer that echoes every request without copying it.
final class RoundTrip {
    let peer: Peer
    let context: ZMQContext
    let req: ZMQSocket
    let request = [UInt8](repeating: 0x5A, count: requestBytes)

    /// `sharedContext`: the REP peer uses the REQ side's context (one I/O thread for both ends)
    /// rather than its own (as in another process).
    init(_ transport: Transport, sharedContext: Bool) throws {
        let context = try ZMQContext()
        self.context = context
        peer = try Peer(context: sharedContext ? context : nil) { context, directory, ready, stopping in
            let rep = try ZMQSocket(context: context, type: .rep, options: benchOptions)
            defer { rep.close() }
            ready([try rep.bind(try transport.endpoint("rep", in: directory))])
            var message = ZMQMessage()
            while !stopping() {
                guard try rep.receive(into: &message, timeout: .milliseconds(50)) else { continue }
                try rep.send(message)
                message = ZMQMessage()
            }
        }
        req = try ZMQSocket(context: context, type: .req, options: benchOptions)
        try req.connect(peer.endpoints[0])
        for _ in 0..<100 { try once() }   // connected, warm
    }

    /// One request and its reply.
    func once() throws {
        try req.send(request)
        guard try req.receive().count == requestBytes else { throw BenchError("short reply") }
    }

    func stop() throws {
        req.close()
        try peer.stop()
        context.close()
    }
}

/// A PUSH socket feeding a PULL peer that acknowledges every `bulkBatch` messages.
final class Bulk {
    let peer: Peer
    let context: ZMQContext
    let push: ZMQSocket
    let acknowledgements: ZMQSocket
    let zeroCopy: Bool
    let payload: [UInt8]
    let shared: ZMQMessage

    init(_ transport: Transport, zeroCopy: Bool) throws {
        self.zeroCopy = zeroCopy
        peer = try Peer { context, directory, ready, stopping in
            let pull = try ZMQSocket(context: context, type: .pull, options: benchOptions)
            let ack = try ZMQSocket(context: context, type: .push, options: benchOptions)
            defer { pull.close(); ack.close() }
            ready([try pull.bind(try transport.endpoint("bulk", in: directory)),
                   try ack.bind(try transport.endpoint("ack", in: directory))])
            var message = ZMQMessage()
            var count = 0
            while !stopping() {
                let size: Int
                if zeroCopy {
                    guard try pull.receive(into: &message, timeout: .milliseconds(50)) else { continue }
                    size = message.count
                } else {
                    guard let bytes = try pull.receive(timeout: .milliseconds(50)) else { continue }
                    size = bytes.count
                }
                guard size == bulkBytes else { throw BenchError("received \(size) bytes") }
                count += 1
                if count == bulkBatch {
                    try ack.send([1])
                    count = 0
                }
            }
        }
        context = try ZMQContext()
        push = try ZMQSocket(context: context, type: .push, options: benchOptions)
        acknowledgements = try ZMQSocket(context: context, type: .pull, options: benchOptions)
        try push.connect(peer.endpoints[0])
        try acknowledgements.connect(peer.endpoints[1])
        payload = (0..<bulkBytes).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        shared = try ZMQMessage(copying: payload)
        try batch()   // connected, warm
    }

    /// Pushes `bulkBatch` messages and waits until the peer has received them all.
    func batch() throws {
        for _ in 0..<bulkBatch {
            if zeroCopy {
                try push.send(try shared.copy())
            } else {
                try push.send(payload)
            }
        }
        guard try acknowledgements.receive() == [1] else { throw BenchError("bad acknowledgement") }
    }

    func stop() throws {
        push.close()
        acknowledgements.close()
        try peer.stop()
        context.close()
    }
}

/// Holds a benchmark's state between its setup and teardown hooks.
final class Holder<State> {
    var state: State?
}

let benchmarks: @Sendable () -> Void = {
    for transport in Transport.allCases {
      for sharedContext in [false, true] {
        let roundTrip = Holder<RoundTrip>()
        Benchmark(
            "REQ/REP 64 B round trip (\(transport.rawValue), \(sharedContext ? "one context" : "two contexts"))",
            configuration: .init(metrics: [.wallClock, .throughput], timeUnits: .microseconds,
                                 warmupIterations: 1000, maxDuration: .seconds(5), maxIterations: 50_000)
        ) { (_: Benchmark, state: RoundTrip) throws in
            try state.once()
        } setup: { () async throws -> RoundTrip in
            let state = try RoundTrip(transport, sharedContext: sharedContext)
            roundTrip.state = state
            return state
        } teardown: {
            try roundTrip.state?.stop()
            roundTrip.state = nil
        }
      }
    }

    for transport in Transport.allCases {
        for zeroCopy in [false, true] {
            let bulk = Holder<Bulk>()
            Benchmark(
                "PUSH/PULL 400 KB x \(bulkBatch) (\(transport.rawValue), \(zeroCopy ? "zero-copy" : "copying"))",
                configuration: .init(metrics: [.wallClock, megabytesPerSecond], timeUnits: .milliseconds,
                                     warmupIterations: 2, maxDuration: .seconds(5), maxIterations: 200)
            ) { (benchmark: Benchmark, state: Bulk) throws in
                let start = ContinuousClock.now
                try state.batch()
                let elapsed = start.duration(to: .now)
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
                if seconds > 0 {
                    benchmark.measurement(megabytesPerSecond, Int((Double(bulkBytes * bulkBatch) / seconds / 1e6).rounded()))
                }
            } setup: { () async throws -> Bulk in
                let state = try Bulk(transport, zeroCopy: zeroCopy)
                bulk.state = state
                return state
            } teardown: {
                try bulk.state?.stop()
                bulk.state = nil
            }
        }
    }
}
