/// Evaluation times as Prometheus takes them: Unix seconds or RFC 3339.
public enum PrometheusTime {
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var input: String
        /// Set when the text is a time, but outside `PrometheusTime.range`.
        public var outOfRange: Bool = false
        public init(input: String, outOfRange: Bool = false) {
            self.input = input
            self.outOfRange = outOfRange
        }
        public var description: String {
            if outOfRange {
                return "\"\(input)\" is outside the years 1970 to 9999 (Unix seconds 0 to \(PrometheusTime.format(PrometheusTime.range.upperBound)))"
            }
            return "\"\(input)\" is not a time: use RFC 3339 (2026-11-26T14:02:00Z) or Unix seconds (1795701720)"
        }
    }

    /// The times `parse` accepts: 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z. Wider than any metric store
    /// holds, narrow enough that every conversion to whole milliseconds fits an Int64.
    public static let range: ClosedRange<Double> = 0...253_402_300_799.999

    /// Parses `1795701720`, `1795701720.5` or `2026-11-26T14:02:00Z` / `…+01:00` / `….123Z` into Unix seconds,
    /// within `range`.
    public static func parse(_ text: String) throws(ParseError) -> Double {
        let trimmed = text.trimmingWhitespace()
        let seconds: Double
        if let number = Double(trimmed), number.isFinite, trimmed.first?.isNumber == true || trimmed.first == "-" {
            seconds = number
        } else if let parsed = parseRFC3339(trimmed) {
            seconds = parsed
        } else {
            throw ParseError(input: text)
        }
        guard range.contains(seconds) else { throw ParseError(input: text, outOfRange: true) }
        return seconds
    }

    /// Formats Unix seconds the way the API accepts them, with millisecond precision. Never traps: NaN is
    /// formatted as 0 and values beyond ±9e12 s (about 285,000 years) as that bound, which no caller's time reaches.
    public static func format(_ seconds: Double) -> String {
        let bounded = seconds.isNaN ? 0 : min(max(seconds, -9e12), 9e12)
        let millis = (bounded * 1000).rounded()
        let whole = Int64(millis / 1000)
        let fraction = Int64(abs(millis)) % 1000
        return fraction == 0 ? String(whole) : "\(whole).\(String(fraction + 1000).dropFirst())"
    }

    static func parseRFC3339(_ text: String) -> Double? {
        let bytes = Array(text.utf8)
        var index = 0
        func number(_ digits: Int) -> Int? {
            guard index + digits <= bytes.count else { return nil }
            var value = 0
            for _ in 0..<digits {
                let byte = bytes[index]
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                index += 1
            }
            return value
        }
        func expect(_ characters: String) -> Bool {
            guard index < bytes.count, characters.utf8.contains(bytes[index]) else { return false }
            index += 1
            return true
        }
        guard let year = number(4), expect("-"), let month = number(2), expect("-"), let day = number(2),
            expect("Tt "), let hour = number(2), expect(":"), let minute = number(2), expect(":"), let second = number(2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60
        else { return nil }
        var fraction = 0.0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let start = index
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                fraction += Double(bytes[index] - UInt8(ascii: "0")) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        var offset = 0
        if expect("Zz") {
            offset = 0
        } else if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
            let sign = bytes[index] == UInt8(ascii: "-") ? -1 : 1
            index += 1
            guard let hours = number(2), expect(":"), let minutes = number(2), hours < 24, minutes < 60 else { return nil }
            offset = sign * (hours * 3600 + minutes * 60)
        } else {
            return nil
        }
        guard index == bytes.count else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        return Double(days * 86400 + hour * 3600 + minute * 60 + second - offset) + fraction
    }

    /// Days since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146097 + dayOfEra - 719468
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var slice = self[...]
        while slice.first?.isWhitespace == true { slice.removeFirst() }
        while slice.last?.isWhitespace == true { slice.removeLast() }
        return String(slice)
    }
}
