import Foundation
import QuiverClient
import QuiverSharedMemory
import QuiverSupervisor
import QuiverWire
import QuiverZMQ
import Testing

@Suite("Frames to clients: broadcaster, heartbeat, client library", .serialized)
struct BroadcastTests {
    @Test("a client receives frames with increasing index and step; positions match the engine's within the codec's precision")
    func framesMatchEngine() throws {
        let server = try TestServer(["--frame-interval", "5"])
        let info = try #require(server.connection)
        let segment = try SharedSegment.open(name: info.segment)
        let client = try QuiverClient(connectionFile: server.directory.path + "/connection.json")
        var last: Frame?
        var compared = 0
        for _ in 0..<40 {
            let r = try #require(try client.nextFrame(timeout: 5), "no frame")
            let f = r.frame
            if let last {
                #expect(f.index > last.index && f.step > last.step, "\(last.index)/\(last.step) -> \(f.index)/\(f.step)")
            }
            last = f
            #expect(f.atomCount == 500)
            // a sane latency (seconds, not milliseconds or nanoseconds); the bound is not a speed
            #expect((r.latency ?? -1) >= 0 && (r.latency ?? 10) < 10, "latency \(String(describing: r.latency))")
            var original = FrameRecord()
            if (try? segment.frames.read(f.index, into: &original)) != nil {
                var worst: Float = 0
                for i in 0..<f.atomCount {
                    worst = max(worst, abs(f.positions.x[i] - original.x[i]), abs(f.positions.y[i] - original.y[i]), abs(f.positions.z[i] - original.z[i]))
                }
                #expect(worst <= 0.0005 + 1e-6, "frame \(f.index): max position error \(worst) nm at precision 0.001")
                #expect(f.step == Int64(original.step) && f.time == original.time)
                compared += 1
            }
        }
        #expect(compared >= 10, "only \(compared) frames were still in the ring to compare")
        let topology = try #require(client.topology, "the topology never arrived")
        #expect(topology.atomCount == 500 && topology.typeNames == ["Ar"] && topology.elements?.first == 18)
        #expect(try client.ping() != nil)
        let health = try #require(try client.health())
        for role in ["engine", "broadcaster", "heartbeat"] { #expect(health.contains("\"role\":\"\(role)\"")) }
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
    }

    @Test("with --codec lossless the client's positions are the engine's, bit for bit")
    func losslessCodec() throws {
        let server = try TestServer(["--frame-interval", "5", "--codec", "lossless"])
        let segment = try SharedSegment.open(name: try #require(server.connection?.segment))
        let client = try QuiverClient(connectionFile: server.directory.path + "/connection.json")
        var compared = 0
        for _ in 0..<20 {
            let f = try #require(try client.nextFrame(timeout: 5)).frame
            var original = FrameRecord()
            if (try? segment.frames.read(f.index, into: &original)) != nil {
                #expect(f.positions.x == original.x && f.positions.y == original.y && f.positions.z == original.z)
                compared += 1
            }
        }
        #expect(compared >= 5)
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
    }

    @Test("a late joiner gets the topology and the latest frame at once; ipc works like tcp")
    func lateJoiner() throws {
        let server = try TestServer(["--frame-interval", "1000000"]) // one frame at start, then none for a long time
        usleep(300_000)
        for transport in [QuiverClient.Transport.tcp, .ipc] {
            let client = try QuiverClient(connectionFile: server.directory.path + "/connection.json", transport: transport)
            let r = try #require(try client.nextFrame(timeout: 10), "\(transport): the latest frame was not sent to a late joiner")
            #expect(r.frame.index == 0)
            #expect(client.topology?.atomCount == 500, "\(transport): no topology")
        }
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
    }

    @Test("a raw ZMTP peer that cancels the frame topic it never held, then leaves, does not stop frames to a client")
    func strayCancel() throws {
        let server = try TestServer(["--frame-interval", "5"])
        let info = try #require(server.connection)
        let client = try QuiverClient(connectionFile: server.directory.path + "/connection.json")
        _ = try #require(try client.nextFrame(timeout: 5), "no first frame")
        // libzmq's SUB never sends this, but XPUB passes such a cancel up although the client
        // still holds the topic: a broadcaster that trusted it alone would stop encoding.
        let endpoint = try #require(info.endpoints["frames"])
        let port = try #require(endpoint.split(separator: ":").last.flatMap { UInt16($0) }, "no port in \(endpoint)")
        try RawZMTPPeer.sendCancel(port: port, topic: MessageKind.frame.subscriptionPrefix)
        usleep(300_000)
        var received = 0
        let deadline = Date().addingTimeInterval(15) // bounds the test only
        while received < 10 && Date() < deadline {
            if try client.nextFrame(timeout: 0.5) != nil { received += 1 }
        }
        #expect(received >= 10, "frames stopped after a stray cancel: \(received) in 15 s")
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
    }

    @Test("a slow client gets the newest frame, never a backlog")
    func slowClient() throws {
        let server = try TestServer(["--frame-interval", "2"])
        let segment = try SharedSegment.open(name: try #require(server.connection?.segment))
        let client = try QuiverClient(connectionFile: server.directory.path + "/connection.json")
        _ = try client.nextFrame(timeout: 10)
        for _ in 0..<4 {
            // Far slower than the stream: wait until many frames have gone by unread (the engine
            // publishes hundreds a second; the deadline only bounds the test).
            let before = segment.frames.published
            usleep(400_000)
            #expect(eventually(within: 10) { segment.frames.published >= before + 50 }, "the stream must be much faster than the client")
            let published = segment.frames.published
            let r = try #require(try client.nextFrame(timeout: 10))
            // The newest frame, not a backlog: published after this round began (a queued backlog
            // would start with the frame just after the one read last round, published before).
            #expect(r.frame.index >= before, "got frame \(r.frame.index), published before this round began at \(before) (\(published) now): a backlog")
        }
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
    }

    @Test("SIGKILL the broadcaster, then the heartbeat, then the engine while a client watches: each respawned, frames resume within a second, never backwards")
    func killEachWorker() throws {
        let server = try TestServer(["--frame-interval", "5"])
        let client = try QuiverClient(connectionFile: server.directory.path + "/connection.json")
        var last = try #require(try client.nextFrame(timeout: 5)).frame
        func workerPID(_ role: String) throws -> Int32 {
            let s = try server.status()
            let w = try #require((s["workers"] as? [[String: Any]])?.first { $0["role"] as? String == role })
            return Int32(w["pid"] as? Int ?? 0)
        }
        for role in ["broadcaster", "heartbeat", "engine"] {
            let pid = try workerPID(role)
            #expect(alive(pid))
            kill(pid, SIGKILL)
            let killed = Date()
            // Frames continue (or resume) and never go back. The deadline bounds the test only.
            var resumed: Double?
            var after = 0
            while Date().timeIntervalSince(killed) < 20 {
                guard let r = try client.nextFrame(timeout: 0.2) else { continue }
                #expect(r.frame.index >= last.index && r.frame.step >= last.step, "\(role): \(last.index)/\(last.step) -> \(r.frame.index)/\(r.frame.step)")
                // Only a frame the engine published after the kill shows the pipeline resumed.
                if r.frame.index > last.index && (r.frame.publishedAt ?? 0) > killed.timeIntervalSince1970 {
                    resumed = resumed ?? Date().timeIntervalSince(killed)
                    after += 1
                }
                last = r.frame
                if after >= 5 { break }
            }
            let gap = try #require(resumed, "\(role): frames did not resume")
            #expect(after >= 5, "\(role): only \(after) frames after the kill")
            #expect(try eventually(within: 15) { let p = try workerPID(role); return p != 0 && p != pid && alive(p) }, "\(role) was not respawned")
            print("killed \(role): frames resumed after \(String(format: "%.0f", gap * 1000)) ms")
        }
        #expect(try eventually(within: 15) { try client.ping(timeout: 0.5) != nil }, "the respawned heartbeat does not answer")
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
        let files = try FileManager.default.contentsOfDirectory(atPath: server.directory.path)
        #expect(files == ["lock"], "left behind: \(files)")
    }

    @Test("quiver watch prints one JSON object per frame with index, step, atoms and latency")
    func watchCommand() throws {
        let server = try TestServer(["--frame-interval", "5"])
        let r = try QuiverProcess.run(["watch", server.directory.path + "/connection.json", "--frames", "5", "--format", "json"], timeout: 30)
        #expect(r.status == 0, "\(r.stderr)")
        let objects = try r.stdout.split(separator: "\n").map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(objects.count == 5)
        let indices = objects.compactMap { $0["frame_index"] as? Int }
        #expect(indices == indices.sorted() && Set(indices).count == 5)
        #expect(objects.allSatisfy { $0["atoms"] as? Int == 500 && $0["step"] != nil && ($0["latency_ms"] as? Double) != nil })
        let light = try QuiverProcess.run(["watch", server.directory.path + "/connection.json", "--frames", "3", "--format", "json", "--no-decode"], timeout: 30)
        #expect(light.status == 0, "\(light.stderr)")
        let lightObjects = try light.stdout.split(separator: "\n").map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(lightObjects.count == 3 && lightObjects.allSatisfy { $0["atoms"] as? Int == 500 && ($0["latency_ms"] as? Double) != nil && ($0["temperature"] as? Double) != nil })
        let table = try QuiverProcess.run(["watch", server.directory.path + "/connection.json", "--frames", "3"], timeout: 30)
        #expect(table.status == 0 && table.stdout.contains("frames/s") && table.stdout.contains("latency"))
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
        let bad = try QuiverProcess.run(["watch", "/nonexistent/connection.json", "--frames", "1"], timeout: 30)
        #expect(bad.status != 0 && bad.stderr.contains("/nonexistent/connection.json"))
    }
}

/// A peer that speaks ZMTP 3.0 over a plain TCP socket (127.0.0.1), as a SUB, and sends what no
/// libzmq SUB would: an unsubscription for a topic it never subscribed to.
enum RawZMTPPeer {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static func sendCancel(port: UInt16, topic: [UInt8]) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw Failure(description: "connect: errno \(errno)") }
        // Greeting: signature, version 3.0, mechanism NULL, as-server 0, filler.
        var greeting = [UInt8](repeating: 0, count: 64)
        greeting[0] = 0xFF; greeting[9] = 0x7F; greeting[10] = 3
        for (i, b) in "NULL".utf8.enumerated() { greeting[12 + i] = b }
        try write(fd, greeting)
        var peerGreeting = [UInt8](repeating: 0, count: 64)
        guard read(fd, &peerGreeting, 64) > 0, peerGreeting[0] == 0xFF else { throw Failure(description: "no ZMTP greeting from the server") }
        // READY with Socket-Type SUB (a short command), then the cancel as one short message.
        var body: [UInt8] = [5] + Array("READY".utf8) + [11] + Array("Socket-Type".utf8) + [0, 0, 0, 3] + Array("SUB".utf8)
        try write(fd, [0x04, UInt8(body.count)] + body)
        body = [0] + topic
        try write(fd, [0x00, UInt8(body.count)] + body)
        usleep(200_000)  // let the broadcaster read it before the peer goes
    }

    private static func write(_ fd: Int32, _ bytes: [UInt8]) throws {
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw Failure(description: "write: \(n) of \(bytes.count) bytes, errno \(errno)") }
    }
}
