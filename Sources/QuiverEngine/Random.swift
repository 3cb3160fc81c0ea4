import CQuiverCore

/// The engine's counter-based normal generator: a value depends only on (seed, stream, index),
/// never on the order of calls or on threads.
enum Random {
    static func gaussian3(seed: UInt64, stream: UInt64, index: UInt64) -> SIMD3<Double> {
        var g: (Float, Float, Float) = (0, 0, 0)
        withUnsafeMutablePointer(to: &g) { p in
            p.withMemoryRebound(to: Float.self, capacity: 3) { qv_gaussian3(seed, stream, index, $0) }
        }
        return SIMD3<Double>(Double(g.0), Double(g.1), Double(g.2))
    }

    /// The stream of velocity resets at `step`. The thermostat uses the step itself as its stream
    /// and steps stay below 2^63, so these streams (top bit set) never meet its numbers.
    static func velocityResetStream(step: Int) -> UInt64 {
        0xF2E5_5E70_0000_0000 ^ UInt64(truncatingIfNeeded: step)
    }
}
