import FledgeController
import FledgeCore
import FledgeHTTP
import FledgeJSON
import FledgeKubernetes
import FledgeSandbox
import Foundation
import Hummingbird
import LocalPrometheus
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// A webhook receiver on loopback whose answer the test sets.
final class GateServer: Sendable {
    final class State: Sendable {
        let status = Mutex<HTTPResponse.Status>(.serviceUnavailable)
        let bodies = Mutex<[JSONValue]>([])
    }
    let state = State()
    let port: Int
    private let group: ServiceGroup
    private let task: Mutex<Task<Void, any Error>?> = Mutex(nil)

    /// Listens on `port` (nil: a free one), e.g. one a Rollout was told about while nothing listened there.
    init(port: Int? = nil) throws {
        let port = try port ?? LoopbackPort.free()
        self.port = port
        let router = Router()
        let state = self.state
        router.post("gate") { request, context -> Response in
            let buffer = try await request.body.collect(upTo: 1 << 20)
            if let json = try? JSONValue(parsing: Array(buffer.readableBytesView)) { state.bodies.withLock { $0.append(json) } }
            return Response(status: state.status.withLock { $0 })
        }
        var logger = Logger(label: "test.gate")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
        group = ServiceGroup(configuration: .init(services: [.init(service: app)], logger: logger))
        let group = self.group
        task.withLock { $0 = Task { try await group.run() } }
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.withLock { $0 }?.value
    }
}

@Suite(.serialized) struct WebhookAndMetricsTests {
    /// Gives the reference Rollout `stages` and one webhook that calls `gate`, starts the controller and triggers a
    /// new image.
    static func startGated(
        world: World, gate: GateServer, webhook name: String, type: String, stages: JSONValue
    ) async throws {
        try await world.patchSpec(
            fastSpec.applyingMergePatch([
                "stages": stages,
                "webhooks": [["name": .string(name), "type": .string(type), "url": .string("http://127.0.0.1:\(gate.port)/gate"), "timeout": "2s"]],
            ]))
        _ = world.startController(analyzer: ScriptedMetrics())
        try await world.trigger(image: "registry.example/product-service:2.0.0")
    }

    @Test func aStageGateHoldsTheRolloutUntilItAnswers2xx() async throws {
        let gate = try GateServer()
        let world = try await World()
        defer { Task { await gate.stop(); await world.stop() } }
        try await Self.startGated(
            world: world, gate: gate, webhook: "load-test", type: "stage-gate", stages: [["weight": 10, "hold": "1s"], ["weight": 100, "hold": "1s"]])
        let held = try await world.waitFor("held at the gate") {
            let message = $0[path: ["status", "message"]]?.stringValue ?? ""
            return message.contains("load-test") && message.contains("503") && $0[path: ["status", "stage"]]?.intValue == 0
        }
        #expect(held[path: ["status", "phase"]] == "Progressing")
        try await Task.sleep(for: .seconds(2))
        #expect(try await world.phase() == "Progressing")
        gate.state.status.withLock { $0 = .ok }
        _ = try await world.waitForPhase("Succeeded", timeout: .seconds(60))
        let body = try #require(gate.state.bodies.withLock { $0.first })
        #expect(body["name"] == "product-service" && body["type"] == "stage-gate" && body["revision"]?.stringValue?.count == 16)
        // Failed gates are retried, once per interval, not in a loop.
        #expect(gate.state.bodies.withLock { $0.count } < 20)
    }

    /// A Rollout deleted and created again under the same name is a new object: the old one's webhook answers
    /// (and measurements) are not its own, even when the revision is the same and both watch events arrive together.
    @Test func aRolloutCreatedAgainUnderTheSameNameAsksItsWebhooksAgain() async throws {
        let gate = try GateServer()
        gate.state.status.withLock { $0 = .ok }
        let world = try await World()
        defer { Task { await gate.stop(); await world.stop() } }
        try await Self.startGated(
            world: world, gate: gate, webhook: "smoke", type: "pre-rollout", stages: [["weight": 10, "hold": "60s"], ["weight": 100, "hold": "1s"]])
        // (The reference example starts at 90/10 before anything is triggered: the weight alone proves nothing.)
        let first = try await world.waitFor("canary at 10% after the smoke test passed") {
            gate.state.bodies.withLock { $0.count } == 1 && $0[path: ["status", "canaryWeight"]]?.intValue == 10
                && $0[path: ["status", "phase"]] == "Progressing" && $0[path: ["status", "message"]]?.stringValue?.contains("stage 1/2") == true
        }
        let calls = gate.state.bodies.withLock { $0.count }
        #expect(calls == 1)

        // The smoke test now fails; the same Rollout (same spec, so the same revision) is deleted and created again
        // back to back.
        gate.state.status.withLock { $0 = .serviceUnavailable }
        let rollouts = GroupResource(group: "fledge.dev", resource: "rollouts")
        var again = first
        again["status"] = nil
        for field in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"] { again[path: ["metadata", field]] = nil }
        // In flight, it holds the traffic finalizer: the controller takes the canary's weight off before it goes.
        // Drop the finalizer with the deletion, so both watch events can still arrive in one batch.
        _ = try await world.sandbox.store.modify(rollouts, namespace: "shop", name: "product-service") { $0[path: ["metadata", "finalizers"]] = nil }
        _ = try await world.sandbox.store.remove(rollouts, namespace: "shop", name: "product-service")
        _ = try await world.sandbox.store.apply([again])
        let recreated = try await world.rollout()
        #expect(recreated[path: ["metadata", "uid"]] != first[path: ["metadata", "uid"]])

        let failed = try await world.waitFor("the new Rollout asked the smoke test itself") { _ in gate.state.bodies.withLock { $0.count } > calls }
        #expect(failed[path: ["status", "revision"]] == nil || failed[path: ["status", "revision"]] == first[path: ["status", "revision"]])
        // Its answer (503) decides, not the old Rollout's pass: the new one never gets to promote.
        let rolledBack = try await world.waitFor("rolled back on the failed smoke test") {
            ["RollingBack", "Failed"].contains($0[path: ["status", "phase"]]?.stringValue ?? "")
        }
        #expect(rolledBack[path: ["status", "phase"]] != "Succeeded")
    }

    /// Deleting a Rollout drops everything the controller kept for it: its series, its work and its dependents.
    @Test func aDeletedRolloutLeavesNothingBehind() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(fastSpec)
        let running = world.startController(analyzer: ScriptedMetrics())
        _ = try await world.waitForPhase("Healthy")
        let series = #"rollout="product-service""#
        let metrics = running.controller.metrics
        for _ in 0..<100 where !metrics.text().contains(series) { try await Task.sleep(for: .milliseconds(100)) }
        #expect(metrics.text().contains(series))

        _ = try await world.sandbox.store.remove(GroupResource(group: "fledge.dev", resource: "rollouts"), namespace: "shop", name: "product-service")
        for _ in 0..<100 where metrics.text().contains(series) { try await Task.sleep(for: .milliseconds(100)) }
        #expect(!metrics.text().contains(series), "\(metrics.text())")
        #expect(running.controller.resyncPass() == 0)

        // The Deployment it named changing now concerns no Rollout. (A reconcile queued before the deletion may
        // still run, and find nothing, as may one for the canary Deployment the deletion garbage-collects: wait until
        // none has run for a second and a half, which a loaded machine needs.)
        var reconciles = running.controller.counts.reconciles
        for _ in 0..<20 {
            try await Task.sleep(for: .milliseconds(1500))
            if running.controller.counts.reconciles == reconciles { break }
            reconciles = running.controller.counts.reconciles
        }
        _ = try await world.client.patch(
            .deployments, namespace: "shop", name: "product-service", .merge(["metadata": ["annotations": ["example.com/touched": "yes"]]]))
        try await Task.sleep(for: .seconds(1))
        #expect(running.controller.counts.reconciles == reconciles)
        #expect(running.controller.resyncPass() == 0)
    }

    @Test func healthReadinessAndMetricsEndpoints() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        let running = world.startController(analyzer: ScriptedMetrics())
        let port = try LoopbackPort.free()
        var logger = Logger(label: "test.health")
        logger.logLevel = .critical
        let server = HealthServer(controller: running.controller, host: "127.0.0.1", port: port, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: server)], logger: logger))
        let task = Task { try await group.run() }
        defer { Task { await group.triggerGracefulShutdown(); _ = try? await task.value } }
        let http = CurlHTTPClient()
        let base = "http://127.0.0.1:\(port)"
        var ready = 0
        for _ in 0..<100 {
            ready = (try? await http.send(FledgeHTTP.HTTPRequest(url: base + "/readyz")))?.status ?? 0
            if ready == 200 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(ready == 200)
        #expect(try await http.send(FledgeHTTP.HTTPRequest(url: base + "/healthz")).status == 200)
        _ = try await world.waitForPhase("Healthy")
        // The series is recorded at the end of the reconcile that wrote the status (after its Events).
        let line = #"fledge_rollout_phase{namespace="shop",rollout="product-service",phase="Healthy"} 1"#
        var text = ""
        for _ in 0..<100 where !text.contains(line) {
            text = try await http.send(FledgeHTTP.HTTPRequest(url: base + "/metrics")).bodyText
            if !text.contains(line) { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(text.contains(#"fledge_rollout_phase{namespace="shop",rollout="product-service",phase="Healthy"} 1"#), "\(text)")
        #expect(text.contains(#"fledge_rollout_canary_weight{namespace="shop",rollout="product-service"}"#))
        #expect(text.contains("fledge_reconcile_duration_seconds_bucket"))
        #expect(text.contains("fledge_leader 1"))
        // The caches hold the reference example: one Rollout, its stable and canary Deployments, one VirtualService.
        #expect(text.contains(#"fledge_cache_objects{resource="rollouts.fledge.dev"} 1"#), "\(text)")
        #expect(text.contains(#"fledge_cache_objects{resource="virtualservices.networking.istio.io"} 1"#))
        #expect(text.contains(#"fledge_cache_lists_total{resource="deployments.apps"} 1"#))
        let rolloutBytes = text.split(separator: "\n").first { $0.hasPrefix(#"fledge_cache_bytes{resource="rollouts.fledge.dev"}"#) }
        #expect((rolloutBytes?.split(separator: " ").last).flatMap { Int($0) } ?? 0 > 0, "\(text)")
    }
}
