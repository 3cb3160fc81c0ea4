import Foundation
import Testing

/// The package root (Tests/QuiverCLITests/ExamplesTests.swift -> ../../..).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

@Suite("Examples: the embedding package builds and runs", .serialized)
struct ExamplesTests {
    /// Builds the Examples package (debug: the quickest build; the example is small) and returns
    /// its products' directory.
    func buildExamples() throws -> URL {
        let examples = packageRoot.appendingPathComponent("Examples")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // The build manifest is planned afresh each time: a cached one still lists the files of
        // the path dependency (this package) as they were when it was cached, and fails with
        // "missing inputs" (or "cannot find type") once files are added or removed here.
        p.arguments = ["swift", "build", "--package-path", examples.path, "--disable-build-manifest-caching"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = Drain(out.fileHandleForReading)
        let deadline = Date().addingTimeInterval(1200)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        let log = text.finish()
        try #require(p.terminationStatus == 0, "swift build --package-path Examples failed:\n\(log.suffix(4000))")
        return examples.appendingPathComponent(".build/debug")
    }

    /// Starts the example with the workers' executable in QUIVER_EXECUTABLE; its output drained.
    func startEmbeddedServer(_ products: URL, _ arguments: [String]) throws -> (Process, Drain, Drain) {
        let p = Process()
        p.executableURL = products.appendingPathComponent("embedded-server")
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["QUIVER_EXECUTABLE"] = QuiverProcess.binary.path
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        return (p, Drain(out.fileHandleForReading), Drain(err.fileHandleForReading))
    }

    /// The JSON summary the example prints last on stdout.
    func summary(_ stdout: String, _ stderr: String) throws -> [String: Any] {
        let line = try #require(stdout.split(separator: "\n").last, "no summary; stderr:\n\(stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    /// Closed cleanly: no run directory, no worker left, no segment of the example's.
    func expectClosedCleanly(_ s: [String: Any], example p: Process, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(s["run_directory_removed"] as? Bool == true, sourceLocation: sourceLocation)
        let pids = (s["worker_pids"] as? [Int] ?? []).map { Int32($0) }
        #expect(pids.count == 3, sourceLocation: sourceLocation)
        for pid in pids { #expect(!alive(pid), "worker \(pid) outlived the example", sourceLocation: sourceLocation) }
        let segments = (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []
        #expect(!segments.contains { $0.hasSuffix("-\(p.processIdentifier)") }, "the example left its segment", sourceLocation: sourceLocation)
    }

    @Test("SIGINT to a program serving a session: run returns .stopped, close stops every worker and removes every file")
    func interrupted() throws {
        let products = try buildExamples()
        let (p, stdout, stderr) = try startEmbeddedServer(products, ["--frames", "1000000", "--timeout", "60"])
        #expect(eventually(within: 30) { stderr.text.contains("embedded-server: serving") })
        usleep(300_000)
        kill(p.processIdentifier, SIGINT)
        #expect(reap(p, within: 20), "embedded-server did not stop on SIGINT")
        let (text, log) = (stdout.finish(), stderr.finish())
        let s = try summary(text, log)
        #expect((s["stop"] as? String)?.contains("SIGINT") == true, "\(s)")
        expectClosedCleanly(s, example: p)
    }

    @Test("embedded-server: a custom Swift force field served by a Session, watched and steered through the client, closed cleanly; the C plugin built by the package matches the built-in LJ")
    func embeddedServer() throws {
        let products = try buildExamples()
        let plugin = products.appendingPathComponent("libLJPlugin.so").path
        #expect(FileManager.default.fileExists(atPath: plugin), "the package did not build libLJPlugin.so")
        let (p, stdout, stderr) = try startEmbeddedServer(products, ["--frames", "60", "--plugin", plugin])
        #expect(reap(p, within: 120), "embedded-server ran past 120 s")
        let (text, log) = (stdout.finish(), stderr.finish())
        #expect(p.terminationStatus == 0, "embedded-server failed:\n\(log)")
        let s = try summary(text, log)

        #expect(s["frames"] as? Int == 60 && s["frames_ordered"] as? Bool == true, "\(s)")
        #expect(s["topology_atoms"] as? Int == s["atoms"] as? Int)
        // The Swift force field acts on what the client sees: restrained atoms stay put, the rest diffuse.
        let restrained = try #require(s["restrained_max_displacement_nm"] as? Double)
        let free = try #require(s["free_rms_displacement_nm"] as? Double)
        #expect(restrained < 0.05 && restrained < free / 2, "restrained atoms moved \(restrained) nm, free ones \(free) nm (rms)")
        #expect(s["user_forces_seen"] as? Bool == true && (s["pull_work_kj_mol"] as? Double ?? 0) > 0, "the pull left no trace in the frames: \(s)")
        #expect((s["plugin_force_relative_error"] as? Double ?? 1) < 1e-4, "\(s)")
        expectClosedCleanly(s, example: p)
    }
}
