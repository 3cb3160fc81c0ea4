import CQuiverOS
import Foundation
import QuiverControl
import QuiverEngine
import QuiverSharedMemory

#if canImport(Glibc)
import Glibc
#endif

/// The engine's side of control: what clients changed (pause, run parameters, throttles,
/// interactions) and the command ring it applies them from, always between two steps.
///
/// Everything here is also kept in the segment's engine blob (JSON) after every change, so an
/// engine started again after a crash continues paused if it was paused, with the same parameters
/// and the same interactions (their leases keep running on the system-wide monotonic clock).
public final class EngineControl {
    /// What survives an engine restart.
    struct State: Codable {
        var paused = false
        /// `step N`: pause when the step counter reaches this.
        var pauseAtStep: Int?
        var frameInterval: Int
        /// 0: unlimited.
        var maxStepsPerSecond = 0.0
        var maxFramesPerSecond = 0.0
        var interactions: [Active] = []
        var work = 0.0
        /// Run parameters of the dynamics changed by clients (re-applied after a restart).
        var parameters: [String: Double] = [:]

        enum CodingKeys: String, CodingKey {
            case paused, work, parameters, interactions
            case pauseAtStep = "pause_at_step", frameInterval = "frame_interval"
            case maxStepsPerSecond = "max_steps_per_second", maxFramesPerSecond = "max_frames_per_second"
        }
    }

    /// An interaction with its owner and lease.
    struct Active: Codable {
        var spec: InteractionSpec
        var owner: String
        /// CLOCK_MONOTONIC nanoseconds after which it ends unless renewed.
        var deadline: UInt64
    }

    /// Most interactions active at once.
    public static let maxInteractions = 64

    let dynamics: any Dynamics
    let segment: SharedSegment?
    /// Readable when the control worker posted commands (eventfd; nil: poll).
    let postedFD: Int32?
    /// Written after each finished command (eventfd; nil: none).
    let doneFD: Int32?
    var state: State
    /// The state `reset` returns to (positions, velocities); nil when the dynamics cannot save one.
    let initial: DynamicState?
    private var nextCommand: UInt64
    private var dirty = false
    /// Set when positions changed without a step (`reset`): a paused engine publishes them at once.
    var positionsChanged = false
    /// Lines for the engine's log (default: stdout).
    public var log: (String) -> Void = { print($0); fflush(nil) }

    public init(dynamics: any Dynamics, segment: SharedSegment?, frameInterval: Int, initial: DynamicState?, postedFD: Int32? = nil, doneFD: Int32? = nil) {
        self.dynamics = dynamics
        self.segment = segment
        self.postedFD = postedFD
        self.doneFD = doneFD
        self.initial = initial
        state = State(frameInterval: frameInterval)
        nextCommand = (segment?.commands.applied ?? 0) + 1
    }

    public var paused: Bool { state.paused }
    public var frameInterval: Int { state.frameInterval }
    public var maxStepsPerSecond: Double { state.maxStepsPerSecond }
    public var maxFramesPerSecond: Double { state.maxFramesPerSecond }
    public var work: Double { state.work }

    // MARK: persistence

    /// Continues from the segment's engine blob, if a previous engine left one. Returns whether it did.
    @discardableResult
    public func restoreFromSegment() -> Bool {
        guard let bytes = try? segment?.blobs.read(.engine), let saved = try? JSONDecoder().decode(State.self, from: Data(bytes)) else { return false }
        state = saved
        for (name, value) in saved.parameters { try? dynamics.setParameter(name, to: value) }
        var kept: [Active] = []
        for a in saved.interactions {
            guard let forces = dynamics.interactiveForces, let i = try? a.spec.interaction(atomCount: dynamics.atomCount) else { continue }
            if (try? forces.set(i)) != nil { kept.append(a) }
        }
        state.interactions = kept
        dynamics.interactiveForces?.work = saved.work
        return true
    }

    /// Takes over the run settings of the control of a previous dynamics (an embedding session's
    /// `show`): paused, frame interval, throttles. The previous control's interactions end there
    /// (velocities reset where asked; they named atoms of the previous system), and this
    /// dynamics starts with none.
    public func carrySettings(from previous: EngineControl) {
        previous.endAll(reason: "another dynamics is shown")
        _ = dynamics.interactiveForces?.removeAll()
        state.paused = previous.state.paused
        state.frameInterval = previous.state.frameInterval
        state.maxStepsPerSecond = previous.state.maxStepsPerSecond
        state.maxFramesPerSecond = previous.state.maxFramesPerSecond
        dirty = true
        persistIfNeeded()
    }

    /// Ends every interaction (their `reset_velocities` applied). Returns how many.
    @discardableResult
    public func endAll(reason: String) -> Int {
        let n = state.interactions.count
        while !state.interactions.isEmpty { end(at: 0, reason: reason) }
        return n
    }

    /// Writes the state into the segment when it changed.
    public func persistIfNeeded() {
        guard dirty, let segment else { return }
        dirty = false
        state.work = dynamics.interactiveForces?.work ?? state.work
        guard let data = try? JSONEncoder().encode(state) else { return }
        do { try segment.blobs.write(.engine, Array(data)) } catch { log("engine: could not save the control state: \(error)") }
    }

    // MARK: commands

    /// Applies every command posted since the last call, in order. Returns how many.
    @discardableResult
    public func processCommands() -> Int {
        guard let segment else { return 0 }
        var applied = 0
        while nextCommand <= segment.commands.posted {
            let seq = nextCommand
            nextCommand += 1
            guard let payload = try? segment.commands.take(seq) else { continue }
            let reply: EngineReply
            do {
                let command = try EngineCommand.decode(payload)
                reply = try apply(command)
            } catch let error as EngineError {
                reply = EngineReply(appliedStep: dynamics.step, error: error.description)
            } catch {
                reply = EngineReply(appliedStep: dynamics.step, error: "the engine could not read the command: \(error)")
            }
            let bytes = (try? JSONEncoder().encode(reply)).map(Array.init) ?? []
            segment.commands.finish(seq, status: reply.error == nil ? 0 : 1, appliedStep: UInt64(max(0, reply.appliedStep)), reply: bytes)
            applied += 1
        }
        if applied > 0 {
            persistIfNeeded()
            if let doneFD { var one: UInt64 = 1; _ = write(doneFD, &one, 8) }
        }
        return applied
    }

    /// Applies one command now (between steps) and says when it took effect.
    public func apply(_ c: EngineCommand) throws -> EngineReply {
        let step = dynamics.step
        switch c.kind {
        case .play:
            if state.paused || state.pauseAtStep != nil { dirty = true }
            state.paused = false
            state.pauseAtStep = nil
            return EngineReply(appliedStep: step, result: json(["paused": false]))
        case .pause:
            if !state.paused || state.pauseAtStep != nil { dirty = true }
            state.paused = true
            state.pauseAtStep = nil
            return EngineReply(appliedStep: step, result: json(["paused": true]))
        case .step:
            let n = c.count ?? 1
            if let range = CommandCatalog.spec("step")?.argument("count")?.range, !range.contains(Double(n)) {
                throw EngineError.invalidParameter("step count must be in \(range.text), got \(n)")
            }
            state.paused = false
            state.pauseAtStep = step + n
            dirty = true
            return EngineReply(appliedStep: step, result: json(["until_step": step + n]))
        case .reset:
            guard let initial else { throw EngineError.invalidParameter("\(dynamics.name) cannot be reset (it cannot save its state)") }
            var s = initial
            s.step = step
            s.time = dynamics.time
            try dynamics.restoreState(s)
            positionsChanged = true
            for a in state.interactions { _ = dynamics.interactiveForces?.remove(id: a.spec.id) }
            state.interactions = []
            dirty = true
            return EngineReply(appliedStep: step, result: json(["reset": true]))
        case .get:
            return EngineReply(appliedStep: step, result: try json(parameters(c.names)))
        case .set:
            guard let values = c.values, !values.isEmpty else { throw EngineError.invalidParameter("set needs at least one value") }
            try set(values)
            dirty = true
            return EngineReply(appliedStep: step, result: try json(parameters(Array(values.keys))))
        case .interactionSet:
            guard let spec = c.interaction else { throw EngineError.invalidParameter("interaction.set needs an interaction") }
            guard let forces = dynamics.interactiveForces else {
                throw EngineError.invalidParameter("\(dynamics.name) takes no interactive forces")
            }
            let interaction = try spec.interaction(atomCount: dynamics.atomCount)
            if let k = state.interactions.firstIndex(where: { $0.spec.id == spec.id }) {
                guard state.interactions[k].owner == c.client else {
                    throw EngineError.invalidParameter("interaction '\(spec.id)' belongs to another client (\(state.interactions[k].owner))")
                }
                try forces.set(interaction)
                state.interactions[k].spec = spec
                state.interactions[k].deadline = Clock.monotonicNanoseconds + UInt64(spec.lease * 1e9)
            } else {
                guard state.interactions.count < Self.maxInteractions else {
                    throw EngineError.invalidParameter("\(Self.maxInteractions) interactions are active already")
                }
                try forces.set(interaction)
                state.interactions.append(Active(spec: spec, owner: c.client, deadline: Clock.monotonicNanoseconds + UInt64(spec.lease * 1e9)))
            }
            dirty = true
            return EngineReply(appliedStep: step, result: json(["id": spec.id, "active": state.interactions.count]))
        case .interactionRemove:
            guard let id = c.id else { throw EngineError.invalidParameter("interaction.remove needs an id") }
            guard let k = state.interactions.firstIndex(where: { $0.spec.id == id }) else {
                throw EngineError.invalidParameter("no interaction '\(id)'")
            }
            guard state.interactions[k].owner == c.client else {
                throw EngineError.invalidParameter("interaction '\(id)' belongs to another client (\(state.interactions[k].owner))")
            }
            end(at: k, reason: "removed")
            return EngineReply(appliedStep: step, result: json(["id": id, "active": state.interactions.count]))
        case .interactionList:
            let now = Clock.monotonicNanoseconds
            let list: [[String: Any]] = state.interactions.map { a in
                ["id": a.spec.id, "type": a.spec.type.rawValue, "owner": a.owner, "particles": a.spec.particles.count,
                 "position": a.spec.position, "scale": a.spec.scale,
                 "expires_in": Double(a.deadline > now ? a.deadline - now : 0) / 1e9]
            }
            return EngineReply(appliedStep: step, result: json(["interactions": list, "user_energy": dynamics.interactiveForces?.energy ?? 0,
                                                               "user_work": dynamics.interactiveForces?.work ?? 0]))
        case .renew:
            let now = Clock.monotonicNanoseconds
            var renewed = 0
            for k in state.interactions.indices where state.interactions[k].owner == c.client {
                state.interactions[k].deadline = now + UInt64(state.interactions[k].spec.lease * 1e9)
                renewed += 1
            }
            if renewed > 0 { dirty = true }
            return EngineReply(appliedStep: step, result: json(["renewed": renewed]))
        case .clientLeft:
            var ended = 0
            while let k = state.interactions.firstIndex(where: { $0.owner == c.client }) {
                end(at: k, reason: "its client left")
                ended += 1
            }
            return EngineReply(appliedStep: step, result: json(["ended": ended]))
        }
    }

    /// The run parameters by name (all when `names` is nil).
    func parameters(_ names: [String]?) throws -> [String: Any] {
        var all: [String: Any] = [
            "frame_interval": state.frameInterval, "max_steps_per_second": state.maxStepsPerSecond,
            "max_frames_per_second": state.maxFramesPerSecond, "step": dynamics.step, "time": dynamics.time,
            "paused": state.paused, "atoms": dynamics.atomCount,
        ]
        for (k, v) in dynamics.parameters() { all[k] = v }
        guard let names else { return all }
        var out: [String: Any] = [:]
        for n in names {
            if let v = all[n] { out[n] = v } else if ["temperature", "friction"].contains(n) {
                out[n] = NSNull() // the dynamics has no thermostat
            } else {
                throw EngineError.invalidParameter("no parameter '\(n)'")
            }
        }
        return out
    }

    /// Parameters the engine loop keeps itself; the others belong to the dynamics.
    static let loopParameters: Set<Parameter> = [.frameInterval, .maxStepsPerSecond, .maxFramesPerSecond]

    /// Applies every value or none. Ranges are the control catalogue's (`Parameter.range`): the
    /// control worker checked them already; the engine checks again and never trusts the ring.
    func set(_ values: [String: Double]) throws {
        for (name, v) in values {
            guard let p = Parameter(rawValue: name), let range = p.range else { throw EngineError.invalidParameter("no settable parameter '\(name)'") }
            guard range.contains(v), !p.isInteger || v == v.rounded() else {
                throw EngineError.invalidParameter("\(name) must be \(p.isInteger ? "an integer " : "")in \(range.text), got \(v)")
            }
            if !Self.loopParameters.contains(p) && dynamics.parameters()[name] == nil {
                if p == .temperature || p == .friction {
                    throw EngineError.invalidParameter("\(name) needs a thermostat; \(dynamics.name) has none (velocity Verlet runs NVE)")
                }
                throw EngineError.invalidParameter("\(dynamics.name) has no parameter '\(name)'")
            }
        }
        let before = dynamics.parameters()
        do {
            for (name, v) in values.sorted(by: { $0.key < $1.key }) where !Self.loopParameters.contains(where: { $0.rawValue == name }) {
                try dynamics.setParameter(name, to: v)
                state.parameters[name] = v
            }
        } catch {
            for (name, v) in before { try? dynamics.setParameter(name, to: v) }
            throw error
        }
        if let v = values["frame_interval"] { state.frameInterval = Int(v) }
        if let v = values["max_steps_per_second"] { state.maxStepsPerSecond = v }
        if let v = values["max_frames_per_second"] { state.maxFramesPerSecond = v }
    }

    /// Ends the interaction at `k`; draws new velocities for its atoms when it asked for that.
    private func end(at k: Int, reason: String) {
        let a = state.interactions.remove(at: k)
        _ = dynamics.interactiveForces?.remove(id: a.spec.id)
        if a.spec.resetVelocities {
            let t = dynamics.parameters()["temperature"] ?? ((try? dynamics.energies().temperature) ?? 0)
            if t > 0 {
                do { try dynamics.resetVelocities(of: a.spec.particles, temperature: t) } catch {
                    log("engine: could not reset the velocities of interaction '\(a.spec.id)': \(error)")
                }
            }
        }
        dirty = true
        if reason != "removed" { log("engine: interaction '\(a.spec.id)' of \(a.owner) ended: \(reason)") }
    }

    /// Ends the interactions whose lease ran out. Returns how many.
    @discardableResult
    public func expireLeases() -> Int {
        guard !state.interactions.isEmpty else { return 0 }
        let now = Clock.monotonicNanoseconds
        var ended = 0
        while let k = state.interactions.firstIndex(where: { $0.deadline <= now }) {
            end(at: k, reason: "its lease ran out")
            ended += 1
        }
        if ended > 0 { persistIfNeeded() }
        return ended
    }

    /// Called after every step: pauses when a `step N` target is reached. Returns true then.
    func afterStep() -> Bool {
        guard let target = state.pauseAtStep, dynamics.step >= target else { return false }
        state.pauseAtStep = nil
        state.paused = true
        dirty = true
        persistIfNeeded()
        return true
    }

    /// Waits up to `seconds` for posted commands (returns early when some arrive).
    public func wait(seconds: Double) {
        guard seconds > 0 else { return }
        if let postedFD {
            var p = pollfd(fd: postedFD, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, Int32(max(1, (seconds * 1000).rounded(.up)))) > 0 {
                var value: UInt64 = 0
                _ = read(postedFD, &value, 8)
            }
        } else {
            usleep(useconds_t(min(seconds, 0.002) * 1e6))
        }
    }

    private func json(_ object: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}
