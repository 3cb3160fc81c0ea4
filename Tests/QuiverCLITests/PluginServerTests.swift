import Foundation
import QuiverClient
import QuiverSharedMemory
import Testing

/// Builds Examples/Plugins/lj_plugin.c into `directory` with the system C compiler.
func buildExamplePlugin(into directory: String) throws -> String {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let compiler = ProcessInfo.processInfo.environment["CC"].map { [$0] }
        ?? ["cc", "clang", "gcc"].compactMap { name in
            (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":").map { "\($0)/\(name)" }
                .first { FileManager.default.isExecutableFile(atPath: $0) }
        }.prefix(1).map { $0 }
    let cc = try #require(compiler.first, "no C compiler (cc, clang or gcc) on the PATH")
    let output = directory + "/lj_plugin.so"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: cc)
    p.arguments = ["-shared", "-fPIC", "-O2", "-I", root.appendingPathComponent("Sources/CQuiverPlugin/include").path,
                   "-o", output, root.appendingPathComponent("Examples/Plugins/lj_plugin.c").path]
    try p.run()
    p.waitUntilExit()
    try #require(p.terminationStatus == 0, "\(cc) failed to build the example plugin")
    return output
}

@Suite("C plugin force fields in a running server", .serialized)
struct PluginServerTests {
    @Test("a plugin from the config runs in the engine; one that segfaults is restarted by the policy, then the run stops naming the engine; clients stay connected; the run directory keeps only the engine's state")
    func crashingPlugin() throws {
        let scratch = TemporaryRunDirectory()
        try FileManager.default.createDirectory(atPath: scratch.path, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch.path) }
        let plugin = try buildExamplePlugin(into: scratch.path)

        // A well-behaved plugin: the run goes on past a few hundred steps.
        let good = try TestServer(["--plugin", plugin, "--plugin-options", "epsilon=0.1 sigma=0.3 cutoff=0.6"])
        let segment = try good.segment()
        #expect(eventually(within: 10) { (newestStep(segment) ?? 0) >= 200 }, "\(good.err.text)")
        _ = try QuiverProcess.run(["stop", good.directory.path], timeout: 20)
        #expect(good.waitForExit(within: 15))

        // A plugin that dereferences NULL at step 60: every engine start crashes there.
        let bad = try TestServer(["--plugin", plugin, "--plugin-options", "epsilon=0.1 sigma=0.3 cutoff=0.6 crash_at_step=60", "--watchdog", "30"],
                                 waitForConnection: true)
        let client = try QuiverClient(connectionFile: bad.directory.path + "/connection.json")
        var pings = 0
        let deadline = Date().addingTimeInterval(25)
        while bad.process.isRunning && Date() < deadline {
            if (try? client.ping(timeout: 0.5)) != nil { pings += 1 }
            usleep(100_000)
        }
        #expect(bad.waitForExit(within: 5))
        #expect(bad.process.terminationStatus == 1)
        let log = bad.err.finish()
        #expect(log.contains("engine") && log.contains("SIGSEGV"), "\(log)")
        #expect(log.contains("worker 'engine' failed 6 times"), "\(log)")
        #expect(pings > 10, "the heartbeat kept answering while the engine crashed and restarted (\(pings) pings)")
        // The engine was given up: its newest snapshot, from before the crash, is kept for a resume.
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: bad.directory.path)) ?? []).sorted()
        #expect(files == [EngineStateFile.fileName, "lock"], "left behind: \(files)")
        let state = try EngineStateFile.read(bad.directory.path + "/" + EngineStateFile.fileName)
        #expect(state.step <= 60, "saved state at step \(state.step), past the crash")
        print("crashing plugin: \(log.components(separatedBy: "\n").filter { $0.contains("giving up") }.joined())")
        #expect(!((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).contains { $0.hasSuffix("-\(bad.process.processIdentifier)") })
    }

    @Test("a missing plugin file is a clear configuration error before anything starts")
    func missingPlugin() throws {
        let r = try QuiverProcess.run(["run", "--plugin", "/nonexistent/plugin.so", "--run-dir", NSTemporaryDirectory() + "quiver-never"], timeout: 30)
        #expect(r.status == 64 && r.stderr.contains("[forcefield] plugin") && r.stderr.contains("/nonexistent/plugin.so"), "\(r.stderr)")
    }
}
