import FledgeHTTP
import Foundation
import TestSupport
import Testing

@testable import FledgeKubernetes

/// A temporary folder removed when the test ends.
final class TempDir {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "fledge-kube-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    @discardableResult
    func write(_ name: String, _ text: String, executable: Bool = false) throws -> String {
        let file = path + "/" + name
        try FileManager.default.createDirectory(
            atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        if executable { try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: file) }
        return file
    }
}

private func b64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

@Suite struct KubeconfigTests {
    @Test func currentContextWithCertificateDataAndNamespace() throws {
        let yaml = """
            apiVersion: v1
            kind: Config
            current-context: dev
            clusters:
            - name: c1
              cluster:
                server: https://127.0.0.1:6443/
                certificate-authority-data: \(b64("CA PEM"))
            users:
            - name: u1
              user:
                client-certificate-data: \(b64("CERT PEM"))
                client-key-data: \(b64("KEY PEM"))
            contexts:
            - name: dev
              context: {cluster: c1, user: u1, namespace: shop}
            """
        let config = try Kubeconfig.parse(yaml: yaml, file: "/tmp/x/config").configuration()
        #expect(config.server == "https://127.0.0.1:6443")
        #expect(config.namespace == "shop")
        #expect(config.contextName == "dev")
        #expect(config.tls.certificateAuthority == .pem(Array("CA PEM".utf8)))
        #expect(config.tls.clientCertificate == .pem(Array("CERT PEM".utf8)))
        #expect(config.tls.clientKey == .pem(Array("KEY PEM".utf8)))
        #expect(config.credentials == .none)
    }

    @Test func relativePathsResolveAgainstTheFileAndTokenFileWins() throws {
        let yaml = """
            current-context: a
            clusters:
            - name: c
              cluster: {server: "http://127.0.0.1:8080", certificate-authority: certs/ca.pem}
            users:
            - name: u
              user: {token: fallback, tokenFile: secrets/token, client-certificate: /abs/cert.pem, client-key: key.pem}
            contexts:
            - name: a
              context: {cluster: c, user: u}
            """
        let dir = try TempDir()
        let ca = try dir.write("kube/certs/ca.pem", "CA")
        let key = try dir.write("kube/key.pem", "KEY")
        let certificate = try dir.write("abs/cert.pem", "CERT")
        let config = try Kubeconfig.parse(yaml: yaml.replacingOccurrences(of: "/abs/cert.pem", with: certificate), file: dir.path + "/kube/config")
            .configuration()
        #expect(config.tls.certificateAuthority == .file(ca))
        #expect(config.tls.clientCertificate == .file(certificate))
        #expect(config.tls.clientKey == .file(key))
        #expect(config.credentials == .tokenFile(path: dir.path + "/kube/secrets/token", fallback: "fallback"))
        #expect(config.namespace == "default")
    }

    /// A certificate file the chosen context names must exist: the error names the kubeconfig, the entry and the
    /// field (it surfaced as "cannot reach the Kubernetes API server … TLS handshake failed").
    @Test func missingCertificateFilesNameTheKubeconfigAndTheField() throws {
        let dir = try TempDir()
        try dir.write("key.pem", "KEY")
        try dir.write("folder/keep", "")
        func failure(_ cluster: String, _ user: String) -> KubernetesError? {
            let yaml = """
                current-context: a
                clusters: [{name: other, cluster: {server: "https://x", certificate-authority: /gone/other.pem}}, {name: c, cluster: {server: "https://127.0.0.1:6443", \(cluster)}}]
                users: [{name: u, user: {\(user)}}]
                contexts: [{name: a, context: {cluster: c, user: u}}]
                """
            do {
                _ = try Kubeconfig.parse(yaml: yaml, file: dir.path + "/config").configuration()
                return nil
            } catch {
                return error
            }
        }
        var error = failure("certificate-authority: /nonexist/ca.pem", "token: t")
        #expect(error?.file == dir.path + "/config")
        #expect(error?.field == "clusters[1].cluster.certificate-authority")
        #expect(error?.message == "certificate authority file /nonexist/ca.pem does not exist", "\(String(describing: error))")
        error = failure("certificate-authority: folder", "token: t")
        #expect(error?.message == "certificate authority \(dir.path)/folder is a directory, not a file", "\(String(describing: error))")
        error = failure("insecure-skip-tls-verify: true", "client-certificate: cert.pem, client-key: key.pem")
        #expect(error?.field == "users[0].user.client-certificate")
        #expect(error?.message == "client certificate file \(dir.path)/cert.pem does not exist", "\(String(describing: error))")
        // The entry no context uses is not checked, and data fields need no file.
        #expect(failure("certificate-authority-data: \(Data("CA".utf8).base64EncodedString())", "token: t") == nil)
    }

    @Test func aDirectoryIsNotAKubeconfig() throws {
        let dir = try TempDir()
        do {
            _ = try Kubeconfig.load(paths: [dir.path])
            Issue.record("a directory loaded")
        } catch {
            #expect(error.file == dir.path)
            #expect(error.message == "is a directory, not a kubeconfig file")
        }
    }

    @Test func mergingFollowsKubectlFirstFileWins() throws {
        let dir = try TempDir()
        let first = try dir.write(
            "one",
            """
            clusters:
            - name: shared
              cluster: {server: "https://first:1"}
            users:
            - name: shared-user
              user: {token: from-first}
            contexts:
            - name: ctx-one
              context: {cluster: shared, user: shared-user, namespace: one}
            """)
        let second = try dir.write(
            "two",
            """
            current-context: ctx-two
            clusters:
            - name: shared
              cluster: {server: "https://second:2"}
            - name: only-second
              cluster: {server: "https://only:3", insecure-skip-tls-verify: true}
            users:
            - name: shared-user
              user: {token: from-second}
            contexts:
            - name: ctx-two
              context: {cluster: only-second, user: shared-user}
            - name: ctx-one
              context: {cluster: only-second, namespace: ignored}
            """)
        let third = try dir.write("three", "current-context: ctx-one\n")
        let merged = try Kubeconfig.load(paths: [first, dir.path + "/missing", second, third])
        #expect(merged.currentContext == "ctx-two")  // the first file that sets it
        let current = try merged.configuration()
        #expect(current.server == "https://only:3")
        #expect(current.tls.insecureSkipVerify)
        #expect(current.credentials == .token("from-first"))  // the first file's user
        let one = try merged.configuration(context: "ctx-one")
        #expect(one.server == "https://first:1")  // the first file's cluster
        #expect(one.namespace == "one")  // the first file's context
        #expect(merged.files == [first, second, third])

        // Through KUBECONFIG, as kubectl reads it.
        let env = ["KUBECONFIG": "\(first)::\(second):\(first)", "HOME": dir.path]
        #expect(Kubeconfig.defaultPaths(environment: env) == [first, second])
        let loaded = try KubernetesConfiguration.load(environment: env)
        #expect(loaded.server == "https://only:3")
        let explicit = try KubernetesConfiguration.load(context: "ctx-one", environment: env)
        #expect(explicit.namespace == "one")
    }

    @Test func homeKubeconfigIsTheDefault() throws {
        let dir = try TempDir()
        try dir.write(
            ".kube/config",
            """
            current-context: h
            clusters: [{name: c, cluster: {server: "https://home:6443"}}]
            contexts: [{name: h, context: {cluster: c}}]
            """)
        let config = try KubernetesConfiguration.load(environment: ["HOME": dir.path])
        #expect(config.server == "https://home:6443")
        #expect(config.credentials == .none)
    }

    @Test func execPluginIsParsed() throws {
        let yaml = """
            current-context: e
            clusters: [{name: c, cluster: {server: "https://x"}}]
            users:
            - name: u
              user:
                exec:
                  apiVersion: client.authentication.k8s.io/v1
                  command: ./bin/get-token
                  args: [--cluster, prod, 42]
                  env: [{name: REGION, value: eu}]
                  installHint: install get-token
                  provideClusterInfo: true
            contexts: [{name: e, context: {cluster: c, user: u}}]
            """
        let config = try Kubeconfig.parse(yaml: yaml, file: "/k/config").configuration()
        guard case .exec(let plugin) = config.credentials else {
            Issue.record("expected exec credentials, got \(config.credentials)")
            return
        }
        #expect(plugin.command == "/k/./bin/get-token")
        #expect(plugin.args == ["--cluster", "prod", "42"])
        #expect(plugin.env == [.init(name: "REGION", value: "eu")])
        #expect(plugin.provideClusterInfo)
        #expect(plugin.installHint == "install get-token")
    }

    /// Every bad input names the file and the field.
    @Test(arguments: [
        ("clusters: [{name: c}]", "clusters[0].cluster", "is required"),
        ("clusters: [{name: c, cluster: {server: 'ftp://x'}}]", "clusters[0].cluster.server", "http"),
        ("clusters: [{name: c, cluster: {server: x, certificate-authority-data: '!!notbase64'}}]",
         "clusters[0].cluster.certificate-authority-data", "base64"),
        ("clusters: [{name: c, cluster: {server: x, insecure-skip-tls-verify: maybe}}]",
         "clusters[0].cluster.insecure-skip-tls-verify", "true or false"),
        ("users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1alpha1, command: x}}}]",
         "users[0].user.exec.apiVersion", "not supported"),
        ("users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1}}}]",
         "users[0].user.exec.command", "is required"),
        ("users: [{name: u, user: {auth-provider: {name: gcp}}}]", "users[0].user.auth-provider", "exec"),
        ("contexts: [{name: a, context: {user: u}}]", "contexts[0].context.cluster", "is required"),
        ("kind: Pod", "kind", "Config"),
        ("clusters: {a: b}", "clusters", "list"),
    ])
    func badFieldsAreNamed(yaml: String, field: String, words: String) {
        do {
            _ = try Kubeconfig.parse(yaml: yaml, file: "/cfg/bad.yaml")
            Issue.record("expected an error for \(yaml)")
        } catch {
            #expect(error.kind == .configuration)
            #expect(error.file == "/cfg/bad.yaml")
            #expect(error.field == field)
            #expect(error.description.contains(words), "\(error)")
            #expect(error.description.contains("/cfg/bad.yaml"))
        }
    }

    @Test(arguments: [
        ("current-context: nope\ncontexts: [{name: a, context: {cluster: c}}]", "is not defined"),
        ("current-context: a\ncontexts: [{name: a, context: {cluster: c}}]", "cluster \"c\""),
        ("current-context: a\nclusters: [{name: c, cluster: {server: x}}]\ncontexts: [{name: a, context: {cluster: c, user: who}}]",
         "user \"who\""),
        ("contexts: [{name: a, context: {cluster: c}}]", "current-context is not set"),
        ("""
        current-context: a
        clusters: [{name: c, cluster: {server: x, insecure-skip-tls-verify: true, certificate-authority: ca}}]
        contexts: [{name: a, context: {cluster: c}}]
        """, "insecure-skip-tls-verify cannot be combined"),
        ("""
        current-context: a
        clusters: [{name: c, cluster: {server: x}}]
        users: [{name: u, user: {token: t, username: a, password: b}}]
        contexts: [{name: a, context: {cluster: c, user: u}}]
        """, "more than one authentication method"),
        ("""
        current-context: a
        clusters: [{name: c, cluster: {server: x}}]
        users: [{name: u, user: {client-certificate-data: \(b64("x"))}}]
        contexts: [{name: a, context: {cluster: c, user: u}}]
        """, "without client-key"),
    ])
    func unusableContextsAreExplained(yaml: String, words: String) {
        do {
            _ = try Kubeconfig.parse(yaml: yaml, file: "/cfg/k").configuration()
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains(words), "\(error)")
            #expect(error.file == "/cfg/k")
        }
    }

    @Test(.timeLimit(.minutes(1))) func yamlAliasesAreRefusedBeforeTheyExpand() {
        // One level first: were aliases expanded, eight would not end.
        for levels in [1, 8] {
            do {
                _ = try Kubeconfig.parse(yaml: yamlBomb(levels: levels, prefix: "apiVersion: v1\nkind: Config\nclusters: []\npreferences:\n"), file: "/cfg/laughs")
                Issue.record("an alias was accepted")
                return
            } catch {
                #expect(error.kind == .configuration && error.file == "/cfg/laughs")
                #expect(error.description.contains("line 6: YAML alias '*l0' is not supported"), "\(error)")
            }
        }
    }

    /// A YAML file that is not a kubeconfig (a Prometheus config) said "(contexts: )"; now it says it defines none.
    @Test func aFileWithoutContextsSaysSo() throws {
        let notAKubeconfig = try Kubeconfig.parse(yaml: "global: {scrape_interval: 1s}\n", file: "/tmp/prom.yml")
        #expect {
            _ = try notAKubeconfig.configuration()
        } throws: { error in
            "\(error)".contains("current-context is not set and no context was given (it defines no contexts: is it a kubeconfig?)")
        }
        #expect {
            _ = try notAKubeconfig.configuration(context: "prod")
        } throws: { error in
            "\(error)".contains("context \"prod\" is not defined (it defines no contexts: is it a kubeconfig?)")
        }
    }

    @Test func invalidYAMLAndMissingFiles() throws {
        #expect(throws: KubernetesError.self) { try Kubeconfig.parse(yaml: "clusters: [", file: "/x") }
        do {
            _ = try Kubeconfig.load(paths: ["/nonexistent/a", "/nonexistent/b"])
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("/nonexistent/a"))
        }
        let dir = try TempDir()
        do {
            _ = try KubernetesConfiguration.load(environment: ["HOME": dir.path])
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("no kubeconfig found"))
        }
    }
}

@Suite struct InClusterTests {
    @Test func readsTheServiceAccountDirectory() throws {
        let dir = try TempDir()
        try dir.write("token", "tok-1\n")
        try dir.write("ca.crt", "PEM")
        try dir.write("namespace", "fledge-system")
        let config = try KubernetesConfiguration.inCluster(
            environment: ["KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"],
            serviceAccountDirectory: dir.path)
        #expect(config.server == "https://10.0.0.1:443")
        #expect(config.namespace == "fledge-system")
        #expect(config.tls.certificateAuthority == .file(dir.path + "/ca.crt"))
        #expect(!config.tls.insecureSkipVerify)
        #expect(config.credentials == .tokenFile(path: dir.path + "/token", fallback: nil))

        let v6 = try KubernetesConfiguration.inCluster(
            environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"],
            serviceAccountDirectory: dir.path)
        #expect(v6.server == "https://[fd00::1]:6443")

        // load() falls back to in-cluster when no kubeconfig exists.
        let home = try TempDir()
        let loaded = try KubernetesConfiguration.load(
            environment: ["HOME": home.path, "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"],
            serviceAccountDirectory: dir.path)
        #expect(loaded.source.hasPrefix("in-cluster"))
    }

    @Test func missingCAIsAnErrorNotInsecure() throws {
        let dir = try TempDir()
        try dir.write("token", "tok")
        do {
            _ = try KubernetesConfiguration.inCluster(
                environment: ["KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"],
                serviceAccountDirectory: dir.path)
            Issue.record("expected an error")
        } catch {
            #expect(error.file == dir.path + "/ca.crt")
            #expect(error.description.contains("CA bundle"))
        }
    }

    @Test(arguments: [
        ([String: String](), "KUBERNETES_SERVICE_HOST"),
        (["KUBERNETES_SERVICE_HOST": "h"], "KUBERNETES_SERVICE_PORT"),
        (["KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "http"], "KUBERNETES_SERVICE_PORT"),
    ])
    func environmentIsRequired(environment: [String: String], field: String) throws {
        let dir = try TempDir()
        do {
            _ = try KubernetesConfiguration.inCluster(environment: environment, serviceAccountDirectory: dir.path)
            Issue.record("expected an error")
        } catch {
            #expect(error.field == field)
        }
    }

    @Test func missingTokenNamesTheFile() throws {
        let dir = try TempDir()
        try dir.write("ca.crt", "PEM")
        do {
            _ = try KubernetesConfiguration.inCluster(
                environment: ["KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"], serviceAccountDirectory: dir.path)
            Issue.record("expected an error")
        } catch {
            #expect(error.file == dir.path + "/token")
        }
    }
}

@Suite struct CredentialTests {
    @Test func tokenFileIsReReadWhenItChanges() async throws {
        let dir = try TempDir()
        let path = try dir.write("token", "first\n")
        let provider = CredentialProvider(credentials: .tokenFile(path: path, fallback: nil), server: "https://x", tls: TLSOptions())
        #expect(try await provider.resolve().authorization == "Bearer first")
        try dir.write("token", "second-token")  // atomic replace: a new inode
        #expect(try await provider.resolve().authorization == "Bearer second-token")
        try FileManager.default.removeItem(atPath: path)
        // While the file is being swapped, the last good token keeps working.
        #expect(try await provider.resolve().authorization == "Bearer second-token")
    }

    @Test func execPluginTokenIsCachedUntilExpiry() async throws {
        let dir = try TempDir()
        let counter = dir.path + "/count"
        let script = try dir.write(
            "plugin.sh",
            """
            #!/bin/sh
            n=$(cat "\(counter)" 2>/dev/null || echo 0)
            n=$((n+1))
            echo $n > "\(counter)"
            case "$KUBERNETES_EXEC_INFO" in *ExecCredential*) ;; *) echo "no exec info" >&2; exit 3;; esac
            cat <<EOF
            {"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
             "status":{"token":"tok-$n-$1-$REGION","expirationTimestamp":"2030-01-01T00:00:10Z"}}
            EOF
            """, executable: true)
        let plugin = ExecCredentialPlugin(
            apiVersion: "client.authentication.k8s.io/v1", command: script, args: ["arg"],
            env: [.init(name: "REGION", value: "eu")])
        let clock = TestClock(Date(timeIntervalSince1970: 1_893_456_000))  // 2030-01-01T00:00:00Z
        let provider = CredentialProvider(credentials: .exec(plugin), server: "https://x", tls: TLSOptions(), now: { clock.now })
        #expect(try await provider.resolve().authorization == "Bearer tok-1-arg-eu")
        #expect(try await provider.resolve().authorization == "Bearer tok-1-arg-eu")  // cached
        clock.advance(11)
        #expect(try await provider.resolve().authorization == "Bearer tok-2-arg-eu")  // expired: run again
        #expect(provider.invalidate())
        #expect(try await provider.resolve().authorization == "Bearer tok-3-arg-eu")  // after a 401
    }

    @Test func execPluginCertificatesAndV1beta1() async throws {
        let dir = try TempDir()
        let script = try dir.write(
            "plugin.sh",
            """
            #!/bin/sh
            echo '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"clientCertificateData":"CERT","clientKeyData":"KEY"}}'
            """, executable: true)
        let plugin = ExecCredentialPlugin(apiVersion: "client.authentication.k8s.io/v1beta1", command: script)
        let provider = CredentialProvider(credentials: .exec(plugin), server: "https://x", tls: TLSOptions())
        let resolved = try await provider.resolve()
        #expect(resolved.authorization == nil)
        #expect(resolved.clientCertificate == Array("CERT".utf8))
        #expect(resolved.clientKey == Array("KEY".utf8))
    }

    @Test(arguments: [
        ("echo not json", "not JSON"),
        ("echo '{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"status\":{\"token\":\"t\"}}'",
         "asks for client.authentication.k8s.io/v1"),
        ("echo '{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1\",\"status\":{}}'", "neither token"),
        ("echo '{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1\",\"status\":{\"token\":\"t\",\"expirationTimestamp\":\"soon\"}}'",
         "expirationTimestamp"),
        ("echo 'denied by policy' >&2; exit 7", "exited with status 7: denied by policy"),
    ])
    func badPluginOutputIsExplained(body: String, words: String) async throws {
        let dir = try TempDir()
        let script = try dir.write("plugin.sh", "#!/bin/sh\n\(body)\n", executable: true)
        let plugin = ExecCredentialPlugin(apiVersion: "client.authentication.k8s.io/v1", command: script, configFile: "/my/kubeconfig")
        let provider = CredentialProvider(credentials: .exec(plugin), server: "https://x", tls: TLSOptions())
        do {
            _ = try await provider.resolve()
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains(words), "\(error)")
            #expect(error.file == "/my/kubeconfig")
        }
    }

    /// "Text file busy" (ETXTBSY) when another process forked while the plugin was being written and still holds
    /// the descriptor: failed badPluginOutputIsExplained about one run in two under the parallel suite. The plugin is
    /// started again while that lasts; other errors are not retried.
    @Test func aBusyExecutableIsStartedAgain() async throws {
        let busy = NSError(
            domain: NSCocoaErrorDomain, code: 256,
            userInfo: [NSUnderlyingErrorKey: NSError(domain: NSPOSIXErrorDomain, code: Int(ETXTBSY))])
        let calls = Mutex(0)
        let value = try await retryingTextFileBusy { () async throws -> Int in
            let call = calls.withLock { $0 += 1; return $0 }
            if call < 3 { throw busy }
            return 42
        }
        #expect(value == 42 && calls.withLock { $0 } == 3)

        let other = NSError(domain: NSPOSIXErrorDomain, code: Int(ENOENT))
        calls.withLock { $0 = 0 }
        await #expect(throws: NSError.self) {
            try await retryingTextFileBusy { () async throws -> Int in
                calls.withLock { $0 += 1 }
                throw other
            }
        }
        #expect(calls.withLock { $0 } == 1)
        #expect(isTextFileBusy(busy) && !isTextFileBusy(other))
    }

    @Test func missingPluginShowsTheInstallHint() async throws {
        let plugin = ExecCredentialPlugin(
            apiVersion: "client.authentication.k8s.io/v1", command: "fledge-no-such-plugin", installHint: "brew install it")
        let provider = CredentialProvider(credentials: .exec(plugin), server: "https://x", tls: TLSOptions())
        do {
            _ = try await provider.resolve()
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("not found in PATH"))
            #expect(error.description.contains("brew install it"))
        }
    }
}

/// A settable clock for expiry tests.
final class TestClock: Sendable {
    private let value: Mutex<Date>
    init(_ start: Date) { value = Mutex(start) }
    var now: Date { value.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { value.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

import Synchronization
