import FledgeJSON

/// A parsed label selector (`app=web,tier!=db,env in (a,b),!legacy`), for
/// matching objects in a cache exactly as the API server would.
public struct LabelSelector: Sendable, Equatable, CustomStringConvertible {
    public enum Requirement: Sendable, Equatable {
        case equals(String, String)
        case notEquals(String, String)
        case isIn(String, Set<String>)
        case notIn(String, Set<String>)
        case exists(String)
        case doesNotExist(String)
    }

    public var requirements: [Requirement]

    public init(requirements: [Requirement] = []) { self.requirements = requirements }

    /// Every label must equal the given value (a `matchLabels` map).
    public init(matchLabels: [String: String]) {
        requirements = matchLabels.sorted { $0.key < $1.key }.map { .equals($0.key, $0.value) }
    }

    /// Parses the string form the API accepts in `labelSelector=`.
    public init(parsing text: String) throws(KubernetesError) {
        var parser = SelectorParser(text: Array(text.unicodeScalars), source: text)
        requirements = try parser.parse()
    }

    public var isEmpty: Bool { requirements.isEmpty }

    public func matches(_ labels: [String: String]) -> Bool {
        requirements.allSatisfy { requirement in
            switch requirement {
            case .equals(let key, let value): return labels[key] == value
            case .notEquals(let key, let value): return labels[key] != value
            case .isIn(let key, let values): return labels[key].map(values.contains) ?? false
            case .notIn(let key, let values): return labels[key].map { !values.contains($0) } ?? true
            case .exists(let key): return labels[key] != nil
            case .doesNotExist(let key): return labels[key] == nil
            }
        }
    }

    /// Matches an object's `metadata.labels`.
    public func matches(object: JSONValue) -> Bool {
        if requirements.isEmpty { return true }
        var labels: [String: String] = [:]
        if let object = object["metadata"]?["labels"]?.objectValue {
            for (key, value) in object { if let s = value.stringValue { labels[key] = s } }
        }
        return matches(labels)
    }

    public var description: String {
        requirements.map { requirement in
            switch requirement {
            case .equals(let key, let value): return "\(key)=\(value)"
            case .notEquals(let key, let value): return "\(key)!=\(value)"
            case .isIn(let key, let values): return "\(key) in (\(values.sorted().joined(separator: ",")))"
            case .notIn(let key, let values): return "\(key) notin (\(values.sorted().joined(separator: ",")))"
            case .exists(let key): return key
            case .doesNotExist(let key): return "!\(key)"
            }
        }.joined(separator: ",")
    }
}

private struct SelectorParser {
    var text: [Unicode.Scalar]
    var source: String
    var index = 0

    func fail(_ message: String) -> KubernetesError {
        KubernetesError(kind: .invalidArgument, message: "label selector \"\(source)\": \(message) at position \(index + 1)")
    }

    mutating func skipSpaces() { while index < text.count, text[index] == " " { index += 1 } }

    func isWordCharacter(_ c: Unicode.Scalar) -> Bool {
        switch c {
        case "a"..."z", "A"..."Z", "0"..."9", "-", "_", ".", "/": return true
        default: return false
        }
    }

    mutating func word() -> String {
        var out = ""
        while index < text.count, isWordCharacter(text[index]) {
            out.unicodeScalars.append(text[index])
            index += 1
        }
        return out
    }

    mutating func parse() throws(KubernetesError) -> [LabelSelector.Requirement] {
        var result: [LabelSelector.Requirement] = []
        skipSpaces()
        if index == text.count { return [] }
        while true {
            result.append(try requirement())
            skipSpaces()
            if index == text.count { return result }
            guard text[index] == "," else { throw fail("expected \",\"") }
            index += 1
        }
    }

    mutating func requirement() throws(KubernetesError) -> LabelSelector.Requirement {
        skipSpaces()
        if index < text.count, text[index] == "!" {
            index += 1
            skipSpaces()
            let key = word()
            guard !key.isEmpty else { throw fail("expected a label key after \"!\"") }
            return .doesNotExist(key)
        }
        let key = word()
        guard !key.isEmpty else { throw fail("expected a label key") }
        skipSpaces()
        guard index < text.count, text[index] != "," else { return .exists(key) }
        if text[index] == "=" {
            index += 1
            if index < text.count, text[index] == "=" { index += 1 }
            skipSpaces()
            return .equals(key, word())
        }
        if text[index] == "!", index + 1 < text.count, text[index + 1] == "=" {
            index += 2
            skipSpaces()
            return .notEquals(key, word())
        }
        let op = word()
        switch op {
        case "in": return .isIn(key, try valueSet())
        case "notin": return .notIn(key, try valueSet())
        default: throw fail("expected =, ==, !=, in or notin after \"\(key)\"")
        }
    }

    mutating func valueSet() throws(KubernetesError) -> Set<String> {
        skipSpaces()
        guard index < text.count, text[index] == "(" else { throw fail("expected \"(\"") }
        index += 1
        var values = Set<String>()
        while true {
            skipSpaces()
            values.insert(word())
            skipSpaces()
            guard index < text.count else { throw fail("expected \")\"") }
            if text[index] == ")" {
                index += 1
                return values
            }
            guard text[index] == "," else { throw fail("expected \",\" or \")\"") }
            index += 1
        }
    }
}
