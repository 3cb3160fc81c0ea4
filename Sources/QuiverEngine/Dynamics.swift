import CQuiverCore

/// Anything a Quiver server can run and show: the built-in `Simulation`, or your own dynamics.
///
/// The server drives it from one thread: `advance` a few steps, read positions and energies for a
/// frame, apply commands between steps. Only the first group of requirements is mandatory; the
/// rest have defaults that say "not supported", and the server answers clients accordingly
/// (a `set temperature` on a dynamics without a thermostat is refused with a clear message).
public protocol Dynamics: AnyObject {
    /// A short name for logs and the topology.
    var name: String { get }
    var atomCount: Int { get }
    /// Steps taken so far (never goes back).
    var step: Int { get }
    /// Simulated time, ps.
    var time: Double { get }
    var box: Box { get }
    /// Per-atom type index into `typeNames`, and per-atom masses (amu).
    var types: [Int32] { get }
    var typeNames: [String] { get }
    var masses: [Float] { get }
    /// Advances `steps` steps; when `energy` is true the energies of the last step are wanted next.
    func advance(steps: Int, energy: Bool) throws
    /// Energies at the current step.
    func energies() throws -> Energies
    /// Read-only access to positions (nm), structure of arrays, without copying.
    func withPositions<R>(_ body: (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>) throws -> R) rethrows -> R

    /// For clients' topology: per-atom atomic numbers, names, and bonded pairs; nil when unknown.
    var elements: [UInt8]? { get }
    var atomNames: [String]? { get }
    var bonds: [(Int, Int)]? { get }

    /// The interactive forces this dynamics adds on every step; nil when it takes no interactions.
    var interactiveForces: InteractiveForces? { get }
    /// Run parameters it exposes by name (temperature K, friction /ps, timestep ps).
    func parameters() -> [String: Double]
    /// Changes one run parameter between steps; throws `EngineError.invalidParameter` when the
    /// value is refused or the dynamics has no such parameter.
    func setParameter(_ name: String, to value: Double) throws
    /// Its state, to restart from (nil: it cannot be saved).
    func saveState() -> DynamicState?
    /// Continues from a saved state.
    func restoreState(_ state: DynamicState) throws
    /// Draws new velocities for some atoms at a temperature (after an interaction ends).
    func resetVelocities(of particles: [Int], temperature: Double) throws
    /// Called between steps after clients changed the interactions: a dynamics that holds forces
    /// from the last step replaces their interactive part, so the next step already moves the
    /// atoms with the new set (no step of delay).
    func applyInteractionChanges()
    /// Keeps the current state in memory as the last good one, the state a blow-up rolls back to
    /// (the engine loop calls it at every published frame). Default: nothing.
    func checkpoint() throws
    /// Returns to the last `checkpoint()` (step counter included) after `advance` threw a blow-up
    /// (`EngineError.isBlowUp`). Returns the step it went back to; nil when it cannot (default):
    /// the engine then pauses without publishing the blown-up state.
    func rollback() throws -> Int?
}

extension Dynamics {
    public var elements: [UInt8]? { nil }
    public var atomNames: [String]? { nil }
    public var bonds: [(Int, Int)]? { nil }
    public var interactiveForces: InteractiveForces? { nil }
    public func parameters() -> [String: Double] { [:] }
    public func setParameter(_ name: String, to value: Double) throws {
        throw EngineError.invalidParameter("\(self.name) has no run parameter '\(name)'")
    }
    public func saveState() -> DynamicState? { nil }
    public func restoreState(_ state: DynamicState) throws {
        throw EngineError.invalidParameter("\(name) cannot restore a saved state")
    }
    public func resetVelocities(of particles: [Int], temperature: Double) throws {
        throw EngineError.invalidParameter("\(name) cannot reset velocities")
    }
    public func applyInteractionChanges() {}
    public func checkpoint() throws {}
    public func rollback() throws -> Int? { nil }
}

/// Finiteness checks for a `Dynamics`'s buffers (the engine loop's last line of defence before
/// publishing a frame).
public enum FiniteCheck {
    /// Whether every value of the three arrays (of equal length) is finite; vectorised in C.
    public static func all(_ x: UnsafeBufferPointer<Float>, _ y: UnsafeBufferPointer<Float>, _ z: UnsafeBufferPointer<Float>) -> Bool {
        precondition(y.count == x.count && z.count == x.count, "arrays of different lengths")
        guard let px = x.baseAddress, let py = y.baseAddress, let pz = z.baseAddress else { return true }
        return qv_all_finite3(px, py, pz, Int64(x.count)) != 0
    }
}

extension Energies {
    /// Energies of your own dynamics (kJ/mol, K).
    public init(step: Int, potential: Double, kinetic: Double, temperature: Double) {
        self.init(step: step, potential: potential, kinetic: kinetic, temperature: temperature, terms: [("potential", potential)])
    }
}

extension Simulation: Dynamics {
    public var name: String { forceFields.map(\.name).joined(separator: "+") }
    public var atomCount: Int { count }
    public var types: [Int32] { storage.types }
    public var masses: [Float] { Array(UnsafeBufferPointer(start: storage.mass.pointer, count: count)) }

    public func advance(steps: Int, energy: Bool) throws { try run(steps: steps, energy: energy) }

    public var interactiveForces: InteractiveForces? { interactions }

    public func parameters() -> [String: Double] {
        switch integrator {
        case .velocityVerlet(let dt): return ["timestep": dt]
        case .langevin(let dt, let t, let g): return ["timestep": dt, "temperature": t, "friction": g]
        }
    }

    public func setParameter(_ name: String, to value: Double) throws {
        var next = integrator
        switch (name, integrator) {
        case ("timestep", .velocityVerlet): next = .velocityVerlet(timestep: value)
        case ("timestep", .langevin(_, let t, let g)): next = .langevin(timestep: value, temperature: t, friction: g)
        case ("temperature", .langevin(let dt, _, let g)): next = .langevin(timestep: dt, temperature: value, friction: g)
        case ("friction", .langevin(let dt, let t, _)): next = .langevin(timestep: dt, temperature: t, friction: value)
        case ("temperature", .velocityVerlet), ("friction", .velocityVerlet):
            throw EngineError.invalidParameter("\(name) needs a thermostat; this run integrates with velocity Verlet (NVE)")
        default:
            throw EngineError.invalidParameter("no run parameter '\(name)'")
        }
        try setIntegrator(next)
    }

    public func saveState() -> DynamicState? { dynamicState() }
    public func restoreState(_ state: DynamicState) throws { try restore(state) }
}
