/// How positions and velocities advance.
public enum Integrator: Sendable, Equatable {
    /// Velocity Verlet (NVE). `timestep` in ps.
    case velocityVerlet(timestep: Double)
    /// Langevin dynamics (NVT) with the BAOAB splitting. `timestep` in ps, `temperature` in K,
    /// `friction` in 1/ps.
    case langevin(timestep: Double, temperature: Double, friction: Double)

    public var timestep: Double {
        switch self {
        case .velocityVerlet(let dt), .langevin(let dt, _, _): return dt
        }
    }

    /// The thermostat's target temperature, if any.
    public var temperature: Double? {
        if case .langevin(_, let t, _) = self { return t }
        return nil
    }

    /// Whether the integrator conserves total momentum (then 3 degrees of freedom are removed).
    public var conservesMomentum: Bool {
        if case .velocityVerlet = self { return true }
        return false
    }

    public var name: String {
        switch self {
        case .velocityVerlet: return "velocity-verlet"
        case .langevin: return "langevin"
        }
    }

    public func validate() throws {
        let dt = timestep
        guard dt > 0, dt.isFinite, dt < 1 else { throw EngineError.invalidParameter("timestep must be in (0, 1) ps, got \(dt)") }
        if case .langevin(_, let t, let g) = self {
            guard t >= 0, t.isFinite else { throw EngineError.invalidParameter("temperature must be >= 0 K, got \(t)") }
            guard g >= 0, g.isFinite else { throw EngineError.invalidParameter("friction must be >= 0 /ps, got \(g)") }
        }
    }
}
