import Foundation
import TOMLKit

/// A configuration problem, with the file, key and value in the message.
public struct ConfigurationError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Everything `quiver run` can be told, with its defaults. Sources, lowest first: these defaults,
/// a TOML file (`load`), command-line flags (set the properties). `validate()` checks every value
/// in one place. Documented field by field in docs/configuration.md.
public struct RunConfiguration: Codable, Sendable, Equatable {
    // [system]
    /// Built-in system: "argon" (liquid argon, Langevin) or "lj" (LAMMPS in.lj, NVE).
    public var system = "argon"
    /// fcc unit cells per edge (4 cells^3 atoms).
    public var cells = 10
    /// Seed of velocities and thermostat noise.
    public var seed: UInt64 = 2024

    // [engine]
    /// Engine threads; nil: every core the process may use.
    public var threads: Int?
    /// "auto", "scalar" or "avx2".
    public var kernel = "auto"
    /// Stop after this step; nil: run until stopped.
    public var steps: Int?
    /// Steps between frames written to shared memory.
    public var frameInterval = 10
    /// Steps between progress lines; nil: about once a second.
    public var reportEvery: Int?

    // [server]
    public var runDirectory = "quiver-run"
    /// Seconds without progress before a worker is restarted.
    public var watchdog = 30.0
    /// Seconds a worker gets after SIGTERM before SIGKILL.
    public var grace = 5.0

    // [frames]
    /// "raw", "lossless" or "quantized".
    public var codec = "quantized"
    /// Quantisation step of positions, nm (quantized codec).
    public var precision = 0.001
    /// Address the frame publisher binds for TCP clients (loopback by default).
    public var address = "127.0.0.1"
    /// TCP port; 0 picks a free one (written to connection.json).
    public var port = 0

    // [control]
    /// TCP port of the command socket (on `address`); 0 picks a free one.
    public var controlPort = 0
    /// Seconds without any request after which a client has left (its state keys and locks go).
    public var sessionLease = 10.0

    // [forcefield]
    /// A C plugin force field (a shared library, docs/plugins.md) added to the built-in system's
    /// forces; relative paths are relative to the configuration file. nil: none.
    public var plugin: String?
    /// The options string handed to the plugin's create function.
    public var pluginOptions = ""

    // [log]
    /// Lowest level written: trace, debug, info, notice, warning, error or critical.
    public var logLevel = "info"
    /// A file the supervisor and every worker append their log lines to; relative paths are
    /// relative to the configuration file. nil: stderr.
    public var logFile: String?
    /// "text" (readable lines) or "json" (one JSON object per line, for batch systems).
    public var logFormat = "text"

    public init() {}

    static let systems = ["argon", "lj"]
    static let kernels = ["auto", "scalar", "avx2"]
    static let codecs = ["raw", "lossless", "quantized"]
    /// swift-log's levels, lowest first.
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    public static let logFormats = ["text", "json"]

    /// Loads a TOML file over the defaults. Unknown sections and keys, wrong types and malformed
    /// TOML are errors naming the file, the line or the key.
    public static func load(path: String) throws -> RunConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError("\(path): cannot read: \((error as NSError).localizedDescription)")
        }
        var config = try parse(text, source: path)
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        func resolved(_ p: String?) -> String? {
            guard let p, !p.hasPrefix("/") else { return p }
            return base.appendingPathComponent(p).standardizedFileURL.path
        }
        config.plugin = resolved(config.plugin)
        config.logFile = resolved(config.logFile)
        return config
    }

    /// Parses TOML text over the defaults (`source` names it in errors).
    public static func parse(_ text: String, source: String = "configuration") throws -> RunConfiguration {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            throw ConfigurationError("\(source):\(e.source.begin.line):\(e.source.begin.column): \(e.description)")
        }
        var config = RunConfiguration()
        for section in root.keys {
            guard let keys = schema[section] else {
                throw ConfigurationError("\(source): unknown section [\(section)] (known: \(schema.keys.sorted().map { "[\($0)]" }.joined(separator: ", ")))")
            }
            guard let table = root[section]?.table else {
                throw ConfigurationError("\(source): '\(section)' must be a table ([\(section)])")
            }
            for key in table.keys {
                guard let setter = keys[key] else {
                    throw ConfigurationError("\(source): unknown key '\(key)' in [\(section)] (known: \(keys.keys.sorted().joined(separator: ", ")))")
                }
                guard let value = table[key] else { continue }
                try setter(&config, value, "\(source): [\(section)] \(key)")
            }
        }
        return config
    }

    typealias Setter = @Sendable (inout RunConfiguration, TOMLValueConvertible, String) throws -> Void

    static func int(_ v: TOMLValueConvertible, _ at: String) throws -> Int {
        guard let i = v.int else { throw ConfigurationError("\(at) must be an integer, got \(v.type)") }
        return i
    }
    static func number(_ v: TOMLValueConvertible, _ at: String) throws -> Double {
        if let d = v.double { return d }
        if let i = v.int { return Double(i) }
        throw ConfigurationError("\(at) must be a number, got \(v.type)")
    }
    static func string(_ v: TOMLValueConvertible, _ at: String) throws -> String {
        guard let s = v.string else { throw ConfigurationError("\(at) must be a string, got \(v.type)") }
        return s
    }

    static let schema: [String: [String: Setter]] = [
        "system": [
            "builtin": { c, v, at in c.system = try string(v, at) },
            "cells": { c, v, at in c.cells = try int(v, at) },
            "seed": { c, v, at in
                let s = try int(v, at)
                guard s >= 0 else { throw ConfigurationError("\(at) must be >= 0, got \(s)") }
                c.seed = UInt64(s)
            },
        ],
        "engine": [
            "threads": { c, v, at in c.threads = try int(v, at) },
            "kernel": { c, v, at in c.kernel = try string(v, at) },
            "steps": { c, v, at in c.steps = try int(v, at) },
            "frame_interval": { c, v, at in c.frameInterval = try int(v, at) },
            "report_every": { c, v, at in c.reportEvery = try int(v, at) },
        ],
        "server": [
            "run_dir": { c, v, at in c.runDirectory = try string(v, at) },
            "watchdog": { c, v, at in c.watchdog = try number(v, at) },
            "grace": { c, v, at in c.grace = try number(v, at) },
        ],
        "frames": [
            "codec": { c, v, at in c.codec = try string(v, at) },
            "precision": { c, v, at in c.precision = try number(v, at) },
            "address": { c, v, at in c.address = try string(v, at) },
            "port": { c, v, at in c.port = try int(v, at) },
        ],
        "control": [
            "port": { c, v, at in c.controlPort = try int(v, at) },
            "session_lease": { c, v, at in c.sessionLease = try number(v, at) },
        ],
        "forcefield": [
            "plugin": { c, v, at in c.plugin = try string(v, at) },
            "plugin_options": { c, v, at in c.pluginOptions = try string(v, at) },
        ],
        "log": [
            "level": { c, v, at in c.logLevel = try string(v, at) },
            "file": { c, v, at in c.logFile = try string(v, at) },
            "format": { c, v, at in c.logFormat = try string(v, at) },
        ],
    ]

    /// Sets one key as the TOML file would (`section.key`, e.g. "system.cells"): command-line flags
    /// go through here, so a flag and its key are one setting with one conversion. Throws
    /// `ConfigurationError` for an unknown key or a value of the wrong type.
    public mutating func set(_ path: String, to value: ConfigurationValue, source: String) throws {
        let parts = path.split(separator: ".", maxSplits: 1).map(String.init)
        guard parts.count == 2, let setter = Self.schema[parts[0]]?[parts[1]] else {
            throw ConfigurationError("\(source): unknown configuration key '\(path)'")
        }
        let toml: any TOMLValueConvertible
        switch value {
        case .integer(let i): toml = i
        case .number(let d): toml = d
        case .string(let s): toml = s
        }
        try setter(&self, toml, "\(source) ([\(parts[0])] \(parts[1]))")
    }


    /// Checks every value; the message names the flag and the configuration key.
    public func validate() throws {
        func fail(_ flag: String, _ key: String, _ rule: String, _ got: Any) throws -> Never {
            throw ConfigurationError("\(flag) (\(key)) \(rule), got \(got)")
        }
        if !Self.systems.contains(system) { try fail("--system", "[system] builtin", "must be one of \(Self.systems.joined(separator: ", "))", "'\(system)'") }
        if !(1...200).contains(cells) { try fail("--cells", "[system] cells", "must be between 1 and 200", cells) }
        if let threads, !(1...1024).contains(threads) { try fail("--threads", "[engine] threads", "must be between 1 and 1024", threads) }
        if !Self.kernels.contains(kernel) { try fail("--kernel", "[engine] kernel", "must be one of \(Self.kernels.joined(separator: ", "))", "'\(kernel)'") }
        if let steps, steps < 0 { try fail("--steps", "[engine] steps", "must be >= 0", steps) }
        if !(1...1_000_000).contains(frameInterval) { try fail("--frame-interval", "[engine] frame_interval", "must be between 1 and 10^6", frameInterval) }
        if let reportEvery, reportEvery < 1 { try fail("--report-every", "[engine] report_every", "must be >= 1", reportEvery) }
        if runDirectory.isEmpty { try fail("--run-dir", "[server] run_dir", "must not be empty", "''") }
        if !(watchdog >= 0.5 && watchdog <= 86400) { try fail("--watchdog", "[server] watchdog", "must be between 0.5 and 86400 seconds", watchdog) }
        if !(grace >= 0.1 && grace <= 600) { try fail("--grace", "[server] grace", "must be between 0.1 and 600 seconds", grace) }
        if !Self.codecs.contains(codec) { try fail("--codec", "[frames] codec", "must be one of \(Self.codecs.joined(separator: ", "))", "'\(codec)'") }
        if !(precision >= 1e-6 && precision <= 1) { try fail("--precision", "[frames] precision", "must be between 1e-6 and 1 nm", precision) }
        if address.isEmpty || address.contains(" ") { try fail("--address", "[frames] address", "must be an IP address or host name", "'\(address)'") }
        if !(0...65535).contains(port) { try fail("--port", "[frames] port", "must be between 0 and 65535", port) }
        if !(0...65535).contains(controlPort) { try fail("--control-port", "[control] port", "must be between 0 and 65535", controlPort) }
        if !(sessionLease >= 0.5 && sessionLease <= 86400) {
            try fail("--session-lease", "[control] session_lease", "must be between 0.5 and 86400 seconds", sessionLease)
        }
        if let plugin {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: plugin, isDirectory: &isDirectory), !isDirectory.boolValue else {
                try fail("--plugin", "[forcefield] plugin", "must be a shared library file", "'\(plugin)' (no such file)")
            }
        }
        if !Self.logLevels.contains(logLevel) { try fail("--log-level", "[log] level", "must be one of \(Self.logLevels.joined(separator: ", "))", "'\(logLevel)'") }
        if !Self.logFormats.contains(logFormat) { try fail("--log-format", "[log] format", "must be one of \(Self.logFormats.joined(separator: ", "))", "'\(logFormat)'") }
        if let logFile, logFile.isEmpty { try fail("--log-file", "[log] file", "must not be empty", "''") }
        if pluginOptions.utf8.count > 4096 { try fail("--plugin-options", "[forcefield] plugin_options", "must be at most 4096 bytes", pluginOptions.utf8.count) }
    }
}

/// A value for `RunConfiguration.set`, as a flag gives it.
public enum ConfigurationValue: Sendable, Equatable {
    case integer(Int)
    case number(Double)
    case string(String)
}
