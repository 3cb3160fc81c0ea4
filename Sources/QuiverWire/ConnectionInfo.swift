import Foundation

/// What a client needs to reach a run: written to `connection.json` (mode 0600) in the run directory.
public struct ConnectionInfo: Codable, Sendable, Equatable {
    public var protocolVersion: Int
    public var runDirectory: String
    public var supervisorPID: Int32
    /// Channel name -> endpoint ("control-socket" is a path; ZeroMQ endpoints are URLs).
    public var endpoints: [String: String]
    /// Shared-memory segment name (in /dev/shm).
    public var segment: String
    /// Hex-encoded 32-byte key for signing commands (HMAC-SHA256).
    public var key: String

    enum CodingKeys: String, CodingKey {
        case protocolVersion = "protocol_version", runDirectory = "run_directory", supervisorPID = "supervisor_pid"
        case endpoints, segment, key
    }

    public init(protocolVersion: Int, runDirectory: String, supervisorPID: Int32, endpoints: [String: String], segment: String, key: String) {
        self.protocolVersion = protocolVersion
        self.runDirectory = runDirectory
        self.supervisorPID = supervisorPID
        self.endpoints = endpoints
        self.segment = segment
        self.key = key
    }

    /// Reads a connection file. Throws when it is missing, unreadable or not this format.
    public static func read(from path: String) throws -> ConnectionInfo {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try JSONDecoder().decode(ConnectionInfo.self, from: data)
    }

    /// A fresh random key: 32 bytes from the system generator, hex-encoded.
    public static func randomKey() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }
}

