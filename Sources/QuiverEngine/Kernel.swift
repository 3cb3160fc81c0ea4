import CQuiverCore

/// Which implementation of the pair kernels runs.
public enum KernelVariant: String, Sendable, CaseIterable {
    /// The best variant this CPU supports (AVX2/FMA on x86-64 that has it, else scalar).
    case auto
    /// The portable scalar reference kernel, always available.
    case scalar
    /// 8-wide AVX2/FMA kernel; requires a CPU with AVX2 and FMA.
    case avx2

    /// The concrete variant `auto` stands for on this CPU.
    public static var best: KernelVariant { qv_cpu_best_kernel() == Int32(QV_KERNEL_AVX2) ? .avx2 : .scalar }

    /// Whether this variant can run on this CPU.
    public var isSupported: Bool {
        switch self {
        case .auto, .scalar: return true
        case .avx2: return qv_cpu_has_avx2_fma() != 0
        }
    }

    /// Resolves `auto` and checks support. Throws `EngineError.unsupportedKernel`.
    public func resolved() throws -> KernelVariant {
        if self == .auto { return KernelVariant.best }
        guard isSupported else { throw EngineError.unsupportedKernel("\(rawValue) needs AVX2 and FMA, which this CPU lacks") }
        return self
    }

    var code: Int32 { self == .avx2 ? Int32(QV_KERNEL_AVX2) : Int32(QV_KERNEL_SCALAR) }
}

/// Facts about the machine the engine runs on.
public enum Machine {
    /// CPUs this process may use (its affinity mask).
    public static var availableCores: Int { Int(qv_cpu_available_cores()) }
}
