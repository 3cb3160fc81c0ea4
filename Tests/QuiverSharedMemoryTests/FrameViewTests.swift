import Foundation
import QuiverSharedMemory
import Testing

/// `withFrame`: a frame read in place under the seqlock (the broadcaster encodes from it without
/// copying). What the body computed counts only when the slot held the frame unchanged throughout.
@Suite("Frames read in place")
struct FrameViewTests {
    static func copy(_ v: FrameView) -> FrameRecord {
        var f = FrameRecord()
        let s = v.scalars
        (f.index, f.step, f.time, f.box) = (s.index, s.step, s.time, s.box)
        (f.potentialEnergy, f.kineticEnergy, f.temperature, f.userEnergy, f.userWork) =
            (s.potentialEnergy, s.kineticEnergy, s.temperature, s.userEnergy, s.userWork)
        f.x = Array(v.positions.x)
        f.y = Array(v.positions.y)
        f.z = Array(v.positions.z)
        f.velocities = v.velocities.map { (Array($0.x), Array($0.y), Array($0.z)) }
        f.forces = v.forces.map { (Array($0.x), Array($0.y), Array($0.z)) }
        f.userForces = SparseForces(indices: Array(v.userForceIndices), x: Array(v.userForces.x), y: Array(v.userForces.y),
                                    z: Array(v.userForces.z))
        return f
    }

    @Test("the view holds what a copying read gets: arrays, optional arrays, user forces, scalars")
    func sameAsCopy() throws {
        let dir = ScratchDirectory()
        let s = try SharedSegment.create(name: "quiver-view", directory: dir.path,
                                         layout: SegmentLayout(atomCapacity: 500, slotCount: 4, velocities: true, forces: true))
        var a = sampleFrame(index: 0, atoms: 500, velocities: true, forces: true)
        a.userForces = SparseForces(indices: [3, 9], x: [1, 2], y: [3, 4], z: [5, 6])
        a.userEnergy = -2
        a.userWork = 7
        try s.frames.publish(a)
        try s.frames.publish(sampleFrame(index: 1, atoms: 200))
        var copied = FrameRecord()
        try s.frames.read(0, into: &copied)
        let viewed = try s.frames.withFrame(0) { Self.copy($0) }.get()
        #expect(viewed == copied && viewed == a)
        let latest = try #require(s.frames.withLatestFrame { Self.copy($0) })
        #expect(latest == sampleFrame(index: 1, atoms: 200))
        #expect(latest.velocities == nil && latest.forces == nil && latest.userForces.isEmpty)
    }

    @Test("nothing published, a lapped frame, a frame not yet written: typed failures, body not run")
    func failures() throws {
        let dir = ScratchDirectory()
        let s = try SharedSegment.create(name: "quiver-view-f", directory: dir.path, layout: SegmentLayout(atomCapacity: 10, slotCount: 3))
        var ran = false
        #expect(s.frames.withLatestFrame { _ -> Int in ran = true; return 0 } == nil)
        for i in 0..<5 { try s.frames.publish(sampleFrame(index: UInt64(i), atoms: 10)) }
        #expect(s.frames.withFrame(1) { _ -> Int in ran = true; return 1 } == .failure(.lapped))
        #expect(s.frames.withFrame(7) { _ -> Int in ran = true; return 7 } == .failure(.empty))
        #expect(!ran)
        #expect(try s.frames.withFrame(4) { $0.x.count }.get() == 10)
    }

    @Test("the writer overwriting the slot while the body runs: its result is discarded as torn, even a thrown error")
    func tornWhileInUse() throws {
        struct Failure: Error {}
        let dir = ScratchDirectory()
        let s = try SharedSegment.create(name: "quiver-view-t", directory: dir.path, layout: SegmentLayout(atomCapacity: 100, slotCount: 2))
        try s.frames.publish(sampleFrame(index: 0, atoms: 100))
        try s.frames.publish(sampleFrame(index: 1, atoms: 100))
        // Frame 2 goes into frame 0's slot while the body still reads frame 0.
        let torn = try s.frames.withFrame(0) { view -> Float in
            try s.frames.publish(sampleFrame(index: 2, atoms: 100))
            return view.positions.x[5]
        }
        #expect(torn == .failure(.torn))
        let tornThrow = try s.frames.withFrame(1) { (_) throws(Failure) -> Int in
            try? s.frames.publish(sampleFrame(index: 3, atoms: 100))
            throw Failure()
        }
        #expect(tornThrow == .failure(.torn))
        // An error from a body whose slot did not change is the caller's.
        #expect(throws: Failure.self) { try s.frames.withFrame(2) { (_) throws(Failure) -> Int in throw Failure() } }
        // The newest frame, read in place, is frame 3.
        #expect(s.frames.withLatestFrame { $0.scalars.index } == 3)
        // withLatestFrame tries again when the writer overwrote the slot under the body: the first
        // call reads frame 3 while frames 4 and 5 go in (5 into frame 3's slot); the second gets 5.
        var calls: [UInt64] = []
        let index = try s.frames.withLatestFrame { view -> UInt64 in
            calls.append(view.scalars.index)
            if calls.count == 1 { for i in 4...5 { try s.frames.publish(sampleFrame(index: UInt64(i), atoms: 100)) } }
            return view.scalars.index
        }
        #expect(index == 5 && calls == [3, 5])
    }

    @Test("a slot whose bytes no longer match its checksum is corrupt; the newest-frame read falls back one frame")
    func corrupt() throws {
        let dir = ScratchDirectory()
        let s = try SharedSegment.create(name: "quiver-view-c", directory: dir.path, layout: SegmentLayout(atomCapacity: 64, slotCount: 4))
        try s.frames.publish(sampleFrame(index: 0, atoms: 64))
        var newest = sampleFrame(index: 1, atoms: 64)
        newest.x = (0..<64).map { 1000 + Float($0) }  // a pattern that occurs once in the file
        try s.frames.publish(newest)
        // Flip one bit of x[5] of frame 1 through the file backing the segment.
        let handle = try #require(FileHandle(forUpdatingAtPath: s.path))
        defer { try? handle.close() }
        let bytes = try #require(try handle.readToEnd())
        let pattern = (1000..<1004).flatMap { withUnsafeBytes(of: Float($0).bitPattern.littleEndian, Array.init) }
        let start = try #require(bytes.firstRange(of: Data(pattern))).lowerBound
        try handle.seek(toOffset: UInt64(start + 5 * 4))
        handle.write(Data([bytes[start + 5 * 4] ^ 0x01]))
        #expect(s.frames.withFrame(1) { _ in 0 } == .failure(.corrupt))
        #expect(s.frames.withLatestFrame { $0.scalars.index } == 0)
    }
}

extension FrameView {
    var x: UnsafeBufferPointer<Float> { positions.x }
}
