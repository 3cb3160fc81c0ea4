import Foundation
import QuiverWire
import QuiverWorkers
import QuiverZMQ
import Testing

/// The broadcaster's output buffers: encoded into, sent by ZeroMQ in place, recycled when libzmq
/// lets go of them.
@Suite("Broadcaster message buffers", .timeLimit(.minutes(1)))
struct MessagePoolTests {
    static func frame(_ index: UInt64, atoms: Int) -> Frame {
        let positions = AtomVectors((0..<atoms).map { i in SIMD3(Float(i % 17) * 0.31, Float(i % 5) * 0.7, Float(i) * 0.001 + Float(index)) })
        return Frame(index: index, step: Int64(index) * 10, time: Double(index), box: SIMD3(6, 6, 6),
                     energies: .init(potential: -2, kinetic: 1), temperature: 90, positions: positions, publishedAt: 2.5)
    }

    static func waitUntil(_ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(5)
        while !condition() && Date() < deadline { usleep(1000) }
        return condition()
    }

    @Test("a frame sent from a pooled buffer arrives intact; the buffer comes back once sent and is reused")
    func sendAndRecycle() throws {
        let pool = Broadcaster.MessageBufferPool()
        let context = try ZMQContext()
        defer { context.close() }
        let pull = try context.socket(.pull, options: [.linger(.zero)])
        let push = try context.socket(.push, options: [.linger(.zero)])
        defer { push.close(); pull.close() }
        try push.connect(try pull.bind("tcp://127.0.0.1:*"))

        let buffer = pool.take()
        let frame = Self.frame(7, atoms: 5000)
        _ = try frame.borrowed { (b) throws(WireError) in try FrameEncoder.encode(b, options: .init(), into: buffer) }
        let expected = try FrameEncoder.encode(frame, options: .init())
        let message = try pool.message(sending: buffer)
        let greeting = try message.copy()  // what the broadcaster keeps for late joiners
        try push.send(message)
        var received = ZMQMessage()
        #expect(try pull.receive(into: &received, timeout: .seconds(5)))
        #expect(received.bytes == expected)
        #expect(try received.withUnsafeBytes { (r) throws(WireError) in try FrameDecoder.decode(r) } == FrameDecoder.decode(expected))
        // The kept copy still holds the buffer.
        usleep(20_000)
        #expect(pool.idleCount == 0)
        _ = consume greeting
        #expect(Self.waitUntil { pool.idleCount == 1 })
        #expect(pool.take() === buffer)
    }

    @Test("at most `retained` idle buffers are kept")
    func retainedLimit() throws {
        let pool = Broadcaster.MessageBufferPool(retained: 2)
        final class Held { let message: ZMQMessage; init(_ m: consuming ZMQMessage) { message = m } }
        var messages: [Held] = []
        var buffers: [MessageBuffer] = []
        for i in 0..<5 {
            let buffer = pool.take()
            buffers.append(buffer)
            let frame = Self.frame(UInt64(i), atoms: 100)
            _ = try frame.borrowed { (b) throws(WireError) in try FrameEncoder.encode(b, options: .init(), into: buffer) }
            messages.append(Held(try pool.message(sending: buffer)))
        }
        #expect(Set(buffers.map(ObjectIdentifier.init)).count == 5)
        #expect(pool.idleCount == 0)
        messages.removeAll()  // closed unsent: each released at once
        #expect(pool.idleCount == 2)
    }
}
