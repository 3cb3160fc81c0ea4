import Foundation
import QuiverControl
import QuiverEngine

/// A command for the engine, as the control worker posts it into the shared-memory command ring
/// (JSON). The control worker has already checked the signature and every argument; the engine
/// checks again what only it can (the atom count, the integrator) and never trusts a size.
public struct EngineCommand: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case play, pause, step, reset, get, set, renew
        case interactionSet = "interaction.set"
        case interactionRemove = "interaction.remove"
        case interactionList = "interaction.list"
        /// The client left (said `bye` or its session expired): its interactions end.
        case clientLeft = "client.left"
    }

    public var kind: Kind
    /// The client on whose behalf (owner of interactions).
    public var client: String
    /// `step`: how many steps.
    public var count: Int?
    /// `get`: which parameters (nil: all).
    public var names: [String]?
    /// `set`: new values.
    public var values: [String: Double]?
    /// `interaction.set`.
    public var interaction: InteractionSpec?
    /// `interaction.remove`.
    public var id: String?

    public init(kind: Kind, client: String, count: Int? = nil, names: [String]? = nil, values: [String: Double]? = nil,
                interaction: InteractionSpec? = nil, id: String? = nil) {
        self.kind = kind
        self.client = client
        self.count = count
        self.names = names
        self.values = values
        self.interaction = interaction
        self.id = id
    }

    public func encoded() -> [UInt8] { Array((try? Self.encoder.encode(self)) ?? Data()) }

    public static func decode(_ bytes: [UInt8]) throws -> EngineCommand {
        try JSONDecoder().decode(EngineCommand.self, from: Data(bytes))
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }()
}

/// An interaction with its lease, in the snake_case fields of the control protocol.
public struct InteractionSpec: Codable, Sendable, Equatable {
    public var id: String
    public var type: Interaction.Kind
    public var position: [Double]
    public var particles: [Int]
    public var scale: Double
    public var massWeighted: Bool
    public var maxForce: Double
    public var resetVelocities: Bool
    /// Seconds the interaction lives without being renewed.
    public var lease: Double

    enum CodingKeys: String, CodingKey {
        case id, type, position, particles, scale, lease
        case massWeighted = "mass_weighted", maxForce = "max_force", resetVelocities = "reset_velocities"
    }

    public init(_ i: Interaction, lease: Double) {
        id = i.id
        type = i.kind
        position = [i.position.x, i.position.y, i.position.z]
        particles = i.particles
        scale = i.scale
        massWeighted = i.massWeighted
        maxForce = i.maxForce
        resetVelocities = i.resetVelocities
        self.lease = lease
    }

    /// The lease range of the control catalogue (`interaction.set`'s `lease` argument).
    static let leaseRange = CommandCatalog.spec("interaction.set")?.argument("lease")?.range

    /// The interaction, validated against the atom count. Throws `EngineError.invalidParameter`.
    public func interaction(atomCount: Int) throws -> Interaction {
        guard position.count == 3 else { throw EngineError.invalidParameter("interaction '\(id)': position needs 3 numbers") }
        if !(lease.isFinite && lease > 0) || Self.leaseRange.map({ !$0.contains(lease) }) == true {
            throw EngineError.invalidParameter("interaction '\(id)': lease must be in \(Self.leaseRange?.text ?? "(0, inf)") s, got \(lease)")
        }
        let i = Interaction(id: id, kind: type, position: SIMD3(position[0], position[1], position[2]), particles: particles, scale: scale,
                            massWeighted: massWeighted, maxForce: maxForce, resetVelocities: resetVelocities)
        try i.validate(atomCount: atomCount)
        return i
    }
}

/// What the engine answers a command with (in the command slot's reply area, JSON).
public struct EngineReply: Codable, Sendable, Equatable {
    /// The step at which the command took effect.
    public var appliedStep: Int
    /// Set when the engine refused the command.
    public var error: String?
    /// Command-specific values (a JSON object's text), e.g. the parameters of `get`.
    public var result: String?

    enum CodingKeys: String, CodingKey {
        case appliedStep = "applied_step", error, result
    }

    public init(appliedStep: Int, error: String? = nil, result: String? = nil) {
        self.appliedStep = appliedStep
        self.error = error
        self.result = result
    }
}
