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
}
