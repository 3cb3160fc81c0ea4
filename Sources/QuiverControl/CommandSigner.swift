import CSodium

/// Signs and verifies control messages with HMAC-SHA256 under the run's key (the 32-byte `key`
/// of `connection.json`, hex-encoded), through libsodium.
///
/// A value type holding a copy of the key; safe to share between threads.
public struct CommandSigner: Sendable {
    /// Bytes of a signature (HMAC-SHA256 output).
    public static let signatureBytes = Int(crypto_auth_hmacsha256_BYTES)
    /// Bytes of a key (`crypto_auth_hmacsha256_KEYBYTES`).
    public static let keyBytes = Int(crypto_auth_hmacsha256_KEYBYTES)

    private let key: [UInt8]

    /// - Parameter keyHex: 64 hexadecimal characters (either case): the `key` of connection.json.
    /// - Throws: `ControlError` `invalid_argument` for any other length or a non-hex character
    ///   (the message never repeats the key); `internal` if libsodium cannot be initialised.
    public init(keyHex: String) throws(ControlError) {
        try Sodium.ensureReady()
        let length = keyHex.utf8.count
        guard length == 2 * Self.keyBytes else {
            throw ControlError(.invalidArgument, "signing key must be \(2 * Self.keyBytes) hex characters (\(Self.keyBytes) bytes), got \(length) characters")
        }
        guard let bytes = Hex.decode(keyHex) else {
            throw ControlError(.invalidArgument, "signing key must contain only hex digits 0-9 a-f")
        }
        key = bytes
    }

    /// - Parameter key: exactly `keyBytes` (32) bytes.
    /// - Throws: `invalid_argument` for another length; `internal` if libsodium cannot be initialised.
    public init(key: [UInt8]) throws(ControlError) {
        try Sodium.ensureReady()
        guard key.count == Self.keyBytes else {
            throw ControlError(.invalidArgument, "signing key must be \(Self.keyBytes) bytes, got \(key.count)")
        }
        self.key = key
    }

    /// HMAC-SHA256(key, bytes): 32 bytes.
    public func signature(for bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.signatureBytes)
        out.withUnsafeMutableBufferPointer { o in
            bytes.withUnsafeBufferPointer { m in
                key.withUnsafeBufferPointer { k in
                    _ = crypto_auth_hmacsha256(o.baseAddress!, m.baseAddress, UInt64(m.count), k.baseAddress!)
                }
            }
        }
        return out
    }

    /// Whether `signature` is HMAC-SHA256(key, bytes), compared in constant time
    /// (`crypto_auth_hmacsha256_verify`). A signature of any other length is invalid.
    public func isValid(signature: [UInt8], for bytes: [UInt8]) -> Bool {
        guard signature.count == Self.signatureBytes else { return false }
        return signature.withUnsafeBufferPointer { s in
            bytes.withUnsafeBufferPointer { m in
                key.withUnsafeBufferPointer { k in
                    crypto_auth_hmacsha256_verify(s.baseAddress!, m.baseAddress, UInt64(m.count), k.baseAddress!) == 0
                }
            }
        }
    }

    /// HMAC-SHA256 with a key of any length (libsodium's streaming API, which hashes keys longer
    /// than the block size as RFC 2104 says). For checks against published vectors; the control
    /// channel itself always uses a 32-byte key.
    /// - Throws: `internal` if libsodium cannot be initialised.
    public static func hmacSHA256(key: [UInt8], message: [UInt8]) throws(ControlError) -> [UInt8] {
        try Sodium.ensureReady()
        var state = crypto_auth_hmacsha256_state()
        var out = [UInt8](repeating: 0, count: signatureBytes)
        // A pointer is needed even for an empty key.
        let keyStorage = key.isEmpty ? [0] : key
        keyStorage.withUnsafeBufferPointer { k in
            _ = crypto_auth_hmacsha256_init(&state, k.baseAddress!, key.count)
        }
        message.withUnsafeBufferPointer { m in
            _ = crypto_auth_hmacsha256_update(&state, m.baseAddress, UInt64(m.count))
        }
        out.withUnsafeMutableBufferPointer { o in
            _ = crypto_auth_hmacsha256_final(&state, o.baseAddress!)
        }
        return out
    }
}

/// Never show the key: in logs, test failures or `dump`.
extension CommandSigner: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "CommandSigner(key: <redacted>)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [:]) }
}
