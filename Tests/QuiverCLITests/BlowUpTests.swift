import Foundation
import QuiverClient
import QuiverControl
import QuiverSharedMemory
import QuiverSupervisor
import QuiverWire
import Testing

/// Whether a frame's positions and energies are all finite.
private func finite(_ f: Frame) -> Bool {
    f.energies.potential.isFinite && f.energies.kinetic.isFinite && f.temperature.isFinite
        && f.positions.x.allSatisfy(\.isFinite) && f.positions.y.allSatisfy(\.isFinite) && f.positions.z.allSatisfy(\.isFinite)
}

private func finite(_ f: FrameRecord) -> Bool {
    f.potentialEnergy.isFinite && f.kineticEnergy.isFinite && f.temperature.isFinite
        && f.x.allSatisfy(\.isFinite) && f.y.allSatisfy(\.isFinite) && f.z.allSatisfy(\.isFinite)
}

extension TestServer {
    /// `get` of the blow-up parameters (and paused, step); nil when the server does not answer ok.
    func blowUpState(_ client: CommandClient) throws -> (count: Int, text: String?, paused: Bool, step: Int)? {
        let r = try client.send("get", args: ["names": ["blow_ups", "blow_up", "paused", "step"]])
        guard r.isOK, let o = r.result?.objectValue, let count = o["blow_ups"]?.numberValue, let step = o["step"]?.numberValue,
              case .bool(let paused)? = o["paused"] else { return nil }
        return (Int(count), o["blow_up"]?.stringValue, paused, Int(step))
    }

    func interactionCount(_ client: CommandClient) throws -> Int? {
        let r = try client.send("interaction.list")
        return r.isOK ? r.result?.objectValue?["interactions"]?.arrayValue?.count : nil
    }

    /// SIGKILLs the engine and waits until its respawn answers commands again.
    func killEngine(_ client: CommandClient) throws {
        let before = try engine()
        kill(before.pid, SIGKILL)
        try #require(try eventually(within: 15) { let e = try engine(); return e.pid != 0 && e.pid != before.pid }, "no respawn")
        try #require(try eventually(within: 15) { try interactionCount(client) != nil }, "the respawned engine does not answer")
    }
}

@Suite("Blow-ups end to end (issue 12, promise 15): a pull that blows the dynamics up is rolled back and paused; a respawn never re-applies what may have killed its engine", .serialized)
struct BlowUpEndToEndTests {
    @Test("a blow-up with no interaction: an interactive run pauses and stays up; a run with --steps stops at once (exit 1, no restart) with the rolled-back state in engine-state.bin", .timeLimit(.minutes(2)))
    func unpulledBlowUp() throws {
        let interactive = try TestServer(["--frame-interval", "5"], environment: ["QUIVER_FAULT": "engine:blow-up"])
        let client = try interactive.commandClient()
        #expect(try eventually(within: 15) { try interactive.blowUpState(client)?.count == 1 })
        let state = try #require(try interactive.blowUpState(client))
        #expect(state.paused && state.text?.contains("rolled back to step 0") == true, "\(state)")
        let restarts = try interactive.engine().restarts
        #expect(interactive.process.isRunning && restarts == 0)
        _ = try ControlClient.send("stop", runDirectory: interactive.directory.path)
        #expect(interactive.waitForExit(within: 10))

        let batch = try TestServer(["--frame-interval", "5", "--steps", "100000"], environment: ["QUIVER_FAULT": "engine:blow-up"], waitForConnection: false)
        #expect(batch.waitForExit(within: 30))
        #expect(batch.process.terminationStatus == 1)
        let log = batch.err.finish()
        #expect(log.contains("blew up with no interaction active in a run with a step limit"), "\(log)")
        #expect(log.contains("a restart cannot fix") && !log.contains("restarting in"), "\(log)")
        let saved = try EngineStateFile.read(batch.directory.path + "/" + EngineStateFile.fileName)
        #expect(saved.step == 0 && saved.x.allSatisfy(\.isFinite))
    }

    @Test("the absurd pull (spring, scale 1e30, default max_force, atoms 0-9): the run stays up, no non-finite frame, paused at the rolled-back step with the reason in get, interactions ended, a respawn keeps it so, play continues from there")
    func absurdPull() throws {
        let server = try TestServer(["--codec", "raw", "--frame-interval", "5"])
        let client = try server.commandClient()
        let puller = try server.commandClient("puller")
        let segment = try server.segment()
        let frames = try QuiverClient(connectionFile: server.directory.path + "/connection.json")
        let engineBefore = try server.engine()
        var record = FrameRecord()
        var seen = 0, bad = 0
        /// Every frame the subscriber gets and the newest one in shared memory: finite or counted.
        func watch() throws {
            while let f = try frames.nextFrame(timeout: 0.01)?.frame {
                seen += 1
                if !finite(f) { bad += 1 }
            }
            if let f = segment.frames.readLatest(into: &record) {
                seen += 1
                if !finite(f) { bad += 1 }
            }
        }
        try watch()
        let set = try puller.send("interaction.set", args: ["id": "a", "type": "spring", "scale": 1e30, "position": [0.5, 0.5, 0.5],
                                                            "particles": .array((0..<10).map { .number(Double($0)) })])
        #expect(set.isOK, "\(set)")
        let sentAt = ContinuousClock.now
        var state: (count: Int, text: String?, paused: Bool, step: Int)?
        let blown = try eventually(within: 15) {
            try watch()
            guard server.process.isRunning else { return true }
            state = try server.blowUpState(client)
            return (state?.count ?? 0) >= 1
        }
        #expect(blown && server.process.isRunning, "the run ended: \(server.err.text.suffix(2000))")
        let s = try #require(state, "get did not answer with the blow-up parameters; stderr: \(server.err.text.suffix(2000))")
        print("absurd pull: blown up, rolled back and paused \(seconds(since: sentAt)) s after the command: \(s.text ?? "nil")")
        #expect(s.count == 1 && s.paused)
        let text = try #require(s.text)
        #expect(text.contains("rolled back to step \(s.step)") && text.contains("'a' of puller"), "\(text)")
        let engineAfter = try server.engine()
        #expect(engineAfter.pid == engineBefore.pid && engineAfter.restarts == 0, "the engine was restarted")
        #expect(try server.interactionCount(client) == 0, "the interaction did not end")
        #expect(eventually(within: 5) { server.err.text.contains("the dynamics blew up") }, "no log line")
        // The rolled-back state is published: a frame at the rolled-back step.
        #expect(try eventually(within: 5) { try watch(); return newestStep(segment) == UInt64(s.step) })

        // A respawn keeps it so: paused at the same step, no interaction back, no second blow-up.
        try server.killEngine(client)
        let respawned = try #require(try server.blowUpState(client))
        #expect(respawned.paused && respawned.step == s.step && respawned.count == 1, "\(respawned)")
        #expect(try server.interactionCount(client) == 0)

        // play continues from the rolled-back step.
        let play = try client.send("play")
        #expect(play.isOK && number(play, "applied_step") == Double(s.step), "\(play)")
        #expect(try eventually(within: 15) { try watch(); return (newestStep(segment) ?? 0) >= UInt64(s.step + 50) }, "the steps did not advance")
        try watch()
        #expect(bad == 0, "\(bad) non-finite frames of \(seen)")
        #expect(seen > 5)
        print("absurd pull: \(seen) frames read, \(bad) non-finite")
        _ = try ControlClient.send("stop", runDirectory: server.directory.path)
        #expect(server.waitForExit(within: 10))
        #expect(server.process.terminationStatus == 0)
    }

    @Test("respawn rule: an interaction set while paused (the engine never stepped with it) is dropped when the engine is killed, and the drop is reported")
    func respawnDropsUnprovenInteraction() throws {
        let server = try TestServer(["--frame-interval", "5"])
        let client = try server.commandClient("holder")
        #expect(try client.send("pause").isOK)
        let set = try client.send("interaction.set", args: ["id": "b", "type": "spring", "scale": 10, "position": [1, 1, 1], "particles": [0, 1], "lease": 60])
        #expect(set.isOK, "\(set)")
        #expect(try server.interactionCount(client) == 1)
        try server.killEngine(client)
        #expect(try server.interactionCount(client) == 0, "the respawned engine re-applied the interaction")
        let s = try #require(try server.blowUpState(client), "get did not answer with the blow-up parameters")
        #expect(s.count == 1 && (s.text ?? "").contains("without 'b' of holder"), "\(s)")
        #expect(eventually(within: 5) { server.err.text.contains("dropped on respawn") })
    }

    @Test("respawn rule: an interaction the engine ran a snapshot interval with survives a SIGKILL; a second abnormal end within 10 s of the respawn drops it")
    func respawnKeepsProvenInteractionUnlessItLoops() throws {
        let server = try TestServer(["--frame-interval", "5"])
        let client = try server.commandClient("holder")
        let segment = try server.segment()
        let set = try client.send("interaction.set", args: ["id": "c", "type": "spring", "scale": 10, "position": [1, 1, 1], "particles": [0, 1], "lease": 60])
        #expect(set.isOK, "\(set)")
        let applied = try #require(number(set, "applied_step"))
        #expect(eventually(within: 10) { ((try? segment.snapshots.read())??.step).map { Double($0) > applied } ?? false },
                "no snapshot past the interaction's step")
        try server.killEngine(client)
        #expect(try server.interactionCount(client) == 1, "a healthy engine's SIGKILL lost the interaction")
        #expect(try server.blowUpState(client)?.count == 0)
        // Killed again at once: two abnormal ends in a row, the interaction goes.
        try server.killEngine(client)
        #expect(try server.interactionCount(client) == 0, "the second respawn in a row re-applied the interaction")
        let s = try #require(try server.blowUpState(client))
        #expect(s.count == 1 && (s.text ?? "").contains("'c' of holder"), "\(s)")
    }
}
