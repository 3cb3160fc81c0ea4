import Foundation
import QuiverZMQ
import Testing

@Suite("XPUB subscription topics", .timeLimit(.minutes(1)))
struct SubscriptionTopicsTests {
    @Test("subscribe and unsubscribe messages, prefix matching, the empty topic, other messages ignored")
    func logic() {
        var t = SubscriptionTopics()
        #expect(t.isEmpty && !t.wants(Array("Fabc".utf8)))
        let subscribed = t.apply([1] + Array("Fa".utf8))
        #expect(subscribed)
        #expect(t.wants(Array("Fabc".utf8)) && t.wants(Array("Fa".utf8)))
        #expect(!t.wants(Array("F".utf8)) && !t.wants(Array("Tabc".utf8)))
        let again = t.apply([1] + Array("Fa".utf8))  // verbose: a repeated subscription greets again
        #expect(again)
        let gone = t.apply([0] + Array("Fa".utf8))  // the last holder of "Fa" left
        #expect(!gone && t.isEmpty)
        let everything = t.apply([1])  // the empty topic: everything
        #expect(everything && t.wants(Array("anything".utf8)) && t.wants([]))
        let empty = t.apply([]), other = t.apply([2, 70])
        #expect(!empty && !other)
        t.apply([0])
        #expect(t.isEmpty)
    }

    /// What the tracker relies on: libzmq tells of every subscription (verbose) and of the last
    /// holder of a topic leaving, also by disconnecting, never of an earlier one.
    @Test("real XPUB: two subscribers to a topic; the first leaving keeps it wanted, the last removes it")
    func xpub() throws {
        try withFixture { f in
            let pub = try f.socket(.xpub, [.xpubVerbose(true)])
            let monitor = try pub.monitor([.disconnected])
            defer { monitor.close() }
            let endpoint = try pub.bind(try f.ipc("x"))
            var topics = SubscriptionTopics()
            var subscriptions = 0
            /// Applies what the publisher passes up for `duration`, or until `done`.
            func drain(for duration: Duration, until done: () -> Bool = { false }) throws {
                let deadline = ContinuousClock.now.advanced(by: duration)
                while ContinuousClock.now < deadline && !done() {
                    if let m = try pub.receive(timeout: .milliseconds(20)), topics.apply(m) { subscriptions += 1 }
                }
            }
            let frame = Array("F-frame".utf8)
            let first = try f.socket(.sub)
            try first.subscribe(Array("F".utf8))
            try first.connect(endpoint)
            let second = try f.socket(.sub)
            try second.subscribe(Array("F".utf8))
            try second.connect(endpoint)
            try drain(for: .seconds(5)) { subscriptions >= 2 }
            #expect(subscriptions == 2)
            #expect(topics.wants(frame))

            // The publisher has seen the first one go (its disconnect event) and passes nothing up.
            first.close()
            #expect(try monitor.wait(for: .disconnected, timeout: .seconds(5)) != nil)
            try drain(for: .milliseconds(200))
            #expect(topics.wants(frame))  // the second still holds "F"

            second.close()
            try drain(for: .seconds(5)) { !topics.wants(frame) }
            #expect(!topics.wants(frame) && topics.isEmpty)
        }
    }
}
