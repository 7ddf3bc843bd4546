import Foundation
import FledgeJSON

/// A Kubernetes label selector in its query-string form:
/// `a=b,c!=d,e in (f,g),h notin (i),j,!k`.
public struct LabelSelector: Sendable, Equatable {
    public enum Requirement: Sendable, Equatable {
        case equals(String, String)
        case notEquals(String, String)
        case isIn(String, [String])
        case notIn(String, [String])
        case exists(String)
        case doesNotExist(String)
    }

    public var requirements: [Requirement]

    public init(requirements: [Requirement]) { self.requirements = requirements }

    /// Parses the `labelSelector` query parameter; the error names the bad requirement.
    public init(parsing text: String) throws(SandboxError) {
        var requirements: [Requirement] = []
        for part in LabelSelector.splitTopLevel(text) {
            let item = part.trimmingSpaces
            if item.isEmpty { continue }
            requirements.append(try LabelSelector.parseRequirement(item))
        }
        self.requirements = requirements
    }

    /// The selector of `spec.selector` (`matchLabels` and `matchExpressions`).
    public init(object: JSONValue) throws(SandboxError) {
        var requirements: [Requirement] = []
        for (key, value) in object["matchLabels"]?.objectValue ?? [:] {
            requirements.append(.equals(key, value.stringValue ?? value.serializedString()))
        }
        for expression in object["matchExpressions"]?.arrayValue ?? [] {
            let key = expression["key"]?.stringValue ?? ""
            let values = expression["values"]?.arrayValue?.compactMap(\.stringValue) ?? []
            switch expression["operator"]?.stringValue ?? "" {
            case "In": requirements.append(.isIn(key, values))
            case "NotIn": requirements.append(.notIn(key, values))
            case "Exists": requirements.append(.exists(key))
            case "DoesNotExist": requirements.append(.doesNotExist(key))
            case let other: throw SandboxError.badRequest("\"\(other)\" is not a valid label selector operator")
            }
        }
        self.requirements = requirements
    }

    public var isEmpty: Bool { requirements.isEmpty }

    public func matches(_ labels: [String: String]) -> Bool {
        for requirement in requirements {
            switch requirement {
            case .equals(let key, let value): if labels[key] != value { return false }
            case .notEquals(let key, let value): if labels[key] == value { return false }
            case .isIn(let key, let values):
                guard let value = labels[key], values.contains(value) else { return false }
            case .notIn(let key, let values):
                if let value = labels[key], values.contains(value) { return false }
            case .exists(let key): if labels[key] == nil { return false }
            case .doesNotExist(let key): if labels[key] != nil { return false }
            }
        }
        return true
    }

    public func matches(object: JSONValue) -> Bool {
        if requirements.isEmpty { return true }
        var labels: [String: String] = [:]
        for (key, value) in object[path: ["metadata", "labels"]]?.objectValue ?? [:] {
            labels[key] = value.stringValue ?? ""
        }
        return matches(labels)
    }

    static func splitTopLevel(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var depth = 0
        for character in text {
            switch character {
            case "(": depth += 1; current.append(character)
            case ")": depth -= 1; current.append(character)
            case "," where depth == 0: parts.append(current); current = ""
            default: current.append(character)
            }
        }
        parts.append(current)
        return parts
    }

    static func parseRequirement(_ item: String) throws(SandboxError) -> Requirement {
        func bad(_ why: String) -> SandboxError {
            .badRequest("unable to parse requirement: \(why): \"\(item)\"")
        }
        func checkKey(_ key: String) throws(SandboxError) -> String {
            let key = key.trimmingSpaces
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || "-_./".contains($0) }) else {
                throw bad("invalid label key \"\(key)\"")
            }
            return key
        }
        func checkValue(_ value: String) throws(SandboxError) -> String {
            let value = value.trimmingSpaces
            guard value.count <= 63, value.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                throw bad("invalid label value \"\(value)\"")
            }
            return value
        }
        if item.hasPrefix("!") {
            return .doesNotExist(try checkKey(String(item.dropFirst())))
        }
        if let range = item.range(of: "!=") {
            return .notEquals(try checkKey(String(item[..<range.lowerBound])), try checkValue(String(item[range.upperBound...])))
        }
        if let range = item.range(of: "==") {
            return .equals(try checkKey(String(item[..<range.lowerBound])), try checkValue(String(item[range.upperBound...])))
        }
        if let range = item.range(of: "=") {
            return .equals(try checkKey(String(item[..<range.lowerBound])), try checkValue(String(item[range.upperBound...])))
        }
        for (word, isIn) in [(" notin ", false), (" in ", true)] {
            if let range = item.range(of: word) {
                let key = try checkKey(String(item[..<range.lowerBound]))
                let rest = item[range.upperBound...].trimmingSpaces
                guard rest.hasPrefix("("), rest.hasSuffix(")") else { throw bad("expected a parenthesised set") }
                var values: [String] = []
                for value in rest.dropFirst().dropLast().split(separator: ",", omittingEmptySubsequences: false) {
                    values.append(try checkValue(String(value)))
                }
                return isIn ? .isIn(key, values) : .notIn(key, values)
            }
        }
        if item.contains(" ") || item.contains("(") || item.contains("<") || item.contains(">") {
            throw bad("unknown operator")
        }
        return .exists(try checkKey(item))
    }
}

/// The field selectors the real server supports, with `=`, `==` and `!=`: `metadata.name` and `metadata.namespace` on
/// every resource, a few more on some (`status.phase`, `spec.nodeName`, `type`), and on Events their own: core's
/// `involvedObject.*`, `reason`, `type`, `reportingComponent`, `source`, and events.k8s.io's `regarding.*`,
/// `reportingController` (matched against the stored core form, as the real server converts them).
struct FieldSelector: Sendable {
    /// Paths into the stored form of the objects.
    var requirements: [(path: [String], value: String, equal: Bool)]

    init(parsing text: String, for type: ResourceType? = nil) throws(SandboxError) {
        requirements = []
        for part in text.split(separator: ",") {
            let item = String(part).trimmingSpaces
            if item.isEmpty { continue }
            let field: String
            let value: String
            let equal: Bool
            if let range = item.range(of: "!=") {
                field = String(item[..<range.lowerBound]); value = String(item[range.upperBound...]); equal = false
            } else if let range = item.range(of: "==") {
                field = String(item[..<range.lowerBound]); value = String(item[range.upperBound...]); equal = true
            } else if let range = item.range(of: "=") {
                field = String(item[..<range.lowerBound]); value = String(item[range.upperBound...]); equal = true
            } else {
                throw SandboxError.badRequest("invalid field selector: \"\(item)\": expected field=value")
            }
            let label = field.trimmingSpaces
            let path: [String]
            if let type, type.storageResource == .events {
                guard let eventPath = EventConversion.fieldPath(label, eventsV1: type.groupResource == .eventsV1) else {
                    throw SandboxError.badRequest("field label not supported: \(label)")
                }
                path = eventPath
            } else {
                guard ["metadata.name", "metadata.namespace", "status.phase", "spec.nodeName", "type"].contains(label) else {
                    throw SandboxError.badRequest("field label not supported: \(label)")
                }
                path = label.split(separator: ".").map(String.init)
            }
            requirements.append((path, value.trimmingSpaces, equal))
        }
    }

    func matches(_ object: JSONValue) -> Bool {
        for requirement in requirements {
            let actual = object[path: requirement.path]?.stringValue ?? ""
            if (actual == requirement.value) != requirement.equal { return false }
        }
        return true
    }

    /// The name an exact `metadata.name=` selector pins, so a list can answer from one key.
    var exactName: String? {
        requirements.first { $0.path == ["metadata", "name"] && $0.equal }?.value
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars = scalars.dropFirst() }
        while let last = scalars.last, last.isWhitespace { scalars = scalars.dropLast() }
        return String(scalars)
    }
}
