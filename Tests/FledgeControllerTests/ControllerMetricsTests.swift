import FledgeCore
import FledgeHTTP
import FledgeKubernetes
import Logging
import Testing

@testable import FledgeController

@Suite struct ControllerMetricsTests {
    /// `/metrics` streams the per-rollout series in chunks; however the chunks fall, the text is the same and every
    /// series is there once.
    @Test(arguments: [1, 80, 64 * 1024])
    func chunksMakeUpTheWholeTextWhateverTheirSize(chunkSize: Int) {
        let metrics = ControllerMetrics()
        for index in 0..<25 {
            var status = RolloutStatus(phase: index.isMultiple(of: 2) ? .healthy : .progressing)
            status.canaryWeight = index
            metrics.record(namespace: "shop", rollout: "service-\(index)", status: status)
        }
        let chunks = Array(metrics.textChunks(chunkSize: chunkSize))
        let text = chunks.joined()
        #expect(text == metrics.text())
        for index in 0..<25 {
            #expect(text.components(separatedBy: "fledge_rollout_canary_weight{namespace=\"shop\",rollout=\"service-\(index)\"} \(index)\n").count == 2)
        }
        #expect(text.components(separatedBy: "# TYPE fledge_rollout_phase gauge").count == 2)
        if chunkSize == 1 { #expect(chunks.count > 25) }
    }

    /// A 409 Conflict is a stale cache, retried at once: it is counted in `fledge_kubernetes_conflicts_total`, not as a
    /// request error, so that `fledge_kubernetes_request_errors_total` only moves when something is wrong.
    @Test func conflictsAreNotCountedAsErrors() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        // Not running: only the failures below reach its metrics.
        var quiet = Logger(label: "test.controller")
        quiet.logLevel = .critical
        let controller = Controller(
            client: world.client, configuration: ControllerConfiguration(), http: CurlHTTPClient(), analyzer: ScriptedMetrics(), logger: quiet)
        let object = try await world.rollout()
        let rollout = try Rollout(json: object)
        let key = "shop/product-service"
        let conflict = KubernetesError(
            kind: .api, code: 409, reason: "Conflict", message: "the object has been modified", verb: "patch", resource: "virtualservices.networking.istio.io")
        await controller.handle(.kubernetes(action: "update weights", conflict), key: key, rollout: rollout, object: object)
        await controller.handle(.kubernetes(action: "update weights", conflict), key: key, rollout: rollout, object: object)
        var text = controller.metrics.text()
        #expect(text.contains(#"fledge_kubernetes_conflicts_total{verb="patch"} 2"#), "\(text)")
        #expect(!text.contains("fledge_kubernetes_request_errors_total{"), "\(text)")

        let failure = KubernetesError(kind: .api, code: 500, reason: "InternalError", message: "etcd is down", verb: "patch")
        await controller.handle(.kubernetes(action: "update weights", failure), key: key, rollout: rollout, object: object)
        text = controller.metrics.text()
        #expect(text.contains(#"fledge_kubernetes_request_errors_total{verb="patch"} 1"#), "\(text)")
        #expect(text.contains(#"fledge_kubernetes_conflicts_total{verb="patch"} 2"#), "\(text)")
    }
}
