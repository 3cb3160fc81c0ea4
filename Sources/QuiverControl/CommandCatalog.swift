/// The JSON type an argument takes.
public enum ArgumentType: String, Sendable, CaseIterable {
    case integer
    case number
    case boolean
    case string
    /// An array of strings.
    case strings = "[string]"
    /// An array of integers.
    case integers = "[integer]"
    /// Three numbers: x, y, z.
    case vector3 = "[number, number, number]"
    /// An object of any JSON values.
    case object
    /// An object of numbers: `{name: number}`.
    case numbers = "{string: number}"
}

/// One argument of a command.
public struct ArgumentSpec: Sendable, Equatable {
    public var name: String
    public var type: ArgumentType
    public var required: Bool
    /// The value used when the argument is absent (or null); nil: none.
    public var defaultValue: JSONValue?
    /// Allowed numbers (for integer and number arguments, and each element of integer arrays).
    public var range: ArgumentRange?
    /// Allowed strings, for string arguments with a fixed set of values.
    public var choices: [String]?
    public var summary: String

    public init(_ name: String, _ type: ArgumentType, required: Bool = false, default defaultValue: JSONValue? = nil,
                range: ArgumentRange? = nil, choices: [String]? = nil, summary: String) {
        self.name = name
        self.type = type
        self.required = required
        self.defaultValue = defaultValue
        self.range = range
        self.choices = choices
        self.summary = summary
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = ["name": .string(name), "type": .string(type.rawValue), "required": .bool(required), "summary": .string(summary)]
        if let defaultValue { o["default"] = defaultValue }
        if let range {
            if let m = range.minimum { o["minimum"] = .number(m); o["exclusive_minimum"] = .bool(range.exclusiveMinimum) }
            if let m = range.maximum { o["maximum"] = .number(m); o["exclusive_maximum"] = .bool(range.exclusiveMaximum) }
        }
        if let choices { o["choices"] = .array(choices.map { .string($0) }) }
        return .object(o)
    }
}

/// One command: its name, what it does and its arguments.
public struct CommandSpec: Sendable, Equatable {
    public var name: String
    public var summary: String
    public var arguments: [ArgumentSpec]

    public init(_ name: String, _ summary: String, _ arguments: [ArgumentSpec] = []) {
        self.name = name
        self.summary = summary
        self.arguments = arguments
    }

    public func argument(_ name: String) -> ArgumentSpec? { arguments.first { $0.name == name } }

    public var json: JSONValue {
        ["name": .string(name), "summary": .string(summary), "arguments": .array(arguments.map(\.json))]
    }
}

// `Parameter` (names, ranges, units) is in QuiverModel: the engine checks `set` against the same
// ranges. What the catalogue adds is its JSON type and its entry in `list`.
extension Parameter {
    /// The JSON type of its value.
    public var type: ArgumentType {
        if isBoolean { return .boolean }
        if isText { return .string }
        return isInteger ? .integer : .number
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = ["name": .string(rawValue), "type": .string(type.rawValue), "unit": .string(unit),
                                      "writable": .bool(isWritable), "summary": .string(summary)]
        if let range {
            if let m = range.minimum { o["minimum"] = .number(m); o["exclusive_minimum"] = .bool(range.exclusiveMinimum) }
            if let m = range.maximum { o["maximum"] = .number(m); o["exclusive_maximum"] = .bool(range.exclusiveMaximum) }
        }
        return .object(o)
    }
}

/// A command parsed and validated: every argument present (defaults filled in), typed, in range.
///
/// The commands the engine applies are one `EngineCommand` from here to the engine; the control
/// worker answers the others itself.
public enum ParsedCommand: Sendable, Equatable {
    /// Posted to the engine through the command ring, as it is.
    case engine(EngineCommand)
    case list
    /// The client leaves (the control worker ends its session, and posts `EngineCommand.clientLeft`).
    case bye
    /// nil: every key.
    case stateGet(keys: [String]?)
    case stateUpdate(set: [String: JSONValue], persist: Bool)
    case stateLock(keys: [String], seconds: Double)
    case stateUnlock(keys: [String])
}

/// The command catalogue: what `list` returns, and strict parsing of requests into `ParsedCommand`.
///
/// Ranges and defaults the engine also checks are constants of QuiverModel (`EngineCommand`,
/// `InteractionRequest`, `Interaction`, `Parameter`); the catalogue lists them, it does not own them.
public enum CommandCatalog {
    /// Every command, in the order `list` gives them.
    public static let commands: [CommandSpec] = [
        CommandSpec("play", "run the dynamics"),
        CommandSpec("pause", "pause the dynamics (interactions stay, frames stop changing)"),
        CommandSpec("step", "advance a paused simulation by some steps, then pause", [
            ArgumentSpec("count", .integer, default: .number(Double(EngineCommand.defaultStepCount)), range: EngineCommand.stepCountRange,
                         summary: "steps to take"),
        ]),
        CommandSpec("reset", "restore the initial positions and velocities and end every interaction; the step counter and time keep counting up"),
        CommandSpec("get", "read simulation parameters", [
            ArgumentSpec("names", .strings, choices: Parameter.allCases.map(\.rawValue), summary: "parameters to read (default: all)"),
        ]),
        CommandSpec("set", "change simulation parameters, all or none", [
            ArgumentSpec("values", .numbers, required: true, choices: Parameter.allCases.filter(\.isWritable).map(\.rawValue),
                         summary: "parameter name -> new value (see parameters for ranges)"),
        ]),
        CommandSpec("interaction.set", "start or update (same id) an interactive force", [
            ArgumentSpec("id", .string, required: true, summary: "chosen by the client, 1...\(Interaction.maxIDLength) bytes; unique among its interactions"),
            ArgumentSpec("type", .string, required: true, choices: Interaction.Kind.allCases.map(\.rawValue), summary: "force profile"),
            ArgumentSpec("position", .vector3, required: true, summary: "the point pulled toward, nm"),
            ArgumentSpec("particles", .integers, required: true, range: ArgumentRange(minimum: 0),
                         summary: "atom indices (0-based, unique, 1...\(Interaction.maxParticles))"),
            ArgumentSpec("scale", .number, default: 1, range: Interaction.scaleRange, summary: "strength: kJ/mol (gaussian), kJ/mol/nm^2 (spring), kJ/mol/nm (constant)"),
            ArgumentSpec("mass_weighted", .boolean, default: true, summary: "split the force in proportion to mass (else equally)"),
            ArgumentSpec("max_force", .number, default: .number(Interaction.defaultMaxForce), range: Interaction.maxForceRange,
                         summary: "clip each force component on each particle to this, kJ/mol/nm"),
            ArgumentSpec("reset_velocities", .boolean, default: false, summary: "when it ends, draw new velocities for its particles at the thermostat temperature"),
            ArgumentSpec("lease", .number, default: .number(InteractionRequest.defaultLease), range: InteractionRequest.leaseRange, summary: "seconds the interaction lasts unless set again or renewed"),
        ]),
        CommandSpec("interaction.remove", "end one of the client's interactions", [
            ArgumentSpec("id", .string, required: true, summary: "the interaction's id"),
        ]),
        CommandSpec("interaction.list", "the active interactions of every client"),
        CommandSpec("state.get", "read the shared state (a snapshot: version, values, locks)", [
            ArgumentSpec("keys", .strings, summary: "keys to read (default: all)"),
        ]),
        CommandSpec("state.update", "set keys (null deletes), all or none; fails if another client holds a lock on any", [
            ArgumentSpec("set", .object, required: true, summary: "key -> JSON value (null: delete); at least one key"),
            ArgumentSpec("persist", .boolean, default: false, summary: "keep these keys after the client leaves"),
        ]),
        CommandSpec("state.lock", "lock keys for this client, all or none (again to extend)", [
            ArgumentSpec("keys", .strings, required: true, summary: "keys to lock (present or not); at least one"),
            ArgumentSpec("seconds", .number, required: true, range: .leftOpen(0, 3600), summary: "how long the lock holds"),
        ]),
        CommandSpec("state.unlock", "release this client's locks", [
            ArgumentSpec("keys", .strings, required: true, summary: "keys to unlock; at least one"),
        ]),
        CommandSpec("list", "this catalogue: commands, arguments, parameters"),
        CommandSpec("renew", "keep this client's session and interactions alive"),
        CommandSpec("bye", "leave: end this client's interactions, locks and non-persistent state"),
    ]

    private static let byName: [String: CommandSpec] = Dictionary(uniqueKeysWithValues: commands.map { ($0.name, $0) })

    /// The spec of `name`, or nil.
    public static func spec(_ name: String) -> CommandSpec? { byName[name] }

    /// What `list` returns: `{"commands": [...], "parameters": [...]}`.
    public static var json: JSONValue {
        ["commands": .array(commands.map(\.json)), "parameters": .array(Parameter.allCases.map(\.json))]
    }

    /// Parses a verified request.
    public static func parse(_ request: CommandRequest, atomCount: Int) throws(ControlError) -> ParsedCommand {
        do {
            return try parse(command: request.command, args: request.args, atomCount: atomCount)
        } catch {
            var e = error
            e.requestID = request.id
            throw e
        }
    }

    /// Parses a command and its arguments strictly.
    /// - Throws: `unknown_command` (listing the known ones); `invalid_argument` naming the
    ///   argument for an unknown name, a missing required one, a wrong type, a value out of range
    ///   or not finite, or an interaction `Interaction.validate(atomCount:)` rejects.
    public static func parse(command: String, args: [String: JSONValue], atomCount: Int) throws(ControlError) -> ParsedCommand {
        guard let spec = byName[command] else {
            throw ControlError(.unknownCommand, "unknown command '\(command.prefix(64))'; commands: \(commands.map(\.name).joined(separator: ", "))")
        }
        let a = try Arguments(spec: spec, args: args)
        switch command {
        case "play": return .engine(.play)
        case "pause": return .engine(.pause)
        case "reset": return .engine(.reset)
        case "list": return .list
        case "renew": return .engine(.renew)
        case "bye": return .bye
        case "interaction.list": return .engine(.interactionList)
        case "step":
            return .engine(.step(count: try a.integer("count")!))
        case "get":
            guard let names = try a.strings("names") else { return .engine(.get(names: nil)) }
            guard !names.isEmpty else { throw a.error("names", "must not be empty (leave it out for every parameter)") }
            var parameters: [Parameter] = []
            for name in names {
                guard let p = Parameter(rawValue: name) else {
                    throw a.error("names", "has unknown parameter '\(name.prefix(64))'; parameters: \(Parameter.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                if !parameters.contains(p) { parameters.append(p) }
            }
            return .engine(.get(names: parameters))
        case "set":
            let values = try a.object("values")!
            guard !values.isEmpty else { throw a.error("values", "must set at least one parameter") }
            var result: [Parameter: Double] = [:]
            for name in values.keys.sorted() {
                guard let p = Parameter(rawValue: name) else {
                    throw a.error("values", "has unknown parameter '\(name.prefix(64))'; writable: \(Parameter.allCases.filter(\.isWritable).map(\.rawValue).joined(separator: ", "))")
                }
                guard let range = p.range else { throw a.error("values", "'\(name)' is read-only") }
                guard case .number(let x) = values[name]! else {
                    throw a.error("values", "'\(name)' must be a number, got \(values[name]!.typeName)")
                }
                guard range.contains(x), !p.isInteger || JSONValue.number(x).integerValue != nil else {
                    throw a.error("values", "'\(name)' must be \(p.isInteger ? "an integer" : "a number") in \(range.text), got \(formatNumber(x))")
                }
                result[p] = x
            }
            return .engine(.set(values: result))
        case "interaction.set":
            let particles = try a.integers("particles")!
            let interaction = Interaction(
                id: try a.string("id")!,
                kind: Interaction.Kind(rawValue: try a.string("type")!)!,
                position: try a.vector3("position")!,
                particles: particles,
                scale: try a.number("scale")!,
                massWeighted: try a.bool("mass_weighted")!,
                maxForce: try a.number("max_force")!,
                resetVelocities: try a.bool("reset_velocities")!)
            do {
                try interaction.validate(atomCount: atomCount)
            } catch {
                if case .invalidParameter(let message) = error { throw .invalidArgument("interaction.set: \(message)") }
                throw .invalidArgument("interaction.set: \(error)")
            }
            return .engine(.interactionSet(InteractionRequest(interaction, lease: try a.number("lease")!)))
        case "interaction.remove":
            let id = try a.string("id")!
            guard Interaction.idLengthRange.contains(Double(id.utf8.count)) else {
                throw a.error("id", "must be 1...\(Interaction.maxIDLength) bytes, got \(id.utf8.count)")
            }
            return .engine(.interactionRemove(id: id))
        case "state.get":
            guard let keys = try a.strings("keys") else { return .stateGet(keys: nil) }
            try a.validateKeys("keys", keys)
            return .stateGet(keys: keys)
        case "state.update":
            let set = try a.object("set")!
            guard !set.isEmpty else { throw a.error("set", "must set at least one key") }
            try a.validateKeys("set", set.keys.sorted())
            return .stateUpdate(set: set, persist: try a.bool("persist")!)
        case "state.lock":
            let keys = try a.strings("keys")!
            guard !keys.isEmpty else { throw a.error("keys", "must name at least one key") }
            try a.validateKeys("keys", keys)
            return .stateLock(keys: keys, seconds: try a.number("seconds")!)
        case "state.unlock":
            let keys = try a.strings("keys")!
            guard !keys.isEmpty else { throw a.error("keys", "must name at least one key") }
            try a.validateKeys("keys", keys)
            return .stateUnlock(keys: keys)
        default:
            throw ControlError(.internal, "command '\(command)' is in the catalogue but has no parser")
        }
    }
}

/// The arguments of one request, checked against its spec: no unknown names, every required one
/// present. The typed accessors check type and range, and return the default when absent (nil
/// when there is none). JSON null counts as absent.
struct Arguments {
    let spec: CommandSpec
    let args: [String: JSONValue]

    init(spec: CommandSpec, args: [String: JSONValue]) throws(ControlError) {
        self.spec = spec
        self.args = args.filter { !$0.value.isNull }
        if let unknown = args.keys.sorted().first(where: { spec.argument($0) == nil }) {
            let known = spec.arguments.isEmpty ? "it takes none" : "arguments: " + spec.arguments.map(\.name).joined(separator: ", ")
            throw .invalidArgument("\(spec.name): unknown argument '\(unknown.prefix(64))'; \(known)")
        }
        if let missing = spec.arguments.first(where: { $0.required && self.args[$0.name] == nil }) {
            throw .invalidArgument("\(spec.name): missing required argument '\(missing.name)' (\(missing.type.rawValue))")
        }
    }

    func error(_ name: String, _ problem: String) -> ControlError {
        .invalidArgument("\(spec.name): argument '\(name)' \(problem)")
    }

    private func raw(_ name: String) -> (JSONValue, ArgumentSpec)? {
        let s = spec.argument(name)!
        guard let v = args[name] ?? s.defaultValue else { return nil }
        return (v, s)
    }

    private func typeError(_ s: ArgumentSpec, _ v: JSONValue) -> ControlError {
        error(s.name, "must be \(article(s.type)) \(s.type.rawValue)\(s.range.map { " in \($0.text)" } ?? ""), got \(describe(v))")
    }

    func integer(_ name: String) throws(ControlError) -> Int? {
        guard let (v, s) = raw(name) else { return nil }
        guard case .number(let x) = v else { throw typeError(s, v) }
        guard let n = v.integerValue, s.range?.contains(x) ?? true else { throw typeError(s, v) }
        return n
    }

    func number(_ name: String) throws(ControlError) -> Double? {
        guard let (v, s) = raw(name) else { return nil }
        guard case .number(let x) = v, x.isFinite, s.range?.contains(x) ?? true else { throw typeError(s, v) }
        return x
    }

    func bool(_ name: String) throws(ControlError) -> Bool? {
        guard let (v, s) = raw(name) else { return nil }
        guard case .bool(let b) = v else { throw typeError(s, v) }
        return b
    }

    func string(_ name: String) throws(ControlError) -> String? {
        guard let (v, s) = raw(name) else { return nil }
        guard case .string(let text) = v else { throw typeError(s, v) }
        if let choices = s.choices, !choices.contains(text) {
            throw error(name, "must be one of \(choices.joined(separator: ", ")), got '\(text.prefix(64))'")
        }
        return text
    }

    func strings(_ name: String) throws(ControlError) -> [String]? {
        guard let (v, s) = raw(name) else { return nil }
        guard case .array(let items) = v else { throw typeError(s, v) }
        var out: [String] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case .string(let text) = item else { throw error(name, "element \(i) must be a string, got \(describe(item))") }
            out.append(text)
        }
        return out
    }

    func integers(_ name: String) throws(ControlError) -> [Int]? {
        guard let (v, s) = raw(name) else { return nil }
        guard case .array(let items) = v else { throw typeError(s, v) }
        guard items.count <= Interaction.maxParticles else {
            throw error(name, "has \(items.count) elements, at most \(Interaction.maxParticles)")
        }
        var out: [Int] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case .number(let x) = item, let n = item.integerValue, s.range?.contains(x) ?? true else {
                throw error(name, "element \(i) must be an integer\(s.range.map { " in \($0.text)" } ?? ""), got \(describe(item))")
            }
            out.append(n)
        }
        return out
    }

    func vector3(_ name: String) throws(ControlError) -> SIMD3<Double>? {
        guard let (v, s) = raw(name) else { return nil }
        guard case .array(let items) = v, items.count == 3 else { throw typeError(s, v) }
        var xyz: [Double] = []
        for (i, item) in items.enumerated() {
            guard case .number(let x) = item, x.isFinite else { throw error(name, "element \(i) must be a finite number, got \(describe(item))") }
            xyz.append(x)
        }
        return SIMD3(xyz[0], xyz[1], xyz[2])
    }

    func object(_ name: String) throws(ControlError) -> [String: JSONValue]? {
        guard let (v, s) = raw(name) else { return nil }
        guard case .object(let o) = v else { throw typeError(s, v) }
        if s.type == .object {
            guard v.isFinite else { throw error(name, "holds a non-finite number") }
        }
        return o
    }

    func validateKeys(_ name: String, _ keys: [String]) throws(ControlError) {
        for key in keys {
            do {
                try SharedStateStore.validate(key: key)
            } catch {
                throw self.error(name, "has an invalid key: \(error.message)")
            }
        }
    }
}

/// A number as people write it: integers without a fraction.
func formatNumber(_ x: Double) -> String { ArgumentRange.text(of: x) }

private func article(_ type: ArgumentType) -> String {
    switch type {
    case .integer, .object: return "an"
    case .integers, .strings, .vector3, .numbers: return "a"
    default: return "a"
    }
}

/// A short description of a value for error messages: its type, and the value when short.
private func describe(_ v: JSONValue) -> String {
    switch v {
    case .number(let x): return formatNumber(x)
    case .bool(let b): return "\(b)"
    case .string(let s): return s.utf8.count <= 32 ? "\"\(s)\"" : "a string"
    case .null: return "null"
    case .array(let a): return "an array of \(a.count)"
    case .object: return "an object"
    }
}
