import FledgeJSON
import Foundation
import Hummingbird

/// Answers every request to the sandbox: discovery, OpenAPI, and the resource REST API.
struct APIHandler: HTTPResponder {
    typealias Context = BasicRequestContext

    let store: SandboxStore
    let maximumBodySize = 16 * 1024 * 1024

    func respond(to request: Request, context: Context) async throws -> Response {
        do {
            return try await handle(request)
        } catch let error as SandboxError {
            return APIHandler.statusResponse(error)
        } catch {
            return APIHandler.statusResponse(.internalError("\(error)"))
        }
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok, contentType: String = "application/json") -> Response {
        var buffer = ByteBuffer()
        buffer.writeBytes(value.serialized())
        var headers = HTTPFields()
        headers[.contentType] = contentType
        headers[.contentLength] = String(buffer.readableBytes)
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: buffer))
    }

    static func statusResponse(_ error: SandboxError) -> Response {
        json(error.statusObject, status: HTTPResponse.Status(code: error.code))
    }

    // MARK: Routing

    func handle(_ request: Request) async throws -> Response {
        let path = request.uri.path
        let segments = path.split(separator: "/").map(String.init)
        let user = try await authenticate(request)

        switch segments.first {
        case "version" where segments.count == 1:
            return APIHandler.json(Discovery.version)
        case "healthz", "readyz", "livez":
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; charset=utf-8"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: "ok")))
        case "openapi":
            if segments.count >= 2 && segments[1] == "v3" {
                return APIHandler.json(try await OpenAPI.document(store: store, segments: Array(segments.dropFirst(2))))
            }
            throw SandboxError.pathNotFound(path)
        case "api":
            if segments.count == 1 { return APIHandler.json(Discovery.coreVersions) }
            guard segments[1] == "v1" else { throw SandboxError.pathNotFound(path) }
            if segments.count == 2 { return APIHandler.json(await Discovery.resourceList(store: store, groupVersion: "v1")) }
            return try await resourceRequest(request, groupVersion: "v1", rest: Array(segments.dropFirst(2)), user: user)
        case "apis":
            if segments.count == 1 { return APIHandler.json(await Discovery.groupList(store: store)) }
            if segments.count == 2 {
                guard let group = await Discovery.group(store: store, name: segments[1]) else {
                    throw SandboxError.pathNotFound(path)
                }
                return APIHandler.json(group)
            }
            let groupVersion = segments[1] + "/" + segments[2]
            if segments.count == 3 {
                guard await store.types[groupVersion] != nil else { throw SandboxError.pathNotFound(path) }
                return APIHandler.json(await Discovery.resourceList(store: store, groupVersion: groupVersion))
            }
            return try await resourceRequest(request, groupVersion: groupVersion, rest: Array(segments.dropFirst(3)), user: user)
        default:
            throw SandboxError.pathNotFound(path)
        }
    }

    func authenticate(_ request: Request) async throws(SandboxError) -> SandboxUser {
        let tokens = await store.tokens
        if tokens.isEmpty { return .admin("system:anonymous-admin") }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw SandboxError.unauthorized
        }
        let token = header.dropFirst("Bearer ".count).trimmingSpaces
        guard let user = tokens[token] else { throw SandboxError.unauthorized }
        return user
    }

    struct Target {
        var type: ResourceType
        var namespace: String?
        var name: String?
        var subresource: String?
    }

    func resolve(groupVersion: String, rest: [String]) async throws(SandboxError) -> Target {
        func lookup(_ resource: String) async throws(SandboxError) -> ResourceType {
            guard let type = await store.type(groupVersion: groupVersion, resource: resource) else {
                throw SandboxError.pathNotFound(resource)
            }
            return type
        }
        // /namespaces/{ns}/{resource}[/{name}[/{subresource}]]
        if rest.count >= 3 && rest[0] == "namespaces" {
            let type = try await lookup(rest[2])
            guard type.namespaced else { throw SandboxError.pathNotFound(rest[2]) }
            guard rest.count <= 5 else { throw SandboxError.pathNotFound(rest.joined(separator: "/")) }
            return Target(type: type, namespace: rest[1], name: rest.count > 3 ? rest[3] : nil, subresource: rest.count > 4 ? rest[4] : nil)
        }
        // /{resource}[/{name}[/{subresource}]]: cluster-scoped, or a namespaced type across namespaces.
        let type = try await lookup(rest[0])
        guard rest.count <= 3 else { throw SandboxError.pathNotFound(rest.joined(separator: "/")) }
        if type.namespaced && rest.count > 1 { throw SandboxError.pathNotFound(rest.joined(separator: "/")) }
        return Target(type: type, namespace: nil, name: rest.count > 1 ? rest[1] : nil, subresource: rest.count > 2 ? rest[2] : nil)
    }

    // MARK: Resources

    func resourceRequest(_ request: Request, groupVersion: String, rest: [String], user: SandboxUser) async throws -> Response {
        guard !rest.isEmpty else { throw SandboxError.pathNotFound(request.uri.path) }
        let target = try await resolve(groupVersion: groupVersion, rest: rest)
        let query = request.uri.queryParameters
        let type = target.type
        if let subresource = target.subresource {
            guard subresource == "status" && type.hasStatus else {
                throw SandboxError.pathNotFound(request.uri.path)
            }
        }
        let isWatch = query["watch"].map { $0 == "true" || $0 == "1" } ?? false
        let verb: String
        switch (request.method, target.name) {
        case (.get, nil): verb = isWatch ? "watch" : "list"
        case (.get, _): verb = "get"
        case (.post, nil): verb = "create"
        case (.put, _?): verb = "update"
        case (.patch, _?): verb = "patch"
        case (.delete, nil): verb = "deletecollection"
        case (.delete, _?): verb = "delete"
        default:
            throw SandboxError.methodNotAllowed("the server does not allow this method on the requested resource")
        }
        let access = AccessRequest(
            verb: verb, group: type.group, resource: type.resource, subresource: target.subresource,
            namespace: target.namespace, name: target.name)
        guard await store.authorize(user, access) else { throw SandboxStore.forbidden(user, access) }

        // Faults apply to resource requests only, never to discovery.
        let faults = await store.faults
        if faults.latency > .zero { try await store.clock.sleep(for: faults.latency) }
        let isWrite = ["create", "update", "patch", "delete", "deletecollection"].contains(verb)
        switch await store.decideFault(isWrite: isWrite) {
        case .serverError: throw SandboxError.internalError("injected fault: internal error")
        case .conflict:
            throw SandboxError.conflict(type.groupResource, target.name ?? "")
        case .none: break
        }

        let wantsTable = request.headers[.accept]?.contains("as=Table") ?? false
        let dryRun = query["dryRun"] == "All"
        let labelSelector = try LabelSelector(parsing: query["labelSelector"].map(String.init) ?? "")
        let fieldSelector = try query["fieldSelector"].map { (text: Substring) throws(SandboxError) -> FieldSelector in
            try FieldSelector(parsing: String(text))
        }
        let namespace = type.namespaced ? target.namespace : nil

        switch verb {
        case "get":
            let object = try await store.get(type, namespace: namespace, name: target.name!)
            if wantsTable {
                return APIHandler.json(Table.table(type: type, objects: [object], resourceVersion: nil, now: store.clock.now), contentType: Table.contentType)
            }
            return APIHandler.json(output(object, type))
        case "list":
            var limit: Int? = nil
            if let text = query["limit"] {
                guard let value = Int(text), value >= 0 else {
                    throw SandboxError.badRequest("limit must be a non-negative integer, got \"\(text)\"")
                }
                limit = value
            }
            let result = try await store.list(
                type, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector, limit: limit,
                continueToken: query["continue"].map(String.init))
            if wantsTable {
                var table = Table.table(type: type, objects: result.items, resourceVersion: result.resourceVersion, now: store.clock.now)
                if let token = result.continueToken { table[path: ["metadata", "continue"]] = .string(token) }
                return APIHandler.json(table, contentType: Table.contentType)
            }
            var metadata: JSONValue = ["resourceVersion": .string(String(result.resourceVersion))]
            if let token = result.continueToken { metadata["continue"] = .string(token) }
            if let remaining = result.remaining { metadata["remainingItemCount"] = .int(Int64(remaining)) }
            let list: JSONValue = [
                "kind": .string(type.listKind), "apiVersion": .string(type.apiVersion), "metadata": metadata,
                "items": .array(result.items.map { output($0, type) }),
            ]
            return APIHandler.json(list)
        case "watch":
            return try await watch(type: type, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector, query: query, table: wantsTable)
        case "create":
            let body = try await readJSON(request)
            try checkStrict(type, body, query: query)
            let created = try await store.create(type, namespace: namespace, object: body, dryRun: dryRun)
            return APIHandler.json(output(created, type), status: .created)
        case "update":
            let body = try await readJSON(request)
            try checkStrict(type, body, query: query)
            let updated = try await store.update(
                type, namespace: namespace, name: target.name!, object: body, status: target.subresource == "status", dryRun: dryRun)
            return APIHandler.json(output(updated, type))
        case "patch":
            let contentType = request.headers[.contentType].map { $0.split(separator: ";").first.map(String.init) ?? $0 } ?? ""
            guard let patchType = PatchType(rawValue: contentType.trimmingSpaces) else {
                throw SandboxError.status(
                    code: 415, reason: "UnsupportedMediaType",
                    message: "the body of the request was in an unknown format - accepted media types include: "
                        + "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                        + (type.isCustom ? "" : ", application/strategic-merge-patch+json"),
                    details: nil)
            }
            let body = try await readBody(request)
            let result = try await store.patch(
                type, namespace: namespace, name: target.name!, patchType: patchType, body: body,
                status: target.subresource == "status", dryRun: dryRun)
            return APIHandler.json(output(result.object, type), status: result.created ? .created : .ok)
        case "delete":
            var precondition: String? = nil
            let body = try await readBody(request)
            if !body.isEmpty, let options = try? JSONValue(parsing: body) {
                precondition = options[path: ["preconditions", "resourceVersion"]]?.stringValue
            }
            let deleted = try await store.delete(type, namespace: namespace, name: target.name!, preconditionRV: precondition, dryRun: dryRun)
            return APIHandler.json(output(deleted, type))
        case "deletecollection":
            let deleted = try await store.deleteCollection(type, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector)
            let list: JSONValue = [
                "kind": .string(type.listKind), "apiVersion": .string(type.apiVersion),
                "metadata": ["resourceVersion": .string(String(await store.resourceVersion))],
                "items": .array(deleted.map { output($0, type) }),
            ]
            return APIHandler.json(list)
        default:
            throw SandboxError.methodNotAllowed("unsupported verb \(verb)")
        }
    }

    /// The object as the requested version presents it (Istio's v1 and v1beta1 share storage).
    func output(_ object: JSONValue, _ type: ResourceType) -> JSONValue {
        guard object["apiVersion"]?.stringValue != type.apiVersion else { return object }
        var copy = object
        copy["apiVersion"] = .string(type.apiVersion)
        return copy
    }

    func checkStrict(_ type: ResourceType, _ body: JSONValue, query: FlatDictionary<Substring, Substring>) throws(SandboxError) {
        guard query["fieldValidation"] == "Strict", let schema = type.schema else { return }
        let unknown = SchemaValidator.unknownFields(body, schema: schema)
        if !unknown.isEmpty {
            let list = unknown.map { "unknown field \"\($0)\"" }.joined(separator: ", ")
            throw SandboxError.badRequest("\(type.kind) in version \"\(type.version)\" cannot be handled as a \(type.kind): strict decoding error: \(list)")
        }
    }

    func readBody(_ request: Request) async throws -> [UInt8] {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: maximumBodySize)
        } catch {
            throw SandboxError.status(
                code: 413, reason: "RequestEntityTooLarge", message: "the request body is too large (limit \(maximumBodySize) bytes)", details: nil)
        }
        return Array(buffer.readableBytesView)
    }

    func readJSON(_ request: Request) async throws -> JSONValue {
        let bytes = try await readBody(request)
        let contentType = request.headers[.contentType] ?? "application/json"
        if contentType.contains("yaml") {
            let documents = try ManifestLoader.parseYAML(String(decoding: bytes, as: UTF8.self), source: "request body")
            guard documents.count == 1 else { throw SandboxError.badRequest("the request body must contain exactly one object") }
            return documents[0]
        }
        do {
            return try JSONValue(parsing: bytes)
        } catch {
            throw SandboxError.badRequest("the request body is not valid JSON: \(error)")
        }
    }

    // MARK: Watch

    func watch(
        type: ResourceType, namespace: String?, labelSelector: LabelSelector, fieldSelector: FieldSelector?,
        query: FlatDictionary<Substring, Substring>, table: Bool
    ) async throws -> Response {
        var from: Int64? = nil
        if let text = query["resourceVersion"], !text.isEmpty {
            guard let value = Int64(text), value >= 0 else {
                throw SandboxError.badRequest("invalid resourceVersion \"\(text)\": must be an integer")
            }
            from = value
        }
        var timeout: Duration? = nil
        if let text = query["timeoutSeconds"] {
            guard let seconds = Int64(text), seconds >= 0 else {
                throw SandboxError.badRequest("timeoutSeconds must be a non-negative integer, got \"\(text)\"")
            }
            if seconds > 0 { timeout = .seconds(seconds) }
        }
        let bookmarks = query["allowWatchBookmarks"] == "true"
        let store = self.store
        var headers = HTTPFields()
        headers[.contentType] = table ? Table.contentType : "application/json"
        headers[.cacheControl] = "no-cache, private"
        let started: (id: Int, events: AsyncStream<WatchEvent>)
        do {
            started = try await store.watch(
                type, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector,
                resourceVersion: from, bookmarks: bookmarks, timeout: timeout)
        } catch let error as SandboxError where error.code == 410 {
            // As the real server: 200, then one ERROR event carrying the 410 Status.
            let event: JSONValue = ["type": "ERROR", "object": error.statusObject]
            var buffer = ByteBuffer()
            buffer.writeBytes(event.serialized())
            buffer.writeString("\n")
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: buffer))
        }
        let clock = store.clock
        let body = ResponseBody { writer in
            do {
                for await event in started.events {
                    var object = event.object
                    if event.type != "BOOKMARK" {
                        object = table
                            ? Table.table(type: type, objects: [object], resourceVersion: nil, now: clock.now)
                            : output(object, type)
                    }
                    let line: JSONValue = ["type": .string(event.type), "object": object]
                    var buffer = ByteBuffer()
                    buffer.writeBytes(line.serialized())
                    buffer.writeString("\n")
                    try await writer.write(buffer)
                }
            } catch {
                await store.removeWatcher(started.id, type.groupResource)
                throw error
            }
            await store.removeWatcher(started.id, type.groupResource)
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }
}
