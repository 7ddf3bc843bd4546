import FledgeJSON
import Logging
import ServiceLifecycle
import Synchronization

/// A change the informer applied to its store.
public enum InformerChange: Sendable {
    case added(JSONValue)
    case updated(old: JSONValue, new: JSONValue)
    case deleted(JSONValue)
    /// The store holds a complete list (after the first list and after every relist).
    case synced(count: Int)

    /// `namespace/name` of the object (nil for `.synced`).
    public var key: String? {
        switch self {
        case .added(let object), .deleted(let object), .updated(_, let object): return Informer.key(of: object)
        case .synced: return nil
        }
    }
}

/// A watch-backed cache of one resource: lists, watches, keeps every object in
/// memory keyed by namespace and name, and tells subscribers what changed, so
/// the controller reads the cluster with zero API calls per tick.
///
/// Run it as a swift-service-lifecycle `Service` (or call `run()` in a task group);
/// reads are synchronous and safe from any thread.
public final class Informer: Service, Sendable {
    public let resource: GroupVersionResource
    public let namespace: NamespaceScope
    public let labelSelector: String?
    private let client: KubernetesClient
    private let options: ListWatchOptions
    private let transform: (@Sendable (JSONValue) -> JSONValue)?
    /// Store objects serialized and parse them on every read: a fraction of the memory of parsed trees, for caches
    /// of thousands of objects that are read rarely (the controller's).
    private let compact: Bool
    private let logger: Logger

    private struct State {
        /// namespace ("" for cluster-scoped) → name → object.
        var objects: [String: [String: StoredObject]] = [:]
        var count = 0
        var synced = false
        var resourceVersion = ""
        var lastError: KubernetesError?
        var subscribers: [Int: AsyncStream<InformerChange>.Continuation] = [:]
        var nextSubscriber = 0
        var stopped = false
        var relists = 0
    }

    private let state = Mutex(State())

    /// - Parameters:
    ///   - transform: applied to every object before it is stored (e.g. to drop
    ///     `metadata.managedFields` in a cache that is never written back).
    ///   - compact: keep objects serialized (about a sixth of the memory) and parse them on every read.
    public init(
        client: KubernetesClient, resource: GroupVersionResource, namespace: NamespaceScope = .all,
        labelSelector: String? = nil, options: ListWatchOptions = ListWatchOptions(),
        transform: (@Sendable (JSONValue) -> JSONValue)? = nil, compact: Bool = false,
        logger: Logger = Logger(label: "fledge.kubernetes.informer")
    ) {
        self.compact = compact
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.labelSelector = labelSelector
        self.options = options
        self.transform = transform
        self.logger = logger
    }

    /// `namespace/name`, or `name` for cluster-scoped objects (client-go's key format).
    public static func key(of object: JSONValue) -> String {
        let metadata = object["metadata"]
        let name = metadata?["name"]?.stringValue ?? ""
        if let namespace = metadata?["namespace"]?.stringValue, !namespace.isEmpty { return "\(namespace)/\(name)" }
        return name
    }

    /// Lists and watches until cancelled or until graceful shutdown; subscribers'
    /// streams finish when it returns.
    public func run() async throws {
        defer {
            // Finished outside the lock: finishing runs the stream's onTermination, which takes the lock again.
            let subscribers = state.withLock { state in
                state.stopped = true
                defer { state.subscribers.removeAll() }
                return Array(state.subscribers.values)
            }
            for continuation in subscribers { continuation.finish() }
        }
        let source = client.listWatch(resource, namespace: namespace, labelSelector: labelSelector, options: options)
        try await cancelWhenGracefulShutdown { [self] in
            for try await event in source {
                apply(event)
            }
        }
    }

    /// Applies one list/watch event to the store. Public so that a store can be fed
    /// from another source (tests, replays).
    public func apply(_ event: ListWatchEvent) {
        switch event {
        case .resync(let items, let version):
            let fresh = items.map { transform?($0) ?? $0 }
            state.withLock { state in
                var objects: [String: [String: StoredObject]] = [:]
                objects.reserveCapacity(state.objects.count)
                // Tell subscribers what the relist changed, then that the store is complete.
                for object in fresh {
                    let (namespace, name) = Self.location(of: object)
                    let stored = StoredObject(object, compact: compact)
                    objects[namespace, default: [:]][name] = stored
                    if let old = state.objects[namespace]?[name] {
                        if old.resourceVersion != stored.resourceVersion {
                            publish(.updated(old: old.object, new: object), &state)
                        }
                    } else {
                        publish(.added(object), &state)
                    }
                }
                for (namespace, names) in state.objects {
                    let current = objects[namespace]
                    for (name, old) in names where current?[name] == nil {
                        publish(.deleted(old.object), &state)
                    }
                }
                state.objects = objects
                state.count = fresh.count
                state.resourceVersion = version
                state.synced = true
                state.relists += 1
                state.lastError = nil
                publish(.synced(count: fresh.count), &state)
            }
        case .added(let raw), .modified(let raw):
            let object = transform?(raw) ?? raw
            let (namespace, name) = Self.location(of: object)
            state.withLock { state in
                let old = state.objects[namespace, default: [:]].updateValue(StoredObject(object, compact: compact), forKey: name)
                if let version = objectVersion(object) { state.resourceVersion = version }
                if let old {
                    publish(.updated(old: old.object, new: object), &state)
                } else {
                    state.count += 1
                    publish(.added(object), &state)
                }
            }
        case .deleted(let raw):
            let object = transform?(raw) ?? raw
            let (namespace, name) = Self.location(of: object)
            state.withLock { state in
                let old = state.objects[namespace]?.removeValue(forKey: name)
                if state.objects[namespace]?.isEmpty == true { state.objects[namespace] = nil }
                if let version = objectVersion(object) { state.resourceVersion = version }
                if old != nil { state.count -= 1 }
                publish(.deleted(object), &state)
            }
        case .bookmark(let version):
            state.withLock { $0.resourceVersion = version }
        case .failure(let error, let retryIn):
            logger.warning(
                "list/watch failed; retrying", metadata: ["resource": "\(resource)", "error": "\(error)", "retryIn": "\(retryIn)"])
            state.withLock { $0.lastError = error }
        }
    }

    private func publish(_ change: InformerChange, _ state: inout State) {
        for continuation in state.subscribers.values { continuation.yield(change) }
    }

    private static func location(of object: JSONValue) -> (String, String) {
        let metadata = object["metadata"]
        return (metadata?["namespace"]?.stringValue ?? "", metadata?["name"]?.stringValue ?? "")
    }

    // MARK: - Reading the store (no API calls)

    public func get(namespace: String?, name: String) -> JSONValue? {
        state.withLock { $0.objects[namespace ?? ""]?[name] }?.object
    }

    /// Looks up `namespace/name` (or `name` for cluster-scoped objects).
    public func get(key: String) -> JSONValue? {
        if let slash = key.firstIndex(of: "/") {
            return get(namespace: String(key[..<slash]), name: String(key[key.index(after: slash)...]))
        }
        return get(namespace: nil, name: key)
    }

    /// Objects of one namespace (nil: all), optionally filtered by a label selector.
    public func list(namespace: String? = nil, selector: LabelSelector? = nil) -> [JSONValue] {
        let stored: [StoredObject] = state.withLock { state in
            if let namespace { return Array((state.objects[namespace] ?? [:]).values) }
            var all: [StoredObject] = []
            all.reserveCapacity(state.count)
            for names in state.objects.values { all.append(contentsOf: names.values) }
            return all
        }
        let objects = stored.map(\.object)
        guard let selector, !selector.isEmpty else { return objects }
        return objects.filter { selector.matches(object: $0) }
    }

    public var keys: [String] {
        state.withLock { state in
            state.objects.flatMap { namespace, names in names.keys.map { namespace.isEmpty ? $0 : "\(namespace)/\($0)" } }
        }
    }

    public var count: Int { state.withLock { $0.count } }
    public var hasSynced: Bool { state.withLock { $0.synced } }
    /// The last resourceVersion seen (list, event or bookmark).
    public var resourceVersion: String { state.withLock { $0.resourceVersion } }
    /// The last list/watch failure since the last successful list, if any.
    public var lastError: KubernetesError? { state.withLock { $0.lastError } }
    /// How many complete lists have been applied (1 after start; more after 410s).
    public var relistCount: Int { state.withLock { $0.relists } }

    // MARK: - Notifications

    /// A stream of every change from now on. With `replayExisting`, it starts with
    /// an `.added` for each stored object and a `.synced` (when synced), so a new
    /// subscriber sees the whole state. Finishes when the informer stops.
    public func changes(replayExisting: Bool = false) -> AsyncStream<InformerChange> {
        let (stream, continuation) = AsyncStream<InformerChange>.makeStream(bufferingPolicy: .unbounded)
        let id: Int? = state.withLock { state in
            if replayExisting {
                for names in state.objects.values { for object in names.values { continuation.yield(.added(object.object)) } }
                if state.synced { continuation.yield(.synced(count: state.count)) }
            }
            if state.stopped {
                continuation.finish()
                return nil
            }
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = continuation
            return id
        }
        if let id {
            continuation.onTermination = { [weak self] _ in
                _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
            }
        }
        return stream
    }

    /// Waits for the first complete list. Returns false if the informer stopped
    /// or the waiting task was cancelled first.
    public func waitUntilSynced() async -> Bool {
        let (stream, continuation) = AsyncStream<InformerChange>.makeStream(bufferingPolicy: .unbounded)
        let id: Int? = state.withLock { state in
            if state.synced {
                continuation.yield(.synced(count: state.count))
                continuation.finish()
                return nil
            }
            if state.stopped {
                continuation.finish()
                return nil
            }
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = continuation
            return id
        }
        defer { if let id { _ = state.withLock { $0.subscribers.removeValue(forKey: id) } } }
        for await change in stream {
            if case .synced = change { return true }
        }
        return false
    }

    /// Drops `metadata.managedFields`, for caches that are only read.
    public static let dropManagedFields: @Sendable (JSONValue) -> JSONValue = { object in
        var object = object
        if object["metadata"]?["managedFields"] != nil { object[path: ["metadata", "managedFields"]] = nil }
        return object
    }
}

/// One cached object: parsed, or (compact caches) serialized and parsed on every read.
struct StoredObject: Sendable {
    private let value: JSONValue?
    private let bytes: [UInt8]
    let resourceVersion: String?

    init(_ object: JSONValue, compact: Bool) {
        resourceVersion = objectVersion(object)
        if compact {
            value = nil
            bytes = object.serialized()
        } else {
            value = object
            bytes = []
        }
    }

    var object: JSONValue {
        if let value { return value }
        // Our own serialization always parses; `.null` only if memory were corrupted.
        return (try? JSONValue(parsing: bytes)) ?? .null
    }
}

private func objectVersion(_ object: JSONValue) -> String? {
    object["metadata"]?["resourceVersion"]?.stringValue
}
