import Foundation
import QuiverZMQ
import Testing

@Suite("ZeroMQ messaging patterns", .timeLimit(.minutes(1)))
struct MessagingTests {
    /// One request and its reply each way, twice (REQ/REP alternate strictly).
    func roundTrip(req: ZMQSocket, rep: ZMQSocket) throws {
        for i in 0..<2 {
            try req.send("ping \(i)".bytes)
            #expect(try rep.receive() == "ping \(i)".bytes)
            try rep.send("pong \(i)".bytes)
            #expect(try req.receive() == "pong \(i)".bytes)
        }
    }

    @Test("REQ/REP round trip over ipc:// in a private directory, socket file gone afterwards")
    func reqRepIPC() throws {
        let fixture = try Fixture()
        let path = "\(fixture.directory)/rr.ipc"
        do {
            defer { fixture.close() }
            let rep = try fixture.socket(.rep)
            let req = try fixture.socket(.req)
            let endpoint = try fixture.ipc("rr")
            #expect(try rep.bind(endpoint) == endpoint)
            #expect(try rep.lastEndpoint == endpoint)
            #expect(FileManager.default.fileExists(atPath: path))
            try req.connect(endpoint)
            try roundTrip(req: req, rep: rep)
        }
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(!FileManager.default.fileExists(atPath: fixture.directory))
    }

    @Test("REQ/REP round trip over tcp://127.0.0.1:*, the port read back from the bind")
    func reqRepTCP() throws {
        try withFixture { f in
            let rep = try f.socket(.rep)
            let req = try f.socket(.req)
            let endpoint = try rep.bind(ZMQDefaults.loopbackAnyPort)
            #expect(endpoint.hasPrefix("tcp://127.0.0.1:"))
            #expect(try rep.lastEndpoint == endpoint)
            let port = try #require(try rep.lastTCPPort)
            #expect(port > 0 && port < 65536)
            #expect(endpoint == "tcp://127.0.0.1:\(port)")
            try req.connect(endpoint)
            try roundTrip(req: req, rep: rep)
        }
    }

    @Test("PUB/SUB: topic prefix filter, multipart messages delivered whole, unsubscribe")
    func pubSubTopics() throws {
        try withFixture { f in
            let pub = try f.socket(.pub)
            let sub = try f.socket(.sub)
            let endpoint = try pub.bind(try f.ipc("frames"))
            try sub.subscribe("frames.")
            try sub.subscribe("sync")
            try sub.connect(endpoint)
            try synchronise(pub: pub, sub: sub, probe: "sync".bytes)
            try sub.unsubscribe("sync")

            try pub.sendMultipart(["frames.1".bytes, [1, 2, 3]])
            try pub.sendMultipart(["state".bytes, [9]])                       // other topic
            try pub.sendMultipart([Data("frames.2".utf8), Data([4]), Data([5, 6])])  // Data parts
            try pub.send("frames".bytes)                                      // shorter than the prefix
            try pub.sendMultipart(["sync".bytes])                             // unsubscribed
            try pub.send("frames.3".bytes, more: true)                        // part by part
            try pub.send([7, 7], more: false)

            #expect(try sub.receiveMultipart(timeout: .seconds(5)) == ["frames.1".bytes, [1, 2, 3]])
            #expect(try sub.receiveMultipart(timeout: .seconds(5)) == ["frames.2".bytes, [4], [5, 6]])
            #expect(try sub.receiveMultipart(timeout: .seconds(5)) == ["frames.3".bytes, [7, 7]])
            #expect(try sub.receiveMultipart(timeout: .milliseconds(100)) == nil)
        }
    }

    @Test("ROUTER/DEALER: routing ids address replies; multipart envelopes")
    func routerDealer() throws {
        try withFixture { f in
            let router = try f.socket(.router, [.routerMandatory(true)])
            let endpoint = try router.bind(ZMQDefaults.loopbackAnyPort)
            var dealers: [String: ZMQSocket] = [:]
            for name in ["alice", "bob"] {
                let dealer = try f.socket(.dealer, [.routingId(name.bytes)])
                #expect(try dealer.routingId == name.bytes)
                try dealer.connect(endpoint)
                try dealer.sendMultipart(["hello from \(name)".bytes, [0xFF]])
                dealers[name] = dealer
            }
            var seen: Set<String> = []
            for _ in 0..<2 {
                let parts = try #require(try router.receiveMultipart(timeout: .seconds(5)))
                #expect(parts.count == 3)
                let id = String(decoding: parts[0], as: UTF8.self)
                #expect(parts[1] == "hello from \(id)".bytes)
                #expect(parts[2] == [0xFF])
                seen.insert(id)
                try router.sendMultipart([parts[0], "welcome \(id)".bytes])
            }
            #expect(seen == ["alice", "bob"])
            for (name, dealer) in dealers {
                #expect(try dealer.receiveMultipart(timeout: .seconds(5)) == ["welcome \(name)".bytes])
            }
        }
    }

    @Test("PUSH/PULL with ZMQMessage: built in place, sent without copying, shared by copy()")
    func zeroCopyMessages() throws {
        try withFixture { f in
            let pull1 = try f.socket(.pull)
            let pull2 = try f.socket(.pull)
            let push1 = try f.socket(.push)
            let push2 = try f.socket(.push)
            try push1.connect(try pull1.bind(try f.ipc("p1")))
            try push2.connect(try pull2.bind(try f.ipc("p2")))

            var message = try ZMQMessage(count: 100_000)
            message.withUnsafeMutableBytes { buffer in
                for i in buffer.indices { buffer[i] = UInt8(truncatingIfNeeded: i &* 31) }
            }
            let built = message.count
            #expect(built == 100_000)
            let copy = try message.copy()
            try push1.send(message)
            try push2.send(copy)
            for pull in [pull1, pull2] {
                var received = ZMQMessage()
                #expect(try pull.receive(into: &received, timeout: .seconds(5)))
                let (count, more) = (received.count, received.hasMore)
                #expect(count == 100_000)
                #expect(!more)
                let ok = received.withUnsafeBytes { buffer in
                    buffer.indices.allSatisfy { buffer[$0] == UInt8(truncatingIfNeeded: $0 &* 31) }
                }
                #expect(ok)
            }

            // Copying constructors and the blocking receive of a message.
            try push1.send(try ZMQMessage(copying: Data([1, 2, 3])), more: true)
            try push1.send(try ZMQMessage(copying: [4, 5] as [UInt8]))
            let first = try pull1.receiveMessage()
            let (firstBytes, firstData, firstMore) = (first.bytes, first.data, first.hasMore)
            #expect(firstBytes == [1, 2, 3] && firstMore)
            #expect(firstData == Data([1, 2, 3]))
            let second = try pull1.receiveMessage()
            let (secondBytes, secondMore) = (second.bytes, second.hasMore)
            #expect(secondBytes == [4, 5] && !secondMore)

            // trySend leaves the message intact when it cannot be queued (no peer).
            let lonely = try f.socket(.push)
            var pending = try ZMQMessage(copying: [42] as [UInt8])
            #expect(try lonely.trySend(&pending) == false)
            let kept = pending.bytes
            #expect(kept == [42])
            #expect(try push1.trySend(&pending))
            let left = pending.count
            #expect(left == 0)
            #expect(try pull1.receive(timeout: .seconds(5)) == [42])
        }
    }

    @Test("A message over caller-owned bytes: sent without copying, released once, after the last copy is sent")
    func borrowedBytes() throws {
        let releases = Counter()
        let count = 200_000
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 64)
        defer { storage.deallocate() }
        for i in 0..<count { storage[i] = UInt8(truncatingIfNeeded: i &* 7 &+ 3) }

        // Closed unsent: released at once, on this thread.
        do { _ = try ZMQMessage(bytes: storage.baseAddress!, count: count) { releases.add() } }
        #expect(releases.value == 1)

        try withFixture { f in
            let pull1 = try f.socket(.pull)
            let pull2 = try f.socket(.pull)
            let push1 = try f.socket(.push)
            let push2 = try f.socket(.push)
            try push1.connect(try pull1.bind(try f.ipc("b1")))
            try push2.connect(try pull2.bind(try f.ipc("b2")))
            let message = try ZMQMessage(bytes: storage.baseAddress!, count: count) { releases.add() }
            let copy = try message.copy()
            try push1.send(message)
            #expect(releases.value == 1)  // the copy still holds the bytes
            try push2.send(copy)
            for pull in [pull1, pull2] {
                var received = ZMQMessage()
                #expect(try pull.receive(into: &received, timeout: .seconds(5)))
                let same = received.withUnsafeBytes { $0.count == count && $0.elementsEqual(UnsafeRawBufferPointer(storage)) }
                #expect(same)
            }
            // libzmq's I/O thread lets go once both are written out.
            let deadline = Date().addingTimeInterval(5)
            while releases.value < 2 && Date() < deadline { usleep(1000) }
            #expect(releases.value == 2)
        }
        usleep(20_000)
        #expect(releases.value == 2)  // never twice
    }

    @Test("ZMQ_MAXMSGSIZE: the receiver drops a peer that sends an oversized message; it never arrives")
    func maxMessageSize() throws {
        try withFixture { f in
            let limit = 1024
            let pull = try f.socket(.pull, [.maxMessageSize(limit)])
            #expect(try pull.maxMessageSize == limit)
            let monitor = try pull.monitor([.accepted, .disconnected])
            let push = try f.socket(.push)
            try push.connect(try pull.bind(ZMQDefaults.loopbackAnyPort))
            #expect(try monitor.wait(for: .accepted, timeout: .seconds(5)) != nil)

            let small = [UInt8](repeating: 1, count: limit)        // exactly at the limit: accepted
            let large = [UInt8](repeating: 2, count: limit + 1)    // one byte over: dropped
            try push.send(small)
            #expect(try pull.receive(timeout: .seconds(5)) == small)
            try push.send(large)
            let dropped = try monitor.wait(for: .disconnected, timeout: .seconds(5))
            #expect(dropped != nil)
            #expect(try pull.receive(timeout: .milliseconds(200)) == nil)

            // The sender reconnects by itself; later messages within the limit arrive again.
            #expect(try monitor.wait(for: .accepted, timeout: .seconds(5)) != nil)
            try push.send([3, 3, 3])
            #expect(try pull.receive(timeout: .seconds(5)) == [3, 3, 3])
            monitor.close()
        }
    }

    /// Publishes counters 1...count as single-part messages (8-byte counter + payload).
    func publish(_ pub: ZMQSocket, count: UInt64, payload: Int) throws {
        let body = [UInt8](repeating: 0xAB, count: payload)
        for i in 1...count { try pub.send(counter(i) + body) }
    }

    @Test("latest frame: a slow subscriber with CONFLATE gets the newest message, not the backlog")
    func latestFrameConflate() throws {
        try withFixture { f in
            let count: UInt64 = 500
            // The publisher's queue is unbounded here so that the burst itself loses nothing;
            // with a small publisher HWM the newest messages of a burst can be dropped at the
            // publisher (see docs/zmq.md).
            let pub = try f.socket(.pub, [.sendHighWaterMark(0)])
            let endpoint = try pub.bind(try f.ipc("latest"))
            let live = try f.socket(.sub, ZMQDefaults.latestFrameSubscriberOptions)
            #expect(try live.conflate)
            let recorder = try f.socket(.sub, [.receiveHighWaterMark(0)])   // the trajectory-writer path
            for sub in [live, recorder] {
                try sub.subscribe()
                try sub.connect(endpoint)
                try synchronise(pub: pub, sub: sub, probe: "sync".bytes)
            }

            try publish(pub, count: count, payload: 10_000)
            // The same stream without CONFLATE: every message, oldest first. Reading it first is
            // also the event that the burst has arrived (one I/O thread serves both subscribers),
            // on a loaded machine too, where a fixed pause may end mid-burst.
            var all: [UInt64] = []
            while let message = try recorder.receive(timeout: .seconds(5)) {
                all.append(try #require(counterValue(Array(message.prefix(8)))))
                if all.count == Int(count) { break }
            }
            #expect(all == Array(1...count))

            // The live subscriber is slow: it reads only once the burst is over. It then sees the
            // newest message at once (allow a couple of intermediate ones if its I/O thread was
            // still reading when it asked) and nothing after it.
            var seen: [UInt64] = []
            let deadline = ContinuousClock.now.advanced(by: .seconds(10))
            while seen.last != count && ContinuousClock.now < deadline {
                if let message = try live.receive(timeout: .seconds(1)) {
                    seen.append(try #require(counterValue(Array(message.prefix(8)))))
                }
            }
            #expect(seen.last == count)
            #expect(seen.count <= 3, "the conflating subscriber received a backlog: \(seen)")
            #expect(seen == seen.sorted())
            #expect(try live.tryReceive() == nil)
        }
    }

    @Test("latest frame for multipart messages: receiveLatestMultipart drains to the newest")
    func latestFrameDrain() throws {
        try withFixture { f in
            let pub = try f.socket(.pub, [.sendHighWaterMark(0)])
            let sub = try f.socket(.sub, [.receiveHighWaterMark(0)])
            try sub.subscribe()
            try sub.connect(try pub.bind(try f.ipc("drain")))
            try synchronise(pub: pub, sub: sub, probe: "sync".bytes)
            for i in UInt64(1)...100 { try pub.sendMultipart([counter(i), [UInt8](repeating: 1, count: 1000)]) }
            Thread.sleep(forTimeInterval: 0.1)
            var newest: UInt64 = 0
            let deadline = ContinuousClock.now.advanced(by: .seconds(10))
            while newest != 100 && ContinuousClock.now < deadline {
                if let parts = try sub.receiveLatestMultipart(timeout: .seconds(1)) {
                    #expect(parts.count == 2)
                    newest = try #require(counterValue(parts[0]))
                }
            }
            #expect(newest == 100)
            #expect(try sub.tryReceiveMultipart() == nil)
        }
    }
}

/// A thread-safe counter (a release runs on libzmq's I/O thread).
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
