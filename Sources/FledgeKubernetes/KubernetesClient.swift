import FledgeHTTP
import FledgeJSON
import Foundation
import Logging
import Synchronization

/// Makes the HTTP transport for a TLS/client-certificate configuration.
public typealias HTTPClientFactory = @Sendable (HTTPClientConfiguration) throws -> any HTTPClient

/// A Kubernetes API client for any resource, over Fledge's one HTTP transport.
///
/// Objects are `JSONValue`s, so every field the client does not know survives a
/// read-modify-write exactly. Every failure is a `KubernetesError`.
public final class KubernetesClient: Sendable {
    public let configuration: KubernetesConfiguration
    let credentials: CredentialProvider
    private let factory: HTTPClientFactory

    private struct TransportCache: @unchecked Sendable {
        // `any HTTPClient` is Sendable; the tuple key is plain data.
        var certificate: [UInt8]?
        var key: [UInt8]?
        var client: (any HTTPClient)?
    }
    private let transport = Mutex(TransportCache())

    /// - Parameters:
    ///   - configuration: where and who (`KubernetesConfiguration.load()`, `.inCluster()`, `Kubeconfig`).
    ///   - makeTransport: builds the HTTP client for the configuration's TLS settings
    ///     (called again only when an exec plugin hands out a new client certificate).
    ///   - now: the clock used to expire exec plugin credentials.
    public init(
        configuration: KubernetesConfiguration, makeTransport: @escaping HTTPClientFactory,
        now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.configuration = configuration
        self.factory = makeTransport
        self.credentials = CredentialProvider(
            credentials: configuration.credentials, server: configuration.server, tls: configuration.tls, now: now)
    }

    /// Talks over libcurl (`CurlHTTPClient`), the project's one HTTP transport.
    public convenience init(
        configuration: KubernetesConfiguration, logger: Logger = Logger(label: "fledge.kubernetes"),
        now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.init(
            configuration: configuration, makeTransport: { CurlHTTPClient(configuration: $0, logger: logger) }, now: now)
    }

    /// The client kubectl would build: `KUBECONFIG`/`~/.kube/config` (optionally another
    /// context), else the in-cluster service account.
    public static func load(context: String? = nil) throws(KubernetesError) -> KubernetesClient {
        KubernetesClient(configuration: try KubernetesConfiguration.load(context: context))
    }

    /// Uses an existing transport for every request (exec client certificates then need a factory).
    public convenience init(configuration: KubernetesConfiguration, transport: any HTTPClient) {
        self.init(configuration: configuration, makeTransport: { _ in transport })
    }

    /// The HTTP configuration the transport is built with.
    public var httpConfiguration: HTTPClientConfiguration {
        HTTPClientConfiguration(
            tls: configuration.tls, authorization: nil, connectTimeout: configuration.connectTimeout,
            timeout: configuration.timeout, maxResponseBytes: 512 << 20, userAgent: configuration.userAgent)
    }

    private func httpClient(for resolved: ResolvedCredentials, context: RequestContext) throws(KubernetesError) -> any HTTPClient {
        do {
            return try transport.withLock { cache throws -> any HTTPClient in
                if let client = cache.client, cache.certificate == resolved.clientCertificate, cache.key == resolved.clientKey {
                    return client
                }
                var http = httpConfiguration
                if let certificate = resolved.clientCertificate, let key = resolved.clientKey {
                    http.tls.clientCertificate = .pem(certificate)
                    http.tls.clientKey = .pem(key)
                }
                let client = try factory(http)
                cache = TransportCache(certificate: resolved.clientCertificate, key: resolved.clientKey, client: client)
                return client
            }
        } catch let error as HTTPError {
            throw context.transport(error)
        } catch let error as KubernetesError {
            throw error
        } catch {
            throw context.error(.transport, "cannot create the HTTP transport: \(error)")
        }
    }

    func url(_ path: String, _ query: [(String, String)] = []) -> String {
        configuration.server + path + queryString(query)
    }

    /// Sends one request with credentials; a 401 after re-readable credentials
    /// (token file, exec plugin) is retried once with fresh ones.
    func perform(
        _ context: RequestContext, method: HTTPMethod, url: String, body: [UInt8]? = nil, contentType: String? = nil
    ) async throws(KubernetesError) -> HTTPResponse {
        var attempt = 0
        while true {
            attempt += 1
            let resolved = try await credentials.resolve()
            let client = try httpClient(for: resolved, context: context)
            var request = HTTPRequest(method: method, url: url, body: body)
            request.headers.set("Accept", "application/json")
            if let contentType { request.headers.set("Content-Type", contentType) }
            if let authorization = resolved.authorization { request.headers.set("Authorization", authorization) }
            impersonate(&request)
            let response: HTTPResponse
            do {
                response = try await client.send(request)
            } catch let error as HTTPError {
                throw context.transport(error)
            } catch is CancellationError {
                throw context.error(.transport, "cancelled")
            } catch {
                throw context.error(.transport, "\(error)")
            }
            if response.status == 401, attempt == 1, credentials.invalidate() { continue }
            guard response.isSuccess else { throw context.apiError(code: response.status, body: response.body) }
            return response
        }
    }

    func performJSON(
        _ context: RequestContext, method: HTTPMethod, url: String, body: JSONValue? = nil, contentType: String? = nil
    ) async throws(KubernetesError) -> JSONValue {
        let response = try await perform(
            context, method: method, url: url, body: body.map { $0.serialized() },
            contentType: body == nil ? nil : (contentType ?? "application/json"))
        do {
            return try JSONValue(parsing: response.body)
        } catch {
            throw context.error(.invalidResponse, "the server's answer is not JSON: \(error)")
        }
    }

    /// Opens a streaming request (watch) with credentials.
    func openStream(_ context: RequestContext, url: String) async throws(KubernetesError) -> HTTPStreamingResponse {
        var attempt = 0
        while true {
            attempt += 1
            let resolved = try await credentials.resolve()
            let client = try httpClient(for: resolved, context: context)
            var request = HTTPRequest(method: .get, url: url, timeout: .zero)
            request.headers.set("Accept", "application/json")
            if let authorization = resolved.authorization { request.headers.set("Authorization", authorization) }
            impersonate(&request)
            do {
                return try await client.stream(request)
            } catch let error as HTTPError {
                if case .status(401) = error.kind, attempt == 1, credentials.invalidate() { continue }
                throw context.transport(error)
            } catch {
                throw context.error(.transport, "\(error)")
            }
        }
    }

    /// The configuration's Impersonate-* headers, on every request (watches included), as client-go sends them.
    func impersonate(_ request: inout HTTPRequest) {
        guard let impersonation = configuration.impersonation else { return }
        for header in impersonation.headers { request.headers.add(header.name, header.value) }
    }

    func namespace(for resource: GroupVersionResource, _ namespace: String?) -> String? {
        resource.namespaced ? (namespace ?? configuration.namespace) : nil
    }

    // MARK: - Reading

    /// GET one object. `namespace` nil means the configuration's namespace.
    public func get(
        _ resource: GroupVersionResource, namespace: String? = nil, name: String, subresource: String? = nil
    ) async throws(KubernetesError) -> JSONValue {
        let ns = self.namespace(for: resource, namespace)
        let context = RequestContext(verb: "get", resource: resource.description, namespace: ns, name: name)
        return try await performJSON(context, method: .get, url: url(resource.path(namespace: ns, name: name, subresource: subresource)))
    }

    /// One page of a list. `namespace`: `.all` lists across namespaces.
    public func list(
        _ resource: GroupVersionResource, namespace: NamespaceScope = .default, labelSelector: String? = nil,
        fieldSelector: String? = nil, limit: Int? = nil, continue continueToken: String? = nil,
        resourceVersion: String? = nil
    ) async throws(KubernetesError) -> ObjectList {
        let ns = scope(resource, namespace)
        let context = RequestContext(verb: "list", resource: resource.description, namespace: ns)
        var query: [(String, String)] = []
        if let labelSelector, !labelSelector.isEmpty { query.append(("labelSelector", labelSelector)) }
        if let fieldSelector, !fieldSelector.isEmpty { query.append(("fieldSelector", fieldSelector)) }
        if let limit { query.append(("limit", String(limit))) }
        if let continueToken, !continueToken.isEmpty { query.append(("continue", continueToken)) }
        if let resourceVersion { query.append(("resourceVersion", resourceVersion)) }
        let response = try await perform(context, method: .get, url: url(resource.path(namespace: ns), query))
        return try ObjectList(decoding: response.body, context: context)
    }

    /// Every page of a list, collected; the result's `resourceVersion` is the first page's
    /// (the snapshot all pages belong to). A continue token that expires mid-way
    /// (410) starts the whole list again once.
    public func listAll(
        _ resource: GroupVersionResource, namespace: NamespaceScope = .default, labelSelector: String? = nil,
        fieldSelector: String? = nil, pageSize: Int? = 500
    ) async throws(KubernetesError) -> ObjectList {
        var restarted = false
        while true {
            do {
                var first = try await list(
                    resource, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector, limit: pageSize)
                var token = first.continueToken
                while let next = token, !next.isEmpty {
                    let page = try await list(
                        resource, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector,
                        limit: pageSize, continue: next)
                    first.items += page.items
                    token = page.continueToken
                }
                first.continueToken = nil
                first.remainingItemCount = nil
                return first
            } catch where error.isGone && !restarted {
                restarted = true
            }
        }
    }

    /// The pages of a list, one at a time, fetched as the caller asks for them.
    public func listPages(
        _ resource: GroupVersionResource, namespace: NamespaceScope = .default, labelSelector: String? = nil,
        fieldSelector: String? = nil, pageSize: Int = 500
    ) -> ListPages {
        ListPages(
            client: self, resource: resource, namespace: namespace, labelSelector: labelSelector,
            fieldSelector: fieldSelector, pageSize: pageSize)
    }

    func scope(_ resource: GroupVersionResource, _ scope: NamespaceScope) -> String? {
        guard resource.namespaced else { return nil }
        switch scope {
        case .default: return configuration.namespace
        case .all: return nil
        case .named(let name): return name
        }
    }

    // MARK: - Writing

    /// POST a new object. The namespace is the argument, else the object's, else the configuration's.
    public func create(
        _ resource: GroupVersionResource, namespace: String? = nil, _ object: JSONValue
    ) async throws(KubernetesError) -> JSONValue {
        let ns = resource.namespaced ? (namespace ?? object["metadata"]?["namespace"]?.stringValue ?? configuration.namespace) : nil
        let context = RequestContext(
            verb: "create", resource: resource.description, namespace: ns, name: object["metadata"]?["name"]?.stringValue)
        return try await performJSON(context, method: .post, url: url(resource.path(namespace: ns)), body: object)
    }

    /// PUT an object back. Its `metadata.resourceVersion` makes the write conditional:
    /// a stale one fails with a conflict (`error.isConflict`).
    public func update(
        _ resource: GroupVersionResource, namespace: String? = nil, _ object: JSONValue, subresource: String? = nil
    ) async throws(KubernetesError) -> JSONValue {
        let ns = resource.namespaced ? (namespace ?? object["metadata"]?["namespace"]?.stringValue ?? configuration.namespace) : nil
        guard let name = object["metadata"]?["name"]?.stringValue, !name.isEmpty else {
            throw RequestContext(verb: "update", resource: resource.description, namespace: ns)
                .error(.invalidArgument, "the object has no metadata.name")
        }
        let context = RequestContext(
            verb: subresource == nil ? "update" : "update \(subresource!)", resource: resource.description, namespace: ns, name: name)
        return try await performJSON(
            context, method: .put, url: url(resource.path(namespace: ns, name: name, subresource: subresource)), body: object)
    }

    /// PATCH an object (merge patch, JSON Patch or strategic merge patch).
    /// `dryRun`: the server validates and admits the patched object and answers it, but stores nothing
    /// (`?dryRun=All`).
    public func patch(
        _ resource: GroupVersionResource, namespace: String? = nil, name: String, _ patch: Patch,
        subresource: String? = nil, fieldManager: String? = nil, dryRun: Bool = false
    ) async throws(KubernetesError) -> JSONValue {
        let ns = self.namespace(for: resource, namespace)
        let context = RequestContext(
            verb: subresource == nil ? "patch" : "patch \(subresource!)", resource: resource.description, namespace: ns, name: name)
        var query: [(String, String)] = []
        if let fieldManager { query.append(("fieldManager", fieldManager)) }
        if dryRun { query.append(("dryRun", "All")) }
        return try await performJSON(
            context, method: .patch, url: url(resource.path(namespace: ns, name: name, subresource: subresource), query),
            body: patch.body, contentType: patch.contentType)
    }

    /// DELETE an object; preconditions make it conditional on a uid or resourceVersion.
    /// Returns what the server answered (the object being deleted, or a `Status`).
    @discardableResult
    public func delete(
        _ resource: GroupVersionResource, namespace: String? = nil, name: String,
        preconditions: (uid: String?, resourceVersion: String?)? = nil, propagationPolicy: String? = nil
    ) async throws(KubernetesError) -> JSONValue {
        let ns = self.namespace(for: resource, namespace)
        let context = RequestContext(verb: "delete", resource: resource.description, namespace: ns, name: name)
        var options: JSONObject = ["kind": "DeleteOptions", "apiVersion": "v1"]
        if let preconditions {
            var object = JSONObject()
            if let uid = preconditions.uid { object["uid"] = .string(uid) }
            if let rv = preconditions.resourceVersion { object["resourceVersion"] = .string(rv) }
            options["preconditions"] = .object(object)
        }
        if let propagationPolicy { options["propagationPolicy"] = .string(propagationPolicy) }
        return try await performJSON(
            context, method: .delete, url: url(resource.path(namespace: ns, name: name)), body: .object(options))
    }

    // MARK: - Status subresource

    public func getStatus(_ resource: GroupVersionResource, namespace: String? = nil, name: String) async throws(KubernetesError) -> JSONValue {
        try await get(resource, namespace: namespace, name: name, subresource: "status")
    }

    /// PUT to `/status`: only the status changes; the resourceVersion guards against lost updates.
    public func updateStatus(_ resource: GroupVersionResource, namespace: String? = nil, _ object: JSONValue) async throws(KubernetesError) -> JSONValue {
        try await update(resource, namespace: namespace, object, subresource: "status")
    }

    public func patchStatus(
        _ resource: GroupVersionResource, namespace: String? = nil, name: String, _ patch: Patch
    ) async throws(KubernetesError) -> JSONValue {
        try await self.patch(resource, namespace: namespace, name: name, patch, subresource: "status")
    }

    // MARK: - Watching

    /// One watch connection from `resourceVersion`: events as the server sends them,
    /// parsed line by line. Ends when the server closes the connection. Most callers
    /// want `listWatch`, which lists, resumes, relists and backs off.
    public func watch(
        _ resource: GroupVersionResource, namespace: NamespaceScope = .default, resourceVersion: String?,
        labelSelector: String? = nil, fieldSelector: String? = nil, allowBookmarks: Bool = true,
        timeoutSeconds: Int? = nil
    ) async throws(KubernetesError) -> WatchEvents {
        let ns = scope(resource, namespace)
        let context = RequestContext(verb: "watch", resource: resource.description, namespace: ns)
        var query: [(String, String)] = [("watch", "true")]
        if let resourceVersion, !resourceVersion.isEmpty { query.append(("resourceVersion", resourceVersion)) }
        if let labelSelector, !labelSelector.isEmpty { query.append(("labelSelector", labelSelector)) }
        if let fieldSelector, !fieldSelector.isEmpty { query.append(("fieldSelector", fieldSelector)) }
        if allowBookmarks { query.append(("allowWatchBookmarks", "true")) }
        if let timeoutSeconds { query.append(("timeoutSeconds", String(timeoutSeconds))) }
        let stream = try await openStream(context, url: url(resource.path(namespace: ns), query))
        return WatchEvents(lines: stream.lines, context: context)
    }

    /// List, then watch from the list's resourceVersion, for ever: dropped connections
    /// resume from the last seen version with backoff, and a 410 or `ERROR` event is
    /// answered by a fresh list delivered as `.resync`.
    public func listWatch(
        _ resource: GroupVersionResource, namespace: NamespaceScope = .default, labelSelector: String? = nil,
        fieldSelector: String? = nil, options: ListWatchOptions = ListWatchOptions()
    ) -> ListWatch {
        ListWatch(
            client: self, resource: resource, namespace: namespace, labelSelector: labelSelector,
            fieldSelector: fieldSelector, options: options)
    }
}

/// Which namespace a collection call covers.
public enum NamespaceScope: Sendable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The configuration's namespace.
    case `default`
    /// Every namespace.
    case all
    case named(String)

    public init(stringLiteral value: String) { self = .named(value) }

    /// As logs show it: the namespace's name, `(all)` or `(default)`.
    public var description: String {
        switch self {
        case .default: "(default)"
        case .all: "(all)"
        case .named(let name): name
        }
    }
}

/// One page of a list answer.
public struct ObjectList: Sendable {
    public var items: [JSONValue]
    /// The snapshot version to start a watch from.
    public var resourceVersion: String
    /// Present when more pages follow.
    public var continueToken: String?
    public var remainingItemCount: Int64?
    public var kind: String?
    public var apiVersion: String?

    public init(items: [JSONValue], resourceVersion: String, continueToken: String? = nil) {
        self.items = items
        self.resourceVersion = resourceVersion
        self.continueToken = continueToken
    }

    init(decoding body: [UInt8], context: RequestContext) throws(KubernetesError) {
        let value: JSONValue
        do {
            value = try JSONValue(parsing: body)
        } catch {
            throw context.error(.invalidResponse, "the list answer is not JSON: \(error)")
        }
        guard case .object(var object) = value else {
            throw context.error(.invalidResponse, "the list answer is \(value.typeNameWithArticle), expected an object")
        }
        let items = object.removeValue(forKey: "items") ?? .array([])
        switch items {
        case .array(let array): self.items = array
        case .null: self.items = []
        default: throw context.error(.invalidResponse, "the list answer's items is \(items.typeNameWithArticle), expected an array")
        }
        let metadata = object["metadata"]
        resourceVersion = metadata?["resourceVersion"]?.stringValue ?? ""
        continueToken = metadata?["continue"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        remainingItemCount = metadata?["remainingItemCount"]?.intValue
        kind = object["kind"]?.stringValue
        apiVersion = object["apiVersion"]?.stringValue
    }
}

/// Pages of a list, fetched lazily.
public struct ListPages: AsyncSequence, Sendable {
    public typealias Element = ObjectList
    let client: KubernetesClient
    let resource: GroupVersionResource
    let namespace: NamespaceScope
    let labelSelector: String?
    let fieldSelector: String?
    let pageSize: Int

    public struct AsyncIterator: AsyncIteratorProtocol {
        let pages: ListPages
        var token: String?
        var done = false

        public mutating func next() async throws -> ObjectList? {
            guard !done else { return nil }
            let page = try await pages.client.list(
                pages.resource, namespace: pages.namespace, labelSelector: pages.labelSelector,
                fieldSelector: pages.fieldSelector, limit: pages.pageSize, continue: token)
            token = page.continueToken
            done = token == nil
            return page
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(pages: self) }
}

/// A patch body and its content type.
public enum Patch: Sendable, Equatable {
    /// RFC 7386 JSON merge patch (`null` deletes a field; arrays are replaced whole).
    case merge(JSONValue)
    /// RFC 6902 JSON Patch, built from FledgeJSON's operations (the same type the sandbox applies).
    case json([JSONPatchOperation])
    /// Kubernetes strategic merge patch (built-in types only).
    case strategicMerge(JSONValue)

    public var contentType: String {
        switch self {
        case .merge: return "application/merge-patch+json"
        case .json: return "application/json-patch+json"
        case .strategicMerge: return "application/strategic-merge-patch+json"
        }
    }

    public var body: JSONValue {
        switch self {
        case .merge(let value), .strategicMerge(let value): return value
        case .json(let operations): return .array(operations.map(\.json))
        }
    }
}
