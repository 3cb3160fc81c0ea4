import Foundation
import QuiverConfig
import Testing

@Suite("Run configuration")
struct ConfigurationTests {
    @Test("a full file sets every field; omitted fields keep their defaults")
    func fullFile() throws {
        let c = try RunConfiguration.parse("""
            [system]
            builtin = "lj"
            cells = 7
            seed = 42

            [engine]
            threads = 2
            kernel = "scalar"
            steps = 5000
            frame_interval = 25
            report_every = 500

            [server]
            run_dir = "/tmp/run-x"
            watchdog = 12
            grace = 2.5

            [frames]
            codec = "lossless"
            precision = 0.0005
            address = "127.0.0.2"
            port = 5555
            """)
        #expect(c.system == "lj" && c.cells == 7 && c.seed == 42)
        #expect(c.threads == 2 && c.kernel == "scalar" && c.steps == 5000 && c.frameInterval == 25 && c.reportEvery == 500)
        #expect(c.runDirectory == "/tmp/run-x" && c.watchdog == 12 && c.grace == 2.5)
        #expect(c.codec == "lossless" && c.precision == 0.0005 && c.address == "127.0.0.2" && c.port == 5555)
        try c.validate()
        let d = try RunConfiguration.parse("[engine]\nthreads = 1\n")
        var expected = RunConfiguration()
        expected.threads = 1
        #expect(d == expected)
        try RunConfiguration().validate()
    }

    @Test("unknown sections and keys, wrong types and bad TOML are clear errors", arguments: [
        ("[sytem]\ncells = 3", "unknown section [sytem]"),
        ("[engine]\nthread = 3", "unknown key 'thread' in [engine]"),
        ("[engine]\nthreads = \"two\"", "[engine] threads must be an integer, got string"),
        ("[frames]\nprecision = \"fine\"", "[frames] precision must be a number"),
        ("[system]\nseed = -1", "[system] seed must be >= 0"),
        ("system = 3", "'system' must be a table"),
        ("[engine\nthreads = 2", "test.toml:1:"),
        ("[engine]\nthreads = 2\nthreads = 3", "test.toml:3:"),
    ])
    func parseErrors(text: String, message: String) {
        do {
            _ = try RunConfiguration.parse(text, source: "test.toml")
            Issue.record("accepted: \(text)")
        } catch {
            #expect("\(error)".contains(message), "\(error)")
            #expect("\(error)".hasPrefix("test.toml"))
        }
    }

    @Test("out-of-range values are rejected naming the flag and the key")
    func ranges() {
        func check(_ mutate: (inout RunConfiguration) -> Void, _ mentions: String) {
            var c = RunConfiguration()
            mutate(&c)
            #expect(throws: ConfigurationError.self) { try c.validate() }
            do { try c.validate() } catch { #expect("\(error)".contains(mentions), "\(error)") }
        }
        check({ $0.cells = 0 }, "--cells ([system] cells)")
        check({ $0.system = "water" }, "--system")
        check({ $0.threads = 0 }, "--threads ([engine] threads)")
        check({ $0.kernel = "avx512" }, "--kernel")
        check({ $0.steps = -1 }, "--steps")
        check({ $0.frameInterval = 0 }, "--frame-interval")
        check({ $0.reportEvery = 0 }, "--report-every")
        check({ $0.watchdog = 0.1 }, "--watchdog")
        check({ $0.grace = .nan }, "--grace")
        check({ $0.codec = "zip" }, "--codec")
        check({ $0.precision = 0 }, "--precision")
        check({ $0.port = 70000 }, "--port")
        check({ $0.address = "" }, "--address")
        check({ $0.runDirectory = "" }, "--run-dir")
    }

    @Test("a missing file is a clear error")
    func missingFile() {
        #expect(throws: ConfigurationError.self) { _ = try RunConfiguration.load(path: "/nonexistent/quiver.toml") }
    }
}

@Suite("Run configuration: flags, logging, the worker's copy")
struct ConfigurationFlagTests {
    @Test("a flag sets its key through the file's setter: same conversion, same errors, unknown keys refused")
    func setByKey() throws {
        var c = try RunConfiguration.parse("[system]\ncells = 7\n")
        try c.set("system.cells", to: .integer(3), source: "command line")
        try c.set("frames.precision", to: .integer(1), source: "command line")
        try c.set("log.format", to: .string("json"), source: "command line")
        #expect(c.cells == 3 && c.precision == 1.0 && c.logFormat == "json")
        #expect(throws: ConfigurationError.self) { try c.set("system.celles", to: .integer(3), source: "command line") }
        #expect(throws: ConfigurationError.self) { try c.set("cells", to: .integer(3), source: "command line") }
        do {
            try c.set("engine.threads", to: .string("two"), source: "command line")
            Issue.record("a string was taken for an integer")
        } catch {
            #expect("\(error)" == "command line ([engine] threads) must be an integer, got string")
        }
        do {
            try c.set("system.seed", to: .integer(-1), source: "command line")
            Issue.record("a negative seed was taken")
        } catch {
            #expect("\(error)".contains("must be >= 0"))
        }
    }

    @Test("[log]: level, file (relative to the file), format; bad values name flag and key")
    func logSection() throws {
        let dir = NSTemporaryDirectory() + "quiver-config-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/run.toml"
        try "[log]\nlevel = \"debug\"\nfile = \"logs/run.log\"\nformat = \"json\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        let c = try RunConfiguration.load(path: path)
        #expect(c.logLevel == "debug" && c.logFile == dir + "/logs/run.log" && c.logFormat == "json")
        try c.validate()
        var bad = RunConfiguration()
        bad.logLevel = "loud"
        #expect(throws: ConfigurationError("--log-level ([log] level) must be one of trace, debug, info, notice, warning, error, critical, got 'loud'")) { try bad.validate() }
        bad = RunConfiguration()
        bad.logFormat = "xml"
        #expect(throws: ConfigurationError("--log-format ([log] format) must be one of text, json, got 'xml'")) { try bad.validate() }
    }

    @Test("the configuration a worker gets is the run's, whole: a JSON round trip keeps every field")
    func codableRoundTrip() throws {
        var c = try RunConfiguration.parse("""
            [system]
            builtin = "lj"
            cells = 5
            [engine]
            steps = 10
            threads = 1
            [forcefield]
            plugin_options = "k=1"
            [log]
            format = "json"
            """)
        c.plugin = "/opt/p.so"
        let back = try JSONDecoder().decode(RunConfiguration.self, from: try JSONEncoder().encode(c))
        #expect(back == c)
    }
}
