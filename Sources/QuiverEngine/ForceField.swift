import CQuiverCore

/// What a force field learns about the simulation it joins, once, before any force evaluation.
public struct ForceFieldSetup: Sendable {
    public let system: ParticleSystem
    /// Threads the simulation runs (a field may use them or not).
    public let threads: Int
    /// The resolved kernel variant (never `.auto`).
    public let kernel: KernelVariant
}

/// The view a force field gets on each evaluation. The buffers are borrowed: they are valid only
/// during the `addForces` call and must not be kept. Positions may lie outside the box between
/// neighbour-list rebuilds; apply the minimum image when you need distances.
public struct ForceContext {
    /// Number of atoms.
    public let count: Int
    /// Positions in nm (read only).
    public let x, y, z: UnsafeBufferPointer<Float>
    /// Forces in kJ/mol/nm: add your contribution, never overwrite.
    public let fx, fy, fz: UnsafeMutableBufferPointer<Float>
    public let box: Box
    /// The step whose forces are being computed (the step counter after this step).
    public let step: Int
    /// Whether the caller needs the energy; when false a field may return 0.
    public let computeEnergy: Bool

    let state: UnsafePointer<qv_state>
    let pool: ThreadPool
}

/// A term of the potential energy. Terms add up: the simulation zeroes the forces, then every
/// force field adds its own, in order, each step.
///
/// Conform with your own class to plug a custom force field into the engine: implement `addForces`,
/// and `prepare` if you need to check or size things against the system first.
public protocol ForceField: AnyObject {
    /// A short name, used in energy reports and errors.
    var name: String { get }
    /// Called once when a simulation is created. Throw to reject a system the field cannot handle.
    func prepare(_ setup: ForceFieldSetup) throws
    /// Adds this field's forces to `context.fx/fy/fz` and returns its potential energy in kJ/mol.
    func addForces(_ context: ForceContext) throws -> Double
    /// Positions were replaced from outside (not moved by the integrator): drop cached state.
    func positionsReplaced()
}

extension ForceField {
    public func prepare(_ setup: ForceFieldSetup) throws {}
    public func positionsReplaced() {}
}
