import FledgeJSON
import Foundation

/// The built-in objects kubectl 1.32 builds itself and sends in protobuf (`kubectl create namespace|configmap|secret|
/// serviceaccount|service|role|clusterrole|rolebinding|clusterrolebinding|deployment`, `kubectl run`), read into the JSON object they stand
/// for, so those commands work against the sandbox as against a cluster.
///
/// Each kind is described by its fields from the Kubernetes API's generated.proto (number → JSON name and type).
/// Only what a client sets is read; fields the server owns (uid, resourceVersion, timestamps, status) are skipped.
/// A field the sandbox does not know is ignored when it holds its zero value (Go's protobuf encoder writes every
/// non-pointer field) and refused otherwise, naming it, so nothing a client sent is silently lost.
enum ProtobufObjects {
    indirect enum FieldType: Sendable {
        case string
        /// A varint; `keepZero` for pointer fields (`replicas: 0` means something), otherwise 0 is omitted as Go's
        /// JSON encoder omits it.
        case integer(keepZero: Bool)
        case bool(keepFalse: Bool)
        /// Base64 in JSON, as Go encodes `[]byte`.
        case bytes
        case message(Schema)
        case map(value: FieldType)
        /// `intstr.IntOrString`: a number or a string.
        case intOrString
        /// Set by the server (timestamps, status): skipped whatever it holds.
        case serverOwned
    }

    struct Field: Sendable {
        var json: String
        var type: FieldType
        var repeated = false
    }

    final class Schema: Sendable {
        let name: String
        let fields: [Int: Field]
        init(_ name: String, _ fields: [Int: Field]) {
            self.name = name
            self.fields = fields
        }
    }

    static func field(_ json: String, _ type: FieldType) -> Field { Field(json: json, type: type) }
    static func list(_ json: String, _ type: FieldType) -> Field { Field(json: json, type: type, repeated: true) }

    // k8s.io/apimachinery/pkg/apis/meta/v1
    static let objectMeta = Schema("ObjectMeta", [
        1: field("name", .string), 2: field("generateName", .string), 3: field("namespace", .string),
        4: field("selfLink", .serverOwned), 5: field("uid", .serverOwned), 6: field("resourceVersion", .serverOwned),
        7: field("generation", .serverOwned), 8: field("creationTimestamp", .serverOwned),
        9: field("deletionTimestamp", .serverOwned), 10: field("deletionGracePeriodSeconds", .serverOwned),
        11: field("labels", .map(value: .string)), 12: field("annotations", .map(value: .string)),
        13: list("ownerReferences", .message(ownerReference)), 14: list("finalizers", .string),
        17: list("managedFields", .serverOwned),
    ])
    static let ownerReference = Schema("OwnerReference", [
        1: field("kind", .string), 3: field("name", .string), 4: field("uid", .string), 5: field("apiVersion", .string),
        6: field("controller", .bool(keepFalse: true)), 7: field("blockOwnerDeletion", .bool(keepFalse: true)),
    ])
    static let labelSelectorRequirement = Schema("LabelSelectorRequirement", [
        1: field("key", .string), 2: field("operator", .string), 3: list("values", .string),
    ])
    static let labelSelector = Schema("LabelSelector", [
        1: field("matchLabels", .map(value: .string)), 2: list("matchExpressions", .message(labelSelectorRequirement)),
    ])

    // k8s.io/api/core/v1
    static let namespace = Schema("Namespace", [
        1: field("metadata", .message(objectMeta)),
        2: field("spec", .message(Schema("NamespaceSpec", [1: list("finalizers", .string)]))),
        3: field("status", .serverOwned),
    ])
    static let configMap = Schema("ConfigMap", [
        1: field("metadata", .message(objectMeta)), 2: field("data", .map(value: .string)),
        3: field("binaryData", .map(value: .bytes)), 4: field("immutable", .bool(keepFalse: true)),
    ])
    static let secret = Schema("Secret", [
        1: field("metadata", .message(objectMeta)), 2: field("data", .map(value: .bytes)), 3: field("type", .string),
        4: field("stringData", .map(value: .string)), 5: field("immutable", .bool(keepFalse: true)),
    ])
    static let objectReference = Schema("ObjectReference", [
        1: field("kind", .string), 2: field("namespace", .string), 3: field("name", .string), 4: field("uid", .string),
        5: field("apiVersion", .string), 6: field("resourceVersion", .string), 7: field("fieldPath", .string),
    ])
    static let serviceAccount = Schema("ServiceAccount", [
        1: field("metadata", .message(objectMeta)), 2: list("secrets", .message(objectReference)),
        3: list("imagePullSecrets", .message(Schema("LocalObjectReference", [1: field("name", .string)]))),
        4: field("automountServiceAccountToken", .bool(keepFalse: true)),
    ])
    static let containerPort = Schema("ContainerPort", [
        1: field("name", .string), 2: field("hostPort", .integer(keepZero: false)),
        3: field("containerPort", .integer(keepZero: false)), 4: field("protocol", .string), 5: field("hostIP", .string),
    ])
    static let container = Schema("Container", [
        1: field("name", .string), 2: field("image", .string), 3: list("command", .string), 4: list("args", .string),
        5: field("workingDir", .string), 6: list("ports", .message(containerPort)),
        7: list("env", .message(Schema("EnvVar", [1: field("name", .string), 2: field("value", .string)]))),
        // ResourceRequirements: an empty message unless limits or requests were set, which the sandbox does not read.
        8: field("resources", .message(Schema("ResourceRequirements", [:]))),
        13: field("terminationMessagePath", .string), 14: field("imagePullPolicy", .string),
        15: field("terminationMessagePolicy", .string),
    ])
    static let podSpec = Schema("PodSpec", [
        2: list("containers", .message(container)), 3: field("restartPolicy", .string),
        6: field("dnsPolicy", .string), 7: field("nodeSelector", .map(value: .string)),
        8: field("serviceAccountName", .string), 11: field("hostNetwork", .bool(keepFalse: false)),
        20: list("initContainers", .message(container)), 25: field("schedulerName", .string),
    ])
    static let podTemplateSpec = Schema("PodTemplateSpec", [
        1: field("metadata", .message(objectMeta)), 2: field("spec", .message(podSpec)),
    ])

    static let pod = Schema("Pod", [
        1: field("metadata", .message(objectMeta)), 2: field("spec", .message(podSpec)), 3: field("status", .serverOwned),
    ])
    static let servicePort = Schema("ServicePort", [
        1: field("name", .string), 2: field("protocol", .string), 3: field("port", .integer(keepZero: false)),
        4: field("targetPort", .intOrString), 5: field("nodePort", .integer(keepZero: false)), 6: field("appProtocol", .string),
    ])
    static let service = Schema("Service", [
        1: field("metadata", .message(objectMeta)),
        2: field("spec", .message(Schema("ServiceSpec", [
            1: list("ports", .message(servicePort)), 2: field("selector", .map(value: .string)), 3: field("clusterIP", .string),
            4: field("type", .string), 5: list("externalIPs", .string), 7: field("sessionAffinity", .string),
            10: field("externalName", .string), 11: field("externalTrafficPolicy", .string),
        ]))),
        3: field("status", .serverOwned),
    ])

    // k8s.io/api/apps/v1
    static let deployment = Schema("Deployment", [
        1: field("metadata", .message(objectMeta)),
        2: field("spec", .message(Schema("DeploymentSpec", [
            1: field("replicas", .integer(keepZero: true)), 2: field("selector", .message(labelSelector)),
            3: field("template", .message(podTemplateSpec)),
            4: field("strategy", .message(Schema("DeploymentStrategy", [
                1: field("type", .string),
                2: field("rollingUpdate", .message(Schema("RollingUpdateDeployment", [
                    1: field("maxUnavailable", .intOrString), 2: field("maxSurge", .intOrString),
                ]))),
            ]))),
            5: field("minReadySeconds", .integer(keepZero: false)), 6: field("revisionHistoryLimit", .integer(keepZero: true)),
            7: field("paused", .bool(keepFalse: false)), 9: field("progressDeadlineSeconds", .integer(keepZero: true)),
        ]))),
        3: field("status", .serverOwned),
    ])

    // k8s.io/api/rbac/v1
    static let policyRule = Schema("PolicyRule", [
        1: list("verbs", .string), 2: list("apiGroups", .string), 3: list("resources", .string),
        4: list("resourceNames", .string), 5: list("nonResourceURLs", .string),
    ])
    static let role = Schema("Role", [1: field("metadata", .message(objectMeta)), 2: list("rules", .message(policyRule))])
    static let clusterRole = Schema("ClusterRole", [
        1: field("metadata", .message(objectMeta)), 2: list("rules", .message(policyRule)),
        3: field("aggregationRule", .message(Schema("AggregationRule", [1: list("clusterRoleSelectors", .message(labelSelector))]))),
    ])
    static let subject = Schema("Subject", [
        1: field("kind", .string), 2: field("apiGroup", .string), 3: field("name", .string), 4: field("namespace", .string),
    ])
    static let roleRef = Schema("RoleRef", [1: field("apiGroup", .string), 2: field("kind", .string), 3: field("name", .string)])
    static let roleBinding = Schema("RoleBinding", [
        1: field("metadata", .message(objectMeta)), 2: list("subjects", .message(subject)), 3: field("roleRef", .message(roleRef)),
    ])
    static let clusterRoleBinding = Schema("ClusterRoleBinding", [
        1: field("metadata", .message(objectMeta)), 2: list("subjects", .message(subject)), 3: field("roleRef", .message(roleRef)),
    ])

    /// The kinds read, by `apiVersion/kind`.
    static let schemas: [String: Schema] = [
        "v1/Namespace": namespace, "v1/ConfigMap": configMap, "v1/Secret": secret, "v1/ServiceAccount": serviceAccount,
        "v1/Pod": pod, "v1/Service": service,
        "apps/v1/Deployment": deployment,
        "rbac.authorization.k8s.io/v1/Role": role, "rbac.authorization.k8s.io/v1/ClusterRole": clusterRole,
        "rbac.authorization.k8s.io/v1/RoleBinding": roleBinding,
        "rbac.authorization.k8s.io/v1/ClusterRoleBinding": clusterRoleBinding,
    ]

    /// The kinds read, for messages: `ConfigMap, ClusterRole, …`.
    static var readableKinds: String {
        schemas.keys.map { String($0.split(separator: "/").last ?? "") }.sorted().joined(separator: ", ")
    }

    /// A protobuf request body as its JSON object, or nil when its kind is not one the sandbox reads.
    static func object(_ body: [UInt8]) throws(SandboxError) -> JSONValue? {
        let (apiVersion, kind, raw) = try Protobuf.unwrap(body)
        guard let schema = schemas["\(apiVersion)/\(kind)"] else { return nil }
        var object: JSONObject = [:]
        object["apiVersion"] = .string(apiVersion)
        object["kind"] = .string(kind)
        for (key, value) in try decode(raw, schema, path: kind) { object[key] = value }
        return .object(object)
    }

    static func decode(_ bytes: ArraySlice<UInt8>, _ schema: Schema, path: String) throws(SandboxError) -> JSONObject {
        var result: JSONObject = [:]
        var lists: [String: [JSONValue]] = [:]
        var maps: [String: JSONObject] = [:]
        for (number, value) in try Protobuf.fields(bytes) {
            guard let field = schema.fields[number] else {
                if isZero(value) { continue }
                throw SandboxError.unsupportedMediaType(
                    Protobuf.mediaType, accepted: ["application/json", "application/yaml"],
                    detail: "\(path) has field \(number) of \(schema.name) set, which the Fledge sandbox does not read from protobuf")
            }
            let fieldPath = "\(path).\(field.json)"
            if case .map(let valueType) = field.type {
                let (key, item) = try mapEntry(value, valueType, path: fieldPath)
                maps[field.json, default: [:]][key] = item
                continue
            }
            // In a list every item counts, "" too (a rule's `apiGroups: [""]` is the core group).
            if field.repeated, case .string = field.type, let text = Protobuf.string(value) {
                lists[field.json, default: []].append(.string(text))
                continue
            }
            guard let decoded = try scalar(value, field.type, path: fieldPath) else { continue }
            if field.repeated {
                lists[field.json, default: []].append(decoded)
            } else {
                result[field.json] = decoded
            }
        }
        for (key, items) in lists where !items.isEmpty { result[key] = .array(items) }
        for (key, entries) in maps where !entries.isEmpty { result[key] = .object(entries) }
        return result
    }

    static func isZero(_ value: Protobuf.Value) -> Bool {
        switch value {
        case .varint(let number): return number == 0
        case .bytes(let bytes): return bytes.isEmpty
        case .fixed: return false
        }
    }

    static func mismatch(_ path: String, _ expected: String) -> SandboxError {
        Protobuf.malformed("\(path) is not \(expected)")
    }

    /// One value; nil when it is to be omitted (zero, empty, or the server's).
    static func scalar(_ value: Protobuf.Value, _ type: FieldType, path: String) throws(SandboxError) -> JSONValue? {
        switch type {
        case .serverOwned:
            return nil
        case .string:
            guard let text = Protobuf.string(value) else { throw mismatch(path, "a string") }
            return text.isEmpty ? nil : .string(text)
        case .bytes:
            guard case .bytes(let bytes) = value else { throw mismatch(path, "bytes") }
            return .string(Data(bytes).base64EncodedString())
        case .integer(let keepZero):
            guard case .varint(let number) = value else { throw mismatch(path, "an integer") }
            // int32 and int64 fields: negative numbers arrive as their two's complement.
            let signed = Int64(bitPattern: number)
            return signed == 0 && !keepZero ? nil : .int(signed)
        case .bool(let keepFalse):
            guard case .varint(let number) = value else { throw mismatch(path, "a boolean") }
            return number == 0 && !keepFalse ? nil : .bool(number != 0)
        case .intOrString:
            guard let bytes = Protobuf.message(value) else { throw mismatch(path, "an int-or-string") }
            var kind: UInt64 = 0
            var number: UInt64 = 0
            var text = ""
            for (field, part) in try Protobuf.fields(bytes) {
                switch (field, part) {
                case (1, .varint(let value)): kind = value
                case (2, .varint(let value)): number = value
                case (3, _): text = Protobuf.string(part) ?? ""
                default: continue
                }
            }
            return kind == 1 ? .string(text) : .int(Int64(Int32(truncatingIfNeeded: number)))
        case .message(let schema):
            guard let bytes = Protobuf.message(value) else { throw mismatch(path, "a \(schema.name)") }
            let object = try decode(bytes, schema, path: path)
            return object.isEmpty ? nil : .object(object)
        case .map:
            // Maps are entries of their own, gathered by `decode`.
            return nil
        }
    }

    /// A map entry: a message with the key as field 1 and the value as field 2.
    static func mapEntry(_ value: Protobuf.Value, _ valueType: FieldType, path: String) throws(SandboxError) -> (String, JSONValue) {
        guard let bytes = Protobuf.message(value) else { throw mismatch(path, "a map") }
        var key = ""
        var item: JSONValue = .string("")
        for (field, part) in try Protobuf.fields(bytes) {
            if field == 1 { key = Protobuf.string(part) ?? "" }
            if field == 2 { item = try scalar(part, valueType, path: "\(path)[\(key)]") ?? .string("") }
        }
        return (key, item)
    }
}
