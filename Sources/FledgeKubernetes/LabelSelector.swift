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

    /// A label key as the API server accepts it: `[prefix/]name`, the name at most 63 characters of letters,
    /// digits, `-`, `_` and `.` that starts and ends with a letter or digit, the prefix a DNS subdomain. The key is
    /// read whole first, so the error points at its start.
    mutating func key() throws(KubernetesError) -> String {
        let start = index
        let key = word()
        guard !key.isEmpty else { return key }
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        let name = String(parts.last!)
        var problem: String?
        if parts.count > 2 {
            problem = "has more than one '/'"
        } else if parts.count == 2, !isDNSSubdomain(String(parts[0])) {
            problem = "has a prefix that is not a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)"
        } else if !isLabelValue(name) || name.isEmpty {
            problem = "is not a valid name (at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit)"
        }
        if let problem {
            index = start
            throw fail("label key \"\(key)\" \(problem)")
        }
        return key
    }

    /// A label value: empty, or at most 63 letters, digits, `-`, `_` and `.` starting and ending with a letter or digit.
    mutating func value() throws(KubernetesError) -> String {
        let start = index
        let value = word()
        guard isLabelValue(value) else {
            index = start
            throw fail("label value \"\(value)\" is not valid (at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit)")
        }
        return value
    }

    func isLabelValue(_ text: String) -> Bool {
        let scalars = Array(text.unicodeScalars)
        guard let first = scalars.first, let last = scalars.last else { return true }
        func alphanumeric(_ c: Unicode.Scalar) -> Bool {
            switch c {
            case "a"..."z", "A"..."Z", "0"..."9": return true
            default: return false
            }
        }
        return scalars.count <= 63 && alphanumeric(first) && alphanumeric(last) && scalars.allSatisfy { alphanumeric($0) || $0 == "-" || $0 == "_" || $0 == "." }
    }

    func isDNSSubdomain(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 253 else { return false }
        return text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            guard let first = label.unicodeScalars.first, let last = label.unicodeScalars.last else { return false }
            func ok(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("0"..."9").contains(c) }
            return ok(first) && ok(last) && label.unicodeScalars.allSatisfy { ok($0) || $0 == "-" }
        }
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
            let key = try self.key()
            guard !key.isEmpty else { throw fail("expected a label key after \"!\"") }
            return .doesNotExist(key)
        }
        let key = try self.key()
        guard !key.isEmpty else { throw fail("expected a label key") }
        skipSpaces()
        guard index < text.count, text[index] != "," else { return .exists(key) }
        if text[index] == "=" {
            index += 1
            if index < text.count, text[index] == "=" { index += 1 }
            skipSpaces()
            return .equals(key, try value())
        }
        if text[index] == "!", index + 1 < text.count, text[index + 1] == "=" {
            index += 2
            skipSpaces()
            return .notEquals(key, try value())
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
        skipSpaces()
        if index < text.count, text[index] == ")" { throw fail("expected at least one value") }
        while true {
            skipSpaces()
            values.insert(try value())
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
