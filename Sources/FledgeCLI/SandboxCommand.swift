import ArgumentParser
import FledgeCore
import FledgeSandbox
import Foundation
import Logging
import ServiceLifecycle

/// `fledge sandbox`: an in-process Kubernetes API server for local demos, in the foreground.
struct SandboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "Run a local Kubernetes API server that kubectl and Fledge can talk to.",
        discussion: """
            Serves the Kubernetes REST API (discovery, CRUD, patch, watch, status, CRDs, RBAC) on a \
            loopback address until interrupted (SIGINT/SIGTERM), and writes a kubeconfig for kubectl:

              fledge sandbox --kubeconfig-out sandbox.kubeconfig \\
                --load deploy/crds rollouts/product-service
              KUBECONFIG=sandbox.kubeconfig kubectl get crds

            Deployments simulate rollouts: their status, ReplicaSets and pods follow the spec after \
            --rollout-delay (`kubectl rollout status|history|undo` work); nothing runs in the pods.

            With --rbac, the loaded Roles and bindings decide every request but the admin's; the admin may \
            impersonate, so this checks what the controller's service account may do:

              kubectl auth can-i patch virtualservices.networking.istio.io -n default \\
                --as system:serviceaccount:fledge-system:fledge
            """)

    @Option(help: "Port to listen on (0 picks a free port).")
    var port: Int = 0

    @Option(help: "Address to listen on. Only loopback addresses are allowed.")
    var host: String = "127.0.0.1"

    @Option(help: "Where to write a kubeconfig for kubectl.")
    var kubeconfigOut: String = "sandbox.kubeconfig"

    @Flag(inversion: .prefixedNo, help: """
        Serve HTTPS with a certificate signed by a CA generated at start (openssl); the CA goes into the kubeconfig. \
        With --no-tls, kubectl sends no credentials (it never sends a token over plain HTTP), so every request acts as the admin.
        """)
    var tls = true

    @Option(parsing: .upToNextOption, help: "Manifest files or folders (YAML/JSON) to load at start, CRDs first; an object refused stops the start, naming its file (and document). In folders, files that are not Kubernetes manifests (a Grafana dashboard, kustomization.yaml) are skipped with a note.")
    var load: [String] = []

    @Option(help: "Bearer token for the admin user (default: a random one, written to the kubeconfig).")
    var token: String?

    @Flag(help: "Enforce RBAC for users other than the admin.")
    var rbac = false

    @Option(parsing: .unconditional, help: "Seconds after a Deployment change before its status reports the new replicas ready.")
    var rolloutDelay: Double = 2

    /// The longest `--rollout-delay`: an hour, longer than any rollout a sandbox is for.
    static let maximumRolloutDelay: Double = 3600

    func validate() throws {
        guard (0...65535).contains(port) else {
            throw ValidationError("--port must be between 0 and 65535, got \(port)")
        }
        guard ["127.0.0.1", "localhost", "::1"].contains(host) else {
            throw ValidationError("--host must be a loopback address (127.0.0.1, localhost or ::1), got \(host)")
        }
        // NaN fails every comparison, so the range check also refuses it (and inf, which would trap as milliseconds).
        guard (0...Self.maximumRolloutDelay).contains(rolloutDelay) else {
            throw ValidationError(
                "--rollout-delay must be a number of seconds from 0 to \(Int(Self.maximumRolloutDelay)) (an hour), got \(QueryCommand.decimal(rolloutDelay))")
        }
        if !tls, rbac || token != nil {
            throw ValidationError("--rbac and --token need TLS: kubectl sends no token over plain HTTP (drop --no-tls)")
        }
        if let token, token.isEmpty || token.contains(where: \.isWhitespace) {
            throw ValidationError("--token must be non-empty and contain no spaces")
        }
        if kubeconfigOut.isEmpty { throw ValidationError("--kubeconfig-out: must not be empty") }
        if let problem = OutputFile.problem(kubeconfigOut) { throw ValidationError("--kubeconfig-out: \(problem)") }
        for path in load where !FileManager.default.fileExists(atPath: path) {
            throw ValidationError("--load \(path): no such file or directory")
        }
    }

    func run() async throws {
        let logger = Logger(label: "fledge.sandbox")
        let adminToken = token ?? SandboxCommand.randomToken()
        var configuration = SandboxServer.Configuration(
            host: host == "localhost" ? "127.0.0.1" : host, port: port,
            // Without TLS kubectl sends no token, so there is nothing to authenticate.
            tokens: tls ? [adminToken: .admin("fledge-admin")] : [:], rbac: rbac,
            rolloutDelay: .milliseconds(RolloutDuration.milliseconds(clampingSeconds: rolloutDelay)))
        if tls { configuration.tls = try SandboxCertificates.generate() }
        let server = SandboxServer(configuration: configuration, logger: logger)
        // CRDs first, so the custom resources in the same folders can be created; an error names the file.
        // In folders, files that are not manifests (a Grafana dashboard, kustomization.yaml) are skipped, as lint does.
        var skipped: [ManifestLoader.Skipped] = []
        let objects = try ManifestLoader.loadManifests(paths: load, skipped: &skipped)
        for file in skipped { StandardError.write("fledge sandbox: \(file)") }
        // A path that gave no object (an empty file or folder) is said, not skipped in silence.
        for path in load where !objects.contains(where: { $0.source == path || $0.source.hasPrefix(path.hasSuffix("/") ? path : path + "/") }) {
            StandardError.write("fledge sandbox: --load \(path): no Kubernetes objects in it (empty, only comments, or no manifests)")
        }
        try await server.store.load(objects)

        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: server), .init(service: Announcer(server: server, kubeconfigPath: kubeconfigOut, token: adminToken, loaded: objects.count))],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        do {
            try await group.run()
        } catch SandboxError.cannotListen(let host, let port, let reason, let addressInUse) {
            throw CLIError(
                addressInUse
                    ? "\(host):\(port) is already in use by another process; --port sets the sandbox's port: pick another, or 0 for a free one"
                    : "cannot listen on \(host):\(port): \(reason) (--host sets the address, --port the port)")
        }
    }

    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(UInt8.random(in: 0...15, using: &generator), radix: 16) }.joined()
    }

    /// Waits until the server listens, writes the kubeconfig, says where it listens, then idles.
    struct Announcer: Service {
        let server: SandboxServer
        let kubeconfigPath: String
        let token: String
        let loaded: Int

        func run() async throws {
            while server.url == nil {
                try await Task.sleep(for: .milliseconds(20))
            }
            let url = server.url!
            let kubeconfig = server.kubeconfig(token: server.configuration.tls == nil ? nil : token)
            do {
                try OutputFile.write(Data(kubeconfig.utf8), to: kubeconfigPath)
            } catch let error as CLIError {
                throw CLIError("--kubeconfig-out: \(error.message)")
            }
            var lines = "fledge sandbox: Kubernetes API on \(url.absoluteString)\n"
            lines += "fledge sandbox: kubeconfig written to \(kubeconfigPath)  (export KUBECONFIG=\(kubeconfigPath))\n"
            if loaded > 0 { lines += "fledge sandbox: loaded \(loaded) object\(loaded == 1 ? "" : "s")\n" }
            lines += "fledge sandbox: press Ctrl-C to stop\n"
            FileHandle.standardOutput.write(Data(lines.utf8))
            try? await gracefulShutdown()
        }
    }
}
