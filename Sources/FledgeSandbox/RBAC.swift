import FledgeJSON

/// Who a bearer token authenticates as.
public struct SandboxUser: Sendable, Equatable {
    public var name: String
    public var groups: [String]

    public init(name: String, groups: [String] = []) {
        self.name = name
        self.groups = groups
    }

    /// A cluster admin: RBAC lets `system:masters` do anything, as on a real cluster.
    public static func admin(_ name: String = "admin") -> SandboxUser {
        SandboxUser(name: name, groups: ["system:masters", "system:authenticated"])
    }

    /// The user a pod's service account token stands for.
    public static func serviceAccount(namespace: String, name: String) -> SandboxUser {
        SandboxUser(
            name: "system:serviceaccount:\(namespace):\(name)",
            groups: ["system:serviceaccounts", "system:serviceaccounts:\(namespace)", "system:authenticated"])
    }
}

/// What a request asks to do, in RBAC's terms.
struct AccessRequest {
    var verb: String
    var group: String
    var resource: String
    var subresource: String?
    var namespace: String?
    var name: String?
}

extension SandboxStore {
    /// Whether RBAC (the Roles, ClusterRoles and bindings stored here) allows the request.
    func authorize(_ user: SandboxUser, _ request: AccessRequest) -> Bool {
        decide(user, request).allowed
    }

    /// RBAC's decision, with the real authorizer's reason when it allows (`RBAC: allowed by ClusterRoleBinding "…" of
    /// ClusterRole "…" to ServiceAccount "name/namespace"`); empty otherwise, and for system:masters (allowed by the
    /// privileged-group authorizer, which gives none) and when RBAC is off.
    func decide(_ user: SandboxUser, _ request: AccessRequest) -> (allowed: Bool, reason: String) {
        if !rbacEnabled || user.groups.contains("system:masters") { return (true, "") }
        for binding in objects(.clusterRoleBindings) {
            guard let subject = boundSubject(binding, user) else { continue }
            if let role = roleFor(binding, namespace: nil), rulesAllow(role, request) {
                return (true, "RBAC: allowed by ClusterRoleBinding \(quoted(binding[path: ["metadata", "name"]]?.stringValue ?? "")) of \(describeRole(binding)) to \(describe(subject, bindingNamespace: ""))")
            }
        }
        if let namespace = request.namespace {
            for binding in objects(.roleBindings, namespace: namespace) {
                guard let subject = boundSubject(binding, user) else { continue }
                if let role = roleFor(binding, namespace: namespace), rulesAllow(role, request) {
                    let name = binding[path: ["metadata", "name"]]?.stringValue ?? ""
                    return (true, "RBAC: allowed by RoleBinding \(quoted(name + "/" + namespace)) of \(describeRole(binding)) to \(describe(subject, bindingNamespace: namespace))")
                }
            }
        }
        return (false, "")
    }

    /// Every rule of the roles bound to `user` cluster-wide and, given a namespace, there, split as a
    /// SelfSubjectRulesReview lists them (each rule's resource part and non-resource part). With RBAC off, or for
    /// `system:masters`, everything.
    func rules(for user: SandboxUser, namespace: String?) -> (resource: [JSONValue], nonResource: [JSONValue]) {
        if !rbacEnabled || user.groups.contains("system:masters") {
            return ([["verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]]], [["verbs": ["*"], "nonResourceURLs": ["*"]]])
        }
        var roles: [JSONValue] = []
        for binding in objects(.clusterRoleBindings) where boundSubject(binding, user) != nil {
            if let role = roleFor(binding, namespace: nil) { roles.append(role) }
        }
        if let namespace {
            for binding in objects(.roleBindings, namespace: namespace) where boundSubject(binding, user) != nil {
                if let role = roleFor(binding, namespace: namespace) { roles.append(role) }
            }
        }
        var resource: [JSONValue] = []
        var nonResource: [JSONValue] = []
        for rule in roles.flatMap({ $0["rules"]?.arrayValue ?? [] }) {
            let verbs = rule["verbs"] ?? []
            if let resources = rule["resources"], !(resources.arrayValue ?? []).isEmpty {
                var entry: JSONObject = ["verbs": verbs]
                entry["apiGroups"] = rule["apiGroups"] ?? []
                entry["resources"] = resources
                if let names = rule["resourceNames"], !(names.arrayValue ?? []).isEmpty { entry["resourceNames"] = names }
                resource.append(.object(entry))
            }
            if let urls = rule["nonResourceURLs"], !(urls.arrayValue ?? []).isEmpty {
                nonResource.append(["verbs": verbs, "nonResourceURLs": urls])
            }
        }
        return (resource, nonResource)
    }

    private func quoted(_ text: String) -> String { JSONValue.string(text).serializedString() }

    private func describeRole(_ binding: JSONValue) -> String {
        "\(binding[path: ["roleRef", "kind"]]?.stringValue ?? "") \(quoted(binding[path: ["roleRef", "name"]]?.stringValue ?? ""))"
    }

    /// A subject as the real authorizer's reasons name it: `ServiceAccount "name/namespace"`, `User "name"`.
    private func describe(_ subject: JSONValue, bindingNamespace: String) -> String {
        let kind = subject["kind"]?.stringValue ?? ""
        let name = subject["name"]?.stringValue ?? ""
        guard kind == "ServiceAccount" else { return "\(kind) \(quoted(name))" }
        let namespace = subject["namespace"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? bindingNamespace
        return "\(kind) \(quoted(name + "/" + namespace))"
    }

    /// The first subject of a binding that names the user (as a User, one of its Groups, or its ServiceAccount).
    private func boundSubject(_ binding: JSONValue, _ user: SandboxUser) -> JSONValue? {
        for subject in binding["subjects"]?.arrayValue ?? [] {
            let name = subject["name"]?.stringValue ?? ""
            switch subject["kind"]?.stringValue ?? "" {
            case "User": if name == user.name { return subject }
            case "Group": if user.groups.contains(name) { return subject }
            case "ServiceAccount":
                let namespace = subject["namespace"]?.stringValue ?? binding[path: ["metadata", "namespace"]]?.stringValue ?? ""
                if user.name == "system:serviceaccount:\(namespace):\(name)" { return subject }
            default: continue
            }
        }
        return nil
    }

    private func roleFor(_ binding: JSONValue, namespace: String?) -> JSONValue? {
        let name = binding[path: ["roleRef", "name"]]?.stringValue ?? ""
        switch binding[path: ["roleRef", "kind"]]?.stringValue {
        case "ClusterRole": return object(.clusterRoles, namespace: nil, name: name)
        case "Role":
            guard let namespace else { return nil }
            return object(.roles, namespace: namespace, name: name)
        default: return nil
        }
    }

    private func rulesAllow(_ role: JSONValue, _ request: AccessRequest) -> Bool {
        let resource = request.subresource.map { "\(request.resource)/\($0)" } ?? request.resource
        for rule in role["rules"]?.arrayValue ?? [] {
            let verbs = rule["verbs"]?.arrayValue?.compactMap(\.stringValue) ?? []
            guard verbs.contains("*") || verbs.contains(request.verb) else { continue }
            let groups = rule["apiGroups"]?.arrayValue?.compactMap(\.stringValue) ?? []
            guard groups.contains("*") || groups.contains(request.group) else { continue }
            let resources = rule["resources"]?.arrayValue?.compactMap(\.stringValue) ?? []
            let resourceMatches = resources.contains { pattern in
                pattern == "*" || pattern == resource
                    || (request.subresource != nil && pattern == "*/\(request.subresource!)")
                    || (request.subresource == nil && pattern == "\(request.resource)")
            }
            guard resourceMatches else { continue }
            let names = rule["resourceNames"]?.arrayValue?.compactMap(\.stringValue) ?? []
            if !names.isEmpty {
                guard let name = request.name, names.contains(name) else { continue }
            }
            return true
        }
        return false
    }

    /// The 403 the real server answers, naming user, verb, resource, group and namespace.
    static func forbidden(_ user: SandboxUser, _ request: AccessRequest) -> SandboxError {
        let resource = request.subresource.map { "\(request.resource)/\($0)" } ?? request.resource
        let groupResource = GroupResource(group: request.group, resource: request.resource)
        let subject = request.name.map { "\(groupResource) \"\($0)\"" } ?? "\(groupResource)"
        let scope = request.namespace.map { "in the namespace \"\($0)\"" } ?? "at the cluster scope"
        let message = "\(subject) is forbidden: User \"\(user.name)\" cannot \(request.verb) resource \"\(resource)\" in API group \"\(request.group)\" \(scope)"
        return .status(code: 403, reason: "Forbidden", message: message, details: SandboxError.details(request.name, groupResource))
    }
}
