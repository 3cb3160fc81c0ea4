/// Everything the engine can fail with. Each case says what a user can fix.
///
/// It lives in QuiverModel because the control side throws it too: an interaction a client sends
/// is validated with the engine's own rules (`Interaction.validate(atomCount:)`). The engine maps
/// the C core's status codes onto it (QuiverEngine).
public enum EngineError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The system description is inconsistent (array lengths, masses, types, non-finite values).
    case invalidSystem(String)
    /// A parameter is out of range (timestep, temperature, cutoff, threads, ...).
    case invalidParameter(String)
    /// A box edge is shorter than the force field's cutoff plus skin.
    case boxTooSmall(edge: Double, required: Double)
    /// A position, velocity or energy became NaN or infinite (the dynamics blew up).
    case nonFinite(step: Int)
    /// The kinetic energy jumped beyond the blow-up bound within one step (the dynamics blew up
    /// before any value became NaN; kJ/mol). See `Simulation.BlowUpGuard`.
    case kineticEnergyJump(step: Int, kinetic: Double, bound: Double)
    /// An allocation failed.
    case outOfMemory
    /// The requested kernel variant cannot run on this CPU.
    case unsupportedKernel(String)
    /// Worker threads could not be started.
    case threadsUnavailable(Int)
    /// A custom force field threw.
    case forceField(name: String, message: String)

    /// Whether this is the dynamics blowing up (non-finite values or a kinetic-energy jump): the
    /// engine rolls back and pauses instead of failing.
    public var isBlowUp: Bool {
        switch self {
        case .nonFinite, .kineticEnergyJump: return true
        default: return false
        }
    }

    /// A short rendering of an energy for messages: 1 decimal, or 3 significant digits and an
    /// exponent when large (QuiverModel has no Foundation to format with).
    static func short(_ v: Double) -> String {
        guard v.isFinite else { return "\(v)" }
        var m = abs(v), e = 0
        guard m >= 1e6 else { return "\(Double(Int((v * 10).rounded())) / 10)" }
        while m >= 10 { m /= 10; e += 1 }
        m = (m * 100).rounded() / 100
        if m >= 10 { m /= 10; e += 1 }
        return "\(v < 0 ? "-" : "")\(m)e\(e)"
    }

    public var description: String {
        switch self {
        case .invalidSystem(let m): return "invalid system: \(m)"
        case .invalidParameter(let m): return "invalid parameter: \(m)"
        case .boxTooSmall(let edge, let required):
            return "box edge \(edge) nm is shorter than cutoff + skin = \(required) nm"
        case .nonFinite(let step): return "non-finite positions or energies at step \(step): the dynamics became unstable (timestep too large or overlapping atoms?)"
        case .kineticEnergyJump(let step, let kinetic, let bound):
            return "kinetic energy \(Self.short(kinetic)) kJ/mol at step \(step) is above the blow-up bound \(Self.short(bound)) kJ/mol: the dynamics became unstable (a pull too strong, a timestep too large?)"
        case .outOfMemory: return "out of memory"
        case .unsupportedKernel(let m): return "unsupported kernel: \(m)"
        case .threadsUnavailable(let n): return "could not start \(n) worker threads"
        case .forceField(let name, let message): return "force field '\(name)' failed: \(message)"
        }
    }
}
