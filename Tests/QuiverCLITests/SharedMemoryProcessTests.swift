import Foundation
import QuiverSharedMemory
import Testing

/// Starts `quiver` with arguments, capturing stdout (and stderr when `errors` is given); the caller reaps it.
func spawnQuiver(_ arguments: [String], errors: Pipe? = nil) throws -> (Process, Drain) {
    let p = Process()
    p.executableURL = QuiverProcess.binary
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = errors ?? FileHandle.nullDevice
    try p.run()
    return (p, Drain(out.fileHandleForReading))
}

/// Waits (the deadline only bounds the test) until segment `name` exists and holds a frame.
func openWritten(_ name: String, within seconds: Double = 30) -> SharedSegment? {
    var segment: SharedSegment?
    _ = eventually(within: seconds) {
        if segment == nil { segment = try? SharedSegment.open(name: name) }
        return (segment?.frames.published ?? 0) > 0
    }
    return (segment?.frames.published ?? 0) > 0 ? segment : nil
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
        // The readers start once the writer is writing (a loaded machine may take a while to start it).
        _ = try #require(openWritten(name), "the writer never created the segment")
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
        /// A writer, with its stderr (why it exited, if it did).
        func spawnWriter(_ extra: [String]) throws -> (Process, Drain) {
            let errors = Pipe()
            let text = Drain(errors.fileHandleForReading)
            return (try spawnQuiver(["debug", "shm-writer", "--name", name, "--seconds", "0"] + extra, errors: errors).0, text)
        }
        var (writer, errorText) = try spawnWriter(["--create", "--atoms", "50000"])
        defer { if writer.isRunning { kill(writer.processIdentifier, SIGKILL); writer.waitUntilExit() } }
        // Wait for the event (the segment created and written), not a fixed time.
        let ring = try #require(openWritten(name), "the writer never created the segment: \(errorText.text)")
        var readers: [(Process, Drain)] = []
        defer { for (p, _) in readers where p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        for k in 0..<2 { readers.append(try spawnQuiver(["debug", "shm-reader", "--name", name, "--seconds", "10"] + (k == 1 ? ["--in-place", "--lag", "2"] : []))) }
        var watched = 0
        for round in 0..<20 {
            // Kill a writer that is writing: wait until this one has published (a writer still
            // starting on a loaded machine has no frame to tear; the deadline only bounds the
            // test), then kill it at a random moment among its next frames (each of 50,000 atoms).
            let mark = ring.frames.published
            #expect(eventually(within: 30) { ring.frames.published > mark + 1 || !writer.isRunning }, "round \(round): the writer never published")
            #expect(writer.isRunning, "round \(round): the writer exited by itself (status \(writer.terminationStatus)): \(errorText.text)")
            usleep(useconds_t(UInt32.random(in: 0...20_000)))
            if readers.allSatisfy({ $0.0.isRunning }) { watched += 1 }
            kill(writer.processIdentifier, SIGKILL)
            writer.waitUntilExit()
            #expect(writer.terminationReason == .uncaughtSignal, "round \(round): status \(writer.terminationStatus): \(errorText.text)")
            (writer, errorText) = try spawnWriter([])
        }
        let mark = ring.frames.published
        #expect(eventually(within: 30) { ring.frames.published > mark + 1 || !writer.isRunning }, "the last writer never published")
        kill(writer.processIdentifier, SIGKILL)
        writer.waitUntilExit()
        var abandoned = 0
        for (p, out) in readers {
            #expect(reap(p, within: 30))
            let c = try parseCounts(out.finish())
            #expect(c["bad"] == 0 && c["corrupt"] == 0 && c["went_back"] == 0, "\(c)")
            #expect((c["reads"] ?? 0) > 50, "\(c)")
            abandoned += c["abandoned"] ?? 0
        }
        print("writer killed 20 times (\(watched) while both readers ran): readers saw \(abandoned) abandoned slots, accepted no torn frame")
    }
}
