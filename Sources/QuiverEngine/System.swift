/// A periodic orthorhombic box with edges along x, y, z, in nm. Atoms live in [0, x) x [0, y) x [0, z).
public struct Box: Sendable, Equatable {
    public var x: Double
    public var y: Double
    public var z: Double
    public init(x: Double, y: Double, z: Double) { self.x = x; self.y = y; self.z = z }
    public init(cube edge: Double) { self.init(x: edge, y: edge, z: edge) }
    public var volume: Double { x * y * z }
    var array: [Double] { [x, y, z] }
}

/// A description of the particles: what a simulation starts from. Value type; the simulation copies
/// it into its own structure-of-arrays storage.
public struct ParticleSystem: Sendable {
    /// Positions in nm.
    public var positions: [SIMD3<Float>]
    /// Velocities in nm/ps.
    public var velocities: [SIMD3<Float>]
    /// Masses in amu (> 0).
    public var masses: [Float]
    /// Per-atom type index into `typeNames` (used by per-type force-field parameters).
    public var types: [Int32]
    /// One name per type (an element or an LJ type name).
    public var typeNames: [String]
    public var box: Box

    public init(positions: [SIMD3<Float>], velocities: [SIMD3<Float>]? = nil, masses: [Float], types: [Int32]? = nil,
                typeNames: [String] = ["A"], box: Box) {
        self.positions = positions
        self.velocities = velocities ?? Array(repeating: .zero, count: positions.count)
        self.masses = masses
        self.types = types ?? Array(repeating: 0, count: positions.count)
        self.typeNames = typeNames
        self.box = box
    }

    public var count: Int { positions.count }

    /// Checks that every array agrees and every value is usable. Throws `EngineError.invalidSystem`.
    public func validate() throws {
        let n = positions.count
        guard n > 0 else { throw EngineError.invalidSystem("no atoms") }
        guard n < Int(Int32.max) / 32 else { throw EngineError.invalidSystem("\(n) atoms is more than this engine indexes") }
        guard velocities.count == n else { throw EngineError.invalidSystem("\(velocities.count) velocities for \(n) atoms") }
        guard masses.count == n else { throw EngineError.invalidSystem("\(masses.count) masses for \(n) atoms") }
        guard types.count == n else { throw EngineError.invalidSystem("\(types.count) types for \(n) atoms") }
        guard !typeNames.isEmpty else { throw EngineError.invalidSystem("no type names") }
        for b in [box.x, box.y, box.z] where !(b > 0 && b.isFinite) {
            throw EngineError.invalidSystem("box edges must be positive and finite, got \(box)")
        }
        for i in 0..<n {
            let p = positions[i], v = velocities[i]
            guard p.x.isFinite && p.y.isFinite && p.z.isFinite else { throw EngineError.invalidSystem("position of atom \(i) is not finite") }
            guard v.x.isFinite && v.y.isFinite && v.z.isFinite else { throw EngineError.invalidSystem("velocity of atom \(i) is not finite") }
            guard masses[i] > 0 && masses[i].isFinite else { throw EngineError.invalidSystem("mass of atom \(i) must be positive, got \(masses[i])") }
            guard types[i] >= 0 && Int(types[i]) < typeNames.count else {
                throw EngineError.invalidSystem("type \(types[i]) of atom \(i) is not in 0..<\(typeNames.count)")
            }
        }
    }

    /// Total momentum (amu nm/ps).
    public var momentum: SIMD3<Double> {
        var p = SIMD3<Double>.zero
        for i in 0..<count { p += Double(masses[i]) * SIMD3<Double>(velocities[i]) }
        return p
    }

    /// Kinetic energy in kJ/mol.
    public var kineticEnergy: Double {
        var k = 0.0
        for i in 0..<count {
            let v = SIMD3<Double>(velocities[i])
            k += Double(masses[i]) * (v * v).sum()
        }
        return 0.5 * k
    }

    /// Draws Maxwell-Boltzmann velocities for `temperature` (K) from `seed`, removes the total
    /// momentum, and rescales so the temperature over `3N - 3` degrees of freedom is exact.
    public mutating func assignVelocities(temperature: Double, seed: UInt64) {
        let kT = Units.boltzmann * temperature
        for i in 0..<count {
            let g = Random.gaussian3(seed: seed, stream: 0x7665_6c6f_6369_7479, index: UInt64(i))
            velocities[i] = SIMD3<Float>(g * Double(kT / Double(masses[i])).squareRoot())
        }
        let totalMass = masses.reduce(0.0) { $0 + Double($1) }
        let vcm = momentum / totalMass
        for i in 0..<count { velocities[i] -= SIMD3<Float>(vcm) }
        let dof = Double(max(1, 3 * count - 3))
        let current = 2.0 * kineticEnergy / (dof * Units.boltzmann)
        if current > 0 && temperature > 0 {
            let scale = Float((temperature / current).squareRoot())
            for i in 0..<count { velocities[i] *= scale }
        } else if temperature == 0 {
            for i in 0..<count { velocities[i] = .zero }
        }
    }
}
