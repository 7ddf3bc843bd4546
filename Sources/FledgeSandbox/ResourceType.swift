import FledgeJSON

/// A group and a plural resource name, e.g. `deployments.apps`; objects are stored per group resource,
/// so every served version of a group sees the same objects.
public struct GroupResource: Hashable, Sendable, CustomStringConvertible {
    public var group: String
    public var resource: String

    public init(group: String, resource: String) {
        self.group = group
        self.resource = resource
    }

    /// As the Kubernetes API writes it in messages: `deployments.apps`, `pods`.
    public var description: String { group.isEmpty ? resource : "\(resource).\(group)" }

    public static let namespaces = GroupResource(group: "", resource: "namespaces")
    public static let pods = GroupResource(group: "", resource: "pods")
    public static let services = GroupResource(group: "", resource: "services")
    public static let configMaps = GroupResource(group: "", resource: "configmaps")
    public static let secrets = GroupResource(group: "", resource: "secrets")
    public static let serviceAccounts = GroupResource(group: "", resource: "serviceaccounts")
    public static let events = GroupResource(group: "", resource: "events")
    /// `events.k8s.io/v1` Events: the core Events, converted (see `storage`).
    public static let eventsV1 = GroupResource(group: "events.k8s.io", resource: "events")
    public static let deployments = GroupResource(group: "apps", resource: "deployments")
    public static let replicaSets = GroupResource(group: "apps", resource: "replicasets")
    public static let virtualServices = GroupResource(group: "networking.istio.io", resource: "virtualservices")
    public static let destinationRules = GroupResource(group: "networking.istio.io", resource: "destinationrules")
    public static let leases = GroupResource(group: "coordination.k8s.io", resource: "leases")
    public static let customResourceDefinitions = GroupResource(
        group: "apiextensions.k8s.io", resource: "customresourcedefinitions")
    public static let roles = GroupResource(group: "rbac.authorization.k8s.io", resource: "roles")
    public static let clusterRoles = GroupResource(group: "rbac.authorization.k8s.io", resource: "clusterroles")
    public static let roleBindings = GroupResource(group: "rbac.authorization.k8s.io", resource: "rolebindings")
    public static let clusterRoleBindings = GroupResource(
        group: "rbac.authorization.k8s.io", resource: "clusterrolebindings")

    /// Where the objects are kept: events.k8s.io Events are core Events, as on a real API server (one storage,
    /// served through both groups with their fields converted); everything else is kept under its own name.
    public var storage: GroupResource { self == .eventsV1 ? .events : self }
}

/// A column of `kubectl get` output (a CRD's `additionalPrinterColumns`, or a built-in one).
public struct PrinterColumn: Sendable, Equatable {
    public var name: String
    public var type: String
    public var jsonPath: String
    public var description: String
    public var priority: Int

    public init(name: String, type: String, jsonPath: String, description: String = "", priority: Int = 0) {
        self.name = name
        self.type = type
        self.jsonPath = jsonPath
        self.description = description
        self.priority = priority
    }

    /// The creation time as an RFC 3339 timestamp (not an age): what the real server's default table convertor
    /// (CustomResourceDefinitions) and its Role and ClusterRole printers show, and those tables have no Age column.
    static let createdAt = PrinterColumn(
        name: "Created At", type: "string", jsonPath: "#createdAt",
        description: "CreationTimestamp is a timestamp representing the server time when this object was created.")
}

/// One served resource in one group version: what discovery lists and what the handlers need.
public struct ResourceType: Sendable {
    public var group: String
    public var version: String
    /// Plural, lower case: `deployments`.
    public var resource: String
    public var singular: String
    public var kind: String
    public var namespaced: Bool
    public var shortNames: [String]
    public var categories: [String]
    public var hasStatus: Bool
    /// Serves the autoscaling/v1 `scale` subresource over `spec.replicas` (what `kubectl scale` uses).
    public var hasScale: Bool
    /// Custom resources get no strategic merge patch, like the real server.
    public var isCustom: Bool
    public var printerColumns: [PrinterColumn]
    /// The CRD's openAPIV3Schema for this version, used to validate writes.
    public var schema: JSONValue?

    public var groupResource: GroupResource { GroupResource(group: group, resource: resource) }
    /// The group resource whose store holds these objects (see `GroupResource.storage`).
    public var storageResource: GroupResource { groupResource.storage }
    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }
    public var groupVersion: String { apiVersion }
    public var listKind: String { kind + "List" }
    /// Objects of this kind carry `metadata.generation`.
    public var tracksGeneration: Bool { hasStatus || isCustom }

    /// An object of this type in its stored form (an events.k8s.io Event as a core Event).
    func toStorage(_ object: JSONValue) -> JSONValue {
        groupResource == .eventsV1 ? EventConversion.toCore(object) : object
    }

    /// A stored object in this type's form.
    func fromStorage(_ object: JSONValue) -> JSONValue {
        groupResource == .eventsV1 ? EventConversion.toEventsV1(object) : object
    }

    /// A stored object as this version answers it: its own form and apiVersion (Istio's v1 and v1beta1 share storage).
    func present(_ object: JSONValue) -> JSONValue {
        var copy = fromStorage(object)
        if copy["apiVersion"]?.stringValue != apiVersion { copy["apiVersion"] = .string(apiVersion) }
        return copy
    }

    static let allVerbs: [String] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

    init(
        group: String, version: String, resource: String, singular: String, kind: String, namespaced: Bool,
        shortNames: [String] = [], categories: [String] = [], hasStatus: Bool = false, hasScale: Bool = false,
        isCustom: Bool = false, printerColumns: [PrinterColumn] = [], schema: JSONValue? = nil
    ) {
        self.group = group
        self.version = version
        self.resource = resource
        self.singular = singular
        self.kind = kind
        self.namespaced = namespaced
        self.shortNames = shortNames
        self.categories = categories
        self.hasStatus = hasStatus
        self.hasScale = hasScale
        self.isCustom = isCustom
        self.printerColumns = printerColumns
        self.schema = schema
    }

    /// The types every sandbox serves from the start.
    static let builtIn: [ResourceType] = {
        var types: [ResourceType] = [
            ResourceType(
                group: "", version: "v1", resource: "namespaces", singular: "namespace", kind: "Namespace",
                namespaced: false, shortNames: ["ns"], hasStatus: true,
                printerColumns: [PrinterColumn(name: "Status", type: "string", jsonPath: ".status.phase")]),
            ResourceType(
                group: "", version: "v1", resource: "services", singular: "service", kind: "Service", namespaced: true,
                shortNames: ["svc"], categories: ["all"], hasStatus: true,
                printerColumns: [
                    PrinterColumn(name: "Type", type: "string", jsonPath: ".spec.type"),
                    PrinterColumn(name: "Cluster-IP", type: "string", jsonPath: ".spec.clusterIP"),
                ]),
            ResourceType(
                group: "", version: "v1", resource: "pods", singular: "pod", kind: "Pod", namespaced: true,
                shortNames: ["po"], categories: ["all"], hasStatus: true,
                printerColumns: [
                    PrinterColumn(name: "Ready", type: "string", jsonPath: "#podReady"),
                    PrinterColumn(name: "Status", type: "string", jsonPath: ".status.phase"),
                ]),
            ResourceType(
                group: "", version: "v1", resource: "configmaps", singular: "configmap", kind: "ConfigMap",
                namespaced: true, shortNames: ["cm"],
                printerColumns: [PrinterColumn(name: "Data", type: "integer", jsonPath: "#dataCount")]),
            ResourceType(
                group: "", version: "v1", resource: "secrets", singular: "secret", kind: "Secret", namespaced: true,
                printerColumns: [
                    PrinterColumn(name: "Type", type: "string", jsonPath: ".type"),
                    PrinterColumn(name: "Data", type: "integer", jsonPath: "#dataCount"),
                ]),
            ResourceType(
                group: "", version: "v1", resource: "events", singular: "event", kind: "Event", namespaced: true,
                shortNames: ["ev"], printerColumns: Table.eventColumns),
            ResourceType(
                group: "", version: "v1", resource: "serviceaccounts", singular: "serviceaccount",
                kind: "ServiceAccount", namespaced: true, shortNames: ["sa"],
                printerColumns: [PrinterColumn(name: "Secrets", type: "integer", jsonPath: "#secretCount")]),
            ResourceType(
                group: "apps", version: "v1", resource: "deployments", singular: "deployment", kind: "Deployment",
                namespaced: true, shortNames: ["deploy"], categories: ["all"], hasStatus: true, hasScale: true,
                printerColumns: [
                    PrinterColumn(name: "Ready", type: "string", jsonPath: "#deploymentReady"),
                    PrinterColumn(name: "Up-to-date", type: "integer", jsonPath: ".status.updatedReplicas"),
                    PrinterColumn(name: "Available", type: "integer", jsonPath: ".status.availableReplicas"),
                ]),
            // Written by the sandbox's Deployment simulation, as the real Deployment controller writes them: what
            // `kubectl rollout history|undo` and `kubectl describe deployment` read.
            ResourceType(
                group: "apps", version: "v1", resource: "replicasets", singular: "replicaset", kind: "ReplicaSet",
                namespaced: true, shortNames: ["rs"], categories: ["all"], hasStatus: true, hasScale: true,
                printerColumns: [
                    PrinterColumn(name: "Desired", type: "integer", jsonPath: ".spec.replicas"),
                    PrinterColumn(name: "Current", type: "integer", jsonPath: ".status.replicas"),
                    PrinterColumn(name: "Ready", type: "integer", jsonPath: ".status.readyReplicas"),
                ]),
            ResourceType(
                group: "coordination.k8s.io", version: "v1", resource: "leases", singular: "lease", kind: "Lease",
                namespaced: true,
                printerColumns: [PrinterColumn(name: "Holder", type: "string", jsonPath: ".spec.holderIdentity")]),
            // The same Events as core v1 (one storage, fields converted: EventConversion).
            ResourceType(
                group: "events.k8s.io", version: "v1", resource: "events", singular: "event", kind: "Event",
                namespaced: true, shortNames: ["ev"], printerColumns: Table.eventColumns),
            ResourceType(
                group: "apiextensions.k8s.io", version: "v1", resource: "customresourcedefinitions",
                singular: "customresourcedefinition", kind: "CustomResourceDefinition", namespaced: false,
                shortNames: ["crd", "crds"], hasStatus: true,
                printerColumns: [PrinterColumn.createdAt]),
            ResourceType(
                group: "rbac.authorization.k8s.io", version: "v1", resource: "roles", singular: "role", kind: "Role",
                namespaced: true, printerColumns: [PrinterColumn.createdAt]),
            ResourceType(
                group: "rbac.authorization.k8s.io", version: "v1", resource: "clusterroles", singular: "clusterrole",
                kind: "ClusterRole", namespaced: false, printerColumns: [PrinterColumn.createdAt]),
            ResourceType(
                group: "rbac.authorization.k8s.io", version: "v1", resource: "rolebindings", singular: "rolebinding",
                kind: "RoleBinding", namespaced: true,
                printerColumns: [PrinterColumn(name: "Role", type: "string", jsonPath: "#roleRef")]),
            ResourceType(
                group: "rbac.authorization.k8s.io", version: "v1", resource: "clusterrolebindings",
                singular: "clusterrolebinding", kind: "ClusterRoleBinding", namespaced: false,
                printerColumns: [PrinterColumn(name: "Role", type: "string", jsonPath: "#roleRef")]),
        ]
        // Istio's networking types, served as v1 and v1beta1 (the same objects), as Istio's CRDs do.
        for version in ["v1", "v1beta1"] {
            types.append(
                ResourceType(
                    group: "networking.istio.io", version: version, resource: "virtualservices",
                    singular: "virtualservice", kind: "VirtualService", namespaced: true, shortNames: ["vs"],
                    categories: ["istio-io", "networking-istio-io"], isCustom: true,
                    printerColumns: [
                        PrinterColumn(name: "Gateways", type: "string", jsonPath: ".spec.gateways"),
                        PrinterColumn(name: "Hosts", type: "string", jsonPath: ".spec.hosts"),
                    ]))
            types.append(
                ResourceType(
                    group: "networking.istio.io", version: version, resource: "destinationrules",
                    singular: "destinationrule", kind: "DestinationRule", namespaced: true, shortNames: ["dr"],
                    categories: ["istio-io", "networking-istio-io"], isCustom: true,
                    printerColumns: [PrinterColumn(name: "Host", type: "string", jsonPath: ".spec.host")]))
        }
        return types
    }()

    /// The types a CustomResourceDefinition object declares (one per served version).
    static func fromCRD(_ crd: JSONValue) throws(SandboxError) -> [ResourceType] {
        let name = crd[path: ["metadata", "name"]]?.stringValue ?? ""
        func invalid(_ field: String, _ message: String) -> SandboxError {
            .invalid(kind: "CustomResourceDefinition", name: name, causes: [(field, message)])
        }
        guard let group = crd[path: ["spec", "group"]]?.stringValue, !group.isEmpty else {
            throw invalid("spec.group", "Required value")
        }
        guard let plural = crd[path: ["spec", "names", "plural"]]?.stringValue, !plural.isEmpty else {
            throw invalid("spec.names.plural", "Required value")
        }
        guard let kind = crd[path: ["spec", "names", "kind"]]?.stringValue, !kind.isEmpty else {
            throw invalid("spec.names.kind", "Required value")
        }
        guard name == "\(plural).\(group)" else {
            throw invalid("metadata.name", "Invalid value: \"\(name)\": must be spec.names.plural+\".\"+spec.group")
        }
        let scope = crd[path: ["spec", "scope"]]?.stringValue ?? ""
        guard scope == "Namespaced" || scope == "Cluster" else {
            throw invalid("spec.scope", "Unsupported value: \"\(scope)\": supported values: \"Cluster\", \"Namespaced\"")
        }
        guard let versions = crd[path: ["spec", "versions"]]?.arrayValue, !versions.isEmpty else {
            throw invalid("spec.versions", "Invalid value: must have exactly one version marked as storage version")
        }
        let singular = crd[path: ["spec", "names", "singular"]]?.stringValue ?? kind.lowercased()
        let shortNames = crd[path: ["spec", "names", "shortNames"]]?.arrayValue?.compactMap(\.stringValue) ?? []
        let categories = crd[path: ["spec", "names", "categories"]]?.arrayValue?.compactMap(\.stringValue) ?? []
        var result: [ResourceType] = []
        var storageCount = 0
        for (index, version) in versions.enumerated() {
            guard let versionName = version["name"]?.stringValue, !versionName.isEmpty else {
                throw invalid("spec.versions[\(index)].name", "Required value")
            }
            if version["storage"]?.boolValue == true { storageCount += 1 }
            guard version["served"]?.boolValue ?? true else { continue }
            let columns = (version["additionalPrinterColumns"]?.arrayValue ?? []).compactMap { column -> PrinterColumn? in
                guard let name = column["name"]?.stringValue, let path = column["jsonPath"]?.stringValue else { return nil }
                return PrinterColumn(
                    name: name, type: column["type"]?.stringValue ?? "string", jsonPath: path,
                    description: column["description"]?.stringValue ?? "",
                    priority: Int(column["priority"]?.intValue ?? 0))
            }
            result.append(
                ResourceType(
                    group: group, version: versionName, resource: plural, singular: singular, kind: kind,
                    namespaced: scope == "Namespaced", shortNames: shortNames, categories: categories,
                    hasStatus: version[path: ["subresources", "status"]] != nil, isCustom: true,
                    printerColumns: columns, schema: version[path: ["schema", "openAPIV3Schema"]]))
        }
        guard storageCount == 1 else {
            throw invalid("spec.versions", "Invalid value: must have exactly one version marked as storage version")
        }
        return result
    }
}
