import QuiverControl
import QuiverModel
import Testing

@Suite("Command catalogue")
struct CatalogTests {
    let atoms = 100

    func parse(_ command: String, _ args: [String: JSONValue] = [:]) throws(ControlError) -> ParsedCommand {
        try CommandCatalog.parse(command: command, args: args, atomCount: atoms)
    }

    /// The error parsing gives (nil when it parses).
    func failure(_ command: String, _ args: [String: JSONValue] = [:]) -> ControlError? {
        controlError { _ = try parse(command, args) }
    }

    func invalid(_ command: String, _ args: [String: JSONValue], _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(failure(command, args) == ControlError(.invalidArgument, message), sourceLocation: sourceLocation)
    }

    @Test("commands without arguments; unknown arguments are rejected")
    func simple() throws {
        #expect(try parse("play") == .engine(.play))
        #expect(try parse("pause") == .engine(.pause))
        #expect(try parse("reset") == .engine(.reset))
        #expect(try parse("list") == .list)
        #expect(try parse("renew") == .engine(.renew))
        #expect(try parse("bye") == .bye)
        #expect(try parse("interaction.list") == .engine(.interactionList))
        invalid("play", ["speed": 2], "play: unknown argument 'speed'; it takes none")
    }

    @Test("unknown command lists the known ones")
    func unknown() {
        let e = failure("jump")
        #expect(e?.code == .unknownCommand)
        #expect(e?.message == "unknown command 'jump'; commands: play, pause, step, reset, get, set, interaction.set, interaction.remove, interaction.list, state.get, state.update, state.lock, state.unlock, list, renew, bye")
        // The request id is attached when parsing a request.
        let r = request("jump", id: "q7")
        #expect(controlError { _ = try CommandCatalog.parse(r, atomCount: 1) }?.requestID == "q7")
    }

    @Test("step: default 1, integer in [1, 1e9]")
    func step() throws {
        #expect(try parse("step") == .engine(.step(count: 1)))
        #expect(try parse("step", ["count": 1_000_000_000]) == .engine(.step(count: 1_000_000_000)))
        #expect(try parse("step", ["count": nil]) == .engine(.step(count: 1)))   // null counts as absent
        invalid("step", ["count": 0], "step: argument 'count' must be an integer in [1, 1000000000], got 0")
        invalid("step", ["count": 1_000_000_001], "step: argument 'count' must be an integer in [1, 1000000000], got 1000000001")
        invalid("step", ["count": 1.5], "step: argument 'count' must be an integer in [1, 1000000000], got 1.5")
        invalid("step", ["count": "5"], "step: argument 'count' must be an integer in [1, 1000000000], got \"5\"")
        invalid("step", ["count": true], "step: argument 'count' must be an integer in [1, 1000000000], got true")
        invalid("step", ["count": .number(.infinity)], "step: argument 'count' must be an integer in [1, 1000000000], got inf")
        invalid("step", ["count": .number(.nan)], "step: argument 'count' must be an integer in [1, 1000000000], got nan")
        invalid("step", ["cnt": 5], "step: unknown argument 'cnt'; arguments: count")
    }

    @Test("get: all, some (in order, no repeats), unknown or empty names")
    func get() throws {
        #expect(try parse("get") == .engine(.get(names: nil)))
        #expect(try parse("get", ["names": ["time", "temperature", "time", "paused"]]) == .engine(.get(names: [.time, .temperature, .paused])))
        invalid("get", ["names": ["temprature"]],
                "get: argument 'names' has unknown parameter 'temprature'; parameters: temperature, friction, timestep, frame_interval, max_steps_per_second, max_frames_per_second, step, time, paused, atoms, blow_ups, blow_up")
        invalid("get", ["names": []], "get: argument 'names' must not be empty (leave it out for every parameter)")
        invalid("get", ["names": "time"], "get: argument 'names' must be a [string], got \"time\"")
        invalid("get", ["names": ["time", 3]], "get: argument 'names' element 1 must be a string, got 3")
    }

    @Test("set: every writable parameter at its bounds; read-only, unknown, out of range, wrong type")
    func set() throws {
        let ok: [String: JSONValue] = ["temperature": 1e5, "friction": 0, "timestep": 0.1, "frame_interval": 1_000_000,
                                       "max_steps_per_second": 0, "max_frames_per_second": 1e4]
        #expect(try parse("set", ["values": .object(ok)]) == .engine(.set(values: [
            .temperature: 1e5, .friction: 0, .timestep: 0.1, .frameInterval: 1_000_000, .maxStepsPerSecond: 0, .maxFramesPerSecond: 1e4])))
        #expect(try parse("set", ["values": ["friction": 1e4, "max_steps_per_second": 1e9, "frame_interval": 1]]) ==
                .engine(.set(values: [.friction: 1e4, .maxStepsPerSecond: 1e9, .frameInterval: 1])))
        invalid("set", [:], "set: missing required argument 'values' ({string: number})")
        invalid("set", ["values": [:]], "set: argument 'values' must set at least one parameter")
        invalid("set", ["values": 300], "set: argument 'values' must be a {string: number}, got 300")
        invalid("set", ["values": ["temperature": 0]], "set: argument 'values' 'temperature' must be a number in (0, 100000], got 0")
        invalid("set", ["values": ["temperature": 100_001]], "set: argument 'values' 'temperature' must be a number in (0, 100000], got 100001")
        invalid("set", ["values": ["friction": -1]], "set: argument 'values' 'friction' must be a number in [0, 10000], got -1")
        invalid("set", ["values": ["timestep": 0]], "set: argument 'values' 'timestep' must be a number in (0, 0.1], got 0")
        invalid("set", ["values": ["timestep": 0.2]], "set: argument 'values' 'timestep' must be a number in (0, 0.1], got 0.2")
        invalid("set", ["values": ["frame_interval": 2.5]], "set: argument 'values' 'frame_interval' must be an integer in [1, 1000000], got 2.5")
        invalid("set", ["values": ["frame_interval": 0]], "set: argument 'values' 'frame_interval' must be an integer in [1, 1000000], got 0")
        invalid("set", ["values": ["max_steps_per_second": 2e9]], "set: argument 'values' 'max_steps_per_second' must be a number in [0, 1000000000], got 2000000000")
        invalid("set", ["values": ["max_frames_per_second": 10001]], "set: argument 'values' 'max_frames_per_second' must be a number in [0, 10000], got 10001")
        invalid("set", ["values": ["temperature": .number(.infinity)]], "set: argument 'values' 'temperature' must be a number in (0, 100000], got inf")
        invalid("set", ["values": ["temperature": "300"]], "set: argument 'values' 'temperature' must be a number, got string")
        invalid("set", ["values": ["step": 5]], "set: argument 'values' 'step' is read-only")
        invalid("set", ["values": ["paused": true]], "set: argument 'values' 'paused' is read-only")
        invalid("set", ["values": ["pressure": 1]],
                "set: argument 'values' has unknown parameter 'pressure'; writable: temperature, friction, timestep, frame_interval, max_steps_per_second, max_frames_per_second")
        // All or none: one bad value rejects the lot.
        #expect(failure("set", ["values": ["temperature": 300, "timestep": 1]])?.code == .invalidArgument)
    }

    static let pull: [String: JSONValue] = ["id": "left-hand", "type": "spring", "position": [1, 2.5, -3], "particles": [0, 5, 99]]

    @Test("interaction.set: defaults, every option, and the Interaction it builds")
    func interactionSet() throws {
        let parsed = try parse("interaction.set", Self.pull)
        #expect(parsed == .engine(.interactionSet(InteractionRequest(
            Interaction(id: "left-hand", kind: .spring, position: SIMD3(1, 2.5, -3), particles: [0, 5, 99],
                        scale: 1, massWeighted: true, maxForce: 20_000, resetVelocities: false), lease: 3))))
        var all = Self.pull
        all["type"] = "gaussian"
        all["scale"] = 0
        all["mass_weighted"] = false
        all["max_force"] = 5
        all["reset_velocities"] = true
        all["lease"] = 600
        #expect(try parse("interaction.set", all) == .engine(.interactionSet(InteractionRequest(
            Interaction(id: "left-hand", kind: .gaussian, position: SIMD3(1, 2.5, -3), particles: [0, 5, 99],
                        scale: 0, massWeighted: false, maxForce: 5, resetVelocities: true), lease: 600))))
        all["type"] = "constant"
        all["lease"] = 0.1
        if case .engine(.interactionSet(let request))? = try? parse("interaction.set", all) {
            #expect(request.interaction.kind == .constant)
            #expect(request.lease == 0.1)
        } else {
            Issue.record("constant interaction did not parse")
        }
    }

    @Test("interaction.set: every error path names the argument")
    func interactionSetErrors() {
        func with(_ changes: [String: JSONValue?]) -> [String: JSONValue] {
            var a = Self.pull
            for (k, v) in changes { a[k] = v }
            return a
        }
        invalid("interaction.set", with(["position": nil]), "interaction.set: missing required argument 'position' ([number, number, number])")
        invalid("interaction.set", with(["particles": nil]), "interaction.set: missing required argument 'particles' ([integer])")
        invalid("interaction.set", with(["id": nil]), "interaction.set: missing required argument 'id' (string)")
        invalid("interaction.set", with(["type": nil]), "interaction.set: missing required argument 'type' (string)")
        invalid("interaction.set", with(["force": 1]),
                "interaction.set: unknown argument 'force'; arguments: id, type, position, particles, scale, mass_weighted, max_force, reset_velocities, lease")
        invalid("interaction.set", with(["type": "harmonic"]), "interaction.set: argument 'type' must be one of gaussian, spring, constant, got 'harmonic'")
        invalid("interaction.set", with(["type": 1]), "interaction.set: argument 'type' must be a string, got 1")
        invalid("interaction.set", with(["position": [1, 2]]), "interaction.set: argument 'position' must be a [number, number, number], got an array of 2")
        invalid("interaction.set", with(["position": [1, 2, "3"]]), "interaction.set: argument 'position' element 2 must be a finite number, got \"3\"")
        invalid("interaction.set", with(["position": [1, .number(.nan), 3]]), "interaction.set: argument 'position' element 1 must be a finite number, got nan")
        invalid("interaction.set", with(["position": [1, .number(-.infinity), 3]]), "interaction.set: argument 'position' element 1 must be a finite number, got -inf")
        invalid("interaction.set", with(["particles": [0, 1.5]]), "interaction.set: argument 'particles' element 1 must be an integer in [0, inf), got 1.5")
        invalid("interaction.set", with(["particles": [-1]]), "interaction.set: argument 'particles' element 0 must be an integer in [0, inf), got -1")
        invalid("interaction.set", with(["particles": [1e300]]), "interaction.set: argument 'particles' element 0 must be an integer in [0, inf), got 1e+300")
        invalid("interaction.set", with(["particles": 3]), "interaction.set: argument 'particles' must be a [integer] in [0, inf), got 3")
        invalid("interaction.set", with(["scale": -1]), "interaction.set: argument 'scale' must be a number in [0, inf), got -1")
        invalid("interaction.set", with(["scale": .number(.infinity)]), "interaction.set: argument 'scale' must be a number in [0, inf), got inf")
        invalid("interaction.set", with(["max_force": 0]), "interaction.set: argument 'max_force' must be a number in (0, inf), got 0")
        invalid("interaction.set", with(["mass_weighted": 1]), "interaction.set: argument 'mass_weighted' must be a boolean, got 1")
        invalid("interaction.set", with(["reset_velocities": "yes"]), "interaction.set: argument 'reset_velocities' must be a boolean, got \"yes\"")
        invalid("interaction.set", with(["lease": 0.05]), "interaction.set: argument 'lease' must be a number in [0.1, 600], got 0.05")
        invalid("interaction.set", with(["lease": 601]), "interaction.set: argument 'lease' must be a number in [0.1, 600], got 601")
        // Checks of Interaction.validate, mapped to invalid_argument.
        invalid("interaction.set", with(["particles": [0, 100]]), "interaction.set: interaction 'left-hand': particle index 100 is out of range 0..<100")
        invalid("interaction.set", with(["particles": [3, 3]]), "interaction.set: interaction 'left-hand': particle 3 is listed twice")
        invalid("interaction.set", with(["particles": []]), "interaction.set: interaction 'left-hand': no particles")
        invalid("interaction.set", with(["id": ""]), "interaction.set: interaction id must be 1...128 bytes, got 0")
        invalid("interaction.set", with(["id": .string(String(repeating: "i", count: 129))]), "interaction.set: interaction id must be 1...128 bytes, got 129")
        invalid("interaction.set", with(["particles": .array(Array(repeating: 0, count: Interaction.maxParticles + 1))]),
                "interaction.set: argument 'particles' has 100001 elements, at most 100000")
    }

    @Test("interaction.remove and interaction.list")
    func interactionRemove() throws {
        #expect(try parse("interaction.remove", ["id": "x"]) == .engine(.interactionRemove(id: "x")))
        invalid("interaction.remove", [:], "interaction.remove: missing required argument 'id' (string)")
        invalid("interaction.remove", ["id": ""], "interaction.remove: argument 'id' must be 1...128 bytes, got 0")
        invalid("interaction.remove", ["id": 7], "interaction.remove: argument 'id' must be a string, got 7")
        invalid("interaction.list", ["all": true], "interaction.list: unknown argument 'all'; it takes none")
    }

    @Test("state commands")
    func state() throws {
        #expect(try parse("state.get") == .stateGet(keys: nil))
        #expect(try parse("state.get", ["keys": ["a", "b"]]) == .stateGet(keys: ["a", "b"]))
        invalid("state.get", ["keys": [""]], "state.get: argument 'keys' has an invalid key: state key must be 1...256 bytes, got 0")
        #expect(try parse("state.update", ["set": ["a": 1, "b": nil]]) == .stateUpdate(set: ["a": 1, "b": nil], persist: false))
        #expect(try parse("state.update", ["set": ["a": [1, "x"]], "persist": true]) == .stateUpdate(set: ["a": [1, "x"]], persist: true))
        invalid("state.update", [:], "state.update: missing required argument 'set' (object)")
        invalid("state.update", ["set": [:]], "state.update: argument 'set' must set at least one key")
        invalid("state.update", ["set": [1]], "state.update: argument 'set' must be an object, got an array of 1")
        invalid("state.update", ["set": ["a": 1], "persist": "no"], "state.update: argument 'persist' must be a boolean, got \"no\"")
        invalid("state.update", ["set": ["a\u{7}": 1]], "state.update: argument 'set' has an invalid key: state key 'a\\u{7}' contains a control character")
        invalid("state.update", ["set": ["a": .number(.infinity)]], "state.update: argument 'set' holds a non-finite number")
        #expect(try parse("state.lock", ["keys": ["a"], "seconds": 3600]) == .stateLock(keys: ["a"], seconds: 3600))
        invalid("state.lock", ["keys": ["a"]], "state.lock: missing required argument 'seconds' (number)")
        invalid("state.lock", ["keys": [], "seconds": 1], "state.lock: argument 'keys' must name at least one key")
        invalid("state.lock", ["keys": ["a"], "seconds": 0], "state.lock: argument 'seconds' must be a number in (0, 3600], got 0")
        invalid("state.lock", ["keys": ["a"], "seconds": 3601], "state.lock: argument 'seconds' must be a number in (0, 3600], got 3601")
        invalid("state.lock", ["keys": "a", "seconds": 1], "state.lock: argument 'keys' must be a [string], got \"a\"")
        #expect(try parse("state.unlock", ["keys": ["a"]]) == .stateUnlock(keys: ["a"]))
        invalid("state.unlock", [:], "state.unlock: missing required argument 'keys' ([string])")
        invalid("state.unlock", ["keys": []], "state.unlock: argument 'keys' must name at least one key")
    }

    @Test("the catalogue as list returns it")
    func listing() throws {
        let json = CommandCatalog.json
        let commands = try #require(json["commands"]?.arrayValue)
        #expect(commands.count == 16)
        #expect(commands.compactMap { $0["name"]?.stringValue } == CommandCatalog.commands.map(\.name))
        let step = try #require(commands.first { $0["name"] == "step" })
        #expect(step["arguments"]?[0] == ["name": "count", "type": "integer", "required": false, "default": 1,
                                           "minimum": 1, "exclusive_minimum": false, "maximum": 1_000_000_000, "exclusive_maximum": false,
                                           "summary": "steps to take"])
        let parameters = try #require(json["parameters"]?.arrayValue)
        #expect(parameters.count == 12)
        #expect(parameters[0] == ["name": "temperature", "type": "number", "unit": "K", "writable": true, "summary": "thermostat temperature",
                                  "minimum": 0, "exclusive_minimum": true, "maximum": 100_000, "exclusive_maximum": false])
        #expect(parameters.last?["writable"] == false)
        #expect(parameters.last == ["name": "blow_up", "type": "string", "unit": "", "writable": false,
                                    "summary": "what happened at the last blow-up, null when none (read-only)"])
        // Every command of the catalogue parses with its required arguments given.
        for spec in CommandCatalog.commands where spec.arguments.allSatisfy({ !$0.required }) {
            #expect(throws: Never.self) { try parse(spec.name) }
        }
    }
}
