/// Text made safe for HTML element content and double- or single-quoted attribute values.
enum HTMLText {
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            // Control characters other than tab and newline are not allowed in HTML text.
            case "\t", "\n": out.unicodeScalars.append(scalar)
            case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value): out += "\u{FFFD}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

/// Numbers as the report prints them, the same on every machine (no locale, no `%g` surprises).
enum NumberText {
    /// At most `decimals` decimals, trailing zeros dropped: `99.25`, `480`, `-0.5`.
    static func format(_ value: Double, decimals: Int = 2) -> String {
        guard value.isFinite else { return value.isNaN ? "NaN" : (value > 0 ? "+Inf" : "-Inf") }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let scaled = (value * scale).rounded()
        // A metric value can be any Double: beyond Int64 (where the conversion would trap) as Swift writes it.
        guard abs(scaled) < 9e15 else { return abs(value) < 9e18 ? String(Int64(value.rounded())) : "\(value)" }
        let negative = scaled < 0
        let units = Int64(abs(scaled))
        let whole = units / Int64(scale)
        var fraction = units % Int64(scale)
        var digits = decimals
        while digits > 0, fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        var text = String(whole)
        if digits > 0 {
            let raw = String(fraction)
            text += "." + String(repeating: "0", count: digits - raw.count) + raw
        }
        return negative && (whole != 0 || digits > 0) ? "-" + text : text
    }

    /// An SVG coordinate: one decimal.
    static func coordinate(_ value: Double) -> String { format(value, decimals: 1) }

    /// Whole seconds that never trap: NaN is 0, and beyond ±9e12 s (some 285,000 years) the bound.
    static func wholeSeconds(_ seconds: Double) -> Int64 {
        seconds.isNaN ? 0 : Int64(min(max(seconds, -9e12), 9e12))
    }

    /// Seconds since the start as `m:ss` (`h:mm:ss` past an hour).
    static func elapsed(_ seconds: Double) -> String {
        let total = wholeSeconds(max(0, seconds).rounded())
        let h = total / 3600
        let m = (total % 3600) / 60
        let s = total % 60
        func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return h > 0 ? "\(h):\(two(m)):\(two(s))" : "\(m):\(two(s))"
    }

    /// A duration in words: `1m 37s`, `2h 5m`, `12s`.
    static func duration(_ seconds: Double) -> String {
        let total = wholeSeconds(max(0, seconds).rounded())
        let h = total / 3600
        let m = (total % 3600) / 60
        let s = total % 60
        if h > 0 { return m > 0 ? "\(h)h \(m)m" : "\(h)h" }
        if m > 0 { return s > 0 ? "\(m)m \(s)s" : "\(m)m" }
        return "\(s)s"
    }

    /// Unix seconds as `2026-11-26 19:53:34 UTC`.
    static func utc(_ unixSeconds: Double) -> String {
        let total = wholeSeconds(unixSeconds.rounded(.down))
        var days = total / 86400
        var rest = total % 86400
        if rest < 0 {
            rest += 86400
            days -= 1
        }
        // Howard Hinnant's civil_from_days.
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let dayOfEra = z - era * 146097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(year)-\(two(month))-\(two(day)) \(two(rest / 3600)):\(two((rest % 3600) / 60)):\(two(rest % 60)) UTC"
    }
}
