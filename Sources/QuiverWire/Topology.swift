/// What the atoms are: sent once, and again when it changes. Frames carry only numbers.
public struct Topology: Sendable, Equatable {
    /// Per atom: an index into `typeNames`. Its count is the topology's atom count.
    public var types: [UInt32]
    /// Type names (force-field atom types such as "Ar" or "CT").
    public var typeNames: [String]
    /// Per atom: atomic number, 0 when unknown.
    public var elements: [UInt8]?
    /// Per atom: a name ("CA", "OW").
    public var atomNames: [String]?
    /// Bonded pairs of atom indices.
    public var bonds: [SIMD2<UInt32>]?

    public init(types: [UInt32], typeNames: [String], elements: [UInt8]? = nil, atomNames: [String]? = nil,
                bonds: [SIMD2<UInt32>]? = nil) {
        self.types = types
        self.typeNames = typeNames
        self.elements = elements
        self.atomNames = atomNames
        self.bonds = bonds
    }

    public var atomCount: Int { types.count }
}
