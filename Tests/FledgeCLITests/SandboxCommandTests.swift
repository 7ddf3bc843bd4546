import Foundation
import LocalPrometheus
import TestSupport
import Testing

/// `fledge sandbox` as a process: what it says when it starts, and when it cannot.
@Suite(.serialized) struct SandboxCommandTests {
    /// A manifest `--load` cannot create stops the command with the file (and document) named.
    @Test func loadErrorsNameTheFileAndTheDocument() async throws {
        let binary = try FledgeBinary.path()
        let folder = URL(fileURLWithPath: try TemporaryDirectory.make(prefix: "fledge-sandbox-load"))
        defer { try? FileManager.default.removeItem(at: folder) }
        let bad = folder.appendingPathComponent("rollout.yaml").path
        try namespaceAndInvalidRolloutManifest.write(toFile: bad, atomically: true, encoding: .utf8)
        let running = try RunningCLI.launch(
            binary,
            [
                "sandbox", "--no-tls", "--kubeconfig-out", folder.appendingPathComponent("kubeconfig").path,
                "--load", packageRoot.appendingPathComponent("deploy/crds").path, bad,
            ],
            environment: ["HOME": folder.path, "PATH": "/usr/bin:/bin"], out: folder.appendingPathComponent("out"),
            err: folder.appendingPathComponent("err"))
        let result = try await running.finish(orStopAfter: .seconds(60))
        #expect(result.status != 0, "\(result)")
        #expect(result.err.contains(#"\#(bad) (document 2): Rollout.fledge.dev "bad" is invalid: spec.stages[0].hold: Invalid value: "-5s""#), "\(result)")
        #expect(!result.out.contains("Kubernetes API on"), "\(result)")
    }

    /// The README's --load without deploy/crds: the Rollout's kind is not served. The error says to load the CRD
    /// (it only said no resource is served for the kind).
    @Test func aCustomResourceWithoutItsDefinitionSaysToLoadIt() async throws {
        let binary = try FledgeBinary.path()
        let folder = URL(fileURLWithPath: try TemporaryDirectory.make(prefix: "fledge-sandbox-nocrd"))
        defer { try? FileManager.default.removeItem(at: folder) }
        let running = try RunningCLI.launch(
            binary,
            [
                "sandbox", "--no-tls", "--kubeconfig-out", folder.appendingPathComponent("kubeconfig").path,
                "--load", packageRoot.appendingPathComponent("rollouts/product-service").path,
            ],
            environment: ["HOME": folder.path, "PATH": "/usr/bin:/bin"], out: folder.appendingPathComponent("out"),
            err: folder.appendingPathComponent("err"))
        let result = try await running.finish(orStopAfter: .seconds(60))
        #expect(result.status == 1, "\(result)")
        #expect(
            result.err.contains(
                #"rollout.yaml: Rollout "product-service": no resource is served for kind "Rollout" in "fledge.dev/v1alpha1": no CustomResourceDefinition defines it; load the Rollout's too (deploy/crds)"#),
            "\(result)")
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
