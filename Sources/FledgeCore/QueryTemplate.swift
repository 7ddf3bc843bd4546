/// A custom metric's PromQL with `{{namespace}}`, `{{workload}}` and `{{interval}}` placeholders: the one scanner
/// that both validation and substitution use, so a template that validates is exactly one that is filled in.
///
/// Whitespace inside the braces is allowed (`{{ namespace }}`), as in Go templates and Flagger. A `{{` without a
/// matching `}}`, an empty `{{ }}` and an unknown name are errors.
public struct QueryTemplate: Sendable, Equatable {
    public enum Part: Sendable, Equatable {
        case text(String)
        case placeholder(String)
    }

    /// The names a custom metric's query may use.
    public static let names = ["namespace", "workload", "interval"]

    public var parts: [Part]

    /// Scans `template`; the error says what is wrong and where.
    public init(parsing template: String) throws(QueryTemplateError) {
        var parts: [Part] = []
        var rest = Substring(template)
        while let open = rest.range(of: "{{") {
            if open.lowerBound > rest.startIndex { parts.append(.text(String(rest[..<open.lowerBound]))) }
            let inside = rest[open.upperBound...]
            let close = inside.range(of: "}}")
            let nextOpen = inside.range(of: "{{")
            guard let close, nextOpen.map({ $0.lowerBound >= close.lowerBound }) ?? true else {
                // What was opened: up to the next {{ when that comes first, else the next 20 characters.
                let end = nextOpen?.lowerBound ?? rest.endIndex
                let snippet = String(rest[open.lowerBound..<end].prefix(20)).trimmingWhitespace()
                throw QueryTemplateError(message: "'\(snippet)' opens a placeholder that is never closed with }}; write {{namespace}}, {{workload}} or {{interval}}")
            }
            let name = String(inside[..<close.lowerBound]).trimmingWhitespace()
            guard !name.isEmpty else {
                throw QueryTemplateError(message: "empty placeholder {{}}; use {{namespace}}, {{workload}} or {{interval}}")
            }
            guard Self.names.contains(name) else {
                throw QueryTemplateError(message: "unknown placeholder {{\(name)}}; use {{namespace}}, {{workload}} or {{interval}}")
            }
            parts.append(.placeholder(name))
            rest = inside[close.upperBound...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        self.parts = parts
    }

    /// The text with each placeholder replaced by its value (a name without a value is left empty).
    public func render(_ values: [String: String]) -> String {
        var out = ""
        for part in parts {
            switch part {
            case .text(let text): out += text
            case .placeholder(let name): out += values[name] ?? ""
            }
        }
        return out
    }
}

public struct QueryTemplateError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
