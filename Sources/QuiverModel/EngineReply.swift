/// What the engine answers a command with: the step it was applied at, and what it did or why it
/// refused. The control worker turns it into the client's reply (docs/control.md, "Results").
public struct EngineReply: Sendable, Equatable, Codable {
    public enum Outcome: Sendable, Equatable, Codable {
        case applied(EngineResult)
        /// The engine refused the command; the message says why (for the client, code `refused`).
        case refused(String)
    }

    /// The step at which the command took effect (for a refusal: the step when it was refused).
    public var appliedStep: Int
    public var outcome: Outcome

    public init(appliedStep: Int, outcome: Outcome) {
        self.appliedStep = appliedStep
        self.outcome = outcome
    }

    public static func applied(_ result: EngineResult, step: Int) -> EngineReply { EngineReply(appliedStep: step, outcome: .applied(result)) }
    public static func refused(_ message: String, step: Int) -> EngineReply { EngineReply(appliedStep: step, outcome: .refused(message)) }

    /// The result when applied, else nil.
    public var result: EngineResult? { if case .applied(let r) = outcome { return r } else { return nil } }
    /// The reason when refused, else nil.
    public var refusal: String? { if case .refused(let m) = outcome { return m } else { return nil } }
}

/// What an applied command did, one case per kind of answer.
public enum EngineResult: Sendable, Equatable, Codable {
    /// `play`, `pause`: whether the dynamics is paused now.
    case paused(Bool)
    /// `step`: the step at which the run pauses again.
    case stepping(untilStep: Int)
    /// `reset`.
    case reset
    /// `get`, `set`: the parameters asked for (`set`: their new values).
    case parameters([Parameter: ParameterValue])
    /// `interaction.set`, `interaction.remove`: the interaction and how many are active now.
    case interaction(id: String, active: Int)
    /// `interaction.list`.
    case interactions(InteractionListing)
    /// `renew`: how many interactions had their lease extended.
    case renewed(Int)
    /// `client.left`: how many interactions ended.
    case ended(Int)
}

/// The active interactions, and the user energy and work of the interactive forces.
public struct InteractionListing: Sendable, Equatable, Codable {
    public struct Entry: Sendable, Equatable, Codable {
        public var id: String
        public var kind: Interaction.Kind
        public var owner: String
        /// How many particles it selects.
        public var particles: Int
        /// nm.
        public var position: SIMD3<Double>
        public var scale: Double
        /// Seconds until its lease runs out.
        public var expiresIn: Double

        public init(id: String, kind: Interaction.Kind, owner: String, particles: Int, position: SIMD3<Double>, scale: Double, expiresIn: Double) {
            self.id = id
            self.kind = kind
            self.owner = owner
            self.particles = particles
            self.position = position
            self.scale = scale
            self.expiresIn = expiresIn
        }
    }

    public var interactions: [Entry]
    /// kJ/mol.
    public var userEnergy: Double
    /// kJ/mol.
    public var userWork: Double

    public init(interactions: [Entry], userEnergy: Double, userWork: Double) {
        self.interactions = interactions
        self.userEnergy = userEnergy
        self.userWork = userWork
    }
}
