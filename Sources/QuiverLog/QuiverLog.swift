import Foundation
@_exported import Logging

#if canImport(Glibc)
import Glibc
#endif

/// How log lines are written: readable text (`[time] quiver: message`), or one JSON object per
/// line for batch systems and log collectors.
public enum LogFormat: String, Sendable, Codable, CaseIterable {
    case text, json
}

/// Where a process's log lines go: stderr or a file opened for appending (shared by the
/// supervisor and its workers: each line is one `write(2)` to an O_APPEND descriptor, so lines of
/// different processes never interleave within a line).
public final class LogSink: @unchecked Sendable {
    private let fd: Int32
    private let ownsDescriptor: Bool
    private let lock = NSLock()

    /// Standard error.
    public static let standardError = LogSink(fd: 2, owns: false)
    /// Standard output (the engine's progress lines).
    public static let standardOutput = LogSink(fd: 1, owns: false)

    private init(fd: Int32, owns: Bool) {
        self.fd = fd
        ownsDescriptor = owns
    }

    /// Opens `path` for appending (created with mode 0644). Throws `LogError.cannotOpen`.
    public convenience init(appendingTo path: String) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LogError.cannotOpen(path: path, errno: errno) }
        self.init(fd: fd, owns: true)
    }

    /// Writes one line (a newline is added), retrying after EINTR and short writes. A failed
    /// write (a full disk) loses the line, never blocks or stops the caller.
    public func write(_ line: String) {
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        lock.lock()
        defer { lock.unlock() }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }

    deinit { if ownsDescriptor { close(fd) } }
}

public enum LogError: Error, Equatable, CustomStringConvertible {
    case cannotOpen(path: String, errno: Int32)
    case unknownLevel(String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let e): return "cannot open the log file \(path): \(String(cString: strerror(e)))"
        case .unknownLevel(let l): return "unknown log level '\(l)' (known: \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")))"
        }
    }
}

/// The project's log handler: today's readable lines (`[12:00:00.123] quiver: message`, the
/// logger's role after `quiver` for workers, `warning:`/`error:` before the message at those
/// levels; messages are whole sentences with their values, so the metadata is not repeated), or
/// JSON lines with the time, level, logger, pid, message and every metadata key as a field.
public struct QuiverLogHandler: LogHandler {
    public let label: String
    public let sink: LogSink
    public let format: LogFormat
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    public init(label: String, sink: LogSink = .standardError, format: LogFormat = .text, level: Logger.Level = .info) {
        self.label = label
        self.sink = sink
        self.format = format
        logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let extra = event.metadata { all.merge(extra) { $1 } }
        sink.write(Self.render(label: label, level: event.level, message: "\(event.message)", metadata: all, format: format, time: Date()))
    }

    /// One line, without its newline.
    public static func render(label: String, level: Logger.Level, message: String, metadata: Logger.Metadata, format: LogFormat, time: Date) -> String {
        switch format {
        case .text:
            let stamp = ISO8601DateFormatter.string(from: time, timeZone: .current, formatOptions: [.withFullTime, .withFractionalSeconds])
            let name = label == "quiver" ? "quiver" : label.replacingOccurrences(of: "quiver.", with: "quiver ")
            let severity = level >= .warning ? "\(level == .warning ? "warning" : "error"): " : ""
            return "[\(stamp)] \(name): \(severity)\(message)"
        case .json:
            var object: [String: Any] = [
                "time": ISO8601DateFormatter.string(from: time, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withInternetDateTime, .withFractionalSeconds]),
                "level": level.rawValue, "logger": label, "message": message, "pid": Int(getpid()),
            ]
            for (key, value) in metadata where object[key] == nil { object[key] = json(value) }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
            return String(decoding: data, as: UTF8.self)
        }
    }

    static func json(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let s): return s
        case .stringConvertible(let c):
            if let i = c as? any BinaryInteger { return Int(truncatingIfNeeded: i) }
            if let d = c as? Double { return d.isFinite ? d : "\(d)" }
            if let b = c as? Bool { return b }
            return "\(c)"
        case .array(let a): return a.map(json)
        case .dictionary(let d): return d.mapValues(json)
        }
    }
}

/// The process-wide logging set-up: one call at start (`bootstrap`), then `Logger(label:)`
/// anywhere. Libraries take a `Logger` from their caller.
public enum QuiverLogging {
    /// Parses a level name (trace, debug, info, notice, warning, error, critical).
    public static func level(_ name: String) throws -> Logger.Level {
        guard let l = Logger.Level(rawValue: name.lowercased()) else { throw LogError.unknownLevel(name) }
        return l
    }

    /// Sends every logger of this process to `file` (appending; nil: stderr) in `format` at
    /// `level` and above. Call once, before the first logger is made. Throws `LogError`.
    public static func bootstrap(level: Logger.Level, file: String?, format: LogFormat) throws {
        let sink = try file.map { try LogSink(appendingTo: $0) } ?? .standardError
        LoggingSystem.bootstrap { label in QuiverLogHandler(label: label, sink: sink, format: format, level: level) }
    }

    /// A logger that writes nothing.
    public static var silent: Logger { Logger(label: "quiver", factory: { _ in SwiftLogNoOpLogHandler() }) }
}
