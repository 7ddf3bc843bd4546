import FledgeController
import FledgeCore
import FledgeHTTP
import FledgeJSON
import FledgeKubernetes
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// Measurements chosen by the test at the controller's `MetricsProvider` boundary (the controller's own
/// end-to-end suite runs a real Prometheus and mesh); everything else is the real controller.
final class SwitchableMetrics: MetricsProvider {
    let healthy = Mutex(true)

    func measure(_ requests: [AnalysisRequest], at time: Date) async -> [IntervalResult] {
        let ok = healthy.withLock { $0 }
        return requests.map { request in
            var metrics: [String: MetricSample] = [:]
            for metric in request.metrics {
                switch metric.kind {
                case .successRate: metrics[metric.name] = MetricSample(.value(ok ? 99.9 : 80), requests: 500)
                case .latency: metrics[metric.name] = MetricSample(.value(120), requests: 500)
                case .custom: metrics[metric.name] = MetricSample(.value(0), requests: 500)
                }
            }
            return IntervalResult(time: Timestamp(time), requests: 500, metrics: metrics)
        }
    }
}

/// The built `fledge` binary driving rollouts that the real controller (FledgeController, in this process) runs,
/// against the in-process API server: what an on-call engineer or a pipeline sees.
@Suite("CLI with the real controller", .serialized)
struct RealControllerCLITests {
    static let newImage = "registry.example/product-service:2.0.0"

    /// Runs `body` with a controller reconciling the sandbox, and stops it afterwards.
    static func withController(_ sandbox: CLISandbox, metrics: SwitchableMetrics, _ body: () async throws -> Void) async throws {
        let client = KubernetesClient(configuration: try Kubeconfig.load(paths: [sandbox.kubeconfig]).configuration())
        var configuration = ControllerConfiguration()
        configuration.analysisBatchWindow = .milliseconds(20)
        var logger = Logger(label: "test.controller")
        logger.logLevel = .critical
        let controller = Controller(client: client, configuration: configuration, http: CurlHTTPClient(), analyzer: metrics, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: controller)], logger: logger))
        let task = Task { try await group.run() }
        do {
            try await body()
        } catch {
            await group.triggerGracefulShutdown()
            _ = try? await task.value
            throw error
        }
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }

    static let fast: @Sendable (inout JSONValue) -> Void = {
        $0["stages"] = [["weight": 20, "hold": "1s"], ["weight": 100, "hold": "1s"]]
        $0[path: ["analysis", "interval"]] = "1s"
    }

    @Test func triggerThenStatusWatchExitsZeroWhenPromoted() async throws {
        try await CLISandbox.with { sandbox in
            try await sandbox.changeSpec(Self.fast)
            try await Self.withController(sandbox, metrics: SwitchableMetrics()) {
                let trigger = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
                #expect(trigger.status == 0 && trigger.out.contains("revision"), "\(trigger)")
                let watch = try await sandbox.run(["status", "product-service", "--watch", "--timeout", "60s"])
                #expect(watch.status == 0, "\(watch)")
                #expect(watch.out.contains("Succeeded"), "\(watch)")
                let listed = try await sandbox.run(["list", "-A"])
                #expect(listed.out.contains("product-service") && listed.out.contains("Succeeded"), "\(listed)")
            }
        }
    }

    @Test func promoteAtAManualGateAndAbortMidStage() async throws {
        try await CLISandbox.with { sandbox in
            try await sandbox.changeSpec {
                $0["stages"] = [["weight": 10, "hold": "1s", "approval": "manual"], ["weight": 50, "hold": "60s"], ["weight": 100, "hold": "1s"]]
                $0[path: ["analysis", "interval"]] = "1s"
            }
            try await Self.withController(sandbox, metrics: SwitchableMetrics()) {
                _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
                _ = try await sandbox.waitForRollout { $0.status?.phase == .paused }
                let promote = try await sandbox.run(["promote", "product-service", "--timeout", "20s"])
                #expect(promote.status == 0 && promote.out.contains("promote accepted"), "\(promote)")
                _ = try await sandbox.waitForRollout { $0.status?.canaryWeight == 50 }
                let abort = try await sandbox.run(["abort", "product-service", "--reason", "on-call saw errors", "--timeout", "20s"])
                #expect(abort.status == 0 && abort.out.contains("abort accepted"), "\(abort)")
                let watch = try await sandbox.run(["status", "product-service", "--watch", "--timeout", "60s"])
                #expect(watch.status == 1 && watch.out.contains("Aborted"), "\(watch)")
                #expect(try await sandbox.rollout().status?.canaryWeight == 0)
            }
        }
    }

    @Test func retryAfterAFailure() async throws {
        try await CLISandbox.with { sandbox in
            try await sandbox.changeSpec(Self.fast)
            let metrics = SwitchableMetrics()
            metrics.healthy.withLock { $0 = false }
            try await Self.withController(sandbox, metrics: metrics) {
                _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
                let failed = try await sandbox.run(["status", "product-service", "--watch", "--timeout", "60s"])
                #expect(failed.status == 1 && failed.out.contains("Failed"), "\(failed)")
                metrics.healthy.withLock { $0 = true }
                let retry = try await sandbox.run(["retry", "product-service", "--timeout", "20s"])
                #expect(retry.status == 0 && retry.out.contains("retry accepted"), "\(retry)")
                let watch = try await sandbox.run(["status", "product-service", "--watch", "--timeout", "60s"])
                #expect(watch.status == 0 && watch.out.contains("Succeeded"), "\(watch)")
            }
        }
    }
}
