import QuiverWire
import Testing

/// A small deterministic generator (xorshift64).
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * uniform() }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// Random vectors in [lo, hi) per component.
func randomVectors(_ n: Int, _ lo: Double, _ hi: Double, rng: inout TestRandom) -> AtomVectors {
    var v = AtomVectors(zeros: n)
    for i in 0..<n {
        v[i] = SIMD3(Float(rng.uniform(lo, hi)), Float(rng.uniform(lo, hi)), Float(rng.uniform(lo, hi)))
    }
    return v
}

/// A frame of `n` atoms in a 3 nm box, positions slightly outside the box on both sides (negative
/// coordinates included), with every optional field when `full`.
func sampleFrame(atoms n: Int, seed: UInt64 = 1, full: Bool = true) -> Frame {
    var rng = TestRandom(seed: seed)
    let positions = randomVectors(n, -0.3, 3.3, rng: &rng)
    var frame = Frame(index: 41, step: 8200, time: 16.4, box: SIMD3(3, 3, 3),
                      energies: Frame.Energies(potential: -1234.5, kinetic: 456.25), temperature: 301.5,
                      positions: positions)
    if full {
        frame.velocities = randomVectors(n, -2, 2, rng: &rng)
        frame.forces = randomVectors(n, -500, 500, rng: &rng)
        frame.userEnergy = -12.5
        frame.userWork = 3.75
        frame.publishedAt = 1_795_000_000.123456
        frame.userForces = n > 2 ? [UserForce(index: 0, force: [1, 2, 3]), UserForce(index: UInt32(n - 1), force: [-4, 5.5, -6])] : []
    }
    return frame
}

func sampleTopology(atoms n: Int, full: Bool = true) -> Topology {
    let names = ["OW", "HW1", "HW2"]
    var topology = Topology(types: (0..<n).map { UInt32($0 % 3 == 0 ? 0 : 1) }, typeNames: ["O", "H"])
    if full {
        topology.elements = (0..<n).map { $0 % 3 == 0 ? 8 : 1 }
        topology.atomNames = (0..<n).map { names[$0 % 3] }
        var bonds: [SIMD2<UInt32>] = []
        for oxygen in stride(from: 0, to: n - 2, by: 3) {
            let o = UInt32(oxygen)
            bonds += [SIMD2(o, o + 1), SIMD2(o, o + 2)]
        }
        topology.bonds = bonds
    }
    return topology
}

// Byte surgery on messages, written from docs/protocol.md only (the tests see the public API and the
// documented layout, nothing else).

func load<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, as: T.Type) -> T {
    var v = T.zero
    for i in 0..<MemoryLayout<T>.size { v |= T(bytes[offset + i]) << (8 * i) }
    return v
}

func store<T: FixedWidthInteger>(_ value: T, _ bytes: inout [UInt8], _ offset: Int) {
    for i in 0..<MemoryLayout<T>.size { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
}

func bytes<T: FixedWidthInteger>(of value: T) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: MemoryLayout<T>.size)
    store(value, &out, 0)
    return out
}

/// A field table entry and where its data lies.
struct Entry {
    var id: UInt16
    var codec: UInt8
    var count: UInt32
    var size: UInt64
    var entryOffset: Int
    var dataOffset: Int
}

func headerSize(_ m: [UInt8]) -> Int { Int(load(m, 8, as: UInt16.self)) }

func fieldTable(_ m: [UInt8]) -> [Entry] {
    let hs = headerSize(m)
    let count = Int(load(m, 10, as: UInt16.self))
    var data = hs + 16 * count
    var entries: [Entry] = []
    for i in 0..<count {
        let o = hs + 16 * i
        let e = Entry(id: load(m, o, as: UInt16.self), codec: m[o + 2], count: load(m, o + 4, as: UInt32.self),
                      size: load(m, o + 8, as: UInt64.self), entryOffset: o, dataOffset: data)
        entries.append(e)
        data += Int(e.size)
    }
    return entries
}

func entry(_ m: [UInt8], id: UInt16) -> Entry { fieldTable(m).first { $0.id == id }! }

/// Inserts a field (entry and data) at table position `index`, fixing counts, sizes and checksum.
func insertField(_ m: [UInt8], at index: Int, id: UInt16, codec: UInt8, count: UInt32, data: [UInt8]) throws -> [UInt8] {
    let hs = headerSize(m)
    let table = fieldTable(m)
    let dataOffset = index < table.count ? table[index].dataOffset : m.count
    var out = Array(m[0..<(hs + 16 * index)])
    out += bytes(of: id) + [codec, 0] + bytes(of: count) + bytes(of: UInt64(data.count))
    out += m[(hs + 16 * index)..<dataOffset]
    out += data
    out += m[dataOffset...]
    store(UInt16(table.count + 1), &out, 10)
    store(UInt64(out.count - hs), &out, 16)
    try WireChecksum.reseal(&out)
    return out
}

/// `m` with `edit` applied and the checksum recomputed.
func resealed(_ m: [UInt8], _ edit: (inout [UInt8]) -> Void) throws -> [UInt8] {
    var out = m
    edit(&out)
    try WireChecksum.reseal(&out)
    return out
}

/// The error `body` throws, or nil when it succeeds. The API throws only `WireError` (typed throws);
/// anything else is recorded as a failure.
func wireError<T>(_ body: () throws -> T) -> WireError? {
    do {
        _ = try body()
        return nil
    } catch let error as WireError {
        return error
    } catch {
        Issue.record("an error that is not a WireError: \(error)")
        return nil
    }
}

/// |decoded - original| <= precision / 2 plus the float32 rounding of the result.
func withinQuantization(_ decoded: [Float], _ original: [Float], precision: Double) -> Bool {
    guard decoded.count == original.count else { return false }
    let half = precision / 2
    for (d, o) in zip(decoded, original) {
        let error = abs(Double(d) - Double(o))
        if !(error <= half * (1 + 1e-12) + Double(max(d.ulp, o.ulp))) { return false }
    }
    return true
}

func bitwiseEqual(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

func bitwiseEqual(_ a: AtomVectors?, _ b: AtomVectors?) -> Bool {
    guard let a, let b else { return a == nil && b == nil }
    return bitwiseEqual(a.x, b.x) && bitwiseEqual(a.y, b.y) && bitwiseEqual(a.z, b.z)
}
