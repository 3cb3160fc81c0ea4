import Foundation
import QuiverClient
import QuiverControl
import QuiverSharedMemory
import QuiverWire
import Testing

@Suite("Control end to end: interaction to frame, the frame-rate cap, velocities redrawn when a pull ends", .serialized)
struct InteractionEndToEndTests {
    @Test("quiver debug interaction-latency: each sample's first frame past the applied step carries the user forces, within two frame boundaries and three frames of the send")
    func interactionLatency() throws {
        let server = try TestServer(["--cells", "4", "--frame-interval", "10"])
        // 1000 steps/s, a frame every 10 ms: a 256-atom engine left alone publishes faster than the
        // broadcaster polls, and frames it skips would count as late.
        #expect(try server.commandClient().send("set", args: ["values": ["max_steps_per_second": 1000]]).isOK)
        let r = try QuiverProcess.run(["debug", "interaction-latency", server.directory.path + "/connection.json",
                                       "--samples", "8", "--timeout", "5", "--format", "json"], timeout: 60)
        #expect(r.status == 0, "stderr: \(r.stderr)\nstdout: \(r.stdout)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)")
        #expect(result["atoms"] as? Int == 256 && result["frame_interval"] as? Int == 10)
        let samples = try #require(result["samples"] as? [[String: Any]])
        #expect(samples.count == 8)
        for s in samples {
            #expect(s["failure"] == nil, "\(s)")
            let applied = try #require(s["applied_step"] as? Int)
            let forces = try #require(s["forces"] as? [String: Any], "\(s)")
            // The first frame after the applied step shows the user forces (and moved positions:
            // `positionsMoveAtTheNextStep` proves that part exactly).
            #expect((forces["step"] as? Int ?? 0) > applied, "\(s)")
            #expect((forces["user_forces"] as? Int ?? 0) >= 4, "\(s)")
            #expect((forces["boundaries_late"] as? Int ?? 99) <= 2, "the user forces came more than two frames late: \(s)")
            // Counted from the send, so a command applied late shows too (1: the next frame published).
            #expect((forces["frames_after_send"] as? Int ?? 99) <= 3, "the user forces came more than three frames after the send: \(s)")
        }
    }

    @Test("positions move at the next step: from the same state, the frame one step after a pull is applied differs from the one without it, only in the pulled atoms")
    func positionsMoveAtTheNextStep() throws {
        // lj: velocity Verlet, no random numbers, so the same state steps to the same frame bitwise.
        let server = try TestServer(["--system", "lj", "--codec", "raw", "--frame-interval", "1000"])
        let client = try server.commandClient()
        let frames = try QuiverClient(connectionFile: server.directory.path + "/connection.json")
        #expect(try client.send("pause").isOK)
        func frame(atStep step: Double) throws -> Frame? {
            for _ in 0..<50 { if let f = try frames.nextFrame(timeout: 0.5)?.frame, Double(f.step) == step { return f } }
            return nil
        }
        /// Resets, optionally pulls atoms 0-3, takes one step; the frame of that step.
        func oneStep(pull: Bool) throws -> Frame? {
            let reset = try client.send("reset")
            #expect(reset.isOK, "\(reset)")
            var at = try #require(number(reset, "applied_step"))
            if pull {
                let set = try client.send("interaction.set", args: ["id": "p", "type": "constant", "particles": [0, 1, 2, 3],
                                                                    "position": [20, 20, 20], "scale": 4000, "max_force": 100000])
                #expect(set.isOK, "\(set)")
                at = try #require(number(set, "applied_step"))
            }
            let stepped = try client.send("step", args: ["count": 1])
            #expect(stepped.isOK, "\(stepped)")
            let f = try frame(atStep: at + 1)
            if pull { #expect(try client.send("interaction.remove", args: ["id": "p"]).isOK) }
            return f
        }
        let plain = try #require(try oneStep(pull: false), "no frame one step after the reset")
        let pulled = try #require(try oneStep(pull: true), "no frame one step after the pull")
        #expect(pulled.userForces?.count == 4)
        let (a, b) = (plain.positions, pulled.positions)
        var moved: Float = 0
        for i in 0..<4 {
            let dx: Float = abs(b.x[i] - a.x[i]), dy: Float = abs(b.y[i] - a.y[i]), dz: Float = abs(b.z[i] - a.z[i])
            moved = max(moved, dx, dy, dz)
        }
        #expect(moved > 1e-4, "the pulled atoms did not move differently in the first step after the pull (\(moved) nm)")
        var others = true
        for i in 4..<plain.atomCount where a.x[i] != b.x[i] || a.y[i] != b.y[i] || a.z[i] != b.z[i] { others = false }
        #expect(others, "atoms nobody pulled moved differently in the same first step")
    }

    @Test("set max_frames_per_second=10: a client gets at most 10 frames/s, far fewer than unthrottled; 0 lifts the cap")
    func frameRateCap() throws {
        let server = try TestServer(["--frame-interval", "2"])
        let client = try server.commandClient()
        let segment = try server.segment()
        let frames = try QuiverClient(connectionFile: server.directory.path + "/connection.json")
        _ = try #require(try frames.nextFrame(timeout: 10), "no frame")
        /// Frames received (and published into shared memory) over the seconds measured around
        /// them, counting only frames past `step` (published after a setting took effect), until
        /// `enough` holds for them (the deadline only bounds the test).
        func measure(after step: Double, until enough: (_ received: Int, _ seconds: Double) -> Bool) throws
            -> (received: Double, published: Double, seconds: Double) {
            // skip what was published before the change
            while let f = try frames.nextFrame(timeout: 1), Double(f.frame.step) <= step {}
            let start = ContinuousClock.now
            let published0 = segment.frames.published
            var count = 0
            while seconds(since: start) < 30 && !enough(count, seconds(since: start)) {
                if try frames.nextFrame(timeout: 0.2) != nil { count += 1 }
            }
            let elapsed = seconds(since: start)
            return (Double(count), Double(segment.frames.published - published0), elapsed)
        }
        // What the cap lets through in `seconds`: 10 a second, and one at the start.
        func capped(_ seconds: Double) -> Double { 10 * seconds + 2 }
        let free = try measure(after: 0) { _, t in t >= 1 }
        let cap = try client.send("set", args: ["values": ["max_frames_per_second": 10]])
        #expect(cap.isOK && number(cap, "max_frames_per_second") == 10, "\(cap)")
        let slow = try measure(after: try #require(number(cap, "applied_step"))) { n, _ in n >= 15 }
        let lifted = try client.send("set", args: ["values": ["max_frames_per_second": 0]])
        #expect(lifted.isOK, "\(lifted)")
        // Lifted: more frames than the cap could let through in the same measured time (a
        // server still capped never gets there).
        let fast = try measure(after: try #require(number(lifted, "applied_step"))) { n, t in Double(n) > 2 * capped(t) }
        func perSecond(_ m: (received: Double, published: Double, seconds: Double)) -> String {
            String(format: "%.1f received, %.1f published", m.received / m.seconds, m.published / m.seconds)
        }
        print("frames/s: unthrottled \(perSecond(free)); capped at 10: \(perSecond(slow)); cap lifted: \(perSecond(fast))")
        // Capped: frames still flow (15 arrived), no faster than the cap in the measured time;
        // load can only slow them. The engine itself publishes no more.
        #expect(slow.received >= 15, "capped at 10 frames/s, only \(slow.received) frames in \(slow.seconds) s")
        #expect(slow.received <= capped(slow.seconds), "capped at 10 frames/s, received \(slow.received) in \(slow.seconds) s")
        #expect(slow.published <= capped(slow.seconds), "capped at 10 frames/s, the engine published \(slow.published) in \(slow.seconds) s")
        // The same client, unthrottled, in this test, on this machine: far faster.
        #expect(slow.received / slow.seconds < free.received / free.seconds / 3, "the cap did not slow the frames clearly: \(perSecond(slow)) vs \(perSecond(free))")
        #expect(fast.received > 2 * capped(fast.seconds), "setting 0 did not lift the cap: \(perSecond(fast))")
    }

    @Test("an interaction with reset_velocities ends: its atoms get thermal velocities at once; one without keeps its atoms' velocities")
    func resetVelocitiesWhenAPullEnds() throws {
        let server = try TestServer(["--frame-interval", "5"])
        let client = try server.commandClient()
        let segment = try server.segment()
        #expect(try client.send("pause").isOK)
        /// A snapshot written after this call: the engine writes one every 0.5 s, also while paused.
        func freshSnapshot() throws -> EngineSnapshot {
            let seen = (try? segment.snapshots.read())?.index
            var s: EngineSnapshot?
            #expect(eventually(within: 15) { s = (try? segment.snapshots.read()); return s != nil && s!.index != seen })
            return try #require(s, "no new engine snapshot within 3 s")
        }
        let start = try freshSnapshot()
        let resetGroup = Array(0..<8), keepGroup = Array(250..<258)
        for (id, group, reset) in [("reset", resetGroup, true), ("keep", keepGroup, false)] {
            let a = group[0]
            let set = try client.send("interaction.set", args: [
                "id": .string(id), "type": "constant", "particles": .array(group.map { .number(Double($0)) }),
                "position": .array([Double(start.x[a]) + 0.7, Double(start.y[a]), Double(start.z[a])].map { .number($0) }),
                "scale": 2000, "lease": 60, "reset_velocities": .bool(reset),
            ])
            #expect(set.isOK, "\(set)")
        }
        let stepped = try client.send("step", args: ["count": 20])
        let until = try #require(number(stepped, "until_step"))
        #expect(eventually(within: 15) { newestStep(segment) == UInt64(until) }, "step 20 did not finish")
        let hot = try freshSnapshot()
        #expect(hot.step == UInt64(until))
        // <v^2> per component over kT/m: 1 at the thermostat's temperature (94.4 K, argon).
        let thermal = 0.0083144626 * 94.4 / 39.948
        func heat(_ s: EngineSnapshot, _ group: [Int]) -> Double {
            group.map { Double(s.vx[$0] * s.vx[$0] + s.vy[$0] * s.vy[$0] + s.vz[$0] * s.vz[$0]) }.reduce(0, +) / Double(3 * group.count) / thermal
        }
        func velocities(_ s: EngineSnapshot, _ group: [Int]) -> [Float] { group.flatMap { [s.vx[$0], s.vy[$0], s.vz[$0]] } }
        #expect(heat(hot, resetGroup) > 4 && heat(hot, keepGroup) > 4,
                "the pull should have heated both groups far above the thermostat: \(heat(hot, resetGroup)), \(heat(hot, keepGroup))")
        // Both end while the run stays paused: nothing else changes a velocity meanwhile.
        #expect(try client.send("interaction.remove", args: ["id": "reset"]).isOK)
        #expect(try client.send("interaction.remove", args: ["id": "keep"]).isOK)
        let after = try freshSnapshot()
        #expect(after.step == hot.step, "the run must still be paused")
        print("velocity reset: <v^2>/(kT/m) of the pulled atoms \(heat(hot, resetGroup)) -> \(heat(after, resetGroup)) (reset), \(heat(hot, keepGroup)) -> \(heat(after, keepGroup)) (kept)")
        #expect(velocities(after, keepGroup) == velocities(hot, keepGroup), "an interaction without reset_velocities changed its atoms' velocities")
        #expect(velocities(after, resetGroup) != velocities(hot, resetGroup), "reset_velocities did not redraw the velocities")
        // 24 components drawn at 94.4 K: their mean square is kT/m within a factor of 3 (chi-square, 24 degrees of freedom).
        let redrawn = heat(after, resetGroup)
        #expect(redrawn > 0.2 && redrawn < 3, "the redrawn velocities are not thermal: <v^2>/(kT/m) = \(redrawn)")
        #expect(velocities(after, Array(8..<250)) == velocities(hot, Array(8..<250)), "atoms outside the interaction were touched")
    }
}
