import FledgeCore
import FledgeJSON
import FledgeKubernetes
import FledgeSandbox
import Foundation
import LocalPrometheus
import Testing

/// The package root, from this file's path.
let packageRoot: URL = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url
}()

/// A file that reads as a PEM CA bundle, for flags that check one (`--prometheus-ca`); written once per test process.
let pemFile: String = {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-test-ca-\(ProcessInfo.processInfo.processIdentifier).pem").path
    try? "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".write(toFile: path, atomically: true, encoding: .utf8)
    return path
}()

/// What one run of the built binary printed and how it exited.
struct CLIResult: CustomStringConvertible {
    var status: Int32
    var out: String
    var err: String
    var description: String { "exit \(status)\n--- stdout\n\(out)--- stderr\n\(err)" }
    /// stderr's lines, without the empty last one.
    var errLines: [String] { err.split(separator: "\n").map(String.init) }
}

/// A running `fledge` process; output goes to files so a full pipe can never block it.
final class RunningCLI: @unchecked Sendable {
    let process: Process
    let out: URL
    let err: URL

    init(process: Process, out: URL, err: URL) {
        self.process = process
        self.out = out
        self.err = err
    }

    /// Starts `executable` with only `environment`, no stdin, stdout and stderr into `out` and `err` (created).
    static func launch(
        _ executable: String, _ arguments: [String], environment: [String: String], out: URL, err: URL, directory: URL? = nil
    ) throws -> RunningCLI {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        if let directory { process.currentDirectoryURL = directory }
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return RunningCLI(process: process, out: out, err: err)
    }

    /// Waits for the exit by polling (no thread blocked in waitUntilExit).
    func finish() async throws -> CLIResult {
        while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        return CLIResult(
            status: process.terminationStatus, out: try String(contentsOf: out, encoding: .utf8), err: try String(contentsOf: err, encoding: .utf8))
    }

    /// Waits for the exit, stopping the process (and recording that) if it is still running after `limit`.
    func finish(orStopAfter limit: Duration) async throws -> CLIResult {
        let deadline = ContinuousClock.now + limit
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            // SIGKILL: a process still running may be one that ignores SIGTERM.
            kill(process.processIdentifier, SIGKILL)
            Issue.record("the process was still running after \(limit)")
        }
        return try await finish()
    }

    /// Waits until the process has printed `text` (a watch is then known to be following the object).
    func waitForOutput(containing text: String) async throws {
        try await waitFor(text, in: out)
    }

    /// Waits until the process has written `text` on stderr (its logs).
    func waitForError(containing text: String) async throws {
        try await waitFor(text, in: err)
    }

    private func waitFor(_ text: String, in file: URL) async throws {
        for _ in 0..<1500 {
            if try String(contentsOf: file, encoding: .utf8).contains(text) { return }
            if !process.isRunning { throw HarnessError("the process ended before printing \(text): \(try await finish())") }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw HarnessError("the process never printed \(text)")
    }

    func stop() {
        if process.isRunning { process.terminate() }
    }
}

/// The built `fledge` executable: next to the test bundle in the build products folder (FLEDGE_BINARY overrides).
enum FledgeBinary {
    struct Missing: Error, CustomStringConvertible {
        var path: String
        var description: String { "the fledge executable is not at \(path): build it first (swift build --build-tests builds it)" }
    }

    static func path() throws -> String {
        if let path = ProcessInfo.processInfo.environment["FLEDGE_BINARY"] { return path }
        let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [products.appendingPathComponent("fledge").path, packageRoot.appendingPathComponent(".build/debug/fledge").path]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        throw Missing(path: products.appendingPathComponent("fledge").path)
    }
}

/// A sandbox API server over HTTPS with RBAC, loaded with the CRD and rollouts/product-service/, kubeconfigs for
/// an admin, a read-only user and a refused token, and a runner for the built binary.
struct CLISandbox {
    static let adminToken = "admin-token"
    static let viewerToken = "viewer-token"

    let server: SandboxServer
    let folder: URL
    let binary: String
    /// Admin kubeconfig, namespace shop.
    let kubeconfig: String
    let client: KubernetesClient

    static func with(_ body: (CLISandbox) async throws -> Void) async throws {
        let binary = try FledgeBinary.path()
        let configuration = SandboxServer.Configuration(
            tls: try SandboxCertificates.generate(),
            tokens: [adminToken: .admin(), viewerToken: SandboxUser(name: "viewer", groups: ["system:authenticated"])],
            rbac: true, tickInterval: .milliseconds(20))
        let server = SandboxServer(configuration: configuration)
        try await server.start()
        let folder = URL(fileURLWithPath: try TemporaryDirectory.make(prefix: "fledge-cli"))
        do {
            let objects = try ManifestLoader.load(paths: [
                packageRoot.appendingPathComponent("deploy/crds").path, packageRoot.appendingPathComponent("rollouts/product-service").path,
            ])
            try await server.store.apply(objects.filter { $0["kind"]?.stringValue == "CustomResourceDefinition" })
            try await server.store.apply(objects.filter { $0["kind"]?.stringValue != "CustomResourceDefinition" })
            // The viewer may read Rollouts (and Events) in shop, nothing else.
            try await server.store.apply(try ManifestLoader.parseYAML("""
                apiVersion: rbac.authorization.k8s.io/v1
                kind: Role
                metadata: {name: rollout-viewer, namespace: shop}
                rules:
                - {apiGroups: [fledge.dev], resources: [rollouts], verbs: [get, list, watch]}
                ---
                apiVersion: rbac.authorization.k8s.io/v1
                kind: RoleBinding
                metadata: {name: rollout-viewer, namespace: shop}
                roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: rollout-viewer}
                subjects: [{kind: User, name: viewer}]
                """))
            await server.store.settleDeployments()
            let kubeconfig = folder.appendingPathComponent("admin.kubeconfig").path
            try server.kubeconfig(token: adminToken, namespace: "shop").write(toFile: kubeconfig, atomically: true, encoding: .utf8)
            let client = KubernetesClient(configuration: try Kubeconfig.load(paths: [kubeconfig]).configuration())
            try await body(CLISandbox(server: server, folder: folder, binary: binary, kubeconfig: kubeconfig, client: client))
        } catch {
            await server.stop()
            try? FileManager.default.removeItem(at: folder)
            throw error
        }
        await server.stop()
        try? FileManager.default.removeItem(at: folder)
    }

    /// A kubeconfig for this server with another token (nil: none), or another server URL.
    func kubeconfig(token: String?, server url: String? = nil, name: String) throws -> String {
        let path = folder.appendingPathComponent(name).path
        let text = SandboxServer.kubeconfig(
            server: url ?? server.url!.absoluteString, token: token,
            certificateAuthorityPEM: server.configuration.tls?.certificateAuthorityPEM, namespace: "shop")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Starts the binary (or `executable`, e.g. a kubectl-fledge link) with KUBECONFIG set to `kubeconfig`.
    /// `environment` adds variables to those.
    func start(
        _ arguments: [String], kubeconfig: String? = nil, executable: String? = nil, path: String? = nil, environment: [String: String] = [:]
    ) throws -> RunningCLI {
        let id = UUID().uuidString
        return try RunningCLI.launch(
            executable ?? binary, arguments,
            environment: ["KUBECONFIG": kubeconfig ?? self.kubeconfig, "HOME": folder.path, "PATH": path ?? "/usr/bin:/bin"]
                .merging(environment) { _, added in added },
            out: folder.appendingPathComponent("out-\(id)"), err: folder.appendingPathComponent("err-\(id)"))
    }

    func run(
        _ arguments: [String], kubeconfig: String? = nil, executable: String? = nil, path: String? = nil, environment: [String: String] = [:]
    ) async throws -> CLIResult {
        try await start(arguments, kubeconfig: kubeconfig, executable: executable, path: path, environment: environment).finish()
    }

    // MARK: - Reading and changing the Rollout directly

    static let rollouts = GroupResource(group: "fledge.dev", resource: "rollouts")

    func rollout(_ namespace: String = "shop", _ name: String = "product-service") async throws -> Rollout {
        let object = try requireObjectHelper(await server.store.object(Self.rollouts, namespace: namespace, name: name))
        return try Rollout(json: object)
    }

    /// Changes the Rollout's spec (as a user would with kubectl apply).
    func changeSpec(_ change: @escaping @Sendable (inout JSONValue) -> Void) async throws {
        try await server.store.modify(Self.rollouts, namespace: "shop", name: "product-service") { object in
            var spec = object["spec"] ?? .object([:])
            change(&spec)
            object["spec"] = spec
        }
    }

    /// Waits until `condition` holds for the stored Rollout (another process is about to write it).
    func waitForRollout(_ condition: (Rollout) -> Bool) async throws -> Rollout {
        for _ in 0..<1500 {
            let current = try await rollout()
            if condition(current) { return current }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw HarnessError("the Rollout never reached the expected state")
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func requireObjectHelper(_ value: JSONValue?) throws -> JSONValue {
    guard let value else { throw HarnessError("object not found in the sandbox") }
    return value
}

