import FledgeJSON
import FledgeYAML
import Foundation
import Yams

/// Reads Kubernetes manifests (YAML, several documents, or JSON; `kind: List` expanded) into
/// `JSONValue`s, keeping key order. Errors name the file and the document.
public enum ManifestLoader {
    /// One object read from a manifest, with where it came from.
    public struct Manifest: Sendable {
        public var object: JSONValue
        /// The file (or `<input>`).
        public var source: String
        /// The document of the file it is in (1-based), of `documents`.
        public var document: Int
        public var documents: Int
        /// Its place in a `kind: List` document (1-based), if it came from one.
        public var item: Int?

        /// Where it came from, for messages: the file, with the document when the file has several, and the item
        /// of a List (`rollouts/a.yaml (document 2)`, `all.yaml (document 1, item 3)`).
        public var location: String {
            var parts: [String] = []
            if documents > 1 { parts.append("document \(document)") }
            if let item { parts.append("item \(item)") }
            return parts.isEmpty ? source : "\(source) (\(parts.joined(separator: ", ")))"
        }
    }

    /// Parses YAML (or JSON, which is YAML) text with one or more documents.
    public static func parseYAML(_ text: String, source: String = "<input>") throws(SandboxError) -> [JSONValue] {
        try parseManifests(text, source: source).map(\.object)
    }

    /// A file found in a folder and left out because it is not a Kubernetes manifest, and why.
    public struct Skipped: Sendable, Equatable, CustomStringConvertible {
        public var file: String
        public var reason: String
        public init(file: String, reason: String) {
            self.file = file
            self.reason = reason
        }
        public var description: String { "skipped \(file): \(reason)" }
    }

    /// Parses YAML (or JSON) text with one or more documents, keeping where each object came from.
    public static func parseManifests(_ text: String, source: String = "<input>") throws(SandboxError) -> [Manifest] {
        try manifests(of: try documents(of: text, source: source), source: source)
    }

    /// Why a file found in a folder is not a Kubernetes manifest, as `fledge lint` decides it: no document has an
    /// apiVersion or a kind (a Grafana dashboard, a values file), or every document is kustomize's configuration
    /// (`kustomization.yaml`). Nil for a manifest, including a broken one (that stays an error).
    static func notAManifest(_ parsed: (documents: [Document], count: Int)) -> String? {
        let objects = parsed.documents.map(\.object)
        if !objects.contains(where: { $0["apiVersion"] != nil || $0["kind"] != nil }) {
            return "no apiVersion or kind, not a Kubernetes manifest"
        }
        if objects.allSatisfy({ $0["apiVersion"]?.stringValue?.hasPrefix("kustomize.config.k8s.io/") == true }) {
            return "kustomize's configuration, not a Kubernetes object"
        }
        return nil
    }

    typealias Document = (document: Int, item: Int?, object: JSONValue)

    /// The documents of YAML (or JSON) text, `kind: List` expanded, empty ones left out; and how many there were.
    static func documents(of text: String, source: String) throws(SandboxError) -> (documents: [Document], count: Int) {
        // Before composing, which would expand them.
        if let alias = YAMLAliases.first(in: text) { throw SandboxError.manifest(source: source, message: alias.description) }
        var documents: [(document: Int, item: Int?, object: JSONValue)] = []
        var count = 0
        do {
            var index = 0
            // Yams.compose_all stops quietly at a syntax error; the parser throws it.
            let parser = try Parser(yaml: text)
            while let node = try parser.nextRoot() {
                index += 1
                let value = try convert(node, source: source, document: index)
                if value.isNull { continue }
                guard case .object = value else {
                    throw SandboxError.manifest(
                        source: source, message: "document \(index) is \(value.typeNameWithArticle), not a Kubernetes object")
                }
                if value["kind"]?.stringValue == "List", let items = value["items"]?.arrayValue {
                    for (offset, item) in items.enumerated() { documents.append((index, offset + 1, item)) }
                } else {
                    documents.append((index, nil, value))
                }
            }
            count = index
        } catch let error as SandboxError {
            throw error
        } catch {
            throw SandboxError.manifest(source: source, message: "invalid YAML: \(error)")
        }
        return (documents, count)
    }

    /// The parsed documents as manifests: each must have an apiVersion and a kind.
    static func manifests(of parsed: (documents: [Document], count: Int), source: String) throws(SandboxError) -> [Manifest] {
        let (documents, count) = parsed
        var manifests: [Manifest] = []
        for entry in documents {
            let manifest = Manifest(object: entry.object, source: source, document: entry.document, documents: count, item: entry.item)
            var place: String = "document \(entry.document)"
            if let item = entry.item { place += ", item \(item)" }
            guard entry.object["apiVersion"]?.stringValue?.isEmpty == false else {
                throw SandboxError.manifest(source: source, message: "\(place) has no apiVersion")
            }
            guard entry.object["kind"]?.stringValue?.isEmpty == false else {
                throw SandboxError.manifest(source: source, message: "\(place) has no kind")
            }
            manifests.append(manifest)
        }
        return manifests
    }

    /// Loads every `.yaml`, `.yml` and `.json` file at the paths (files, or folders read recursively in name order).
    public static func load(paths: [String]) throws(SandboxError) -> [JSONValue] {
        try loadManifests(paths: paths).map(\.object)
    }

    /// `load(paths:)`, keeping where each object came from (for `SandboxStore.load`, whose errors name it).
    public static func loadManifests(paths: [String]) throws(SandboxError) -> [Manifest] {
        var skipped: [Skipped] = []
        return try loadManifests(paths: paths, skipped: &skipped)
    }

    /// `loadManifests(paths:)`, saying which files found in folders were left out as not Kubernetes manifests (a
    /// Grafana dashboard, a `kustomization.yaml`), as `fledge lint` skips them. A file named in `paths` must be a
    /// manifest: one that is not is an error.
    public static func loadManifests(paths: [String], skipped: inout [Skipped]) throws(SandboxError) -> [Manifest] {
        var objects: [Manifest] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw SandboxError.manifest(source: path, message: "no such file or directory")
            }
            var files: [String] = []
            if isDirectory.boolValue {
                let enumerator = FileManager.default.enumerator(atPath: path)
                while let item = enumerator?.nextObject() as? String {
                    if item.hasSuffix(".yaml") || item.hasSuffix(".yml") || item.hasSuffix(".json") {
                        files.append((path as NSString).appendingPathComponent(item))
                    }
                }
                files.sort()
            } else {
                files = [path]
            }
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else {
                    throw SandboxError.manifest(source: file, message: "cannot be read")
                }
                guard let text = String(data: data, encoding: .utf8) else {
                    throw SandboxError.manifest(source: file, message: "is not UTF-8 text")
                }
                let parsed = try documents(of: text, source: file)
                if isDirectory.boolValue, let reason = notAManifest(parsed) {
                    skipped.append(Skipped(file: file, reason: reason))
                    continue
                }
                objects += try manifests(of: parsed, source: file)
            }
        }
        return objects
    }

    static func convert(_ node: Node, source: String, document: Int) throws(SandboxError) -> JSONValue {
        switch node {
        case .scalar(let scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null: return .null
            case .bool: return node.bool.map(JSONValue.bool) ?? .string(scalar.string)
            case .int:
                if let value = Int64(scalar.string) { return .int(value) }
                return node.int.map { .int(Int64($0)) } ?? .string(scalar.string)
            case .float: return node.float.map(JSONValue.double) ?? .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .mapping(let mapping):
            var object: JSONObject = [:]
            for (key, value) in mapping {
                guard let name = key.string else {
                    throw SandboxError.manifest(source: source, message: "document \(document): a mapping key is not a string")
                }
                object[name] = try convert(value, source: source, document: document)
            }
            return .object(object)
        case .sequence(let sequence):
            var items: [JSONValue] = []
            for item in sequence { items.append(try convert(item, source: source, document: document)) }
            return .array(items)
        case .alias:
            throw SandboxError.manifest(source: source, message: "document \(document): YAML aliases are not supported")
        }
    }
}
