import FledgeHTTP
/// A Kubernetes resource type as the REST API addresses it.
public struct GroupVersionResource: Hashable, Sendable, CustomStringConvertible {
    /// Empty for the core group (`/api/v1`).
    public var group: String
    public var version: String
    /// The plural resource name (`deployments`).
    public var resource: String
    /// Cluster-scoped resources (namespaces, CRDs, cluster roles) take no namespace.
    public var namespaced: Bool

    public init(group: String, version: String, resource: String, namespaced: Bool = true) {
        self.group = group
        self.version = version
        self.resource = resource
        self.namespaced = namespaced
    }

    /// `apps/v1` or `v1`.
    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }

    /// `deployments.apps`, as kubectl names resources.
    public var description: String { group.isEmpty ? resource : "\(resource).\(group)" }

    /// The collection path: `/apis/apps/v1/namespaces/ns/deployments`.
    func path(namespace: String?, name: String? = nil, subresource: String? = nil) -> String {
        var path = group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)"
        if namespaced, let namespace {
            path += "/namespaces/\(pathEscape(namespace))"
        }
        path += "/\(resource)"
        if let name {
            path += "/\(pathEscape(name))"
            if let subresource { path += "/\(subresource)" }
        }
        return path
    }

    public static let namespaces = GroupVersionResource(group: "", version: "v1", resource: "namespaces", namespaced: false)
    public static let pods = GroupVersionResource(group: "", version: "v1", resource: "pods")
    public static let services = GroupVersionResource(group: "", version: "v1", resource: "services")
    public static let configMaps = GroupVersionResource(group: "", version: "v1", resource: "configmaps")
    public static let secrets = GroupVersionResource(group: "", version: "v1", resource: "secrets")
    public static let coreEvents = GroupVersionResource(group: "", version: "v1", resource: "events")
    public static let deployments = GroupVersionResource(group: "apps", version: "v1", resource: "deployments")
    public static let virtualServices = GroupVersionResource(group: "networking.istio.io", version: "v1", resource: "virtualservices")
    public static let destinationRules = GroupVersionResource(group: "networking.istio.io", version: "v1", resource: "destinationrules")
    public static let leases = GroupVersionResource(group: "coordination.k8s.io", version: "v1", resource: "leases")
    public static let events = GroupVersionResource(group: "events.k8s.io", version: "v1", resource: "events")
    public static let customResourceDefinitions = GroupVersionResource(
        group: "apiextensions.k8s.io", version: "v1", resource: "customresourcedefinitions", namespaced: false)
    /// Fledge's own Rollout custom resource.
    public static let rollouts = GroupVersionResource(group: "fledge.dev", version: "v1alpha1", resource: "rollouts")
}

/// Escapes a name or namespace for a URL path segment.
func pathEscape(_ value: String) -> String { percentEncode(value) }

func queryString(_ items: [(String, String)]) -> String {
    items.isEmpty ? "" : "?" + items.map { "\(pathEscape($0.0))=\(pathEscape($0.1))" }.joined(separator: "&")
}
