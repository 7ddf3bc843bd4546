import FledgeJSON
import Foundation
import Hummingbird
import ServiceLifecycle

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
        let user = try await identify(request)

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
                guard await store.types[groupVersion] != nil || AccessReview.discoveryEntries[groupVersion] != nil else {
                    throw SandboxError.pathNotFound(path)
                }
                return APIHandler.json(await Discovery.resourceList(store: store, groupVersion: groupVersion))
            }
            if groupVersion == AccessReview.groupVersion {
                guard segments.count == 4, [AccessReview.resource, AccessReview.rulesResource].contains(segments[3]) else {
                    throw SandboxError.pathNotFound(path)
                }
                guard request.method == .post else {
                    throw SandboxError.methodNotAllowed("the server does not allow this method on the requested resource")
                }
                let body = try await readBody(request)
                let review = segments[3] == AccessReview.rulesResource
                    ? try await AccessReview.rulesReview(body: body, contentType: request.headers[.contentType], user: user, store: store)
                    : try await AccessReview.review(body: body, contentType: request.headers[.contentType], user: user, store: store)
                return APIHandler.json(review, status: .created)
            }
            if groupVersion == AccessReview.whoAmIGroupVersion {
                guard segments.count == 4, segments[3] == AccessReview.whoAmIResource else { throw SandboxError.pathNotFound(path) }
                guard request.method == .post else {
                    throw SandboxError.methodNotAllowed("the server does not allow this method on the requested resource")
                }
                let review = try AccessReview.whoAmI(
                    body: try await readBody(request), contentType: request.headers[.contentType], user: user)
                return APIHandler.json(review, status: .created)
            }
            return try await resourceRequest(request, groupVersion: groupVersion, rest: Array(segments.dropFirst(3)), user: user)
        default:
            throw SandboxError.pathNotFound(path)
        }
    }

    func authenticate(_ request: Request) async throws -> SandboxUser {
        let tokens = await store.tokens
        if tokens.isEmpty { return .admin("system:anonymous-admin") }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw SandboxError.unauthorized
        }
        let token = header.dropFirst("Bearer ".count).trimmingSpaces
        if let user = tokens[token] { return user }
        guard let user = await store.issuedTokenUser(token) else { throw SandboxError.unauthorized }
        return user
    }

    /// Who the request acts as: the authenticated user, or whom its Impersonate-* headers name if it may.
    func identify(_ request: Request) async throws -> SandboxUser {
        try await AccessReview.impersonate(request, as: try await authenticate(request), store: store)
    }

    struct Target {
        var type: ResourceType
        var namespace: String?
        var name: String?
        var subresource: String?
    }

    func resolve(groupVersion: String, rest: [String]) async throws -> Target {
        func lookup(_ resource: String) async throws -> ResourceType {
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
        var query: [String: String] = [:]
        var dryRunValues: [String] = []
        for (key, value) in request.uri.queryParameters {
            if query[String(key)] == nil { query[String(key)] = String(value) }
            if key == "dryRun" { dryRunValues.append(String(value)) }
        }
        let type = target.type
        if let subresource = target.subresource {
            let served = (subresource == "status" && type.hasStatus) || (subresource == "scale" && type.hasScale)
                || (subresource == TokenRequest.subresource && type.groupResource == .serviceAccounts)
            if type.groupResource == .pods, ["log", "exec", "attach", "portforward"].contains(subresource), let name = target.name {
                // Pods here are simulated from their Deployments: nothing runs, so there is nothing to read or enter.
                throw SandboxError.badRequest(
                    "pod \"\(name)\" is simulated by the sandbox and runs no containers: there is no \(subresource == "log" ? "log to read" : "container to \(subresource == "portforward" ? "forward to" : "enter")")")
            }
            guard served else { throw SandboxError.pathNotFound(request.uri.path) }
        }
        if target.subresource == TokenRequest.subresource {
            return try await tokenRequest(request, target: target, user: user)
        }
        let isWatch = query["watch"].map { $0 == "true" || $0 == "1" } ?? false
        let verb: String
        switch (request.method, target.name) {
        case (.get, nil): verb = isWatch ? "watch" : "list"
        case (.get, _): verb = "get"
        case (.post, nil): verb = "create"
        case (.put, _?): verb = "update"
        case (.patch, _?): verb = "patch"
        case (.delete, nil):
            // Namespaces are deleted one by one (each through its own lifecycle): the real server serves no
            // deletecollection for them.
            if type.storageResource == .namespaces {
                throw SandboxError.methodNotAllowed("the server does not allow this method on the requested resource")
            }
            verb = "deletecollection"
        case (.delete, _?): verb = "delete"
        default:
            throw SandboxError.methodNotAllowed("the server does not allow this method on the requested resource")
        }
        let access = AccessRequest(
            verb: verb, group: type.group, resource: type.resource, subresource: target.subresource,
            namespace: target.namespace, name: target.name)
        guard await store.authorize(user, access) else { throw SandboxStore.forbidden(user, access) }
        await store.countRequest(verb: verb, resource: target.subresource.map { "\(type.resource)/\($0)" } ?? type.resource)

        // Faults apply to resource requests only, never to discovery.
        let faults = await store.faults
        if faults.latency > .zero, faults.resources?.contains(type.resource) ?? true { try await store.clock.sleep(for: faults.latency) }
        let isWrite = ["create", "update", "patch", "delete", "deletecollection"].contains(verb)
        switch await store.decideFault(isWrite: isWrite, resource: type.resource) {
        case .serverError: throw SandboxError.internalError("injected fault: internal error")
        case .conflict:
            throw SandboxError.conflict(type.groupResource, target.name ?? "")
        case .none: break
        }

        let wantsTable = request.headers[.accept]?.contains("as=Table") ?? false
        // A delete carries its options (dry run, preconditions) in a DeleteOptions body; client-go sends them there.
        var deleteOptions: JSONValue? = nil
        if verb == "delete" || verb == "deletecollection" {
            deleteOptions = try await readDeleteOptions(request)
            for value in deleteOptions?["dryRun"]?.arrayValue ?? [] { dryRunValues.append(value.stringValue ?? value.serializedString()) }
        }
        let call = Call(
            request: request, type: type, target: target, namespace: type.namespaced ? target.namespace : nil,
            query: query, table: wantsTable, dryRun: try APIHandler.dryRun(dryRunValues, verb: verb), deleteOptions: deleteOptions)
        if target.subresource == "scale" {
            switch verb {
            case "get": return APIHandler.json(try await store.getScale(type, namespace: call.namespace, name: target.name!))
            case "update": return try await updateScale(call)
            case "patch": return try await patchScale(call)
            default: throw SandboxError.methodNotAllowed("the server does not allow this method on the requested resource")
            }
        }
        switch verb {
        case "get": return try await getOne(call)
        case "list": return try await listAll(call)
        case "watch": return try await startWatch(call)
        case "create": return try await createOne(call)
        case "update": return try await updateOne(call)
        case "patch": return try await patchOne(call)
        case "delete": return try await deleteOne(call)
        case "deletecollection": return try await deleteAll(call)
        default: throw SandboxError.methodNotAllowed("unsupported verb \(verb)")
        }
    }

    /// `POST …/serviceaccounts/{name}/token` (`kubectl create token`), which RBAC allows as `create` on
    /// `serviceaccounts/token`.
    func tokenRequest(_ request: Request, target: Target, user: SandboxUser) async throws -> Response {
        guard request.method == .post, let name = target.name, let namespace = target.namespace else {
            throw SandboxError.methodNotAllowed("the server does not allow this method on the requested resource")
        }
        let access = AccessRequest(
            verb: "create", group: "", resource: "serviceaccounts", subresource: TokenRequest.subresource,
            namespace: namespace, name: name)
        guard await store.authorize(user, access) else { throw SandboxStore.forbidden(user, access) }
        await store.countRequest(verb: "create", resource: "serviceaccounts/token")
        let spec = try TokenRequest.spec(body: try await readBody(request), contentType: request.headers[.contentType])
        return APIHandler.json(try await store.issueToken(namespace: namespace, name: name, spec: spec), status: .created)
    }

    struct Call: Sendable {
        var request: Request
        var type: ResourceType
        var target: Target
        var namespace: String?
        var query: [String: String]
        var table: Bool
        var dryRun: Bool
        /// The DeleteOptions body of a delete, if one was sent.
        var deleteOptions: JSONValue?

        func selectors() throws -> (LabelSelector, FieldSelector?) {
            let label = try LabelSelector(parsing: query["labelSelector"] ?? "")
            var field: FieldSelector? = nil
            if let text = query["fieldSelector"] { field = try FieldSelector(parsing: text, for: type) }
            return (label, field)
        }
    }

    func getOne(_ call: Call) async throws -> Response {
        let object = try await store.get(call.type, namespace: call.namespace, name: call.target.name!)
        if call.table {
            let table = Table.table(type: call.type, objects: [object], resourceVersion: nil, now: store.clock.now)
            return APIHandler.json(table, contentType: Table.contentType)
        }
        return APIHandler.json(output(object, call.type))
    }

    func listAll(_ call: Call) async throws -> Response {
        var limit: Int? = nil
        if let text = call.query["limit"] {
            guard let value = Int(text), value >= 0 else {
                throw SandboxError.badRequest("limit must be a non-negative integer, got \"\(text)\"")
            }
            limit = value
        }
        var notOlderThan: Int64? = nil
        if let text = call.query["resourceVersion"], !text.isEmpty {
            guard let value = Int64(text), value >= 0 else {
                throw SandboxError.badRequest("invalid resourceVersion \"\(text)\": must be an integer")
            }
            notOlderThan = value
        }
        let (labelSelector, fieldSelector) = try call.selectors()
        let result = try await store.list(
            call.type, namespace: call.namespace, labelSelector: labelSelector, fieldSelector: fieldSelector,
            limit: limit, continueToken: call.query["continue"], notOlderThan: notOlderThan)
        if call.table {
            var table = Table.table(type: call.type, objects: result.items, resourceVersion: result.resourceVersion, now: store.clock.now)
            if let token = result.continueToken { table[path: ["metadata", "continue"]] = .string(token) }
            return APIHandler.json(table, contentType: Table.contentType)
        }
        var metadata: JSONObject = [:]
        metadata["resourceVersion"] = .string(String(result.resourceVersion))
        if let token = result.continueToken { metadata["continue"] = .string(token) }
        if let remaining = result.remaining { metadata["remainingItemCount"] = .int(Int64(remaining)) }
        var list: JSONObject = [:]
        list["kind"] = .string(call.type.listKind)
        list["apiVersion"] = .string(call.type.apiVersion)
        list["metadata"] = .object(metadata)
        list["items"] = .array(result.items.map { output($0, call.type) })
        return APIHandler.json(.object(list))
    }

    func startWatch(_ call: Call) async throws -> Response {
        let (labelSelector, fieldSelector) = try call.selectors()
        return try await watch(
            type: call.type, namespace: call.namespace, labelSelector: labelSelector, fieldSelector: fieldSelector,
            query: call.query, table: call.table)
    }

    func createOne(_ call: Call) async throws -> Response {
        let body = try await readCreatedObject(call.request)
        try checkStrict(call.type, body, query: call.query)
        let created = try await store.create(call.type, namespace: call.namespace, object: body, dryRun: call.dryRun)
        return APIHandler.json(output(created, call.type), status: .created)
    }

    func updateOne(_ call: Call) async throws -> Response {
        let body = try await readJSON(call.request)
        try checkStrict(call.type, body, query: call.query)
        let updated = try await store.update(
            call.type, namespace: call.namespace, name: call.target.name!, object: body,
            status: call.target.subresource == "status", dryRun: call.dryRun, requireResourceVersion: call.type.isCustom)
        return APIHandler.json(output(updated, call.type))
    }

    func patchOne(_ call: Call) async throws -> Response {
        let header: String = call.request.headers[.contentType] ?? ""
        let mediaType = String(header.split(separator: ";").first ?? "").trimmingSpaces
        guard let patchType = PatchType(rawValue: mediaType) else {
            throw SandboxError.unsupportedPatch(mediaType, custom: call.type.isCustom)
        }
        let body = try await readBody(call.request)
        let result = try await store.patch(
            call.type, namespace: call.namespace, name: call.target.name!, patchType: patchType, body: body,
            status: call.target.subresource == "status", dryRun: call.dryRun, fieldManager: call.query["fieldManager"],
            force: call.query["force"] == "true")
        return APIHandler.json(output(result.object, call.type), status: result.created ? .created : .ok)
    }

    func updateScale(_ call: Call) async throws -> Response {
        let body = try await readJSON(call.request)
        let scale = try await store.writeScale(
            call.type, namespace: call.namespace, name: call.target.name!, dryRun: call.dryRun, change: { _ in body })
        return APIHandler.json(scale)
    }

    /// A patch of the Scale object (kubectl scale sends a merge patch of `spec.replicas`).
    func patchScale(_ call: Call) async throws -> Response {
        let header: String = call.request.headers[.contentType] ?? ""
        let mediaType = String(header.split(separator: ";").first ?? "").trimmingSpaces
        guard let patchType = PatchType(rawValue: mediaType) else {
            throw SandboxError.unsupportedPatch(mediaType, custom: call.type.isCustom)
        }
        let body = try await readBody(call.request)
        let patch: JSONValue
        if patchType == .apply {
            patch = try SandboxStore.decodeApplyBody(body)
        } else {
            do {
                patch = try JSONValue(parsing: body)
            } catch {
                throw SandboxError.badRequest("error decoding patch: \(error)")
            }
        }
        let name = call.target.name!
        let scale = try await store.writeScale(call.type, namespace: call.namespace, name: name, dryRun: call.dryRun) {
            (current: JSONValue) throws(SandboxError) -> JSONValue in
            switch patchType {
            case .merge, .strategic, .apply:
                // A Scale has no lists, so a strategic merge or an apply merges like a merge patch.
                guard case .object = patch else {
                    throw SandboxError.badRequest("a merge patch must be a JSON object, got \(patch.typeNameWithArticle)")
                }
                return current.applyingMergePatch(patch)
            case .json:
                do throws(JSONPatchError) {
                    return try JSONPatch(json: patch).apply(to: current)
                } catch {
                    throw SandboxError.unprocessable("the JSON patch could not be applied to the scale of \"\(name)\": \(error.message)")
                }
            }
        }
        return APIHandler.json(scale)
    }

    func deleteOne(_ call: Call) async throws -> Response {
        let precondition = call.deleteOptions?[path: ["preconditions", "resourceVersion"]]?.stringValue
        let deleted = try await store.delete(
            call.type, namespace: call.namespace, name: call.target.name!, preconditionRV: precondition, dryRun: call.dryRun,
            propagation: try propagation(call))
        return APIHandler.json(output(deleted, call.type))
    }

    func deleteAll(_ call: Call) async throws -> Response {
        let (labelSelector, fieldSelector) = try call.selectors()
        let deleted = try await store.deleteCollection(
            call.type, namespace: call.namespace, labelSelector: labelSelector, fieldSelector: fieldSelector,
            dryRun: call.dryRun, propagation: try propagation(call))
        var list: JSONObject = [:]
        list["kind"] = .string(call.type.listKind)
        list["apiVersion"] = .string(call.type.apiVersion)
        list["metadata"] = .object(["resourceVersion": .string(String(await store.resourceVersion))])
        list["items"] = .array(deleted.map { output($0, call.type) })
        return APIHandler.json(.object(list))
    }

    /// A delete's `propagationPolicy`, from its DeleteOptions body or the query (kubectl `--cascade=orphan` sends
    /// `Orphan` in the body); Background when neither gives one.
    func propagation(_ call: Call) throws(SandboxError) -> SandboxStore.Propagation {
        guard let text = call.deleteOptions?["propagationPolicy"]?.stringValue ?? call.query["propagationPolicy"] else {
            return .background
        }
        guard let policy = SandboxStore.Propagation(rawValue: text) else {
            let message = "propagationPolicy: Unsupported value: \"\(text)\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            throw SandboxError.status(
                code: 422, reason: "Invalid", message: "DeleteOptions.meta.k8s.io \"\" is invalid: \(message)",
                details: ["group": "meta.k8s.io", "kind": "DeleteOptions", "causes": [
                    ["reason": "FieldValueNotSupported", "message": .string(String(message.dropFirst("propagationPolicy: ".count))), "field": "propagationPolicy"],
                ]])
        }
        return policy
    }

    /// A stored object as the requested version presents it (Istio's v1 and v1beta1 share storage; events.k8s.io
    /// Events are core Events converted).
    func output(_ object: JSONValue, _ type: ResourceType) -> JSONValue {
        type.present(object)
    }

    func checkStrict(_ type: ResourceType, _ body: JSONValue, query: [String: String]) throws(SandboxError) {
        guard query["fieldValidation"] == "Strict", let schema = type.schema else { return }
        let unknown = SchemaValidator.unknownFields(body, schema: schema)
        if !unknown.isEmpty {
            let list = unknown.map { "unknown field \"\($0)\"" }.joined(separator: ", ")
            throw SandboxError.badRequest("\(type.kind) in version \"\(type.version)\" cannot be handled as a \(type.kind): strict decoding error: \(list)")
        }
    }

    /// Whether a write is a dry run: `dryRun=All` in the query (or, for a delete, `"dryRun": ["All"]` in its
    /// DeleteOptions). Any other value is refused with 422, as the real server's options validation does.
    static func dryRun(_ values: [String], verb: String) throws(SandboxError) -> Bool {
        let options: String
        switch verb {
        case "create": options = "CreateOptions"
        case "update": options = "UpdateOptions"
        case "patch": options = "PatchOptions"
        case "delete", "deletecollection": options = "DeleteOptions"
        default: return false
        }
        guard !values.isEmpty else { return false }
        guard values.allSatisfy({ $0 == "All" }) else {
            let given = values.map { "\"\($0)\"" }.joined(separator: ", ")
            throw SandboxError.status(
                code: 422, reason: "Invalid",
                message: "\(options).meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{\(given)}: supported values: \"All\"",
                details: ["group": "meta.k8s.io", "kind": .string(options), "causes": [
                    ["reason": "FieldValueNotSupported", "message": .string("Unsupported value: []string{\(given)}: supported values: \"All\""), "field": "dryRun"],
                ]])
        }
        return true
    }

    /// The DeleteOptions a delete request carries in its body (nil when it has none).
    func readDeleteOptions(_ request: Request) async throws -> JSONValue? {
        let bytes = try await readBody(request)
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return nil }
        let options = try APIHandler.decodeBody(bytes, contentType: request.headers[.contentType])
        guard case .object = options else {
            throw SandboxError.badRequest("the DeleteOptions in the request body must be an object, got \(options.typeName)")
        }
        return options
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

    /// The object a create sends: JSON or YAML, or protobuf for the built-in kinds kubectl builds itself
    /// (`kubectl create namespace|configmap|…`).
    func readCreatedObject(_ request: Request) async throws -> JSONValue {
        let contentType = request.headers[.contentType]
        let mediaType = String((contentType ?? "").split(separator: ";").first ?? "").trimmingSpaces.lowercased()
        let body = try await readBody(request)
        guard mediaType == Protobuf.mediaType else { return try APIHandler.decodeBody(body, contentType: contentType) }
        guard let object = try ProtobufObjects.object(body) else {
            throw SandboxError.unsupportedMediaType(mediaType, accepted: ["application/json", "application/yaml"])
        }
        return object
    }

    func readJSON(_ request: Request) async throws -> JSONValue {
        try APIHandler.decodeBody(try await readBody(request), contentType: request.headers[.contentType])
    }

    /// A request body read as JSON, or YAML when its Content-Type says so.
    static func decodeBody(_ bytes: [UInt8], contentType: String?) throws -> JSONValue {
        let mediaType = String((contentType ?? "").split(separator: ";").first ?? "").trimmingSpaces.lowercased()
        switch mediaType {
        case "", "application/json", "application/yaml": break
        default: throw SandboxError.unsupportedMediaType(mediaType, accepted: ["application/json", "application/yaml"])
        }
        if mediaType == "application/yaml" {
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

    /// Writes watch events as JSON lines until the stream ends; returns the write error, if any.
    static func pump(
        _ events: AsyncStream<WatchEvent>, into writer: inout any ResponseBodyWriter, type: ResourceType, table: Bool,
        clock: any SandboxClock
    ) async -> (any Error)? {
        for await event in events {
            let buffer = render(event, type: type, table: table, now: clock.now)
            do {
                try await writer.write(buffer)
            } catch {
                return error
            }
        }
        return nil
    }

    static func render(_ event: WatchEvent, type: ResourceType, table: Bool, now: Date) -> ByteBuffer {
        var object = event.object
        if event.type == "BOOKMARK" {
            // The watched version's kind, whichever version's store the watcher is registered with.
            object["kind"] = .string(type.kind)
            object["apiVersion"] = .string(type.apiVersion)
        } else if table {
            object = Table.table(type: type, objects: [object], resourceVersion: nil, now: now)
        } else {
            object = type.present(object)
        }
        var line: JSONObject = [:]
        line["type"] = .string(event.type)
        line["object"] = object
        var buffer = ByteBuffer()
        buffer.writeBytes(JSONValue.object(line).serialized())
        buffer.writeString("\n")
        return buffer
    }

    func watch(
        type: ResourceType, namespace: String?, labelSelector: LabelSelector, fieldSelector: FieldSelector?,
        query: [String: String], table: Bool
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
        let outcome = await store.openWatch(
            type, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector,
            resourceVersion: from, bookmarks: bookmarks, timeout: timeout)
        let started: SandboxStore.OpenedWatch
        switch outcome {
        case .success(let value):
            started = value
        case .failure(let error):
            guard error.code == 410 || error.code == 504 else { throw error }
            // As the real server (its watch cache): 200, then one ERROR event carrying the Status (410 Expired, or 504
            // with the cause ResourceVersionTooLarge); clients list again.
            var event: JSONObject = [:]
            event["type"] = "ERROR"
            event["object"] = error.statusObject
            var buffer = ByteBuffer()
            buffer.writeBytes(JSONValue.object(event).serialized())
            buffer.writeString("\n")
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: buffer))
        }
        let clock = store.clock
        let id = started.id
        let events = started.events
        let ending = started.continuation
        let groupResource = type.storageResource
        let body = ResponseBody { writer in
            // Graceful shutdown ends the stream (and so the response): an open watch must not keep the server up.
            let failure = await withGracefulShutdownHandler {
                await APIHandler.pump(events, into: &writer, type: type, table: table, clock: clock)
            } onGracefulShutdown: {
                ending.finish()
            }
            await store.removeWatcher(id, groupResource)
            if let failure { throw failure }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }
}
