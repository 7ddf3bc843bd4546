import FledgeHTTP
import FledgeJSON

/// One event of a watch stream: `{"type":"ADDED","object":{…}}`.
public struct WatchEvent: Sendable, Equatable {
    public enum EventType: String, Sendable, Equatable {
        case added = "ADDED"
        case modified = "MODIFIED"
        case deleted = "DELETED"
        /// Only `metadata.resourceVersion` of `object` is meaningful: progress without a change.
        case bookmark = "BOOKMARK"
        /// `object` is a `Status`; a code of 410 means the watch's version is too old.
        case error = "ERROR"
    }

    public var type: EventType
    public var object: JSONValue

    public init(type: EventType, object: JSONValue) {
        self.type = type
        self.object = object
    }

    /// Parses one line of a watch response.
    public init(parsing line: [UInt8]) throws(KubernetesError) {
        let value: JSONValue
        do {
            value = try JSONValue(parsing: line)
        } catch {
            throw KubernetesError(kind: .invalidResponse, message: "a watch event is not JSON: \(error)")
        }
        try self.init(value)
    }

    /// Reads an already parsed watch event.
    public init(_ value: JSONValue) throws(KubernetesError) {
        guard case .object(let object) = value else {
            throw KubernetesError(kind: .invalidResponse, message: "a watch event is \(value.typeNameWithArticle), expected an object")
        }
        guard let typeName = object["type"]?.stringValue else {
            throw KubernetesError(kind: .invalidResponse, message: "a watch event has no type")
        }
        guard let type = EventType(rawValue: typeName) else {
            throw KubernetesError(kind: .invalidResponse, message: "unknown watch event type \"\(typeName)\"")
        }
        guard let payload = object["object"], payload.objectValue != nil else {
            throw KubernetesError(kind: .invalidResponse, message: "watch event \(typeName) has no object")
        }
        self.type = type
        self.object = payload
    }

    public var resourceVersion: String? { object["metadata"]?["resourceVersion"]?.stringValue }

    /// For `ERROR` events: the `Status` as a `KubernetesError`.
    func statusError(_ context: RequestContext) -> KubernetesError {
        var error = context.error(.api, object["message"]?.stringValue ?? "")
        error.status = object
        error.reason = object["reason"]?.stringValue
        error.code = object["code"]?.intValue.map { Int($0) }
        return error
    }
}

/// The events of one watch connection, parsed from its lines as they arrive.
public struct WatchEvents: AsyncSequence, Sendable {
    public typealias Element = WatchEvent
    let lines: AsyncThrowingStream<[UInt8], any Error>
    let context: RequestContext

    public struct AsyncIterator: AsyncIteratorProtocol {
        var lines: AsyncThrowingStream<[UInt8], any Error>.AsyncIterator
        let context: RequestContext

        public mutating func next() async throws -> WatchEvent? {
            while true {
                let line: [UInt8]?
                do {
                    line = try await lines.next()
                } catch let error as HTTPError {
                    throw context.transport(error)
                } catch let error as KubernetesError {
                    throw error
                } catch {
                    throw context.error(.transport, "the watch stream failed: \(error)")
                }
                guard let line else { return nil }
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
                do {
                    return try WatchEvent(parsing: line)
                } catch {
                    var wrapped = error
                    wrapped.verb = context.verb
                    wrapped.resource = context.resource
                    wrapped.namespace = context.namespace
                    throw wrapped
                }
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(lines: lines.makeAsyncIterator(), context: context)
    }
}

/// Exponential backoff between reconnects.
public struct Backoff: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration
    public var multiplier: Double

    public init(initial: Duration = .milliseconds(200), maximum: Duration = .seconds(30), multiplier: Double = 2) {
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
    }

    /// The wait before retry number `attempt` (1-based).
    public func delay(attempt: Int) -> Duration {
        var delay = initial
        for _ in 1..<max(1, attempt) {
            delay = delay * multiplier
            if delay >= maximum { return maximum }
        }
        return min(delay, maximum)
    }
}

public struct ListWatchOptions: Sendable {
    public var backoff: Backoff
    /// How waiting is done; tests inject a recorder instead of sleeping.
    public var sleep: @Sendable (Duration) async throws -> Void
    /// Page size of the (re)lists.
    public var pageSize: Int?
    /// Asks the server to end each watch after this many seconds (it is then resumed).
    public var watchTimeoutSeconds: Int?
    public var allowBookmarks: Bool
    /// Deliver each page of a (re)list as it arrives (`.resyncPage`, then `.resync` with the last page) instead of
    /// one `.resync` with everything: a consumer that keeps objects compactly then never holds a whole list parsed.
    public var deliverPages = false
    /// Called each time a watch connection is established (the server answered 200): the stream is live again.
    public var onWatchStarted: (@Sendable () -> Void)?

    public init(
        backoff: Backoff = Backoff(), sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        pageSize: Int? = 500, watchTimeoutSeconds: Int? = 300, allowBookmarks: Bool = true
    ) {
        self.backoff = backoff
        self.sleep = sleep
        self.pageSize = pageSize
        self.watchTimeoutSeconds = watchTimeoutSeconds
        self.allowBookmarks = allowBookmarks
    }
}

/// What a `ListWatch` delivers.
public enum ListWatchEvent: Sendable {
    /// A complete, fresh list: the first one, or a relist after a 410, a too-large resourceVersion or an `ERROR` event.
    /// Consumers replace what they hold with `items`.
    case resync(items: [JSONValue], resourceVersion: String)
    /// One page of a (re)list in progress, only with `ListWatchOptions.deliverPages`: the complete list is every
    /// `resyncPage` since the last `.resync` or `.failure`, plus the items of the `.resync` that ends it.
    case resyncPage(items: [JSONValue])
    case added(JSONValue)
    case modified(JSONValue)
    case deleted(JSONValue)
    /// The server's progress marker; the next watch resumes from here.
    case bookmark(resourceVersion: String)
    /// A list or watch failed; the sequence waits `retryIn` and tries again.
    case failure(KubernetesError, retryIn: Duration)
}

/// List then watch, for ever (until the consuming task is cancelled).
///
/// Pull-driven: nothing runs between calls to `next()`, so no background task is
/// left behind. A watch that ends normally resumes at once from the last version;
/// a broken one resumes after a backoff; a 410 Gone, a resourceVersion the server
/// says is too large (it lost state: restored, restarted empty), or any other `ERROR`
/// event, is answered by a fresh list (without a resourceVersion) delivered as `.resync`,
/// as client-go's reflector does.
public struct ListWatch: AsyncSequence, Sendable {
    public typealias Element = ListWatchEvent
    let client: KubernetesClient
    let resource: GroupVersionResource
    let namespace: NamespaceScope
    let labelSelector: String?
    let fieldSelector: String?
    let options: ListWatchOptions

    public struct AsyncIterator: AsyncIteratorProtocol {
        let source: ListWatch
        var resourceVersion: String?
        var needsList = true
        var events: WatchEvents.AsyncIterator?
        var failures = 0
        var pendingSleep: Duration?
        /// Where a page-by-page (re)list continues.
        var continueToken: String?

        public mutating func next() async throws -> ListWatchEvent? {
            while true {
                if Task.isCancelled { return nil }
                if let wait = pendingSleep {
                    pendingSleep = nil
                    do {
                        try await source.options.sleep(wait)
                    } catch {
                        return nil  // cancelled while waiting
                    }
                    continue
                }
                if needsList, source.options.deliverPages {
                    do {
                        let page = try await source.client.list(
                            source.resource, namespace: source.namespace, labelSelector: source.labelSelector,
                            fieldSelector: source.fieldSelector, limit: source.options.pageSize, continue: continueToken)
                        if let next = page.continueToken, !next.isEmpty {
                            continueToken = next
                            return .resyncPage(items: page.items)
                        }
                        continueToken = nil
                        needsList = false
                        failures = 0
                        resourceVersion = page.resourceVersion
                        return .resync(items: page.items, resourceVersion: page.resourceVersion)
                    } catch {
                        // Also an expired continue token (410): the list starts again from its first page.
                        continueToken = nil
                        if Task.isCancelled { return nil }
                        return fail(error)
                    }
                }
                if needsList {
                    do {
                        let list = try await source.client.listAll(
                            source.resource, namespace: source.namespace, labelSelector: source.labelSelector,
                            fieldSelector: source.fieldSelector, pageSize: source.options.pageSize)
                        needsList = false
                        failures = 0
                        resourceVersion = list.resourceVersion
                        return .resync(items: list.items, resourceVersion: list.resourceVersion)
                    } catch {
                        if Task.isCancelled { return nil }
                        return fail(error)
                    }
                }
                if events == nil {
                    do {
                        let watch = try await source.client.watch(
                            source.resource, namespace: source.namespace, resourceVersion: resourceVersion,
                            labelSelector: source.labelSelector, fieldSelector: source.fieldSelector,
                            allowBookmarks: source.options.allowBookmarks, timeoutSeconds: source.options.watchTimeoutSeconds)
                        events = watch.makeAsyncIterator()
                        source.options.onWatchStarted?()
                    } catch {
                        if Task.isCancelled { return nil }
                        if error.needsRelist {
                            needsList = true
                            continue
                        }
                        return fail(error)
                    }
                }
                let event: WatchEvent?
                do {
                    event = try await events!.next()
                } catch let error as KubernetesError {
                    events = nil
                    if Task.isCancelled { return nil }
                    return fail(error)
                } catch {
                    events = nil
                    if Task.isCancelled { return nil }
                    return fail(KubernetesError(kind: .transport, message: "\(error)"))
                }
                guard let event else {
                    // The server ended the watch (timeout or restart): resume from where we are.
                    events = nil
                    continue
                }
                failures = 0
                if let version = event.resourceVersion, event.type != .error { resourceVersion = version }
                switch event.type {
                case .added: return .added(event.object)
                case .modified: return .modified(event.object)
                case .deleted: return .deleted(event.object)
                case .bookmark: return .bookmark(resourceVersion: resourceVersion ?? "")
                case .error:
                    events = nil
                    needsList = true
                    let error = event.statusError(
                        RequestContext(verb: "watch", resource: source.resource.description, namespace: nil))
                    if error.needsRelist { continue }
                    return fail(error)
                }
            }
        }

        private mutating func fail(_ error: KubernetesError) -> ListWatchEvent {
            failures += 1
            let wait = source.options.backoff.delay(attempt: failures)
            pendingSleep = wait
            return .failure(error, retryIn: wait)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: self) }
}
