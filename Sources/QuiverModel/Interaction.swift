/// An interactive (user) force: a client pulls the centre of mass of some particles toward a point.
///
/// The force acts on the centre of mass of `particles` (minimum image in the periodic box), is split
/// over them (in proportion to mass when `massWeighted`, equally otherwise), and each Cartesian
/// component on each particle is clipped to `±maxForce`. With d the vector from `position` to the
/// centre of mass (minimum image) and s = `scale`:
/// - gaussian: E = -s exp(-|d|^2 / 2 sigma^2), sigma = 1 nm; F = -s d / sigma^2 exp(-|d|^2 / 2 sigma^2)
/// - spring:   E = s |d|^2 / 2;                                  F = -s d
/// - constant: E = s |d|;                                        F = -s d / |d| (zero at d = 0)
/// Units: nm, kJ/mol, kJ/mol/nm.
///
/// It lives in QuiverModel, with its validation, because the control worker checks a client's
/// interaction with the same code the engine applies it with.
public struct Interaction: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, CaseIterable, Codable {
        case gaussian, spring, constant
    }

    /// Chosen by the client; unique among the active interactions (a second `set` with the same id
    /// updates the first).
    public var id: String
    public var kind: Kind
    /// The point the particles are pulled toward, nm.
    public var position: SIMD3<Double>
    /// Atom indices (0-based, unique).
    public var particles: [Int]
    /// Strength: kJ/mol for gaussian, kJ/mol/nm^2 for spring, kJ/mol/nm for constant.
    public var scale: Double
    public var massWeighted: Bool
    /// Largest magnitude of any force component on any particle, kJ/mol/nm.
    public var maxForce: Double
    /// When the interaction ends, draw new velocities for its particles at the thermostat
    /// temperature (the pulled atoms do not keep the energy the user put in).
    public var resetVelocities: Bool

    /// Most particles one interaction may select.
    public static let maxParticles = 100_000
    /// Longest id, in UTF-8 bytes.
    public static let maxIDLength = 128
    /// Default `maxForce`, kJ/mol/nm (NanoVer's default).
    public static let defaultMaxForce = 20_000.0
    /// Allowed id lengths, in UTF-8 bytes.
    public static let idLengthRange = ArgumentRange.closed(1, Double(maxIDLength))
    /// Allowed `scale` (the control catalogue's range; `validate` says why a value is outside).
    public static let scaleRange = ArgumentRange(minimum: 0)
    /// Allowed `maxForce` from a client (finite and positive).
    public static let maxForceRange = ArgumentRange(minimum: 0, exclusiveMinimum: true)

    /// The snake_case field names of the control protocol (docs/control.md).
    enum CodingKeys: String, CodingKey {
        case id, position, particles, scale
        case kind = "type", massWeighted = "mass_weighted", maxForce = "max_force", resetVelocities = "reset_velocities"
    }

    public init(id: String, kind: Kind, position: SIMD3<Double>, particles: [Int], scale: Double = 1,
                massWeighted: Bool = true, maxForce: Double = Interaction.defaultMaxForce, resetVelocities: Bool = false) {
        self.id = id
        self.kind = kind
        self.position = position
        self.particles = particles
        self.scale = scale
        self.massWeighted = massWeighted
        self.maxForce = maxForce
        self.resetVelocities = resetVelocities
    }

    /// Throws `EngineError.invalidParameter` naming the first problem: an empty or over-long id,
    /// no particles, an index outside `0..<atomCount` or repeated, a non-finite position, a scale
    /// that is negative or not finite, a max force that is not positive.
    public func validate(atomCount: Int) throws(EngineError) {
        guard !id.isEmpty, id.utf8.count <= Self.maxIDLength else {
            throw .invalidParameter("interaction id must be 1...\(Self.maxIDLength) bytes, got \(id.utf8.count)")
        }
        guard !particles.isEmpty else { throw .invalidParameter("interaction '\(id)': no particles") }
        guard particles.count <= Self.maxParticles else {
            throw .invalidParameter("interaction '\(id)': \(particles.count) particles, at most \(Self.maxParticles)")
        }
        var seen = Set<Int>()
        for p in particles {
            guard p >= 0 && p < atomCount else {
                throw .invalidParameter("interaction '\(id)': particle index \(p) is out of range 0..<\(atomCount)")
            }
            guard seen.insert(p).inserted else { throw .invalidParameter("interaction '\(id)': particle \(p) is listed twice") }
        }
        guard position.x.isFinite && position.y.isFinite && position.z.isFinite else {
            throw .invalidParameter("interaction '\(id)': position must be finite")
        }
        guard scale.isFinite && scale >= 0 else { throw .invalidParameter("interaction '\(id)': scale must be finite and >= 0, got \(scale)") }
        guard maxForce > 0 && !maxForce.isNaN else {
            throw .invalidParameter("interaction '\(id)': max_force must be > 0, got \(maxForce)")
        }
    }
}
