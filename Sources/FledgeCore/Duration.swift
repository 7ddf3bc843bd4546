/// A duration written the way Kubernetes users write them: `30s`, `1m`, `1h30m`, `500ms`, `2h`.
///
/// Grammar: one or more `<digits><unit>` groups, units `h`, `m`, `s`, `ms`, each unit at most once and
/// in decreasing order (`1h30m` yes, `30m1h` no). No sign, no spaces, no fractions. The value is kept in
/// whole milliseconds.
public struct RolloutDuration: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }
    public static func seconds(_ s: Int64) -> RolloutDuration { RolloutDuration(milliseconds: s * 1000) }
    public static func minutes(_ m: Int64) -> RolloutDuration { .seconds(m * 60) }
    public static let zero = RolloutDuration(milliseconds: 0)

    public var seconds: Double { Double(milliseconds) / 1000 }

    /// The whole milliseconds in `seconds`, for a number a user wrote (a flag, a field): never traps, as
    /// `Int64(seconds * 1000)` does beyond Int64's range. NaN is 0; beyond ±`clampLimit` ms the value is clamped
    /// (about 285,000 years, far beyond any bound a flag's validation allows).
    public static func milliseconds(clampingSeconds seconds: Double) -> Int64 {
        guard !seconds.isNaN else { return 0 }
        let millis = (seconds * 1000).rounded()
        return Int64(min(max(millis, -clampLimit), clampLimit))
    }

    /// Where `milliseconds(clampingSeconds:)` stops: ±9e15 ms, well inside Int64 and exact as a Double.
    public static let clampLimit: Double = 9e15

    /// Parses `text`, throwing a message that says what is wrong (the caller adds the field path).
    public init(parsing text: String) throws(DurationParseError) {
        let units: [(String, Int64)] = [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)]
        guard !text.isEmpty else { throw DurationParseError(text: text, reason: "is empty") }
        var total: Int64 = 0
        var lastUnitRank = -1
        var chars = Array(text.unicodeScalars)
        var i = 0
        while i < chars.count {
            var digits = ""
            while i < chars.count, ("0"..."9").contains(chars[i]) {
                digits.unicodeScalars.append(chars[i])
                i += 1
            }
            guard !digits.isEmpty else {
                throw DurationParseError(text: text, reason: "expected a number at '\(String(String.UnicodeScalarView(chars[i...])))'")
            }
            var unit = ""
            while i < chars.count, !("0"..."9").contains(chars[i]) {
                unit.unicodeScalars.append(chars[i])
                i += 1
            }
            guard !unit.isEmpty else {
                throw DurationParseError(text: text, reason: "'\(digits)' has no unit (use h, m, s or ms)")
            }
            guard let rank = units.firstIndex(where: { $0.0 == unit }) else {
                throw DurationParseError(text: text, reason: "unknown unit '\(unit)' (use h, m, s or ms)")
            }
            guard rank > lastUnitRank else {
                throw DurationParseError(text: text, reason: "units must appear once each, largest first (like 1h30m)")
            }
            lastUnitRank = rank
            guard digits.count <= 9, let n = Int64(digits) else {
                throw DurationParseError(text: text, reason: "'\(digits)\(unit)' is too large")
            }
            total += n * units[rank].1
        }
        chars.removeAll()
        guard total <= 366 * 24 * 3_600_000 else { throw DurationParseError(text: text, reason: "is longer than a year") }
        self.milliseconds = total
    }

    /// The shortest canonical text: `1h30m`, `45s`, `1m500ms`, `0s`.
    public var description: String {
        if milliseconds == 0 { return "0s" }
        var rest = milliseconds
        var out = ""
        for (unit, size) in [("h", Int64(3_600_000)), ("m", 60_000), ("s", 1000), ("ms", 1)] where rest >= size {
            out += "\(rest / size)\(unit)"
            rest %= size
        }
        return out
    }

    public static func < (a: RolloutDuration, b: RolloutDuration) -> Bool { a.milliseconds < b.milliseconds }
    public static func + (a: RolloutDuration, b: RolloutDuration) -> RolloutDuration {
        RolloutDuration(milliseconds: a.milliseconds + b.milliseconds)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(parsing: text)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

public struct DurationParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var text: String
    public var reason: String
    public var description: String { "'\(text)' is not a duration: \(reason)" }
}
