import ArgumentParser
import FledgeJSON

/// `-o table|json|yaml` for commands that show Kubernetes objects, as kubectl has it. (`OutputFormat`, table or
/// json, stays the format of `query` and `lint`, which print no Kubernetes objects.)
enum ResourceOutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table
    case json
    case yaml

    /// Prints `value` as JSON or YAML; nothing for `.table` (the caller prints its own).
    func print(_ value: JSONValue) throws(CLIError) {
        switch self {
        case .json: Swift.print(value.serializedString(pretty: true))
        case .yaml: Swift.print(try YAML.string(value), terminator: "")
        case .table: break
        }
    }
}
