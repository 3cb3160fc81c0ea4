import Foundation
import Testing

/// Starts `quiver` with arguments, capturing stdout; the caller reaps it.
func spawnQuiver(_ arguments: [String]) throws -> (Process, Drain) {
    let p = Process()
    p.executableURL = QuiverProcess.binary
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    return (p, Drain(out.fileHandleForReading))
}

/// Waits for a process with a deadline; SIGKILLs it (by pid) past the deadline.
func reap(_ p: Process, within seconds: Double) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while p.isRunning && Date() < deadline { usleep(5_000) }
    let inTime = !p.isRunning
    if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
    return inTime
}

func parseCounts(_ text: String) throws -> [String: Int] {
    let line = try #require(text.split(separator: "\n").last.map(String.init))
    return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Int])
}

@Suite("Shared-memory frame ring across processes", .serialized)
struct SharedMemoryProcessTests {
    let name = "quiver-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    @Test("one writer, three reader processes: no torn frame is ever accepted")
    func seqlockStress() throws {
        defer { unlink("/dev/shm/" + name) }
        let (writer, writerOut) = try spawnQuiver(["debug", "shm-writer", "--name", name, "--create", "--atoms", "20000", "--seconds", "3"])
        var readers: [(Process, Drain)] = []
        // Two copying readers and one that reads in place, as the broadcaster does, two frames
        // behind the newest: the slot the writer fills next, so it is often overwritten while being
        // read (with the seqlock check after the read removed, it accepted 225 bad frames in 2.5 s).
        for k in 0..<3 { readers.append(try spawnQuiver(["debug", "shm-reader", "--name", name, "--seconds", "2.5"] + (k == 2 ? ["--in-place", "--lag", "2"] : []))) }
        var totalReads = 0, totalRetries = 0
        for (p, out) in readers {
            #expect(reap(p, within: 20))
            #expect(p.terminationStatus == 0)
            let c = try parseCounts(out.finish())
            #expect(c["bad"] == 0, "a reader accepted a frame that does not match its pattern: \(c)")
            #expect(c["corrupt"] == 0 && c["went_back"] == 0, "\(c)")
            #expect((c["reads"] ?? 0) > 100, "\(c)")
            totalReads += c["reads"] ?? 0
            totalRetries += (c["torn"] ?? 0) + (c["lapped"] ?? 0) + (c["busy"] ?? 0)
        }
        #expect(reap(writer, within: 20))
        let w = try parseCounts(writerOut.finish())
        #expect((w["frames_published"] ?? 0) > 100)
        print("seqlock stress: \(totalReads) frames accepted by 3 readers, \(totalRetries) copies rejected and retried, writer published \(w["frames_published"] ?? 0)")
    }

    @Test("SIGKILL the writer mid-write 20 times: readers never accept a torn frame, the index never goes back")
    func killWriter() throws {
        defer { unlink("/dev/shm/" + name) }
        let (first, _) = try spawnQuiver(["debug", "shm-writer", "--name", name, "--create", "--atoms", "50000", "--seconds", "0"])
        var readers: [(Process, Drain)] = []
        usleep(100_000)
        for k in 0..<2 { readers.append(try spawnQuiver(["debug", "shm-reader", "--name", name, "--seconds", "4"] + (k == 1 ? ["--in-place", "--lag", "2"] : []))) }
        var writer = first
        for round in 0..<20 {
            usleep(useconds_t(UInt32.random(in: 20_000...120_000)))
            kill(writer.processIdentifier, SIGKILL)
            writer.waitUntilExit()
            #expect(writer.terminationReason == .uncaughtSignal, "round \(round)")
            writer = try spawnQuiver(["debug", "shm-writer", "--name", name, "--seconds", "0"]).0
        }
        usleep(200_000)
        kill(writer.processIdentifier, SIGKILL)
        writer.waitUntilExit()
        var abandoned = 0
        for (p, out) in readers {
            #expect(reap(p, within: 20))
            let c = try parseCounts(out.finish())
            #expect(c["bad"] == 0 && c["corrupt"] == 0 && c["went_back"] == 0, "\(c)")
            #expect((c["reads"] ?? 0) > 50, "\(c)")
            abandoned += c["abandoned"] ?? 0
        }
        print("writer killed 20 times: readers saw \(abandoned) abandoned slots, accepted no torn frame")
    }
}
