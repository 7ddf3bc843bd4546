import FledgeJSON
import FledgeKubernetes

/// What the simulator reads from the cluster each tick: the VirtualService and
/// what it needs to find the pods behind each destination.
public struct MeshClusterState: Sendable, Equatable {
    public var virtualService: JSONValue?
    public var destinationRules: [JSONValue]
    public var services: [JSONValue]
    public var deployments: [JSONValue]

    public init(virtualService: JSONValue?, destinationRules: [JSONValue] = [], services: [JSONValue] = [], deployments: [JSONValue] = []) {
        self.virtualService = virtualService
        self.destinationRules = destinationRules
        self.services = services
        self.deployments = deployments
    }
}

/// Where a share of the traffic ends up.
public enum MeshTarget: Hashable, Sendable, CustomStringConvertible {
    /// A Deployment with ready replicas answers (`version`: its pods' `version` label, or "unknown").
    case workload(name: String, version: String, service: String)
    /// The caller's proxy answers 503 itself, as Envoy does when a destination has no
    /// endpoint (`UH`, no healthy upstream: the subset's labels select no ready pod)
    /// or no cluster (`NR`: the subset or Service does not exist).
    case unavailable(service: String, flag: String)
    /// No route of the VirtualService matches the request: Envoy answers 404 `NR`.
    case noRoute(service: String)

    public var description: String {
        switch self {
        case .workload(let name, _, _): return name
        case .unavailable(let service, let flag): return "503 \(flag) (\(service))"
        case .noRoute(let service): return "404 NR (\(service))"
        }
    }
}

/// Resolves the VirtualService's routes to workloads, the way Istio's proxies would.
///
/// A request matches an HTTP route when the route has no `match`, or when one of
/// its match entries holds: every `headers` condition (`exact`, `prefix`, `regex`)
/// is met, no `withoutHeaders` condition is, and a `uri` condition accepts `/`,
/// a `method` condition `GET`. Entries with other conditions (ports, source labels,
/// query parameters, …) never match: the simulated caller has none of those.
struct MeshRouter {
    let namespace: String
    let clusterDomain: String
    let state: MeshClusterState

    /// The targets of a request with these headers and their shares (summing to 1).
    func targets(headers: [String: String]) -> [(MeshTarget, Double)] {
        guard let object = state.virtualService else { return [] }
        let virtualService = VirtualService(object)
        let fallbackService = fqdn(virtualService.hosts.first ?? "unknown")
        guard let route = virtualService.http.first(where: { Self.matches($0.match, headers: headers) }) else {
            return [(.noRoute(service: fallbackService), 1)]
        }
        let destinations = route.route
        guard !destinations.isEmpty else { return [(.noRoute(service: fallbackService), 1)] }
        // Istio reads a missing weight as 100 for a lone destination, else 0.
        let weights = destinations.map { Double(max(0, $0.weight ?? (destinations.count == 1 ? 100 : 0))) }
        let total = weights.reduce(0, +)
        guard total > 0 else { return [(.noRoute(service: fallbackService), 1)] }
        var out: [(MeshTarget, Double)] = []
        for (destination, weight) in zip(destinations, weights) where weight > 0 {
            for (target, share) in endpoints(of: destination) {
                out.append((target, share * weight / total))
            }
        }
        return out
    }

    /// The workloads behind one destination, shared by ready replicas (kube-proxy and
    /// Envoy spread requests over endpoints, so a Deployment's share follows its pods).
    func endpoints(of destination: VirtualService.Destination) -> [(MeshTarget, Double)] {
        let host = destination.host ?? ""
        let service = fqdn(host)
        let kubernetesService = state.services.first { object in
            KubernetesObject(object).name == shortName(host)
        }
        var selector: [String: String] = kubernetesService.map { stringMap($0[path: ["spec", "selector"]]) } ?? [:]
        if let subsetName = destination.subset {
            guard let rule = state.destinationRules.map(DestinationRule.init).first(where: { fqdn($0.host ?? "") == service }),
                let subset = rule.subset(named: subsetName)
            else {
                return [(.unavailable(service: service, flag: "NR"), 1)]
            }
            // The subset narrows the Service's endpoints to pods with its labels too.
            selector.merge(subset.labels) { _, subsetValue in subsetValue }
        } else if kubernetesService == nil {
            return [(.unavailable(service: service, flag: "NR"), 1)]
        }
        var ready: [(Deployment, Int64)] = []
        for object in state.deployments {
            let deployment = Deployment(object)
            let labels = deployment.templateLabels
            guard selector.allSatisfy({ labels[$0.key] == $0.value }) else { continue }
            if deployment.readyReplicas > 0 { ready.append((deployment, deployment.readyReplicas)) }
        }
        let total = Double(ready.reduce(0) { $0 + $1.1 })
        guard total > 0 else { return [(.unavailable(service: service, flag: "UH"), 1)] }
        return ready.sorted { $0.0.name < $1.0.name }.map { deployment, replicas in
            (.workload(name: deployment.name, version: deployment.templateLabels["version"] ?? "unknown", service: service),
             Double(replicas) / total)
        }
    }

    /// `product-service` → `product-service.shop.svc.cluster.local`, as Istio labels `destination_service`.
    func fqdn(_ host: String) -> String {
        let parts = host.split(separator: ".")
        switch parts.count {
        case 0: return host
        case 1: return "\(host).\(namespace).svc.\(clusterDomain)"
        case 2: return "\(host).svc.\(clusterDomain)"
        case 3 where parts[2] == "svc": return "\(host).\(clusterDomain)"
        default: return host
        }
    }

    func shortName(_ host: String) -> String {
        let full = fqdn(host)
        let suffix = ".\(namespace).svc.\(clusterDomain)"
        return full.hasSuffix(suffix) ? String(full.dropLast(suffix.count)) : full
    }

    static func matches(_ match: JSONValue?, headers: [String: String]) -> Bool {
        guard let entries = match?.arrayValue, !entries.isEmpty else { return true }
        return entries.contains { entryMatches($0, headers: headers) }
    }

    static func entryMatches(_ entry: JSONValue, headers: [String: String]) -> Bool {
        guard let fields = entry.objectValue else { return false }
        for (key, condition) in fields {
            switch key {
            case "name", "ignoreUriCase":
                continue
            case "headers":
                for (header, test) in condition.objectValue ?? [:] {
                    guard let value = headers[header.lowercased()], stringMatches(test, value) else { return false }
                }
            case "withoutHeaders":
                for (header, test) in condition.objectValue ?? [:] {
                    if let value = headers[header.lowercased()], stringMatches(test, value) { return false }
                }
            case "uri":
                guard stringMatches(condition, "/") else { return false }
            case "method":
                guard stringMatches(condition, "GET") else { return false }
            default:
                return false
            }
        }
        return true
    }

    /// Istio's StringMatch: `exact`, `prefix` or `regex` (RE2, here Swift's regex, whole string).
    static func stringMatches(_ test: JSONValue, _ value: String) -> Bool {
        if let exact = test["exact"]?.stringValue { return value == exact }
        if let prefix = test["prefix"]?.stringValue { return value.hasPrefix(prefix) }
        if let pattern = test["regex"]?.stringValue {
            guard let regex = try? Regex(pattern) else { return false }
            return (try? regex.wholeMatch(in: value)) != nil
        }
        // An empty StringMatch only asks for presence.
        return test.objectValue?.isEmpty ?? false
    }
}

func stringMap(_ value: JSONValue?) -> [String: String] {
    var out: [String: String] = [:]
    for (key, value) in value?.objectValue ?? [:] { if let text = value.stringValue { out[key] = text } }
    return out
}
