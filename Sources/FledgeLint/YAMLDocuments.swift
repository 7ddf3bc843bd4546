import FledgeJSON
import FledgeYAML
import Foundation
import Yams

/// One YAML document read from a file, converted to JSON, with the line of every field.
public struct LintDocument: Sendable {
    public var file: String
    /// 0-based position in its file.
    public var index: Int
    public var json: JSONValue
    /// Line (1-based) of every field path, e.g. `spec.stages[2].weight`; `""` is the document's first line.
    public var lines: [String: Int]

    public var kind: String? { json["kind"]?.stringValue }
    public var apiVersion: String? { json["apiVersion"]?.stringValue }
    public var name: String? { json[path: ["metadata", "name"]]?.stringValue }
    public var namespace: String? { json[path: ["metadata", "namespace"]]?.stringValue }

    /// The objects of a `kind: List` (what `kubectl get -o yaml` writes), each with its own lines; nil otherwise.
    public var listItems: [LintDocument]? {
        guard kind == "List", let items = json["items"]?.arrayValue else { return nil }
        return items.enumerated().map { offset, item in
            let prefix = "items[\(offset)]"
            var itemLines: [String: Int] = [:]
            for (path, line) in lines {
                if path == prefix { itemLines[""] = line } else if path.hasPrefix(prefix + ".") {
                    itemLines[String(path.dropFirst(prefix.count + 1))] = line
                }
            }
            return LintDocument(file: file, index: index, json: item, lines: itemLines)
        }
    }

    /// `VirtualService shop/product-service`.
    public var objectDescription: String {
        "\(kind ?? "?") \(namespace.map { "\($0)/" } ?? "")\(name ?? "?")"
    }

    /// The line of `path`, or of its nearest parent that has one.
    public func line(of path: String) -> Int? {
        var p = path
        while true {
            if let l = lines[p] { return l }
            if p.isEmpty { return nil }
            if let cut = p.lastIndex(where: { $0 == "." || $0 == "[" }) {
                p = String(p[..<cut])
            } else {
                p = ""
            }
        }
    }
}

/// A YAML problem with where it happened.
public struct YAMLProblem: Error, Sendable {
    public var message: String
    public var line: Int?
}

enum YAMLReader {
    /// Reads every document of a YAML stream. Stops at the first syntax error, keeping the documents before it.
    static func documents(of text: String, file: String) -> ([LintDocument], YAMLProblem?) {
        // Refused before composing: Yams expands every alias while it composes, without a limit.
        if let alias = YAMLAliases.first(in: text) { return ([], YAMLProblem(message: alias.message, line: alias.line)) }
        var out: [LintDocument] = []
        do {
            var sequence = try Yams.compose_all(yaml: text, Resolver.default.removing(.timestamp))
            var index = 0
            while let node = sequence.next() {
                var lines: [String: Int] = [:]
                let json = try convert(node, path: "", lines: &lines)
                out.append(LintDocument(file: file, index: index, json: json, lines: lines))
                index += 1
            }
            if let error = sequence.error { return (out, problem(error)) }
        } catch {
            return (out, problem(error))
        }
        return (out, nil)
    }

    static func problem(_ error: any Error) -> YAMLProblem {
        if let p = error as? YAMLProblem { return p }
        guard let y = error as? YamlError else { return YAMLProblem(message: "\(error)", line: nil) }
        switch y {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let ctx = context.map { " (\($0.text) at line \($0.mark.line))" } ?? ""
            return YAMLProblem(message: "invalid YAML: \(problem)\(ctx)", line: mark.line)
        case .reader(let problem, _, _, _): return YAMLProblem(message: "unreadable YAML: \(problem)", line: nil)
        case .duplicatedKeysInMapping(let duplicates, let context):
            let names = Array(Set(duplicates)).sorted().map { "'\($0)'" }.joined(separator: ", ")
            return YAMLProblem(message: "invalid YAML: key \(names) appears more than once in one mapping (first here)", line: context.mark.line)
        default: return YAMLProblem(message: "invalid YAML: \(y)", line: nil)
        }
    }

    static func convert(_ node: Node, path: String, lines: inout [String: Int]) throws -> JSONValue {
        if let mark = node.mark, lines[path] == nil { lines[path] = mark.line }
        switch node {
        case .scalar(let scalar):
            switch node.tag.rawValue {
            case Tag.Name.null.rawValue: return .null
            case Tag.Name.bool.rawValue: return node.bool.map(JSONValue.bool) ?? .string(scalar.string)
            case Tag.Name.int.rawValue:
                if let i = Int64(scalar.string) { return .int(i) }
                // Too large for 64 bits: a number still (as kubectl sends it), so the check says "too large", not "a string".
                return node.int.map { .int(Int64($0)) } ?? node.float.map(JSONValue.double) ?? Double(scalar.string).map(JSONValue.double) ?? .string(scalar.string)
            case Tag.Name.float.rawValue: return node.float.map(JSONValue.double) ?? .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .mapping(let mapping):
            var object: JSONObject = [:]
            for (key, value) in mapping {
                guard let k = key.string else {
                    throw YAMLProblem(message: "a mapping key at \(path.isEmpty ? "the top" : path) is not a string", line: key.mark?.line)
                }
                if object[k] != nil {
                    throw YAMLProblem(message: "duplicate key '\(k)' in \(path.isEmpty ? "the document" : path)", line: key.mark?.line)
                }
                let childPath = path.isEmpty ? k : "\(path).\(k)"
                if let mark = key.mark { lines[childPath] = mark.line }
                object[k] = try convert(value, path: childPath, lines: &lines)
            }
            return .object(object)
        case .sequence(let sequence):
            var array: [JSONValue] = []
            for (i, element) in sequence.enumerated() {
                array.append(try convert(element, path: "\(path)[\(i)]", lines: &lines))
            }
            return .array(array)
        case .alias:
            // Yams' composer resolves aliases (and YAMLAliases refused them before); only its emitter makes these.
            throw YAMLProblem(message: "YAML aliases are not supported in Kubernetes manifests", line: node.mark?.line)
        }
    }
}
