import Foundation
import QuiverZMQ
import Testing

@Suite("ZeroMQ poll, non-blocking and bounded calls", .timeLimit(.minutes(1)))
struct PollTests {
    @Test("poll with nothing to read returns empty events after about the timeout")
    func pollExpires() throws {
        try withFixture { f in
            let pull = try f.socket(.pull)
            try pull.bind(try f.ipc("idle"))
            var events: [ZMQEvents] = []
            let seconds = try elapsed { events = try ZMQ.poll([.socket(pull)], timeout: .milliseconds(100)) }
            #expect(events == [[]])
            #expect(seconds >= 0.095)
            #expect(seconds < 2)
            // A zero timeout returns at once.
            var ready: ZMQEvents = [.error]
            let instant = try elapsed { ready = try pull.poll(timeout: .zero) }
            #expect(ready.isEmpty)
            #expect(instant < 0.5)
        }
    }

    @Test("poll over two sockets and a file descriptor fires for the ready ones only")
    func pollFires() throws {
        try withFixture { f in
            let quiet = try f.socket(.pull)
            let busy = try f.socket(.pull)
            let push = try f.socket(.push)
            try quiet.bind(try f.ipc("quiet"))
            try push.connect(try busy.bind(try f.ipc("busy")))
            try push.send([1])

            var fds: [Int32] = [0, 0]
            #expect(pipe(&fds) == 0)
            defer { Glibc.close(fds[0]); Glibc.close(fds[1]) }

            var events: [ZMQEvents] = []
            let seconds = try elapsed {
                events = try ZMQ.poll([.socket(quiet), .socket(busy), .fileDescriptor(fds[0])], timeout: .seconds(10))
            }
            #expect(events == [[], .readable, []])
            #expect(seconds < 5)
            #expect(try busy.tryReceive() == [1])

            var byte: UInt8 = 7
            #expect(write(fds[1], &byte, 1) == 1)
            events = try ZMQ.poll([.socket(quiet), .fileDescriptor(fds[0])], timeout: .seconds(10))
            #expect(events == [[], .readable])

            // Writability: a PUSH with a connected peer can send.
            #expect(try push.poll(.writable, timeout: .seconds(5)).contains(.writable))
            #expect(try push.events.contains(.writable))
        }
    }

    @Test("non-blocking receive returns nil, bounded receive returns nil after its timeout")
    func nonBlocking() throws {
        try withFixture { f in
            let pull = try f.socket(.pull)
            let multi = try f.socket(.sub)
            try pull.bind(try f.ipc("nb"))
            #expect(try pull.tryReceive() == nil)
            #expect(try multi.tryReceiveMultipart() == nil)
            var message = ZMQMessage()
            #expect(try pull.tryReceive(into: &message) == false)
            var received: [UInt8]? = [1]
            let seconds = try elapsed { received = try pull.receive(timeout: .milliseconds(50)) }
            #expect(received == nil)
            #expect(seconds >= 0.045 && seconds < 2)

            // A PUSH with no peer cannot queue: trySend is false, a bounded send gives up.
            let push = try f.socket(.push)
            #expect(try push.trySend([1]) == false)
            #expect(try push.trySendMultipart([[1], [2]]) == false)
            #expect(try push.send([1], timeout: .milliseconds(50)) == false)
            #expect(try push.sendMultipart([[1], [2]], timeout: .milliseconds(50)) == false)
        }
    }

    @Test("a blocking receive gives up with .again when the socket's receive timeout expires")
    func receiveTimeoutOption() throws {
        try withFixture { f in
            let pull = try f.socket(.pull, [.receiveTimeout(.milliseconds(50))])
            try pull.bind(try f.ipc("rcvtimeo"))
            let seconds = elapsed {
                #expect(throws: ZMQError.again) { try pull.receive() }
                #expect(throws: ZMQError.again) { try pull.receiveMultipart() }
            }
            #expect(seconds >= 0.09 && seconds < 2)
            let push = try f.socket(.push, [.sendTimeout(.milliseconds(20))])
            #expect(throws: ZMQError.again) { try push.send([1]) }
        }
    }

    @Test("ZMQTimeout: rounding up to whole milliseconds, infinite as -1")
    func timeouts() {
        #expect(ZMQTimeout.infinite.milliseconds == -1)
        #expect(ZMQTimeout.zero.milliseconds == 0)
        #expect(ZMQTimeout.after(.microseconds(1)).milliseconds == 1)
        #expect(ZMQTimeout.after(.milliseconds(1500)).milliseconds == 1500)
        #expect(ZMQTimeout.after(.seconds(-3)).milliseconds == 0)
        #expect(ZMQTimeout.after(.seconds(1_000_000_000)).milliseconds == Int32.max)
        #expect(ZMQTimeout(milliseconds: -1) == .infinite)
        #expect(ZMQTimeout(milliseconds: 250) == .milliseconds(250))
    }
}
