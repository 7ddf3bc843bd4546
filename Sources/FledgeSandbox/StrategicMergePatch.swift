import FledgeJSON

/// Strategic merge patch for built-in types, as `kubectl apply` and `kubectl patch` send it.
///
/// It is a JSON merge patch, except that lists with a known merge key (containers by `name`,
/// ports by `containerPort`, ...) merge item by item, and it understands kubectl's directives:
/// `$patch: replace|delete|merge`, `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>`
/// and `$retainKeys`. Merge keys come from a table of field names rather than the OpenAPI schema.
enum StrategicMergePatch {
    /// Field name → merge key, for the lists of the built-in types that merge by key.
    static let mergeKeys: [String: String] = [
        "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
        "volumes": "name", "env": "name", "imagePullSecrets": "name", "volumeMounts": "mountPath",
        "volumeDevices": "devicePath", "conditions": "type", "hostAliases": "ip",
        "topologySpreadConstraints": "topologyKey", "ownerReferences": "uid", "resourceClaims": "name",
        "finalizers": "", "envFrom": "",
    ]

    /// Lists merged by a key that depends on the parent: a container's `ports` by `containerPort`,
    /// a Service's `ports` by `port`.
    static func mergeKey(for field: String, parentPath: [String]) -> String? {
        if field == "ports" {
            return parentPath.last == "spec" ? "port" : "containerPort"
        }
        if let key = mergeKeys[field] { return key.isEmpty ? nil : key }
        return nil
    }

    /// Primitive lists that merge as sets rather than being replaced.
    static let mergedPrimitiveLists: Set<String> = ["finalizers"]

    static func apply(_ patch: JSONValue, to original: JSONValue) throws(SandboxError) -> JSONValue {
        guard case .object = patch else {
            throw SandboxError.badRequest("a strategic merge patch must be a JSON object, got \(patch.typeNameWithArticle)")
        }
        return try mergeObject(original, patch, path: [])
    }

    static func mergeObject(_ original: JSONValue, _ patch: JSONValue, path: [String]) throws(SandboxError) -> JSONValue {
        guard case .object(let patchObject) = patch else { return patch }
        if let directive = patchObject["$patch"]?.stringValue {
            switch directive {
            case "replace":
                var replaced = patchObject
                replaced.removeValue(forKey: "$patch")
                return .object(replaced)
            case "delete":
                return .null
            case "merge":
                break
            default:
                throw SandboxError.badRequest("unknown patch directive \"\(directive)\" at \(path.joined(separator: "."))")
            }
        }
        var result: JSONObject
        if case .object(let object) = original { result = object } else { result = [:] }
        if let retain = patchObject["$retainKeys"]?.arrayValue {
            let keep = Set(retain.compactMap(\.stringValue))
            for key in result.keys where !keep.contains(key) { result.removeValue(forKey: key) }
        }
        var orders: [String: [JSONValue]] = [:]
        for (key, value) in patchObject {
            if key == "$patch" || key == "$retainKeys" { continue }
            if key.hasPrefix("$setElementOrder/") {
                orders[String(key.dropFirst("$setElementOrder/".count))] = value.arrayValue ?? []
                continue
            }
            if key.hasPrefix("$deleteFromPrimitiveList/") {
                let field = String(key.dropFirst("$deleteFromPrimitiveList/".count))
                let remove = value.arrayValue ?? []
                if let list = result[field]?.arrayValue {
                    result[field] = .array(list.filter { !remove.contains($0) })
                }
                continue
            }
            if value.isNull {
                result.removeValue(forKey: key)
                continue
            }
            let current = result[key] ?? .null
            switch value {
            case .object:
                let merged = try mergeObject(current, value, path: path + [key])
                if merged.isNull { result.removeValue(forKey: key) } else { result[key] = merged }
            case .array(let items):
                result[key] = try mergeList(current.arrayValue ?? [], items, field: key, path: path)
            default:
                result[key] = value
            }
        }
        for (field, order) in orders {
            guard let list = result[field]?.arrayValue else { continue }
            result[field] = .array(reorder(list, by: order, field: field, path: path))
        }
        return .object(result)
    }

    static func mergeList(_ original: [JSONValue], _ patch: [JSONValue], field: String, path: [String])
        throws(SandboxError) -> JSONValue
    {
        // `[{"$patch": "replace"}, items...]` replaces the list.
        if patch.contains(where: { $0["$patch"]?.stringValue == "replace" }) {
            return .array(patch.filter { $0["$patch"]?.stringValue != "replace" })
        }
        if mergedPrimitiveLists.contains(field) {
            var result = original
            for item in patch where !result.contains(item) { result.append(item) }
            return .array(result)
        }
        guard let key = mergeKey(for: field, parentPath: path),
            patch.allSatisfy({ if case .object = $0 { return true } else { return false } })
        else {
            return .array(patch)
        }
        var result = original
        for item in patch {
            let keyValue = item[key]
            let index = result.firstIndex { keyValue != nil && $0[key] == keyValue }
            if item["$patch"]?.stringValue == "delete" {
                if let index { result.remove(at: index) }
                continue
            }
            if let index {
                result[index] = try mergeObject(result[index], item, path: path + [field])
            } else {
                result.append(try mergeObject(.null, item, path: path + [field]))
            }
        }
        return .array(result)
    }

    /// Orders a merged list as `$setElementOrder` says; items it does not name keep their place at the end.
    static func reorder(_ list: [JSONValue], by order: [JSONValue], field: String, path: [String]) -> [JSONValue] {
        let key = mergeKey(for: field, parentPath: path)
        var remaining = list
        var ordered: [JSONValue] = []
        for entry in order {
            let index: Int?
            if let key, let keyValue = entry[key] {
                index = remaining.firstIndex { $0[key] == keyValue }
            } else {
                index = remaining.firstIndex { $0 == entry }
            }
            if let index { ordered.append(remaining.remove(at: index)) }
        }
        return ordered + remaining
    }
}
