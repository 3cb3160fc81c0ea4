import Foundation
import QuiverEngine
import QuiverSharedMemory
import QuiverWire

#if canImport(Glibc)
import Glibc
#endif

/// The run's topology as a file in the run directory (`topology.bin`: the index of the first
/// frame it describes, u64 little-endian, then one encoded topology message, docs/protocol.md). The process that owns the dynamics writes it (the supervisor of
/// `quiver run`, or an embedding `Session`, again on `show`); the broadcaster sends it to clients
/// and the control worker checks atom indices against it. It is replaced atomically (a new file
/// renamed over the old), so a reader sees the old or the new one, never a mix.
public enum TopologyFile {
    /// Encodes `topology`, valid from frame index `firstFrame` on, and replaces the file at `path`
    /// (mode 0600).
    public static func write(_ topology: Topology, firstFrame: UInt64, to path: String) throws {
        let bytes = withUnsafeBytes(of: firstFrame.littleEndian) { Array($0) } + (try TopologyEncoder.encode(topology))
        do { try AtomicFile.write(bytes, to: path) } catch let error as AtomicFile.Failure {
            throw RunFileError("cannot \(error.operation == "rename" ? "replace" : "write") \(error.path): \(String(cString: strerror(error.errno)))")
        }
    }

    /// The topology clients see for a dynamics: its types and type names, its elements and bonds
    /// when it has them, else elements inferred from type names that are element symbols ("Ar").
    public static func topology(of d: any Dynamics) -> Topology {
        topology(types: d.types, typeNames: d.typeNames, elements: d.elements, atomNames: d.atomNames, bonds: d.bonds)
    }

    /// The same from the parts (the built-in systems of `quiver run`, whose engine is another process).
    public static func topology(types: [Int32], typeNames: [String], elements: [UInt8]? = nil, atomNames: [String]? = nil,
                                bonds: [(Int, Int)]? = nil) -> Topology {
        let types = types.map { UInt32(max(0, $0)) }
        var elements = elements
        if elements == nil {
            let numbers = typeNames.map { Elements.number(ofSymbol: $0) }
            if !numbers.isEmpty, numbers.allSatisfy({ $0 != nil }) {
                let byType = numbers.map { $0! }
                elements = types.map { Int($0) < byType.count ? byType[Int($0)] : 0 }
            }
        }
        let pairs = bonds.map { $0.map { SIMD2(UInt32($0.0), UInt32($0.1)) } }
        return Topology(types: types, typeNames: typeNames, elements: elements, atomNames: atomNames,
                        bonds: pairs.flatMap { $0.isEmpty ? nil : $0 })
    }
}

/// Follows a topology file: re-reads it when it was replaced (inode, size or modification time
/// changed), which costs one `stat` per check.
public final class TopologyWatcher {
    public let path: String
    /// The current encoded topology message, its atom count, and the index of the first frame it
    /// describes (nil until the file is readable).
    public private(set) var encoded: [UInt8]?
    public private(set) var atomCount: Int?
    public private(set) var firstFrame: UInt64 = 0
    private var identity: (ino_t, off_t, Int, Int) = (0, -1, 0, 0)

    public init(path: String) {
        self.path = path
        _ = refresh()
    }

    /// Re-reads the file if it changed and decodes cleanly. Returns true when the topology changed.
    @discardableResult
    public func refresh() -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        let id = (st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec)
        if id == identity { return false }
        guard let data = FileManager.default.contents(atPath: path), data.count > 8 else { return false }
        let bytes = Array(data)
        let message = Array(bytes[8...])
        guard let topology = try? TopologyDecoder.decode(message) else { return false }
        identity = id
        encoded = message
        atomCount = topology.atomCount
        firstFrame = bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        return true
    }
}

/// Atomic numbers of element symbols, for topologies whose type names are elements.
enum Elements {
    static let symbols = ["H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar",
                          "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr",
                          "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe"]

    static func number(ofSymbol s: String) -> UInt8? {
        symbols.firstIndex(of: s).map { UInt8($0 + 1) }
    }
}

/// A file of the run directory could not be written, or a worker found one missing or unreadable.
public struct RunFileError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
