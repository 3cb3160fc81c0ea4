import Foundation
import QuiverSharedMemory
import Testing

@Suite("The engine state file")
struct EngineStateFileTests {
    func snapshot(atoms n: Int) -> EngineSnapshot {
        var s = EngineSnapshot()
        s.index = 7; s.step = 123_456; s.time = 1234.56; s.box = SIMD3(5.5, 6.25, 7.125); s.framesPublished = 999; s.writerPID = 4242
        s.x = (0..<n).map { Float($0) * 0.5 }; s.y = (0..<n).map { -Float($0) }; s.z = (0..<n).map { Float($0) / 3 }
        s.vx = (0..<n).map { Float($0) * 1e-3 }; s.vy = s.vx.map { -$0 }; s.vz = s.x
        s.imageX = (0..<n).map { Int32($0) - 2 }; s.imageY = (0..<n).map { Int32($0) }; s.imageZ = (0..<n).map { -Int32($0) }
        return s
    }

    @Test("written atomically and read back bit for bit: the versioned header, then the arrays; a damaged, cut or foreign file is refused")
    func roundTrip() throws {
        let s = snapshot(atoms: 37)
        let bytes = EngineStateFile.encode(s)
        #expect(bytes.count == 96 + 36 * 37)
        #expect(Array(bytes[0..<8]) == Array("QVENGST".utf8) + [0] && bytes[8] == 1 && bytes[12] == 96 && bytes[16] == 37)
        let path = NSTemporaryDirectory() + "quiver-state-\(getpid()).bin"
        defer { unlink(path) }
        try EngineStateFile.write(s, to: path)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
        var back = try EngineStateFile.read(path)
        #expect(back == s)
        back = try EngineStateFile.decode(EngineStateFile.encode(snapshot(atoms: 0)))
        #expect(back.x.isEmpty && back.step == 123_456)
        var damaged = bytes
        damaged[200] ^= 1
        #expect(throws: EngineStateFile.Invalid.self) { try EngineStateFile.decode(damaged) }
        #expect(throws: EngineStateFile.Invalid.self) { try EngineStateFile.decode(Array(bytes.dropLast(4))) }
        var future = bytes
        future[8] = 2
        #expect(throws: EngineStateFile.Invalid.self) { try EngineStateFile.decode(future) }
        #expect(throws: EngineStateFile.Invalid.self) { try EngineStateFile.decode(Array("not a state file".utf8)) }
    }
}
