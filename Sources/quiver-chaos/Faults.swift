import Foundation
import Glibc
import QuiverControl
import QuiverModel
import QuiverSupervisor
import QuiverZMQ

extension Harness {
    func inject(_ row: Row, into report: inout Report) {
        var r = report.rows[row] ?? RowResult()
        r.runs += 1
        let nonFiniteBefore = watch.snapshot.nonFinite
        log(row.title)
        switch row {
        case .killBroadcaster, .killControl, .killHeartbeat, .killEngine: killWorker(row.role!, &r)
        case .stopEngine: stopEngine(&r)
        case .absurdPull: absurdPull(&r)
        case .commandBurst: commandBurst(&r)
        case .forceStorm: forceStorm(&r)
        case .subscriptionFlood: flood(&r)
        case .idleControlClients: idleClients(&r)
        case .garbage: garbage(&r)
        }
        r.nonFinite += watch.snapshot.nonFinite - nonFiniteBefore
        report.rows[row] = r
    }

    /// SIGKILL a worker; respawn = until `status` shows a new pid running; resume = until the next frame.
    func killWorker(_ role: String, _ r: inout RowResult, before kill: (() -> Void)? = nil) {
        guard let old = workers()[role], old.pid > 0, old.state == "running" else { r.note("\(role) not running before the kill"); return }
        let t0 = SystemClock.monotonicSeconds
        Glibc.kill(old.pid, SIGKILL)
        var respawned: Double?
        var resumed: Double?
        let deadline = t0 + 15
        while SystemClock.monotonicSeconds < deadline && (respawned == nil || resumed == nil) {
            if respawned == nil, let w = workers()[role], w.pid > 0, w.pid != old.pid, w.state == "running" {
                respawned = SystemClock.monotonicSeconds - t0
            }
            if resumed == nil, let t = watch.firstArrival(after: t0) { resumed = t - t0 }
            usleep(2_000)
        }
        if let respawned { r.respawn.append(respawned) } else { r.violations.append("\(role) not respawned within 15 s"); r.note("no respawn") }
        if let resumed { r.resume.append(resumed) } else { r.violations.append("no frame within 15 s of killing \(role)") }
    }

    /// SIGSTOP the engine: the watchdog must find it and replace it.
    func stopEngine(_ r: inout RowResult) {
        guard let old = workers()["engine"], old.pid > 0 else { r.note("engine not running"); return }
        let t0 = SystemClock.monotonicSeconds
        Glibc.kill(old.pid, SIGSTOP)
        let replaced = wait(watchdog + 15) { (workers()["engine"]?.pid).map { $0 != old.pid && $0 > 0 } ?? false }
        let t1 = SystemClock.monotonicSeconds
        if replaced {
            r.respawn.append(t1 - t0)
            if t1 - t0 > watchdog + 1 + 0.5 { r.note("found after \(ms(t1 - t0)) ms (watchdog \(watchdog) s)") }
            wait(5) { watch.firstArrival(after: t1) != nil }
            if let t = watch.firstArrival(after: t0) { r.resume.append(t - t0) }
        } else {
            r.violations.append("a stopped engine was not replaced within watchdog + 15 s")
        }
        if kill(old.pid, 0) == 0, (try? String(contentsOfFile: "/proc/\(old.pid)/cmdline", encoding: .utf8))?.contains("quiver") == true {
            r.violations.append("the stopped engine (pid \(old.pid)) was left alive")
            kill(old.pid, SIGCONT)
            kill(old.pid, SIGKILL)
        }
    }

    /// The pull of finding 1: the run must stay up, publish nothing non-finite, pause with the
    /// interaction ended, and go on after `play`.
    func absurdPull(_ r: inout RowResult) {
        let engineBefore = workers()["engine"]
        let args: [String: JSONValue] = [
            "id": .string("absurd"), "type": .string("spring"), "scale": .number(1e30),
            "position": .array([.number(0.5), .number(0.5), .number(0.5)]),
            "particles": .array((0..<10).map { .number(Double($0)) }),
        ]
        do {
            let reply = try commands.send("interaction.set", args: args)
            if !reply.isOK { r.note("set refused: \(reply.error?.code.rawValue ?? "?")"); return }
        } catch { r.note("set failed: \(error)"); return }
        // The engine pauses itself after a blow-up; wait for that (or for 3 s of dynamics).
        let paused = wait(5) { ((try? commands.send("get", args: ["names": .array([.string("paused")])]))?.result?.objectValue?["paused"]?.boolValue) == true }
        let list = try? commands.send("interaction.list")
        let remaining = list?.result?.arrayValue?.count ?? list?.result?.objectValue?["interactions"]?.arrayValue?.count ?? -1
        if remaining > 0 { r.violations.append("the interaction outlived the blow-up (\(remaining) listed)") }
        if paused { r.note("paused") }
        let engineAfter = workers()["engine"]
        if let b = engineBefore, let a = engineAfter, a.restarts > b.restarts { r.violations.append("the engine was restarted \(a.restarts - b.restarts) times") }
        let stepAtPause = watch.snapshot.step
        _ = try? commands.send("interaction.remove", args: ["id": .string("absurd")])
        _ = try? commands.send("play")
        if !wait(10, { watch.snapshot.step > stepAtPause }) { r.violations.append("no step after play") }
    }

    /// 64 `interaction.set` then 300 `renew` back to back on one socket: every reply must be true.
    func commandBurst(_ r: inout RowResult) {
        guard let context = try? ZMQContext(), let socket = try? context.socket(.dealer, options: [.linger(.zero)]),
              let signer = try? CommandSigner(keyHex: connection.key) else { r.note("no socket"); return }
        defer { socket.close(); context.close() }
        guard (try? socket.connect(connection.endpoints["control"]!)) != nil else { r.note("no connection"); return }
        let client = "chaos-burst-\(r.runs)"
        func request(_ command: String, _ args: [String: JSONValue]) -> [[UInt8]] {
            CommandRequest(id: UUID().uuidString, client: client, nonce: CommandRequest.randomNonce(),
                           time: Date().timeIntervalSince1970, command: command, args: args).frames(signedWith: signer)
        }
        func burst(_ requests: [[[UInt8]]]) -> [String: Int] {
            for f in requests { _ = try? socket.sendMultipart(f) }
            var codes: [String: Int] = [:]
            for _ in requests {
                guard let frames = try? socket.receiveMultipart(timeout: .seconds(15)),
                      let reply = try? CommandReply.decode(frames: frames, verifyingWith: signer) else { codes["no reply", default: 0] += 1; continue }
                codes[reply.isOK ? "ok" : reply.error!.code.rawValue, default: 0] += 1
            }
            return codes
        }
        let sets = (0..<64).map { i in
            request("interaction.set", ["id": .string("burst-\(i)"), "type": .string("spring"), "scale": .number(1),
                                        "position": .array([.number(1), .number(1), .number(1)]),
                                        "particles": .array([.number(Double(i))])])
        }
        let setCodes = burst(sets)
        // What the engine holds must be what was answered ok.
        let listed = listInteractions(socket: socket, signer: signer, request: request).map { ids in ids.filter { $0.hasPrefix("burst-") }.count }
        let renewCodes = burst((0..<300).map { _ in request("renew", [:]) })
        for (code, n) in setCodes { r.count("set \(code)", n) }
        for (code, n) in renewCodes { r.count("renew \(code)", n) }
        for bad in ["internal", "no reply"] {
            if let n = setCodes[bad] { r.violations.append("\(n) interaction.set answered \(bad)") }
            if let n = renewCodes[bad] { r.violations.append("\(n) renew answered \(bad)") }
        }
        if let listed {
            if listed != setCodes["ok", default: 0] { r.violations.append("\(setCodes["ok", default: 0]) sets answered ok, \(listed) listed by the engine") }
        } else {
            r.violations.append("interaction.list failed with the burst's interactions active")
        }
        _ = burst([request("bye", [:])])
    }

    static let stormRate = 2000.0

    /// One client updating its interaction 2000 times a second for 2 s (RELIABILITY.md row 16):
    /// rate-limited, and the engine's step rate drops by less than 10 %.
    func forceStorm(_ r: inout RowResult) {
        guard let context = try? ZMQContext(), let socket = try? context.socket(.dealer, options: [.linger(.zero)]),
              let signer = try? CommandSigner(keyHex: connection.key) else { r.note("no socket"); return }
        defer { socket.close(); context.close() }
        guard (try? socket.connect(connection.endpoints["control"]!)) != nil else { r.note("no connection"); return }
        let client = "chaos-storm-\(r.runs)"
        func stepRate(over seconds: Double, while body: () -> Void = {}) -> Double {
            let (s0, t0) = (watch.snapshot.step, SystemClock.monotonicSeconds)
            while SystemClock.monotonicSeconds - t0 < seconds { body(); if SystemClock.monotonicSeconds - t0 < seconds { usleep(1_000) } }
            return Double(watch.snapshot.step - s0) / (SystemClock.monotonicSeconds - t0)
        }
        let quiet = stepRate(over: 2)
        let controlPID = workers()["control"]?.pid ?? 0
        let cpu0 = (Self.cpuSeconds(controlPID), Self.cpuSeconds(getpid()))
        var sent = 0
        var codes: [String: Int] = [:]
        func drain() {
            while let frames = try? socket.tryReceiveMultipart() {
                guard let reply = try? CommandReply.decode(frames: frames, verifyingWith: signer) else { codes["unreadable", default: 0] += 1; continue }
                codes[reply.isOK ? "ok" : reply.error!.code.rawValue, default: 0] += 1
            }
        }
        let start = SystemClock.monotonicSeconds
        let storm = stepRate(over: 2) {
            // Paced at `Self.stormRate` requests per second (thousands, as RELIABILITY.md row 16 says).
            let due = Int((SystemClock.monotonicSeconds - start) * Self.stormRate)
            while sent < due {
                let x = Double.random(in: 0.5...1.5)
                let body = CommandRequest(id: String(sent), client: client, nonce: CommandRequest.randomNonce(), time: Date().timeIntervalSince1970,
                                          command: "interaction.set",
                                          args: ["id": .string("storm"), "type": .string("spring"), "scale": .number(10),
                                                 "position": .array([.number(x), .number(1), .number(1)]), "particles": .array([.number(0), .number(1)])])
                if (try? socket.trySendMultipart(body.frames(signedWith: signer))) != true { break }
                sent += 1
            }
            drain()
        }
        let cpu1 = (Self.cpuSeconds(controlPID), Self.cpuSeconds(getpid()))
        usleep(300_000)
        drain()
        let bye = CommandRequest(id: "bye", client: client, nonce: CommandRequest.randomNonce(), time: Date().timeIntervalSince1970, command: "bye")
        _ = try? socket.sendMultipart(bye.frames(signedWith: signer))
        _ = try? socket.receiveMultipart(timeout: .seconds(5))
        let drop = quiet > 0 ? (1 - storm / quiet) * 100 : 0
        r.latest = String(format: "%d sent, steps/s %.0f before, %.0f during; CPU during the storm: control worker %.0f %%, this client %.0f %% of a core",
                          sent, quiet, storm, (cpu1.0 - cpu0.0) / 2 * 100, (cpu1.1 - cpu0.1) / 2 * 100)
        for (code, n) in codes { r.count(code, n) }
        if codes["internal"] != nil || codes["unreadable"] != nil { r.violations.append("untrue or unreadable replies: \(codes)") }
        r.measures.append(drop)
    }

    /// User plus system CPU seconds of a process so far (/proc/PID/stat).
    static func cpuSeconds(_ pid: Int32) -> Double {
        guard pid > 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
        guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { return 0 }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    func listInteractions(socket: ZMQSocket, signer: CommandSigner, request: (String, [String: JSONValue]) -> [[UInt8]]) -> [String]? {
        guard (try? socket.sendMultipart(request("interaction.list", [:]))) != nil,
              let frames = try? socket.receiveMultipart(timeout: .seconds(15)),
              let reply = try? CommandReply.decode(frames: frames, verifyingWith: signer), let result = reply.result else { return nil }
        let items = result.arrayValue ?? result.objectValue?["interactions"]?.arrayValue ?? []
        return items.compactMap { $0.objectValue?["id"]?.stringValue }
    }

    /// Three subscribers a publisher endpoint with 20 random 100 KB topics each, and multi-MB
    /// inbound messages on every ZeroMQ endpoint; then all leave. Memory must come back.
    func flood(_ r: inout RowResult) {
        let w = workers()
        r.latest = nil
        let targets = ["broadcaster", "control"].compactMap { role in w[role].map { (role, $0.pid) } }
        let baseline = Dictionary(uniqueKeysWithValues: targets.map { ($0.0, Self.resources(of: $0.1)?.rssKiB ?? 0) })
        guard let context = try? ZMQContext() else { return }
        var sockets: [ZMQSocket] = []
        for endpoint in ["frames", "state"] {
            for _ in 0..<3 {
                guard let s = try? context.socket(.sub, options: [.linger(.zero)]) else { continue }
                for _ in 0..<20 { try? s.subscribe((0..<100_000).map { _ in UInt8.random(in: 0...255) }) }
                try? s.connect(connection.endpoints[endpoint]!)
                sockets.append(s)
            }
        }
        let big = [UInt8](repeating: 0x42, count: 4 << 20)
        for (endpoint, type) in [("frames", ZMQSocket.SocketType.xsub), ("state", .xsub), ("control", .dealer), ("heartbeat", .dealer)] {
            guard let s = try? context.socket(type, options: [.linger(.zero)]) else { continue }
            try? s.connect(connection.endpoints[endpoint]!)
            _ = try? s.sendMultipart(type == .dealer && endpoint == "heartbeat" ? [[], big] : [big])
            sockets.append(s)
        }
        // Give the server time to take it all in, then measure the peak.
        usleep(1_500_000)
        var peak: [String: Int] = [:]
        for (role, pid) in targets { peak[role] = Self.resources(of: pid)?.rssKiB ?? 0 }
        for s in sockets { s.close() }
        context.close()
        for (role, pid) in targets {
            let base = baseline[role] ?? 0
            var now = Self.resources(of: pid)?.rssKiB ?? 0
            _ = wait(10) { now = Self.resources(of: pid)?.rssKiB ?? 0; return now - base < 1024 }
            let alive = workers()[role]?.pid == pid
            r.latest = (r.latest.map { $0 + ", " } ?? "") + "\(role) RSS \(mb(base)) / \(mb(peak[role] ?? 0)) / \(mb(now)) MB before / flood / after"
            if !alive { r.violations.append("\(role) was restarted during the flood") }
            if alive && now - base >= 1024 { r.violations.append("\(role) RSS \(mb(base)) MB before, \(mb(now)) MB 10 s after the flood left") }
        }
    }

    /// Eight connections to control.sock that send nothing, then kill -9 the broadcaster.
    func idleClients(_ r: inout RowResult) {
        let fds = (0..<8).compactMap { _ in Self.connectStream(to: "ipc://" + runDirectory + "/control.sock") }
        defer { for fd in fds { close(fd) } }
        if fds.count < 8 { r.note("\(fds.count) of 8 connected") }
        killWorker("broadcaster", &r)
    }

    /// Random bytes on every TCP and IPC endpoint and on control.sock, and random messages of the
    /// right socket types: no worker may crash.
    func garbage(_ r: inout RowResult) {
        let before = workers()
        for endpoint in connection.endpoints.values.sorted() {
            for _ in 0..<5 { rawWrite(endpoint: endpoint, bytes: (0..<Int.random(in: 1...65536)).map { _ in UInt8.random(in: 0...255) }) }
        }
        for _ in 0..<5 { rawWrite(endpoint: "ipc://" + runDirectory + "/control.sock", bytes: (0..<Int.random(in: 1...4096)).map { _ in UInt8.random(in: 0...255) } + [10]) }
        // Half a message, then a reset (RELIABILITY.md row 8): a ZMTP 3.0 greeting, a frame header
        // that announces 2^62 bytes, a few of them, and RST instead of a close.
        var greeting: [UInt8] = [0xFF] + [UInt8](repeating: 0, count: 8) + [0x7F, 3, 0] + Array("NULL".utf8) + [UInt8](repeating: 0, count: 16) + [0] + [UInt8](repeating: 0, count: 31)
        greeting += [0x02, 0x40] + [UInt8](repeating: 0, count: 7) + Array("half".utf8)
        for endpoint in connection.endpoints.values.sorted() {
            for _ in 0..<20 { rawWrite(endpoint: endpoint, bytes: greeting, reset: true) }
        }
        if let context = try? ZMQContext() {
            for (endpoint, type) in [("control", ZMQSocket.SocketType.dealer), ("heartbeat", .dealer), ("frames", .xsub), ("state", .xsub)] {
                guard let s = try? context.socket(type, options: [.linger(.zero)]) else { continue }
                try? s.connect(connection.endpoints[endpoint]!)
                for _ in 0..<50 {
                    let parts = (0..<Int.random(in: 1...3)).map { _ in (0..<Int.random(in: 0...512)).map { _ in UInt8.random(in: 0...255) } }
                    _ = try? s.trySendMultipart(parts)
                }
                usleep(100_000)
                s.close()
            }
            context.close()
        }
        // Crashes show as restarts a moment later.
        usleep(500_000)
        let after = workers()
        for (role, b) in before {
            if let a = after[role], a.restarts > b.restarts || a.pid != b.pid { r.violations.append("\(role) restarted after garbage") }
        }
        let s = status()
        if s?["ok"] as? Bool != true { r.violations.append("status not ok after garbage") }
    }

    /// A plain stream socket connected to a `tcp://HOST:PORT` or `ipc://PATH` endpoint; nil when
    /// it cannot connect.
    static func connectStream(to endpoint: String) -> Int32? {
        if endpoint.hasPrefix("tcp://") {
            let rest = endpoint.dropFirst(6)
            guard let colon = rest.lastIndex(of: ":"), let port = UInt16(rest[rest.index(after: colon)...]) else { return nil }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            addr.sin_addr.s_addr = inet_addr(String(rest[..<colon]))
            let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            if ok != 0 { close(fd); return nil }
            return fd
        }
        guard endpoint.hasPrefix("ipc://") else { return nil }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let path = Array(endpoint.dropFirst(6).utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: path.prefix($0.count - 1) + [0]) }
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        if ok != 0 { close(fd); return nil }
        return fd
    }

    /// Connects a plain socket to a tcp:// or ipc:// endpoint, writes `bytes`, reads what comes back
    /// for a moment, closes.
    func rawWrite(endpoint: String, bytes: [UInt8], reset: Bool = false) {
        guard let fd = Self.connectStream(to: endpoint) else { return }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var sink = [UInt8](repeating: 0, count: 4096)
        _ = recv(fd, &sink, sink.count, 0)
        if reset {
            var l = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        }
        close(fd)
    }
}
