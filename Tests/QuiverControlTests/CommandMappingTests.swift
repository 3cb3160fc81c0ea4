import QuiverControl
import QuiverModel
import Testing

/// Every catalogue command parses into one typed command (the engine's `EngineCommand` or one the
/// control worker answers itself), and every typed engine reply reads as docs/control.md says.
@Suite("Typed commands and replies")
struct CommandMappingTests {
    static let pull = Interaction(id: "p", kind: .gaussian, position: SIMD3(1, 2, 3), particles: [4, 5], scale: 2,
                                  massWeighted: false, maxForce: 10, resetVelocities: true)

    /// One request per catalogue command and what it must parse into.
    static let table: [(command: String, args: [String: JSONValue], parsed: ParsedCommand)] = [
        ("play", [:], .engine(.play)),
        ("pause", [:], .engine(.pause)),
        ("step", ["count": 42], .engine(.step(count: 42))),
        ("reset", [:], .engine(.reset)),
        ("get", ["names": ["atoms", "time"]], .engine(.get(names: [.atoms, .time]))),
        ("set", ["values": ["timestep": 0.002, "max_frames_per_second": 30]], .engine(.set(values: [.timestep: 0.002, .maxFramesPerSecond: 30]))),
        ("interaction.set", ["id": "p", "type": "gaussian", "position": [1, 2, 3], "particles": [4, 5], "scale": 2, "mass_weighted": false,
                             "max_force": 10, "reset_velocities": true, "lease": 7.5],
         .engine(.interactionSet(InteractionRequest(pull, lease: 7.5)))),
        ("interaction.remove", ["id": "p"], .engine(.interactionRemove(id: "p"))),
        ("interaction.list", [:], .engine(.interactionList)),
        ("state.get", ["keys": ["a"]], .stateGet(keys: ["a"])),
        ("state.update", ["set": ["a": 1], "persist": true], .stateUpdate(set: ["a": 1], persist: true)),
        ("state.lock", ["keys": ["a"], "seconds": 2], .stateLock(keys: ["a"], seconds: 2)),
        ("state.unlock", ["keys": ["a"]], .stateUnlock(keys: ["a"])),
        ("list", [:], .list),
        ("renew", [:], .engine(.renew)),
        ("bye", [:], .bye),
    ]

    @Test("every catalogue command maps to its typed command (and the table covers the whole catalogue)")
    func everyCommand() throws {
        #expect(Self.table.map(\.command) == CommandCatalog.commands.map(\.name),
                "a command was added to the catalogue: add its typed form here (docs/architecture.md, \"Adding a command\")")
        for row in Self.table {
            #expect(try CommandCatalog.parse(command: row.command, args: row.args, atomCount: 10) == row.parsed, "\(row.command)")
        }
    }

    @Test("defaults come from the shared constants the engine checks too")
    func defaults() throws {
        #expect(try CommandCatalog.parse(command: "step", args: [:], atomCount: 1) == .engine(.step(count: EngineCommand.defaultStepCount)))
        let minimal: [String: JSONValue] = ["id": "p", "type": "spring", "position": [0, 0, 0], "particles": [0]]
        guard case .engine(.interactionSet(let request)) = try CommandCatalog.parse(command: "interaction.set", args: minimal, atomCount: 1) else {
            Issue.record("interaction.set did not parse"); return
        }
        #expect(request.lease == InteractionRequest.defaultLease)
        #expect(request.interaction.maxForce == Interaction.defaultMaxForce)
        let set = try #require(CommandCatalog.spec("interaction.set"))
        #expect(set.argument("lease")?.range == InteractionRequest.leaseRange)
        #expect(set.argument("scale")?.range == Interaction.scaleRange)
        #expect(set.argument("max_force")?.range == Interaction.maxForceRange)
        #expect(CommandCatalog.spec("step")?.argument("count")?.range == EngineCommand.stepCountRange)
        // The lease's range is checked the same way on both sides.
        let tooLong = InteractionRequest(Interaction(id: "p", kind: .spring, position: .zero, particles: [0]), lease: 601)
        #expect(throws: EngineError.invalidParameter("interaction 'p': lease must be in [0.1, 600] s, got 601.0")) { try tooLong.validate(atomCount: 1) }
    }

    func body(_ reply: EngineReply, _ id: String = "7") -> String {
        String(decoding: reply.commandReply(requestID: id).body, as: UTF8.self)
    }

    @Test("typed engine replies read as docs/control.md says, with applied_step")
    func replies() {
        #expect(body(.applied(.paused(false), step: 12)) == #"{"id":"7","ok":true,"result":{"applied_step":12,"paused":false}}"#)
        #expect(body(.applied(.stepping(untilStep: 19), step: 12)) == #"{"id":"7","ok":true,"result":{"applied_step":12,"until_step":19}}"#)
        #expect(body(.applied(.reset, step: 3)) == #"{"id":"7","ok":true,"result":{"applied_step":3,"reset":true}}"#)
        #expect(body(.applied(.parameters([.temperature: .unavailable, .timestep: .number(0.002), .paused: .bool(true), .atoms: .number(500)]), step: 0)) ==
                #"{"id":"7","ok":true,"result":{"applied_step":0,"atoms":500,"paused":true,"temperature":null,"timestep":0.002}}"#)
        #expect(body(.applied(.interaction(id: "hand", active: 2), step: 5)) == #"{"id":"7","ok":true,"result":{"active":2,"applied_step":5,"id":"hand"}}"#)
        let listing = InteractionListing(interactions: [.init(id: "hand", kind: .spring, owner: "vr-left", particles: 3,
                                                              position: SIMD3(1.5, 2, 0.7), scale: 1, expiresIn: 2.5)],
                                         userEnergy: 0.25, userWork: -1)
        #expect(body(.applied(.interactions(listing), step: 8)) ==
                #"{"id":"7","ok":true,"result":{"applied_step":8,"interactions":[{"expires_in":2.5,"id":"hand","owner":"vr-left","particles":3,"position":[1.5,2,0.7],"scale":1,"type":"spring"}],"user_energy":0.25,"user_work":-1}}"#)
        #expect(body(.applied(.renewed(2), step: 1)) == #"{"id":"7","ok":true,"result":{"applied_step":1,"renewed":2}}"#)
        #expect(body(.applied(.ended(0), step: 1)) == #"{"id":"7","ok":true,"result":{"applied_step":1,"ended":0}}"#)
        #expect(body(.refused("invalid parameter: 64 interactions are active already", step: 4)) ==
                #"{"error":{"code":"refused","message":"invalid parameter: 64 interactions are active already"},"id":"7","ok":false}"#)
        let refused = EngineReply.refused("no", step: 1).commandReply(requestID: "q")
        #expect(refused.error == ControlError(.refused, "no", requestID: "q") && refused.id == "q")
    }
}
