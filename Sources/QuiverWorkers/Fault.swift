import Foundation

/// Fault injection for reliability tests: `QUIVER_FAULT=<role>:<mode>` in a worker's environment.
/// Modes: `exit` (exit 3 at start, every start), `hang` (become ready, then make no progress),
/// `ignore-term` (ignore SIGTERM, so the supervisor must SIGKILL it), `blow-up` (the engine only:
/// two atoms are put 0.003 nm apart right after the first frame, at the first start only). Never set
/// in production.
public enum Fault: String, Sendable {
    case exit, hang, ignoreTerm = "ignore-term", blowUp = "blow-up"

    /// The fault the environment injects into `role`, if any.
    public static func injected(into role: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> Fault? {
        guard let spec = environment["QUIVER_FAULT"] else { return nil }
        for item in spec.split(separator: ",") {
            let parts = item.split(separator: ":", maxSplits: 1).map(String.init)
            if parts.count == 2, parts[0] == role, let fault = Fault(rawValue: parts[1]) { return fault }
        }
        return nil
    }
}
