/// Per-atom 3-vectors in structure-of-arrays layout (the engine's layout and the wire's).
public struct AtomVectors: Sendable, Equatable, PerAtomVectors {
    public var x: [Float]
    public var y: [Float]
    public var z: [Float]

    /// The three arrays must have the same length; an encoder rejects them otherwise.
    public init(x: [Float], y: [Float], z: [Float]) {
        self.x = x
        self.y = y
        self.z = z
    }

    public init(_ vectors: [SIMD3<Float>]) {
        x = vectors.map(\.x)
        y = vectors.map(\.y)
        z = vectors.map(\.z)
    }

    /// `count` zero vectors.
    public init(zeros count: Int) {
        // Three separate allocations: sharing one would make the first write to y and z copy it.
        x = [Float](repeating: 0, count: count)
        y = [Float](repeating: 0, count: count)
        z = [Float](repeating: 0, count: count)
    }

    public var count: Int { x.count }

    public subscript(index: Int) -> SIMD3<Float> {
        get { SIMD3(x[index], y[index], z[index]) }
        set {
            x[index] = newValue.x
            y[index] = newValue.y
            z[index] = newValue.z
        }
    }

    /// The vectors as an array of SIMD3 (a copy).
    public var vectors: [SIMD3<Float>] { (0..<count).map { self[$0] } }

    var isConsistent: Bool { y.count == x.count && z.count == x.count }
}

/// An interactive (user) force on one atom.
public struct UserForce: Sendable, Equatable {
    /// The atom's index.
    public var index: UInt32
    /// kJ/mol/nm.
    public var force: SIMD3<Float>

    public init(index: UInt32, force: SIMD3<Float>) {
        self.index = index
        self.force = force
    }
}

/// Potential, kinetic and total energy of a frame, kJ/mol.
public struct FrameEnergies: Sendable, Equatable {
    public var potential: Double
    public var kinetic: Double
    public var total: Double

    public init(potential: Double, kinetic: Double, total: Double) {
        self.potential = potential
        self.kinetic = kinetic
        self.total = total
    }

    /// Total = potential + kinetic.
    public init(potential: Double, kinetic: Double) {
        self.init(potential: potential, kinetic: kinetic, total: potential + kinetic)
    }
}

/// Per-atom 3-vectors however they are held: owned (`AtomVectors`) or borrowed (`BorrowedVectors`).
public protocol PerAtomVectors {
    /// Atoms.
    var count: Int { get }
}

/// One frame of a simulation: what the broadcaster publishes every frame. Units: nm, ps, kJ/mol, K.
/// One definition for both ways of holding the per-atom arrays: `Frame` owns them, `BorrowedFrame`
/// borrows them (an encoder reads them where they are), so a field added here is in both.
public struct FrameOf<Vectors: PerAtomVectors> {
    public typealias Energies = FrameEnergies

    /// Frame counter of the publisher (consecutive frames differ by one).
    public var index: UInt64
    /// MD step.
    public var step: Int64
    /// Simulated time, ps.
    public var time: Double
    /// Orthorhombic box edges, nm.
    public var box: SIMD3<Double>
    public var energies: FrameEnergies
    /// K.
    public var temperature: Double
    /// nm. Their count is the frame's atom count.
    public var positions: Vectors
    /// nm/ps, one per atom when present.
    public var velocities: Vectors?
    /// kJ/mol/nm, one per atom when present.
    public var forces: Vectors?
    /// Energy of the interactive forces, kJ/mol.
    public var userEnergy: Double?
    /// Interactive forces, only on the atoms they act on.
    public var userForces: [UserForce]?
    /// Work done by the interactive forces since the start of the run, kJ/mol.
    public var userWork: Double?
    /// When the engine published the frame: seconds since the Unix epoch (CLOCK_REALTIME), for
    /// measuring engine-to-client latency on one machine.
    public var publishedAt: Double?

    public init(index: UInt64, step: Int64, time: Double, box: SIMD3<Double>, energies: FrameEnergies, temperature: Double,
                positions: Vectors, velocities: Vectors? = nil, forces: Vectors? = nil,
                userEnergy: Double? = nil, userForces: [UserForce]? = nil, userWork: Double? = nil, publishedAt: Double? = nil) {
        self.index = index
        self.step = step
        self.time = time
        self.box = box
        self.energies = energies
        self.temperature = temperature
        self.positions = positions
        self.velocities = velocities
        self.forces = forces
        self.userEnergy = userEnergy
        self.userForces = userForces
        self.userWork = userWork
        self.publishedAt = publishedAt
    }

    public var atomCount: Int { positions.count }

    /// This frame with other per-atom arrays (the scalars as they are).
    func withVectors<Other: PerAtomVectors>(_ positions: Other, _ velocities: Other?, _ forces: Other?) -> FrameOf<Other> {
        FrameOf<Other>(index: index, step: step, time: time, box: box, energies: energies, temperature: temperature,
                       positions: positions, velocities: velocities, forces: forces, userEnergy: userEnergy, userForces: userForces,
                       userWork: userWork, publishedAt: publishedAt)
    }
}

extension FrameOf: Sendable where Vectors: Sendable {}
extension FrameOf: Equatable where Vectors: Equatable {}

/// A frame that owns its arrays.
public typealias Frame = FrameOf<AtomVectors>

/// A frame whose per-atom arrays are borrowed (`BorrowedVectors`), for example from a
/// shared-memory slot read in place, so an encoder can read them where they are. Valid only while
/// the call that lends them runs.
public typealias BorrowedFrame = FrameOf<BorrowedVectors>

/// Per-atom vectors as three borrowed float arrays (the x, y and z planes), for example a
/// shared-memory slot read in place. Valid only while the call that takes them runs.
public struct BorrowedVectors: PerAtomVectors {
    public var x: UnsafeBufferPointer<Float>
    public var y: UnsafeBufferPointer<Float>
    public var z: UnsafeBufferPointer<Float>

    public init(x: UnsafeBufferPointer<Float>, y: UnsafeBufferPointer<Float>, z: UnsafeBufferPointer<Float>) {
        self.x = x
        self.y = y
        self.z = z
    }

    public var count: Int { x.count }

    var isConsistent: Bool { y.count == x.count && z.count == x.count }
}

extension AtomVectors {
    /// The arrays, borrowed for the duration of `body`.
    func borrowed<R, E: Error>(_ body: (BorrowedVectors) throws(E) -> R) throws(E) -> R {
        try x.withUnsafeBufferPointer { (x) throws(E) -> R in
            try y.withUnsafeBufferPointer { (y) throws(E) -> R in
                try z.withUnsafeBufferPointer { (z) throws(E) -> R in try body(BorrowedVectors(x: x, y: y, z: z)) }
            }
        }
    }
}

/// `body` with the optional vectors borrowed (nil stays nil).
func borrowing<R, E: Error>(_ v: AtomVectors?, _ body: (BorrowedVectors?) throws(E) -> R) throws(E) -> R {
    guard let v else { return try body(nil) }
    return try v.borrowed { (b) throws(E) -> R in try body(b) }
}

extension Frame {
    /// This frame with its arrays borrowed for the duration of `body`.
    public func borrowed<R, E: Error>(_ body: (BorrowedFrame) throws(E) -> R) throws(E) -> R {
        try positions.borrowed { (p) throws(E) -> R in
            try borrowing(velocities) { (v) throws(E) -> R in
                try borrowing(forces) { (f) throws(E) -> R in
                    try body(withVectors(p, v, f))
                }
            }
        }
    }
}
