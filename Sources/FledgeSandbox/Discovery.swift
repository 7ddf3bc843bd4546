import FledgeJSON

/// The discovery documents kubectl and client libraries read to find resources (legacy,
/// non-aggregated discovery: kubectl falls back to it when `/api` answers plain JSON).
enum Discovery {
    static let version: JSONValue = [
        "major": "1", "minor": "32", "gitVersion": "v1.32.0-fledge-sandbox", "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
        "platform": "linux/amd64",
    ]

    static let coreVersions: JSONValue = [
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [["clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"]],
    ]

    static func resourceList(store: SandboxStore, groupVersion: String) async -> JSONValue {
        let types = await store.types[groupVersion] ?? [:]
        var resources: [JSONValue] = []
        for (_, type) in types {
            var entry: JSONValue = [
                "name": .string(type.resource), "singularName": .string(type.singular), "namespaced": .bool(type.namespaced),
                "kind": .string(type.kind),
                "verbs": .array(ResourceType.allVerbs.filter { type.storageResource != .namespaces || $0 != "deletecollection" }.map { .string($0) }),
            ]
            if !type.shortNames.isEmpty { entry["shortNames"] = .array(type.shortNames.map { .string($0) }) }
            if !type.categories.isEmpty { entry["categories"] = .array(type.categories.map { .string($0) }) }
            resources.append(entry)
            if type.hasStatus {
                resources.append([
                    "name": .string(type.resource + "/status"), "singularName": "", "namespaced": .bool(type.namespaced),
                    "kind": .string(type.kind), "verbs": ["get", "patch", "update"],
                ])
            }
            if type.groupResource == .serviceAccounts { resources.append(TokenRequest.discoveryEntry) }
            if type.hasScale {
                // kubectl scale reads the Scale kind's group and version from this entry.
                resources.append([
                    "name": .string(type.resource + "/scale"), "singularName": "", "namespaced": .bool(type.namespaced),
                    "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"],
                ])
            }
        }
        resources.append(contentsOf: AccessReview.discoveryEntries[groupVersion] ?? [])
        return ["kind": "APIResourceList", "apiVersion": "v1", "groupVersion": .string(groupVersion), "resources": .array(resources)]
    }

    /// The groups with their versions, in registration order (the first version is preferred).
    static func groups(store: SandboxStore) async -> [(name: String, versions: [String])] {
        var result: [(String, [String])] = []
        // authorization.k8s.io/v1 and authentication.k8s.io/v1 serve reviews (kubectl auth can-i, kubectl auth
        // whoami), never stored objects.
        let reviews = [AccessReview.groupVersion, AccessReview.whoAmIGroupVersion]
        for groupVersion in await store.groupVersions + reviews where groupVersion.contains("/") {
            let parts = groupVersion.split(separator: "/", maxSplits: 1).map(String.init)
            if let index = result.firstIndex(where: { $0.0 == parts[0] }) {
                if !result[index].1.contains(parts[1]) { result[index].1.append(parts[1]) }
            } else {
                result.append((parts[0], [parts[1]]))
            }
        }
        return result
    }

    static func groupObject(name: String, versions: [String]) -> JSONValue {
        let entries: [JSONValue] = versions.map { ["groupVersion": .string("\(name)/\($0)"), "version": .string($0)] }
        return [
            "kind": "APIGroup", "apiVersion": "v1", "name": .string(name), "versions": .array(entries),
            "preferredVersion": entries[0],
        ]
    }

    static func groupList(store: SandboxStore) async -> JSONValue {
        var groups: [JSONValue] = []
        for (name, versions) in await self.groups(store: store) {
            var group = groupObject(name: name, versions: versions)
            group["kind"] = nil
            group["apiVersion"] = nil
            groups.append(group)
        }
        return ["kind": "APIGroupList", "apiVersion": "v1", "groups": .array(groups)]
    }

    static func group(store: SandboxStore, name: String) async -> JSONValue? {
        guard let entry = await groups(store: store).first(where: { $0.name == name }) else { return nil }
        return groupObject(name: entry.name, versions: entry.versions)
    }
}

/// The OpenAPI v3 documents kubectl reads before `create` and `apply`: it checks that each
/// resource's PATCH operation accepts `fieldValidation`, then relies on server-side validation.
enum OpenAPI {
    static func document(store: SandboxStore, segments: [String]) async throws -> JSONValue {
        let groupVersions = await store.groupVersions
        if segments.isEmpty {
            var paths: JSONObject = [:]
            for groupVersion in groupVersions {
                let prefix = groupVersion.contains("/") ? "apis/\(groupVersion)" : "api/\(groupVersion)"
                let types = await store.types[groupVersion] ?? [:]
                var hash: UInt64 = 0xcbf2_9ce4_8422_2325
                for (name, type) in types {
                    for byte in "\(name):\(type.kind):\(type.hasStatus):\(type.schema?.serializedString() ?? "")".utf8 {
                        hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
                    }
                }
                paths[prefix] = ["serverRelativeURL": .string("/openapi/v3/\(prefix)?hash=\(String(hash, radix: 16, uppercase: true))")]
            }
            return ["paths": .object(paths)]
        }
        let groupVersion: String
        if segments.count == 2 && segments[0] == "api" {
            groupVersion = segments[1]
        } else if segments.count == 3 && segments[0] == "apis" {
            groupVersion = segments[1] + "/" + segments[2]
        } else {
            throw SandboxError.pathNotFound(segments.joined(separator: "/"))
        }
        guard let types = await store.types[groupVersion] else { throw SandboxError.pathNotFound(groupVersion) }
        var paths: JSONObject = [:]
        var schemas: JSONObject = [:]
        for (_, type) in types {
            let gvk: JSONValue = ["group": .string(type.group), "version": .string(type.version), "kind": .string(type.kind)]
            let base = type.group.isEmpty ? "/api/\(type.version)" : "/apis/\(type.group)/\(type.version)"
            let collection = type.namespaced ? "\(base)/namespaces/{namespace}/\(type.resource)" : "\(base)/\(type.resource)"
            let schemaName = "\(type.group.isEmpty ? "core" : type.group).\(type.version).\(type.kind)"
            let ref: JSONValue = ["$ref": .string("#/components/schemas/\(schemaName)")]
            let response: JSONValue = ["200": ["description": "OK", "content": ["application/json": ["schema": ref]]]]
            func operation(_ action: String, parameters: [JSONValue] = []) -> JSONValue {
                [
                    "operationId": .string("\(action)\(type.kind)"), "x-kubernetes-action": .string(action),
                    "x-kubernetes-group-version-kind": gvk, "parameters": .array(parameters), "responses": response,
                ]
            }
            let queryParameter: (String) -> JSONValue = { ["name": .string($0), "in": "query", "schema": ["type": "string"], "uniqueItems": true] }
            var patchTypes: JSONObject = [
                "application/json-patch+json": ["schema": ["type": "object"]],
                "application/merge-patch+json": ["schema": ["type": "object"]],
                "application/apply-patch+yaml": ["schema": ["type": "object"]],
            ]
            if !type.isCustom { patchTypes["application/strategic-merge-patch+json"] = ["schema": ["type": "object"]] }
            var patch = operation(
                "patch", parameters: ["dryRun", "fieldManager", "fieldValidation", "force"].map(queryParameter))
            patch["requestBody"] = ["content": .object(patchTypes)]
            var create = operation("post", parameters: ["dryRun", "fieldManager", "fieldValidation"].map(queryParameter))
            create["requestBody"] = ["content": ["application/json": ["schema": ref]]]
            var put = operation("put", parameters: ["dryRun", "fieldManager", "fieldValidation"].map(queryParameter))
            put["requestBody"] = ["content": ["application/json": ["schema": ref]]]
            paths[collection] = ["get": operation("list"), "post": create]
            paths["\(collection)/{name}"] = ["get": operation("get"), "put": put, "patch": patch, "delete": operation("delete")]
            if type.hasStatus {
                paths["\(collection)/{name}/status"] = ["get": operation("get"), "put": put, "patch": patch]
            }
            if type.isCustom {
                var schema = type.schema ?? ["type": "object", "x-kubernetes-preserve-unknown-fields": true]
                schema["x-kubernetes-group-version-kind"] = [gvk]
                schemas[schemaName] = schema
            }
        }
        return [
            "openapi": "3.0.0", "info": ["title": "Kubernetes (Fledge sandbox)", "version": "v1.32.0"],
            "paths": .object(paths), "components": ["schemas": .object(schemas)],
        ]
    }
}
