import Foundation

/// Any JSON value: what request arguments, results and shared state hold.
///
/// Numbers are `Double` (as in JSON and in JavaScript/Python clients); integers are exact up to
/// 2^53. Parsing rejects numbers JSON text can write but a `Double` cannot hold (such as `1e400`).
/// Encoding is deterministic: object keys sorted, no whitespace, integral numbers without a
/// fraction (`1`, not `1.0`), non-finite numbers (which JSON cannot carry) as `null`.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])
}

// MARK: - Accessors

extension JSONValue {
    public var isNull: Bool { if case .null = self { return true } else { return false } }
    /// The value of `.bool`, else nil.
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    /// The value of `.number`, else nil.
    public var numberValue: Double? { if case .number(let n) = self { return n } else { return nil } }
    /// The value of `.number` when it is integral and exactly representable as `Int`
    /// (|n| <= 2^53), else nil: `1.5`, `1e300` and strings are not integers.
    public var integerValue: Int? {
        guard case .number(let n) = self, n.isFinite, n == n.rounded(), abs(n) <= 9_007_199_254_740_992 else { return nil }
        return Int(n)
    }
    /// The value of `.string`, else nil.
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    /// The elements of `.array`, else nil.
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    /// The members of `.object`, else nil.
    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { return o } else { return nil } }

    /// The member `key` of an object; nil when absent or not an object.
    public subscript(key: String) -> JSONValue? { objectValue?[key] }
    /// The element at `index` of an array; nil when out of range or not an array.
    public subscript(index: Int) -> JSONValue? {
        guard let a = arrayValue, a.indices.contains(index) else { return nil }
        return a[index]
    }

    /// The JSON type name, for error messages: null, boolean, number, string, array, object.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// Whether every number inside is finite.
    public var isFinite: Bool {
        switch self {
        case .number(let n): return n.isFinite
        case .array(let a): return a.allSatisfy(\.isFinite)
        case .object(let o): return o.values.allSatisfy(\.isFinite)
        default: return true
        }
    }
}

// MARK: - Literals

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral {
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

// MARK: - Codable

extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? c.decode(Double.self) {
            self = .number(n)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    /// Non-finite numbers are encoded as `null` (JSON has no NaN or infinity).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n): if n.isFinite { try c.encode(n) } else { try c.encodeNil() }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}

// MARK: - Bytes

extension JSONValue {
    /// Deterministic UTF-8 JSON: sorted keys, no whitespace, `/` not escaped.
    /// Integers up to 2^53 have no fraction; non-finite numbers are `null` (JSONText).
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        JSONText.write(self, into: &out)
        return out
    }

    /// `encoded()` as a String.
    public var jsonText: String { String(decoding: encoded(), as: UTF8.self) }

    /// Parses UTF-8 JSON text (RFC 8259, strict; any value at top level; nesting up to 512).
    /// Duplicate object keys keep the first occurrence.
    /// - Throws: `malformed` when the text is not JSON or holds a number a `Double` cannot (`1e400`).
    public static func parse<Bytes: ContiguousBytes>(_ bytes: Bytes) throws(ControlError) -> JSONValue {
        let result: Result<JSONValue, JSONText.Failure> = bytes.withUnsafeBytes { raw in
            do throws(JSONText.Failure) { return .success(try JSONText.parse(raw)) } catch { return .failure(error) }
        }
        switch result {
        case .success(let value): return value
        case .failure(let f): throw .malformed("not valid JSON (\(f.message))")
        }
    }
}
