import Foundation
import QuiverModel

/// A command for the engine and the client on whose behalf it runs (the owner of interactions):
/// what the control worker posts into the shared-memory command ring.
///
/// The command is the typed `EngineCommand` the control worker's parser produced; it is encoded
/// once here (JSON of its `Codable` form) and decoded once by the engine. The engine checks again
/// what only it can (the atom count, the integrator) and never trusts a size or a range.
public struct PostedCommand: Codable, Sendable, Equatable {
    public var client: String
    public var command: EngineCommand

    public init(_ command: EngineCommand, client: String) {
        self.command = command
        self.client = client
    }

    /// The ring payload. Throws `EncodingError` (a command with a non-finite number; the parser
    /// lets none through).
    public func encoded() throws -> [UInt8] { Array(try RingCoding.encoder.encode(self)) }

    /// Reads a ring payload. Throws `DecodingError` when it is not a command of this version.
    public static func decode(_ bytes: [UInt8]) throws -> PostedCommand {
        try RingCoding.decoder.decode(PostedCommand.self, from: Data(bytes))
    }
}

extension EngineReply {
    /// The reply as the engine writes it into the command's slot (at most `QV_SHM_COMMAND_REPLY`
    /// bytes are kept). Non-finite numbers are kept as strings ("nan"); the client sees them as null.
    public func encoded() throws -> [UInt8] { Array(try RingCoding.encoder.encode(self)) }

    /// Reads a reply from a command's slot. Throws `DecodingError`.
    public static func decode(_ bytes: [UInt8]) throws -> EngineReply {
        try RingCoding.decoder.decode(EngineReply.self, from: Data(bytes))
    }
}

/// The one encoding of the command ring: JSON, sorted keys, non-finite numbers as strings.
enum RingCoding {
    static let nonFinite = (positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")

    static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: nonFinite.positiveInfinity,
                                                                negativeInfinity: nonFinite.negativeInfinity, nan: nonFinite.nan)
        return e
    }

    static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: nonFinite.positiveInfinity,
                                                                  negativeInfinity: nonFinite.negativeInfinity, nan: nonFinite.nan)
        return d
    }
}
