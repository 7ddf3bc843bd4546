import FledgeJSON
import FledgeKubernetes
import FledgeYAML
import Yams

/// YAML in and out for the CLI: `-o yaml`, and `--template-patch` files written in YAML or JSON.
enum YAML {
    /// Block-style YAML of a JSON value, keys in their order; strings that would read back as another type
    /// (`"true"`, `"10"`) are quoted. Non-ASCII text (`3× stable`, `≥`) is written as UTF-8, not escaped.
    static func string(_ value: JSONValue) throws(CLIError) -> String {
        do {
            return try Yams.serialize(node: node(value), allowUnicode: true, sortKeys: false)
        } catch {
            throw CLIError("cannot write YAML: \(error)")
        }
    }

    static func node(_ value: JSONValue) -> Node {
        switch value {
        case .null: return Node("null", Tag(.null))
        case .bool(let b): return Node(b ? "true" : "false", Tag(.bool))
        case .int(let i): return Node(String(i), Tag(.int))
        case .double(let d): return Node(d.rounded() == d && abs(d) < 1e15 ? String(Int64(d)) : String(d), Tag(.float))
        case .string(let s):
            // A string that would read back as a bool, number or null is quoted.
            let plain = Resolver.default.resolveTag(of: Node(s)) == .str
            return Node(s, Tag(.str), plain ? .any : .singleQuoted)
        case .array(let items): return Node(items.map(node))
        case .object(let object): return Node(object.map { (node(.string($0.key)), node($0.value)) })
        }
    }

    /// Parses one YAML (or JSON) document; `source` names it in errors.
    static func parse(_ text: String, source: String) throws(CLIError) -> JSONValue {
        // Before composing, which would expand them.
        if let alias = YAMLAliases.first(in: text) { throw CLIError("\(source): \(alias.description)") }
        do {
            let parser = try Parser(yaml: text)
            guard let root = try parser.nextRoot() else { throw CLIError("\(source): empty document") }
            if try parser.nextRoot() != nil { throw CLIError("\(source): expected one YAML document, found several") }
            return try json(root, source: source)
        } catch let error as CLIError {
            throw error
        } catch {
            throw CLIError("\(source): invalid YAML: \(error)")
        }
    }

    private static func json(_ node: Node, source: String) throws(CLIError) -> JSONValue {
        do {
            return try jsonValue(yaml: node)
        } catch {
            throw CLIError("\(source): \(error.message)")
        }
    }
}
