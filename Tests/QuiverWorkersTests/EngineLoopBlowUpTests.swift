import Foundation
import QuiverEngine
import QuiverLog
import QuiverModel
import QuiverSharedMemory
import QuiverWorkers
import Testing

/// A dynamics whose positions turn NaN at step 7 without `advance` saying so: only the loop's last
/// line of defence (`publishFrame`) can keep them from clients. It cannot roll back.
final class Poisoned: Dynamics {
    var name: String { "poisoned" }
    var atomCount: Int { 4 }
    var step = 0
    var time: Double { Double(step) * 0.001 }
    var box: Box { Box(cube: 4) }
    var types: [Int32] { [0, 0, 0, 0] }
    var typeNames: [String] { ["X"] }
    var masses: [Float] { [1, 1, 1, 1] }
    private var x: [Float] = [0.5, 1, 1.5, 2]
    func advance(steps: Int, energy: Bool) throws {
        step += steps
        if step >= 7 { x = x.map { _ in .nan } }
    }
    func energies() throws -> Energies { Energies(step: step, potential: 0, kinetic: 0, temperature: 0) }
    func withPositions<R>(_ body: (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try x.withUnsafeBufferPointer { p in try body(p, p, p) }
    }
}

/// A segment in a temporary directory, both removed when this goes.
final class TemporarySegment {
    let directory: String
    let segment: SharedSegment
    init(atoms: Int) throws {
        directory = NSTemporaryDirectory() + "quiver-engine-loop-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var layout = SegmentLayout(atomCapacity: atoms, slotCount: 4, workerCapacity: 2)
        layout.commandSlots = 8
        segment = try SharedSegment.create(name: "engine-loop", directory: directory, layout: layout)
    }
    deinit {
        try? segment.unlink()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

@Suite("Blow-ups in the engine loop (EngineLoop over a real segment, no processes)", .serialized)
struct EngineLoopBlowUpTests {
    @Test("the absurd pull through EngineControl: the loop rolls back to the last frame's step, pauses, ends the pull, publishes the rolled-back state, and get reports it", .timeLimit(.minutes(1)))
    func absurdPull() throws {
        let temporary = try TemporarySegment(atoms: 108)
        let segment = temporary.segment
        do {
            let sim = try EngineControlTests.argon()
            let lines = Lines()
            let c = EngineControlTests.control(sim, segment: segment, frameInterval: 5, lines: lines)
            let loop = EngineLoop(dynamics: sim, segment: segment, control: c, status: nil, reporter: nil, snapshotInterval: nil, publishedStep: -1)
            try loop.publishFrame()
            #expect(try loop.run(totalSteps: 20) { false }, "20 plain steps, a frame every 5")
            let pull = InteractionRequest(Interaction(id: "a", kind: .spring, position: SIMD3(0.5, 0.5, 0.5), particles: Array(0..<10), scale: 1e30))
            #expect(c.apply(.interactionSet(pull), client: "puller").refusal == nil)
            let published = segment.frames.published
            _ = try loop.run(totalSteps: 1000) { c.paused }
            #expect(c.paused && sim.step == 20, "rolled back to step \(sim.step), not to the last frame's (20)")
            #expect(sim.interactions.interactions.isEmpty && c.activeInteractions == 0)
            let reply = c.apply(.get(names: [.blowUps, .blowUp, .paused]), client: "x")
            guard case .parameters(let p)? = reply.result, case .text(let text)? = p[.blowUp] else {
                Issue.record("get did not report the blow-up: \(reply)")
                return
            }
            #expect(p[.blowUps] == .number(1) && p[.paused] == .bool(true))
            #expect(text.contains("rolled back to step 20, paused, ended interactions 'a' of puller"), "\(text)")
            #expect(lines.text.contains("the dynamics blew up") && lines.text.contains("interaction 'a' of puller ended: the dynamics blew up"))
            // The paused loop publishes the rolled-back state: a new frame at step 20, finite.
            _ = try loop.run(totalSteps: 1000) { segment.frames.published > published }
            var frame = FrameRecord()
            let f = try #require(segment.frames.readLatest(into: &frame))
            #expect(f.step == 20 && f.x.allSatisfy(\.isFinite) && f.potentialEnergy.isFinite && f.userEnergy == 0)
            // `get` without names has them too.
            if case .parameters(let all)? = c.apply(.get(names: nil), client: "x").result {
                #expect(all[.blowUps] == .number(1) && all[.blowUp] == .text(text))
            } else {
                Issue.record("get without names failed")
            }
            // play continues from step 20.
            #expect(c.apply(.play, client: "x") == .applied(.paused(false), step: 20))
            #expect(try loop.run(totalSteps: 60) { false })
            #expect(sim.step == 60 && sim.positions().allSatisfy { $0.x.isFinite })
        }
    }

    @Test("the last frame's state already carries the pull (its atoms flying, below the bound): after the blow-up and play the dynamics go on without blowing up again", .timeLimit(.minutes(1)))
    func pulledCheckpoint() throws {
        let temporary = try TemporarySegment(atoms: 108)
        let segment = temporary.segment
        do {
            let sim = try EngineControlTests.argon()
            let c = EngineControlTests.control(sim, segment: segment, frameInterval: 5, lines: Lines())
            let loop = EngineLoop(dynamics: sim, segment: segment, control: c, status: nil, reporter: nil, snapshotInterval: nil, publishedStep: -1)
            try loop.publishFrame()
            #expect(try loop.run(totalSteps: 20) { false })
            // A step of an absurd pull, as a frame caught it: atoms 0-9 fly at 60 nm/ps toward one point.
            let pull = InteractionRequest(Interaction(id: "a", kind: .spring, position: SIMD3(0.5, 0.5, 0.5), particles: Array(0..<10), scale: 1e30))
            #expect(c.apply(.interactionSet(pull), client: "puller").refusal == nil)
            var v = sim.velocities()
            let x = sim.positions()
            for i in 0..<10 {
                let d = SIMD3<Float>(0.5, 0.5, 0.5) - x[i] + SIMD3(0.001, 0, 0)
                v[i] = 60 * d / (d * d).sum().squareRoot()
            }
            try sim.setVelocities(v)
            try loop.publishFrame()
            _ = try loop.run(totalSteps: 1000) { c.paused }
            #expect(c.paused && c.activeInteractions == 0 && sim.step == 20)
            guard case .parameters(let p)? = c.apply(.get(names: [.blowUps, .blowUp]), client: "x").result, case .text(let text)? = p[.blowUp] else {
                Issue.record("no blow_up text")
                return
            }
            #expect(p[.blowUps] == .number(1) && text.contains("velocities of the 10 pulled atoms drawn anew"), "\(text)")
            #expect(sim.velocities().prefix(10).allSatisfy { ($0 * $0).sum().squareRoot() < 5 })
            #expect(c.apply(.play, client: "x").refusal == nil)
            #expect(try loop.run(totalSteps: 520) { c.paused })
            if case .parameters(let after)? = c.apply(.get(names: [.blowUps]), client: "x").result {
                #expect(after[.blowUps] == .number(1), "blew up again after play")
            }
        }
    }

    @Test("a run with a step limit whose dynamics blow up with no interaction active: rolled back, the snapshot holds the rolled-back state, and the loop ends with BatchBlowUp", .timeLimit(.minutes(1)))
    func batchBlowUp() throws {
        let temporary = try TemporarySegment(atoms: 108)
        let segment = temporary.segment
        do {
            let sim = try EngineControlTests.argon()
            let c = EngineControlTests.control(sim, segment: segment, frameInterval: 5, lines: Lines())
            let loop = EngineLoop(dynamics: sim, segment: segment, control: c, status: nil, reporter: nil, snapshotInterval: nil, publishedStep: -1)
            loop.endOnUnpulledBlowUp = true
            try loop.publishFrame()
            #expect(try loop.run(totalSteps: 10) { false })
            // Two atoms 0.003 nm apart: the next step sends them flying.
            var x = sim.positions()
            x[1] = x[0] + SIMD3(0.003, 0, 0)
            try sim.setPositions(x)
            #expect(throws: BatchBlowUp.self) { try loop.run(totalSteps: 1000) { false } }
            #expect(sim.step == 10 && sim.positions().allSatisfy { $0.x.isFinite && $0.y.isFinite && $0.z.isFinite })
            let snap = try #require(try segment.snapshots.read())
            #expect(snap.step == 10 && snap.x.allSatisfy(\.isFinite))
            // With an interaction active the same blow-up pauses instead (a person pulled).
            let loop2 = EngineLoop(dynamics: sim, segment: segment, control: c, status: nil, reporter: nil, snapshotInterval: nil, publishedStep: 10)
            loop2.endOnUnpulledBlowUp = true
            let pull = InteractionRequest(Interaction(id: "a", kind: .spring, position: SIMD3(0.5, 0.5, 0.5), particles: Array(0..<10), scale: 1e30))
            #expect(c.apply(.play, client: "x").refusal == nil)
            #expect(c.apply(.interactionSet(pull), client: "puller").refusal == nil)
            _ = try loop2.run(totalSteps: 1000) { c.paused }
            #expect(c.paused && c.activeInteractions == 0)
        }
    }

    @Test("a dynamics whose positions turn NaN without throwing: the frame is refused, the loop pauses, nothing non-finite is published", .timeLimit(.minutes(1)))
    func lastLineOfDefence() throws {
        let temporary = try TemporarySegment(atoms: 4)
        let segment = temporary.segment
        do {
            let d = Poisoned()
            let c = EngineControl(dynamics: d, segment: segment, frameInterval: 5, initial: nil)
            c.logger = QuiverLogging.silent
            let loop = EngineLoop(dynamics: d, segment: segment, control: c, status: nil, reporter: nil, snapshotInterval: nil, publishedStep: -1)
            try loop.publishFrame()
            _ = try loop.run(totalSteps: 100) { c.paused }
            #expect(c.paused && d.step == 10)
            #expect(segment.frames.latestScalars()?.step == 5, "the frame of step 10 (NaN) was published")
            let published = segment.frames.published
            // Paused: the loop keeps publishing nothing of the bad state.
            var passes = 0
            _ = try loop.run(totalSteps: 100) { passes += 1; return passes > 5 }
            #expect(segment.frames.published == published)
            guard case .parameters(let p)? = c.apply(.get(names: [.blowUp]), client: "x").result, case .text(let text)? = p[.blowUp] else {
                Issue.record("no blow_up text")
                return
            }
            #expect(text.contains("non-finite") && text.contains("not rolled back (poisoned cannot)"), "\(text)")
        }
    }
}
