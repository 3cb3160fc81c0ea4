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
