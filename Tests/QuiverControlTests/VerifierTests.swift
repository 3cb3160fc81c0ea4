import Foundation
import QuiverControl
import Testing

@Suite("Request verification")
struct VerifierTests {
    let now = 1_000_000.0

    func verifier(window: Double = 30, capacity: Int = 1000) throws -> RequestVerifier {
        RequestVerifier(signer: try makeSigner(), window: window, nonceCapacity: capacity)
    }

    func code(_ result: Result<CommandRequest, ControlError>) -> ControlErrorCode? {
        if case .failure(let e) = result { return e.code }
        return nil
    }

    @Test("a signed, fresh request passes with every field")
    func accepts() throws {
        let v = Ref(try verifier())
        let r = request("step", args: ["count": 5], time: now - 3)
        let result = v.value.verify(frames: r.frames(signedWith: try makeSigner()), now: now)
        #expect(result == .success(r))
        #expect(v.value.rememberedNonces == 1)
        // The body is the exact JSON a Python client would send, keys sorted.
        #expect(String(decoding: r.body, as: UTF8.self) ==
            #"{"args":{"count":5},"client":"alice","command":"step","id":"r1","nonce":"00112233445566778899aabbccddeeff","time":999997}"#)
    }

    @Test("a body and signature made by Python's json and hmac (docs/control.md) verify and parse")
    func pythonClient() throws {
        // python3: body = json.dumps(req, allow_nan=False).encode(); hmac.new(bytes(range(32)), body, hashlib.sha256).hexdigest()
        let body = bytes(#"{"id": "1", "client": "py-1a2b", "nonce": "5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f", "time": 1767000000.25, "command": "set", "args": {"values": {"temperature": 300, "timestep": 0.002}}}"#)
        let signature = try #require(Hex.decode("5e9ce96574f2fbb1cedc42f5865f1161386d31f02ff6bbe97d23867f189365fb"))
        let v = Ref(try verifier())
        let result = v.value.verify(frames: [body, signature], now: 1_767_000_001)
        let expected = CommandRequest(id: "1", client: "py-1a2b", nonce: String(repeating: "5f", count: 16), time: 1_767_000_000.25,
                                      command: "set", args: ["values": ["temperature": 300, "timestep": 0.002]])
        #expect(result == .success(expected))
        #expect(try CommandCatalog.parse(expected, atomCount: 10) == .engine(.set(values: [.temperature: 300, .timestep: 0.002])))
    }

    @Test("one frame: unsigned; an empty signature frame: unsigned")
    func unsigned() throws {
        let v = Ref(try verifier())
        let body = request(time: now).body
        let one = v.value.verify(frames: [body], now: now)
        #expect(code(one) == .unsigned)
        #expect(code(v.value.verify(frames: [body, []], now: now)) == .unsigned)
        // Unsigned errors carry no request id: the body was not read.
        if case .failure(let e) = one { #expect(e.requestID == nil) }
        #expect(v.value.rememberedNonces == 0)
    }

    @Test("a tampered body, a wrong key, a short signature: bad_signature")
    func badSignature() throws {
        let v = Ref(try verifier())
        let signer = try makeSigner()
        var frames = request(time: now).frames(signedWith: signer)
        frames[0] = bytes(String(decoding: frames[0], as: UTF8.self).replacingOccurrences(of: "play", with: "rest"))
        #expect(code(v.value.verify(frames: frames, now: now)) == .badSignature)
        let wrongKey = request(time: now).frames(signedWith: try makeSigner(otherKeyHex))
        #expect(code(v.value.verify(frames: wrongKey, now: now)) == .badSignature)
        let good = request(time: now).frames(signedWith: signer)
        #expect(code(v.value.verify(frames: [good[0], Array(good[1].prefix(16))], now: now)) == .badSignature)
        // The signature is checked before the JSON: garbage with a bad signature is bad_signature,
        // garbage with a good one is malformed.
        #expect(code(v.value.verify(frames: [bytes("{not json"), good[1]], now: now)) == .badSignature)
        #expect(code(v.value.verify(frames: signed(bytes("{not json"), signer), now: now)) == .malformed)
        #expect(v.value.rememberedNonces == 0)
    }

    @Test("size is checked first: a body over 1 MiB is malformed even unsigned or signed")
    func tooBig() throws {
        let v = Ref(try verifier())
        let signer = try makeSigner()
        let big = [UInt8](repeating: 0x20, count: ControlDefaults.maxBodyBytes + 1)
        let unsignedResult = v.value.verify(frames: [big], now: now)
        #expect(unsignedResult == .failure(ControlError(.malformed, "body of 1048577 bytes exceeds the limit of 1048576")))
        #expect(code(v.value.verify(frames: signed(big, signer), now: now)) == .malformed)
        // Exactly at the limit is read (and here fails as JSON: only spaces).
        let atLimit = [UInt8](repeating: 0x20, count: ControlDefaults.maxBodyBytes)
        #expect(code(v.value.verify(frames: signed(atLimit, signer), now: now)) == .malformed)
        #expect(code(v.value.verify(frames: [], now: now)) == .malformed)
        let good = request(time: now).frames(signedWith: signer)
        #expect(code(v.value.verify(frames: good + [[1]], now: now)) == .malformed)
    }

    @Test("stale and future-dated requests, just inside and just outside the window")
    func stale() throws {
        let v = Ref(try verifier(window: 30))
        let signer = try makeSigner()
        func at(_ t: Double, _ nonce: String) -> Result<CommandRequest, ControlError> {
            v.value.verify(frames: request(nonce: nonce, time: t).frames(signedWith: signer), now: now)
        }
        let old = at(now - 30.5, "aaaaaaaaaaaaaaaa")
        #expect(old == .failure(ControlError(.stale, "request time is 31 s old; the window is 30 s (check the client's clock)", requestID: "r1")))
        #expect(code(at(now + 31, "bbbbbbbbbbbbbbbb")) == .stale)
        if case .failure(let e) = at(now + 31, "bbbbbbbbbbbbbbbc") { #expect(e.message.contains("in the future")) }
        #expect(code(at(now - 30, "cccccccccccccccc")) == nil)
        #expect(code(at(now + 30, "dddddddddddddddd")) == nil)
        // Stale requests do not use up their nonce.
        #expect(v.value.rememberedNonces == 2)
    }

    @Test("a replayed nonce is rejected within 2 x window, per client, case-insensitively")
    func replay() throws {
        let v = Ref(try verifier(window: 30))
        let signer = try makeSigner()
        let frames = request(time: now).frames(signedWith: signer)
        #expect(code(v.value.verify(frames: frames, now: now)) == nil)
        let again = v.value.verify(frames: frames, now: now + 1)
        #expect(again == .failure(ControlError(.replayed, "nonce already used by client 'alice'", requestID: "r1")))
        // The same nonce in upper case, with another id and time: still a replay.
        let upper = request(id: "r2", nonce: "00112233445566778899AABBCCDDEEFF", time: now + 5).frames(signedWith: signer)
        #expect(code(v.value.verify(frames: upper, now: now + 5)) == .replayed)
        // Another client may use the same nonce.
        let bob = request(client: "bob", time: now).frames(signedWith: signer)
        #expect(code(v.value.verify(frames: bob, now: now + 2)) == nil)
        // A nonce recorded at `now` is remembered until now + 60; a request re-dated within the
        // window to reuse it after that is accepted (it would have been fresh anyway).
        let later = request(id: "r3", time: now + 59).frames(signedWith: signer)
        #expect(code(v.value.verify(frames: later, now: now + 59.9)) == .replayed)
        let afterExpiry = request(id: "r4", time: now + 60).frames(signedWith: signer)
        #expect(code(v.value.verify(frames: afterExpiry, now: now + 60)) == nil)
    }

    @Test("the nonce cache is bounded: at capacity new requests get unavailable, and it recovers")
    func nonceBound() throws {
        let v = Ref(try verifier(window: 30, capacity: 3))
        let signer = try makeSigner()
        for i in 0..<3 {
            let frames = request(id: "r\(i)", nonce: String(repeating: "\(i)", count: 16), time: now).frames(signedWith: signer)
            #expect(code(v.value.verify(frames: frames, now: now)) == nil)
        }
        #expect(v.value.rememberedNonces == 3)
        let fourth = request(id: "r3", nonce: String(repeating: "3", count: 16), time: now + 1).frames(signedWith: signer)
        let full = v.value.verify(frames: fourth, now: now + 1)
        #expect(code(full) == .unavailable)
        #expect(v.value.rememberedNonces == 3)
        // A replay is still reported as a replay, not as unavailable.
        let replay = request(id: "r0", nonce: String(repeating: "0", count: 16), time: now + 1).frames(signedWith: signer)
        #expect(code(v.value.verify(frames: replay, now: now + 1)) == .replayed)
        // After 2 x window the old nonces expire and room comes back.
        let retry = request(id: "r5", nonce: String(repeating: "3", count: 16), time: now + 60).frames(signedWith: signer)
        #expect(code(v.value.verify(frames: retry, now: now + 60)) == nil)
        #expect(v.value.rememberedNonces == 1)
    }

    @Test("NonceCache directly: fresh, replayed, full, purge")
    func nonceCache() {
        let cache = Ref(NonceCache(lifetime: 10, capacity: 2))
        #expect(cache.value.insert(client: "a", nonce: "01", now: 0) == .fresh)
        #expect(cache.value.insert(client: "a", nonce: "01", now: 9.9) == .replayed)
        #expect(cache.value.insert(client: "b", nonce: "01", now: 1) == .fresh)
        #expect(cache.value.insert(client: "c", nonce: "01", now: 2) == .full)
        #expect(cache.value.insert(client: "a", nonce: "01", now: 10) == .fresh)  // expired at 10, recorded again
        #expect(cache.value.count == 2)
        cache.value.purge(now: 100)
        #expect(cache.value.count == 0)
        // Many entries through a small cache: memory stays bounded.
        let big = Ref(NonceCache(lifetime: 1, capacity: 100))
        for i in 0..<10_000 { _ = big.value.insert(client: "x", nonce: String(i, radix: 16), now: Double(i) * 0.05) }
        #expect(big.value.count <= 100)
    }

    @Test("field validation after the signature: each problem is malformed and named")
    func fields() throws {
        let v = Ref(try verifier())
        let signer = try makeSigner()
        func check(_ json: String, _ expected: String, id: String? = "r1") {
            let result = v.value.verify(frames: signed(bytes(json), signer), now: now)
            #expect(result == .failure(ControlError(.malformed, expected, requestID: id)), "\(json)")
        }
        let ok = #""client":"alice","nonce":"00112233445566778899aabbccddeeff","time":1000000,"command":"play""#
        check("[1,2]", "the body must be a JSON object", id: nil)
        check("\"text\"", "the body must be a JSON object", id: nil)
        check(#"{\#(ok)}"#, "field 'id' must be a string", id: nil)
        check(#"{"id":"",\#(ok)}"#, "field 'id' must be 1...64 bytes, got 0", id: nil)
        check(#"{"id":"\#(String(repeating: "x", count: 65))",\#(ok)}"#, "field 'id' must be 1...64 bytes, got 65", id: nil)
        check(#"{"id":"r1",\#(ok),"extra":1}"#, "unknown field 'extra'")
        check(#"{"id":"r1","client":"al ice","nonce":"00112233445566778899aabbccddeeff","time":1000000,"command":"play"}"#,
              "field 'client' must be a string of 1...64 characters [A-Za-z0-9._-]")
        check(#"{"id":"r1","client":"","nonce":"00112233445566778899aabbccddeeff","time":1000000,"command":"play"}"#,
              "field 'client' must be a string of 1...64 characters [A-Za-z0-9._-]")
        check(#"{"id":"r1","client":"alice","nonce":"0011223344556677","time":1000000,"command":"play"}"#.replacingOccurrences(of: "0011223344556677", with: "001122334455667"),
              "field 'nonce' must be a string of 16...64 hex characters")
        check(#"{"id":"r1","client":"alice","nonce":"00112233445566778899aabbccddeefg","time":1000000,"command":"play"}"#,
              "field 'nonce' must be a string of 16...64 hex characters")
        check(#"{"id":"r1","client":"alice","nonce":"00112233445566778899aabbccddeeff","time":"now","command":"play"}"#,
              "field 'time' must be a number (UNIX seconds)")
        check(#"{"id":"r1","client":"alice","nonce":"00112233445566778899aabbccddeeff","time":1000000,"command":""}"#,
              "field 'command' must be a string of 1...64 bytes")
        check(#"{"id":"r1",\#(ok),"args":[1]}"#, "field 'args' must be an object, got array")
        // A number that overflows a Double is not read as infinity.
        check(#"{"id":"r1",\#(ok),"args":{"x":1e400}}"#, "not valid JSON (a number is out of range)", id: nil)
        // "args": absent or an object; 64-char nonces and client ids are fine.
        let long = #"{"id":"r1","client":"\#(String(repeating: "a.B_9-", count: 10))abcd","nonce":"\#(String(repeating: "f", count: 64))","time":1000000,"command":"play","args":{}}"#
        #expect(code(v.value.verify(frames: signed(bytes(long), signer), now: now)) == nil)
    }
}

@Suite("JSON values")
struct JSONValueTests {
    @Test("deterministic encoding: sorted keys, integers without fractions, escapes")
    func encoding() {
        let v: JSONValue = ["b": [1, 2.5, -0.0, 1e20, true, nil], "a": "x/\"y\"\n\u{1}é", "B": ["z": 1, "y": 2]]
        #expect(v.jsonText == #"{"B":{"y":2,"z":1},"a":"x/\"y\"\n\u0001é","b":[1,2.5,-0,1e+20,true,null]}"#)
        #expect(JSONValue.number(.infinity).jsonText == "null")
        #expect(JSONValue.number(.nan).jsonText == "null")
        #expect(JSONValue.number(.nan).isFinite == false)
    }

    @Test("parse round trip and accessors")
    func parse() throws {
        let text = #"{"a":[1,2,{"b":null}],"c":"d","e":false,"f":1.5}"#
        let v = try JSONValue.parse(bytes(text))
        #expect(v.jsonText == text)
        #expect(v["a"]?[2]?["b"] == .null)
        #expect(v["a"]?[0]?.integerValue == 1)
        #expect(v["f"]?.integerValue == nil)
        #expect(v["f"]?.numberValue == 1.5)
        #expect(v["c"]?.stringValue == "d")
        #expect(v["e"]?.boolValue == false)
        #expect(v["e"]?.numberValue == nil)
        #expect(v["zz"] == nil)
        #expect(v[0] == nil)
        #expect(JSONValue.number(1e300).integerValue == nil)
        #expect(JSONValue.number(-3).integerValue == -3)
        #expect(try JSONValue.parse(bytes("true")) == .bool(true))
        #expect(try JSONValue.parse(bytes("1")) == .number(1))
        #expect(controlError { _ = try JSONValue.parse(bytes("[1e400]")) }?.code == .malformed)
        #expect(controlError { _ = try JSONValue.parse(bytes("{")) }?.code == .malformed)
        #expect(controlError { _ = try JSONValue.parse(bytes("[NaN]")) }?.code == .malformed)
        #expect(controlError { _ = try JSONValue.parse([0xff, 0xfe]) }?.code == .malformed)
    }

    @Test("strict RFC 8259: what JSON allows is read, everything else is malformed", arguments: [
        (#"  {"a" : [ 1 , -0.5e-3 , 0 , 1E2 ] }  "#, true), (#""\u00e9\ud83d\ude00\/\b\f\n\r\t\"\\""#, true),
        ("[]", true), ("{}", true), ("null", true), ("-0", true), (#""é😀""#, true), ("[[[[1]]]]", true),
        ("01", false), ("+1", false), (".5", false), ("1.", false), ("1e", false), ("-", false), ("0x10", false),
        ("[1,]", false), ("{\"a\":1,}", false), ("{a:1}", false), ("'a'", false), ("[1] [2]", false), ("", false),
        ("tru", false), ("nul", false), ("Infinity", false), (#""\ud800""#, false), (#""\udc00x""#, false),
        (#""\x41""#, false), ("\"a\u{1}b\"", false), ("\"unterminated", false), ("{\"a\"}", false), ("[1 2]", false),
        ("/* c */ 1", false),
    ])
    func strictness(text: String, valid: Bool) {
        let result = Result { () throws(ControlError) in try JSONValue.parse(bytes(text)) }
        if valid { #expect((try? result.get()) != nil, "\(text) was refused: \(result)") } else { #expect(controlError { _ = try result.get() }?.code == .malformed, "\(text) was read") }
    }

    @Test("escapes and characters beyond the BMP read as Foundation reads them; nesting deeper than 512 is refused; a duplicate key keeps its first value")
    func details() throws {
        let text = #"["\u00e9\ud83d\ude00\/\b\f\n\r\t\"\\", "é😀"]"#
        let v = try JSONValue.parse(bytes(text))
        let foundation = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String])
        #expect(v == .array(foundation.map { .string($0) }))
        #expect(controlError { _ = try JSONValue.parse(bytes(String(repeating: "[", count: 600) + String(repeating: "]", count: 600))) }?.code == .malformed)
        #expect(try JSONValue.parse(bytes(String(repeating: "[", count: 500) + String(repeating: "]", count: 500))) != .null)
        #expect(try JSONValue.parse(bytes(#"{"a":1,"a":2}"#)) == ["a": 1])
        #expect(controlError { _ = try JSONValue.parse([0x22, 0xC3, 0x28, 0x22]) }?.code == .malformed, "invalid UTF-8 in a string")
    }

    @Test("random values: written, read back equal, and Foundation reads the same text to the same value", .timeLimit(.minutes(1)))
    func randomRoundTrip() throws {
        var rng = SystemRandomNumberGenerator()
        func randomString() -> String {
            let pool: [Character] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{1}", "\u{1f}", "é", "😀", "中", "\u{7f}"]
            return String((0..<Int.random(in: 0...12, using: &rng)).map { _ in pool.randomElement(using: &rng)! })
        }
        func randomValue(_ depth: Int) -> JSONValue {
            switch Int.random(in: 0...(depth > 3 ? 3 : 5), using: &rng) {
            case 0: return .null
            case 1: return .bool(Bool.random(using: &rng))
            case 2:
                let choices: [Double] = [0, -0.0, 1, -1, 0.1, 1e-7, 123456789.125, 9_007_199_254_740_993, 1e300, -2.5e-300, Double.random(in: -1e6...1e6, using: &rng)]
                return .number(choices.randomElement(using: &rng)!)
            case 3: return .string(randomString())
            case 4: return .array((0..<Int.random(in: 0...4, using: &rng)).map { _ in randomValue(depth + 1) })
            default: return .object(Dictionary((0..<Int.random(in: 0...4, using: &rng)).map { _ in (randomString(), randomValue(depth + 1)) }, uniquingKeysWith: { a, _ in a }))
            }
        }
        func fromFoundation(_ any: Any) -> JSONValue {
            switch any {
            case is NSNull: return .null
            case let n as NSNumber where String(cString: n.objCType) == "c": return .bool(n.boolValue)
            case let n as NSNumber: return .number(n.doubleValue)
            case let s as String: return .string(s)
            case let a as [Any]: return .array(a.map(fromFoundation))
            case let o as [String: Any]: return .object(o.mapValues(fromFoundation))
            default: return .null
            }
        }
        // Foundation's reader is not correctly rounded (a few ulps off, where strtod is exact).
        func close(_ a: JSONValue, _ b: JSONValue) -> Bool {
            switch (a, b) {
            case (.number(let x), .number(let y)): return x == y || abs(x - y) <= 1e-14 * max(abs(x), abs(y))
            case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { close($0, $1) }
            case (.object(let x), .object(let y)): return Set(x.keys) == Set(y.keys) && x.allSatisfy { close($0.value, y[$0.key]!) }
            default: return a == b
            }
        }
        for _ in 0..<2000 {
            let v = randomValue(0)
            let text = v.encoded()
            #expect(try JSONValue.parse(text) == v, "\(String(decoding: text, as: UTF8.self))")
            let f = try JSONSerialization.jsonObject(with: Data(text), options: [.fragmentsAllowed])
            #expect(close(fromFoundation(f), v), "Foundation reads \(String(decoding: text, as: UTF8.self)) otherwise")
        }
    }
}
