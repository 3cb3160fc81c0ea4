import QuiverConfig
import QuiverEngine
import QuiverLog
import QuiverWire

/// What the run configuration means to the engine and the frame path (QuiverConfig itself knows
/// no engine types).
extension RunConfiguration {
    /// Checks what only this machine can tell beyond `validate()`: that the CPU runs the kernel.
    /// Throws `ConfigurationError`.
    public func validateForThisMachine() throws {
        try validate()
        guard let variant = KernelVariant(rawValue: kernel), variant.isSupported else {
            throw ConfigurationError("--kernel ([engine] kernel) '\(kernel)' is not supported on this CPU (avx2 needs AVX2 and FMA)")
        }
    }

    public var kernelVariant: KernelVariant { KernelVariant(rawValue: kernel) ?? .auto }

    public var simulationOptions: SimulationOptions { SimulationOptions(threads: threads, seed: seed, kernel: kernelVariant) }

    /// The built-in system the configuration names.
    public func simulationSetup() throws -> SimulationSetup {
        system == "lj" ? try BuiltinSystems.lennardJonesBench(cells: cells, seed: seed) : try BuiltinSystems.argonLiquid(cells: cells, seed: seed)
    }

    /// The frame codec clients get.
    public var wireCodec: Codec {
        switch codec {
        case "raw": return .raw
        case "lossless": return .lossless
        default: return .quantized(precision: precision)
        }
    }

    /// Sends this process's log lines where `[log]` says (level, file, format). Once per process.
    public func bootstrapLogging() throws {
        try QuiverLogging.bootstrap(level: QuiverLogging.level(logLevel), file: logFile, format: LogFormat(rawValue: logFormat) ?? .text)
    }
}
