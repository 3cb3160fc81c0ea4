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
    /// An allocation failed.
    case outOfMemory
    /// The requested kernel variant cannot run on this CPU.
    case unsupportedKernel(String)
    /// Worker threads could not be started.
    case threadsUnavailable(Int)
    /// A custom force field threw.
    case forceField(name: String, message: String)

    public var description: String {
        switch self {
        case .invalidSystem(let m): return "invalid system: \(m)"
        case .invalidParameter(let m): return "invalid parameter: \(m)"
        case .boxTooSmall(let edge, let required):
            return "box edge \(edge) nm is shorter than cutoff + skin = \(required) nm"
        case .nonFinite(let step): return "non-finite positions or energies at step \(step): the dynamics became unstable (timestep too large or overlapping atoms?)"
        case .outOfMemory: return "out of memory"
        case .unsupportedKernel(let m): return "unsupported kernel: \(m)"
        case .threadsUnavailable(let n): return "could not start \(n) worker threads"
        case .forceField(let name, let message): return "force field '\(name)' failed: \(message)"
        }
    }
}
