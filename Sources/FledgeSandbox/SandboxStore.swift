import Collections
import FledgeJSON
import Foundation

/// One change as a watcher sees it.
public struct WatchEvent: Sendable {
    public var type: String
    public var object: JSONValue
    public var resourceVersion: Int64
    var groupResource: GroupResource
}

/// How a patch body is to be read, from its Content-Type.
public enum PatchType: String, Sendable {
    case merge = "application/merge-patch+json"
    case json = "application/json-patch+json"
    case strategic = "application/strategic-merge-patch+json"
    case apply = "application/apply-patch+yaml"
}

/// Faults injected into API requests (never into discovery), deterministic for a given seed.
public struct SandboxFaults: Sendable {
    /// Added before every API request is answered.
    public var latency: Duration = .zero
    /// Fraction (0...1) of writes answered 409 Conflict without being applied.
    public var conflictRate: Double = 0
    /// Fraction (0...1) of API requests answered 500 InternalError.
    public var serverErrorRate: Double = 0
    /// Close every watch after it has delivered this many events.
    public var dropWatchesAfterEvents: Int? = nil
    public var seed: UInt64 = 1
    /// The resources (plural names: `virtualservices`, `rollouts`) whose requests get the latency, errors and
    /// conflicts above; `nil`: every resource. So a test can fail one kind of write and watch what the client
    /// reports through the others (an Event).
    public var resources: Set<String>? = nil

    public init(
        latency: Duration = .zero, conflictRate: Double = 0, serverErrorRate: Double = 0,
        dropWatchesAfterEvents: Int? = nil, seed: UInt64 = 1, resources: Set<String>? = nil
    ) {
        self.latency = latency
        self.conflictRate = conflictRate
        self.serverErrorRate = serverErrorRate
        self.dropWatchesAfterEvents = dropWatchesAfterEvents
        self.seed = seed
        self.resources = resources
    }
}

/// The state of the sandbox: served types, objects, resource versions, watch history and watchers,
/// the deployment simulation, RBAC and faults. Tests reach it as `SandboxServer.store` to seed,
/// inspect and change state directly.
public actor SandboxStore {
    struct Bucket {
        var objects: [String: JSONValue] = [:]
        var sortedKeys: [String]? = nil

        mutating func keys() -> [String] {
            if let sortedKeys { return sortedKeys }
            let keys = objects.keys.sorted()
            sortedKeys = keys
            return keys
        }
    }

    struct Watcher {
        var groupResource: GroupResource
        var namespace: String?
        var labelSelector: LabelSelector
        var fieldSelector: FieldSelector?
        var continuation: AsyncStream<WatchEvent>.Continuation
        var bookmarks: Bool
        var deadline: Date?
        var delivered: Int = 0
    }

    struct DeploymentSimulation {
        var dueAt: Date?
        var readyOverride: Int?
        /// Until then the pods of the latest rollout are ready but not yet available: `spec.minReadySeconds` after they
        /// became ready, as the Deployment controller counts them.
        var availableAt: Date?
    }

    // Served types: groupVersion → resource → type.
    private(set) var types: OrderedDictionary<String, OrderedDictionary<String, ResourceType>> = [:]
    private var crdTypes: [String: [ResourceType]] = [:]

    private var buckets: [GroupResource: Bucket] = [:]
    /// The newest resourceVersion handed out (a global counter, as etcd's revision).
    public private(set) var resourceVersion: Int64 = 0
    /// Resource requests served, by `verb resource` (`list rollouts`, `patch virtualservices`), for benchmarks
    /// that count what a client asks.
    public private(set) var requestCounts: [String: Int] = [:]

    func countRequest(verb: String, resource: String) { requestCounts["\(verb) \(resource)", default: 0] += 1 }

    private var history: Deque<WatchEvent> = []
    private let historyLimit: Int
    /// Watches from a resourceVersion below this answer 410 Gone.
    private var oldestWatchable: Int64 = 0
    private var watchers: [GroupResource: [Int: Watcher]] = [:]
    private var nextWatcherID = 0
    /// Set when the server shuts down: watches opened from then on end at once.
    private var watchesClosed = false

    let clock: any SandboxClock
    /// How long after a Deployment's spec changes its status catches up.
    public var rolloutDelay: Duration
    /// Whether Pods are created for Deployments (with the template's labels).
    public var simulatePods: Bool
    private var deploymentSimulations: [String: DeploymentSimulation] = [:]

    /// Namespaced objects need their Namespace to exist, as on a real cluster.
    public var requireNamespaces: Bool

    public var faults: SandboxFaults {
        didSet { random = SplitMix64(seed: faults.seed) }
    }
    private var random: SplitMix64

    /// Bearer token → user. Empty: every request is served as an anonymous cluster admin.
    public var tokens: [String: SandboxUser]
    /// Tokens issued through TokenRequests (`kubectl create token`), with what keeps each valid.
    var issuedTokens: [String: IssuedToken] = [:]
    /// Enforce RBAC from the Roles and bindings stored in the sandbox.
    public var rbacEnabled: Bool

    init(configuration: SandboxServer.Configuration) {
        historyLimit = max(configuration.watchHistoryLimit, 1)
        clock = configuration.clock
        rolloutDelay = configuration.rolloutDelay
        simulatePods = configuration.simulatePods
        requireNamespaces = configuration.requireNamespaces
        faults = configuration.faults
        random = SplitMix64(seed: configuration.faults.seed)
        tokens = configuration.tokens
        rbacEnabled = configuration.rbac
        var types: OrderedDictionary<String, OrderedDictionary<String, ResourceType>> = [:]
        for type in ResourceType.builtIn { types[type.groupVersion, default: [:]][type.resource] = type }
        self.types = types
        // The namespaces every cluster starts with.
        var namespaces = Bucket()
        let created = configuration.clock.now.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: false))
        for (index, namespace) in ["default", "kube-system", "kube-public", "kube-node-lease"].enumerated() {
            namespaces.objects[namespace] = [
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": [
                    "name": .string(namespace), "uid": .string(UUID().uuidString.lowercased()),
                    "resourceVersion": .string(String(index + 1)), "creationTimestamp": .string(created),
                    "labels": ["kubernetes.io/metadata.name": .string(namespace)],
                ],
                "spec": ["finalizers": ["kubernetes"]],
                "status": ["phase": "Active"],
            ]
        }
        buckets[.namespaces] = namespaces
        resourceVersion = 4
        oldestWatchable = 4
    }

    // MARK: Types

    private func register(_ type: ResourceType) {
        types[type.groupVersion, default: [:]][type.resource] = type
    }

    func type(groupVersion: String, resource: String) -> ResourceType? {
        types[groupVersion]?[resource]
    }

    /// The preferred (first registered) version's type for a group resource.
    public func type(for groupResource: GroupResource) -> ResourceType? {
        for (_, resources) in types {
            if let type = resources[groupResource.resource], type.group == groupResource.group { return type }
        }
        return nil
    }

    /// The type serving a `kind` in an `apiVersion`, for loading manifests.
    public func type(apiVersion: String, kind: String) -> ResourceType? {
        types[apiVersion]?.values.first { $0.kind == kind }
    }

    /// Every served group version, in registration order.
    var groupVersions: [String] { Array(types.keys) }

    // MARK: Reads

    static func key(_ namespace: String?, _ name: String) -> String {
        if let namespace { return namespace + "/" + name }
        return name
    }

    /// An object by group resource, namespace (nil for cluster-scoped) and name.
    public func object(_ groupResource: GroupResource, namespace: String?, name: String) -> JSONValue? {
        buckets[groupResource.storage]?.objects[SandboxStore.key(namespace, name)]
    }

    /// Every object of a group resource, optionally in one namespace, sorted by namespace and name.
    public func objects(_ groupResource: GroupResource, namespace: String? = nil) -> [JSONValue] {
        guard var bucket = buckets[groupResource.storage] else { return [] }
        let keys = bucket.keys()
        buckets[groupResource.storage] = bucket
        let prefix = namespace.map { $0 + "/" }
        return keys.compactMap { key in
            if let prefix, !key.hasPrefix(prefix) { return nil }
            return bucket.objects[key]
        }
    }

    public func count(_ groupResource: GroupResource) -> Int { buckets[groupResource.storage]?.objects.count ?? 0 }

    func get(_ type: ResourceType, namespace: String?, name: String) throws(SandboxError) -> JSONValue {
        guard let object = object(type.storageResource, namespace: namespace, name: name) else {
            throw SandboxError.notFound(type.groupResource, name)
        }
        return object
    }

    struct ListResult {
        var items: [JSONValue]
        var resourceVersion: Int64
        var continueToken: String?
        var remaining: Int?
    }

    /// - Parameter notOlderThan: the request's `resourceVersion`: a list must be at least that new, so one the server
    ///   has not reached is refused as the real server does (504, `ResourceVersionTooLarge`).
    func list(
        _ type: ResourceType, namespace: String?, labelSelector: LabelSelector, fieldSelector: FieldSelector?,
        limit: Int?, continueToken: String?, notOlderThan: Int64? = nil
    ) throws(SandboxError) -> ListResult {
        if let notOlderThan, notOlderThan > resourceVersion {
            throw SandboxError.resourceVersionTooLarge(notOlderThan, current: resourceVersion)
        }
        var listRV = resourceVersion
        var startAfter: String? = nil
        if let continueToken, !continueToken.isEmpty {
            guard let data = Data(base64Encoded: continueToken), let text = String(data: data, encoding: .utf8),
                let colon = text.firstIndex(of: ":"), let rv = Int64(text[..<colon])
            else {
                throw SandboxError.badRequest("continue key is not valid: \"\(continueToken)\"")
            }
            listRV = rv
            startAfter = String(text[text.index(after: colon)...])
        }
        guard var bucket = buckets[type.storageResource] else {
            return ListResult(items: [], resourceVersion: listRV, continueToken: nil, remaining: nil)
        }
        // A single key lookup answers a name selector, unless a namespaced type is listed across namespaces.
        if let name = fieldSelector?.exactName, namespace != nil || !type.namespaced {
            let key = SandboxStore.key(namespace, name)
            var items: [JSONValue] = []
            if let object = bucket.objects[key],
                labelSelector.matches(object: object), fieldSelector?.matches(object) ?? true,
                startAfter == nil || key > startAfter!
            {
                items.append(object)
            }
            return ListResult(items: items, resourceVersion: listRV, continueToken: nil, remaining: nil)
        }
        let keys = bucket.keys()
        buckets[type.storageResource] = bucket
        var startIndex = keys.startIndex
        if let startAfter {
            startIndex = binarySearch(keys, after: startAfter)
        } else if let namespace {
            startIndex = binarySearch(keys, after: namespace + "/")
        }
        let prefix = namespace.map { $0 + "/" }
        var items: [JSONValue] = []
        var lastKey: String? = nil
        var index = startIndex
        var more = false
        while index < keys.endIndex {
            let key = keys[index]
            if let prefix, !key.hasPrefix(prefix) { break }
            index += 1
            guard let object = bucket.objects[key] else { continue }
            if !labelSelector.matches(object: object) { continue }
            if let fieldSelector, !fieldSelector.matches(object) { continue }
            if let limit, limit > 0, items.count == limit {
                more = true
                break
            }
            items.append(object)
            lastKey = key
        }
        var token: String? = nil
        var remaining: Int? = nil
        if more, let lastKey {
            token = Data("\(listRV):\(lastKey)".utf8).base64EncodedString()
            if labelSelector.isEmpty && fieldSelector == nil {
                var count = 0
                var i = index - 1
                while i < keys.endIndex {
                    if let prefix, !keys[i].hasPrefix(prefix) { break }
                    count += 1
                    i += 1
                }
                remaining = count
            }
        }
        return ListResult(items: items, resourceVersion: listRV, continueToken: token, remaining: remaining)
    }

    private func binarySearch(_ keys: [String], after key: String) -> Int {
        var low = 0
        var high = keys.count
        while low < high {
            let mid = (low + high) / 2
            if keys[mid] <= key { low = mid + 1 } else { high = mid }
        }
        return low
    }

    // MARK: Writes

    private func now() -> String {
        clock.now.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: false))
    }

    private func store(_ object: JSONValue, _ groupResource: GroupResource, key: String, event: String) -> JSONValue {
        resourceVersion += 1
        var object = object
        object[path: ["metadata", "resourceVersion"]] = .string(String(resourceVersion))
        // In place: a copy of the bucket would copy every object of the type on every write.
        let old = buckets[groupResource, default: Bucket()].objects.updateValue(object, forKey: key)
        if old == nil { buckets[groupResource]?.sortedKeys = nil }
        indexOwners(groupResource, key: key, old: old, new: object)
        publish(WatchEvent(type: event, object: object, resourceVersion: resourceVersion, groupResource: groupResource))
        return object
    }

    private func publish(_ event: WatchEvent) {
        history.append(event)
        while history.count > historyLimit {
            let dropped = history.removeFirst()
            oldestWatchable = dropped.resourceVersion
        }
        guard var group = watchers[event.groupResource] else { return }
        for (id, var watcher) in group where watcherMatches(watcher, event) {
            watcher.continuation.yield(event)
            watcher.delivered += 1
            if let limit = faults.dropWatchesAfterEvents, watcher.delivered >= limit {
                watcher.continuation.finish()
                group.removeValue(forKey: id)
            } else {
                group[id] = watcher
            }
        }
        watchers[event.groupResource] = group
    }

    private func watcherMatches(_ watcher: Watcher, _ event: WatchEvent) -> Bool {
        if let namespace = watcher.namespace,
            event.object[path: ["metadata", "namespace"]]?.stringValue != namespace
        {
            return false
        }
        if !watcher.labelSelector.matches(object: event.object) { return false }
        if let selector = watcher.fieldSelector, !selector.matches(event.object) { return false }
        return true
    }

    private func namespaceExists(_ namespace: String) -> Bool {
        object(.namespaces, namespace: nil, name: namespace) != nil
    }

    private static let nameCharacters = Set("abcdefghijklmnopqrstuvwxyz0123456789-.")

    static func validateName(_ name: String, kind: String) throws(SandboxError) {
        let valid =
            !name.isEmpty && name.count <= 253 && name.allSatisfy { nameCharacters.contains($0) }
            && name.first!.isLetterOrDigit && name.last!.isLetterOrDigit
            && !name.contains("..") && !name.contains(".-") && !name.contains("-.")
        if !valid {
            throw SandboxError.invalid(
                kind: kind, name: name,
                causes: [("metadata.name", SandboxStore.nameMessage(name))])
        }
    }

    static func nameMessage(_ name: String) -> String {
        let rule: String = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        return "Invalid value: \"\(name)\": \(rule)"
    }

    /// Checks the parts every object shares, and that the body is the kind the URL names.
    private func checkEnvelope(_ type: ResourceType, _ object: JSONValue, namespace: String?) throws(SandboxError) {
        guard case .object = object else {
            throw SandboxError.badRequest("the body of the request must be a JSON object, got \(object.typeNameWithArticle)")
        }
        if let kind = object["kind"], kind.stringValue != type.kind {
            throw SandboxError.badRequest(
                "the kind in the body (\(kind.stringValue ?? kind.serializedString())) does not match the kind of the resource (\(type.kind))")
        }
        if let apiVersion = object["apiVersion"]?.stringValue, apiVersion != type.apiVersion,
            types[apiVersion]?[type.resource]?.group != type.group
        {
            throw SandboxError.badRequest(
                "the API version in the data (\(apiVersion)) does not match the expected API version (\(type.apiVersion))")
        }
        guard let metadata = object["metadata"], case .object = metadata else {
            if object["metadata"] == nil { return }
            throw SandboxError.badRequest("metadata must be an object")
        }
        for field in ["labels", "annotations"] {
            guard let map = metadata[field], !map.isNull else { continue }
            guard case .object(let entries) = map else {
                throw SandboxError.badRequest("metadata.\(field) must be an object of strings, got \(map.typeNameWithArticle)")
            }
            for (key, value) in entries where value.stringValue == nil {
                throw SandboxError.badRequest(
                    "metadata.\(field).\(key) must be a string, got \(value.typeNameWithArticle) (\(value.serializedString()))")
            }
        }
        if let given = metadata["namespace"]?.stringValue, !given.isEmpty, let namespace, given != namespace {
            throw SandboxError.badRequest(
                "the namespace of the provided object does not match the namespace sent on the request")
        }
    }

    /// Kind-specific validation, answered 422 with the field path like the real server.
    private func validate(_ type: ResourceType, _ object: JSONValue, name: String) throws(SandboxError) {
        var causes: [(String, String)] = []
        switch type.groupResource {
        case .deployments:
            let selector = object[path: ["spec", "selector"]]
            if selector == nil || selector!.isNull {
                causes.append(("spec.selector", "Required value"))
            } else if let parsed = try? LabelSelector(object: selector!) {
                var labels: [String: String] = [:]
                for (k, v) in object[path: ["spec", "template", "metadata", "labels"]]?.objectValue ?? [:] {
                    labels[k] = v.stringValue
                }
                if parsed.isEmpty {
                    causes.append(("spec.selector", "Invalid value: empty selector is invalid for deployment"))
                } else if !parsed.matches(labels) {
                    causes.append((
                        "spec.template.metadata.labels",
                        "Invalid value: \(object[path: ["spec", "template", "metadata", "labels"]]?.serializedString() ?? "null"): `selector` does not match template `labels`"
                    ))
                }
            }
            if let replicas = object[path: ["spec", "replicas"]] {
                if let value = replicas.intValue {
                    if value < 0 {
                        causes.append(("spec.replicas", "Invalid value: \(value): must be greater than or equal to 0"))
                    }
                } else if !replicas.isNull {
                    throw SandboxError.badRequest(
                        "Deployment in version \"v1\" cannot be handled as a Deployment: spec.replicas must be an integer, got \(replicas.typeNameWithArticle)")
                }
            }
            if object[path: ["spec", "strategy", "type"]]?.stringValue == "Recreate", let rolling = object[path: ["spec", "strategy", "rollingUpdate"]],
                !rolling.isNull
            {
                causes.append(("spec.strategy.rollingUpdate", "Forbidden: may not be specified when strategy `type` is 'Recreate'"))
            }
            let containers = object[path: ["spec", "template", "spec", "containers"]]?.arrayValue ?? []
            if containers.isEmpty {
                causes.append(("spec.template.spec.containers", "Required value"))
            }
            for (index, container) in containers.enumerated() {
                if (container["name"]?.stringValue ?? "").isEmpty {
                    causes.append(("spec.template.spec.containers[\(index)].name", "Required value"))
                }
                if (container["image"]?.stringValue ?? "").isEmpty {
                    causes.append(("spec.template.spec.containers[\(index)].image", "Required value"))
                }
                for (portIndex, port) in (container["ports"]?.arrayValue ?? []).enumerated() {
                    let field = "spec.template.spec.containers[\(index)].ports[\(portIndex)].containerPort"
                    guard let number = port["containerPort"]?.intValue else {
                        causes.append((field, "Required value"))
                        continue
                    }
                    if !(1...65535).contains(number) {
                        causes.append((field, "Invalid value: \(number): must be between 1 and 65535, inclusive"))
                    }
                }
            }
        case .configMaps:
            for (key, value) in object["data"]?.objectValue ?? [:] where value.stringValue == nil {
                throw SandboxError.badRequest("ConfigMap data.\(key) must be a string, got \(value.typeNameWithArticle)")
            }
        case .leases:
            for field in ["leaseDurationSeconds", "leaseTransitions"] {
                if let value = object[path: ["spec", field]], !value.isNull, value.intValue == nil {
                    throw SandboxError.badRequest("Lease spec.\(field) must be an integer, got \(value.typeNameWithArticle)")
                }
            }
            if let value = object[path: ["spec", "holderIdentity"]], !value.isNull, value.stringValue == nil {
                throw SandboxError.badRequest("Lease spec.holderIdentity must be a string, got \(value.typeNameWithArticle)")
            }
        case .customResourceDefinitions:
            _ = try ResourceType.fromCRD(object)
        default:
            break
        }
        if let schema = type.schema {
            SchemaValidator.validate(object, schema: schema, path: "", causes: &causes, root: true)
        }
        if !causes.isEmpty {
            // The real server names the kind with its group: `Deployment.apps "web" is invalid: …`.
            throw SandboxError.invalid(
                kind: type.group.isEmpty ? type.kind : "\(type.kind).\(type.group)", name: name, causes: causes,
                group: type.group, detailsKind: type.kind)
        }
    }

    /// The spec part whose change bumps `metadata.generation`.
    private func generationRelevant(_ type: ResourceType, _ object: JSONValue) -> JSONValue {
        var copy = object
        copy["metadata"] = nil
        copy["apiVersion"] = nil
        copy["kind"] = nil
        if type.hasStatus { copy["status"] = nil }
        return copy
    }

    /// Creates an object; `namespace` is nil for cluster-scoped types.
    func create(_ type: ResourceType, namespace: String?, object input: JSONValue, dryRun: Bool = false)
        throws(SandboxError) -> JSONValue
    {
        try checkEnvelope(type, input, namespace: namespace)
        var object = input
        var name = object[path: ["metadata", "name"]]?.stringValue ?? ""
        if name.isEmpty, let prefix = object[path: ["metadata", "generateName"]]?.stringValue, !prefix.isEmpty {
            name = prefix + randomSuffix()
        }
        if name.isEmpty {
            throw SandboxError.invalid(
                kind: type.kind, name: "", causes: [("metadata.name", "Required value: name or generateName is required")])
        }
        try SandboxStore.validateName(name, kind: type.kind)
        if let namespace, requireNamespaces, !namespaceExists(namespace) {
            throw SandboxError.notFound(.namespaces, namespace)
        }
        // The NamespaceLifecycle admission plugin: nothing new in a namespace that is being deleted.
        if let namespace, isTerminating(namespace) {
            throw SandboxStore.namespaceTerminating(type.groupResource, name: name, namespace: namespace)
        }
        let key = SandboxStore.key(namespace, name)
        if buckets[type.storageResource]?.objects[key] != nil {
            throw SandboxError.alreadyExists(type.groupResource, name)
        }
        object["apiVersion"] = .string(type.apiVersion)
        object["kind"] = .string(type.kind)
        var metadata = object["metadata"]?.objectValue ?? [:]
        metadata["name"] = .string(name)
        if let namespace { metadata["namespace"] = .string(namespace) } else { metadata.removeValue(forKey: "namespace") }
        metadata["uid"] = .string(UUID().uuidString.lowercased())
        metadata["resourceVersion"] = nil
        metadata["creationTimestamp"] = .string(now())
        metadata.removeValue(forKey: "deletionTimestamp")
        if type.tracksGeneration { metadata["generation"] = 1 } else { metadata.removeValue(forKey: "generation") }
        object["metadata"] = .object(metadata)
        if type.hasStatus { object["status"] = nil }
        if let schema = type.schema { object = SchemaValidator.applyDefaults(SchemaValidator.prune(object, schema: schema), schema: schema) }
        try validate(type, object, name: name)
        object = type.toStorage(defaulted(type, object))
        if dryRun { return object }
        let stored = store(object, type.storageResource, key: key, event: "ADDED")
        afterWrite(type, stored, old: nil)
        return stored
    }

    /// Replaces an object (PUT). With `status`, only the status changes; otherwise the status is kept.
    /// `requireResourceVersion`: refuse an update without `metadata.resourceVersion`, as the real server does for a
    /// PUT of a custom resource (their strategy allows no unconditional update); built-in types, patches and the
    /// store's own callers update unconditionally.
    func update(
        _ type: ResourceType, namespace: String?, name: String, object input: JSONValue, status: Bool, dryRun: Bool = false,
        requireResourceVersion: Bool = false
    ) throws(SandboxError) -> JSONValue {
        try checkEnvelope(type, input, namespace: namespace)
        if let bodyName = input[path: ["metadata", "name"]]?.stringValue, bodyName != name {
            throw SandboxError.badRequest(
                "the name of the object (\(bodyName)) does not match the name on the URL (\(name))")
        }
        let key = SandboxStore.key(namespace, name)
        guard let storedOld = buckets[type.storageResource]?.objects[key] else {
            throw SandboxError.notFound(type.groupResource, name)
        }
        if requireResourceVersion, input[path: ["metadata", "resourceVersion"]]?.stringValue?.isEmpty ?? true {
            // The real server's message names the resource where the kind goes (its own TODO says so).
            throw SandboxError.invalid(
                kind: type.groupResource.description, name: name,
                causes: [("metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")],
                group: type.group, detailsKind: type.resource)
        }
        // The change is made in the form of the version written to, and stored in the storage's form.
        let old = type.fromStorage(storedOld)
        if let given = input[path: ["metadata", "resourceVersion"]]?.stringValue, !given.isEmpty,
            given != old[path: ["metadata", "resourceVersion"]]?.stringValue
        {
            throw SandboxError.conflict(type.groupResource, name)
        }
        var object: JSONValue
        if status {
            object = old
            object["status"] = input["status"]
        } else {
            object = input
            object["apiVersion"] = .string(type.apiVersion)
            object["kind"] = .string(type.kind)
            var metadata = object["metadata"]?.objectValue ?? [:]
            let oldMetadata = old["metadata"]?.objectValue ?? [:]
            for field in ["name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp"] {
                metadata[field] = oldMetadata[field]
            }
            // An update that does not send managedFields keeps them, as on the real server.
            if metadata["managedFields"] == nil { metadata["managedFields"] = oldMetadata["managedFields"] }
            metadata["resourceVersion"] = nil
            object["metadata"] = .object(metadata)
            if type.hasStatus { object["status"] = old["status"] }
            // Defaults first, as the real server applies them when it decodes: a field left out that its default
            // fills is no change of the spec.
            if let schema = type.schema { object = SchemaValidator.applyDefaults(SchemaValidator.prune(object, schema: schema), schema: schema) }
            if type.tracksGeneration, generationRelevant(type, object) != generationRelevant(type, old) {
                let generation = (old[path: ["metadata", "generation"]]?.intValue ?? 1) + 1
                object[path: ["metadata", "generation"]] = .int(generation)
            }
        }
        if let schema = type.schema { object = SchemaValidator.applyDefaults(SchemaValidator.prune(object, schema: schema), schema: schema) }
        try validate(type, object, name: name)
        object = defaulted(type, object)
        if old[path: ["metadata", "deletionTimestamp"]] != nil {
            let before = Set(SandboxStore.finalizers(of: old))
            let added = SandboxStore.finalizers(of: object).filter { !before.contains($0) }
            if !added.isEmpty {
                throw SandboxError.unprocessable(
                    "\(type.groupResource) \"\(name)\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers \(added)")
            }
        }
        var comparableOld = old
        comparableOld[path: ["metadata", "resourceVersion"]] = nil
        var comparableNew = object
        comparableNew[path: ["metadata", "resourceVersion"]] = nil
        if comparableOld == comparableNew || dryRun {
            // A no-op write keeps the resourceVersion and sends no event, as on a real server.
            return dryRun ? type.toStorage(object) : storedOld
        }
        let stored = store(type.toStorage(object), type.storageResource, key: key, event: "MODIFIED")
        afterWrite(type, stored, old: old)
        // The last finalizer of an object being deleted is gone: the deletion completes.
        if stored[path: ["metadata", "deletionTimestamp"]] != nil, !SandboxStore.holdsDeletion(stored, type) {
            return remove(type, key: key, old: stored)
        }
        if let namespace, type.namespaced { syncTerminatingNamespace(namespace) }
        return stored
    }

    /// `metadata.finalizers`.
    static func finalizers(of object: JSONValue) -> [String] {
        object[path: ["metadata", "finalizers"]]?.arrayValue?.compactMap(\.stringValue) ?? []
    }

    /// Whether something still holds an object's deletion: its `metadata.finalizers`, or for a Namespace also its
    /// `spec.finalizers` (`kubernetes`: the namespace controller's, removed once the namespace is empty).
    static func holdsDeletion(_ object: JSONValue, _ type: ResourceType) -> Bool {
        if !finalizers(of: object).isEmpty { return true }
        guard type.storageResource == .namespaces else { return false }
        return object[path: ["spec", "finalizers"]]?.arrayValue?.isEmpty == false
    }

    /// Deletes, or with finalizers left only marks the object deleted (`deletionTimestamp`) and leaves it to them,
    /// as the real server does: the object goes once an update removes the last finalizer.
    private func deleteOrMark(_ type: ResourceType, key: String, old: JSONValue) -> JSONValue {
        if type.storageResource == .namespaces { return deleteNamespace(type, old: old) }
        guard !SandboxStore.finalizers(of: old).isEmpty else { return remove(type, key: key, old: old) }
        if old[path: ["metadata", "deletionTimestamp"]] != nil { return old }
        var marked = old
        marked[path: ["metadata", "deletionTimestamp"]] = .string(now())
        marked[path: ["metadata", "deletionGracePeriodSeconds"]] = 0
        let stored = store(marked, type.storageResource, key: key, event: "MODIFIED")
        if let namespace = stored[path: ["metadata", "namespace"]]?.stringValue { syncTerminatingNamespace(namespace) }
        return stored
    }

    // MARK: Namespace lifecycle

    /// The namespaces the real server's NamespaceLifecycle admission plugin never lets anyone delete.
    static let immortalNamespaces: Set<String> = ["default", "kube-system", "kube-public"]

    /// Namespaces whose content is being deleted right now (their conditions are written once, afterwards).
    private var sweepingNamespaces: Set<String> = []

    /// Whether a namespace is being deleted (it has a deletionTimestamp, phase Terminating).
    func isTerminating(_ namespace: String) -> Bool {
        object(.namespaces, namespace: nil, name: namespace)?[path: ["metadata", "deletionTimestamp"]] != nil
    }

    /// The 403 the real server answers a create in a Terminating namespace with.
    static func namespaceTerminating(_ groupResource: GroupResource, name: String, namespace: String) -> SandboxError {
        var details = SandboxError.details(name, groupResource)
        var cause: JSONObject = [:]
        cause["reason"] = "NamespaceTerminating"
        cause["message"] = .string("namespace \(namespace) is being terminated")
        cause["field"] = "metadata.namespace"
        details["causes"] = [.object(cause)]
        return .status(
            code: 403, reason: "Forbidden",
            message: "\(groupResource) \"\(name)\" is forbidden: unable to create new content in namespace \(namespace) because it is being terminated",
            details: details)
    }

    /// Deleting a Namespace, as the real server and its namespace controller do it: the namespace is marked
    /// (deletionTimestamp, phase Terminating), everything in it is deleted (objects with finalizers are only marked
    /// and stay until those are removed), and the namespace itself goes once it is empty. A second delete changes
    /// nothing.
    private func deleteNamespace(_ type: ResourceType, old: JSONValue) -> JSONValue {
        let name = old[path: ["metadata", "name"]]?.stringValue ?? ""
        var namespace = old
        if old[path: ["metadata", "deletionTimestamp"]] == nil {
            namespace[path: ["metadata", "deletionTimestamp"]] = .string(now())
            namespace[path: ["metadata", "deletionGracePeriodSeconds"]] = 0
            namespace[path: ["status", "phase"]] = "Terminating"
            namespace = store(namespace, type.storageResource, key: name, event: "MODIFIED")
        }
        sweepingNamespaces.insert(name)
        for (groupResource, bucket) in buckets.sorted(by: { $0.key.description < $1.key.description }) {
            guard let itemType = self.type(for: groupResource), itemType.namespaced else { continue }
            for key in bucket.objects.keys.sorted() where key.hasPrefix(name + "/") {
                // Collected with an owner deleted before it, or already marked: nothing to do.
                guard let item = buckets[groupResource]?.objects[key], item[path: ["metadata", "deletionTimestamp"]] == nil
                else { continue }
                _ = deleteOrMark(itemType, key: key, old: item)
            }
        }
        sweepingNamespaces.remove(name)
        syncTerminatingNamespace(name)
        return namespace
    }

    /// What the namespace controller does for a Terminating namespace: while content remains, conditions say what
    /// and which finalizers hold it; once it is empty, the `kubernetes` finalizer goes and with it the namespace
    /// (unless `metadata.finalizers` still hold it).
    private func syncTerminatingNamespace(_ name: String) {
        guard !sweepingNamespaces.contains(name), let namespace = object(.namespaces, namespace: nil, name: name),
            namespace[path: ["metadata", "deletionTimestamp"]] != nil, let type = self.type(for: .namespaces)
        else { return }
        var remaining: [String: Int] = [:]
        var finalizers: [String: Int] = [:]
        for (groupResource, bucket) in buckets {
            guard let itemType = self.type(for: groupResource), itemType.namespaced else { continue }
            for (key, item) in bucket.objects where key.hasPrefix(name + "/") {
                remaining[itemType.groupResource.description, default: 0] += 1
                for finalizer in SandboxStore.finalizers(of: item) { finalizers[finalizer, default: 0] += 1 }
            }
        }
        var updated = namespace
        if remaining.isEmpty { updated[path: ["spec", "finalizers"]] = nil }
        updated[path: ["status", "conditions"]] = .array(namespaceConditions(
            remaining: remaining, finalizers: finalizers, old: namespace[path: ["status", "conditions"]]?.arrayValue ?? []))
        if remaining.isEmpty, SandboxStore.finalizers(of: updated).isEmpty {
            _ = remove(type, key: name, old: updated)
        } else if updated != namespace {
            _ = store(updated, type.storageResource, key: name, event: "MODIFIED")
        }
    }

    /// The conditions the namespace controller writes on a Terminating namespace (the real types, reasons and
    /// messages); a condition keeps its lastTransitionTime while its status stays.
    private func namespaceConditions(remaining: [String: Int], finalizers: [String: Int], old: [JSONValue]) -> [JSONValue] {
        func condition(_ type: String, _ status: Bool, _ reason: String, _ message: String) -> JSONValue {
            let previous = old.first { $0["type"]?.stringValue == type }
            let statusText = status ? "True" : "False"
            var object: JSONObject = [:]
            object["type"] = .string(type)
            object["status"] = .string(statusText)
            object["lastTransitionTime"] =
                previous?["status"]?.stringValue == statusText ? previous?["lastTransitionTime"] ?? .string(now()) : .string(now())
            object["reason"] = .string(reason)
            object["message"] = .string(message)
            return .object(object)
        }
        let resources = remaining.sorted { $0.key < $1.key }.map { "\($0.key) has \($0.value) resource instances" }
        let held = finalizers.sorted { $0.key < $1.key }.map { "\($0.key) in \($0.value) resource instances" }
        return [
            condition("NamespaceDeletionDiscoveryFailure", false, "ResourcesDiscovered", "All resources successfully discovered"),
            condition("NamespaceDeletionGroupVersionParsingFailure", false, "ParsedGroupVersions", "All legacy kube types successfully parsed"),
            condition("NamespaceDeletionContentFailure", false, "ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
            resources.isEmpty
                ? condition("NamespaceContentRemaining", false, "ContentRemoved", "All content successfully removed")
                : condition("NamespaceContentRemaining", true, "SomeResourcesRemain", "Some resources are remaining: \(resources.joined(separator: ", "))"),
            held.isEmpty
                ? condition("NamespaceFinalizersRemaining", false, "ContentHasNoFinalizers", "All content-preserving finalizers finished")
                : condition("NamespaceFinalizersRemaining", true, "SomeFinalizersRemain", "Some content in the namespace has finalizers remaining: \(held.joined(separator: ", "))"),
        ]
    }

    /// Patches an object atomically (read, apply, write) with the given patch type.
    func patch(
        _ type: ResourceType, namespace: String?, name: String, patchType: PatchType, body: [UInt8], status: Bool,
        dryRun: Bool = false, fieldManager: String? = nil, force: Bool = false
    ) throws(SandboxError) -> (object: JSONValue, created: Bool) {
        let key = SandboxStore.key(namespace, name)
        let current = buckets[type.storageResource]?.objects[key].map(type.fromStorage)
        if patchType == .apply {
            guard let fieldManager, !fieldManager.isEmpty else {
                throw SandboxError.status(
                    code: 400, reason: "BadRequest",
                    message: "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    details: nil)
            }
            let applied = try SandboxStore.decodeApplyBody(body)
            guard case .object = applied else {
                throw SandboxError.badRequest("an apply patch must be an object, got \(applied.typeNameWithArticle)")
            }
            guard let current else {
                var object = applied
                object[path: ["metadata", "name"]] = .string(name)
                object[path: ["metadata", "managedFields"]] = [
                    ServerSideApply.entry(
                        manager: fieldManager, apiVersion: type.apiVersion, time: now(),
                        fields: ServerSideApply.fieldSet(ofApplied: applied))
                ]
                return (try create(type, namespace: namespace, object: object, dryRun: dryRun), true)
            }
            var merged = try ServerSideApply.apply(
                applied, to: current, manager: fieldManager, force: force, type: type, time: now())
            // A resourceVersion in the applied configuration is a precondition; otherwise the apply is unconditional.
            if applied[path: ["metadata", "resourceVersion"]] == nil {
                merged[path: ["metadata", "resourceVersion"]] = current[path: ["metadata", "resourceVersion"]]
            }
            return (try update(type, namespace: namespace, name: name, object: merged, status: status, dryRun: dryRun), false)
        }
        guard let current else { throw SandboxError.notFound(type.groupResource, name) }
        let patch: JSONValue
        do {
            patch = try JSONValue(parsing: body)
        } catch {
            throw SandboxError.badRequest("error decoding patch: \(error)")
        }
        var patched: JSONValue
        switch patchType {
        case .merge:
            guard case .object = patch else {
                throw SandboxError.badRequest("a merge patch must be a JSON object, got \(patch.typeNameWithArticle)")
            }
            patched = current.applyingMergePatch(patch)
        case .json:
            let operations: JSONPatch
            do {
                operations = try JSONPatch(json: patch)
            } catch {
                throw SandboxError.badRequest("invalid JSON patch: \(error.message)")
            }
            do {
                patched = try operations.apply(to: current)
            } catch {
                throw SandboxError.unprocessable("the JSON patch could not be applied to \(type.groupResource) \"\(name)\": \(error.message)")
            }
        case .strategic:
            if type.isCustom {
                throw SandboxError.unsupportedPatch(PatchType.strategic.rawValue, custom: true)
            }
            patched = try StrategicMergePatch.apply(patch, to: current)
        case .apply:
            throw SandboxError.badRequest("an apply patch cannot be applied as a JSON patch")
        }
        guard case .object = patched else {
            throw SandboxError.unprocessable("the patch turned \(type.groupResource) \"\(name)\" into \(patched.typeNameWithArticle)")
        }
        // A patch may carry a resourceVersion precondition; otherwise it applies to the current version.
        if patched[path: ["metadata", "resourceVersion"]] == nil {
            patched[path: ["metadata", "resourceVersion"]] = current[path: ["metadata", "resourceVersion"]]
        }
        return (try update(type, namespace: namespace, name: name, object: patched, status: status, dryRun: dryRun), false)
    }

    static func decodeApplyBody(_ body: [UInt8]) throws(SandboxError) -> JSONValue {
        if let json = try? JSONValue(parsing: body) { return json }
        do {
            let documents = try ManifestLoader.parseYAML(String(decoding: body, as: UTF8.self), source: "apply body")
            guard documents.count == 1 else {
                throw SandboxError.badRequest("an apply patch must contain exactly one object")
            }
            return documents[0]
        } catch let error as SandboxError {
            throw error
        } catch {
            throw SandboxError.badRequest("error decoding apply patch: \(error)")
        }
    }

    /// How a deletion treats the owner's dependents (DeleteOptions `propagationPolicy`).
    enum Propagation: String {
        /// The default: once the owner is gone, dependents left without a live owner are deleted.
        case background = "Background"
        /// Treated as Background: the sandbox's collection is synchronous, so the owner is never seen waiting on
        /// its dependents (`foregroundDeletion`), and the dependents are gone by the time the owner is.
        case foreground = "Foreground"
        /// Dependents stay, their references to the owner removed.
        case orphan = "Orphan"
    }

    func delete(
        _ type: ResourceType, namespace: String?, name: String, preconditionRV: String? = nil, dryRun: Bool = false,
        propagation: Propagation = .background
    ) throws(SandboxError) -> JSONValue {
        let key = SandboxStore.key(namespace, name)
        guard let old = buckets[type.storageResource]?.objects[key] else {
            throw SandboxError.notFound(type.groupResource, name)
        }
        if let preconditionRV, preconditionRV != old[path: ["metadata", "resourceVersion"]]?.stringValue {
            throw SandboxError.conflict(type.groupResource, name)
        }
        if type.storageResource == .namespaces, SandboxStore.immortalNamespaces.contains(name) {
            throw SandboxError.status(
                code: 403, reason: "Forbidden", message: "namespaces \"\(name)\" is forbidden: this namespace may not be deleted",
                details: SandboxError.details(name, .namespaces))
        }
        if dryRun { return old }
        if propagation == .orphan { orphanDependents(of: old) }
        return deleteOrMark(type, key: key, old: old)
    }

    private func remove(_ type: ResourceType, key: String, old: JSONValue) -> JSONValue {
        let removed = buckets[type.storageResource]?.objects.removeValue(forKey: key)
        indexOwners(type.storageResource, key: key, old: removed, new: nil)
        buckets[type.storageResource]?.sortedKeys = nil
        resourceVersion += 1
        var object = old
        object[path: ["metadata", "resourceVersion"]] = .string(String(resourceVersion))
        publish(WatchEvent(type: "DELETED", object: object, resourceVersion: resourceVersion, groupResource: type.storageResource))
        afterDelete(type, old)
        collectGarbage(after: old)
        if type.namespaced, let namespace = old[path: ["metadata", "namespace"]]?.stringValue { syncTerminatingNamespace(namespace) }
        return object
    }

    // MARK: Garbage collection

    /// Where a stored object is: its bucket and key.
    struct StoredKey: Hashable {
        var groupResource: GroupResource
        var key: String
    }

    /// Owner uid → every stored object whose ownerReferences name that uid, kept by `store` and `remove`, so that
    /// the garbage collector finds an owner's dependents without reading every stored object.
    private var dependentsByOwner: [String: Set<StoredKey>] = [:]

    private static func ownerUIDs(_ object: JSONValue?) -> Set<String> {
        guard let references = object?[path: ["metadata", "ownerReferences"]]?.arrayValue else { return [] }
        return Set(references.compactMap { $0["uid"]?.stringValue })
    }

    private func indexOwners(_ groupResource: GroupResource, key: String, old: JSONValue?, new: JSONValue?) {
        let before = SandboxStore.ownerUIDs(old)
        let after = SandboxStore.ownerUIDs(new)
        guard before != after else { return }
        let entry = StoredKey(groupResource: groupResource, key: key)
        for uid in before.subtracting(after) {
            dependentsByOwner[uid]?.remove(entry)
            if dependentsByOwner[uid]?.isEmpty == true { dependentsByOwner.removeValue(forKey: uid) }
        }
        for uid in after.subtracting(before) { dependentsByOwner[uid, default: []].insert(entry) }
    }

    /// The dependents of `owner`: stored objects whose ownerReferences name its uid, in its namespace (anywhere for a
    /// cluster-scoped owner). (groupResource, key, object) triples in a fixed order (group resource, then key). Only
    /// the dependents are read and sorted (from the owner index), not every stored object.
    private func dependents(of owner: JSONValue) -> [(GroupResource, String, JSONValue)] {
        guard let uid = owner[path: ["metadata", "uid"]]?.stringValue, let entries = dependentsByOwner[uid] else { return [] }
        let prefix = owner[path: ["metadata", "namespace"]]?.stringValue.map { $0 + "/" }
        var found: [(GroupResource, String, JSONValue)] = []
        for entry in entries {
            if let prefix, !entry.key.hasPrefix(prefix) { continue }
            guard let object = buckets[entry.groupResource]?.objects[entry.key] else { continue }
            found.append((entry.groupResource, entry.key, object))
        }
        return found.sorted { left, right in
            let (leftGroup, rightGroup) = (left.0.description, right.0.description)
            return leftGroup != rightGroup ? leftGroup < rightGroup : left.1 < right.1
        }
    }

    /// Whether an owner reference of `dependent` points at an object that exists with that uid. An owner of a kind
    /// the sandbox does not serve cannot be looked up and counts as live (the real collector does not delete then
    /// either).
    private func ownerExists(_ reference: JSONValue, of dependent: JSONValue) -> Bool {
        guard let uid = reference["uid"]?.stringValue,
            let type = self.type(apiVersion: reference["apiVersion"]?.stringValue ?? "", kind: reference["kind"]?.stringValue ?? "")
        else { return true }
        let namespace = type.namespaced ? dependent[path: ["metadata", "namespace"]]?.stringValue : nil
        return object(type.storageResource, namespace: namespace, name: reference["name"]?.stringValue ?? "")?[path: ["metadata", "uid"]]?.stringValue == uid
    }

    /// What the real garbage collector does once `owner` is gone, here at once: each dependent left with no live
    /// owner is deleted through the ordinary path (its own finalizers hold it; its dependents follow in turn), and a
    /// dependent that still has a live owner loses its references to owners that are gone.
    private func collectGarbage(after owner: JSONValue) {
        guard let uid = owner[path: ["metadata", "uid"]]?.stringValue else { return }
        for (groupResource, key, dependent) in dependents(of: owner) {
            let references = dependent[path: ["metadata", "ownerReferences"]]?.arrayValue ?? []
            // An earlier dependent's collection may have changed or removed this one: then it is left as it now is.
            guard let current = buckets[groupResource]?.objects[key], current == dependent,
                let type = self.type(for: groupResource)
            else { continue }
            let live = references.filter { $0["uid"]?.stringValue != uid && ownerExists($0, of: dependent) }
            if live.isEmpty {
                _ = deleteOrMark(type, key: key, old: dependent)
            } else {
                var kept = dependent
                kept[path: ["metadata", "ownerReferences"]] = .array(live)
                _ = store(kept, groupResource, key: key, event: "MODIFIED")
            }
        }
    }

    /// Deletion with `propagationPolicy: Orphan`: the dependents stay, without their references to `owner`.
    private func orphanDependents(of owner: JSONValue) {
        guard let uid = owner[path: ["metadata", "uid"]]?.stringValue else { return }
        for (groupResource, key, dependent) in dependents(of: owner) {
            let references = dependent[path: ["metadata", "ownerReferences"]]?.arrayValue ?? []
            let kept = references.filter { $0["uid"]?.stringValue != uid }
            guard kept.count != references.count else { continue }
            var orphan = dependent
            orphan[path: ["metadata", "ownerReferences"]] = kept.isEmpty ? nil : .array(kept)
            _ = store(orphan, groupResource, key: key, event: "MODIFIED")
        }
    }

    func deleteCollection(
        _ type: ResourceType, namespace: String?, labelSelector: LabelSelector, fieldSelector: FieldSelector?,
        dryRun: Bool = false, propagation: Propagation = .background
    ) throws(SandboxError) -> [JSONValue] {
        let items = try list(
            type, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector, limit: nil,
            continueToken: nil
        ).items
        if dryRun { return items }
        var deleted: [JSONValue] = []
        for item in items {
            let name = item[path: ["metadata", "name"]]?.stringValue ?? ""
            let key = SandboxStore.key(namespace ?? item[path: ["metadata", "namespace"]]?.stringValue, name)
            // An earlier item's dependents may have gone with it.
            guard let current = buckets[type.storageResource]?.objects[key] else { continue }
            if propagation == .orphan { orphanDependents(of: current) }
            deleted.append(deleteOrMark(type, key: key, old: buckets[type.storageResource]?.objects[key] ?? current))
        }
        return deleted
    }

    private func randomSuffix() -> String {
        let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
        return String((0..<5).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] })
    }

    /// Server-side defaults a client would see on a real cluster.
    private func defaulted(_ type: ResourceType, _ object: JSONValue) -> JSONValue {
        var object = object
        switch type.groupResource {
        case .deployments:
            if object[path: ["spec", "replicas"]] == nil { object[path: ["spec", "replicas"]] = 1 }
            // As apps/v1 SetDefaults_Deployment: the type, and a rolling update's two bounds each on its own.
            if object[path: ["spec", "strategy", "type"]] == nil { object[path: ["spec", "strategy", "type"]] = "RollingUpdate" }
            if object[path: ["spec", "strategy", "type"]]?.stringValue == "RollingUpdate" {
                for bound in ["maxUnavailable", "maxSurge"] where object[path: ["spec", "strategy", "rollingUpdate", bound]] == nil {
                    object[path: ["spec", "strategy", "rollingUpdate", bound]] = "25%"
                }
            }
            if object[path: ["spec", "revisionHistoryLimit"]] == nil { object[path: ["spec", "revisionHistoryLimit"]] = 10 }
            if object[path: ["spec", "progressDeadlineSeconds"]] == nil {
                object[path: ["spec", "progressDeadlineSeconds"]] = 600
            }
            if let podSpec = object[path: ["spec", "template", "spec"]] {
                object[path: ["spec", "template", "spec"]] = SandboxStore.defaultedPodSpec(podSpec)
            }
        case .pods:
            if let podSpec = object["spec"] { object["spec"] = SandboxStore.defaultedPodSpec(podSpec) }
        case .namespaces:
            if object[path: ["status", "phase"]] == nil { object[path: ["status", "phase"]] = "Active" }
            let name = object[path: ["metadata", "name"]] ?? ""
            if object[path: ["metadata", "labels", "kubernetes.io/metadata.name"]] == nil {
                object[path: ["metadata", "labels", "kubernetes.io/metadata.name"]] = name
            }
            if object[path: ["spec", "finalizers"]] == nil { object[path: ["spec", "finalizers"]] = ["kubernetes"] }
        case .services:
            if object[path: ["spec", "type"]] == nil { object[path: ["spec", "type"]] = "ClusterIP" }
            if object[path: ["spec", "clusterIP"]] == nil {
                let n = Int(resourceVersion % 65000) + 1
                object[path: ["spec", "clusterIP"]] = .string("10.96.\(n / 256).\(n % 256)")
            }
        case .configMaps, .secrets:
            break
        default:
            break
        }
        return object
    }

    // MARK: Side effects of writes

    private func afterWrite(_ type: ResourceType, _ object: JSONValue, old: JSONValue?) {
        switch type.groupResource {
        case .customResourceDefinitions:
            registerCRD(object)
        case .deployments:
            let key = SandboxStore.key(object[path: ["metadata", "namespace"]]?.stringValue, object[path: ["metadata", "name"]]?.stringValue ?? "")
            if old == nil || old![path: ["metadata", "generation"]] != object[path: ["metadata", "generation"]] {
                var simulation = deploymentSimulations[key] ?? DeploymentSimulation()
                let due = clock.now.addingTimeInterval(SandboxStore.seconds(rolloutDelay))
                simulation.dueAt = due
                // New pods (a new template, or from zero replicas) become available minReadySeconds after ready.
                let minReady = object[path: ["spec", "minReadySeconds"]]?.intValue ?? 0
                let newPods = old == nil || old![path: ["spec", "template"]] != object[path: ["spec", "template"]]
                    || (old![path: ["spec", "replicas"]]?.intValue ?? 1) == 0
                if minReady > 0, newPods { simulation.availableAt = due.addingTimeInterval(Double(minReady)) }
                deploymentSimulations[key] = simulation
            } else if simulatePods, deploymentSimulations[key]?.dueAt == nil,
                old![path: ["metadata", "annotations", "kubernetes.io/change-cause"]] != object[path: ["metadata", "annotations", "kubernetes.io/change-cause"]]
            {
                // The Deployment controller copies a new change-cause to the current ReplicaSet (`rollout history`).
                settle(key: key)
            }
        default:
            break
        }
    }

    private func afterDelete(_ type: ResourceType, _ object: JSONValue) {
        let name = object[path: ["metadata", "name"]]?.stringValue ?? ""
        switch type.groupResource {
        case .customResourceDefinitions:
            for crdType in crdTypes[name] ?? [] {
                types[crdType.groupVersion]?.removeValue(forKey: crdType.resource)
                if types[crdType.groupVersion]?.isEmpty == true { types.removeValue(forKey: crdType.groupVersion) }
            }
            if let first = crdTypes.removeValue(forKey: name)?.first {
                for item in objects(first.groupResource) {
                    let key = SandboxStore.key(item[path: ["metadata", "namespace"]]?.stringValue, item[path: ["metadata", "name"]]?.stringValue ?? "")
                    guard let current = buckets[first.storageResource]?.objects[key] else { continue }
                    _ = remove(first, key: key, old: current)
                }
            }
        case .namespaces:
            for (groupResource, bucket) in buckets {
                guard let itemType = self.type(for: groupResource), itemType.namespaced else { continue }
                for (key, _) in bucket.objects where key.hasPrefix(name + "/") {
                    // Collected with an owner removed before it: gone already.
                    guard let item = buckets[groupResource]?.objects[key] else { continue }
                    _ = remove(itemType, key: key, old: item)
                }
            }
        case .deployments:
            let namespace = object[path: ["metadata", "namespace"]]?.stringValue
            deploymentSimulations.removeValue(forKey: SandboxStore.key(namespace, name))
            // Its ReplicaSets, and their pods, are the garbage collector's (or stay, orphaned, as they would).
        default:
            break
        }
    }

    private func registerCRD(_ crd: JSONValue) {
        guard let newTypes = try? ResourceType.fromCRD(crd) else { return }
        let name = crd[path: ["metadata", "name"]]?.stringValue ?? ""
        for old in crdTypes[name] ?? [] {
            types[old.groupVersion]?.removeValue(forKey: old.resource)
        }
        crdTypes[name] = newTypes
        for type in newTypes { register(type) }
        // Established, names accepted: what clients wait for before using the new type.
        var status: JSONValue = [:]
        let names: JSONValue = crd[path: ["spec", "names"]] ?? .object([:])
        status["acceptedNames"] = names
        let time = JSONValue.string(now())
        func condition(_ type: String, _ reason: String, _ message: String) -> JSONValue {
            var object: JSONObject = [:]
            object["type"] = .string(type)
            object["status"] = "True"
            object["reason"] = .string(reason)
            object["message"] = .string(message)
            object["lastTransitionTime"] = time
            return .object(object)
        }
        status["conditions"] = .array([
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ])
        let versions: [JSONValue] = crd[path: ["spec", "versions"]]?.arrayValue ?? []
        let storage: JSONValue? = versions.first(where: { $0["storage"]?.boolValue == true })?["name"]
        status["storedVersions"] = .array(storage.map { [$0] } ?? [])
        if crd["status"] != status, let crdType = self.type(for: .customResourceDefinitions) {
            var updated = crd
            updated["status"] = status
            _ = store(updated, crdType.groupResource, key: name, event: "MODIFIED")
        }
    }

    // MARK: Watch

    /// Registers a watch. Events after `resourceVersion` are replayed from history first; with no
    /// resourceVersion (or "0") every current object is sent as ADDED. Too old → 410 Expired; newer than any
    /// handed out (the client saw a server that has since lost state) → 504 with `ResourceVersionTooLarge`.
    /// Once the server is shutting down the stream ends at once.
    func watch(
        _ type: ResourceType, namespace: String?, labelSelector: LabelSelector, fieldSelector: FieldSelector?,
        resourceVersion from: Int64?, bookmarks: Bool, timeout: Duration?
    ) throws(SandboxError) -> OpenedWatch {
        let (stream, continuation) = AsyncStream<WatchEvent>.makeStream()
        if let from, from > resourceVersion {
            throw SandboxError.resourceVersionTooLarge(from, current: resourceVersion)
        }
        if watchesClosed {
            continuation.finish()
            nextWatcherID += 1
            return OpenedWatch(id: nextWatcherID, events: stream, continuation: continuation)
        }
        var watcher = Watcher(
            groupResource: type.storageResource, namespace: namespace, labelSelector: labelSelector,
            fieldSelector: fieldSelector, continuation: continuation, bookmarks: bookmarks,
            deadline: timeout.map { clock.now.addingTimeInterval(SandboxStore.seconds($0)) })
        if let from, from > 0 {
            if from < oldestWatchable {
                throw SandboxError.gone("too old resource version: \(from) (\(oldestWatchable + 1))")
            }
            for event in history where event.resourceVersion > from && event.groupResource == type.storageResource {
                if watcherMatches(watcher, event) {
                    continuation.yield(event)
                    watcher.delivered += 1
                }
            }
        } else {
            let items = (try? list(type, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector, limit: nil, continueToken: nil).items) ?? []
            for item in items {
                continuation.yield(WatchEvent(
                    type: "ADDED", object: item,
                    resourceVersion: Int64(item[path: ["metadata", "resourceVersion"]]?.stringValue ?? "") ?? 0,
                    groupResource: type.storageResource))
            }
        }
        nextWatcherID += 1
        watchers[type.storageResource, default: [:]][nextWatcherID] = watcher
        return OpenedWatch(id: nextWatcherID, events: stream, continuation: continuation)
    }

    /// A registered watch: its events, and the continuation that ends them (also from outside the store).
    struct OpenedWatch: Sendable {
        var id: Int
        var events: AsyncStream<WatchEvent>
        var continuation: AsyncStream<WatchEvent>.Continuation
    }

    /// `watch` as a Result, so callers need no typed-throws catch across an await.
    func openWatch(
        _ type: ResourceType, namespace: String?, labelSelector: LabelSelector, fieldSelector: FieldSelector?,
        resourceVersion from: Int64?, bookmarks: Bool, timeout: Duration?
    ) -> Result<OpenedWatch, SandboxError> {
        do {
            return .success(try watch(
                type, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector,
                resourceVersion: from, bookmarks: bookmarks, timeout: timeout))
        } catch {
            return .failure(error)
        }
    }

    func removeWatcher(_ id: Int, _ groupResource: GroupResource) {
        watchers[groupResource]?.removeValue(forKey: id)?.continuation.finish()
    }

    /// Closes every open watch connection and ends any opened later at once: the server is shutting down, and a
    /// client that re-watches over its kept-alive connection must not hold the shutdown up.
    public func closeWatches() {
        watchesClosed = true
        dropWatches()
    }

    /// Closes every open watch connection, as when an API server restarts or a proxy drops them.
    public func dropWatches() {
        for (_, group) in watchers {
            for (_, watcher) in group { watcher.continuation.finish() }
        }
        watchers.removeAll()
    }

    public var openWatchCount: Int { watchers.values.reduce(0) { $0 + $1.count } }

    /// Forgets watch history up to now, so watching from any older resourceVersion answers 410.
    public func compactHistory() {
        history.removeAll()
        oldestWatchable = resourceVersion
    }

    /// Sends BOOKMARKs to watchers that asked for them, and closes watches past their timeout.
    func serviceWatchers(bookmarks sendBookmarks: Bool) {
        let now = clock.now
        for (groupResource, group) in watchers {
            var updated = group
            for (id, watcher) in group {
                if let deadline = watcher.deadline, deadline <= now {
                    watcher.continuation.finish()
                    updated.removeValue(forKey: id)
                    continue
                }
                if sendBookmarks, watcher.bookmarks, let type = self.type(for: groupResource) {
                    watcher.continuation.yield(WatchEvent(
                        type: "BOOKMARK",
                        object: [
                            "kind": .string(type.kind), "apiVersion": .string(type.apiVersion),
                            "metadata": ["resourceVersion": .string(String(resourceVersion))],
                        ],
                        resourceVersion: resourceVersion, groupResource: groupResource))
                }
            }
            watchers[groupResource] = updated
        }
    }

    // MARK: Deployment simulation

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// Brings the status of every Deployment whose rollout delay has passed up to its spec.
    /// The server's service calls this on every tick; tests may call it after moving a manual clock.
    public func advanceDeployments() {
        let now = clock.now
        for (key, simulation) in deploymentSimulations {
            guard let due = simulation.dueAt, due <= now else { continue }
            deploymentSimulations[key]?.dueAt = nil
            settle(key: key)
        }
    }

    /// Completes every pending Deployment rollout now, whatever the delay (and minReadySeconds).
    public func settleDeployments() {
        for (key, simulation) in deploymentSimulations where simulation.dueAt != nil {
            deploymentSimulations[key]?.dueAt = nil
            deploymentSimulations[key]?.availableAt = nil
            settle(key: key)
        }
    }

    /// Makes `ready` of a Deployment's pods ready (nil: all of them), at once.
    public func setReadyReplicas(namespace: String, deployment: String, ready: Int?) throws(SandboxError) {
        let key = SandboxStore.key(namespace, deployment)
        guard buckets[.deployments]?.objects[key] != nil else {
            throw SandboxError.notFound(.deployments, deployment)
        }
        deploymentSimulations[key, default: DeploymentSimulation()].readyOverride = ready
        if deploymentSimulations[key]?.dueAt == nil { settle(key: key) }
    }

    /// Marks every pod of a Deployment unready (`ready: 0`), or ready again.
    public func setDeploymentReady(namespace: String, deployment: String, _ ready: Bool) throws(SandboxError) {
        try setReadyReplicas(namespace: namespace, deployment: deployment, ready: ready ? nil : 0)
    }

    private func settle(key: String) {
        guard let deployment = buckets[.deployments]?.objects[key], let type = self.type(for: .deployments) else { return }
        let replicas = Int(deployment[path: ["spec", "replicas"]]?.intValue ?? 1)
        let ready = min(deploymentSimulations[key]?.readyOverride ?? replicas, replicas)
        var status: JSONValue = [:]
        status["observedGeneration"] = deployment[path: ["metadata", "generation"]] ?? 1
        status["replicas"] = .int(Int64(replicas))
        status["updatedReplicas"] = .int(Int64(replicas))
        status["readyReplicas"] = .int(Int64(ready))
        // Ready pods count as available only minReadySeconds after they became ready; settled again then.
        var availableReplicas = ready
        if let availableAt = deploymentSimulations[key]?.availableAt {
            if clock.now < availableAt {
                availableReplicas = 0
                deploymentSimulations[key]?.dueAt = availableAt
            } else {
                deploymentSimulations[key]?.availableAt = nil
            }
        }
        status["availableReplicas"] = .int(Int64(availableReplicas))
        if replicas - availableReplicas > 0 { status["unavailableReplicas"] = .int(Int64(replicas - availableReplicas)) }
        let time = JSONValue.string(now())
        let available = availableReplicas >= replicas - max(0, replicas / 4)
        var availableCondition: JSONObject = [:]
        availableCondition["type"] = "Available"
        availableCondition["status"] = .string(available ? "True" : "False")
        availableCondition["reason"] = .string(available ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable")
        availableCondition["message"] = .string(
            available ? "Deployment has minimum availability." : "Deployment does not have minimum availability.")
        availableCondition["lastUpdateTime"] = time
        availableCondition["lastTransitionTime"] = time
        let deploymentName = deployment[path: ["metadata", "name"]]?.stringValue ?? ""
        var progressing: JSONObject = [:]
        progressing["type"] = "Progressing"
        progressing["status"] = "True"
        progressing["reason"] = "NewReplicaSetAvailable"
        progressing["message"] = .string(
            "ReplicaSet \"\(deploymentName)-\(SandboxStore.templateHash(deployment))\" has successfully progressed.")
        progressing["lastUpdateTime"] = time
        progressing["lastTransitionTime"] = time
        status["conditions"] = .array([.object(availableCondition), .object(progressing)])
        var updated = deployment
        updated["status"] = status
        if simulatePods {
            let current = syncReplicaSets(deployment: deployment, ready: ready, replicas: replicas)
            syncPods(deployment: deployment, owner: current, ready: ready, replicas: replicas)
            // As the Deployment controller does: the Deployment carries its newest ReplicaSet's revision.
            updated[path: ["metadata", "annotations", SandboxStore.revisionAnnotation]] = current?[path: ["metadata", "annotations", SandboxStore.revisionAnnotation]]
        }
        if updated != deployment {
            _ = store(updated, type.groupResource, key: key, event: "MODIFIED")
        }
    }

    static let revisionAnnotation = "deployment.kubernetes.io/revision"

    /// What the Deployment controller keeps: one ReplicaSet per pod template (`<deployment>-<pod-template-hash>`),
    /// the current one at `replicas` and at the highest revision, the older ones at 0, and no more of those than
    /// `spec.revisionHistoryLimit`. A template that comes back (`kubectl rollout undo`) takes its old ReplicaSet
    /// back at a new revision. Returns the current ReplicaSet.
    private func syncReplicaSets(deployment: JSONValue, ready: Int, replicas: Int) -> JSONValue? {
        guard let replicaSetType = self.type(for: .replicaSets) else { return nil }
        let namespace = deployment[path: ["metadata", "namespace"]]?.stringValue ?? "default"
        let name = deployment[path: ["metadata", "name"]]?.stringValue ?? ""
        let hash = SandboxStore.templateHash(deployment)
        let currentName = "\(name)-\(hash)"
        let owned = dependents(of: deployment).filter { $0.0 == .replicaSets }.map(\.2)
        func revision(_ replicaSet: JSONValue) -> Int {
            Int(replicaSet[path: ["metadata", "annotations", SandboxStore.revisionAnnotation]]?.stringValue ?? "") ?? 0
        }
        let newest = owned.map(revision).max() ?? 0
        let time = JSONValue.string(now())
        for replicaSet in owned {
            let replicaSetName = replicaSet[path: ["metadata", "name"]]?.stringValue ?? ""
            guard replicaSetName != currentName else { continue }
            var scaledDown = replicaSet
            scaledDown[path: ["spec", "replicas"]] = 0
            scaledDown["status"] = ["replicas": 0, "observedGeneration": replicaSet[path: ["metadata", "generation"]] ?? 1]
            if scaledDown != replicaSet {
                _ = store(scaledDown, .replicaSets, key: SandboxStore.key(namespace, replicaSetName), event: "MODIFIED")
            }
        }
        var templateLabels = deployment[path: ["spec", "template", "metadata", "labels"]]?.objectValue ?? [:]
        templateLabels["pod-template-hash"] = .string(hash)
        var template = deployment[path: ["spec", "template"]] ?? [:]
        template[path: ["metadata", "labels"]] = .object(templateLabels)
        var selector = deployment[path: ["spec", "selector"]] ?? [:]
        selector[path: ["matchLabels", "pod-template-hash"]] = .string(hash)
        let key = SandboxStore.key(namespace, currentName)
        let existing = buckets[.replicaSets]?.objects[key]
        var replicaSet: JSONValue
        if let existing {
            replicaSet = existing
        } else {
            // The ReplicaSet controller's creates are refused in a namespace being deleted.
            if isTerminating(namespace) { return nil }
            replicaSet = [
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": [
                    "name": .string(currentName), "namespace": .string(namespace), "uid": .string(UUID().uuidString.lowercased()),
                    "creationTimestamp": time, "generation": 1, "ownerReferences": [SandboxStore.controllerReference(to: deployment, kind: "Deployment")],
                ],
            ]
        }
        replicaSet[path: ["metadata", "labels"]] = .object(templateLabels)
        var annotations = replicaSet[path: ["metadata", "annotations"]]?.objectValue ?? [:]
        annotations["deployment.kubernetes.io/desired-replicas"] = .string(String(replicas))
        annotations["deployment.kubernetes.io/max-replicas"] = .string(String(replicas + SandboxStore.maxSurge(deployment, replicas: replicas)))
        if existing == nil || revision(existing!) < newest {
            annotations[SandboxStore.revisionAnnotation] = .string(String(newest + 1))
        }
        if let cause = deployment[path: ["metadata", "annotations", "kubernetes.io/change-cause"]] {
            annotations["kubernetes.io/change-cause"] = cause
        }
        replicaSet[path: ["metadata", "annotations"]] = .object(annotations)
        if replicaSet[path: ["spec", "replicas"]]?.intValue.map(Int.init) != replicas, existing != nil {
            replicaSet[path: ["metadata", "generation"]] = .int((existing?[path: ["metadata", "generation"]]?.intValue ?? 1) + 1)
        }
        replicaSet["spec"] = ["replicas": .int(Int64(replicas)), "selector": selector, "template": template]
        replicaSet["status"] = [
            "replicas": .int(Int64(replicas)), "fullyLabeledReplicas": .int(Int64(replicas)),
            "readyReplicas": .int(Int64(ready)), "availableReplicas": .int(Int64(ready)),
            "observedGeneration": replicaSet[path: ["metadata", "generation"]] ?? 1,
        ]
        if replicaSet != existing {
            replicaSet = store(replicaSet, .replicaSets, key: key, event: existing == nil ? "ADDED" : "MODIFIED")
        }
        // The oldest scaled-down ReplicaSets beyond the history limit go (with their pods, by the garbage collector).
        let limit = Int(deployment[path: ["spec", "revisionHistoryLimit"]]?.intValue ?? 10)
        let old = owned.filter { $0[path: ["metadata", "name"]]?.stringValue != currentName }.sorted { revision($0) < revision($1) }
        for replicaSet in old.dropLast(max(0, limit)) {
            let replicaSetKey = SandboxStore.key(namespace, replicaSet[path: ["metadata", "name"]]?.stringValue ?? "")
            guard let stored = buckets[.replicaSets]?.objects[replicaSetKey] else { continue }
            _ = remove(replicaSetType, key: replicaSetKey, old: stored)
        }
        return replicaSet
    }

    /// The owner reference a controller puts on what it makes (a ReplicaSet on its pods, a Deployment on its
    /// ReplicaSets): deleting `owner` deletes them.
    static func controllerReference(to owner: JSONValue, kind: String) -> JSONValue {
        [
            "apiVersion": "apps/v1", "kind": .string(kind), "name": owner[path: ["metadata", "name"]] ?? "",
            "uid": owner[path: ["metadata", "uid"]] ?? "", "controller": true, "blockOwnerDeletion": true,
        ]
    }

    /// `spec.strategy.rollingUpdate.maxSurge` in pods (25 % by default, rounded up as the Deployment controller does).
    static func maxSurge(_ deployment: JSONValue, replicas: Int) -> Int {
        guard deployment[path: ["spec", "strategy", "type"]]?.stringValue != "Recreate" else { return 0 }
        switch deployment[path: ["spec", "strategy", "rollingUpdate", "maxSurge"]] {
        case .int(let count)?: return Int(count)
        case .string(let text)? where text.hasSuffix("%"):
            let percent = Int(text.dropLast()) ?? 25
            return (replicas * percent + 99) / 100
        default: return (replicas * 25 + 99) / 100
        }
    }

    static func templateHash(_ deployment: JSONValue) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in withoutEmptyValues(deployment[path: ["spec", "template"]] ?? .null).serialized(sortedKeys: true) {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
        var text = ""
        for _ in 0..<10 {
            text.append(alphabet[Int(hash % UInt64(alphabet.count))])
            hash /= UInt64(alphabet.count)
        }
        return text
    }

    /// `null`s and empty objects dropped: the real server's Go types cannot tell them from absent fields, so kubectl
    /// writes them back freely (`rollout undo` sends a template with `creationTimestamp: null` and `resources: {}`)
    /// and the same template must keep its pod-template-hash.
    static func withoutEmptyValues(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(let object):
            var kept = JSONObject()
            for (key, member) in object {
                let cleaned = withoutEmptyValues(member)
                if cleaned == .null { continue }
                if case .object(let inner) = cleaned, inner.isEmpty { continue }
                kept[key] = cleaned
            }
            return .object(kept)
        case .array(let items):
            return .array(items.map(withoutEmptyValues))
        default:
            return value
        }
    }

    /// Keeps exactly `replicas` pods of the current template, `ready` of them ready, owned by its ReplicaSet
    /// `owner`; the pods of the Deployment's older ReplicaSets go.
    private func syncPods(deployment: JSONValue, owner replicaSet: JSONValue?, ready: Int, replicas: Int) {
        guard let podType = self.type(for: .pods) else { return }
        let namespace = deployment[path: ["metadata", "namespace"]]?.stringValue ?? "default"
        let name = deployment[path: ["metadata", "name"]]?.stringValue ?? ""
        let hash = SandboxStore.templateHash(deployment)
        var wanted: [String: Bool] = [:]
        if replicaSet != nil {
            for index in 0..<replicas { wanted["\(name)-\(hash)-\(index)"] = index < ready }
        }
        let replicaSets = Set(dependents(of: deployment).filter { $0.0 == .replicaSets }.compactMap { $0.2[path: ["metadata", "uid"]]?.stringValue })
        for pod in objects(.pods, namespace: namespace) {
            guard let podName = pod[path: ["metadata", "name"]]?.stringValue,
                pod[path: ["metadata", "ownerReferences"]]?.arrayValue?.contains(where: {
                    $0["kind"]?.stringValue == "ReplicaSet" && replicaSets.contains($0["uid"]?.stringValue ?? "")
                }) == true
            else { continue }
            if wanted[podName] == nil {
                _ = remove(podType, key: SandboxStore.key(namespace, podName), old: pod)
            }
        }
        let time = JSONValue.string(now())
        for (podName, isReady) in wanted.sorted(by: { $0.key < $1.key }) {
            let key = SandboxStore.key(namespace, podName)
            let existing = buckets[.pods]?.objects[key]
            var labels = deployment[path: ["spec", "template", "metadata", "labels"]]?.objectValue ?? [:]
            labels["pod-template-hash"] = .string(hash)
            let readyText: JSONValue = isReady ? "True" : "False"
            var pod: JSONValue
            if let existing {
                pod = existing
            } else {
                // The ReplicaSet controller's creates are refused in a namespace being deleted.
                if isTerminating(namespace) { continue }
                var metadata: JSONObject = [:]
                metadata["name"] = .string(podName)
                metadata["namespace"] = .string(namespace)
                metadata["labels"] = .object(labels)
                metadata["uid"] = .string(UUID().uuidString.lowercased())
                metadata["creationTimestamp"] = time
                metadata["generation"] = .int(1)
                metadata["ownerReferences"] = .array(replicaSet.map { [SandboxStore.controllerReference(to: $0, kind: "ReplicaSet")] } ?? [])
                var object: JSONObject = [:]
                object["apiVersion"] = "v1"
                object["kind"] = "Pod"
                object["metadata"] = .object(metadata)
                let templateSpec: JSONValue = deployment[path: ["spec", "template", "spec"]] ?? .object([:])
                object["spec"] = templateSpec
                pod = .object(object)
            }
            var status: JSONValue = ["phase": "Running"]
            var readyCondition: JSONObject = [:]
            readyCondition["type"] = "Ready"
            readyCondition["status"] = readyText
            var containersReady = readyCondition
            containersReady["type"] = "ContainersReady"
            status["conditions"] = .array([.object(readyCondition), .object(containersReady)])
            let containers: [JSONValue] = deployment[path: ["spec", "template", "spec", "containers"]]?.arrayValue ?? []
            var containerStatuses: [JSONValue] = []
            for container in containers {
                var entry: JSONObject = [:]
                entry["name"] = container["name"] ?? .string("")
                entry["image"] = container["image"] ?? .string("")
                entry["ready"] = .bool(isReady)
                entry["restartCount"] = .int(0)
                entry["started"] = .bool(true)
                containerStatuses.append(.object(entry))
            }
            status["containerStatuses"] = .array(containerStatuses)
            if existing?["status"] == status { continue }
            pod["status"] = status
            _ = store(pod, podType.groupResource, key: key, event: existing == nil ? "ADDED" : "MODIFIED")
        }
    }

    // MARK: Faults

    enum FaultDecision { case none, conflict, serverError }

    func decideFault(isWrite: Bool, resource: String) -> FaultDecision {
        if let resources = faults.resources, !resources.contains(resource) { return .none }
        if faults.serverErrorRate > 0, random.nextUnit() < faults.serverErrorRate { return .serverError }
        if isWrite, faults.conflictRate > 0, random.nextUnit() < faults.conflictRate { return .conflict }
        return .none
    }

    // MARK: Direct access for tests

    /// Loads objects as `kubectl apply` would: created, or replaced keeping status and metadata.
    @discardableResult
    public func apply(_ objects: [JSONValue], defaultNamespace: String = "default") throws(SandboxError) -> [JSONValue] {
        var result: [JSONValue] = []
        for object in objects {
            let apiVersion = object["apiVersion"]?.stringValue ?? ""
            let kind = object["kind"]?.stringValue ?? ""
            guard let type = self.type(apiVersion: apiVersion, kind: kind) else {
                // A group with a dot is not built in: its kinds come from CustomResourceDefinitions.
                let custom = apiVersion.split(separator: "/").first.map { $0.contains(".") } ?? false
                let hint =
                    !custom ? ""
                    : apiVersion.hasPrefix("fledge.dev/")
                        ? ": no CustomResourceDefinition defines it; load the Rollout's too (deploy/crds)"
                        : ": no CustomResourceDefinition defines it; load its CRD too, or leave this file out"
                throw SandboxError.manifest(
                    source: object[path: ["metadata", "name"]]?.stringValue ?? "<object>",
                    message: "no resource is served for kind \"\(kind)\" in \"\(apiVersion)\"\(hint)")
            }
            let namespace = type.namespaced ? (object[path: ["metadata", "namespace"]]?.stringValue ?? defaultNamespace) : nil
            let name = object[path: ["metadata", "name"]]?.stringValue ?? ""
            if let namespace, requireNamespaces, !namespaceExists(namespace), let nsType = self.type(for: .namespaces) {
                _ = try create(nsType, namespace: nil, object: ["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": .string(namespace)]])
            }
            if let existing = self.object(type.groupResource, namespace: namespace, name: name) {
                var replacement = object
                replacement[path: ["metadata", "resourceVersion"]] = existing[path: ["metadata", "resourceVersion"]]
                var stored = try update(type, namespace: namespace, name: name, object: replacement, status: false)
                if type.hasStatus, let status = object["status"] {
                    stored["status"] = status
                    stored = try update(type, namespace: namespace, name: name, object: stored, status: true)
                }
                result.append(stored)
            } else {
                var stored = try create(type, namespace: namespace, object: object)
                if type.hasStatus, let status = object["status"], type.groupResource != .deployments {
                    stored["status"] = status
                    stored = try update(type, namespace: namespace, name: name, object: stored, status: true)
                }
                result.append(stored)
            }
        }
        return result
    }

    /// Loads manifests as `fledge sandbox --load` does: CustomResourceDefinitions first, so that custom resources
    /// in the same files can be created, then the rest in order, each as `apply` does. An object refused stops the
    /// load with an error naming its file (and document, when the file has several).
    @discardableResult
    public func load(_ manifests: [ManifestLoader.Manifest], defaultNamespace: String = "default") throws(SandboxError) -> [JSONValue] {
        func isCRD(_ manifest: ManifestLoader.Manifest) -> Bool {
            manifest.object["kind"]?.stringValue == "CustomResourceDefinition"
                && manifest.object["apiVersion"]?.stringValue?.hasPrefix("apiextensions.k8s.io/") == true
        }
        var result: [JSONValue] = []
        for manifest in manifests.filter(isCRD) + manifests.filter({ !isCRD($0) }) {
            do {
                result += try apply([manifest.object], defaultNamespace: defaultNamespace)
            } catch {
                let message: String
                switch error {
                case .status(_, _, let text, _): message = text
                case .manifest(_, let text), .startup(let text):
                    let kind = manifest.object["kind"]?.stringValue ?? "object"
                    let name = manifest.object[path: ["metadata", "name"]]?.stringValue ?? ""
                    message = "\(kind) \"\(name)\": \(text)"
                case .cannotListen: message = error.description
                }
                throw SandboxError.manifest(source: manifest.location, message: message)
            }
        }
        return result
    }

    /// Writes an object's status directly (as a controller would through /status).
    @discardableResult
    public func setStatus(_ groupResource: GroupResource, namespace: String?, name: String, status: JSONValue)
        throws(SandboxError) -> JSONValue
    {
        guard let type = self.type(for: groupResource) else { throw SandboxError.notFound(groupResource, name) }
        var object = try get(type, namespace: namespace, name: name)
        object["status"] = status
        object[path: ["metadata", "resourceVersion"]] = nil
        return try update(type, namespace: namespace, name: name, object: object, status: true)
    }

    /// Changes an object with a closure, bypassing validation of the change's author (not of the result).
    @discardableResult
    public func modify(
        _ groupResource: GroupResource, namespace: String?, name: String, _ change: (inout JSONValue) -> Void
    ) throws(SandboxError) -> JSONValue {
        guard let type = self.type(for: groupResource) else { throw SandboxError.notFound(groupResource, name) }
        var object = try get(type, namespace: namespace, name: name)
        change(&object)
        object[path: ["metadata", "resourceVersion"]] = nil
        let updated = try update(type, namespace: namespace, name: name, object: object, status: false)
        if type.hasStatus, object["status"] != updated["status"] {
            var withStatus = updated
            withStatus["status"] = object["status"]
            return try update(type, namespace: namespace, name: name, object: withStatus, status: true)
        }
        return updated
    }

    /// Deletes an object directly.
    @discardableResult
    public func remove(_ groupResource: GroupResource, namespace: String?, name: String) throws(SandboxError) -> JSONValue {
        guard let type = self.type(for: groupResource) else { throw SandboxError.notFound(groupResource, name) }
        return try delete(type, namespace: namespace, name: name)
    }

    public func setFaults(_ faults: SandboxFaults) { self.faults = faults }
    public func setRBAC(_ enabled: Bool) { rbacEnabled = enabled }
    public func setToken(_ token: String, user: SandboxUser?) { tokens[token] = user }
    public func setRolloutDelay(_ delay: Duration) { rolloutDelay = delay }
}

/// A small deterministic generator (SplitMix64) for reproducible fault injection.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

extension Character {
    var isLetterOrDigit: Bool { isLetter || isNumber }
}
