import CQuiverCore

/// The built-in Lennard-Jones force field: E = 4 eps ((sigma/r)^12 - (sigma/r)^6) for r < cutoff,
/// with per-type-pair eps and sigma, optionally shifted to zero at the cutoff, evaluated by the
/// vectorised C core over cell-built Verlet lists (see docs/architecture.md).
///
/// An instance holds the neighbour lists of the simulation it was prepared for: give each
/// simulation its own instance (preparing it again for another simulation rebinds it).
public final class LennardJones: ForceField {
    public struct Parameters: Sendable, Equatable {
        /// Number of atom types.
        public var typeCount: Int
        /// eps per type pair, row-major typeCount x typeCount, kJ/mol.
        public var epsilon: [Double]
        /// sigma per type pair, row-major typeCount x typeCount, nm.
        public var sigma: [Double]
        /// Pair cutoff, nm.
        public var cutoff: Double
        /// Neighbour-list skin, nm. The list is rebuilt when an atom moved more than skin / 2.
        public var skin: Double
        /// Shift energies to zero at the cutoff (forces are unchanged).
        public var shift: Bool

        /// One type.
        public init(epsilon: Double, sigma: Double, cutoff: Double, skin: Double, shift: Bool = false) {
            self.init(typeCount: 1, epsilon: [epsilon], sigma: [sigma], cutoff: cutoff, skin: skin, shift: shift)
        }

        public init(typeCount: Int, epsilon: [Double], sigma: [Double], cutoff: Double, skin: Double, shift: Bool = false) {
            self.typeCount = typeCount
            self.epsilon = epsilon
            self.sigma = sigma
            self.cutoff = cutoff
            self.skin = skin
            self.shift = shift
        }

        /// Lorentz-Berthelot mixing from per-type eps and sigma.
        public static func mixing(epsilon: [Double], sigma: [Double], cutoff: Double, skin: Double, shift: Bool = false) -> Parameters {
            let n = epsilon.count
            var e = [Double](repeating: 0, count: n * n), s = e
            for a in 0..<n { for b in 0..<n {
                e[a * n + b] = (epsilon[a] * epsilon[b]).squareRoot()
                s[a * n + b] = 0.5 * (sigma[a] + sigma[b])
            } }
            return Parameters(typeCount: n, epsilon: e, sigma: s, cutoff: cutoff, skin: skin, shift: shift)
        }

        public func validate() throws {
            guard typeCount >= 1 else { throw EngineError.invalidParameter("LJ needs at least one type") }
            guard epsilon.count == typeCount * typeCount, sigma.count == typeCount * typeCount else {
                throw EngineError.invalidParameter("LJ epsilon and sigma need \(typeCount * typeCount) entries each")
            }
            guard cutoff > 0, cutoff.isFinite else { throw EngineError.invalidParameter("LJ cutoff must be positive, got \(cutoff)") }
            guard skin >= 0, skin.isFinite else { throw EngineError.invalidParameter("LJ skin must be >= 0, got \(skin)") }
            for v in epsilon where !v.isFinite { throw EngineError.invalidParameter("LJ epsilon must be finite") }
            for v in sigma where !(v.isFinite && v >= 0) { throw EngineError.invalidParameter("LJ sigma must be finite and >= 0") }
        }
    }

    public let parameters: Parameters
    public var name: String { "lennard-jones" }
    private var core: OpaquePointer?

    public init(_ parameters: Parameters) {
        self.parameters = parameters
    }

    deinit { qv_lj_destroy(core) }

    public func prepare(_ setup: ForceFieldSetup) throws {
        try parameters.validate()
        let system = setup.system
        guard system.typeNames.count <= parameters.typeCount,
              system.types.allSatisfy({ Int($0) < parameters.typeCount }) else {
            throw EngineError.invalidParameter("the system has types beyond the \(parameters.typeCount) LJ types")
        }
        let required = parameters.cutoff + parameters.skin
        for edge in [system.box.x, system.box.y, system.box.z] where edge < required {
            throw EngineError.boxTooSmall(edge: edge, required: required)
        }
        qv_lj_destroy(core)
        core = nil
        var created: OpaquePointer?
        let code: Int32 = system.types.withUnsafeBufferPointer { types in
            parameters.epsilon.withUnsafeBufferPointer { eps in
                parameters.sigma.withUnsafeBufferPointer { sig in
                    var cfg = qv_lj_config(
                        natoms: Int32(system.count), ntypes: Int32(parameters.typeCount),
                        types: types.baseAddress, epsilon: eps.baseAddress, sigma: sig.baseAddress,
                        cutoff: parameters.cutoff, skin: parameters.skin, shift: parameters.shift ? 1 : 0,
                        kernel: setup.kernel.code, nthreads: Int32(setup.threads))
                    return qv_lj_create(&cfg, &created)
                }
            }
        }
        if let error = EngineError.check(code) { throw error }
        core = created
    }

    public func addForces(_ context: ForceContext) throws -> Double {
        guard let core else { throw EngineError.invalidParameter("LennardJones used before prepare()") }
        var energy = 0.0
        let box = context.box.array
        let code = box.withUnsafeBufferPointer { b in
            context.computeEnergy
                ? qv_lj_compute(core, context.pool.pointer, context.state, b.baseAddress, &energy)
                : qv_lj_compute(core, context.pool.pointer, context.state, b.baseAddress, nil)
        }
        if let error = EngineError.check(code, step: context.step, box: context.box,
                                         required: parameters.cutoff + parameters.skin) { throw error }
        return energy
    }

    public func positionsReplaced() {
        if let core { qv_lj_invalidate(core) }
    }

    /// Neighbour-list statistics since `prepare`.
    public var statistics: NeighborStatistics {
        var s = qv_lj_stats()
        if let core { qv_lj_get_stats(core, &s) }
        return NeighborStatistics(rebuilds: Int(s.rebuilds), paddedEntries: Int(s.pairs), ghosts: Int(s.ghosts), bytes: Int(s.bytes))
    }
}

public struct NeighborStatistics: Sendable {
    /// Neighbour-list builds so far.
    public let rebuilds: Int
    /// Stored neighbour entries (full list, padded to multiples of 8).
    public let paddedEntries: Int
    /// Periodic ghost images in the current list.
    public let ghosts: Int
    /// Bytes held by the neighbour machinery.
    public let bytes: Int
}
