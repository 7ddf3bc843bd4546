// libyaml as Yams bundles it. Yams composes documents only, resolving each alias into a copy of its anchor's node
// as it goes; its event parser is private. CYaml is a target of the Yams package (no product), reachable because
// SwiftPM gives every target the module maps of the C targets it depends on, directly or not.
import CYaml

/// An alias (`*name`) in a YAML text, where libyaml's event parser met it.
public struct YAMLAlias: Error, Sendable, Equatable, CustomStringConvertible {
    /// The anchor's name, without `*`.
    public var name: String
    /// 1-based, as editors count.
    public var line: Int
    public var column: Int

    /// What is wrong, without the place (for findings that carry the line themselves).
    public var message: String {
        "YAML alias '*\(name)' is not supported: an alias repeats its anchor's whole value, and nested ones multiply without bound; write the value out"
    }

    public var description: String { "line \(line): \(message)" }
}

/// Refuses aliases in user YAML (manifests, kubeconfigs, template patches) before anything is composed.
///
/// Composing expands every alias (a "billion laughs" document of a few hundred bytes with 8 nested levels of 9
/// aliases stands for 9⁸ values), and Yams has no limit. Kubernetes manifests, kubeconfigs and patches have no
/// need for them, so the first one is an error naming its line and name.
public enum YAMLAliases {
    /// The first alias in `text`, or nil. Reads libyaml's events, which name an alias without expanding it: time
    /// and memory are linear in the text. A syntax error ends the scan with nil: the caller's parser reports it.
    public static func first(in text: String) -> YAMLAlias? {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { return nil }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return nil }
        defer { yaml_parser_delete(&parser) }
        return bytes.withUnsafeBufferPointer { buffer -> YAMLAlias? in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var event = yaml_event_t()
            while yaml_parser_parse(&parser, &event) == 1 {
                defer { yaml_event_delete(&event) }
                switch event.type {
                case YAML_ALIAS_EVENT:
                    let name = event.data.alias.anchor.map { String(cString: $0) } ?? ""
                    return YAMLAlias(name: name, line: Int(event.start_mark.line) + 1, column: Int(event.start_mark.column) + 1)
                case YAML_STREAM_END_EVENT:
                    return nil
                default:
                    continue
                }
            }
            return nil
        }
    }

    /// Throws the first alias in `text`.
    public static func refuse(in text: String) throws(YAMLAlias) {
        if let alias = first(in: text) { throw alias }
    }
}
