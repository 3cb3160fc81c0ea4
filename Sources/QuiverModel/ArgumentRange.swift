/// An interval of allowed numbers, each end open or closed (nil: unbounded).
///
/// The control catalogue lists these ranges (`list`) and checks a client's arguments against
/// them; the engine checks the same constants again before it applies a command.
public struct ArgumentRange: Sendable, Equatable {
    public var minimum: Double?
    public var maximum: Double?
    public var exclusiveMinimum: Bool
    public var exclusiveMaximum: Bool

    public init(minimum: Double? = nil, maximum: Double? = nil, exclusiveMinimum: Bool = false, exclusiveMaximum: Bool = false) {
        self.minimum = minimum
        self.maximum = maximum
        self.exclusiveMinimum = exclusiveMinimum
        self.exclusiveMaximum = exclusiveMaximum
    }

    /// [lo, hi]
    public static func closed(_ lo: Double, _ hi: Double) -> ArgumentRange { ArgumentRange(minimum: lo, maximum: hi) }
    /// (lo, hi]
    public static func leftOpen(_ lo: Double, _ hi: Double) -> ArgumentRange { ArgumentRange(minimum: lo, maximum: hi, exclusiveMinimum: true) }

    /// Whether `x` is finite and inside.
    public func contains(_ x: Double) -> Bool {
        guard x.isFinite else { return false }
        if let minimum, exclusiveMinimum ? !(x > minimum) : !(x >= minimum) { return false }
        if let maximum, exclusiveMaximum ? !(x < maximum) : !(x <= maximum) { return false }
        return true
    }

    /// Interval notation: `(0, 100000]`, `[0, inf)`.
    public var text: String {
        let lo = minimum.map(Self.text(of:)) ?? "-inf"
        let hi = maximum.map(Self.text(of:)) ?? "inf"
        return "\(exclusiveMinimum || minimum == nil ? "(" : "[")\(lo), \(hi)\(exclusiveMaximum || maximum == nil ? ")" : "]")"
    }

    /// A number as people write it in messages: integers without a fraction (`1000000000`, `0.1`).
    public static func text(of x: Double) -> String {
        if x.isFinite && x == x.rounded() && abs(x) < 1e15 { return String(Int64(x)) }
        return "\(x)"
    }
}
