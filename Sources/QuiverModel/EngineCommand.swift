/// A command the engine applies between two steps: what the control worker's parser produces
/// (after checking every argument) and the engine dispatches with a `switch`.
///
/// The engine checks again what it can (ranges, the atom count, the integrator) and never trusts
/// the command ring. A new command is a new case here, a line in the control catalogue, a branch
/// in `EngineControl.perform` and an `EngineResult` (docs/architecture.md, "Adding a command").
public enum EngineCommand: Sendable, Equatable, Codable {
    /// Run the dynamics.
    case play
    /// Pause the dynamics.
    case pause
    /// Run `count` steps, then pause (`count` in `stepCountRange`).
    case step(count: Int)
    /// Restore the initial positions and velocities and end every interaction.
    case reset
    /// Read parameters: nil every one, else these in order.
    case get(names: [Parameter]?)
    /// Change parameters, all or none (each writable and in its `Parameter.range`).
    case set(values: [Parameter: Double])
    /// Start an interaction, or update the client's one with the same id.
    case interactionSet(InteractionRequest)
    /// End one of the client's interactions.
    case interactionRemove(id: String)
    /// The active interactions of every client.
    case interactionList
    /// Extend the leases of the client's interactions.
    case renew
    /// The client left (said `bye`, or its session expired): its interactions end.
    case clientLeft

    /// Allowed `step` counts.
    public static let stepCountRange = ArgumentRange.closed(1, 1_000_000_000)
    /// `step` without a count.
    public static let defaultStepCount = 1
}

/// An interaction as a client sets it: the interaction and how long it lasts unless set again or
/// renewed.
public struct InteractionRequest: Sendable, Equatable, Codable {
    public var interaction: Interaction
    /// Seconds (in `leaseRange`).
    public var lease: Double

    /// Allowed leases, seconds.
    public static let leaseRange = ArgumentRange.closed(0.1, 600)
    /// The lease when a client gives none, seconds.
    public static let defaultLease = 3.0

    public init(_ interaction: Interaction, lease: Double = InteractionRequest.defaultLease) {
        self.interaction = interaction
        self.lease = lease
    }

    public var id: String { interaction.id }

    /// Throws `EngineError.invalidParameter` naming the first problem: a lease outside
    /// `leaseRange`, or what `Interaction.validate(atomCount:)` rejects.
    public func validate(atomCount: Int) throws(EngineError) {
        guard Self.leaseRange.contains(lease) else {
            throw .invalidParameter("interaction '\(interaction.id)': lease must be in \(Self.leaseRange.text) s, got \(lease)")
        }
        try interaction.validate(atomCount: atomCount)
    }
}
