import Foundation
import QuiverControl
import QuiverZMQ
import Testing

@Suite("Command client against a real ROUTER", .timeLimit(.minutes(1)))
struct ClientTests {
    @Test("a command and its arguments arrive signed and verified; the reply comes back")
    func roundTrip() throws {
        try withServer(handler: echo) { client, server in
            let reply = try client.send("step", args: ["count": 10])
            #expect(reply.isOK)
            #expect(reply.result == ["command": "step", "args": ["count": 10]])
            #expect(try reply.get() == reply.result)
            let received = server.received.value
            #expect(received.count == 1)
            #expect(received.first?.client == "alice")
            #expect(received.first?.id == reply.id)
            #expect(abs((received.first?.time ?? 0) - Date().timeIntervalSince1970) < 5)
            // A second command uses a new id and nonce.
            let second = try client.send("play")
            #expect(second.id != reply.id)
            #expect(server.received.value.count == 2)
            #expect(Set(server.received.value.map(\.nonce)).count == 2)
        }
    }

    @Test("a failure reply is returned, and get() throws it")
    func failureReply() throws {
        try withServer(handler: { request in
            .reply(.failure(id: request.id, ControlError(.locked, "state key 'k' is locked by client 'bob'")))
        }) { client, _ in
            let reply = try client.send("state.update", args: ["set": ["k": 1]])
            #expect(!reply.isOK)
            #expect(reply.error == ControlError(.locked, "state key 'k' is locked by client 'bob'", requestID: reply.id))
            #expect(controlError { _ = try reply.get() }?.code == .locked)
        }
    }

    @Test("unsigned, tampered and replayed requests are rejected by the server with a signed error")
    func rejected() throws {
        try withServer(handler: echo) { client, server in
            let request = client.makeRequest("play")
            let frames = client.sign(request)
            // Unsigned: one frame. The server cannot read the id: the reply's id is null.
            let unsigned = try client.sendRaw(frames: [frames[0]])
            #expect(unsigned.id == nil)
            #expect(unsigned.error?.code == .unsigned)
            // Tampered body.
            var tampered = frames
            tampered[0][tampered[0].count - 2] ^= 0x01
            #expect(try client.sendRaw(frames: tampered).error?.code == .badSignature)
            // Signed with another key.
            let other = try CommandClient(endpoint: server.endpoint, keyHex: otherKeyHex, clientID: "mallory", timeout: .seconds(5))
            defer { other.close() }
            let forged = other.sign(request)
            #expect(try client.sendRaw(frames: forged).error?.code == .badSignature)
            // The genuine request passes once; the same frames again are a replay.
            let first = try client.sendRaw(frames: frames)
            #expect(first.isOK)
            #expect(first.id == request.id)
            let replay = try client.sendRaw(frames: frames)
            #expect(replay.error == ControlError(.replayed, "nonce already used by client 'alice'", requestID: request.id))
            #expect(replay.id == request.id)
            // Stale: dated 60 s ago.
            var old = client.makeRequest("play")
            old.time -= 60
            #expect(try client.sendRaw(frames: client.sign(old)).error?.code == .stale)
            #expect(server.received.value.count == 1)
            #expect(server.rejected.value.map(\.code) == [.unsigned, .badSignature, .badSignature, .replayed, .stale])
        }
    }

    @Test("no reply within the timeout: a timeout error, and a late reply is not taken for the next one")
    func timeout() throws {
        try withServer(timeout: .milliseconds(150), handler: { request in
            if request.command == "slow" {
                Thread.sleep(forTimeInterval: 0.2)   // answers after the client gave up
                return .reply(.success(id: request.id, "late"))
            }
            return echo(request)
        }) { client, _ in
            let start = ContinuousClock.now
            let e = controlError { _ = try client.send("slow") }
            let waited = start.duration(to: .now)
            #expect(e?.code == .timeout)
            #expect(waited >= .milliseconds(150))
            #expect(waited < .seconds(2))
            // The late "late" reply must not be returned for this command.
            let reply = try client.send("play")
            #expect(reply.result == ["command": "play", "args": [:]])
        }
    }

    @Test("a reply not signed with the key: bad_signature; a reply that is not a reply: malformed")
    func replySignature() throws {
        try withServer(handler: { request in
            switch request.command {
            case "forge": return .forge(.success(id: request.id, "forged"))
            case "garbage": return .raw([bytes("hello")])
            default: return echo(request)
            }
        }) { client, _ in
            let e = controlError { _ = try client.send("forge") }
            #expect(e == ControlError(.badSignature, "the reply's signature does not match its body"))
            #expect(controlError { _ = try client.send("garbage") }?.code == .malformed)
            let after = try client.send("play")
            #expect(after.isOK)
        }
    }

    @Test("a malformed key or client id is rejected before connecting")
    func badConfiguration() {
        #expect(controlError { _ = try CommandClient(endpoint: "tcp://127.0.0.1:1", keyHex: "abc") }?.code == .invalidArgument)
        #expect(controlError { _ = try CommandClient(endpoint: "tcp://127.0.0.1:1", keyHex: testKeyHex, clientID: "no spaces") }?.code == .invalidArgument)
        // A default client id is random and valid.
        let a = try? CommandClient(endpoint: "tcp://127.0.0.1:1", keyHex: testKeyHex, timeout: .milliseconds(10))
        let b = try? CommandClient(endpoint: "tcp://127.0.0.1:1", keyHex: testKeyHex, timeout: .milliseconds(10))
        #expect(a != nil && b != nil)
        if let a, let b {
            #expect(CommandRequest.isValidClientID(a.clientID))
            #expect(a.clientID != b.clientID)
            // Nobody listens there: a timeout.
            #expect(controlError { _ = try a.send("play") }?.code == .timeout)
            a.close()
            b.close()
        }
    }

    @Test("over TCP on loopback too, with the reply layout a Python client parses")
    func tcp() throws {
        let context = try ZMQContext()
        defer { context.close() }
        let signer = try makeSigner()
        let endpoint = Locked<String?>(nil)
        let ready = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        let served = Locked<[[UInt8]]>([])
        Thread {
            defer { done.signal() }
            guard let router = try? context.socket(.router, options: ControlDefaults.serverSocketOptions + [.linger(.zero)]) else { ready.signal(); return }
            defer { router.close() }
            endpoint.value = try? router.bind(ZMQDefaults.loopbackAnyPort)
            ready.signal()
            guard let frames = try? router.receiveMultipart(timeout: .seconds(5)), frames.count == 3 else { return }
            served.value = frames
            var verifier = RequestVerifier(signer: signer)
            guard case .success(let request) = verifier.verify(frames: Array(frames.dropFirst()), now: Date().timeIntervalSince1970) else { return }
            let reply = CommandReply.success(id: request.id, ["step": 42])
            _ = try? router.sendMultipart([frames[0]] + reply.frames(signedWith: signer), timeout: .seconds(1))
        }.start()
        ready.wait()
        let bound = try #require(endpoint.value)
        #expect(bound.hasPrefix("tcp://127.0.0.1:"))
        let client = try CommandClient(endpoint: bound, keyHex: testKeyHex, clientID: "py", timeout: .seconds(5), context: context)
        let reply = try client.send("get", args: ["names": ["step"]])
        client.close()
        done.wait()
        #expect(reply.body == bytes(#"{"id":"\#(reply.id!)","ok":true,"result":{"step":42}}"#))
        // The ROUTER saw [routing id, body, 32-byte signature].
        #expect(served.value.count == 3)
        #expect(served.value[2].count == 32)
    }
}
