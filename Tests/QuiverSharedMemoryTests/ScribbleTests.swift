import CQuiverShm
import Foundation
import QuiverSharedMemory
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real segment in /dev/shm, unlinked (and checked gone) at the end.
final class DevShmSegment {
    let name: String
    let segment: SharedSegment
    init(_ tag: String, layout: SegmentLayout) throws {
        name = "quiver-test-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        segment = try SharedSegment.create(name: name, layout: layout)
    }
    deinit {
        try? segment.unlink()
    }
    var path: String { "/dev/shm/" + name }
}

/// The bytes of a segment's file mapped once more, as another process would see them: what the
/// scribbler writes through. The fields' offsets come from the header as it was written at creation.
final class RawMapping: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let size: Int
    init(path: String) throws {
        let fd = open(path, O_RDWR)
        try #require(fd >= 0)
        defer { close(fd) }
        var st = stat()
        try #require(fstat(fd, &st) == 0)
        size = Int(st.st_size)
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        try #require(p != MAP_FAILED && p != nil)
        base = p!
    }
    deinit { munmap(base, size) }
    func u64(_ offset: Int) -> UInt64 { base.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }
    func u32(_ offset: Int) -> UInt32 { base.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    func store(_ value: UInt64, at offset: Int) { base.storeBytes(of: value, toByteOffset: offset, as: UInt64.self) }
    func store(_ value: UInt32, at offset: Int) { base.storeBytes(of: value, toByteOffset: offset, as: UInt32.self) }
    func bytes(_ offset: Int, _ count: Int) -> [UInt8] { Array(UnsafeRawBufferPointer(start: base + offset, count: count)) }
    func restore(_ bytes: [UInt8], at offset: Int) { bytes.withUnsafeBytes { (base + offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
    func randomize(_ offset: Int, _ count: Int, using g: inout some RandomNumberGenerator) {
        for i in 0..<count { base.storeBytes(of: UInt8.random(in: 0...255, using: &g), toByteOffset: offset + i, as: UInt8.self) }
    }
}

/// Every header of the segment another process could write over: the segment header, the frame
/// slots', the snapshots', the command slots', the blobs' and the worker entries.
struct Regions {
    var all: [(name: String, offset: Int, bytes: Int)] = []
    init(_ raw: RawMapping) {
        let slotCount = Int(raw.u32(28)), slotSize = Int(raw.u64(32)), ring = Int(raw.u64(40))
        let state = Int(raw.u64(48)), stateSize = Int(raw.u64(56)), status = Int(raw.u64(64)), workers = Int(raw.u32(72))
        let commandSlots = Int(raw.u32(116)), commands = Int(raw.u64(120)), commandSize = Int(raw.u64(128))
        let blobs = Int(raw.u64(136)), blobCapacity = [Int(raw.u64(144)), Int(raw.u64(152))]
        all.append(("segment header", 0, 256))
        for k in 0..<slotCount { all.append(("frame slot \(k)", ring + k * slotSize, 128)) }
        for k in 0..<2 { all.append(("snapshot \(k)", state + k * stateSize, 128)) }
        for k in 0..<workers { all.append(("worker \(k)", status + k * 64, 64)) }
        for k in 0..<commandSlots { all.append(("command slot \(k)", commands + k * commandSize, 64)) }
        var offset = blobs
        for b in 0..<2 {
            all.append(("blob \(b) entry", offset, 64))
            all.append(("blob \(b) buffer 0", offset + 64, 64))
            all.append(("blob \(b) buffer 1", offset + 64 + 64 + blobCapacity[b], 64))
            offset += 64 + 2 * (64 + blobCapacity[b])
        }
    }
}

/// A small deterministic generator, so a failing run can be repeated from its seed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e3779b97f4a7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58476d1ce4e5b9
        z = (z ^ (z >> 27)) &* 0x94d049bb133111eb
        return z ^ (z >> 31)
    }
}

@Suite("A segment another process writes garbage over", .serialized)
struct ScribbleTests {
    static func layout() -> SegmentLayout {
        var l = SegmentLayout(atomCapacity: 300, slotCount: 4, workerCapacity: 4, velocities: true, forces: false)
        l.commandSlots = 4
        l.commandSlotSize = 8192
        l.engineBlobCapacity = 4096
        l.stateBlobCapacity = 4096
        return l
    }

    /// A populated segment in /dev/shm, a second mapping of it as a reader, and its raw bytes.
    static func scribbleable(_ tag: String) throws -> (owner: DevShmSegment, reader: SharedSegment, raw: RawMapping) {
        let owner = try DevShmSegment(tag, layout: layout())
        try populate(owner.segment)
        return (owner, try SharedSegment.open(name: owner.name), try RawMapping(path: owner.path))
    }

    /// Fills every part of the segment with something to read.
    static func populate(_ s: SharedSegment) throws {
        for i in 0..<6 {
            var f = sampleFrame(index: UInt64(i), atoms: 300, velocities: true)
            f.userForces = SparseForces(indices: [1, 2], x: [1, 2], y: [3, 4], z: [5, 6])
            try s.frames.publish(f)
        }
        var snap = EngineSnapshot()
        snap.x = (0..<300).map(Float.init); snap.y = snap.x; snap.z = snap.x; snap.vx = snap.x; snap.vy = snap.x; snap.vz = snap.x
        snap.imageX = (0..<300).map(Int32.init); snap.imageY = snap.imageX; snap.imageZ = snap.imageX
        try s.snapshots.write(snap)
        try s.snapshots.write(snap)
        try s.blobs.write(.engine, Array("engine state".utf8))
        try s.blobs.write(.state, Array("shared state".utf8))
        for k in 0..<3 { _ = try s.commands.post(Array("command \(k)".utf8)) }
        s.commands.finish(1, status: 0, appliedStep: 7, reply: Array("{}".utf8))
        for w in 0..<s.layout.workerCapacity {
            s.workers[w].setIdentity(role: UInt32(w), name: "worker-\(w)")
            s.workers[w].pid = getpid()
            s.workers[w].state = .ready
        }
    }

    /// Every kind of read once; each gives a value within the layout's bounds or a typed failure.
    /// Returns how many reads failed (a typed failure, or nil where nil means "none").
    static func readEverything(_ s: SharedSegment, layout l: SegmentLayout) -> Int {
        var failures = 0
        var frame = FrameRecord()
        if let f = s.frames.readLatest(into: &frame, attempts: 20) {
            #expect(f.atomCount <= l.atomCapacity && f.userForces.count <= l.userForceCapacity)
        } else { failures += 1 }
        let published = s.frames.published
        for index in [published &- 1, published &- 2, published, 0, UInt64.max, UInt64.random(in: 0...UInt64.max)] {
            switch s.frames.withFrame(index, { v -> Float in
                #expect(v.atomCount <= l.atomCapacity && v.userForceIndices.count <= l.userForceCapacity)
                // Touch every value the view lends, as an encoder would.
                var sum: Float = 0
                for p in [v.positions.x, v.positions.y, v.positions.z] { for value in p { sum += value } }
                if let vel = v.velocities { for value in vel.x { sum += value } }
                for value in v.userForces.z { sum += value }
                return sum + Float(v.userForceIndices.reduce(0, &+))
            }) {
            case .success: break
            case .failure: failures += 1
            }
            do { try s.frames.read(index, into: &frame) } catch { failures += 1 }
        }
        if s.frames.withLatestFrame(attempts: 20, { $0.atomCount }) == nil { failures += 1 }
        if let scalars = s.frames.latestScalars(attempts: 20) { _ = scalars.step } else { failures += 1 }
        do {
            if let snap = try s.snapshots.read() { #expect(snap.x.count <= l.atomCapacity && snap.imageZ.count == snap.x.count) }
        } catch { failures += 1 }
        for blob in [BlobStore.Blob.engine, .state] {
            do {
                if let bytes = try s.blobs.read(blob) { #expect(bytes.count <= s.blobs.capacity(blob)) }
            } catch { failures += 1 }
        }
        let posted = s.commands.posted, applied = s.commands.applied
        for seq in [applied &+ 1, posted, posted &+ 1, 1, 2, 3, UInt64.max] {
            do {
                if let payload = try s.commands.take(seq) { #expect(payload.count <= s.commands.capacity) }
            } catch { failures += 1 }
            do {
                if let r = try s.commands.result(seq) { #expect(r.reply.count <= 4096) }
            } catch { failures += 1 }
        }
        for w in 0..<l.workerCapacity {
            let entry = s.workers[w]
            _ = (entry.pid, entry.state, entry.progress, entry.heartbeatNanoseconds, entry.restarts, entry.role)
            #expect(entry.name.utf8.count <= 31 * 3)  // 31 bytes at most, each repaired to at most 3
        }
        let h = s.header
        #expect(h.totalBytes == (try? l.totalBytes()))
        return failures
    }

    @Test("targeted extremes and random bytes over every header: each read gives a value or a typed failure, never a crash")
    func scribble() throws {
        let (owner, reader, raw) = try Self.scribbleable("scribble")
        let writer = owner.segment
        let regions = Regions(raw).all
        let extremes: [UInt64] = [0, 1, 0xFFFF_FFFF, 0x8000_0000, 0xFFFF_FFFF_FFFF_FFFF, 0x7FFF_FFFF_FFFF_FFFF, 1 << 40, 1 << 62,
                                  UInt64(raw.size), UInt64(raw.size) - 1, 3]
        var g = SplitMix(state: 0x5eed)
        var reads = 0, failures = 0
        // 1. Targeted: every 4-byte field of every header, each extreme, alone, then restored.
        for region in regions {
            let saved = raw.bytes(region.offset, region.bytes)
            for field in stride(from: 0, to: region.bytes, by: 4) {
                let at = region.offset + field
                for value in extremes {
                    if field % 8 == 0 { raw.store(value, at: at) } else { raw.store(UInt32(truncatingIfNeeded: value), at: at) }
                    failures += Self.readEverything(reader, layout: reader.layout)
                    reads += 1
                    raw.restore(saved, at: region.offset)
                }
            }
        }
        // 2. Random bytes over random headers, accumulating, while the writer keeps writing.
        for round in 0..<300 {
            let region = regions[Int.random(in: 0..<regions.count, using: &g)]
            let start = Int.random(in: 0..<region.bytes, using: &g)
            raw.randomize(region.offset + start, Int.random(in: 1...(region.bytes - start), using: &g), using: &g)
            if round % 3 == 0 { try? writer.frames.publish(sampleFrame(index: UInt64(round), atoms: 300, velocities: true)) }
            if round % 7 == 0 { try? writer.blobs.write(.engine, Array("round \(round)".utf8)) }
            if round % 11 == 0 { _ = try? writer.commands.post(Array("round \(round)".utf8)) }
            failures += Self.readEverything(reader, layout: reader.layout)
            failures += Self.readEverything(writer, layout: writer.layout)
            reads += 2
        }
        // The segment as this process sees it never changed shape.
        let total = try Self.layout().totalBytes()
        #expect(reader.layout == Self.layout() && reader.header.totalBytes == total)
        #expect(reads > 1000 && failures > 0)
    }

    @Test("a scribbler thread and a reader at once: the reader keeps getting values or typed failures")
    func concurrent() throws {
        let (owner, reader, raw) = try Self.scribbleable("scribble-live")
        let regions = Regions(raw).all
        let stop = Atomic()
        let scribbler = Thread {
            var g = SplitMix(state: 0xbad)
            let extremes: [UInt64] = [0, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF, 1 << 62]
            while !stop.isSet {
                let region = regions[Int.random(in: 0..<regions.count, using: &g)]
                let field = Int.random(in: 0..<(region.bytes / 8), using: &g) * 8
                if Bool.random(using: &g) {
                    raw.store(extremes[Int.random(in: 0..<extremes.count, using: &g)], at: region.offset + field)
                } else {
                    raw.randomize(region.offset + field, 8, using: &g)
                }
            }
            stop.done()
        }
        scribbler.start()
        // At least 1.5 s of scribbling and at least 200 reads (on a loaded machine that takes
        // longer; the second deadline only bounds the test).
        let deadline = Date().addingTimeInterval(1.5), giveUp = Date().addingTimeInterval(60)
        var reads = 0
        while (Date() < deadline || reads < 200) && Date() < giveUp {
            _ = Self.readEverything(reader, layout: reader.layout)
            try? owner.segment.frames.publish(sampleFrame(index: UInt64(reads), atoms: 300, velocities: true))
            reads += 1
        }
        stop.set()
        stop.waitDone()
        #expect(reads >= 200)
    }

    @Test("no segment of these tests is left in /dev/shm")
    func noLeftovers() throws {
        do {
            let owner = try DevShmSegment("leftover", layout: Self.layout())
            try Self.populate(owner.segment)
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: "/dev/shm").filter { $0.hasPrefix("quiver-test-leftover-\(getpid())-") }
        #expect(names.isEmpty)
    }
}

/// A flag set by one thread and seen by another, and the other's answer.
final class Atomic: @unchecked Sendable {
    private let lock = NSCondition()
    private var flag = false, finished = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return flag }
    func set() { lock.lock(); flag = true; lock.unlock() }
    func done() { lock.lock(); finished = true; lock.broadcast(); lock.unlock() }
    func waitDone() { lock.lock(); while !finished { lock.wait() }; lock.unlock() }
}

@Suite("The C side checks what it is given and what it reads")
struct ValidationTests {
    @Test("qv_shm_publish_frame itself refuses more atoms than the capacity and writes nothing")
    func publishChecksAtoms() throws {
        let owner = try DevShmSegment("publish", layout: SegmentLayout(atomCapacity: 8, slotCount: 2))
        let raw = try RawMapping(path: owner.path)
        var seg = qv_shm_segment()
        #expect(qv_shm_attach(raw.base, UInt64(raw.size), &seg) == Int32(QV_SHM_OK))
        let x = [Float](repeating: 1, count: 9)
        var info = qv_shm_frame_info()
        info.atom_count = 9
        let rc = x.withUnsafeBufferPointer { p -> Int32 in
            var arrays: [UnsafePointer<Float>?] = [p.baseAddress, p.baseAddress, p.baseAddress]
            return arrays.withUnsafeMutableBufferPointer { qv_shm_publish_frame(&seg, &info, $0.baseAddress, nil) }
        }
        #expect(rc == Int32(QV_SHM_ERR_SIZE))
        #expect(owner.segment.frames.published == 0)
        #expect(qv_shm_attach(raw.base, UInt64(raw.size / 2), &seg) == Int32(QV_SHM_ERR_SIZE))
    }

    @Test("a command slot's length or a blob's length written over: .corrupt; the older blob buffer is used when it is consistent")
    func lengths() throws {
        let (owner, _, raw) = try ScribbleTests.scribbleable("lengths")
        let s = owner.segment
        let commands = Int(raw.u64(120)), commandSize = Int(raw.u64(128))
        raw.store(UInt32.max, at: commands + 2 * commandSize + 16)  // command 2's payload length
        #expect(throws: ReadFailure.corrupt) { try s.commands.take(2) }
        raw.store(UInt32.max, at: commands + 1 * commandSize + 48)  // command 1's reply length
        #expect(throws: ReadFailure.corrupt) { try s.commands.result(1) }
        #expect(try s.commands.take(3).map { String(decoding: $0, as: UTF8.self) } == "command 2")
        // Blob 0: one write, in buffer 0; its length written over leaves nothing consistent.
        let blob = Int(raw.u64(136))
        raw.store(UInt64.max, at: blob + 64 + 16)
        #expect(throws: ReadFailure.corrupt) { try s.blobs.read(.engine) }
        try s.blobs.write(.engine, Array("second".utf8))
        #expect(try s.blobs.read(.engine) == Array("second".utf8))
        raw.store(UInt64(1 << 40), at: blob + 64 + 64 + 4096 + 16)  // the newest (buffer 1) too: the older is bad as well
        #expect(throws: ReadFailure.corrupt) { try s.blobs.read(.engine) }
        // Snapshot atom counts beyond the capacity.
        let state = Int(raw.u64(48)), stateSize = Int(raw.u64(56))
        raw.store(UInt32(100_000), at: state + 32)
        #expect(try s.snapshots.read()?.x.count == 300)  // the other buffer
        raw.store(UInt32(100_000), at: state + stateSize + 32)
        #expect(throws: ReadFailure.corrupt) { try s.snapshots.read() }
        // A frame slot's atom count beyond the capacity: that frame is corrupt, the one before it is read.
        let ring = Int(raw.u64(40)), slotSize = Int(raw.u64(32))
        let newest = s.frames.published - 1
        raw.store(UInt32.max, at: ring + Int(newest % 4) * slotSize + 32)
        #expect(s.frames.withFrame(newest) { $0.atomCount } == .failure(.corrupt))
        #expect(s.frames.withLatestFrame { $0.scalars.index } == newest - 1)
    }

    @Test("the header's sizes written over change nothing for a process that already opened the segment; a new opener refuses it")
    func header() throws {
        let (owner, reader, raw) = try ScribbleTests.scribbleable("header")
        for offset in stride(from: 8, to: 96, by: 8) { raw.store(UInt64.max, at: offset) }
        for offset in stride(from: 112, to: 160, by: 8) { raw.store(UInt64.max, at: offset) }
        var frame = FrameRecord()
        #expect(reader.frames.readLatest(into: &frame)?.index == 5)
        #expect(try reader.blobs.read(.state) == Array("shared state".utf8))
        #expect(reader.workers[3].name == "worker-3")
        #expect(throws: SharedMemoryError.self) { _ = try SharedSegment.open(name: owner.name) }
    }

    @Test("the parts keep the mapping alive after the segment object is gone")
    func partsOwnTheMapping() throws {
        let frames: FrameRing
        let workers: WorkerTable
        do {
            let owner = try DevShmSegment("parts", layout: SegmentLayout(atomCapacity: 10, slotCount: 2, workerCapacity: 2))
            try owner.segment.frames.publish(sampleFrame(index: 0, atoms: 10))
            owner.segment.workers[1].setIdentity(role: 1, name: "kept")
            frames = owner.segment.frames
            workers = owner.segment.workers
        }
        #expect(frames.published == 1 && frames.latestScalars()?.index == 0)
        #expect(workers.capacity == 2 && workers[1].name == "kept")
    }
}
