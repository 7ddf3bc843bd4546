import FledgeHTTP
import FledgeJSON
import FledgeYAML
import Foundation
import Yams

/// A kubeconfig, possibly merged from several files the way kubectl merges them:
/// for clusters, users and contexts the first file that defines a name wins
/// (the whole entry), and `current-context` comes from the first file that sets it.
/// Relative paths are resolved against the folder of the file that holds them.
public struct Kubeconfig: Sendable, Equatable {
    public struct Cluster: Sendable, Equatable {
        public var name: String
        public var server: String
        public var certificateAuthority: String?
        public var certificateAuthorityData: [UInt8]?
        public var insecureSkipTLSVerify: Bool
        public var file: String
        /// Where in `file` this entry is (`clusters[0]`), for messages.
        public var location: String
    }

    public struct User: Sendable, Equatable {
        public var name: String
        public var token: String?
        public var tokenFile: String?
        public var clientCertificate: String?
        public var clientCertificateData: [UInt8]?
        public var clientKey: String?
        public var clientKeyData: [UInt8]?
        public var username: String?
        public var password: String?
        public var exec: ExecCredentialPlugin?
        /// `as`, `as-uid`, `as-groups`, `as-user-extra`: whom every request acts as (kubectl's `--as`).
        public var impersonation: Impersonation?
        public var file: String
        public var location: String
    }

    public struct Context: Sendable, Equatable {
        public var name: String
        public var cluster: String
        public var user: String?
        public var namespace: String?
        public var file: String
        public var location: String
    }

    public var clusters: [String: Cluster] = [:]
    public var users: [String: User] = [:]
    public var contexts: [String: Context] = [:]
    public var currentContext: String?
    /// The files this configuration was read from, in precedence order.
    public var files: [String] = []

    public init() {}

    /// The files kubectl would read: `KUBECONFIG` split on `:` (empty entries and
    /// duplicates dropped), else `~/.kube/config`.
    public static func defaultPaths(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            var seen = Set<String>()
            return list.split(separator: ":").map(String.init).filter { !$0.isEmpty && seen.insert($0).inserted }
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return [home + "/.kube/config"]
    }

    /// Reads and merges kubeconfig files; files that do not exist are skipped as
    /// kubectl skips them, but at least one must exist.
    public static func load(paths: [String]) throws(KubernetesError) -> Kubeconfig {
        var merged = Kubeconfig()
        var found = false
        for path in paths where !path.isEmpty {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { continue }
            if isFolder.boolValue { throw .configuration("is a directory, not a kubeconfig file", file: path) }
            found = true
            let text = try readFile(path)
            merged.merge(try parse(yaml: text, file: path))
        }
        if !found {
            throw .configuration("no kubeconfig file exists (looked at \(paths.joined(separator: ", ")))", file: paths.first)
        }
        return merged
    }

    /// Adds a later file: entries already defined keep their first definition.
    public mutating func merge(_ later: Kubeconfig) {
        for (name, entry) in later.clusters where clusters[name] == nil { clusters[name] = entry }
        for (name, entry) in later.users where users[name] == nil { users[name] = entry }
        for (name, entry) in later.contexts where contexts[name] == nil { contexts[name] = entry }
        if currentContext == nil || currentContext == "" { currentContext = later.currentContext }
        files += later.files
    }

    /// Parses one kubeconfig file's text; `file` names it in errors and anchors relative paths.
    public static func parse(yaml: String, file: String) throws(KubernetesError) -> Kubeconfig {
        // Before composing, which would expand them.
        if let alias = YAMLAliases.first(in: yaml) { throw KubernetesError.configuration(alias.description, file: file) }
        let root: JSONValue
        do {
            guard let node = try Yams.compose(yaml: yaml) else {
                var empty = Kubeconfig()
                empty.files = [file]
                return empty
            }
            root = try jsonValue(yaml: node)
        } catch let error as YAMLConversionError {
            let message = error.kind == .alias ? "YAML aliases are not supported in a kubeconfig" : error.message
            throw KubernetesError.configuration(message, file: file)
        } catch {
            throw KubernetesError.configuration("not valid YAML: \(error)", file: file)
        }
        if root.isNull {
            var empty = Kubeconfig()
            empty.files = [file]
            return empty
        }
        guard root.objectValue != nil else {
            throw KubernetesError.configuration("a kubeconfig must be a mapping, found \(root.typeNameWithArticle)", file: file)
        }
        if let kind = root["kind"]?.stringValue, kind != "Config" {
            throw KubernetesError.configuration("kind is \"\(kind)\", expected \"Config\"", file: file, field: "kind")
        }
        let base = (file as NSString).deletingLastPathComponent
        let reader = FieldReader(file: file, base: base)
        var config = Kubeconfig()
        config.files = [file]
        if let current = try reader.string(root, "current-context", at: "current-context"), !current.isEmpty {
            config.currentContext = current
        }

        for (index, entry) in try reader.list(root, "clusters").enumerated() {
            let location = "clusters[\(index)]"
            let name = try reader.requiredString(entry, "name", at: "\(location).name")
            let body = try reader.requiredObject(entry, "cluster", at: "\(location).cluster")
            let server = try reader.requiredString(body, "server", at: "\(location).cluster.server")
            let cluster = Cluster(
                name: name,
                server: try reader.url(server, at: "\(location).cluster.server"),
                certificateAuthority: try reader.path(body, "certificate-authority", at: "\(location).cluster.certificate-authority"),
                certificateAuthorityData: try reader.base64(body, "certificate-authority-data", at: "\(location).cluster.certificate-authority-data"),
                insecureSkipTLSVerify: try reader.bool(body, "insecure-skip-tls-verify", at: "\(location).cluster.insecure-skip-tls-verify") ?? false,
                file: file, location: location)
            if config.clusters[name] == nil { config.clusters[name] = cluster }
        }

        for (index, entry) in try reader.list(root, "users").enumerated() {
            let location = "users[\(index)]"
            let name = try reader.requiredString(entry, "name", at: "\(location).name")
            let body = try reader.object(entry, "user", at: "\(location).user") ?? [:]
            let at = "\(location).user"
            if body["auth-provider"] != nil {
                throw KubernetesError.configuration(
                    "auth-provider plugins were removed from kubectl; use an exec credential plugin", file: file,
                    field: "\(at).auth-provider")
            }
            var user = User(
                name: name,
                token: try reader.string(body, "token", at: "\(at).token"),
                tokenFile: try reader.path(body, "tokenFile", at: "\(at).tokenFile"),
                clientCertificate: try reader.path(body, "client-certificate", at: "\(at).client-certificate"),
                clientCertificateData: try reader.base64(body, "client-certificate-data", at: "\(at).client-certificate-data"),
                clientKey: try reader.path(body, "client-key", at: "\(at).client-key"),
                clientKeyData: try reader.base64(body, "client-key-data", at: "\(at).client-key-data"),
                username: try reader.string(body, "username", at: "\(at).username"),
                password: try reader.string(body, "password", at: "\(at).password"),
                exec: nil, impersonation: nil, file: file, location: location)
            if let exec = try reader.object(body, "exec", at: "\(at).exec") {
                user.exec = try reader.execPlugin(exec, at: "\(at).exec")
            }
            user.impersonation = try reader.impersonation(body, at: at)
            if config.users[name] == nil { config.users[name] = user }
        }

        for (index, entry) in try reader.list(root, "contexts").enumerated() {
            let location = "contexts[\(index)]"
            let name = try reader.requiredString(entry, "name", at: "\(location).name")
            let body = try reader.requiredObject(entry, "context", at: "\(location).context")
            let context = Context(
                name: name,
                cluster: try reader.requiredString(body, "cluster", at: "\(location).context.cluster"),
                user: try reader.string(body, "user", at: "\(location).context.user").flatMap { $0.isEmpty ? nil : $0 },
                namespace: try reader.string(body, "namespace", at: "\(location).context.namespace").flatMap { $0.isEmpty ? nil : $0 },
                file: file, location: location)
            if config.contexts[name] == nil { config.contexts[name] = context }
        }
        return config
    }

    private var fileList: String { files.isEmpty ? "kubeconfig" : files.joined(separator: ":") }

    /// The contexts there are, for messages; none at all suggests a YAML file that is not a kubeconfig.
    private var contextList: String {
        contexts.isEmpty ? "it defines no contexts: is it a kubeconfig?" : "contexts: \(contexts.keys.sorted().joined(separator: ", "))"
    }

    /// Resolves a context (the given one, else `current-context`) into a configuration.
    public func configuration(context requested: String? = nil) throws(KubernetesError) -> KubernetesConfiguration {
        guard let contextName = requested ?? currentContext else {
            throw .configuration(
                "no context chosen: current-context is not set and no context was given (\(contextList))",
                file: fileList, field: "current-context")
        }
        guard let context = contexts[contextName] else {
            throw .configuration(
                "context \"\(contextName)\" is not defined (\(contextList))",
                file: fileList, field: requested == nil ? "current-context" : "contexts")
        }
        guard let cluster = clusters[context.cluster] else {
            throw .configuration(
                "context \"\(contextName)\" names cluster \"\(context.cluster)\", which is not defined", file: context.file,
                field: "\(context.location).context.cluster")
        }

        var tls = TLSOptions()
        if let data = cluster.certificateAuthorityData {
            tls.certificateAuthority = .pem(data)
        } else if let path = cluster.certificateAuthority {
            tls.certificateAuthority = .file(path)
        }
        if cluster.insecureSkipTLSVerify {
            if tls.certificateAuthority != nil {
                throw .configuration(
                    "insecure-skip-tls-verify cannot be combined with a certificate authority", file: cluster.file,
                    field: "\(cluster.location).cluster.insecure-skip-tls-verify")
            }
            tls.insecureSkipVerify = true
        }

        // Files the chosen entries name must exist now: later they would only surface as a failed TLS handshake.
        func checkFile(_ path: String?, _ entryFile: String, _ field: String, _ what: String) throws(KubernetesError) {
            guard let path else { return }
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
                throw .configuration("\(what) file \(path) does not exist", file: entryFile, field: field)
            }
            if isFolder.boolValue { throw .configuration("\(what) \(path) is a directory, not a file", file: entryFile, field: field) }
        }
        if cluster.certificateAuthorityData == nil {
            try checkFile(cluster.certificateAuthority, cluster.file, "\(cluster.location).cluster.certificate-authority", "certificate authority")
        }
        if let userName = context.user, let user = users[userName] {
            let at = "\(user.location).user"
            if user.clientCertificateData == nil {
                try checkFile(user.clientCertificate, user.file, "\(at).client-certificate", "client certificate")
            }
            if user.clientKeyData == nil { try checkFile(user.clientKey, user.file, "\(at).client-key", "client key") }
        }


        var credentials = KubernetesCredentials.none
        if let userName = context.user {
            guard let user = users[userName] else {
                throw .configuration(
                    "context \"\(contextName)\" names user \"\(userName)\", which is not defined", file: context.file,
                    field: "\(context.location).context.user")
            }
            let at = "\(user.location).user"
            if user.clientCertificate != nil, user.clientCertificateData != nil {
                throw .configuration(
                    "client-certificate and client-certificate-data are both set", file: user.file, field: "\(at).client-certificate-data")
            }
            if user.clientKey != nil, user.clientKeyData != nil {
                throw .configuration("client-key and client-key-data are both set", file: user.file, field: "\(at).client-key-data")
            }
            let certificate: PEMSource? = user.clientCertificateData.map { .pem($0) } ?? user.clientCertificate.map { .file($0) }
            let key: PEMSource? = user.clientKeyData.map { .pem($0) } ?? user.clientKey.map { .file($0) }
            if (certificate == nil) != (key == nil) {
                throw .configuration(
                    certificate == nil ? "client-key is set without a client certificate" : "a client certificate is set without client-key",
                    file: user.file, field: certificate == nil ? "\(at).client-certificate" : "\(at).client-key")
            }
            tls.clientCertificate = certificate
            tls.clientKey = key

            var methods: [String] = []
            if user.token != nil || user.tokenFile != nil { methods.append("token") }
            if user.username != nil || user.password != nil { methods.append("username/password") }
            if user.exec != nil { methods.append("exec") }
            if methods.count > 1 {
                throw .configuration(
                    "more than one authentication method (\(methods.joined(separator: ", "))); only one is allowed",
                    file: user.file, field: at)
            }
            if let tokenFile = user.tokenFile {
                credentials = .tokenFile(path: tokenFile, fallback: user.token)
            } else if let token = user.token {
                credentials = .token(token)
            } else if user.username != nil || user.password != nil {
                guard let username = user.username, let password = user.password else {
                    throw .configuration(
                        "username and password must be set together", file: user.file,
                        field: user.username == nil ? "\(at).username" : "\(at).password")
                }
                credentials = .basic(username: username, password: password)
            } else if let exec = user.exec {
                credentials = .exec(exec)
            }
        }

        var configuration = KubernetesConfiguration(
            server: cluster.server, namespace: context.namespace ?? "default", tls: tls, credentials: credentials,
            source: fileList, contextName: contextName)
        configuration.impersonation = context.user.flatMap { users[$0]?.impersonation }
        return configuration
    }
}

/// Reads typed fields and names the file and field when one is wrong.
private struct FieldReader {
    var file: String
    var base: String

    func fail(_ message: String, _ field: String) -> KubernetesError {
        .configuration(message, file: file, field: field)
    }

    func list(_ value: JSONValue, _ key: String) throws(KubernetesError) -> [JSONValue] {
        guard let raw = value[key], !raw.isNull else { return [] }
        guard let items = raw.arrayValue else { throw fail("must be a list, found \(raw.typeNameWithArticle)", key) }
        return items
    }

    func string(_ value: JSONValue, _ key: String, at field: String) throws(KubernetesError) -> String? {
        guard let raw = value[key], !raw.isNull else { return nil }
        switch raw {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double, .bool: return raw.serializedString()
        default: throw fail("must be a string, found \(raw.typeNameWithArticle)", field)
        }
    }

    func requiredString(_ value: JSONValue, _ key: String, at field: String) throws(KubernetesError) -> String {
        guard let s = try string(value, key, at: field), !s.isEmpty else { throw fail("is required", field) }
        return s
    }

    func object(_ value: JSONValue, _ key: String, at field: String) throws(KubernetesError) -> JSONValue? {
        guard let raw = value[key], !raw.isNull else { return nil }
        guard raw.objectValue != nil else { throw fail("must be a mapping, found \(raw.typeNameWithArticle)", field) }
        return raw
    }

    func requiredObject(_ value: JSONValue, _ key: String, at field: String) throws(KubernetesError) -> JSONValue {
        guard let object = try object(value, key, at: field) else { throw fail("is required", field) }
        return object
    }

    func bool(_ value: JSONValue, _ key: String, at field: String) throws(KubernetesError) -> Bool? {
        guard let raw = value[key], !raw.isNull else { return nil }
        if let b = raw.boolValue { return b }
        if let s = raw.stringValue {
            switch s.lowercased() {
            case "true": return true
            case "false": return false
            default: break
            }
        }
        throw fail("must be true or false, found \(raw.serializedString())", field)
    }

    func path(_ value: JSONValue, _ key: String, at field: String) throws(KubernetesError) -> String? {
        guard let raw = try string(value, key, at: field), !raw.isEmpty else { return nil }
        return resolve(raw)
    }

    func resolve(_ raw: String) -> String {
        var path = raw
        if path.hasPrefix("~/") { path = NSHomeDirectory() + path.dropFirst(1) }
        if path.hasPrefix("/") || base.isEmpty { return path }
        return base + "/" + path
    }

    func base64(_ value: JSONValue, _ key: String, at field: String) throws(KubernetesError) -> [UInt8]? {
        guard let raw = try string(value, key, at: field), !raw.isEmpty else { return nil }
        let cleaned = raw.filter { !$0.isWhitespace }
        guard let data = Data(base64Encoded: cleaned) else { throw fail("is not valid base64", field) }
        return Array(data)
    }

    func url(_ raw: String, at field: String) throws(KubernetesError) -> String {
        var server = raw.trimmingCharacters(in: .whitespaces)
        if !server.contains("://") { server = "https://" + server }
        guard server.hasPrefix("https://") || server.hasPrefix("http://") else {
            throw fail("\"\(raw)\" must be an http:// or https:// URL", field)
        }
        let rest = server.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)
        guard rest.count >= 3, !rest[2].isEmpty else { throw fail("\"\(raw)\" has no host", field) }
        return server
    }

    /// kubectl's `as` (user), `as-uid`, `as-groups` (list) and `as-user-extra` (key → list of values). Groups, a
    /// uid or extras without `as` are refused, as the API server refuses them.
    func impersonation(_ body: JSONValue, at field: String) throws(KubernetesError) -> Impersonation? {
        let user = try string(body, "as", at: "\(field).as").flatMap { $0.isEmpty ? nil : $0 }
        let uid = try string(body, "as-uid", at: "\(field).as-uid").flatMap { $0.isEmpty ? nil : $0 }
        var groups: [String] = []
        for (index, group) in try list(body, "as-groups").enumerated() {
            guard let text = try string(.array([group]), 0, at: "\(field).as-groups[\(index)]"), !text.isEmpty else {
                throw fail("must be a non-empty string", "\(field).as-groups[\(index)]")
            }
            groups.append(text)
        }
        var extra: [String: [String]] = [:]
        if let extras = try object(body, "as-user-extra", at: "\(field).as-user-extra")?.objectValue {
            for (key, values) in extras {
                let at = "\(field).as-user-extra.\(key)"
                guard !key.isEmpty else { throw fail("has an empty key", "\(field).as-user-extra") }
                let items = values.arrayValue ?? [values]
                var texts: [String] = []
                for (index, item) in items.enumerated() {
                    guard let text = try string(.array([item]), 0, at: "\(at)[\(index)]") else { throw fail("must be a string", "\(at)[\(index)]") }
                    texts.append(text)
                }
                extra[key] = texts
            }
        }
        guard let user else {
            let given = [uid != nil ? "as-uid" : nil, groups.isEmpty ? nil : "as-groups", extra.isEmpty ? nil : "as-user-extra"].compactMap { $0 }
            if let first = given.first {
                throw fail("\(given.joined(separator: ", ")) \(given.count == 1 ? "needs" : "need") `as` (the user to impersonate)", "\(field).\(first)")
            }
            return nil
        }
        return Impersonation(user: user, uid: uid, groups: groups, extra: extra)
    }

    func execPlugin(_ exec: JSONValue, at field: String) throws(KubernetesError) -> ExecCredentialPlugin {
        let apiVersion = try requiredString(exec, "apiVersion", at: "\(field).apiVersion")
        guard ExecCredentialPlugin.supportedAPIVersions.contains(apiVersion) else {
            throw fail(
                "\"\(apiVersion)\" is not supported (use \(ExecCredentialPlugin.supportedAPIVersions.joined(separator: " or ")))",
                "\(field).apiVersion")
        }
        var command = try requiredString(exec, "command", at: "\(field).command")
        if command.contains("/") { command = resolve(command) }
        var args: [String] = []
        for (index, arg) in try list(exec, "args").enumerated() {
            guard let s = try string(.array([arg]), 0, at: "\(field).args[\(index)]") else {
                throw fail("must be a string", "\(field).args[\(index)]")
            }
            args.append(s)
        }
        var env: [ExecCredentialPlugin.EnvVar] = []
        for (index, entry) in try list(exec, "env").enumerated() {
            env.append(
                ExecCredentialPlugin.EnvVar(
                    name: try requiredString(entry, "name", at: "\(field).env[\(index)].name"),
                    value: try string(entry, "value", at: "\(field).env[\(index)].value") ?? ""))
        }
        return ExecCredentialPlugin(
            apiVersion: apiVersion, command: command, args: args, env: env,
            installHint: try string(exec, "installHint", at: "\(field).installHint"),
            provideClusterInfo: try bool(exec, "provideClusterInfo", at: "\(field).provideClusterInfo") ?? false,
            configFile: file)
    }

    private func string(_ array: JSONValue, _ index: Int, at field: String) throws(KubernetesError) -> String? {
        guard let raw = array[index] else { return nil }
        return try string(.object(["v": raw]), "v", at: field)
    }
}

private func readFile(_ path: String) throws(KubernetesError) -> String {
    do {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return String(decoding: data, as: UTF8.self)
    } catch {
        throw .configuration("cannot read kubeconfig: \(describe(error))", file: path)
    }
}

/// Why a YAML node has no JSON equivalent.
public struct YAMLConversionError: Error, Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case nonStringKey, alias }
    public var kind: Kind
    public var message: String {
        switch kind {
        case .nonStringKey: return "a mapping key is not a string"
        case .alias: return "YAML aliases are not supported"
        }
    }
}

/// Converts a YAML node to JSON, keeping key order and resolving scalar types as YAML 1.1 does (kubeconfigs here,
/// `--template-patch` files in the CLI).
public func jsonValue(yaml node: Node) throws(YAMLConversionError) -> JSONValue {
    switch node {
    case .scalar(let scalar):
        switch node.tag.description {
        case Tag.Name.null.rawValue: return .null
        case Tag.Name.bool.rawValue: return node.bool.map(JSONValue.bool) ?? .string(scalar.string)
        case Tag.Name.int.rawValue: return node.int.map { .int(Int64($0)) } ?? .string(scalar.string)
        case Tag.Name.float.rawValue: return node.float.map(JSONValue.double) ?? .string(scalar.string)
        default: return .string(scalar.string)
        }
    case .mapping(let mapping):
        var object = JSONObject()
        for (key, value) in mapping {
            guard let name = key.string else { throw YAMLConversionError(kind: .nonStringKey) }
            object[name] = try jsonValue(yaml: value)
        }
        return .object(object)
    case .sequence(let sequence):
        var items: [JSONValue] = []
        for item in sequence { items.append(try jsonValue(yaml: item)) }
        return .array(items)
    case .alias:
        throw YAMLConversionError(kind: .alias)
    }
}
