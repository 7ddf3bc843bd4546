import FledgeJSON
import Foundation
import Hummingbird

/// `kubectl auth can-i` and `--as`: SelfSubjectAccessReview (answered from the same RBAC decision every request
/// gets) and the impersonation headers, honoured only for who may impersonate, as on a real server.
enum AccessReview {
    static let group = "authorization.k8s.io"
    static let groupVersion = "authorization.k8s.io/v1"
    static let resource = "selfsubjectaccessreviews"

    /// `kubectl auth whoami`: SelfSubjectReview in authentication.k8s.io/v1.
    static let whoAmIGroupVersion = "authentication.k8s.io/v1"
    static let whoAmIResource = "selfsubjectreviews"

    /// `kubectl auth can-i --list`: SelfSubjectRulesReview in authorization.k8s.io/v1.
    static let rulesResource = "selfsubjectrulesreviews"

    /// The group versions served here rather than from stored types, with their resources' discovery entries.
    static let discoveryEntries: [String: [JSONValue]] = [
        groupVersion: [
            [
                "name": .string(resource), "singularName": "selfsubjectaccessreview", "namespaced": false,
                "kind": "SelfSubjectAccessReview", "verbs": ["create"],
            ],
            [
                "name": .string(rulesResource), "singularName": "selfsubjectrulesreview", "namespaced": false,
                "kind": "SelfSubjectRulesReview", "verbs": ["create"],
            ],
        ],
        whoAmIGroupVersion: [
            [
                "name": .string(whoAmIResource), "singularName": "selfsubjectreview", "namespaced": false,
                "kind": "SelfSubjectReview", "verbs": ["create"],
            ],
        ],
    ]

    /// What every authenticated user may do here without any binding: ask about itself (the real cluster's
    /// `system:basic-user`) and read the non-resource paths the sandbox serves to all (discovery, OpenAPI, version,
    /// health).
    static let basicResourceRules: [JSONValue] = [
        ["verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]],
        ["verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"]],
    ]
    static let basicNonResourceRules: [JSONValue] = [["verbs": ["get"], "nonResourceURLs": ["*"]]]

    /// Answers `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews` for `user` (after impersonation): every
    /// rule of the roles bound to it cluster-wide and in `spec.namespace`, as the real RBAC rule resolver lists them.
    /// The body may be JSON, YAML, or protobuf, which kubectl's typed client sends.
    static func rulesReview(body: [UInt8], contentType: String?, user: SandboxUser, store: SandboxStore) async throws -> JSONValue {
        let mediaType = String((contentType ?? "").split(separator: ";").first ?? "").trimmingSpaces.lowercased()
        let namespace: String
        if mediaType == Protobuf.mediaType {
            let (_, kind, raw) = try Protobuf.unwrap(body)
            guard kind == "SelfSubjectRulesReview" else {
                throw SandboxError.badRequest("the kind in the body (\(kind)) does not match the kind of the resource (SelfSubjectRulesReview)")
            }
            var found = ""
            for (number, value) in try Protobuf.fields(raw) where number == 2 {
                for (field, part) in try Protobuf.fields(Protobuf.message(value) ?? []) where field == 1 {
                    found = Protobuf.string(part) ?? ""
                }
            }
            namespace = found
        } else {
            let review = try APIHandler.decodeBody(body, contentType: contentType)
            guard case .object = review else {
                throw SandboxError.badRequest("the body of the request must be a JSON object, got \(review.typeNameWithArticle)")
            }
            if let kind = review["kind"]?.stringValue, kind != "SelfSubjectRulesReview" {
                throw SandboxError.badRequest("the kind in the body (\(kind)) does not match the kind of the resource (SelfSubjectRulesReview)")
            }
            namespace = review[path: ["spec", "namespace"]]?.stringValue ?? ""
        }
        let rules = await store.rules(for: user, namespace: namespace.isEmpty ? nil : namespace)
        var status: JSONObject = [:]
        status["resourceRules"] = .array(basicResourceRules + rules.resource)
        status["nonResourceRules"] = .array(basicNonResourceRules + rules.nonResource)
        status["incomplete"] = false
        var answer: JSONObject = [:]
        answer["kind"] = "SelfSubjectRulesReview"
        answer["apiVersion"] = .string(groupVersion)
        answer["metadata"] = ["creationTimestamp": .null]
        answer["spec"] = namespace.isEmpty ? .object([:]) : ["namespace": .string(namespace)]
        answer["status"] = .object(status)
        return .object(answer)
    }

    /// Answers `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: who the request acts as (after
    /// impersonation). The body carries nothing the answer needs; it is read only to refuse another kind.
    static func whoAmI(body: [UInt8], contentType: String?, user: SandboxUser) throws -> JSONValue {
        let mediaType = String((contentType ?? "").split(separator: ";").first ?? "").trimmingSpaces.lowercased()
        let kind: String?
        if mediaType == Protobuf.mediaType {
            kind = try Protobuf.unwrap(body).kind
        } else if body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            kind = nil
        } else {
            kind = try APIHandler.decodeBody(body, contentType: contentType)["kind"]?.stringValue
        }
        if let kind, !kind.isEmpty, kind != "SelfSubjectReview" {
            throw SandboxError.badRequest("the kind in the body (\(kind)) does not match the kind of the resource (SelfSubjectReview)")
        }
        var answer: JSONObject = [:]
        answer["kind"] = "SelfSubjectReview"
        answer["apiVersion"] = .string(whoAmIGroupVersion)
        answer["metadata"] = ["creationTimestamp": .null]
        answer["status"] = ["userInfo": ["username": .string(user.name), "groups": .array(user.groups.map { .string($0) })]]
        return .object(answer)
    }

    /// Answers `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews` for `user` (after impersonation).
    /// The body may be JSON, YAML, or protobuf, which kubectl's typed client sends.
    static func review(body: [UInt8], contentType: String?, user: SandboxUser, store: SandboxStore) async throws -> JSONValue {
        let mediaType = String((contentType ?? "").split(separator: ";").first ?? "").trimmingSpaces.lowercased()
        var review: JSONValue
        if mediaType == Protobuf.mediaType {
            review = try Protobuf.selfSubjectAccessReview(body)
        } else {
            review = try APIHandler.decodeBody(body, contentType: contentType)
        }
        guard case .object = review else {
            throw SandboxError.badRequest("the body of the request must be a JSON object, got \(review.typeNameWithArticle)")
        }
        if let kind = review["kind"]?.stringValue, kind != "SelfSubjectAccessReview" {
            throw SandboxError.badRequest(
                "the kind in the body (\(kind)) does not match the kind of the resource (SelfSubjectAccessReview)")
        }
        let resource = review[path: ["spec", "resourceAttributes"]]
        let nonResource = review[path: ["spec", "nonResourceAttributes"]]
        let status: JSONValue
        switch (resource, nonResource) {
        case (let attributes?, nil) where !attributes.isNull:
            func text(_ key: String) -> String { attributes[key]?.stringValue ?? "" }
            let namespace = text("namespace")
            let name = text("name")
            let subresource = text("subresource")
            let access = AccessRequest(
                verb: text("verb"), group: text("group"), resource: text("resource"),
                subresource: subresource.isEmpty ? nil : subresource, namespace: namespace.isEmpty ? nil : namespace,
                name: name.isEmpty ? nil : name)
            let decision = await store.decide(user, access)
            status = decision.reason.isEmpty ? ["allowed": .bool(decision.allowed)] : ["allowed": .bool(decision.allowed), "reason": .string(decision.reason)]
        case (nil, let attributes?) where !attributes.isNull:
            // The sandbox serves discovery, OpenAPI, version and health paths to every authenticated user.
            let path = attributes["path"]?.stringValue ?? ""
            status = ["allowed": true, "reason": .string("the Fledge sandbox serves non-resource paths (\(path)) to every authenticated user")]
        default:
            let message = "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified"
            throw SandboxError.status(
                code: 422, reason: "Invalid", message: message,
                details: ["group": .string(group), "kind": "SelfSubjectAccessReview", "causes": [
                    ["reason": "FieldValueInvalid", "message": "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified", "field": "spec.resourceAttributes"],
                ]])
        }
        var answer: JSONObject = [:]
        answer["kind"] = "SelfSubjectAccessReview"
        answer["apiVersion"] = .string(groupVersion)
        answer["metadata"] = ["creationTimestamp": .null]
        answer["spec"] = review["spec"] ?? .object([:])
        answer["status"] = status
        return .object(answer)
    }

    // MARK: Impersonation

    static let userHeader = HTTPFields.Element.Name("Impersonate-User")!
    static let groupHeader = HTTPFields.Element.Name("Impersonate-Group")!
    static let uidHeader = HTTPFields.Element.Name("Impersonate-Uid")!
    static let extraPrefix = "impersonate-extra-"

    /// The identity a request acts as: `user`, or whom its Impersonate-* headers name, once RBAC allows `user` to
    /// impersonate them (verb `impersonate` on users, serviceaccounts, groups, uids, userextras/<key>), as the real
    /// server's impersonation filter does. A service account impersonated without groups gets its own groups;
    /// `system:authenticated` is added unless given (or `system:unauthenticated` is).
    static func impersonate(_ request: Request, as user: SandboxUser, store: SandboxStore) async throws -> SandboxUser {
        let names = request.headers[values: userHeader]
        let groups = request.headers[values: groupHeader]
        let uids = request.headers[values: uidHeader]
        var extras: [(key: String, value: String)] = []
        for field in request.headers where field.name.canonicalName.hasPrefix(extraPrefix) {
            let key = String(field.name.canonicalName.dropFirst(extraPrefix.count))
            extras.append((key.removingPercentEncoding ?? key, field.value))
        }
        guard let name = names.first else {
            if groups.isEmpty && uids.isEmpty && extras.isEmpty { return user }
            var requested: [String] = groups.map { "group \"\($0)\"" } + uids.map { "uid \"\($0)\"" }
            requested += extras.map { "extra \"\($0.key)\"=\"\($0.value)\"" }
            throw SandboxError.internalError("Internal error occurred: requested [\(requested.joined(separator: ", "))] without impersonating a user")
        }
        guard names.count == 1, uids.count <= 1 else {
            throw SandboxError.internalError("Internal error occurred: only one Impersonate-User and one Impersonate-Uid header may be sent")
        }
        func check(_ resource: String, namespace: String? = nil, name: String) async throws {
            let parts = resource.split(separator: "/", maxSplits: 1).map(String.init)
            let access = AccessRequest(
                verb: "impersonate", group: resource == "uids" || parts[0] == "userextras" ? "authentication.k8s.io" : "",
                resource: parts[0], subresource: parts.count > 1 ? parts[1] : nil, namespace: namespace, name: name)
            guard await store.authorize(user, access) else { throw SandboxStore.forbidden(user, access) }
        }
        var impersonated: SandboxUser
        let serviceAccountPrefix = "system:serviceaccount:"
        let saParts = name.hasPrefix(serviceAccountPrefix) ? name.dropFirst(serviceAccountPrefix.count).split(separator: ":") : []
        if saParts.count == 2 {
            let (namespace, account) = (String(saParts[0]), String(saParts[1]))
            try await check("serviceaccounts", namespace: namespace, name: account)
            impersonated = groups.isEmpty ? SandboxUser.serviceAccount(namespace: namespace, name: account) : SandboxUser(name: name)
        } else {
            try await check("users", name: name)
            impersonated = SandboxUser(name: name)
        }
        for group in groups {
            try await check("groups", name: group)
            if !impersonated.groups.contains(group) { impersonated.groups.append(group) }
        }
        for uid in uids { try await check("uids", name: uid) }
        for extra in extras { try await check("userextras/\(extra.key)", name: extra.value) }
        if name != "system:anonymous",
            !impersonated.groups.contains("system:authenticated"), !impersonated.groups.contains("system:unauthenticated")
        {
            impersonated.groups.append("system:authenticated")
        }
        return impersonated
    }
}

/// The part of Kubernetes' protobuf encoding the sandbox reads: the `k8s\0` envelope (runtime.Unknown) and the
/// SelfSubjectAccessReview kubectl's typed client sends for `kubectl auth can-i`. Other protobuf bodies are answered
/// 415 (see `SandboxError.unsupportedMediaType`).
enum Protobuf {
    static let mediaType = "application/vnd.kubernetes.protobuf"
    static let magic: [UInt8] = [0x6B, 0x38, 0x73, 0x00]

    enum Value {
        case varint(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed
    }

    static func malformed(_ what: String) -> SandboxError {
        .badRequest("the protobuf body of the request is malformed: \(what)")
    }

    /// The fields of one message, in order: (field number, value).
    static func fields(_ bytes: ArraySlice<UInt8>) throws(SandboxError) -> [(Int, Value)] {
        var index = bytes.startIndex
        func varint() throws(SandboxError) -> UInt64 {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard index < bytes.endIndex else { throw malformed("a varint runs past the end") }
                let byte = bytes[index]
                index += 1
                guard shift < 64 else { throw malformed("a varint is longer than 10 bytes") }
                result |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return result }
                shift += 7
            }
        }
        var result: [(Int, Value)] = []
        while index < bytes.endIndex {
            let key = try varint()
            let number = Int(key >> 3)
            switch key & 7 {
            case 0: result.append((number, .varint(try varint())))
            case 1, 5:
                let size = key & 7 == 1 ? 8 : 4
                guard bytes.endIndex - index >= size else { throw malformed("a fixed-size field runs past the end") }
                index += size
                result.append((number, .fixed))
            case 2:
                let length = try varint()
                guard length <= UInt64(bytes.endIndex - index) else { throw malformed("field \(number) is longer than the body") }
                let end = index + Int(length)
                result.append((number, .bytes(bytes[index..<end])))
                index = end
            default:
                throw malformed("field \(number) has the unsupported wire type \(key & 7)")
            }
        }
        return result
    }

    static func string(_ value: Value) -> String? {
        guard case .bytes(let bytes) = value else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func message(_ value: Value) -> ArraySlice<UInt8>? {
        guard case .bytes(let bytes) = value else { return nil }
        return bytes
    }

    /// Unwraps the envelope: (apiVersion, kind, the object's own message).
    static func unwrap(_ body: [UInt8]) throws(SandboxError) -> (apiVersion: String, kind: String, raw: ArraySlice<UInt8>) {
        guard body.starts(with: magic) else { throw malformed("it does not start with the k8s protobuf prefix") }
        var apiVersion = ""
        var kind = ""
        var raw: ArraySlice<UInt8> = []
        for (number, value) in try fields(body[magic.count...]) {
            switch number {
            case 1:
                for (field, part) in try fields(message(value) ?? []) {
                    if field == 1 { apiVersion = string(part) ?? "" }
                    if field == 2 { kind = string(part) ?? "" }
                }
            case 2: raw = message(value) ?? []
            case 3:
                if let encoding = string(value), !encoding.isEmpty { throw malformed("content encoding \"\(encoding)\" is not supported") }
            default: continue
            }
        }
        return (apiVersion, kind, raw)
    }

    /// A SelfSubjectAccessReview in protobuf, as the JSON object it stands for (spec only; status is the server's).
    static func selfSubjectAccessReview(_ body: [UInt8]) throws(SandboxError) -> JSONValue {
        let (apiVersion, kind, raw) = try unwrap(body)
        guard kind == "SelfSubjectAccessReview" else {
            throw SandboxError.badRequest("the kind in the body (\(kind)) does not match the kind of the resource (SelfSubjectAccessReview)")
        }
        var spec: JSONObject = [:]
        for (number, value) in try fields(raw) where number == 2 {
            for (field, part) in try fields(message(value) ?? []) {
                switch field {
                case 1:
                    let names = [1: "namespace", 2: "verb", 3: "group", 4: "version", 5: "resource", 6: "subresource", 7: "name"]
                    var attributes: JSONObject = [:]
                    for (attribute, item) in try fields(message(part) ?? []) {
                        if let key = names[attribute], let text = string(item), !text.isEmpty { attributes[key] = .string(text) }
                    }
                    spec["resourceAttributes"] = .object(attributes)
                case 2:
                    var attributes: JSONObject = [:]
                    for (attribute, item) in try fields(message(part) ?? []) {
                        if attribute == 1, let text = string(item) { attributes["path"] = .string(text) }
                        if attribute == 2, let text = string(item) { attributes["verb"] = .string(text) }
                    }
                    spec["nonResourceAttributes"] = .object(attributes)
                default: continue
                }
            }
        }
        var review: JSONObject = [:]
        review["kind"] = .string(kind)
        review["apiVersion"] = .string(apiVersion)
        review["spec"] = .object(spec)
        return .object(review)
    }
}
