import Foundation
import QuiverSharedMemory
import Testing

@Suite("Command ring, blobs and user forces in shared memory")
struct CommandRingTests {
    func small() -> SegmentLayout {
        var l = SegmentLayout(atomCapacity: 100, slotCount: 4, workerCapacity: 2)
        l.commandSlots = 4
        l.commandSlotSize = 8192
        l.engineBlobCapacity = 4096
        l.stateBlobCapacity = 8192
        return l
    }

    @Test("commands are taken in order, answered, and the ring refuses a fifth unfinished one")
    func ring() throws {
        let dir = ScratchDirectory()
        let control = try SharedSegment.create(name: "quiver-cmd", directory: dir.path, layout: small())
        let engine = try SharedSegment.open(name: "quiver-cmd", directory: dir.path)
        #expect(engine.layout == small())
        #expect(control.commands.capacity == 8192 - 64 - 4096)
        var seqs: [UInt64] = []
        for k in 0..<4 { seqs.append(try control.commands.post(Array("command \(k)".utf8))) }
        #expect(seqs == [1, 2, 3, 4])
        #expect(throws: CommandRing.PostFailure.full) { try control.commands.post([1]) }
        #expect(try control.commands.result(1) == nil)
        #expect(engine.commands.posted == 4 && engine.commands.applied == 0)
        #expect(try engine.commands.take(2).map { String(decoding: $0, as: UTF8.self) } == "command 1")
        #expect(try engine.commands.take(5) == nil)
        engine.commands.finish(1, status: 0, appliedStep: 42, reply: Array("{\"ok\":1}".utf8))
        let r = try #require(try control.commands.result(1))
        #expect(r.status == 0 && r.appliedStep == 42 && String(decoding: r.reply, as: UTF8.self) == "{\"ok\":1}")
        #expect(engine.commands.applied == 1)
        // slot 1 is free again: the fifth command goes in, and the first's result is gone
        #expect(try control.commands.post(Array("fifth".utf8)) == 5)
        #expect(throws: ReadFailure.lapped) { try control.commands.result(1) }
        #expect(try engine.commands.take(5).map { String(decoding: $0, as: UTF8.self) } == "fifth")
        // a refused command keeps its status; an oversized reply is cut to 4 KiB
        engine.commands.finish(2, status: 1, appliedStep: 43, reply: [UInt8](repeating: 65, count: 5000))
        let r2 = try #require(try control.commands.result(2))
        #expect(r2.status == 1 && r2.reply.count == 4096)
        #expect(throws: CommandRing.PostFailure.tooLarge(bytes: 5000, capacity: 8192 - 64 - 4096)) {
            try control.commands.post([UInt8](repeating: 0, count: 5000))
        }
    }

    @Test("blobs: the newest version is read back from another mapping; an oversized write is refused")
    func blobs() throws {
        let dir = ScratchDirectory()
        let a = try SharedSegment.create(name: "quiver-blob", directory: dir.path, layout: small())
        let b = try SharedSegment.open(name: "quiver-blob", directory: dir.path)
        #expect(try b.blobs.read(.engine) == nil)
        try a.blobs.write(.engine, Array("one".utf8))
        try a.blobs.write(.engine, Array("two".utf8))
        try a.blobs.write(.state, [UInt8](repeating: 7, count: 8192))
        #expect(try b.blobs.read(.engine) == Array("two".utf8))
        #expect(try b.blobs.read(.state) == [UInt8](repeating: 7, count: 8192))
        #expect(throws: SharedMemoryError.self) { try a.blobs.write(.engine, [UInt8](repeating: 0, count: 4097)) }
        #expect(try b.blobs.read(.engine) == Array("two".utf8))
    }

    @Test("a frame carries its sparse user forces, energy and work, checksummed")
    func userForces() throws {
        let dir = ScratchDirectory()
        let w = try SharedSegment.create(name: "quiver-user", directory: dir.path, layout: small())
        let r = try SharedSegment.open(name: "quiver-user", directory: dir.path)
        var f = sampleFrame(index: 0, atoms: 100)
        f.userEnergy = -1.5
        f.userWork = 2.25
        f.userForces = SparseForces(indices: [3, 7, 99], x: [1, 2, 3], y: [-1, 0, 5], z: [0.5, 0.25, -8])
        try w.frames.publish(f)
        var out = FrameRecord()
        try r.frames.read(0, into: &out)
        #expect(out.userForces == f.userForces)
        #expect(out.userEnergy == -1.5 && out.userWork == 2.25)
        var g = sampleFrame(index: 1, atoms: 100)
        g.userForces = SparseForces(indices: [100], x: [1], y: [1], z: [1])
        #expect(throws: SharedMemoryError.self) { try w.frames.publish(g) }
        // a frame with many user forces (more than the reader's first guess of 64)
        var h = sampleFrame(index: 1, atoms: 100)
        h.userForces = SparseForces(indices: (0..<100).map { UInt32($0) }, x: (0..<100).map { Float($0) }, y: .init(repeating: 1, count: 100), z: .init(repeating: 2, count: 100))
        try w.frames.publish(h)
        try r.frames.read(1, into: &out)
        #expect(out.userForces == h.userForces)
    }
}
