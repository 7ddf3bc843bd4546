import FledgeJSON
import Foundation

/// `kubectl create token`: the TokenRequest subresource of a ServiceAccount
/// (`POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`). The sandbox issues an opaque bearer token that
/// authenticates as the service account until it expires, the account is deleted, or the object it is bound to
/// is, so the controller can be run locally with exactly the rights its RBAC manifests grant.
enum TokenRequest {
    static let groupVersion = "authentication.k8s.io/v1"
    static let subresource = "token"
    /// The audience the sandbox's own API accepts, as a cluster's default `--api-audiences`.
    static let apiAudience = "https://kubernetes.default.svc.cluster.local"
    static let defaultExpiration: Int64 = 3600
    /// The real server's limits on `spec.expirationSeconds`.
    static let minimumExpiration: Int64 = 600
    static let maximumExpiration: Int64 = 1 << 32

    /// The discovery entry in `/api/v1` next to `serviceaccounts`.
    static let discoveryEntry: JSONValue = [
        "name": "serviceaccounts/token", "singularName": "", "namespaced": true,
        "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"],
    ]

    /// What the client asked for.
    struct Spec: Equatable {
        var audiences: [String] = []
        var expirationSeconds: Int64?
        var boundObject: BoundObject?
    }

    struct BoundObject: Equatable {
        var kind: String
        var apiVersion: String
        var name: String
        var uid: String
    }

    /// The request's spec, from JSON/YAML or from kubectl's protobuf.
    static func spec(body: [UInt8], contentType: String?) throws -> Spec {
        let mediaType = String((contentType ?? "").split(separator: ";").first ?? "").trimmingSpaces.lowercased()
        if mediaType == Protobuf.mediaType { return try protobufSpec(body) }
        let request = try APIHandler.decodeBody(body, contentType: contentType)
        guard case .object = request else {
            throw SandboxError.badRequest("the body of the request must be a JSON object, got \(request.typeNameWithArticle)")
        }
        if let kind = request["kind"]?.stringValue, kind != "TokenRequest" {
            throw SandboxError.badRequest("the kind in the body (\(kind)) does not match the kind of the resource (TokenRequest)")
        }
        var spec = Spec()
        let json = request["spec"] ?? .null
        if let audiences = json["audiences"], !audiences.isNull {
            guard let list = audiences.arrayValue else { throw invalidField("spec.audiences", "must be a list of strings") }
            spec.audiences = try list.map { item in
                guard let text = item.stringValue else { throw invalidField("spec.audiences", "must be a list of strings") }
                return text
            }
        }
        if let seconds = json["expirationSeconds"], !seconds.isNull {
            guard let value = seconds.intValue else { throw invalidField("spec.expirationSeconds", "must be an integer") }
            spec.expirationSeconds = value
        }
        if let reference = json["boundObjectRef"], !reference.isNull {
            func text(_ key: String) -> String { reference[key]?.stringValue ?? "" }
            spec.boundObject = BoundObject(kind: text("kind"), apiVersion: text("apiVersion"), name: text("name"), uid: text("uid"))
        }
        return spec
    }

    /// kubectl's typed client sends the TokenRequest in protobuf (fields from authentication/v1's generated.proto:
    /// spec = 2; audiences = 1, boundObjectRef = 3, expirationSeconds = 4; the reference's kind, apiVersion, name,
    /// uid = 1…4).
    static func protobufSpec(_ body: [UInt8]) throws(SandboxError) -> Spec {
        let (_, kind, raw) = try Protobuf.unwrap(body)
        guard kind == "TokenRequest" else {
            throw SandboxError.badRequest("the kind in the body (\(kind)) does not match the kind of the resource (TokenRequest)")
        }
        var spec = Spec()
        for (number, value) in try Protobuf.fields(raw) where number == 2 {
            for (field, part) in try Protobuf.fields(Protobuf.message(value) ?? []) {
                switch (field, part) {
                case (1, _): if let audience = Protobuf.string(part) { spec.audiences.append(audience) }
                case (4, .varint(let seconds)): spec.expirationSeconds = Int64(bitPattern: seconds)
                case (3, _):
                    var reference = BoundObject(kind: "", apiVersion: "", name: "", uid: "")
                    for (key, item) in try Protobuf.fields(Protobuf.message(part) ?? []) {
                        let text = Protobuf.string(item) ?? ""
                        switch key {
                        case 1: reference.kind = text
                        case 2: reference.apiVersion = text
                        case 3: reference.name = text
                        case 4: reference.uid = text
                        default: continue
                        }
                    }
                    spec.boundObject = reference
                default: continue
                }
            }
        }
        return spec
    }

    static func invalidField(_ field: String, _ message: String, name: String = "") -> SandboxError {
        .invalid(kind: "TokenRequest.authentication.k8s.io", name: name, causes: [(field, message)], group: "authentication.k8s.io", detailsKind: "TokenRequest")
    }

    /// The answer: the request with the granted spec and the token in `status`.
    static func response(
        namespace: String, name: String, spec: Spec, expirationSeconds: Int64, token: String, issued: Date, expires: Date
    ) -> JSONValue {
        func timestamp(_ date: Date) -> JSONValue { .string(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: false))) }
        var granted: JSONObject = [:]
        granted["audiences"] = .array(spec.audiences.map { .string($0) })
        granted["expirationSeconds"] = .int(expirationSeconds)
        if let bound = spec.boundObject {
            var reference: JSONObject = [:]
            reference["kind"] = .string(bound.kind)
            if !bound.apiVersion.isEmpty { reference["apiVersion"] = .string(bound.apiVersion) }
            reference["name"] = .string(bound.name)
            if !bound.uid.isEmpty { reference["uid"] = .string(bound.uid) }
            granted["boundObjectRef"] = .object(reference)
        } else {
            granted["boundObjectRef"] = .null
        }
        var answer: JSONObject = [:]
        answer["kind"] = "TokenRequest"
        answer["apiVersion"] = .string(groupVersion)
        answer["metadata"] = ["name": .string(name), "namespace": .string(namespace), "creationTimestamp": timestamp(issued)]
        answer["spec"] = .object(granted)
        answer["status"] = ["token": .string(token), "expirationTimestamp": timestamp(expires)]
        return .object(answer)
    }

    /// A random opaque token (256 bits, base64url).
    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}

/// A token the sandbox issued through a TokenRequest, and what keeps it valid.
struct IssuedToken: Sendable {
    var user: SandboxUser
    var audiences: [String]
    var expires: Date
    /// The service account's uid: a token outlives neither the account nor a re-created one of the same name.
    var serviceAccount: (namespace: String, name: String, uid: String)
    /// The object the token is bound to (kind, namespace, name, uid), if any.
    var boundObject: (type: ResourceType, namespace: String?, name: String, uid: String)?
}

extension SandboxStore {
    /// Issues a token for the service account `namespace/name`, with the real server's checks: the account
    /// exists; the duration is within 10 minutes and 2³² seconds; a bound object is a Pod, Secret or Node that
    /// exists, with the given uid, and a Pod runs as this account.
    func issueToken(namespace: String, name: String, spec: TokenRequest.Spec) throws(SandboxError) -> JSONValue {
        let accounts = GroupResource.serviceAccounts
        guard let accountType = type(for: accounts) else { throw SandboxError.notFound(accounts, name) }
        let account = try get(accountType, namespace: namespace, name: name)
        let seconds = spec.expirationSeconds ?? TokenRequest.defaultExpiration
        if seconds < TokenRequest.minimumExpiration {
            throw TokenRequest.invalidField("spec.expirationSeconds", "Invalid value: \(seconds): may not specify a duration less than 10 minutes", name: name)
        }
        if seconds > TokenRequest.maximumExpiration {
            throw TokenRequest.invalidField("spec.expirationSeconds", "Invalid value: \(seconds): may not specify a duration larger than 2^32 seconds", name: name)
        }
        var bound: (type: ResourceType, namespace: String?, name: String, uid: String)? = nil
        if let reference = spec.boundObject {
            let group = reference.apiVersion.split(separator: "/").count == 2 ? String(reference.apiVersion.split(separator: "/")[0]) : ""
            let resources = ["Pod": "pods", "Secret": "secrets"]
            // The sandbox serves no Nodes, so a token bound to one finds none, as for a missing node.
            if group.isEmpty, reference.kind == "Node" { throw SandboxError.notFound(GroupResource(group: "", resource: "nodes"), reference.name) }
            guard group.isEmpty, let resource = resources[reference.kind],
                let boundType = type(for: GroupResource(group: "", resource: resource))
            else {
                let version = reference.apiVersion.isEmpty ? "v1" : reference.apiVersion
                throw SandboxError.badRequest("cannot bind token to object of type \(group.isEmpty ? "/" : "")\(version), Kind=\(reference.kind)")
            }
            let objectNamespace = boundType.namespaced ? namespace : nil
            let object = try get(boundType, namespace: objectNamespace, name: reference.name)
            let uid = object[path: ["metadata", "uid"]]?.stringValue ?? ""
            if !reference.uid.isEmpty, reference.uid != uid {
                throw SandboxError.status(
                    code: 409, reason: "Conflict",
                    message: "Operation cannot be fulfilled on \(reference.kind) \"\(reference.name)\": the UID in the bound object reference (\(reference.uid)) does not match the UID in record. The object might have been deleted and then recreated",
                    details: ["name": .string(reference.name), "kind": .string(reference.kind)])
            }
            if reference.kind == "Pod" {
                let podAccount = object[path: ["spec", "serviceAccountName"]]?.stringValue ?? "default"
                if podAccount != name {
                    throw SandboxError.badRequest("cannot bind token for serviceaccount \"\(name)\" to pod running with different serviceaccount name.")
                }
            }
            bound = (boundType, objectNamespace, reference.name, uid)
        }
        let issued = clock.now
        let expires = issued.addingTimeInterval(TimeInterval(seconds))
        let token = TokenRequest.randomToken()
        var granted = spec
        if granted.audiences.isEmpty { granted.audiences = [TokenRequest.apiAudience] }
        issuedTokens[token] = IssuedToken(
            user: .serviceAccount(namespace: namespace, name: name), audiences: granted.audiences, expires: expires,
            serviceAccount: (namespace, name, account[path: ["metadata", "uid"]]?.stringValue ?? ""), boundObject: bound)
        return TokenRequest.response(
            namespace: namespace, name: name, spec: granted, expirationSeconds: seconds, token: token, issued: issued, expires: expires)
    }

    /// The service account an issued token stands for, while it is valid for this API server; expired tokens
    /// are forgotten.
    func issuedTokenUser(_ token: String) -> SandboxUser? {
        guard let issued = issuedTokens[token] else { return nil }
        func exists(_ type: ResourceType?, _ namespace: String?, _ name: String, uid: String) -> Bool {
            guard let type, let object = try? get(type, namespace: namespace, name: name) else { return false }
            return object[path: ["metadata", "uid"]]?.stringValue ?? "" == uid
        }
        if clock.now >= issued.expires {
            issuedTokens[token] = nil
            return nil
        }
        let account = issued.serviceAccount
        guard issued.audiences.contains(TokenRequest.apiAudience),
            exists(type(for: .serviceAccounts), account.namespace, account.name, uid: account.uid)
        else { return nil }
        if let bound = issued.boundObject, !exists(bound.type, bound.namespace, bound.name, uid: bound.uid) { return nil }
        return issued.user
    }
}
