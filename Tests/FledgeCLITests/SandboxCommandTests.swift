import Foundation
import Testing

/// `fledge sandbox` as a process: what it says when it starts, and when it cannot.
@Suite(.serialized) struct SandboxCommandTests {
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
