import FledgeJSON

/// A typed view over an unstructured object: reads and edits go straight to the
/// wrapped `JSONValue`, so fields the view does not know are never lost.
public protocol ObjectView: Sendable, Equatable {
    var object: JSONValue { get set }
    init(_ object: JSONValue)
}

extension ObjectView {
    public var apiVersion: String? {
        get { object["apiVersion"]?.stringValue }
        set { object["apiVersion"] = newValue.map(JSONValue.string) }
    }
    public var kind: String? {
        get { object["kind"]?.stringValue }
        set { object["kind"] = newValue.map(JSONValue.string) }
    }
    public var metadata: ObjectMeta {
        get { ObjectMeta(object["metadata"] ?? .object([:])) }
        set { object["metadata"] = newValue.object }
    }
    public var name: String { metadata.name ?? "" }
    public var namespace: String? { metadata.namespace }

    /// Reads `path`; nil when absent or not a string.
    func string(_ path: [String]) -> String? { object[path: path]?.stringValue }
    mutating func setString(_ path: [String], _ value: String?) { object[path: path] = value.map(JSONValue.string) }
    func int(_ path: [String]) -> Int64? { object[path: path]?.intValue }
    mutating func setInt(_ path: [String], _ value: Int64?) { object[path: path] = value.map(JSONValue.int) }
}

/// A view over any JSON value (nested parts of objects).
public protocol JSONView: Sendable, Equatable {
    var object: JSONValue { get set }
    init(_ object: JSONValue)
}

extension JSONView {
    func string(_ key: String) -> String? { object[key]?.stringValue }
    mutating func setString(_ key: String, _ value: String?) { object[key] = value.map(JSONValue.string) }
}

func stringMap(_ value: JSONValue?) -> [String: String] {
    guard let object = value?.objectValue else { return [:] }
    var out: [String: String] = [:]
    for (key, value) in object { if let s = value.stringValue { out[key] = s } }
    return out
}

/// Writes a string map keeping the existing key order for keys that stay.
func mergeStringMap(_ existing: JSONValue?, _ map: [String: String]) -> JSONValue {
    var object = existing?.objectValue ?? [:]
    for key in object.keys where map[key] == nil { object.removeValue(forKey: key) }
    for (key, value) in map.sorted(by: { $0.key < $1.key }) { object[key] = .string(value) }
    return .object(object)
}

/// `metadata`.
public struct ObjectMeta: JSONView {
    public var object: JSONValue
    public init(_ object: JSONValue) { self.object = object }

    public var name: String? { get { string("name") } set { setString("name", newValue) } }
    public var namespace: String? { get { string("namespace") } set { setString("namespace", newValue) } }
    public var uid: String? { string("uid") }
    public var resourceVersion: String? { get { string("resourceVersion") } set { setString("resourceVersion", newValue) } }
    public var generation: Int64? { object["generation"]?.intValue }
    public var creationTimestamp: String? { string("creationTimestamp") }
    public var deletionTimestamp: String? { string("deletionTimestamp") }
    public var labels: [String: String] {
        get { stringMap(object["labels"]) }
        set { object["labels"] = newValue.isEmpty && object["labels"] == nil ? nil : mergeStringMap(object["labels"], newValue) }
    }
    public var annotations: [String: String] {
        get { stringMap(object["annotations"]) }
        set {
            object["annotations"] =
                newValue.isEmpty && object["annotations"] == nil ? nil : mergeStringMap(object["annotations"], newValue)
        }
    }
    public var ownerReferences: [JSONValue] {
        get { object["ownerReferences"]?.arrayValue ?? [] }
        set { object["ownerReferences"] = newValue.isEmpty ? nil : .array(newValue) }
    }
}

/// Any object, with only the common parts typed.
public struct KubernetesObject: ObjectView {
    public var object: JSONValue
    public init(_ object: JSONValue) { self.object = object }
}

// MARK: - apps/v1 Deployment

public struct Deployment: ObjectView {
    public var object: JSONValue
    public init(_ object: JSONValue) { self.object = object }

    public var replicas: Int64? { get { int(["spec", "replicas"]) } set { setInt(["spec", "replicas"], newValue) } }
    public var selectorMatchLabels: [String: String] { stringMap(object[path: ["spec", "selector", "matchLabels"]]) }
    public var paused: Bool { object[path: ["spec", "paused"]]?.boolValue ?? false }
    /// `spec.template` (a pod template), as a whole.
    public var template: JSONValue? {
        get { object[path: ["spec", "template"]] }
        set { object[path: ["spec", "template"]] = newValue }
    }
    public var templateLabels: [String: String] {
        get { stringMap(object[path: ["spec", "template", "metadata", "labels"]]) }
        set {
            object[path: ["spec", "template", "metadata", "labels"]] =
                mergeStringMap(object[path: ["spec", "template", "metadata", "labels"]], newValue)
        }
    }
    public var containers: [Container] {
        get { (object[path: ["spec", "template", "spec", "containers"]]?.arrayValue ?? []).map(Container.init) }
        set { object[path: ["spec", "template", "spec", "containers"]] = .array(newValue.map(\.object)) }
    }

    public struct Container: JSONView {
        public var object: JSONValue
        public init(_ object: JSONValue) { self.object = object }
        public var name: String? { get { string("name") } set { setString("name", newValue) } }
        public var image: String? { get { string("image") } set { setString("image", newValue) } }
    }

    // status
    public var observedGeneration: Int64? { int(["status", "observedGeneration"]) }
    public var statusReplicas: Int64 { int(["status", "replicas"]) ?? 0 }
    public var updatedReplicas: Int64 { int(["status", "updatedReplicas"]) ?? 0 }
    public var readyReplicas: Int64 { int(["status", "readyReplicas"]) ?? 0 }
    public var availableReplicas: Int64 { int(["status", "availableReplicas"]) ?? 0 }
    public var unavailableReplicas: Int64 { int(["status", "unavailableReplicas"]) ?? 0 }

    /// Rolled out as kubectl's `rollout status` judges it: the controller saw the
    /// current generation and every desired replica is updated, available and ready.
    public var isRolledOut: Bool {
        let desired = replicas ?? 1
        guard let observed = observedGeneration, let generation = metadata.generation, observed >= generation else {
            return false
        }
        return updatedReplicas >= desired && availableReplicas >= desired && readyReplicas >= desired
            && statusReplicas <= updatedReplicas
    }
}

// MARK: - networking.istio.io VirtualService

public struct VirtualService: ObjectView {
    public var object: JSONValue
    public init(_ object: JSONValue) { self.object = object }

    public var hosts: [String] { (object[path: ["spec", "hosts"]]?.arrayValue ?? []).compactMap(\.stringValue) }
    public var gateways: [String] { (object[path: ["spec", "gateways"]]?.arrayValue ?? []).compactMap(\.stringValue) }

    /// `spec.http`: edit a route and assign it back; untouched routes stay as they were.
    public var http: [HTTPRoute] {
        get { (object[path: ["spec", "http"]]?.arrayValue ?? []).map(HTTPRoute.init) }
        set { object[path: ["spec", "http"]] = .array(newValue.map(\.object)) }
    }

    public struct HTTPRoute: JSONView {
        public var object: JSONValue
        public init(_ object: JSONValue) { self.object = object }

        public var name: String? { get { string("name") } set { setString("name", newValue) } }
        /// `match` conditions as they are (headers, uri, …).
        public var match: JSONValue? { object["match"] }
        public var route: [Destination] {
            get { (object["route"]?.arrayValue ?? []).map(Destination.init) }
            set { object["route"] = .array(newValue.map(\.object)) }
        }

        /// The route's weight per subset (a missing weight counts as 0 when several
        /// destinations are listed, 100 when there is only one, as Istio reads it).
        public var weightsBySubset: [String: Int64] {
            let destinations = route
            var weights: [String: Int64] = [:]
            for destination in destinations {
                let subset = destination.subset ?? ""
                weights[subset, default: 0] += destination.weight ?? (destinations.count == 1 ? 100 : 0)
            }
            return weights
        }

        /// Sets the weight of each destination whose subset is a key of `weights`;
        /// everything else in the route stays. Returns false (changing nothing) when a
        /// subset in `weights` has no destination in this route.
        @discardableResult
        public mutating func setWeights(_ weights: [String: Int64]) -> Bool {
            var destinations = route
            let present = Set(destinations.compactMap(\.subset))
            guard weights.keys.allSatisfy(present.contains) else { return false }
            for index in destinations.indices {
                if let subset = destinations[index].subset, let weight = weights[subset] {
                    destinations[index].weight = weight
                }
            }
            route = destinations
            return true
        }
    }

    public struct Destination: JSONView {
        public var object: JSONValue
        public init(_ object: JSONValue) { self.object = object }

        public var host: String? {
            get { object[path: ["destination", "host"]]?.stringValue }
            set { object[path: ["destination", "host"]] = newValue.map(JSONValue.string) }
        }
        public var subset: String? {
            get { object[path: ["destination", "subset"]]?.stringValue }
            set { object[path: ["destination", "subset"]] = newValue.map(JSONValue.string) }
        }
        public var port: Int64? { object[path: ["destination", "port", "number"]]?.intValue }
        public var weight: Int64? {
            get { object["weight"]?.intValue }
            set { object["weight"] = newValue.map(JSONValue.int) }
        }
    }
}

// MARK: - networking.istio.io DestinationRule

public struct DestinationRule: ObjectView {
    public var object: JSONValue
    public init(_ object: JSONValue) { self.object = object }

    public var host: String? { get { string(["spec", "host"]) } set { setString(["spec", "host"], newValue) } }
    public var subsets: [Subset] {
        get { (object[path: ["spec", "subsets"]]?.arrayValue ?? []).map(Subset.init) }
        set { object[path: ["spec", "subsets"]] = .array(newValue.map(\.object)) }
    }

    public func subset(named name: String) -> Subset? { subsets.first { $0.name == name } }

    public struct Subset: JSONView {
        public var object: JSONValue
        public init(_ object: JSONValue) { self.object = object }
        public var name: String? { get { string("name") } set { setString("name", newValue) } }
        public var labels: [String: String] {
            get { stringMap(object["labels"]) }
            set { object["labels"] = mergeStringMap(object["labels"], newValue) }
        }
    }
}

// MARK: - coordination.k8s.io/v1 Lease

public struct Lease: ObjectView {
    public var object: JSONValue
    public init(_ object: JSONValue) { self.object = object }

    public var holderIdentity: String? {
        get { string(["spec", "holderIdentity"]) }
        set { setString(["spec", "holderIdentity"], newValue) }
    }
    public var leaseDurationSeconds: Int64? {
        get { int(["spec", "leaseDurationSeconds"]) }
        set { setInt(["spec", "leaseDurationSeconds"], newValue) }
    }
    /// MicroTime strings (`2024-01-02T03:04:05.000000Z`).
    public var acquireTime: String? {
        get { string(["spec", "acquireTime"]) }
        set { setString(["spec", "acquireTime"], newValue) }
    }
    public var renewTime: String? {
        get { string(["spec", "renewTime"]) }
        set { setString(["spec", "renewTime"], newValue) }
    }
    public var leaseTransitions: Int64? {
        get { int(["spec", "leaseTransitions"]) }
        set { setInt(["spec", "leaseTransitions"], newValue) }
    }
}
