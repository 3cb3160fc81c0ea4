import CQuiverOS
import Foundation
import QuiverLog
import QuiverEngine
import QuiverModel
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
        /// Blow-ups in this run (`blow_ups`), and what happened at the last one (`blow_up`).
        var blowUps = 0
        var lastBlowUp: String?
        /// CLOCK_MONOTONIC nanoseconds when the current engine, a respawn, resumed; nil for the
        /// first engine. The respawn rule reads it (`restoreFromSegment`).
        var resumedAt: UInt64?

        enum CodingKeys: String, CodingKey {
            case paused, work, parameters, interactions
            case blowUps = "blow_ups", lastBlowUp = "last_blow_up", resumedAt = "resumed_at"
            case pauseAtStep = "pause_at_step", frameInterval = "frame_interval"
            case maxStepsPerSecond = "max_steps_per_second", maxFramesPerSecond = "max_frames_per_second"
        }
    }

    /// An interaction with its owner and lease.
    struct Active: Codable {
        var request: InteractionRequest
        var owner: String
        /// CLOCK_MONOTONIC nanoseconds after which it ends unless renewed.
        var deadline: UInt64
        /// The step its current parameters were applied at (the last `interaction.set`).
        var appliedStep: Int

        enum CodingKeys: String, CodingKey {
            case request, owner, deadline
            case appliedStep = "applied_step"
        }
    }

    /// A respawned engine that finds the previous engine was itself a respawn that resumed less
    /// than this many seconds ago (two abnormal ends in a row) drops every interaction.
    public static let crashLoopWindow = 10.0

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
    /// The engine's log (interactions that ended, state it could not save).
    public var logger = Logger(label: "quiver.engine")

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
    ///
    /// `resumedAtStep`: this engine is a respawn that continues from the snapshot of that step (the
    /// previous engine ended abnormally). The respawn rule (docs/operations.md, "Blow-ups") then
    /// drops the interactions that may have ended it, so a respawn never loops on them: every
    /// interaction whose last `interaction.set` was applied at or after that step (the engine never
    /// wrote a snapshot after stepping with it), and every interaction when the previous engine was
    /// itself a respawn that had resumed less than `crashLoopWindow` seconds before (it died again
    /// soon). Interactions applied before the snapshot's step are kept, with their leases. Dropped ones are logged and reported like a blow-up (`blow_ups`, `blow_up`).
    @discardableResult
    public func restoreFromSegment(resumedAtStep: Int? = nil) -> Bool {
        guard let bytes = try? segment?.blobs.read(.engine), let saved = try? JSONDecoder().decode(State.self, from: Data(bytes)) else { return false }
        state = saved
        for (name, value) in saved.parameters { try? dynamics.setParameter(name, to: value) }
        let now = SystemClock.monotonicNanoseconds
        let crashLoop = resumedAtStep != nil && saved.resumedAt.map { now &- $0 < UInt64(Self.crashLoopWindow * 1e9) } == true
        var kept: [Active] = []
        var dropped: [String] = []
        for a in saved.interactions {
            guard let forces = dynamics.interactiveForces, (try? a.request.validate(atomCount: dynamics.atomCount)) != nil else { continue }
            if let resumed = resumedAtStep, crashLoop || a.appliedStep >= resumed {
                let why = crashLoop ? "the previous engine was a respawn too and ended abnormally within \(Int(Self.crashLoopWindow)) s"
                                    : "set at step \(a.appliedStep), after the snapshot of step \(resumed) this engine resumed from"
                logger.warning("interaction '\(a.request.id)' of \(a.owner) dropped on respawn: \(why); it may be what ended the previous engine",
                               metadata: ["interaction.id": "\(a.request.id)", "interaction.owner": "\(a.owner)", "interaction.end": "dropped on respawn"])
                dropped.append("'\(a.request.id)' of \(a.owner)")
                continue
            }
            if (try? forces.set(a.request.interaction)) != nil { kept.append(a) }
        }
        state.interactions = kept
        dynamics.interactiveForces?.work = saved.work
        if let resumed = resumedAtStep {
            state.resumedAt = now
            if !dropped.isEmpty {
                state.blowUps += 1
                state.lastBlowUp = (crashLoop ? "the engine ended abnormally twice in a row; " : "the engine ended abnormally with interactions it had not stepped with up to a snapshot; ")
                    + "respawned from step \(resumed) without \(dropped.joined(separator: ", "))"
            }
            dirty = true
            persistIfNeeded()
        }
        return true
    }

    /// The dynamics blew up (`error`, `EngineError.isBlowUp`) and went back to the step
    /// `rolledBackTo` (nil: it could not): pauses, ends every interaction (they may be the
    /// cause), counts it and keeps what happened for `get` (`blow_ups`, `blow_up`), saves the
    /// control state at once (so no respawn brings the interactions back) and logs it. Returns
    /// the sentence clients read.
    @discardableResult
    public func blewUp(_ error: EngineError, rolledBackTo: Int?) -> String {
        let interactions = state.interactions.map { "'\($0.request.id)' of \($0.owner)" }
        endAll(reason: "the dynamics blew up")
        state.paused = true
        state.pauseAtStep = nil
        state.blowUps += 1
        var text = error.description
        text += rolledBackTo.map { "; rolled back to step \($0)" } ?? "; not rolled back (\(dynamics.name) cannot)"
        text += ", paused"
        text += interactions.isEmpty ? "" : ", ended interactions \(interactions.joined(separator: ", "))"
        state.lastBlowUp = text
        dirty = true
        persistIfNeeded()
        logger.error("the dynamics blew up: \(text)", metadata: ["blow_up.count": "\(state.blowUps)"])
        return text
    }

    /// Replaces the newest blow-up's sentence (`get blow_up`) with a fuller one.
    public func noteBlowUpText(_ text: String) {
        state.lastBlowUp = text
        dirty = true
        persistIfNeeded()
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

    /// The number of active interactions.
    public var activeInteractions: Int { state.interactions.count }

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
        do { try segment.blobs.write(.engine, Array(data)) } catch { logger.error("could not save the control state: \(error)") }
    }

    // MARK: commands

    /// Applies every command posted since the last call, in order, and writes each reply into its
    /// slot. Returns how many.
    @discardableResult
    public func processCommands() -> Int {
        guard let segment else { return 0 }
        var applied = 0
        // At most one ring's worth of sequence numbers per call: a posted counter another process
        // scribbled (2^62, say) costs the engine one short pass per step, never a hang.
        let last = min(segment.commands.posted, nextCommand &+ UInt64(segment.commands.slots) &- 1)
        while nextCommand <= last {
            let seq = nextCommand
            nextCommand += 1
            let reply: EngineReply
            do {
                // nil: the slot holds another command (lapped); nothing to answer.
                guard let payload = try segment.commands.take(seq) else { continue }
                let posted = try PostedCommand.decode(payload)
                reply = apply(posted.command, client: posted.client)
            } catch let failure as ReadFailure {
                // A slot whose length another process scribbled is still finished, so the ring
                // does not stay full at that slot for the rest of the run.
                reply = .refused("the engine could not read the command's slot (\(failure))", step: dynamics.step)
            } catch {
                reply = .refused("the engine could not read the command: \(error)", step: dynamics.step)
            }
            let (sent, bytes) = Self.fitting(reply, capacity: segment.commands.replyCapacity(for: seq))
            segment.commands.finish(seq, status: sent.refusal == nil ? 0 : 1, appliedStep: UInt64(max(0, sent.appliedStep)), reply: bytes)
            applied += 1
        }
        if applied > 0 {
            persistIfNeeded()
            if let doneFD { var one: UInt64 = 1; _ = write(doneFD, &one, 8) }
        }
        return applied
    }

    /// The next sequence number the engine looks at in the command ring.
    public var nextSequence: UInt64 { nextCommand }

    /// `reply` encoded for the ring slot (`capacity`: what the slot holds, `CommandRing.replyCapacity(for:)`);
    /// one that does not fit is replaced by a refusal that says so, never cut into unreadable JSON.
    /// With the default layout `interaction.list` fits at its maximum (`InteractionListTests`).
    static func fitting(_ reply: EngineReply, capacity: Int = CommandRing.replyCapacity) -> (reply: EngineReply, bytes: [UInt8]) {
        let bytes = (try? reply.encoded()) ?? []
        guard bytes.count > capacity else { return (reply, bytes) }
        let refusal = EngineReply.refused("the engine's reply (\(bytes.count) bytes) does not fit the command ring's "
                                          + "\(capacity)-byte reply area", step: reply.appliedStep)
        return (refusal, (try? refusal.encoded()) ?? [])
    }

    /// Applies one command now (between steps) on behalf of `client` and says when it took effect
    /// and what it did, or why the engine refused it (nothing changed then).
    public func apply(_ command: EngineCommand, client: String) -> EngineReply {
        let step = dynamics.step
        do {
            return .applied(try perform(command, client: client), step: step)
        } catch let error as EngineError {
            return .refused(error.description, step: dynamics.step)
        } catch {
            return .refused("\(error)", step: dynamics.step)
        }
    }

    /// Does what `command` says; throws `EngineError` when the engine refuses it.
    func perform(_ command: EngineCommand, client: String) throws -> EngineResult {
        let step = dynamics.step
        switch command {
        case .play:
            if state.paused || state.pauseAtStep != nil { dirty = true }
            state.paused = false
            state.pauseAtStep = nil
            return .paused(false)
        case .pause:
            if !state.paused || state.pauseAtStep != nil { dirty = true }
            state.paused = true
            state.pauseAtStep = nil
            return .paused(true)
        case .step(let n):
            guard EngineCommand.stepCountRange.contains(Double(n)) else {
                throw EngineError.invalidParameter("step count must be in \(EngineCommand.stepCountRange.text), got \(n)")
            }
            state.paused = false
            state.pauseAtStep = step + n
            dirty = true
            return .stepping(untilStep: step + n)
        case .reset:
            guard let initial else { throw EngineError.invalidParameter("\(dynamics.name) cannot be reset (it cannot save its state)") }
            var s = initial
            s.step = step
            s.time = dynamics.time
            try dynamics.restoreState(s)
            positionsChanged = true
            for a in state.interactions { _ = dynamics.interactiveForces?.remove(id: a.request.id) }
            state.interactions = []
            dirty = true
            return .reset
        case .get(let names):
            return .parameters(try parameters(names))
        case .set(let values):
            guard !values.isEmpty else { throw EngineError.invalidParameter("set needs at least one value") }
            try set(values)
            dirty = true
            return .parameters(try parameters(values.keys.sorted()))
        case .interactionSet(let request):
            guard let forces = dynamics.interactiveForces else {
                throw EngineError.invalidParameter("\(dynamics.name) takes no interactive forces")
            }
            try request.validate(atomCount: dynamics.atomCount)
            let deadline = SystemClock.monotonicNanoseconds + UInt64(request.lease * 1e9)
            if let k = state.interactions.firstIndex(where: { $0.request.id == request.id }) {
                guard state.interactions[k].owner == client else {
                    throw EngineError.invalidParameter("interaction '\(request.id)' belongs to another client (\(state.interactions[k].owner))")
                }
                try forces.set(request.interaction)
                state.interactions[k].request = request
                state.interactions[k].deadline = deadline
                state.interactions[k].appliedStep = step
            } else {
                guard state.interactions.count < Self.maxInteractions else {
                    throw EngineError.invalidParameter("\(Self.maxInteractions) interactions are active already")
                }
                try forces.set(request.interaction)
                state.interactions.append(Active(request: request, owner: client, deadline: deadline, appliedStep: step))
            }
            dirty = true
            return .interaction(id: request.id, active: state.interactions.count)
        case .interactionRemove(let id):
            guard let k = state.interactions.firstIndex(where: { $0.request.id == id }) else {
                throw EngineError.invalidParameter("no interaction '\(id)'")
            }
            guard state.interactions[k].owner == client else {
                throw EngineError.invalidParameter("interaction '\(id)' belongs to another client (\(state.interactions[k].owner))")
            }
            end(at: k, reason: "removed")
            return .interaction(id: id, active: state.interactions.count)
        case .interactionList:
            let now = SystemClock.monotonicNanoseconds
            let entries = state.interactions.map { a in
                let i = a.request.interaction
                return InteractionListing.Entry(id: i.id, kind: i.kind, owner: a.owner, particles: i.particles.count, position: i.position,
                                                scale: i.scale, expiresIn: Double(a.deadline > now ? a.deadline - now : 0) / 1e9)
            }
            return .interactions(InteractionListing(interactions: entries, userEnergy: dynamics.interactiveForces?.energy ?? 0,
                                                    userWork: dynamics.interactiveForces?.work ?? 0))
        case .renew:
            let now = SystemClock.monotonicNanoseconds
            var renewed = 0
            for k in state.interactions.indices where state.interactions[k].owner == client {
                state.interactions[k].deadline = now + UInt64(state.interactions[k].request.lease * 1e9)
                renewed += 1
            }
            if renewed > 0 { dirty = true }
            return .renewed(renewed)
        case .clientLeft:
            var ended = 0
            while let k = state.interactions.firstIndex(where: { $0.owner == client }) {
                end(at: k, reason: "its client left")
                ended += 1
            }
            return .ended(ended)
        }
    }

    /// The run parameters asked for (all the run has when `names` is nil). `temperature` and
    /// `friction` asked for by name on a run without a thermostat are `.unavailable`.
    func parameters(_ names: [Parameter]?) throws -> [Parameter: ParameterValue] {
        let own = dynamics.parameters()
        func value(_ p: Parameter) -> ParameterValue? {
            switch p {
            case .frameInterval: return .number(Double(state.frameInterval))
            case .maxStepsPerSecond: return .number(state.maxStepsPerSecond)
            case .maxFramesPerSecond: return .number(state.maxFramesPerSecond)
            case .step: return .number(Double(dynamics.step))
            case .time: return .number(dynamics.time)
            case .paused: return .bool(state.paused)
            case .atoms: return .number(Double(dynamics.atomCount))
            case .blowUps: return .number(Double(state.blowUps))
            case .blowUp: return state.lastBlowUp.map(ParameterValue.text) ?? .unavailable
            case .temperature, .friction, .timestep: return own[p.rawValue].map(ParameterValue.number)
            }
        }
        var out: [Parameter: ParameterValue] = [:]
        guard let names else {
            for p in Parameter.allCases { out[p] = value(p) }
            return out
        }
        for p in names {
            if let v = value(p) {
                out[p] = v
            } else if p.needsThermostat {
                out[p] = .unavailable // the dynamics has no thermostat
            } else {
                throw EngineError.invalidParameter("no parameter '\(p.rawValue)'")
            }
        }
        return out
    }

    /// Parameters the engine loop keeps itself; the others belong to the dynamics.
    static let loopParameters: Set<Parameter> = [.frameInterval, .maxStepsPerSecond, .maxFramesPerSecond]

    /// Applies every value or none. Ranges are `Parameter.range` (QuiverModel): the control worker
    /// checked them already; the engine checks again and never trusts the ring.
    func set(_ values: [Parameter: Double]) throws {
        let ordered = values.sorted { $0.key.rawValue < $1.key.rawValue }
        for (p, v) in ordered {
            guard let range = p.range else { throw EngineError.invalidParameter("no settable parameter '\(p.rawValue)'") }
            guard range.contains(v), !p.isInteger || v == v.rounded() else {
                throw EngineError.invalidParameter("\(p.rawValue) must be \(p.isInteger ? "an integer " : "")in \(range.text), got \(v)")
            }
            if !Self.loopParameters.contains(p) && dynamics.parameters()[p.rawValue] == nil {
                if p.needsThermostat {
                    throw EngineError.invalidParameter("\(p.rawValue) needs a thermostat; \(dynamics.name) has none (velocity Verlet runs NVE)")
                }
                throw EngineError.invalidParameter("\(dynamics.name) has no parameter '\(p.rawValue)'")
            }
        }
        let before = dynamics.parameters()
        do {
            for (p, v) in ordered where !Self.loopParameters.contains(p) {
                try dynamics.setParameter(p.rawValue, to: v)
                state.parameters[p.rawValue] = v
            }
        } catch {
            for (name, v) in before { try? dynamics.setParameter(name, to: v) }
            throw error
        }
        if let v = values[.frameInterval] { state.frameInterval = Int(v) }
        if let v = values[.maxStepsPerSecond] { state.maxStepsPerSecond = v }
        if let v = values[.maxFramesPerSecond] { state.maxFramesPerSecond = v }
    }

    /// Ends the interaction at `k`; draws new velocities for its atoms when it asked for that.
    private func end(at k: Int, reason: String) {
        let a = state.interactions.remove(at: k)
        let i = a.request.interaction
        _ = dynamics.interactiveForces?.remove(id: i.id)
        if i.resetVelocities {
            let t = dynamics.parameters()["temperature"] ?? ((try? dynamics.energies().temperature) ?? 0)
            if t > 0 {
                do { try dynamics.resetVelocities(of: i.particles, temperature: t) } catch {
                    logger.warning("could not reset the velocities of interaction '\(i.id)': \(error)", metadata: ["interaction.id": "\(i.id)"])
                }
            }
        }
        dirty = true
        if reason != "removed" {
            logger.info("interaction '\(i.id)' of \(a.owner) ended: \(reason)",
                        metadata: ["interaction.id": "\(i.id)", "interaction.owner": "\(a.owner)", "interaction.end": "\(reason)"])
        }
    }

    /// Ends the interactions whose lease ran out. Returns how many.
    @discardableResult
    public func expireLeases() -> Int {
        guard !state.interactions.isEmpty else { return 0 }
        let now = SystemClock.monotonicNanoseconds
        var ended = 0
        while let k = state.interactions.firstIndex(where: { $0.deadline <= now }) {
            end(at: k, reason: "its lease ran out")
            ended += 1
        }
        if ended > 0 { persistIfNeeded() }
        return ended
    }

    /// Called after every step: pauses when a `step N` target is reached. Returns true then.
    public func afterStep() -> Bool {
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
}
