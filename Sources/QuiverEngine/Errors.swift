import CQuiverCore

// `EngineError` itself is in QuiverModel (re-exported by this module): the control side validates
// interactions with the engine's rules and throws it too.

extension EngineError {
    /// Maps a C core status code to an error; `nil` for QV_OK.
    static func check(_ code: Int32, step: Int = 0, box: Box? = nil, required: Double = 0) -> EngineError? {
        switch code {
        case Int32(QV_OK): return nil
        case Int32(QV_ERR_NOMEM): return .outOfMemory
        case Int32(QV_ERR_BOX_TOO_SMALL):
            return .boxTooSmall(edge: box.map { min($0.x, $0.y, $0.z) } ?? 0, required: required)
        case Int32(QV_ERR_NONFINITE): return .nonFinite(step: step)
        case Int32(QV_ERR_UNSUPPORTED): return .unsupportedKernel("this CPU")
        case Int32(QV_ERR_THREADS): return .threadsUnavailable(0)
        default: return .invalidParameter("rejected by the C core (code \(code))")
        }
    }
}
