import Foundation
import LocalPrometheus
import Testing

/// `fledge sandbox` itself; the server it runs is FledgeSandbox's, tested there.
@Suite struct SandboxCommandTests {
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
}
