import QuiverControl
import Testing

@Suite("HMAC-SHA256 signing")
struct SigningTests {
    /// RFC 4231, section 4: HMAC-SHA-256 test cases 1-4, 6, 7 (case 5 is the truncated one, below).
    static let vectors: [(key: [UInt8], data: [UInt8], mac: String)] = [
        ([UInt8](repeating: 0x0b, count: 20), bytes("Hi There"),
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (bytes("Jefe"), bytes("what do ya want for nothing?"),
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ([UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50),
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        (Array(1...25), [UInt8](repeating: 0xcd, count: 50),
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        ([UInt8](repeating: 0xaa, count: 131), bytes("Test Using Larger Than Block-Size Key - Hash Key First"),
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        ([UInt8](repeating: 0xaa, count: 131),
         bytes("This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."),
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
    ]

    @Test("RFC 4231 test cases 1, 2, 3, 4, 6, 7")
    func rfc4231() throws {
        for (i, v) in Self.vectors.enumerated() {
            #expect(Hex.encode(try CommandSigner.hmacSHA256(key: v.key, message: v.data)) == v.mac, "vector \(i)")
        }
    }

    @Test("RFC 4231 test case 5 (output truncated to 128 bits)")
    func rfc4231Truncated() throws {
        let mac = try CommandSigner.hmacSHA256(key: [UInt8](repeating: 0x0c, count: 20), message: bytes("Test With Truncation"))
        #expect(Hex.encode(mac.prefix(16)) == "a3b6167473100ee06e0c796c2955552b")
    }

    @Test("a 32-byte key: the one-shot API agrees with the streaming one and with Python's hmac")
    func thirtyTwoByteKey() throws {
        let signer = try makeSigner()
        let message = bytes("{\"command\":\"play\"}")
        let mac = signer.signature(for: message)
        #expect(mac.count == 32)
        #expect(mac == (try CommandSigner.hmacSHA256(key: Array(0..<32), message: message)))
        // python3 -c 'import hmac,hashlib; print(hmac.new(bytes(range(32)), b"{\"command\":\"play\"}", hashlib.sha256).hexdigest())'
        #expect(Hex.encode(mac) == "e2d7c976c9487cc23df6ec75f1fcbcee70a594458ba3a85b3be4236647b00125")
        #expect(try CommandSigner(key: Array(0..<32)).signature(for: message) == mac)
        #expect(try CommandSigner(keyHex: testKeyHex.uppercased()).signature(for: message) == mac)
    }

    @Test("sign then verify; a changed byte, another key, a short signature all fail")
    func roundTrip() throws {
        let signer = try makeSigner()
        let other = try makeSigner(otherKeyHex)
        let body = request().body
        let sig = signer.signature(for: body)
        #expect(signer.isValid(signature: sig, for: body))
        var tampered = body
        tampered[5] ^= 1
        #expect(!signer.isValid(signature: sig, for: tampered))
        var badSig = sig
        badSig[31] ^= 0x80
        #expect(!signer.isValid(signature: badSig, for: body))
        #expect(!other.isValid(signature: sig, for: body))
        #expect(!signer.isValid(signature: Array(sig.prefix(31)), for: body))
        #expect(!signer.isValid(signature: sig + [0], for: body))
        #expect(!signer.isValid(signature: [], for: body))
        // The key never shows in descriptions (test failures, logs).
        #expect("\(signer)" == "CommandSigner(key: <redacted>)")
        var dumped = ""
        dump(signer, to: &dumped)
        #expect(!dumped.contains("31"))
        // The empty message signs and verifies too.
        #expect(signer.isValid(signature: signer.signature(for: []), for: []))
    }

    @Test("malformed keys: a clear error that does not repeat the key")
    func malformedKeys() {
        let short = String(testKeyHex.prefix(62))
        #expect(controlError { _ = try CommandSigner(keyHex: short) } == ControlError(.invalidArgument, "signing key must be 64 hex characters (32 bytes), got 62 characters"))
        #expect(controlError { _ = try CommandSigner(keyHex: "") }?.code == .invalidArgument)
        #expect(controlError { _ = try CommandSigner(keyHex: testKeyHex + "00") }?.code == .invalidArgument)
        let nonHex = String(testKeyHex.dropLast()) + "g"
        let e = controlError { _ = try CommandSigner(keyHex: nonHex) }
        #expect(e == ControlError(.invalidArgument, "signing key must contain only hex digits 0-9 a-f"))
        #expect(controlError { _ = try CommandSigner(key: [1, 2, 3]) } == ControlError(.invalidArgument, "signing key must be 32 bytes, got 3"))
    }

    @Test("hex both ways")
    func hex() {
        #expect(Hex.encode([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
        #expect(Hex.decode("000FA0ff") == [0x00, 0x0f, 0xa0, 0xff])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
        #expect(Hex.decode("") == [])
        #expect(CommandRequest.randomNonce().count == 32)
        #expect(CommandRequest.randomNonce() != CommandRequest.randomNonce())
    }
}
