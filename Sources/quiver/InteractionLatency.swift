import ArgumentParser
import Foundation
import QuiverControl
import QuiverWire
import QuiverZMQ

/// `quiver debug interaction-latency`: the time from a client's `interaction.set` to the first
/// frame that reflects it, measured against a running server (docs/benchmarks.md, "Interaction
/// update to frame").
///
/// One process holds a DEALER (signed commands) and a SUB (frames, not conflated, so every frame
/// the broadcaster sends is seen and timed as it arrives) and polls both, as a client that never
/// blocks on a reply would. Per sample: pull a few atoms with a constant force, note the
/// `applied_step` S of the reply, wait for the first frame past S (it must carry the user forces
/// of those atoms, and its positions were integrated with the force: the engine puts a changed
/// interaction into the forces it holds before step S + 1), then remove the interaction and start
/// again.
struct InteractionLatency: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "interaction-latency",
        abstract: "Time from interaction.set to the first frame that reflects it, against a running server.")

    @Argument(help: "The run's connection file.")
    var connectionFile: String = "quiver-run/connection.json"

    @Option(help: "Samples (each: set an interaction, wait for the frames, remove it).")
    var samples: Int = 100

    @Option(help: "Atoms pulled per sample (consecutive indices; the group moves on each sample).")
    var atoms: Int = 4

    @Option(help: "Constant force on the group's centre of mass, kJ/mol/nm.")
    var scale: Double = 1000

    @Option(help: "Requests per second at most (a client may send 200/s).")
    var rate: Double = 100

    @Option(help: "Seconds to wait for a reply or a frame before the sample counts as failed.")
    var timeout: Double = 5

    @Option(help: "Output: table (the summary) or json (one object: every sample and the summary).")
    var format: OutputFormat = .table

    func validate() throws {
        guard (1...100_000).contains(samples) else { throw ValidationError("--samples must be in 1...100000") }
        guard (1...1000).contains(atoms) else { throw ValidationError("--atoms must be in 1...1000") }
        guard scale > 0 && scale.isFinite else { throw ValidationError("--scale must be positive") }
        guard rate > 0 && rate <= ControlDefaults.rate else { throw ValidationError("--rate must be in (0, \(Int(ControlDefaults.rate))]") }
        guard timeout > 0 && timeout <= 600 else { throw ValidationError("--timeout must be in (0, 600] seconds") }
    }

    func run() throws {
        let info: ConnectionInfo
        do { info = try ConnectionInfo.read(from: connectionFile) } catch {
            throw ValidationError("cannot read the connection file \(connectionFile): \(error.localizedDescription) (is the server running?)")
        }
        let probe = try LatencyProbe(info: info, rate: rate, timeout: timeout)
        defer { probe.close() }
        let result = try probe.measure(samples: samples, atomsPerGroup: atoms, scale: scale)
        switch format {
        case .json: print(String(decoding: result.json.encoded(), as: UTF8.self))
        case .table: print(result.table)
        }
        if result.failures > 0 { throw ExitCode(1) }
    }
}

/// The first frame past a step, as received.
struct FrameSighting {
    var step: Int64
    var index: UInt64
    /// Frame boundaries between the applied step and this frame's step (0: the next one).
    var boundariesLate: Int
    /// Frames the engine published from the newest one received before the send up to this one
    /// (1: the first frame published after the send; counts a late application of the command too).
    var framesAfterSend: Int
    /// Send of `interaction.set` to receipt here, ms.
    var receivedMs: Double
    /// Send to the engine's publication (the frame's `published_at`, same machine clock), ms.
    var publishedMs: Double?
    /// Atoms with a user force in the frame.
    var userForces: Int

    var json: JSONValue {
        ["step": .number(Double(step)), "frame_index": .number(Double(index)), "boundaries_late": .number(Double(boundariesLate)),
         "frames_after_send": .number(Double(framesAfterSend)),
         "received_ms": .number(receivedMs), "published_ms": publishedMs.map { .number($0) } ?? .null,
         "user_forces": .number(Double(userForces))]
    }
}

struct LatencySample {
    var sample: Int
    var appliedStep: Int64
    var replyMs: Double
    /// The first frame past the applied step: it carries the user forces, and its positions were
    /// integrated with them.
    var forces: FrameSighting?
    var failure: String?

    var json: JSONValue {
        var o: [String: JSONValue] = ["sample": .number(Double(sample)), "applied_step": .number(Double(appliedStep)),
                                      "reply_ms": .number(replyMs), "forces": forces?.json ?? .null]
        if let failure { o["failure"] = .string(failure) }
        return .object(o)
    }
}

struct LatencyResult {
    var atoms: Int
    var frameInterval: Int
    var samples: [LatencySample]

    var failures: Int { samples.filter { $0.failure != nil }.count }

    static func percentile(_ values: [Double], _ p: Double) -> Double? {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        // nearest rank
        let rank = Int((p / 100 * Double(s.count)).rounded(.up))
        return s[min(s.count - 1, max(0, rank - 1))]
    }

    static func stats(_ values: [Double]) -> JSONValue {
        guard !values.isEmpty else { return .null }
        return ["p50": .number(percentile(values, 50)!), "p99": .number(percentile(values, 99)!), "max": .number(values.max()!)]
    }

    func summary(_ pick: (LatencySample) -> FrameSighting?) -> JSONValue {
        let seen = samples.compactMap(pick)
        guard !seen.isEmpty else { return .null }
        let next = seen.filter { $0.boundariesLate == 0 }.count
        return ["received_ms": Self.stats(seen.map(\.receivedMs)), "published_ms": Self.stats(seen.compactMap(\.publishedMs)),
                "at_next_boundary": .number(Double(next) / Double(seen.count)),
                "boundaries_late_max": .number(Double(seen.map(\.boundariesLate).max()!)),
                "frames_after_send_max": .number(Double(seen.map(\.framesAfterSend).max()!))]
    }

    var json: JSONValue {
        ["atoms": .number(Double(atoms)), "frame_interval": .number(Double(frameInterval)),
         "samples": .array(samples.map(\.json)),
         "summary": ["samples": .number(Double(samples.count)), "failures": .number(Double(failures)),
                     "reply_ms": Self.stats(samples.filter { $0.failure == nil }.map(\.replyMs)),
                     "forces": summary(\.forces)]]
    }

    var table: String {
        func ms(_ v: Double?) -> String { v.map { String(format: "%8.2f ms", $0) } ?? "         -" }
        var lines = ["interaction.set -> frame: \(samples.count) samples, \(atoms) atoms, a frame every \(frameInterval) steps"
            + (failures > 0 ? ", \(failures) FAILED" : "")]
        lines.append("                                    p50          p99          max   at next boundary   most late   frames after send (max)")
        let replies = samples.filter { $0.failure == nil }.map(\.replyMs)
        lines.append("reply (applied)             " + [50.0, 99].map { ms(Self.percentile(replies, $0)) }.joined(separator: "  ") + "  " + ms(replies.max()))
        for (name, pick) in [("frame reflecting it         ", { (s: LatencySample) in s.forces })] {
            let seen = samples.compactMap(pick)
            let received = seen.map(\.receivedMs)
            let next = seen.isEmpty ? 0 : Double(seen.filter { $0.boundariesLate == 0 }.count) / Double(seen.count)
            lines.append(name + [50.0, 99].map { ms(Self.percentile(received, $0)) }.joined(separator: "  ") + "  " + ms(received.max())
                + String(format: "   %15.1f %%   %9d   %23d", 100 * next, seen.map(\.boundariesLate).max() ?? 0, seen.map(\.framesAfterSend).max() ?? 0))
            let published = seen.compactMap(\.publishedMs)
            if !published.isEmpty {
                lines.append("  (to its publication)      " + [50.0, 99].map { ms(Self.percentile(published, $0)) }.joined(separator: "  ") + "  " + ms(published.max()))
            }
        }
        for s in samples where s.failure != nil { lines.append("sample \(s.sample): \(s.failure!)") }
        return lines.joined(separator: "\n")
    }
}

/// The sockets and the bookkeeping of one measurement.
final class LatencyProbe {
    private struct Received {
        var bytes: [UInt8]
        var step: Int64
        var index: UInt64
        var publishedAt: Double?
        /// Unix seconds on arrival.
        var at: Double
    }

    let info: ConnectionInfo
    let rate: Double
    let timeout: Double
    private let signer: CommandSigner
    private let context: ZMQContext
    private let dealer: ZMQSocket
    private let frames: ZMQSocket
    private let clientID = "latency-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
    private var counter = 0
    private var replies: [String: (reply: CommandReply, at: Double)] = [:]
    /// Frames received since the current sample's send (before the first sample: since the start), in arrival order.
    private var received: [Received] = []
    private var newest: Received?
    /// The first frame seen: with the newest, the engine's frame period.
    private var firstSeen: Received?
    private var lastSend = 0.0

    init(info: ConnectionInfo, rate: Double, timeout: Double) throws {
        self.info = info
        self.rate = rate
        self.timeout = timeout
        guard let control = info.endpoints["control"], let framesEndpoint = info.endpoints["frames"] else {
            throw ValidationError("the connection file names no control or frames endpoint")
        }
        signer = try CommandSigner(keyHex: info.key)
        context = try ZMQContext()
        dealer = try context.socket(.dealer, options: ControlDefaults.clientSocketOptions)
        try dealer.connect(control)
        frames = try context.socket(.sub, options: ZMQDefaults.socketOptions + [.linger(.zero)])
        try frames.subscribe(MessageKind.frame.subscriptionPrefix)
        try frames.connect(framesEndpoint)
    }

    func close() {
        dealer.close()
        frames.close()
        context.close()
    }

    static var now: Double { Date().timeIntervalSince1970 }

    /// Waits up to `seconds` for replies and frames; takes in everything that arrived.
    private func pump(_ seconds: Double) throws {
        let ready = try ZMQ.poll([.socket(dealer), .socket(frames)], timeout: .milliseconds(max(0, Int((seconds * 1000).rounded(.up)))))
        let at = Self.now
        if ready[1].contains(.readable) {
            while let bytes = try frames.tryReceive() {
                let s = try FrameDecoder.summary(bytes)
                let r = Received(bytes: bytes, step: s.step, index: s.index, publishedAt: s.publishedAt, at: at)
                received.append(r)
                newest = r
                if firstSeen == nil { firstSeen = r }
            }
        }
        if ready[0].contains(.readable) {
            while let m = try dealer.tryReceiveMultipart() {
                let reply = try CommandReply.decode(frames: m, verifyingWith: signer)
                if let id = reply.id { replies[id] = (reply, at) }
            }
        }
    }

    /// Sends a signed command (no sooner than 1/rate after the previous one). Returns its id and
    /// the send time (Unix seconds).
    private func send(_ command: String, _ args: [String: JSONValue] = [:]) throws -> (id: String, at: Double) {
        try pace()
        counter += 1
        let request = CommandRequest(id: "\(counter)", client: clientID, nonce: CommandRequest.randomNonce(),
                                     time: Self.now, command: command, args: args)
        let at = Self.now
        guard try dealer.sendMultipart(request.frames(signedWith: signer), timeout: .after(.milliseconds(Int(timeout * 1000)))) else {
            throw ValidationError("could not send to \(info.endpoints["control"] ?? "?") within \(timeout) s")
        }
        lastSend = at
        return (request.id, at)
    }

    /// Waits (taking in frames and replies) until a request may be sent at the rate.
    private func pace() throws {
        while true {
            let wait = lastSend + 1 / rate - Self.now
            if wait <= 0 { return }
            try pump(wait)
        }
    }

    /// The reply to `id` and when it arrived; throws when none comes within the timeout.
    private func reply(_ id: String) throws -> (reply: CommandReply, at: Double) {
        let deadline = Self.now + timeout
        while replies[id] == nil {
            let left = deadline - Self.now
            guard left > 0 else { throw ValidationError("no reply within \(timeout) s (is the server running?)") }
            try pump(left)
        }
        return replies.removeValue(forKey: id)!
    }

    private func call(_ command: String, _ args: [String: JSONValue] = [:]) throws -> JSONValue {
        let r = try reply(send(command, args).id).reply
        guard let result = r.result else {
            throw ValidationError("\(command): \(r.error?.code.rawValue ?? "?"): \(r.error?.message ?? "")")
        }
        return result
    }

    /// The first frame received since the sample's send with a step above `step`; waits for it
    /// until `deadline`.
    private func firstFrame(after step: Int64, until deadline: Double) throws -> Received? {
        while true {
            if let r = received.first(where: { $0.step > step }) { return r }
            let left = deadline - Self.now
            guard left > 0 else { return nil }
            try pump(left)
        }
    }

    /// Seconds between the engine's frames (its frame counter over the time seen), or nil before two.
    private var framePeriod: Double? {
        guard let a = firstSeen, let b = newest, b.index > a.index, b.at > a.at else { return nil }
        return (b.at - a.at) / Double(b.index - a.index)
    }

    func measure(samples: Int, atomsPerGroup: Int, scale: Double) throws -> LatencyResult {
        let parameters = try call("get", ["names": ["frame_interval", "atoms", "paused"]])
        let interval = Int(parameters.objectValue?["frame_interval"]?.numberValue ?? 1)
        let atomCount = Int(parameters.objectValue?["atoms"]?.numberValue ?? 0)
        guard parameters.objectValue?["paused"]?.boolValue != true else {
            throw ValidationError("the run is paused: play it first (quiver cmd play)")
        }
        guard atomCount >= atomsPerGroup else { throw ValidationError("the run has \(atomCount) atoms, fewer than --atoms \(atomsPerGroup)") }
        // The subscription is up once a frame arrives.
        let deadline = Self.now + timeout
        while newest == nil && Self.now < deadline { try pump(deadline - Self.now) }
        guard newest != nil else { throw ValidationError("no frame within \(timeout) s from \(info.endpoints["frames"] ?? "?")") }
        // A few frames to learn the frame period (to spread the sends over it).
        let start = Self.now, latest = start + min(timeout, 2)
        while (received.count < 5 || Self.now < start + 0.2) && Self.now < latest { try pump(latest - Self.now) }

        var out: [LatencySample] = []
        let groups = atomCount / atomsPerGroup
        // Leave (ends anything still set); wait for the reply, or the socket's close drops the request.
        defer { _ = try? reply(send("bye").id) }
        for k in 0..<samples {
            // Sends at a random phase of the frame cycle, not locked to the previous frame.
            let pause = Self.now + Double.random(in: 0..<max(0.001, framePeriod ?? 0.01))
            while Self.now < pause { try pump(pause - Self.now) }
            try pace()
            let first = (k % groups) * atomsPerGroup
            let particles = Array(first..<(first + atomsPerGroup))
            // Pull toward a point ~0.9 nm from the group's first atom: a constant force whatever the distance.
            let latest = try FrameDecoder.decode(newest!.bytes)
            let p = latest.positions[first]
            let target = [Double(p.x) + 0.8, Double(p.y) + 0.3, Double(p.z) + 0.1]
            received.removeAll(keepingCapacity: true)
            let indexAtSend = newest!.index
            let (id, sentAt) = try send("interaction.set", [
                "id": "latency", "type": "constant", "position": .array(target.map { .number($0) }),
                "particles": .array(particles.map { .number(Double($0)) }), "scale": .number(scale),
                "lease": .number(max(5, timeout)), "reset_velocities": true,
            ])
            let (reply, repliedAt) = try self.reply(id)
            guard reply.isOK, let applied = reply.result?.objectValue?["applied_step"]?.numberValue.map({ Int64($0) }) else {
                throw ValidationError("interaction.set: \(reply.error?.code.rawValue ?? "?"): \(reply.error?.message ?? "no applied_step")")
            }
            var sample = LatencySample(sample: k, appliedStep: applied, replyMs: (repliedAt - sentAt) * 1000)
            func sighting(after step: Int64) throws -> FrameSighting? {
                guard let r = try firstFrame(after: step, until: repliedAt + timeout) else {
                    sample.failure = "no frame past step \(step) within \(timeout) s"
                    return nil
                }
                let frame = try FrameDecoder.decode(r.bytes)
                let forces = frame.userForces ?? []
                let pulled = Set(forces.filter { $0.force != .zero }.map { Int($0.index) })
                if !Set(particles).isSubset(of: pulled) {
                    sample.failure = "the frame at step \(r.step) (applied at \(applied)) carries user forces on \(pulled.sorted()), not on \(particles)"
                }
                let late = Int(floorDiv(r.step - 1, Int64(interval)) - floorDiv(applied, Int64(interval)))
                return FrameSighting(step: r.step, index: r.index, boundariesLate: late,
                                     framesAfterSend: Int(r.index) - Int(indexAtSend), receivedMs: (r.at - sentAt) * 1000,
                                     publishedMs: r.publishedAt.map { ($0 - sentAt) * 1000 }, userForces: forces.count)
            }
            sample.forces = try sighting(after: applied)
            let removed = try self.reply(send("interaction.remove", ["id": "latency"]).id).reply
            if !removed.isOK, sample.failure == nil {
                sample.failure = "interaction.remove: \(removed.error?.code.rawValue ?? "?"): \(removed.error?.message ?? "")"
            }
            out.append(sample)
        }
        return LatencyResult(atoms: atomCount, frameInterval: interval, samples: out)
    }
}

/// Division rounding toward minus infinity.
func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}
