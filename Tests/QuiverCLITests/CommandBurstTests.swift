import Foundation
import QuiverControl
import QuiverZMQ
import Testing

/// Issue 12, finding 2: a burst of commands for the engine, faster than the engine's command ring
/// empties. Every reply must be true: `ok` for a command applied, `busy` for one not applied (and
/// never to be); never applied-and-reported-lost.
@Suite("Command bursts: every reply is true", .serialized)
struct CommandBurstTests {
    /// Sends every request at once on one DEALER and collects one reply per request (bounded wait).
    static func burst(_ server: TestServer, _ client: CommandClient, _ requests: [CommandRequest]) throws -> [String: CommandReply] {
        let c = try #require(server.connection)
        let signer = try CommandSigner(keyHex: c.key)
        let context = try ZMQContext()
        defer { context.close() }
        let dealer = try context.socket(.dealer, options: ZMQDefaults.socketOptions + [.linger(.zero)])
        defer { dealer.close() }
        try dealer.connect(try #require(c.endpoints["control"]))
        for r in requests { try dealer.sendMultipart(client.sign(r)) }
        var replies: [String: CommandReply] = [:]
        let start = ContinuousClock.now
        while replies.count < requests.count && seconds(since: start) < 60,
              let m = try dealer.receiveMultipart(timeout: .seconds(30)) {
            let r = try CommandReply.decode(frames: m, verifyingWith: signer)
            try #require(r.id != nil, "a reply without id: \(r)")
            replies[r.id!] = r
        }
        return replies
    }

    static func codes(_ replies: [String: CommandReply]) -> [String: Int] {
        replies.values.reduce(into: [:]) { $0[$1.error?.code.rawValue ?? "ok", default: 0] += 1 }
    }

    @Test("64 interaction.set (the longest ids) and 300 renew sent back to back: every reply ok or busy, each true; interaction.list answers at the maximum of 64")
    func burstReplies() throws {
        let server = try TestServer(["--frame-interval", "5"])
        let client = try server.commandClient("burst", timeout: 30)
        // The longest ids JSON can make (128 control characters, six bytes each once written).
        let ids = (0..<64).map { k in String(repeating: "\u{1}", count: 126) + String(format: "%02d", k) }
        var requestFor: [String: String] = [:]
        let sets = ids.enumerated().map { k, id in
            let r = client.makeRequest("interaction.set", args: ["id": .string(id), "type": "spring", "position": [1, 1, 1],
                                                                  "particles": [.number(Double(k))], "scale": 0, "lease": 600])
            requestFor[r.id] = id
            return r
        }
        let setReplies = try Self.burst(server, client, sets)
        let setCodes = Self.codes(setReplies)
        print("64 interaction.set back to back: \(setCodes)")
        #expect(setReplies.count == 64, "\(setReplies.count) replies to 64 requests")
        let unexpected = setReplies.values.compactMap(\.error).filter { $0.code != .busy }
        #expect(unexpected.isEmpty, "\(setCodes): \(unexpected.prefix(3))")
        let applied = Set(setReplies.filter { $0.value.isOK }.compactMap { requestFor[$0.key] })
        // What the engine holds is exactly what was answered ok.
        let list = try client.send("interaction.list")
        #expect(list.isOK, "interaction.list at \(applied.count) interactions: \(list)")
        let held = Set(list.result?.objectValue?["interactions"]?.arrayValue?.compactMap { $0.objectValue?["id"]?.stringValue } ?? [])
        #expect(held == applied, "the engine holds \(held.count), \(applied.count) were answered ok")
        #expect(applied.count == 64, "the control worker's queue holds a burst of 64: \(setCodes)")

        let renews = (0..<300).map { _ in client.makeRequest("renew") }
        let renewReplies = try Self.burst(server, client, renews)
        let renewCodes = Self.codes(renewReplies)
        print("300 renew back to back: \(renewCodes)")
        #expect(renewReplies.count == 300, "\(renewReplies.count) replies to 300 requests")
        #expect(renewCodes == ["ok": 300], "\(renewCodes): \(renewReplies.values.compactMap(\.error).prefix(3))")
        #expect(renewReplies.values.allSatisfy { $0.result?.objectValue?["renewed"]?.numberValue == 64 })
    }

    @Test("the engine stopped: commands the ring took are answered timeout and applied once it runs again; those still queued are answered busy and never applied")
    func stoppedEngine() throws {
        let server = try TestServer(["--frame-interval", "5"])
        let client = try server.commandClient("stopped", timeout: 30)
        #expect(try client.send("renew").isOK)
        let engine = try server.engine()
        kill(engine.pid, SIGSTOP)
        defer { kill(engine.pid, SIGCONT) }
        let ring = 32  // SegmentLayout.commandSlots
        var requestFor: [String: String] = [:]
        let sets = (0..<(ring + 8)).map { k in
            let r = client.makeRequest("interaction.set", args: ["id": .string("held-\(k)"), "type": "spring", "position": [1, 1, 1],
                                                                  "particles": [.number(Double(k))], "scale": 0, "lease": 600])
            requestFor[r.id] = "held-\(k)"
            return r
        }
        let replies = try Self.burst(server, client, sets)
        let codes = Self.codes(replies)
        print("engine stopped, \(ring + 8) interaction.set: \(codes)")
        #expect(codes == ["timeout": ring, "busy": 8], "\(codes)")
        let timedOut = Set(replies.filter { $0.value.error?.code == .timeout }.compactMap { requestFor[$0.key] })
        kill(engine.pid, SIGCONT)
        // The engine (or its successor, should the watchdog have replaced it) applies what the ring holds.
        var held: Set<String> = []
        #expect(eventually(within: 30) {
            let list = try? client.send("interaction.list")
            held = Set(list?.result?.objectValue?["interactions"]?.arrayValue?.compactMap { $0.objectValue?["id"]?.stringValue } ?? [])
            return held == timedOut
        }, "the engine holds \(held.sorted()); answered timeout: \(timedOut.sorted())")
    }

    @Test("a bye that waits behind a full ring while the engine is stopped: answered timeout, never busy (its session ended at once), and applied when the engine runs again", .timeLimit(.minutes(2)))
    func byeBehindStoppedEngine() throws {
        let server = try TestServer(["--frame-interval", "5"])
        let leaver = try server.commandClient("leaver", timeout: 30)
        let other = try server.commandClient("other", timeout: 30)
        #expect(try leaver.send("interaction.set", args: ["id": "kept", "type": "spring", "position": [1, 1, 1], "particles": [0], "scale": 0, "lease": 600]).isOK)
        let engine = try server.engine()
        kill(engine.pid, SIGSTOP)
        defer { kill(engine.pid, SIGCONT) }
        // Another client fills the ring (32 slots) so that the bye waits in the control worker's queue.
        let fill = (0..<32).map { k in other.makeRequest("interaction.set", args: ["id": .string("fill-\(k)"), "type": "spring", "position": [1, 1, 1],
                                                                                   "particles": [.number(Double(k + 1))], "scale": 0, "lease": 600]) }
        let fillCodes = Self.codes(try Self.burst(server, other, fill))
        #expect(fillCodes == ["timeout": 32], "\(fillCodes)")
        let bye = try leaver.send("bye")
        #expect(bye.error?.code == .timeout, "bye answered \(bye)")
        kill(engine.pid, SIGCONT)
        var ids: Set<String> = []
        var last: CommandReply?
        #expect(eventually(within: 30) {
            last = try? other.send("interaction.list")
            ids = Set(last?.result?.objectValue?["interactions"]?.arrayValue?.compactMap { $0.objectValue?["id"]?.stringValue } ?? [])
            // (The filler's own interactions may be gone too: its session lapsed while it waited.)
            return last?.isOK == true && !ids.contains("kept")
        }, "the bye was not applied once the engine ran again: \(ids.sorted()) \(String(describing: last))")
    }
}
