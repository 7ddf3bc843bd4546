import FledgeHTTP
import Foundation

/// Everything needed to reach one API server as one user: what kubectl
/// resolves from a kubeconfig context or from the in-cluster service account.
public struct KubernetesConfiguration: Sendable, Equatable {
    /// Base URL, e.g. `https://10.0.0.1:443` (a path prefix is kept; no trailing slash).
    public var server: String
    /// The namespace calls default to (the context's, or the service account's).
    public var namespace: String
    public var tls: TLSOptions
    public var credentials: KubernetesCredentials
    /// Where this configuration came from, for messages (`in-cluster`, kubeconfig paths).
    public var source: String
    /// The kubeconfig context, when one was used.
    public var contextName: String?
    public var userAgent: String
    /// Whom every request acts as (a kubeconfig user's `as`, `as-groups`, `as-uid`, `as-user-extra`), nil for
    /// the credentials' own identity.
    public var impersonation: Impersonation?
    /// Default time for one request (watches have none).
    public var timeout: Duration
    public var connectTimeout: Duration

    public init(
        server: String, namespace: String = "default", tls: TLSOptions = TLSOptions(),
        credentials: KubernetesCredentials = .none, source: String = "explicit", contextName: String? = nil,
        userAgent: String = "fledge", timeout: Duration = .seconds(30), connectTimeout: Duration = .seconds(10)
    ) {
        var server = server
        while server.hasSuffix("/") { server.removeLast() }
        self.server = server
        self.namespace = namespace
        self.tls = tls
        self.credentials = credentials
        self.source = source
        self.contextName = contextName
        self.userAgent = userAgent
        self.timeout = timeout
        self.connectTimeout = connectTimeout
    }

    /// The default service-account directory mounted into every pod.
    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// In-cluster configuration, as client-go's `rest.InClusterConfig`:
    /// `KUBERNETES_SERVICE_HOST`/`_PORT`, and `token`, `ca.crt`, `namespace` from
    /// the service-account directory. The token is re-read when its file changes,
    /// so rotated tokens keep working. A missing `ca.crt` is an error: TLS
    /// verification is never turned off.
    public static func inCluster(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        serviceAccountDirectory: String = KubernetesConfiguration.serviceAccountDirectory
    ) throws(KubernetesError) -> KubernetesConfiguration {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty else {
            throw .configuration(
                "not running in a cluster: KUBERNETES_SERVICE_HOST is not set", file: "environment",
                field: "KUBERNETES_SERVICE_HOST")
        }
        guard let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty else {
            throw .configuration(
                "not running in a cluster: KUBERNETES_SERVICE_PORT is not set", file: "environment",
                field: "KUBERNETES_SERVICE_PORT")
        }
        guard let portNumber = Int(port), (1...65535).contains(portNumber) else {
            throw .configuration(
                "KUBERNETES_SERVICE_PORT \"\(port)\" is not a port number", file: "environment",
                field: "KUBERNETES_SERVICE_PORT")
        }
        let directory = serviceAccountDirectory.hasSuffix("/") ? String(serviceAccountDirectory.dropLast()) : serviceAccountDirectory
        let tokenPath = directory + "/token"
        let caPath = directory + "/ca.crt"
        let namespacePath = directory + "/namespace"
        // Fail now, not on the first request, when the token cannot be read.
        let token = try readTrimmedFile(tokenPath, field: "token")
        if token.isEmpty {
            throw .configuration("the service-account token file is empty", file: tokenPath, field: "token")
        }
        guard FileManager.default.isReadableFile(atPath: caPath) else {
            throw .configuration(
                "the service-account CA bundle is missing or unreadable; refusing to talk to the API server without verifying it",
                file: caPath, field: "ca.crt")
        }
        var namespace = "default"
        if FileManager.default.fileExists(atPath: namespacePath) {
            let text = try readTrimmedFile(namespacePath, field: "namespace")
            if !text.isEmpty { namespace = text }
        }
        let hostPart = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        return KubernetesConfiguration(
            server: "https://\(hostPart):\(portNumber)", namespace: namespace,
            tls: TLSOptions(certificateAuthority: .file(caPath)),
            credentials: .tokenFile(path: tokenPath, fallback: nil), source: "in-cluster (\(directory))")
    }

    /// What kubectl would use: the kubeconfig files named by `KUBECONFIG` (merged),
    /// else `~/.kube/config`, else the in-cluster service account.
    public static func load(
        context: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment,
        serviceAccountDirectory: String = KubernetesConfiguration.serviceAccountDirectory
    ) throws(KubernetesError) -> KubernetesConfiguration {
        let paths = Kubeconfig.defaultPaths(environment: environment)
        let existing = paths.filter { FileManager.default.fileExists(atPath: $0) }
        if existing.isEmpty, environment["KUBERNETES_SERVICE_HOST"] != nil {
            return try inCluster(environment: environment, serviceAccountDirectory: serviceAccountDirectory)
        }
        if existing.isEmpty {
            throw .configuration(
                "no kubeconfig found (looked at \(paths.joined(separator: ", "))) and not running in a cluster",
                file: paths.first)
        }
        return try Kubeconfig.load(paths: existing).configuration(context: context)
    }
}

/// How requests prove who they are.
public enum KubernetesCredentials: Sendable, Equatable {
    case none
    case token(String)
    /// A token read from a file and re-read when the file changes (rotation);
    /// `fallback` is used only when the file cannot be read (kubeconfig `token` + `tokenFile`).
    case tokenFile(path: String, fallback: String?)
    case basic(username: String, password: String)
    /// An exec credential plugin (`client.authentication.k8s.io/v1` or `v1beta1`).
    case exec(ExecCredentialPlugin)
}

/// A kubeconfig `user.exec` section.
public struct ExecCredentialPlugin: Sendable, Equatable {
    public struct EnvVar: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public var apiVersion: String
    /// The command: an absolute path, a path relative to the kubeconfig's folder, or a name looked up in PATH.
    public var command: String
    public var args: [String]
    public var env: [EnvVar]
    public var installHint: String?
    public var provideClusterInfo: Bool
    /// The kubeconfig that declared the plugin, for messages and relative commands.
    public var configFile: String?

    public init(
        apiVersion: String, command: String, args: [String] = [], env: [EnvVar] = [], installHint: String? = nil,
        provideClusterInfo: Bool = false, configFile: String? = nil
    ) {
        self.apiVersion = apiVersion
        self.command = command
        self.args = args
        self.env = env
        self.installHint = installHint
        self.provideClusterInfo = provideClusterInfo
        self.configFile = configFile
    }

    public static let supportedAPIVersions = ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"]
}

func readTrimmedFile(_ path: String, field: String?) throws(KubernetesError) -> String {
    do {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    } catch {
        throw .configuration("cannot read file: \(describe(error))", file: path, field: field)
    }
}

func describe(_ error: any Error) -> String {
    let ns = error as NSError
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain,
        let code = POSIXErrorCode(rawValue: Int32(underlying.code))
    {
        return String(cString: strerror(code.rawValue))
    }
    if ns.domain == NSCocoaErrorDomain {
        switch ns.code {
        case NSFileReadNoSuchFileError: return "no such file"
        case NSFileReadNoPermissionError: return "permission denied"
        default: break
        }
    }
    return ns.localizedDescription
}

/// Impersonation as client-go sends it: `Impersonate-User`, one `Impersonate-Group` per group, `Impersonate-Uid`
/// and `Impersonate-Extra-<key>` (the key percent-encoded where a header name cannot hold it) once per value.
/// The API server decides every request as that identity, after checking that the credentials may impersonate it.
public struct Impersonation: Sendable, Equatable {
    public var user: String
    public var uid: String?
    public var groups: [String]
    public var extra: [String: [String]]

    public init(user: String, uid: String? = nil, groups: [String] = [], extra: [String: [String]] = [:]) {
        self.user = user
        self.uid = uid
        self.groups = groups
        self.extra = extra
    }

    /// The headers, in a fixed order (extras by key).
    public var headers: [(name: String, value: String)] {
        var out: [(name: String, value: String)] = [("Impersonate-User", user)]
        if let uid { out.append(("Impersonate-Uid", uid)) }
        for group in groups { out.append(("Impersonate-Group", group)) }
        for key in extra.keys.sorted() {
            for value in extra[key] ?? [] { out.append(("Impersonate-Extra-" + Self.escapeHeaderKey(key), value)) }
        }
        return out
    }

    /// client-go's headerKeyEscape: a byte that is not an RFC 7230 token character, or is '%', becomes %XX.
    static func escapeHeaderKey(_ key: String) -> String {
        let token = Set("!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        var out = ""
        for byte in key.utf8 {
            if token.contains(byte) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }
}
