import FledgeJSON

/// The `scale` subresource (autoscaling/v1 `Scale`): a view of `spec.replicas` that
/// `kubectl scale` and autoscalers read and write without touching the rest of the object.
extension SandboxStore {
    /// The Scale object for `object`, as the real server derives it from a Deployment.
    static func scaleView(of object: JSONValue) -> JSONValue {
        var metadata: JSONObject = [:]
        for field in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
            if let value = object[path: ["metadata", field]] { metadata[field] = value }
        }
        var status: JSONObject = ["replicas": .int(object[path: ["status", "replicas"]]?.intValue ?? 0)]
        let matchLabels = object[path: ["spec", "selector", "matchLabels"]]?.objectValue ?? [:]
        let selector = matchLabels.keys.sorted().map { "\($0)=\(matchLabels[$0]?.stringValue ?? "")" }.joined(separator: ",")
        if !selector.isEmpty { status["selector"] = .string(selector) }
        return [
            "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": .object(metadata),
            "spec": ["replicas": .int(object[path: ["spec", "replicas"]]?.intValue ?? 1)],
            "status": .object(status),
        ]
    }

    func getScale(_ type: ResourceType, namespace: String?, name: String) throws(SandboxError) -> JSONValue {
        SandboxStore.scaleView(of: try get(type, namespace: namespace, name: name))
    }

    /// Reads the current Scale, lets `change` produce the desired one (a PUT body or a patched
    /// Scale), and writes its `spec.replicas` back — all in one actor turn, so it is atomic.
    /// A `metadata.resourceVersion` in the desired Scale is a precondition (409 when stale).
    func writeScale(
        _ type: ResourceType, namespace: String?, name: String, dryRun: Bool,
        change: @Sendable (JSONValue) throws(SandboxError) -> JSONValue
    ) throws(SandboxError) -> JSONValue {
        let current = try get(type, namespace: namespace, name: name)
        let desired = try change(SandboxStore.scaleView(of: current))
        guard case .object = desired else {
            throw SandboxError.badRequest("a Scale must be a JSON object, got \(desired.typeNameWithArticle)")
        }
        if let kind = desired["kind"]?.stringValue, kind != "Scale" {
            throw SandboxError.badRequest("the body is a \(kind), expected an autoscaling/v1 Scale")
        }
        if let bodyName = desired[path: ["metadata", "name"]]?.stringValue, bodyName != name {
            throw SandboxError.badRequest("the name of the object (\(bodyName)) does not match the name on the URL (\(name))")
        }
        // An absent replicas field is Go's zero value, as on the real server.
        guard let replicas = (desired[path: ["spec", "replicas"]] ?? .int(0)).intValue else {
            throw SandboxError.invalid(
                kind: "Scale", name: name, causes: [("spec.replicas", "Invalid value: must be an integer")])
        }
        guard replicas >= 0 else {
            throw SandboxError.invalid(
                kind: "Scale", name: name,
                causes: [("spec.replicas", "Invalid value: \(replicas): must be greater than or equal to 0")])
        }
        var object = current
        object[path: ["spec", "replicas"]] = .int(replicas)
        if let precondition = desired[path: ["metadata", "resourceVersion"]]?.stringValue, !precondition.isEmpty {
            object[path: ["metadata", "resourceVersion"]] = .string(precondition)
        }
        let updated = try update(type, namespace: namespace, name: name, object: object, status: false, dryRun: dryRun)
        return SandboxStore.scaleView(of: updated)
    }
}
