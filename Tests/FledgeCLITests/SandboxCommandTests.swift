import Foundation
import LocalPrometheus
import Testing

/// `fledge sandbox` as a process: what it says when it starts, and when it cannot.
@Suite(.serialized) struct SandboxCommandTests {
    /// A manifest `--load` cannot create stops the command with the file (and document) named.
    @Test func loadErrorsNameTheFileAndTheDocument() async throws {
        let binary = try FledgeBinary.path()
        let folder = URL(fileURLWithPath: try TemporaryDirectory.make(prefix: "fledge-sandbox-load"))
        defer { try? FileManager.default.removeItem(at: folder) }
        let bad = folder.appendingPathComponent("rollout.yaml").path
        try """
            apiVersion: v1
            kind: Namespace
            metadata: {name: shop}
            ---
            apiVersion: fledge.dev/v1alpha1
            kind: Rollout
            metadata: {name: bad, namespace: shop}
            spec: {target: {deployment: x}, stages: [{weight: 10, hold: "-5s"}]}
            """.write(toFile: bad, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "sandbox", "--no-tls", "--kubeconfig-out", folder.appendingPathComponent("kubeconfig").path,
            "--load", packageRoot.appendingPathComponent("deploy/crds").path, bad,
        ]
        process.environment = ["HOME": folder.path, "PATH": "/usr/bin:/bin"]
        let out = folder.appendingPathComponent("out")
        let err = folder.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let result = try await RunningCLI(process: process, out: out, err: err).finish(orStopAfter: .seconds(60))
        #expect(result.status != 0, "\(result)")
        #expect(result.err.contains(#"\#(bad) (document 2): Rollout "bad" is invalid: spec.stages[0].hold: Invalid value: "-5s""#), "\(result)")
        #expect(!result.out.contains("Kubernetes API on"), "\(result)")
    }

    @Test func saysWhatItLoadedAndWhereItListens() async throws {
        try await CLISandbox.with { sandbox in
            let kubeconfig = sandbox.folder.appendingPathComponent("own-sandbox.kubeconfig").path
            let namespace = packageRoot.appendingPathComponent("rollouts/product-service/00-namespace.yaml").path
            let process = try sandbox.start(["sandbox", "--port", "0", "--no-tls", "--load", namespace, "--kubeconfig-out", kubeconfig])
            defer { process.stop() }
            try await process.waitForOutput(containing: "press Ctrl-C")
            let out = try String(contentsOf: process.out, encoding: .utf8)
            #expect(out.contains("fledge sandbox: loaded 1 object\n"), "\(out)")
        }
    }

    /// A taken port names the address, the port and the flag that sets it (was: bind(descriptor:ptr:bytes:): …).
    @Test func aBusyPortNamesTheAddressAndTheFlag() async throws {
        try await CLISandbox.with { sandbox in
            let busy = try #require(sandbox.server.url?.port)  // the test's own sandbox listens there
            let kubeconfig = sandbox.folder.appendingPathComponent("own-sandbox.kubeconfig").path
            let result = try await sandbox.run(["sandbox", "--port", String(busy), "--no-tls", "--kubeconfig-out", kubeconfig])
            #expect(result.status != 0)
            #expect(result.errLines.last == "Error: 127.0.0.1:\(busy) is already in use by another process; --port sets the sandbox's port: pick another, or 0 for a free one", "\(result)")
        }
    }
}
