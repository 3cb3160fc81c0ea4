/// A simulation parameter that `get` reads and `set` changes (the read-only ones only `get`).
///
/// The raw value is the name clients use (docs/control.md, "Parameters"); `range` is the one range
/// both the control catalogue and the engine check a new value against.
public enum Parameter: String, Sendable, CaseIterable, Hashable, Comparable, Codable, CodingKeyRepresentable {
    case temperature
    case friction
    case timestep
    case frameInterval = "frame_interval"
    case maxStepsPerSecond = "max_steps_per_second"
    case maxFramesPerSecond = "max_frames_per_second"
    case step
    case time
    case paused
    case atoms
    /// How many times the dynamics blew up in this run (the engine rolled back and paused).
    case blowUps = "blow_ups"
    /// What happened at the last blow-up (a sentence), null when none.
    case blowUp = "blow_up"

    /// Catalogue order.
    public static func < (a: Parameter, b: Parameter) -> Bool {
        (allCases.firstIndex(of: a) ?? 0) < (allCases.firstIndex(of: b) ?? 0)
    }

    /// Whether `set` may change it.
    public var isWritable: Bool { range != nil }

    /// Allowed values for `set` (nil: read-only).
    public var range: ArgumentRange? {
        switch self {
        case .temperature: return .leftOpen(0, 1e5)
        case .friction: return .closed(0, 1e4)
        case .timestep: return .leftOpen(0, 0.1)
        case .frameInterval: return .closed(1, 1_000_000)
        case .maxStepsPerSecond: return .closed(0, 1e9)
        case .maxFramesPerSecond: return .closed(0, 1e4)
        case .step, .time, .paused, .atoms, .blowUps, .blowUp: return nil
        }
    }

    /// Whether the value is a whole number.
    public var isInteger: Bool { self == .frameInterval || self == .step || self == .atoms || self == .blowUps }

    /// Whether the value is true or false (`paused`), not a number.
    public var isBoolean: Bool { self == .paused }

    /// Whether the value is a string (`blow_up`), not a number.
    public var isText: Bool { self == .blowUp }

    /// Whether it needs a thermostat (a velocity-Verlet run has none: `get` reports it as
    /// unavailable and `set` is refused).
    public var needsThermostat: Bool { self == .temperature || self == .friction }

    public var unit: String {
        switch self {
        case .temperature: return "K"
        case .friction: return "1/ps"
        case .timestep, .time: return "ps"
        case .frameInterval: return "steps"
        case .maxStepsPerSecond: return "steps/s"
        case .maxFramesPerSecond: return "frames/s"
        case .step, .paused, .atoms, .blowUps, .blowUp: return ""
        }
    }

    public var summary: String {
        switch self {
        case .temperature: return "thermostat temperature"
        case .friction: return "Langevin friction coefficient (0: no thermostat coupling)"
        case .timestep: return "integration timestep"
        case .frameInterval: return "steps between published frames"
        case .maxStepsPerSecond: return "cap on the simulation speed (0: unlimited)"
        case .maxFramesPerSecond: return "cap on published frames per second (0: unlimited)"
        case .step: return "current step (read-only)"
        case .time: return "current simulation time (read-only)"
        case .paused: return "whether the dynamics is paused (read-only; use play/pause)"
        case .atoms: return "number of atoms (read-only)"
        case .blowUps: return "times the dynamics blew up in this run and was rolled back and paused (read-only)"
        case .blowUp: return "what happened at the last blow-up, null when none (read-only)"
        }
    }
}

/// The value of a parameter in a reply.
public enum ParameterValue: Sendable, Equatable, Codable {
    case number(Double)
    case bool(Bool)
    /// A sentence (`blow_up`).
    case text(String)
    /// The run does not have it (`temperature` and `friction` without a thermostat): JSON null.
    case unavailable
}
