import FledgeJSON
import Foundation
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
    /// Store objects serialized and deflated, and parse them on every read: a fraction of the memory of parsed trees, for caches
    /// of thousands of objects that are read rarely (the controller's).
    private let compact: Bool
    private let logger: Logger
    private let now: @Sendable () -> Date

    private struct State {
        /// namespace ("" for cluster-scoped) → name → object.
        var objects: [String: [String: StoredObject]] = [:]
        var count = 0
        var synced = false
        var resourceVersion = ""
        var lastError: KubernetesError?
        /// Since when lists and watches have been failing with no watch connected since; nil while connected.
        var failingSince: Date?
        /// Set while running: asks the list/watch loop to drop its watch and list again.
        var relistRequest: AsyncStream<Void>.Continuation?
        var subscribers: [Int: AsyncStream<InformerChange>.Continuation] = [:]
        /// `changedKeys` subscribers: what changed since each last looked, and how to wake it.
        var keySubscribers: [Int: (pending: [String: KeyChange], wake: AsyncStream<Void>.Continuation)] = [:]
        var nextSubscriber = 0
        var stopped = false
        var relists = 0
        /// `waitUntilSynced` callers, told when the first list is complete (not subscribers: they need no objects).
        var syncWaiters: [Int: AsyncStream<Bool>.Continuation] = [:]
        /// Pages of a (re)list in progress (`ListWatchOptions.deliverPages`), stored as they came.
        var staged: [((namespace: String, name: String), StoredObject)] = []
        /// Compact caches: the dictionary every stored object is deflated against, seeded by the first objects.
        var compressor: ObjectCompressor?
        /// The top-level fields of the objects the dictionary was made from, and how often it was extended since.
        var dictionaryFields: Set<String> = []
        var dictionaryExtensions = 0
    }

    private let state = Mutex(State())
    /// How often a compact cache's dictionary may be extended for objects with new top-level fields.
    static let dictionaryExtensionLimit = 4

    /// - Parameters:
    ///   - transform: applied to every object before it is stored (e.g. to drop
    ///     `metadata.managedFields` in a cache that is never written back).
    ///   - compact: keep objects serialized and deflated against a dictionary of sample objects (a small fraction of
    ///     the memory of parsed trees), and inflate and parse them on every read.
    ///   - now: the clock `failingSince` is read from.
    public init(
        client: KubernetesClient, resource: GroupVersionResource, namespace: NamespaceScope = .all,
        labelSelector: String? = nil, options: ListWatchOptions = ListWatchOptions(),
        transform: (@Sendable (JSONValue) -> JSONValue)? = nil, compact: Bool = false,
        logger: Logger = Logger(label: "fledge.kubernetes.informer"), now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.now = now
        self.compact = compact
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.labelSelector = labelSelector
        // Pages are stored (compactly) as they arrive: a list of 10,000 objects is never held parsed at once.
        var options = options
        options.deliverPages = true
        self.options = options
        self.transform = transform
        self.logger = logger
    }

    /// `namespace/name`, or `name` for cluster-scoped objects (client-go's key format).
    public static func key(of object: JSONValue) -> String {
        let metadata = object["metadata"]
        return key(namespace: metadata?["namespace"]?.stringValue ?? "", name: metadata?["name"]?.stringValue ?? "")
    }

    /// `namespace/name`, or `name` when the namespace is empty (cluster-scoped).
    public static func key(namespace: String, name: String) -> String {
        namespace.isEmpty ? name : "\(namespace)/\(name)"
    }

    /// The inverse of `key(namespace:name:)`: a key without a slash is a cluster-scoped name.
    public static func location(ofKey key: String) -> (namespace: String, name: String) {
        guard let slash = key.firstIndex(of: "/") else { return ("", key) }
        return (String(key[..<slash]), String(key[key.index(after: slash)...]))
    }

    /// Lists and watches until cancelled or until graceful shutdown; subscribers'
    /// streams finish when it returns. `requestRelist()` starts the list and watch over.
    public func run() async throws {
        defer {
            // Finished outside the lock: finishing runs the stream's onTermination, which takes the lock again.
            let (subscribers, keySubscribers, syncWaiters) = state.withLock { state in
                state.stopped = true
                defer {
                    state.subscribers.removeAll()
                    state.keySubscribers.removeAll()
                    state.syncWaiters.removeAll()
                }
                return (Array(state.subscribers.values), state.keySubscribers.values.map(\.wake), Array(state.syncWaiters.values))
            }
            for continuation in subscribers { continuation.finish() }
            for wake in keySubscribers { wake.finish() }
            for waiter in syncWaiters { waiter.finish() }
        }
        var options = self.options
        options.onWatchStarted = { [weak self] in self?.watchStarted() }
        let source = client.listWatch(resource, namespace: namespace, labelSelector: labelSelector, options: options)
        try await cancelWhenGracefulShutdown { [self] in
            while !Task.isCancelled {
                let (requests, request) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
                let stopped = state.withLock { state in
                    state.relistRequest = request
                    // A list cut short by a relist request starts again from its first page.
                    state.staged = []
                    return state.stopped
                }
                if stopped { return }
                // The list/watch runs until cancelled; a relist request cancels it, and the loop starts a fresh one.
                let relisting = try await withThrowingTaskGroup(of: Bool.self) { group in
                    group.addTask {
                        for try await event in source { self.apply(event) }
                        return false
                    }
                    group.addTask {
                        for await _ in requests { return true }
                        return false
                    }
                    let first = try await group.next() ?? false
                    group.cancelAll()
                    return first
                }
                state.withLock { $0.relistRequest = nil }
                request.finish()
                if !relisting { return }
            }
        }
    }

    /// Drops the watch and lists again (e.g. after writes conflicted again and again: the cache may be stale, say
    /// after the API server was restored from a backup). Costs one list; does nothing unless running.
    public func requestRelist() {
        let request = state.withLock { $0.relistRequest }
        logger.info("relisting: the cache may be stale", metadata: ["resource": "\(resource)"])
        request?.yield()
    }

    private func watchStarted() {
        state.withLock { $0.failingSince = nil }
    }

    /// Applies one list/watch event to the store. Public so that a store can be fed
    /// from another source (tests, replays).
    public func apply(_ event: ListWatchEvent) {
        switch event {
        case .resyncPage(let items):
            let fresh = items.map { transform?($0) ?? $0 }
            let staged = zip(fresh, store(fresh)).map { object, stored in (Self.location(of: object), stored) }
            state.withLock { $0.staged.append(contentsOf: staged) }
        case .resync(let items, let version):
            let fresh = items.map { transform?($0) ?? $0 }
            let last = zip(fresh, store(fresh)).map { object, stored in (Self.location(of: object), stored) }
            let (relisted, count) = state.withLock { state -> (Bool, Int) in
                let listed = state.staged + last
                state.staged = []
                var objects: [String: [String: StoredObject]] = [:]
                objects.reserveCapacity(state.objects.count)
                // Tell subscribers what the relist changed, then that the store is complete.
                for ((namespace, name), stored) in listed {
                    objects[namespace, default: [:]][name] = stored
                    let key = Self.key(namespace: namespace, name: name)
                    if let old = state.objects[namespace]?[name] {
                        if !old.isSame(as: stored) {
                            publish(key: key, .present, .updated(old: old.object, new: stored.object), &state)
                        }
                    } else {
                        publish(key: key, .present, .added(stored.object), &state)
                    }
                }
                for (namespace, names) in state.objects {
                    let current = objects[namespace]
                    for (name, old) in names where current?[name] == nil {
                        publish(key: Self.key(namespace: namespace, name: name), .deleted, .deleted(old.object), &state)
                    }
                }
                state.objects = objects
                // Counted from the store, not the list: a key listed twice is stored once.
                state.count = objects.values.reduce(0) { $0 + $1.count }
                state.resourceVersion = version
                state.synced = true
                state.relists += 1
                state.lastError = nil
                state.failingSince = nil
                for continuation in state.subscribers.values { continuation.yield(.synced(count: state.count)) }
                for waiter in state.syncWaiters.values {
                    waiter.yield(true)
                    waiter.finish()
                }
                state.syncWaiters.removeAll()
                return (state.relists > 1, state.count)
            }
            if relisted {
                // Not the first list: the watch could not go on (410, a resourceVersion the server no longer knows, a
                // relist asked for), and the cache now holds what the server has.
                logger.info("relisted", metadata: ["resource": "\(resource)", "objects": "\(count)", "resourceVersion": "\(version)"])
            }
        case .added(let raw), .modified(let raw):
            let object = transform?(raw) ?? raw
            let (namespace, name) = Self.location(of: object)
            let stored = store([object])[0]
            state.withLock { state in
                let old = state.objects[namespace, default: [:]].updateValue(stored, forKey: name)
                if let version = objectVersion(object) { state.resourceVersion = version }
                let key = Self.key(namespace: namespace, name: name)
                if let old {
                    publish(key: key, .present, .updated(old: old.object, new: object), &state)
                } else {
                    state.count += 1
                    publish(key: key, .present, .added(object), &state)
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
                publish(key: Self.key(namespace: namespace, name: name), .deleted, .deleted(object), &state)
            }
        case .bookmark(let version):
            state.withLock { $0.resourceVersion = version }
        case .failure(let error, let retryIn):
            logger.warning(
                "list/watch failed; retrying", metadata: ["resource": "\(resource)", "error": "\(error)", "retryIn": "\(retryIn)"])
            let at = now()
            state.withLock { state in
                state.lastError = error
                if state.failingSince == nil { state.failingSince = at }
                // A list that failed part-way starts again from its first page.
                state.staged = []
            }
        }
    }

    /// The stored form of `objects`: as they are, or (compact caches) serialized and deflated against the cache's
    /// dictionary, which the first objects ever stored seed. Done outside the lock.
    private func store(_ objects: [JSONValue]) -> [StoredObject] {
        guard compact else { return objects.map { StoredObject($0) } }
        let serialized = objects.map { $0.serialized() }
        // Top-level field names, worked out before taking the lock; which object brought a new one is looked for
        // only when the batch has one.
        let fields = objects.reduce(into: Set<String>()) { $0.formUnion(Self.fields(of: $1)) }
        let compressor = state.withLock { state in
            guard let existing = state.compressor, !(existing.dictionary.isEmpty && !serialized.isEmpty) else {
                // The first objects seed the dictionary; a cache whose first list was empty (Fledge installed before
                // any Rollout) gets it from the first objects that arrive.
                let made = ObjectCompressor(samples: serialized)
                state.compressor = made
                state.dictionaryFields = fields
                return made
            }
            // An object with a top-level field the samples lacked (a Rollout's first `status`, written by the
            // controller itself moments after the first list) would carry all of it: the dictionary is extended
            // with that object, a few times at most. Objects already stored keep the compressor that made them.
            guard state.dictionaryExtensions < Self.dictionaryExtensionLimit, !fields.isSubset(of: state.dictionaryFields),
                let index = objects.firstIndex(where: { !Self.fields(of: $0).isSubset(of: state.dictionaryFields) })
            else { return existing }
            let extended = ObjectCompressor(dictionary: existing.dictionary + serialized[index])
            state.compressor = extended
            state.dictionaryFields.formUnion(Self.fields(of: objects[index]))
            state.dictionaryExtensions += 1
            return extended
        }
        return serialized.map { StoredObject(serialized: $0, compressor: compressor) }
    }

    /// Tells subscribers that `key` changed. `change` is only made (objects inflated and parsed) when someone
    /// subscribed to whole changes; `changedKeys` subscribers get the key.
    private func publish(key: String, _ keyChange: KeyChange, _ change: @autoclosure () -> InformerChange, _ state: inout State) {
        if !state.subscribers.isEmpty {
            let change = change()
            for continuation in state.subscribers.values { continuation.yield(change) }
        }
        // Over a copy of the ids: iterating the dictionary's own keys would keep its storage shared, and every
        // write below would then copy each subscriber's whole pending table (quadratic over a 10,000-object list).
        for id in Array(state.keySubscribers.keys) {
            state.keySubscribers[id]!.pending[key] = keyChange
            state.keySubscribers[id]!.wake.yield()
        }
    }

    private static func fields(of object: JSONValue) -> Set<String> {
        Set(object.objectValue?.keys.elements ?? [])
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
        let (namespace, name) = Self.location(ofKey: key)
        return get(namespace: namespace, name: name)
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
            state.objects.flatMap { namespace, names in names.keys.map { Self.key(namespace: namespace, name: $0) } }
        }
    }

    public var count: Int { state.withLock { $0.count } }
    /// Bytes the stored objects take in serialized form (compact caches; 0 otherwise): the cache's memory, for
    /// `/metrics` and the benchmarks.
    public var storedBytes: Int {
        state.withLock { state in state.objects.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.byteCount } } }
    }
    public var hasSynced: Bool { state.withLock { $0.synced } }
    /// The last resourceVersion seen (list, event or bookmark).
    public var resourceVersion: String { state.withLock { $0.resourceVersion } }
    /// The last list/watch failure since the last successful list, if any.
    public var lastError: KubernetesError? { state.withLock { $0.lastError } }
    /// Since when the informer has been failing to list or watch, with no watch established since; nil while a watch
    /// is connected (or being reopened after a normal end).
    public var failingSince: Date? { state.withLock { $0.failingSince } }
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

    /// Keys of the objects that changed, in batches: each batch holds every key that changed since the previous
    /// one, with its latest state. Unlike `changes()`, nothing is buffered per event, so a burst (the first list of
    /// 10,000 objects) leaves no queue behind, and a consumer that falls behind sees each key once. With
    /// `replayExisting`, the first batch holds every stored object. Finishes when the informer stops.
    public func changedKeys(replayExisting: Bool = false) -> ChangedKeys {
        let (wakes, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id: Int? = state.withLock { state in
            if state.stopped {
                wake.finish()
                return nil
            }
            var pending: [String: KeyChange] = [:]
            if replayExisting {
                for (namespace, names) in state.objects {
                    for name in names.keys { pending[Self.key(namespace: namespace, name: name)] = .present }
                }
                wake.yield()
            }
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.keySubscribers[id] = (pending, wake)
            return id
        }
        if let id {
            wake.onTermination = { [weak self] _ in
                _ = self?.state.withLock { $0.keySubscribers.removeValue(forKey: id) }
            }
        }
        return ChangedKeys(wakes: wakes) { [weak self] in
            guard let id, let self else { return [:] }
            return self.state.withLock { state in
                guard var subscriber = state.keySubscribers[id] else { return [:] }
                let batch = subscriber.pending
                // A new, empty table: the drained one would keep the capacity of the largest burst.
                subscriber.pending = [:]
                state.keySubscribers[id] = subscriber
                return batch
            }
        }
    }

    /// Waits for the first complete list. Returns false if the informer stopped
    /// or the waiting task was cancelled first.
    public func waitUntilSynced() async -> Bool {
        let (stream, continuation) = AsyncStream<Bool>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id: Int? = state.withLock { state in
            if state.synced || state.stopped {
                continuation.yield(state.synced)
                continuation.finish()
                return nil
            }
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.syncWaiters[id] = continuation
            return id
        }
        defer { if let id { _ = state.withLock { $0.syncWaiters.removeValue(forKey: id) } } }
        for await synced in stream { return synced }
        return false
    }

    /// Drops `metadata.managedFields`, for caches that are only read.
    public static let dropManagedFields: @Sendable (JSONValue) -> JSONValue = { object in
        var object = object
        if object["metadata"]?["managedFields"] != nil { object[path: ["metadata", "managedFields"]] = nil }
        return object
    }
}

/// One cached object: parsed, or (compact caches) serialized, deflated, and inflated and parsed on every read.
/// Small (16 bytes), since a cache of 10,000 objects holds 10,000 of them in its hash tables.
struct StoredObject: Sendable {
    private enum Storage: Sendable {
        case parsed(Box<JSONValue>)
        case serialized([UInt8])
        case deflated([UInt8], compressor: ObjectCompressor)
    }

    private let storage: Storage

    init(_ object: JSONValue) {
        storage = .parsed(Box(object))
    }

    init(serialized: [UInt8], compressor: ObjectCompressor) {
        if let deflated = compressor.deflate(serialized) {
            storage = .deflated(deflated, compressor: compressor)
        } else {
            // Only if zlib fails (out of memory): keep the serialization, copied to its exact size.
            storage = .serialized(Array(serialized[...]))
        }
    }

    /// Bytes held for the object in compact form (0 when kept parsed).
    var byteCount: Int {
        switch storage {
        case .parsed: return 0
        case .serialized(let bytes), .deflated(let bytes, _): return bytes.count
        }
    }

    /// Whether both hold the same object. Deflated by the same compressor, the stored bytes themselves tell (deflate
    /// is a function of its input), so a relist of 10,000 objects compares them without inflating any under the
    /// lock; otherwise by resourceVersion.
    func isSame(as other: StoredObject) -> Bool {
        switch (storage, other.storage) {
        case (.deflated(let mine, let compressor), .deflated(let theirs, let otherCompressor)) where compressor === otherCompressor:
            return mine == theirs
        case (.serialized(let mine), .serialized(let theirs)):
            return mine == theirs
        default:
            return objectVersion(object) == objectVersion(other.object)
        }
    }

    var object: JSONValue {
        switch storage {
        case .parsed(let box):
            return box.value
        case .serialized(let bytes):
            // Our own serialization always parses; `.null` only if memory were corrupted.
            return (try? JSONValue(parsing: bytes)) ?? .null
        case .deflated(let bytes, let compressor):
            guard let bytes = compressor.inflate(bytes) else { return .null }
            return (try? JSONValue(parsing: bytes)) ?? .null
        }
    }
}

/// An immutable value behind a reference: keeps a large, rarely used case out of an enum's inline size.
private final class Box<Value: Sendable>: Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

private func objectVersion(_ object: JSONValue) -> String? {
    object["metadata"]?["resourceVersion"]?.stringValue
}

/// Whether a changed object is (still) in the cache.
public enum KeyChange: Sendable, Equatable {
    case present
    case deleted
}

/// Batches of changed keys from `Informer.changedKeys`.
public struct ChangedKeys: AsyncSequence, Sendable {
    public typealias Element = [String: KeyChange]
    let wakes: AsyncStream<Void>
    let take: @Sendable () -> [String: KeyChange]

    public struct AsyncIterator: AsyncIteratorProtocol {
        var wakes: AsyncStream<Void>.AsyncIterator
        let take: @Sendable () -> [String: KeyChange]

        public mutating func next() async -> [String: KeyChange]? {
            while await wakes.next() != nil {
                let batch = take()
                if !batch.isEmpty { return batch }
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(wakes: wakes.makeAsyncIterator(), take: take) }
}
