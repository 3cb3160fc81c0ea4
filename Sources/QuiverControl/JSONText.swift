#if canImport(Glibc)
import Glibc
#endif

/// JSON text to and from `JSONValue` without Codable: Foundation's `JSONDecoder`/`JSONEncoder`
/// cost about 200 us per control request (a profile of the control worker under a storm of
/// requests: 40 % of its time), most of it in generic decoding machinery. RFC 8259, strict: one
/// value, nothing but whitespace around it; no leading zeros, `+`, `.5`, trailing commas or
/// comments; strings valid UTF-8 with escapes (a surrogate pair for characters beyond the BMP,
/// never a lone surrogate); nesting at most `maxDepth`; a duplicate object key keeps its first
/// value.
enum JSONText {
    static let maxDepth = 512

    struct Failure: Error { let message: String }

    // MARK: reading

    static func parse(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> JSONValue {
        var reader = Reader(bytes: bytes)
        reader.skipSpace()
        let value = try reader.value(depth: 0)
        reader.skipSpace()
        guard reader.at == bytes.count else { throw Failure(message: "text after the value") }
        return value
    }

    struct Reader {
        let bytes: UnsafeRawBufferPointer
        var at = 0

        var peek: UInt8? { at < bytes.count ? bytes[at] : nil }

        mutating func skipSpace() {
            while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x0A || bytes[at] == 0x0D || bytes[at] == 0x09 { at += 1 }
        }

        mutating func expect(_ literal: StaticString) throws(Failure) {
            let n = literal.utf8CodeUnitCount
            guard at + n <= bytes.count else { throw Failure(message: "unexpected end") }
            for i in 0..<n where bytes[at + i] != literal.utf8Start[i] { throw Failure(message: "unexpected character") }
            at += n
        }

        mutating func value(depth: Int) throws(Failure) -> JSONValue {
            guard depth < JSONText.maxDepth else { throw Failure(message: "nested too deeply") }
            guard let c = peek else { throw Failure(message: "unexpected end") }
            switch c {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try expect("true"); return .bool(true)
            case UInt8(ascii: "f"): try expect("false"); return .bool(false)
            case UInt8(ascii: "n"): try expect("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw Failure(message: "unexpected character")
            }
        }

        mutating func object(depth: Int) throws(Failure) -> JSONValue {
            at += 1
            var members: [String: JSONValue] = [:]
            skipSpace()
            if peek == UInt8(ascii: "}") { at += 1; return .object(members) }
            while true {
                skipSpace()
                guard peek == UInt8(ascii: "\"") else { throw Failure(message: "an object key must be a string") }
                let key = try string()
                skipSpace()
                guard peek == UInt8(ascii: ":") else { throw Failure(message: "expected ':'") }
                at += 1
                skipSpace()
                let v = try value(depth: depth + 1)
                if members[key] == nil { members[key] = v }
                skipSpace()
                guard let c = peek else { throw Failure(message: "unexpected end") }
                at += 1
                if c == UInt8(ascii: "}") { return .object(members) }
                guard c == UInt8(ascii: ",") else { throw Failure(message: "expected ',' or '}'") }
            }
        }

        mutating func array(depth: Int) throws(Failure) -> JSONValue {
            at += 1
            var items: [JSONValue] = []
            skipSpace()
            if peek == UInt8(ascii: "]") { at += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard let c = peek else { throw Failure(message: "unexpected end") }
                at += 1
                if c == UInt8(ascii: "]") { return .array(items) }
                guard c == UInt8(ascii: ",") else { throw Failure(message: "expected ',' or ']'") }
            }
        }

        mutating func hex4() throws(Failure) -> UInt32 {
            guard at + 4 <= bytes.count else { throw Failure(message: "unexpected end") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[at]
                let d: UInt8
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
                default: throw Failure(message: "bad \\u escape")
                }
                v = v << 4 | UInt32(d)
                at += 1
            }
            return v
        }

        mutating func string() throws(Failure) -> String {
            at += 1
            let start = at
            // The common case: no escape, plain UTF-8 up to the closing quote.
            while at < bytes.count {
                let c = bytes[at]
                if c == UInt8(ascii: "\"") {
                    let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<at])
                    at += 1
                    guard let s = String(validating: raw, as: UTF8.self) else { throw Failure(message: "a string is not valid UTF-8") }
                    return s
                }
                if c == UInt8(ascii: "\\") { break }
                guard c >= 0x20 else { throw Failure(message: "a control character in a string") }
                at += 1
            }
            var out = Array(bytes[start..<at])
            while true {
                guard at < bytes.count else { throw Failure(message: "unterminated string") }
                let c = bytes[at]
                at += 1
                if c == UInt8(ascii: "\"") { break }
                guard c >= 0x20 else { throw Failure(message: "a control character in a string") }
                guard c == UInt8(ascii: "\\") else { out.append(c); continue }
                guard at < bytes.count else { throw Failure(message: "unterminated string") }
                let e = bytes[at]
                at += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if scalar >= 0xD800 && scalar < 0xDC00 {
                        guard at + 2 <= bytes.count, bytes[at] == UInt8(ascii: "\\"), bytes[at + 1] == UInt8(ascii: "u") else {
                            throw Failure(message: "a lone surrogate in a string")
                        }
                        at += 2
                        let low = try hex4()
                        guard low >= 0xDC00 && low < 0xE000 else { throw Failure(message: "a lone surrogate in a string") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if scalar >= 0xDC00 && scalar < 0xE000 {
                        throw Failure(message: "a lone surrogate in a string")
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw Failure(message: "bad \\u escape") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw Failure(message: "bad escape")
                }
            }
            guard let s = String(validating: out, as: UTF8.self) else { throw Failure(message: "a string is not valid UTF-8") }
            return s
        }

        mutating func digits() -> Int {
            let start = at
            while at < bytes.count, bytes[at] >= UInt8(ascii: "0") && bytes[at] <= UInt8(ascii: "9") { at += 1 }
            return at - start
        }

        mutating func number() throws(Failure) -> Double {
            let start = at
            if peek == UInt8(ascii: "-") { at += 1 }
            if peek == UInt8(ascii: "0") {
                at += 1
            } else {
                guard digits() > 0 else { throw Failure(message: "bad number") }
            }
            if peek == UInt8(ascii: ".") {
                at += 1
                guard digits() > 0 else { throw Failure(message: "bad number") }
            }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                at += 1
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { at += 1 }
                guard digits() > 0 else { throw Failure(message: "bad number") }
            }
            // The validated text, NUL-terminated, to strtod (correctly rounded).
            var text = [CChar](repeating: 0, count: at - start + 1)
            for i in start..<at { text[i - start] = CChar(bitPattern: bytes[i]) }
            let v = strtod(text, nil)
            guard v.isFinite else { throw Failure(message: "a number is out of range") }
            return v
        }
    }

    // MARK: writing

    /// Sorted keys, no whitespace, `/` not escaped, non-finite numbers as `null`; integers (up
    /// to 2^53) without a fraction, other numbers in Swift's shortest round-trip form.
    static func write(_ value: JSONValue, into out: inout [UInt8]) {
        switch value {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let n): writeNumber(n, into: &out)
        case .string(let s): writeString(s, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(v, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            for (i, key) in o.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                write(o[key]!, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeNumber(_ n: Double, into out: inout [UInt8]) {
        guard n.isFinite else { out.append(contentsOf: "null".utf8); return }
        if n == 0 {
            out.append(contentsOf: (n.sign == .minus ? "-0" : "0").utf8)
        } else if n == n.rounded(), abs(n) <= 9_007_199_254_740_992 {
            out.append(contentsOf: String(Int64(n)).utf8)
        } else {
            // Swift's description is the shortest text that reads back exactly ("0.1", "1e-05",
            // "1.5e+300"): valid JSON as it is.
            out.append(contentsOf: n.description.utf8)
        }
    }

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(c >> 4)], hex[Int(c & 15)]])
            default: out.append(c)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
