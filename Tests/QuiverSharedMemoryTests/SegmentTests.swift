import Foundation
import QuiverSharedMemory
import Testing

/// A private directory for segments, removed with everything in it at the end.
final class ScratchDirectory {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "quiver-shm-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

func sampleFrame(index: UInt64, atoms: Int, velocities: Bool = false, forces: Bool = false) -> FrameRecord {
    var f = FrameRecord()
    f.index = index
    f.step = index * 5
    f.time = Double(index) * 0.05
    f.box = [3, 4, 5]
    f.potentialEnergy = -10
    f.kineticEnergy = 4
    f.temperature = 300
    f.x = (0..<atoms).map { Float($0) + Float(index) }
    f.y = (0..<atoms).map { Float($0) * 2 }
    f.z = (0..<atoms).map { -Float($0) }
    if velocities { f.velocities = (f.z, f.x, f.y) }
    if forces { f.forces = (f.y, f.z, f.x) }
    return f
}

@Suite("Shared-memory segments")
struct SegmentTests {
    @Test("create, publish, open from another mapping, read back exactly")
    func roundTrip() throws {
        let dir = ScratchDirectory()
        let layout = SegmentLayout(atomCapacity: 1000, slotCount: 4, workerCapacity: 4, velocities: true, forces: true)
        let writer = try SharedSegment.create(name: "quiver-rt", directory: dir.path, layout: layout)
        let attrs = try FileManager.default.attributesOfItem(atPath: writer.path)
        #expect((attrs[.posixPermissions] as? Int) == 0o600)
        #expect((attrs[.size] as? Int) == (try layout.totalBytes()))
        let reader = try SharedSegment.open(name: "quiver-rt", directory: dir.path)
        #expect(reader.layout == layout)
        #expect(reader.header.creatorPID == getpid())
        #expect(reader.frames.published == 0)
        var out = FrameRecord()
        #expect(throws: ReadFailure.empty) { try reader.frames.read(0, into: &out) }

        let a = sampleFrame(index: 0, atoms: 1000, velocities: true, forces: true)
        try writer.frames.publish(a)
        let b = sampleFrame(index: 1, atoms: 700) // fewer atoms, no optional arrays
        try writer.frames.publish(b)
        #expect(reader.frames.published == 2)
        try reader.frames.read(0, into: &out)
        #expect(out == a)
        #expect(out.writerPID == getpid())
        #expect(out.publishedUnixNanoseconds > 0)
        #expect(reader.frames.readLatest(into: &out) == b)
        #expect(out.velocities == nil && out.forces == nil)
        try writer.unlink()
        #expect(!FileManager.default.fileExists(atPath: writer.path))
    }

    @Test("a reader that falls behind the ring is told it was lapped")
    func lapped() throws {
        let dir = ScratchDirectory()
        let s = try SharedSegment.create(name: "quiver-lap", directory: dir.path, layout: SegmentLayout(atomCapacity: 10, slotCount: 3))
        for i in 0..<5 { try s.frames.publish(sampleFrame(index: UInt64(i), atoms: 10)) }
        var out = FrameRecord()
        #expect(throws: ReadFailure.lapped) { try s.frames.read(1, into: &out) }
        try s.frames.read(2, into: &out)
        #expect(out.index == 2)
        #expect(throws: ReadFailure.empty) { try s.frames.read(5, into: &out) }
    }

    @Test("frames larger than the segment are refused")
    func capacity() throws {
        let dir = ScratchDirectory()
        let s = try SharedSegment.create(name: "quiver-cap", directory: dir.path, layout: SegmentLayout(atomCapacity: 10))
        #expect(throws: SharedMemoryError.self) { try s.frames.publish(sampleFrame(index: 0, atoms: 11)) }
        var bad = sampleFrame(index: 0, atoms: 5)
        bad.y.removeLast()
        #expect(throws: SharedMemoryError.self) { try s.frames.publish(bad) }
        #expect(s.frames.published == 0)
    }

    @Test("bad names, missing, duplicate, foreign and truncated segments give typed errors")
    func errors() throws {
        let dir = ScratchDirectory()
        let layout = SegmentLayout(atomCapacity: 10)
        #expect(throws: SharedMemoryError.notFound(path: dir.path + "/quiver-none")) { _ = try SharedSegment.open(name: "quiver-none", directory: dir.path) }
        _ = try SharedSegment.create(name: "quiver-dup", directory: dir.path, layout: layout)
        #expect(throws: SharedMemoryError.exists(path: dir.path + "/quiver-dup")) { _ = try SharedSegment.create(name: "quiver-dup", directory: dir.path, layout: layout) }
        #expect(throws: SharedMemoryError.self) { _ = try SharedSegment.create(name: "../escape", directory: dir.path, layout: layout) }
        #expect(throws: SharedMemoryError.self) { _ = try SharedSegment.create(name: "quiver-x", directory: dir.path, layout: SegmentLayout(atomCapacity: 0)) }
        #expect(throws: SharedMemoryError.self) { _ = try SharedSegment.create(name: "quiver-x", directory: dir.path, layout: SegmentLayout(atomCapacity: 5, slotCount: 1)) }

        FileManager.default.createFile(atPath: dir.path + "/quiver-foreign", contents: Data(repeating: 0x41, count: 8192))
        #expect(throws: SharedMemoryError.self) { _ = try SharedSegment.open(name: "quiver-foreign", directory: dir.path) }
        FileManager.default.createFile(atPath: dir.path + "/quiver-tiny", contents: Data(repeating: 0, count: 10))
        #expect(throws: SharedMemoryError.self) { _ = try SharedSegment.open(name: "quiver-tiny", directory: dir.path) }
        // A real segment cut short: its header promises more than the file holds.
        let whole = try Data(contentsOf: URL(fileURLWithPath: dir.path + "/quiver-dup"))
        FileManager.default.createFile(atPath: dir.path + "/quiver-cut", contents: whole.prefix(whole.count / 2))
        do {
            _ = try SharedSegment.open(name: "quiver-cut", directory: dir.path)
            Issue.record("a truncated segment was accepted")
        } catch let SharedMemoryError.invalidSegment(_, reason) {
            #expect(reason.contains("smaller"))
        }
    }

    @Test("engine snapshots: the newest consistent one is returned")
    func snapshots() throws {
        let dir = ScratchDirectory()
        let s = try SharedSegment.create(name: "quiver-snap", directory: dir.path, layout: SegmentLayout(atomCapacity: 50))
        #expect(try s.snapshots.read() == nil)
        for k in 0..<3 {
            var snap = EngineSnapshot()
            snap.step = UInt64(100 * k)
            snap.time = Double(k)
            snap.box = [1, 2, 3]
            snap.framesPublished = UInt64(k)
            snap.x = (0..<40).map { Float($0 + k) }
            snap.y = snap.x; snap.z = snap.x; snap.vx = snap.x; snap.vy = snap.x; snap.vz = snap.x
            snap.imageX = (0..<40).map { Int32($0 - k) }
            snap.imageY = snap.imageX; snap.imageZ = snap.imageX
            try s.snapshots.write(snap)
        }
        let r = try #require(try s.snapshots.read())
        #expect(r.step == 200 && r.index == 2 && r.framesPublished == 2)
        #expect(r.x == (0..<40).map { Float($0 + 2) })
        #expect(r.imageZ == (0..<40).map { Int32($0 - 2) })
        #expect(r.writerPID == getpid())
    }

    @Test("worker status entries are shared between mappings")
    func workerStatus() throws {
        let dir = ScratchDirectory()
        let a = try SharedSegment.create(name: "quiver-ws", directory: dir.path, layout: SegmentLayout(atomCapacity: 1, workerCapacity: 3))
        let b = try SharedSegment.open(name: "quiver-ws", directory: dir.path)
        let w = a.workers[2]
        w.setIdentity(role: 7, name: "broadcaster")
        w.pid = 4242
        w.state = .ready
        w.restarts = 3
        w.advance(); w.advance()
        let v = b.workers[2]
        #expect(v.name == "broadcaster" && v.role == 7 && v.pid == 4242 && v.state == .ready && v.restarts == 3)
        #expect(v.progress == 2 && v.heartbeatNanoseconds > 0)
        #expect(b.workers[0].state == .empty)
    }

    @Test("stale segments of dead creators are removed, live ones kept")
    func stale() throws {
        let dir = ScratchDirectory()
        _ = try SharedSegment.create(name: "quiver-live", directory: dir.path, layout: SegmentLayout(atomCapacity: 1))
        // A process that has exited: its pid names a dead creator.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        let dead = p.processIdentifier
        FileManager.default.createFile(atPath: dir.path + "/quiver-run-\(dead)", contents: Data(repeating: 0, count: 300))
        FileManager.default.createFile(atPath: dir.path + "/other-\(dead)", contents: Data())
        let removed = SharedSegment.removeStale(prefix: "quiver-", directory: dir.path)
        #expect(removed == ["quiver-run-\(dead)"])
        #expect(FileManager.default.fileExists(atPath: dir.path + "/quiver-live"))
        #expect(FileManager.default.fileExists(atPath: dir.path + "/other-\(dead)"))
    }

    @Test("a backing store too small fails cleanly at creation, never with SIGBUS later",
          .enabled(if: getuid() == 0, "mounting a 1 MB tmpfs needs root"))
    func noSpace() throws {
        let dir = ScratchDirectory()
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir.path]
        try mount.run()
        mount.waitUntilExit()
        try #require(mount.terminationStatus == 0, "mount failed")
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = [dir.path]
            try? umount.run()
            umount.waitUntilExit()
        }
        let layout = SegmentLayout(atomCapacity: 200_000, slotCount: 4) // about 10 MB
        do {
            _ = try SharedSegment.create(name: "quiver-big", directory: dir.path, layout: layout)
            Issue.record("a 10 MB segment was created on a 1 MB tmpfs")
        } catch let SharedMemoryError.noSpace(path, bytes, _) {
            #expect(path.hasSuffix("quiver-big"))
            #expect(bytes == (try layout.totalBytes()))
        }
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/quiver-big"), "the failed segment must not be left behind")
        // A segment that fits works there.
        var fits = SegmentLayout(atomCapacity: 1000)
        fits.commandSlots = 4
        fits.engineBlobCapacity = 16 << 10
        fits.stateBlobCapacity = 16 << 10
        let small = try SharedSegment.create(name: "quiver-small", directory: dir.path, layout: fits)
        try small.frames.publish(sampleFrame(index: 0, atoms: 1000))
        try small.unlink()
    }
}
