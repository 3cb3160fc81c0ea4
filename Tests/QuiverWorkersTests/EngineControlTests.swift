import Foundation
import QuiverControl
import QuiverEngine
import QuiverLog
import QuiverModel
import QuiverSharedMemory
import QuiverWorkers
import Testing

/// The engine's command handling, driven directly: typed commands into `EngineControl` over a small
/// real simulation, no processes. Argon (108 atoms, Langevin) has a thermostat; in.lj (108 atoms,
/// velocity Verlet) has none.
@Suite("Engine command handling (EngineControl, no processes)")
struct EngineControlTests {
    static func argon() throws -> Simulation {
        try BuiltinSystems.argonLiquid(cells: 3, seed: 11).makeSimulation(options: SimulationOptions(threads: 1, seed: 5))
    }

    static func nve() throws -> Simulation {
        try BuiltinSystems.lennardJonesBench(cells: 3).makeSimulation(options: SimulationOptions(threads: 1))
    }

    /// A control over `sim` (with `segment`'s command ring, or none), logging into `lines`.
    static func control(_ sim: Simulation, segment: SharedSegment? = nil, frameInterval: Int = 10, lines: Lines = Lines()) -> EngineControl {
        let c = EngineControl(dynamics: sim, segment: segment, frameInterval: frameInterval, initial: sim.saveState())
        c.logger = Logger(label: "quiver.engine") { _ in CapturingLogHandler(lines: lines) }
        return c
    }

    static func spring(_ id: String, _ particles: [Int] = [0, 1, 2], lease: Double = 3, resetVelocities: Bool = false) -> EngineCommand {
        .interactionSet(InteractionRequest(Interaction(id: id, kind: .spring, position: SIMD3(0.5, 0.5, 0.5), particles: particles,
                                                       resetVelocities: resetVelocities), lease: lease))
    }

    /// The refusal message, or nil when the command was applied.
    func refusal(_ reply: EngineReply) -> String? { reply.refusal }

    @Test("pause, play and step N: replies, applied step, and the pause when the target is reached")
    func playPauseStep() throws {
        let sim = try Self.argon()
        let c = Self.control(sim)
        try sim.run(steps: 4)
        #expect(c.apply(.pause, client: "alice") == .applied(.paused(true), step: 4))
        #expect(c.paused)
        #expect(c.apply(.play, client: "alice") == .applied(.paused(false), step: 4))
        #expect(!c.paused)
        #expect(c.apply(.pause, client: "alice").result == .paused(true))
        #expect(c.apply(.step(count: 3), client: "alice") == .applied(.stepping(untilStep: 7), step: 4))
        #expect(!c.paused, "stepping runs until the target")
        for _ in 0..<2 {
            try sim.run(steps: 1)
            #expect(!c.afterStep())
        }
        try sim.run(steps: 1)
        #expect(c.afterStep(), "the run pauses at step 7")
        #expect(c.paused && sim.step == 7)
        // play after a step N cancels the target
        _ = c.apply(.step(count: 100), client: "alice")
        _ = c.apply(.play, client: "alice")
        try sim.run(steps: 1)
        #expect(!c.afterStep() && !c.paused)
    }

    @Test("step: a count outside the catalogue's range is refused and changes nothing")
    func stepRange() throws {
        let sim = try Self.argon()
        let c = Self.control(sim)
        _ = c.apply(.pause, client: "alice")
        #expect(refusal(c.apply(.step(count: 0), client: "alice")) == "invalid parameter: step count must be in [1, 1000000000], got 0")
        #expect(refusal(c.apply(.step(count: 1_000_000_001), client: "alice")) ==
                "invalid parameter: step count must be in [1, 1000000000], got 1000000001")
        #expect(c.paused)
    }

    @Test("reset: initial positions and velocities, interactions end, the step counter keeps counting")
    func reset() throws {
        let sim = try Self.argon()
        let c = Self.control(sim)
        let initial = sim.positions()
        #expect(c.apply(Self.spring("a"), client: "alice").result == .interaction(id: "a", active: 1))
        try sim.run(steps: 5)
        #expect(sim.positions() != initial)
        #expect(c.apply(.reset, client: "alice") == .applied(.reset, step: 5))
        #expect(sim.positions() == initial)
        #expect(sim.step == 5)
        #expect(sim.interactions.interactions.isEmpty)
        #expect(c.apply(.interactionList, client: "alice").result.map(interactionCount) == 0)
        // A dynamics that cannot save its state cannot be reset.
        let none = EngineControl(dynamics: sim, segment: nil, frameInterval: 10, initial: nil)
        #expect(refusal(none.apply(.reset, client: "alice"))?.contains("cannot be reset") == true)
    }

    @Test("get: every parameter, some by name; temperature and friction on an NVE run are null by name and absent in all")
    func get() throws {
        let sim = try Self.argon()
        let c = Self.control(sim, frameInterval: 25)
        try sim.run(steps: 2)
        guard case .parameters(let all)? = c.apply(.get(names: nil), client: "alice").result else {
            Issue.record("get gave no parameters"); return
        }
        #expect(Set(all.keys) == Set(Parameter.allCases))
        #expect(all[.temperature] == .number(94.4) && all[.friction] == .number(1) && all[.timestep] == .number(0.01))
        #expect(all[.frameInterval] == .number(25) && all[.maxStepsPerSecond] == .number(0) && all[.maxFramesPerSecond] == .number(0))
        #expect(all[.step] == .number(2) && all[.atoms] == .number(108) && all[.paused] == .bool(false))
        #expect(all[.time].map { if case .number(let t) = $0 { abs(t - 0.02) < 1e-12 } else { false } } == true)
        #expect(c.apply(.get(names: [.atoms, .paused]), client: "alice").result == .parameters([.atoms: .number(108), .paused: .bool(false)]))

        let nve = try Self.nve()
        let n = Self.control(nve)
        #expect(n.apply(.get(names: [.temperature, .friction, .timestep]), client: "alice").result ==
                .parameters([.temperature: .unavailable, .friction: .unavailable, .timestep: .number(0.005)]))
        guard case .parameters(let nveAll)? = n.apply(.get(names: nil), client: "alice").result else {
            Issue.record("get gave no parameters"); return
        }
        #expect(nveAll[.temperature] == nil && nveAll[.friction] == nil && nveAll.count == Parameter.allCases.count - 2)
    }

    @Test("set: the dynamics' and the loop's parameters, all or none; a thermostat setting on NVE and out-of-range values are refused")
    func set() throws {
        let sim = try Self.argon()
        let c = Self.control(sim)
        #expect(c.apply(.set(values: [.temperature: 120, .frameInterval: 5, .maxStepsPerSecond: 1000]), client: "alice") ==
                .applied(.parameters([.temperature: .number(120), .frameInterval: .number(5), .maxStepsPerSecond: .number(1000)]), step: 0))
        #expect(sim.parameters()["temperature"] == 120)
        #expect(c.frameInterval == 5 && c.maxStepsPerSecond == 1000)
        #expect(c.apply(.set(values: [.maxFramesPerSecond: 30, .timestep: 0.005]), client: "alice").result ==
                .parameters([.maxFramesPerSecond: .number(30), .timestep: .number(0.005)]))
        #expect(c.maxFramesPerSecond == 30 && sim.parameters()["timestep"] == 0.005)

        // Out of range (a command the control worker would have rejected): all or none.
        #expect(refusal(c.apply(.set(values: [.temperature: 200, .timestep: 0.5]), client: "alice")) ==
                "invalid parameter: timestep must be in (0, 0.1], got 0.5")
        #expect(sim.parameters()["temperature"] == 120, "one bad value rejects the whole set")
        #expect(refusal(c.apply(.set(values: [.frameInterval: 2.5]), client: "alice")) ==
                "invalid parameter: frame_interval must be an integer in [1, 1000000], got 2.5")
        #expect(refusal(c.apply(.set(values: [.step: 3]), client: "alice")) == "invalid parameter: no settable parameter 'step'")
        #expect(refusal(c.apply(.set(values: [:]), client: "alice")) == "invalid parameter: set needs at least one value")
        #expect(c.frameInterval == 5)

        let nve = try Self.nve()
        let n = Self.control(nve)
        let thermostat = refusal(n.apply(.set(values: [.temperature: 300]), client: "alice"))
        #expect(thermostat?.contains("temperature needs a thermostat") == true, "\(String(describing: thermostat))")
        #expect(n.apply(.set(values: [.timestep: 0.002]), client: "alice").result == .parameters([.timestep: .number(0.002)]))
    }

    @Test("interaction.set: start, update by its owner, refused for another client, bad input, and the 65th")
    func interactionSet() throws {
        let sim = try Self.argon()
        let c = Self.control(sim)
        #expect(c.apply(Self.spring("a"), client: "alice") == .applied(.interaction(id: "a", active: 1), step: 0))
        #expect(sim.interactions.interactions.map(\.particles) == [[0, 1, 2]])
        // The owner updates it in place.
        #expect(c.apply(Self.spring("a", [3, 4]), client: "alice").result == .interaction(id: "a", active: 1))
        #expect(sim.interactions.interactions.map(\.particles) == [[3, 4]])
        // Another client may not.
        #expect(refusal(c.apply(Self.spring("a", [5]), client: "bob")) ==
                "invalid parameter: interaction 'a' belongs to another client (alice)")
        #expect(sim.interactions.interactions.map(\.particles) == [[3, 4]])
        // What the control worker checks, the engine checks again.
        #expect(refusal(c.apply(Self.spring("b", [0, 108]), client: "bob")) ==
                "invalid parameter: interaction 'b': particle index 108 is out of range 0..<108")
        #expect(refusal(c.apply(Self.spring("b", [1, 1]), client: "bob")) == "invalid parameter: interaction 'b': particle 1 is listed twice")
        #expect(refusal(c.apply(Self.spring("b", lease: 0.05), client: "bob")) ==
                "invalid parameter: interaction 'b': lease must be in [0.1, 600] s, got 0.05")
        #expect(refusal(c.apply(Self.spring("b", lease: .nan), client: "bob"))?.contains("lease must be in") == true)
        #expect(sim.interactions.interactions.count == 1)
        // At most 64 at once.
        for k in 1..<EngineControl.maxInteractions {
            #expect(c.apply(Self.spring("n\(k)", [k]), client: "bob").refusal == nil)
        }
        #expect(refusal(c.apply(Self.spring("one-more", [100]), client: "bob")) == "invalid parameter: 64 interactions are active already")
        #expect(sim.interactions.interactions.count == 64)
    }

    @Test("interaction.remove, interaction.list, renew and client.left act on the client's own interactions")
    func interactionLifecycle() throws {
        let sim = try Self.argon()
        let lines = Lines()
        let c = Self.control(sim, lines: lines)
        _ = c.apply(Self.spring("a1", [0, 1], lease: 10), client: "alice")
        _ = c.apply(Self.spring("a2", [2], lease: 10), client: "alice")
        _ = c.apply(Self.spring("b1", [3, 4, 5], lease: 10), client: "bob")

        guard case .interactions(let listing)? = c.apply(.interactionList, client: "carol").result else {
            Issue.record("interaction.list gave no listing"); return
        }
        #expect(listing.interactions.map(\.id) == ["a1", "a2", "b1"])
        #expect(listing.interactions.map(\.owner) == ["alice", "alice", "bob"])
        #expect(listing.interactions.map(\.particles) == [2, 1, 3])
        #expect(listing.interactions[0].kind == .spring && listing.interactions[0].position == SIMD3(0.5, 0.5, 0.5))
        #expect(listing.interactions.allSatisfy { $0.expiresIn > 9 && $0.expiresIn <= 10 })
        try sim.run(steps: 2)
        #expect((c.apply(.interactionList, client: "carol").result.map(userWork) ?? 0) != 0, "the pull did work on the atoms")

        #expect(refusal(c.apply(.interactionRemove(id: "zz"), client: "alice")) == "invalid parameter: no interaction 'zz'")
        #expect(refusal(c.apply(.interactionRemove(id: "b1"), client: "alice")) ==
                "invalid parameter: interaction 'b1' belongs to another client (bob)")
        #expect(c.apply(.interactionRemove(id: "a2"), client: "alice") == .applied(.interaction(id: "a2", active: 2), step: 2))
        #expect(sim.interactions.interactions.map(\.id) == ["a1", "b1"])

        #expect(c.apply(.renew, client: "alice").result == .renewed(1))
        #expect(c.apply(.renew, client: "carol").result == .renewed(0))

        #expect(c.apply(.clientLeft, client: "bob").result == .ended(1))
        #expect(sim.interactions.interactions.map(\.id) == ["a1"])
        #expect(lines.text.contains("interaction 'b1' of bob ended: its client left"))
        #expect(c.apply(.clientLeft, client: "bob").result == .ended(0))
    }

    @Test("leases: an interaction not renewed ends by itself; reset_velocities draws new velocities for its atoms")
    func leases() throws {
        let sim = try Self.argon()
        let c = Self.control(sim)
        let before = sim.velocities()
        _ = c.apply(Self.spring("short", [7, 8], lease: 0.1, resetVelocities: true), client: "alice")
        _ = c.apply(Self.spring("long", [9], lease: 600), client: "alice")
        #expect(c.expireLeases() == 0)
        Thread.sleep(forTimeInterval: 0.15)
        #expect(c.expireLeases() == 1)
        #expect(sim.interactions.interactions.map(\.id) == ["long"])
        let after = sim.velocities()
        #expect(after[7] != before[7] && after[8] != before[8] && after[0] == before[0])
    }

    @Test("a dynamics without interactive forces refuses interactions")
    func noInteractiveForces() {
        let c = EngineControl(dynamics: Still(), segment: nil, frameInterval: 1, initial: nil)
        #expect(refusal(c.apply(Self.spring("a", [0]), client: "alice")) == "invalid parameter: still takes no interactive forces")
        #expect(c.apply(.interactionList, client: "alice").result == .interactions(InteractionListing(interactions: [], userEnergy: 0, userWork: 0)))
        #expect(refusal(c.apply(.get(names: [.timestep]), client: "alice")) == "invalid parameter: no parameter 'timestep'")
    }

    @Test("through a real command ring: posted, applied in order, answered; the client's reply JSON; an unreadable command is refused; a scribbled posted counter costs one pass", .timeLimit(.minutes(1)))
    func ring() throws {
        let dir = NSTemporaryDirectory() + "quiver-engine-control-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var layout = SegmentLayout(atomCapacity: 108, slotCount: 4, workerCapacity: 2)
        layout.commandSlots = 8
        let segment = try SharedSegment.create(name: "engine-control", directory: dir, layout: layout)
        defer { try? segment.unlink() }
        let sim = try Self.argon()
        try sim.run(steps: 3)
        let c = EngineControl(dynamics: sim, segment: segment, frameInterval: 10, initial: sim.saveState())
        c.logger = QuiverLogging.silent

        let commands: [PostedCommand] = [
            PostedCommand(.pause, client: "alice"),
            PostedCommand(Self.spring("hand", [1, 2]), client: "alice"),
            PostedCommand(.get(names: [.paused, .atoms, .temperature]), client: "alice"),
            PostedCommand(.interactionRemove(id: "hand"), client: "bob"),
        ]
        var seqs = try commands.map { try segment.commands.post($0.encoded()) }
        seqs.append(try segment.commands.post(Array("{\"not\": \"a command\"}".utf8)))
        #expect(c.processCommands() == 5)
        #expect(c.paused && sim.interactions.interactions.count == 1)

        func reply(_ seq: UInt64, _ id: String) throws -> String {
            let r = try #require(try segment.commands.result(seq))
            let engine = try EngineReply.decode(r.reply)
            #expect(r.status == (engine.refusal == nil ? 0 : 1) && r.appliedStep == 3)
            return String(decoding: engine.commandReply(requestID: id).body, as: UTF8.self)
        }
        #expect(try reply(seqs[0], "1") == #"{"id":"1","ok":true,"result":{"applied_step":3,"paused":true}}"#)
        #expect(try reply(seqs[1], "2") == #"{"id":"2","ok":true,"result":{"active":1,"applied_step":3,"id":"hand"}}"#)
        #expect(try reply(seqs[2], "3") == #"{"id":"3","ok":true,"result":{"applied_step":3,"atoms":108,"paused":true,"temperature":94.4}}"#)
        #expect(try reply(seqs[3], "4") ==
                #"{"error":{"code":"refused","message":"invalid parameter: interaction 'hand' belongs to another client (alice)"},"id":"4","ok":false}"#)
        let garbage = try reply(seqs[4], "5")
        #expect(garbage.hasPrefix(#"{"error":{"code":"refused","message":"the engine could not read the command: "#), "\(garbage)")

        // A posted counter scribbled by another process: each call looks at one ring's worth of
        // sequence numbers at most, takes nothing that is not there, and returns.
        let raw = open(dir + "/engine-control", O_RDWR)
        try #require(raw >= 0)
        var huge = UInt64(1) << 62
        #expect(pwrite(raw, &huge, 8, 160) == 8) // qv_shm_header.commands_posted (layout.h)
        close(raw)
        let before = c.nextSequence
        #expect(c.processCommands() == 0)
        #expect(c.nextSequence == before + UInt64(segment.commands.slots), "one pass looks at one ring's worth of sequence numbers")
        #expect(c.processCommands() == 0)
        #expect(c.nextSequence == before + 2 * UInt64(segment.commands.slots))

        // The control state is kept in the segment: a new engine continues paused, with the interaction.
        let sim2 = try Self.argon()
        let c2 = EngineControl(dynamics: sim2, segment: segment, frameInterval: 10, initial: nil)
        #expect(c2.restoreFromSegment())
        #expect(c2.paused && sim2.interactions.interactions.map(\.id) == ["hand"])
    }

    /// A segment in a private directory, removed with it.
    static func withSegment(slots: Int, slotSize: Int? = nil, _ body: (SharedSegment, String) throws -> Void) throws {
        let dir = NSTemporaryDirectory() + "quiver-engine-control-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var layout = SegmentLayout(atomCapacity: 108, slotCount: 4, workerCapacity: 2)
        layout.commandSlots = slots
        if let slotSize { layout.commandSlotSize = slotSize }
        let segment = try SharedSegment.create(name: "engine-control", directory: dir, layout: layout)
        defer { try? segment.unlink() }
        try body(segment, dir + "/engine-control")
    }

    @Test("a command slot whose length another process scribbled is finished as refused, and the ring keeps taking commands")
    func scribbledSlot() throws {
        try Self.withSegment(slots: 4) { segment, path in
            let sim = try Self.argon()
            let c = Self.control(sim, segment: segment)
            let seq = try segment.commands.post(PostedCommand(.pause, client: "alice").encoded())
            let fd = open(path, O_RDWR)
            try #require(fd >= 0)
            defer { close(fd) }
            var commands: UInt64 = 0, slotSize: UInt64 = 0, huge = UInt32.max
            #expect(pread(fd, &commands, 8, 120) == 8 && pread(fd, &slotSize, 8, 128) == 8) // layout.h: commands_offset, command_slot_size
            #expect(pwrite(fd, &huge, 4, off_t(commands + (seq % 4) * slotSize + 16)) == 4) // qv_shm_command.length
            #expect(c.processCommands() == 1)
            let r = try #require(try segment.commands.result(seq))
            let reply = try EngineReply.decode(r.reply)
            #expect(r.status == 1 && reply.refusal?.contains("could not read the command's slot") == true, "\(reply)")
            #expect(!c.paused)
            // Around the ring and past the scribbled slot again: nothing is stuck.
            for k in 0..<6 {
                _ = try segment.commands.post(PostedCommand(k % 2 == 0 ? .pause : .play, client: "alice").encoded())
                #expect(c.processCommands() == 1)
            }
            #expect(!c.paused)
        }
    }

    /// The longest interaction id JSON can make: 128 control characters, each written as six bytes
    /// (`\u0001`), unique by its last two.
    static func longestID(_ k: Int) -> String {
        let sixByte = (1...31).filter { ![8, 9, 10, 12, 13].contains($0) }.map { Character(Unicode.Scalar(UInt8($0))) }
        return String(repeating: "\u{1}", count: Interaction.maxIDLength - 2) + String(sixByte[k / sixByte.count]) + String(sixByte[k % sixByte.count])
    }

    @Test("interaction.list at its maximum (64 interactions, the longest ids and owners, the widest numbers) fits the default command slot; the payload stays intact; a slot too small refuses, saying so")
    func longestListing() throws {
        let owner = String(repeating: "o", count: 64)
        // The worst case the engine could write, whatever the atoms: every number at its widest.
        let wide = -1.2345678901234567e-300
        let worst = EngineReply.applied(.interactions(InteractionListing(
            interactions: (0..<EngineControl.maxInteractions).map {
                .init(id: Self.longestID($0), kind: .gaussian, owner: owner, particles: Interaction.maxParticles,
                      position: SIMD3(wide, wide, wide), scale: -wide, expiresIn: 599.99999999999989)
            }, userEnergy: wide, userWork: wide)), step: Int.max)
        let worstBytes = try worst.encoded().count
        try Self.withSegment(slots: 4) { segment, _ in
            let sim = try Self.argon()
            let c = Self.control(sim, segment: segment)
            for k in 0..<EngineControl.maxInteractions {
                #expect(c.apply(Self.spring(Self.longestID(k), [k], lease: 600), client: owner).refusal == nil)
            }
            let payload = try PostedCommand(.interactionList, client: owner).encoded()
            let seq = try segment.commands.post(payload)
            let capacity = segment.commands.replyCapacity(for: seq)
            #expect(worstBytes <= capacity, "the widest listing is \(worstBytes) bytes; the slot holds \(capacity)")
            #expect(c.processCommands() == 1)
            let r = try #require(try segment.commands.result(seq))
            #expect(r.status == 0 && r.reply.count > CommandRing.replyCapacity, "\(r.reply.count) bytes")
            let listed = try #require(try EngineReply.decode(r.reply).result)
            guard case .interactions(let listing) = listed else { Issue.record("\(listed)"); return }
            #expect(Set(listing.interactions.map(\.id)) == Set((0..<EngineControl.maxInteractions).map(Self.longestID)))
            #expect(try segment.commands.take(seq) == payload, "the reply went after the payload, not over it")
            print("interaction.list: 64 interactions with the longest ids: \(r.reply.count) bytes; the widest possible \(worstBytes); the default slot holds \(capacity)")
        }
        // A ring configured with 8 KiB slots cannot hold it: a refusal that says so, not cut JSON.
        try Self.withSegment(slots: 4, slotSize: 8192) { segment, _ in
            let sim = try Self.argon()
            let c = Self.control(sim, segment: segment)
            for k in 0..<EngineControl.maxInteractions { _ = c.apply(Self.spring(Self.longestID(k), [k], lease: 600), client: owner) }
            let seq = try segment.commands.post(PostedCommand(.interactionList, client: owner).encoded())
            #expect(c.processCommands() == 1)
            let r = try #require(try segment.commands.result(seq))
            let reply = try EngineReply.decode(r.reply)
            #expect(r.status == 1 && reply.refusal?.contains("does not fit the command ring's") == true, "\(reply)")
        }
    }

    @Test("every engine command survives the ring's encoding")
    func codec() throws {
        let all: [EngineCommand] = [
            .play, .pause, .step(count: 12), .reset, .get(names: nil), .get(names: [.time, .atoms]),
            .set(values: [.temperature: 300, .frameInterval: 4]), Self.spring("x", [1, 2, 3], lease: 2.5),
            .interactionRemove(id: "x"), .interactionList, .renew, .clientLeft,
        ]
        for command in all {
            let posted = PostedCommand(command, client: "c-1")
            #expect(try PostedCommand.decode(posted.encoded()) == posted)
        }
        let replies: [EngineReply] = [
            .applied(.paused(true), step: 1), .applied(.stepping(untilStep: 9), step: 2), .applied(.reset, step: 3),
            .applied(.parameters([.temperature: .unavailable, .paused: .bool(true), .time: .number(.nan)]), step: 4),
            .applied(.interaction(id: "x", active: 2), step: 5),
            .applied(.interactions(InteractionListing(interactions: [.init(id: "x", kind: .gaussian, owner: "c-1", particles: 3,
                                                                            position: SIMD3(1, 2, 3), scale: 2, expiresIn: 1.5)],
                                                      userEnergy: -1, userWork: 0.5)), step: 6),
            .applied(.renewed(1), step: 7), .applied(.ended(2), step: 8), .refused("no", step: 9),
        ]
        for r in replies {
            let back = try EngineReply.decode(r.encoded())
            if case .applied(.parameters(let p)) = back.outcome, case .number(let t)? = p[.time] {
                #expect(t.isNaN, "a non-finite number survives the ring")
            } else {
                #expect(back == r)
            }
        }
    }
}

/// How many interactions a listing holds.
private func interactionCount(_ r: EngineResult) -> Int? {
    if case .interactions(let l) = r { return l.interactions.count } else { return nil }
}

/// The user work of a listing.
private func userWork(_ r: EngineResult) -> Double? {
    if case .interactions(let l) = r { return l.userWork } else { return nil }
}

/// Lines a control logged.
/// Keeps each log message (the engine's logger) in `lines`.
struct CapturingLogHandler: LogHandler {
    let lines: Lines
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) { lines.append("\(event.message)") }
}

final class Lines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
    var text: String { lock.lock(); defer { lock.unlock() }; return lines.joined(separator: "\n") }
}

/// A dynamics with one still atom and nothing else: no interactive forces, no parameters.
final class Still: Dynamics {
    var name: String { "still" }
    var atomCount: Int { 1 }
    var step = 0
    var time: Double { 0 }
    var box: Box { Box(x: 1, y: 1, z: 1) }
    var types: [Int32] { [0] }
    var typeNames: [String] { ["X"] }
    var masses: [Float] { [1] }
    func advance(steps: Int, energy: Bool) throws { step += steps }
    func energies() throws -> Energies { Energies(step: step, potential: 0, kinetic: 0, temperature: 0) }
    func withPositions<R>(_ body: (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        let zero: [Float] = [0]
        return try zero.withUnsafeBufferPointer { try body($0, $0, $0) }
    }
}
