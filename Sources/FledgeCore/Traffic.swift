import FledgeJSON

/// One destination of an Istio HTTP route.
public struct RouteDestination: Sendable, Equatable {
    public var host: String?
    public var subset: String?
    /// As written; Istio treats a missing weight of a single destination as 100.
    public var weight: Int?
    /// The entry as written without its weight (destination, port, headers …): two entries for one subset that
    /// differ here route differently, and cannot be merged into one.
    public var withoutWeight: JSONValue = .null
}

/// One entry of a VirtualService's `spec.http`.
public struct HTTPRouteView: Sendable, Equatable {
    public var index: Int
    public var name: String?
    /// True when the route has a non-empty `match` (only some requests reach it).
    public var hasMatch: Bool
    public var destinations: [RouteDestination]
    /// The route's name, or `http[INDEX]` when it has none.
    public var id: String { name ?? "http[\(index)]" }

    /// The first of `subsets` that has several destinations in this route that differ in more than their weight (other
    /// ports, header rules), with how many. Fledge splits a route between one stable and one canary destination, so
    /// it would have to drop one of them; identical copies are merged instead.
    public func differingDuplicate(among subsets: [String]) -> (subset: String, count: Int)? {
        for subset in subsets {
            let entries = destinations.filter { $0.subset == subset }
            if entries.count > 1, Set(entries.map { $0.withoutWeight.serializedString(sortedKeys: true) }).count > 1 { return (subset, entries.count) }
        }
        return nil
    }

    /// The canary weight when this route sends only to the two subsets and its weights sum to 100; nil otherwise.
    public func canaryWeight(stableSubset: String, canarySubset: String) -> Int? {
        let stable = destinations.filter { $0.subset == stableSubset }
        let canary = destinations.filter { $0.subset == canarySubset }
        guard stable.count + canary.count == destinations.count, stable.count == 1, canary.count <= 1 else { return nil }
        if canary.isEmpty { return (stable[0].weight ?? 100) == 100 ? 0 : nil }
        let s = stable[0].weight ?? 0
        let c = canary[0].weight ?? 0
        guard s + c == 100, s >= 0, c >= 0 else { return nil }
        return c
    }
}

/// The HTTP routes of a VirtualService object (or of its `spec`).
public func httpRoutes(of virtualService: JSONValue) -> [HTTPRouteView] {
    let spec = virtualService["spec"] ?? virtualService
    guard let http = spec["http"]?.arrayValue else { return [] }
    return http.enumerated().map { index, route in
        let match = route["match"]
        let hasMatch = match.map { !($0.isNull || $0.arrayValue?.isEmpty == true) } ?? false
        let destinations = (route["route"]?.arrayValue ?? []).map { d in
            var rest = d
            rest["weight"] = nil
            return RouteDestination(
                host: d[path: ["destination", "host"]]?.stringValue,
                subset: d[path: ["destination", "subset"]]?.stringValue,
                weight: d["weight"]?.intValue.map { Int($0) }, withoutWeight: rest)
        }
        return HTTPRouteView(index: index, name: route["name"]?.stringValue, hasMatch: hasMatch, destinations: destinations)
    }
}

/// Why the managed routes cannot be found.
public struct TrafficError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: EventReason
    public var message: String
    public var description: String { message }
}

/// The routes whose weights Fledge manages: the routes named in `spec.traffic.routes`, or by default every
/// route whose destinations all name the stable or canary subset and include the stable one (the seed's
/// `x-canary` header route sends only to canary, so it is left alone).
///
/// `host`, when given (fully qualified, see `qualifiedHost`), keeps the default out of routes to other services whose
/// subsets happen to have the same names; routes named in `spec.traffic.routes` are taken as named.
///
/// `allowingDuplicates`: for taking weight off the canary, where a route with two different destinations for one subset
/// (which `settingWeights` merges) must still be found.
public func managedRoutes(
    of virtualService: JSONValue, traffic: TrafficPlan, host: String? = nil, namespace: String = "default", allowingDuplicates: Bool = false
) -> Result<[HTTPRouteView], TrafficError> {
    let routes = httpRoutes(of: virtualService)
    if !traffic.routes.isEmpty {
        var out: [HTTPRouteView] = []
        for name in traffic.routes {
            guard let route = routes.first(where: { $0.name == name }) else {
                return .failure(TrafficError(reason: .routeNotFound, message: "VirtualService \(traffic.virtualService) has no HTTP route named '\(name)'"))
            }
            if route.destinations.contains(where: { $0.subset != traffic.stableSubset && $0.subset != traffic.canarySubset }) {
                return .failure(
                    TrafficError(
                        reason: .routeNotManageable,
                        message: "route '\(name)' of VirtualService \(traffic.virtualService) sends to a destination other than subsets \(traffic.stableSubset) and \(traffic.canarySubset)"))
            }
            if !route.destinations.contains(where: { $0.subset == traffic.stableSubset }) {
                return .failure(
                    TrafficError(
                        reason: .routeNotManageable,
                        message: "route '\(name)' of VirtualService \(traffic.virtualService) has no destination for subset \(traffic.stableSubset): Fledge splits a route between stable and canary (a route that sends only to the canary is left alone)"))
            }
            if !allowingDuplicates, let error = duplicateError(route, traffic) { return .failure(error) }
            out.append(route)
        }
        return .success(out)
    }
    let found = routes.filter { route in
        !route.destinations.isEmpty
            && route.destinations.allSatisfy { $0.subset == traffic.stableSubset || $0.subset == traffic.canarySubset }
            && route.destinations.contains { $0.subset == traffic.stableSubset }
            && (host.map { host in route.destinations.allSatisfy { $0.host.map { sameService(qualifiedHost($0, namespace: namespace), host) } ?? false } } ?? true)
    }
    // A route Fledge would manage but cannot split without dropping a destination is said, not skipped or rewritten.
    for route in found where !allowingDuplicates { if let error = duplicateError(route, traffic) { return .failure(error) } }
    if found.isEmpty {
        return .failure(
            TrafficError(
                reason: .routeNotFound,
                message: "VirtualService \(traffic.virtualService) has no HTTP route that sends to subset \(traffic.stableSubset) (and \(traffic.canarySubset) only)"
                    + (host.map { " of host \($0)" } ?? "") + nonHTTPNote(virtualService, subset: traffic.stableSubset)))
    }
    return .success(found)
}

/// `; its tcp route tcp[0] sends to subset stable, but Fledge shifts weights on HTTP routes only` when a tcp or tls route
/// uses the subset: a TCP service cannot be rolled out by Fledge, and the message should say that rather than
/// leave the user looking for a typo.
private func nonHTTPNote(_ virtualService: JSONValue, subset: String) -> String {
    let spec = virtualService["spec"] ?? virtualService
    for kind in ["tcp", "tls"] {
        for (i, route) in (spec[kind]?.arrayValue ?? []).enumerated()
        where (route["route"]?.arrayValue ?? []).contains(where: { $0[path: ["destination", "subset"]]?.stringValue == subset }) {
            return "; its \(kind) route \(route["name"]?.stringValue ?? "\(kind)[\(i)]") sends to subset \(subset), but Fledge shifts weights on HTTP routes only"
        }
    }
    return ""
}

/// A managed route with two different destinations for one subset (other ports, say): setting weights would drop one.
private func duplicateError(_ route: HTTPRouteView, _ traffic: TrafficPlan) -> TrafficError? {
    guard let duplicate = route.differingDuplicate(among: [traffic.stableSubset, traffic.canarySubset]) else { return nil }
    return TrafficError(
        reason: .routeNotManageable,
        message: "route \(route.id) of VirtualService \(traffic.virtualService) has \(duplicate.count) different destinations for subset \(duplicate.subset); Fledge splits a route between one stable and one canary destination, and would have to drop one")
}

/// The routes of `virtualService` that give `traffic`'s canary subset weight: among the routes it names, or, when
/// those cannot be found (renamed by hand), among every route to `host` that still splits between the two subsets.
/// Weight there reaches the canary all the same, so these are what must move back before the canary goes.
public func routesReachingTheCanary(
    of virtualService: JSONValue, traffic: TrafficPlan, host: String?, namespace: String
) -> [HTTPRouteView] {
    var anyRoute = traffic
    anyRoute.routes = []
    let candidates =
        (try? managedRoutes(of: virtualService, traffic: traffic, host: host, namespace: namespace, allowingDuplicates: true).get())
        ?? (try? managedRoutes(of: virtualService, traffic: anyRoute, host: host, namespace: namespace, allowingDuplicates: true).get()) ?? []
    return candidates.filter { $0.canaryWeight(stableSubset: traffic.stableSubset, canarySubset: traffic.canarySubset) != 0 }
}

/// The VirtualService with every managed route sending `100 - canaryWeight` to the stable subset and
/// `canaryWeight` to the canary subset. Everything else (other routes, matches, retries, timeouts, hosts,
/// unknown fields, key order) is kept. A missing canary destination is added as a copy of the stable one; a
/// second destination for the same subset is dropped (`managedRoutes` refuses routes where it differs from the first
/// in more than its weight; only taking weight off the canary goes ahead with them).
public func settingWeights(of virtualService: JSONValue, routes: [HTTPRouteView], traffic: TrafficPlan, canaryWeight: Int) -> JSONValue {
    let w = Int64(min(100, max(0, canaryWeight)))
    var vs = virtualService
    let hasSpec = vs["spec"] != nil
    var http = (hasSpec ? vs[path: ["spec", "http"]] : vs["http"])?.arrayValue ?? []
    for route in routes where http.indices.contains(route.index) {
        var entry = http[route.index]
        var destinations = entry["route"]?.arrayValue ?? []
        guard let stableIndex = destinations.firstIndex(where: { $0[path: ["destination", "subset"]]?.stringValue == traffic.stableSubset }) else {
            continue
        }
        if !destinations.contains(where: { $0[path: ["destination", "subset"]]?.stringValue == traffic.canarySubset }) {
            var copy = destinations[stableIndex]
            copy[path: ["destination", "subset"]] = .string(traffic.canarySubset)
            destinations.append(copy)
        }
        // Exactly one destination per subset, so the weights sum to 100 (Rule 1): later duplicates are dropped.
        var seenSubsets: Set<String> = []
        destinations = destinations.filter { d in
            seenSubsets.insert(d[path: ["destination", "subset"]]?.stringValue ?? "").inserted
        }
        for i in destinations.indices {
            let subset = destinations[i][path: ["destination", "subset"]]?.stringValue
            destinations[i]["weight"] = .int(subset == traffic.stableSubset ? 100 - w : w)
        }
        entry["route"] = .array(destinations)
        http[route.index] = entry
    }
    if hasSpec { vs[path: ["spec", "http"]] = .array(http) } else { vs["http"] = .array(http) }
    return vs
}

/// A DestinationRule subset.
public struct Subset: Sendable, Equatable {
    public var name: String
    public var labels: [String: String]
}

/// The subsets of a DestinationRule object (or of its `spec`).
public func subsets(of destinationRule: JSONValue) -> [Subset] {
    let spec = destinationRule["spec"] ?? destinationRule
    return (spec["subsets"]?.arrayValue ?? []).compactMap { s in
        guard let name = s["name"]?.stringValue else { return nil }
        var labels: [String: String] = [:]
        for (k, v) in s["labels"]?.objectValue ?? [:] { if let v = v.stringValue { labels[k] = v } }
        return Subset(name: name, labels: labels)
    }
}

/// True when every label of `selector` is in `labels` with the same value (an empty selector selects all).
public func selects(_ selector: [String: String], _ labels: [String: String]) -> Bool {
    selector.allSatisfy { labels[$0.key] == $0.value }
}

/// The first label of `selector` that `labels` does not have, for messages: `version=v1 (pods have version=v2)`.
public func firstMismatch(_ selector: [String: String], _ labels: [String: String]) -> (key: String, wanted: String, actual: String?)? {
    for key in selector.keys.sorted() where labels[key] != selector[key] {
        return (key, selector[key]!, labels[key])
    }
    return nil
}

/// `a=1, b=2`
func labelText(_ labels: [String: String]) -> String {
    labels.isEmpty ? "(none)" : labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
}

/// A service host as Istio resolves it from a rule in `namespace`: `product-service` and `product-service.shop` both
/// name `product-service.shop.svc.cluster.local`. Anything with more dots is taken as written.
public func qualifiedHost(_ host: String, namespace: String, clusterDomain: String = "cluster.local") -> String {
    let parts = host.split(separator: ".", omittingEmptySubsequences: false)
    switch parts.count {
    case 1: return "\(host).\(namespace).svc.\(clusterDomain)"
    case 2: return "\(host).svc.\(clusterDomain)"
    case 3 where parts[2] == "svc": return "\(host).\(clusterDomain)"
    default: return host
    }
}

/// Whether two hosts, each fully qualified by `qualifiedHost`, name the same service. A `name.namespace.svc.<domain>`
/// host is one service whatever the domain: in a cluster whose domain is not `cluster.local` (`corp.local`), a
/// DestinationRule for `web.shop.svc.corp.local` and a route to `web` mean the same service.
public func sameService(_ a: String, _ b: String) -> Bool {
    func service(_ host: String) -> String {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count >= 4 && parts[2] == "svc" ? parts[0...2].joined(separator: ".") : host
    }
    return service(a) == service(b)
}

/// Said when both subsets select the same labels: Argo Rollouts users' DestinationRules look like that, because Argo
/// adds a hash label to each subset itself.
public let identicalSubsetsHint =
    " (give each a label that tells the versions apart, e.g. version: v1 and v2; Fledge does not add one, as Argo Rollouts adds rollouts-pod-template-hash)"
