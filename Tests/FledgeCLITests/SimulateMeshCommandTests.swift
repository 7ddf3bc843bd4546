import ArgumentParser
import FledgeMesh
import Foundation
import Testing

@testable import FledgeCLI

@Suite("fledge simulate-mesh command")
struct SimulateMeshCommandTests {
    static let required = ["-n", "shop", "--virtual-service", "product-service"]

    /// With an API server it could not reach, simulate-mesh ignored SIGTERM and Ctrl-C: the part that announces
    /// /metrics waited for the caches to fill and never heard the shutdown, so only SIGKILL stopped it.
    @Test func stopsOnSIGTERMWhileTheAPIServerCannotBeReached() async throws {
        try await CLISandbox.with { sandbox in
            // Nothing listens on port 1: every list is refused.
            let unreachable = try sandbox.kubeconfig(token: CLISandbox.adminToken, server: "https://127.0.0.1:1", name: "unreachable.kubeconfig")
            let mesh = try sandbox.start(["simulate-mesh"] + Self.required, kubeconfig: unreachable)
            try await mesh.waitForError(containing: "list/watch failed; retrying")
            kill(mesh.process.processIdentifier, SIGTERM)
            let result = try await mesh.finish(orStopAfter: .seconds(60))
            #expect(result.status == 0, "\(result)")
        }
    }

    /// A typo in a workload's name (product-servce-canary) changed nothing and said nothing; now a warning names it.
    @Test func aWorkloadNamedByMistakeIsNamed() async throws {
        #expect(
            SimulateMeshCommand.unmatched(
                ["product-service", "product-service-canary", "product-servce-canary", "checkout"], deployments: ["product-service"])
                == ["checkout", "product-servce-canary"])
        try await CLISandbox.with { sandbox in
            let mesh = try sandbox.start(
                ["simulate-mesh"] + Self.required + ["--error-rate", "product-servce-canary=0.05", "--p99-ms", "product-service-canary=900"])
            defer { mesh.stop() }
            try await mesh.waitForError(containing: "warning: --error-rate/--p99-ms/--median-ms name product-servce-canary, which is neither")
            let err = try String(contentsOf: mesh.err, encoding: .utf8)
            #expect(!err.contains("name product-service-canary"), "\(err)")
        }
    }

    /// A taken --port said "bind(descriptor:ptr:bytes:): Address already in use) (errno: 98)"; now as run and
    /// sandbox say it, naming the flag.
    @Test func aBusyPortNamesTheFlag() async throws {
        try await CLISandbox.with { sandbox in
            let busy = try #require(sandbox.server.url?.port)  // the test's own sandbox listens there
            let mesh = try sandbox.start(["simulate-mesh"] + Self.required + ["--port", "\(busy)"])
            let result = try await mesh.finish(orStopAfter: .seconds(60))
            #expect(result.status == 1, "\(result)")
            #expect(
                result.err.hasSuffix(
                    "Error: 127.0.0.1:\(busy) is already in use by another process; --port sets the port of /metrics: pick another, or 0 for a free one\n"),
                "\(result)")
        }
    }

    @Test func workloadOptionsBecomeBehaviours() throws {
        let command = try SimulateMeshCommand.parse(
            Self.required + [
                "--rps", "250", "--tagged-share", "0.1", "--error-rate", "product-service-canary=0.05",
                "--p99-ms", "product-service-canary=900", "--median-ms", "product-service=10", "--seed", "9",
                "--arrivals", "exact", "--port", "9464",
            ])
        let configuration = try command.meshConfiguration()
        #expect(configuration.requestsPerSecond == 250)
        #expect(configuration.taggedShare == 0.1)
        #expect(configuration.seed == 9)
        #expect(configuration.arrivals == .exact)
        #expect(configuration.metricsPort == 9464)
        let canary = try #require(configuration.behaviours["product-service-canary"])
        #expect(canary.errorRate == 0.05)
        #expect(canary.latency == LatencyDistribution(medianMs: 225, p99Ms: 900))
        let stable = try #require(configuration.behaviours["product-service"])
        #expect(stable.errorRate == 0)
        #expect(stable.latency == LatencyDistribution(medianMs: 10, p99Ms: 40))
    }

    @Test(arguments: [
        (["--error-rate", "canary"], "--error-rate"),
        (["--error-rate", "canary=1.5"], "--error-rate/--p99-ms/--median-ms for canary: error rate"),
        (["--p99-ms", "canary=abc"], "--p99-ms"),
        (["--median-ms", "canary=100", "--p99-ms", "canary=50"], "p99"),
        (["--tagged-share", "2"], "--tagged-share"),
        (["--tagged-header", "x-canary"], "--tagged-header"),
        (["--tick-ms", "0"], "--tick-ms"),
        (["--port", "70000"], "--port"),
    ])
    func badOptionsAreRejectedNamingTheOption(extra: [String], named: String) throws {
        do {
            _ = try SimulateMeshCommand.parse(Self.required + extra)
            Issue.record("\(extra) was accepted")
        } catch {
            #expect(SimulateMeshCommand.message(for: error).contains(named))
        }
    }

    @Test func needsANamespaceAndAVirtualService() {
        #expect(throws: (any Error).self) { try SimulateMeshCommand.parse(["-n", "shop"]) }
        #expect(throws: (any Error).self) { try SimulateMeshCommand.parse(["--virtual-service", "x"]) }
    }
}
