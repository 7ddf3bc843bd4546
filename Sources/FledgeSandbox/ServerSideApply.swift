import FledgeJSON

/// Server-side apply (`PATCH` with `application/apply-patch+yaml`, what `kubectl apply --server-side`
/// sends), kept simple but honest about ownership:
///
/// - the applied configuration is merged into the live object (strategic merge for built-in
///   types, so containers merge by name; merge patch for custom resources);
/// - each applier's fields are recorded in `metadata.managedFields` as `FieldsV1` (lists are
///   owned whole, where the real server can own single list items);
/// - changing a field another applier owns is a 409 `Conflict` naming the manager and field,
///   unless `force=true`, which takes the field over;
/// - a field the same manager applied before and no longer applies is removed, unless another
///   applier owns it.
///
/// Only `Apply` managers own fields here; plain updates leave ownership alone.
enum ServerSideApply {
    /// Metadata the server owns; appliers never do.
    static let serverMetadata: Set<String> = [
        "name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
        "deletionTimestamp",
    ]

    /// The `FieldsV1` set of an applied configuration: every object key as `f:<key>`, an empty
    /// object marking a field owned whole (a scalar, a list, or an empty object).
    static func fieldSet(ofApplied applied: JSONValue) -> JSONValue {
        var top = applied.objectValue ?? [:]
        for field in ["apiVersion", "kind", "status"] { top.removeValue(forKey: field) }
        if var metadata = top["metadata"]?.objectValue {
            for field in serverMetadata { metadata.removeValue(forKey: field) }
            top["metadata"] = metadata.isEmpty ? nil : .object(metadata)
        }
        return fields(of: .object(top))
    }

    private static func fields(of value: JSONValue) -> JSONValue {
        guard case .object(let object) = value else { return [:] }
        var set: JSONObject = [:]
        for (key, child) in object { set["f:" + key] = fields(of: child) }
        return .object(set)
    }

    /// The paths of the fields a `FieldsV1` set owns whole.
    static func ownedPaths(_ fields: JSONValue, prefix: [String] = []) -> [[String]] {
        var result: [[String]] = []
        for (key, child) in fields.objectValue ?? [:] where key.hasPrefix("f:") {
            let path = prefix + [String(key.dropFirst(2))]
            if (child.objectValue ?? [:]).isEmpty {
                result.append(path)
            } else {
                result += ownedPaths(child, prefix: path)
            }
        }
        return result
    }

    /// `fields` without the given paths (a forced apply takes them from their old owner).
    static func removing(_ paths: Set<[String]>, from fields: JSONValue, prefix: [String] = []) -> JSONValue {
        var set: JSONObject = [:]
        for (key, child) in fields.objectValue ?? [:] {
            guard key.hasPrefix("f:") else {
                set[key] = child
                continue
            }
            let path = prefix + [String(key.dropFirst(2))]
            if paths.contains(path) { continue }
            if (child.objectValue ?? [:]).isEmpty {
                set[key] = child
            } else {
                let rest = removing(paths, from: child, prefix: path)
                if !(rest.objectValue ?? [:]).isEmpty { set[key] = rest }
            }
        }
        return .object(set)
    }

    static func dotted(_ path: [String]) -> String { path.map { "." + $0 }.joined() }

    /// The managedFields entry recording what `manager` applied.
    static func entry(manager: String, apiVersion: String, time: String, fields: JSONValue) -> JSONValue {
        [
            "manager": .string(manager), "operation": "Apply", "apiVersion": .string(apiVersion), "time": .string(time),
            "fieldsType": "FieldsV1", "fieldsV1": fields,
        ]
    }

    /// The object after `manager` applies `applied` to `current`, with managedFields updated.
    static func apply(
        _ applied: JSONValue, to current: JSONValue, manager: String, force: Bool, type: ResourceType, time: String
    ) throws(SandboxError) -> JSONValue {
        let newFields = fieldSet(ofApplied: applied)
        let newPaths = Set(ownedPaths(newFields))
        var entries = current[path: ["metadata", "managedFields"]]?.arrayValue ?? []
        func isOtherApplier(_ entry: JSONValue) -> Bool {
            entry["operation"]?.stringValue == "Apply" && entry["manager"]?.stringValue != manager
        }

        // Conflicts: fields another applier owns that this apply would change.
        var conflicts: [(manager: String, apiVersion: String, path: [String])] = []
        for entry in entries where isOtherApplier(entry) {
            for path in ownedPaths(entry["fieldsV1"] ?? [:]) where newPaths.contains(path) && applied[path: path] != current[path: path] {
                conflicts.append((entry["manager"]?.stringValue ?? "", entry["apiVersion"]?.stringValue ?? "", path))
            }
        }
        if !conflicts.isEmpty && !force {
            let lines = conflicts.map { "conflict with \"\($0.manager)\" using \($0.apiVersion): \(dotted($0.path))" }
            let message = conflicts.count == 1
                ? "Apply failed with 1 conflict: \(lines[0])"
                : "Apply failed with \(conflicts.count) conflicts: \(lines.joined(separator: "\n"))"
            let causes: [JSONValue] = conflicts.map {
                ["reason": "FieldManagerConflict", "message": .string("conflict with \"\($0.manager)\" using \($0.apiVersion)"),
                 "field": .string(dotted($0.path))]
            }
            var details = SandboxError.details(current[path: ["metadata", "name"]]?.stringValue, type.groupResource)
            details["causes"] = .array(causes)
            throw SandboxError.status(code: 409, reason: "Conflict", message: message, details: details)
        }
        if force && !conflicts.isEmpty {
            let taken = Set(conflicts.map(\.path))
            // A manager left owning nothing disappears from managedFields, as on the real server.
            entries = entries.compactMap { entry in
                guard isOtherApplier(entry) else { return entry }
                var entry = entry
                let rest = removing(taken, from: entry["fieldsV1"] ?? [:])
                guard !(rest.objectValue ?? [:]).isEmpty else { return nil }
                entry["fieldsV1"] = rest
                return entry
            }
        }

        var merged = type.isCustom ? current.applyingMergePatch(applied) : try StrategicMergePatch.apply(applied, to: current)

        // Fields this manager applied before and has now dropped go, unless someone else applies them.
        let ownedByOthers = Set(entries.filter(isOtherApplier).flatMap { ownedPaths($0["fieldsV1"] ?? [:]) })
        if let previous = entries.first(where: { $0["operation"]?.stringValue == "Apply" && $0["manager"]?.stringValue == manager }) {
            for path in ownedPaths(previous["fieldsV1"] ?? [:])
            where !newPaths.contains(path) && !ownedByOthers.contains(path) && merged[path: path] != nil {
                merged[path: path] = nil
            }
        }

        entries.removeAll { $0["operation"]?.stringValue == "Apply" && $0["manager"]?.stringValue == manager }
        entries.append(entry(manager: manager, apiVersion: type.apiVersion, time: time, fields: newFields))
        merged[path: ["metadata", "managedFields"]] = .array(entries)
        return merged
    }
}
