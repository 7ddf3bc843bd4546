import FledgeController
import FledgeCore
import FledgeHTTP
import FledgeJSON
import FledgeKubernetes
import FledgeSandbox
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// The repository root, for the manifests under `rollouts/` and `deploy/`.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The in-process API server loaded with the CRD and the seed's `rollouts/product-service/` manifests, and an
/// admin client. `stop()` stops it and every controller started from it.
final class World: Sendable {
    let sandbox: SandboxServer
    let client: KubernetesClient
    let kubeconfigPath: String
    let directory: String
    private let controllers = Mutex<[RunningController]>([])

    static let token = "world-admin-token"

    init(rolloutDelay: Duration = .milliseconds(300), rbac: Bool = false, tokens: [String: SandboxUser] = [:]) async throws {
        var configuration = SandboxServer.Configuration(rbac: rbac, rolloutDelay: rolloutDelay)
        configuration.tls = try SandboxCertificates.generate()
        configuration.tokens = tokens.merging([World.token: .admin("admin")]) { a, _ in a }
        sandbox = SandboxServer(configuration: configuration)
        _ = try await sandbox.start()
        directory = NSTemporaryDirectory() + "fledge-world-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        kubeconfigPath = directory + "/kubeconfig"
        try sandbox.kubeconfig(token: World.token, namespace: "shop").write(toFile: kubeconfigPath, atomically: true, encoding: .utf8)
        client = KubernetesClient(configuration: try Kubeconfig.load(paths: [kubeconfigPath]).configuration())
        let objects = try ManifestLoader.load(paths: [repositoryRoot + "/deploy/crds", repositoryRoot + "/rollouts/product-service"])
        try await sandbox.store.apply(objects.filter { $0["kind"]?.stringValue == "CustomResourceDefinition" })
        try await sandbox.store.apply(objects.filter { $0["kind"]?.stringValue != "CustomResourceDefinition" })
    }

    /// A client with another token (for RBAC) from a kubeconfig written next to the admin's.
    func client(token: String) throws -> KubernetesClient {
        let path = directory + "/kubeconfig-\(token)"
        try sandbox.kubeconfig(token: token, namespace: "shop").write(toFile: path, atomically: true, encoding: .utf8)
        return KubernetesClient(configuration: try Kubeconfig.load(paths: [path]).configuration())
    }

    func stop() async {
        let running = controllers.withLock { all in
            defer { all.removeAll() }
            return all
        }
        for controller in running { await controller.stop() }
        await sandbox.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Starts a controller against this world.
    func startController(
        configure: (inout ControllerConfiguration) -> Void = { _ in }, analyzer: (any MetricsProvider)? = nil,
        writeGate: (@Sendable () -> Bool)? = nil, client: KubernetesClient? = nil, now: @escaping @Sendable () -> Date = { Date() },
        logger given: Logger? = nil
    ) -> RunningController {
        var configuration = ControllerConfiguration()
        configuration.analysisBatchWindow = .milliseconds(20)
        configuration.identity = "controller-\(UUID().uuidString.prefix(8))"
        configure(&configuration)
        var logger = Logger(label: "test.controller")
        logger.logLevel = ProcessInfo.processInfo.environment["FLEDGE_TEST_LOG"] != nil ? .debug : .critical
        if let given { logger = given }
        let controller = Controller(
            client: client ?? self.client, configuration: configuration, http: CurlHTTPClient(), analyzer: analyzer, logger: logger,
            now: now, writeGate: writeGate)
        let running = RunningController(controller: controller, logger: logger)
        controllers.withLock { $0.append(running) }
        return running
    }

    // MARK: - Reading and driving the rollout

    func rollout(_ name: String = "product-service") async throws -> JSONValue {
        try await client.get(.rollouts, namespace: "shop", name: name)
    }

    func phase(_ name: String = "product-service") async throws -> String? {
        try await rollout(name)[path: ["status", "phase"]]?.stringValue
    }

    func virtualService() async throws -> JSONValue {
        try await client.get(.virtualServices, namespace: "shop", name: "product-service")
    }

    func deployment(_ name: String) async throws -> JSONValue {
        try await client.get(.deployments, namespace: "shop", name: name)
    }

    /// Starts a rollout the way `fledge trigger` and GitOps do: by changing `spec.canary`.
    func trigger(image: String, rollout name: String = "product-service") async throws {
        _ = try await client.patch(.rollouts, namespace: "shop", name: name, .merge(["spec": ["canary": ["image": .string(image)]]]))
    }

    func request(_ kind: ManualRequest, rollout name: String = "product-service") async throws {
        _ = try await client.patch(
            .rollouts, namespace: "shop", name: name,
            .merge(["metadata": ["annotations": [kind.annotation: .string(UUID().uuidString)]]]))
    }

    func patchSpec(_ spec: JSONValue, rollout name: String = "product-service") async throws {
        _ = try await client.patch(.rollouts, namespace: "shop", name: name, .merge(["spec": spec]))
    }

    /// Polls until `condition` holds for the rollout; fails the test with the last status on timeout.
    @discardableResult
    func waitFor(
        _ what: String, timeout: Duration = .seconds(60), rollout name: String = "product-service",
        _ condition: (JSONValue) throws -> Bool
    ) async throws -> JSONValue {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var last: JSONValue = .null
        while ContinuousClock.now < deadline {
            last = try await rollout(name)
            if try condition(last) { return last }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("timed out waiting for \(what); status: \(last["status"]?.serializedString() ?? "none")")
        throw WorldError.timeout(what)
    }

    /// Whether the rollout is gone (its finalizer released) within `timeout`.
    func waitUntilDeleted(timeout: Duration, rollout name: String = "product-service") async throws -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            do {
                _ = try await rollout(name)
                try await Task.sleep(for: .milliseconds(100))
            } catch let error as KubernetesError where error.isNotFound {
                return true
            }
        }
        return false
    }

    func waitForPhase(_ phase: String, timeout: Duration = .seconds(60), rollout name: String = "product-service") async throws -> JSONValue {
        try await waitFor("phase \(phase)", timeout: timeout, rollout: name) { $0[path: ["status", "phase"]]?.stringValue == phase }
    }
}

enum WorldError: Error { case timeout(String) }

/// A controller running in its own service group; `stop()` shuts it down gracefully, `kill()` cancels it.
final class RunningController: Sendable {
    let controller: Controller
    private let task: Mutex<Task<Void, any Error>?> = Mutex(nil)
    private let group: ServiceGroup

    init(controller: Controller, logger: Logger) {
        self.controller = controller
        group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [.init(service: controller)], logger: logger))
        let group = self.group
        // The one background task per controller, ended by stop() or kill().
        task.withLock { $0 = Task { try await group.run() } }
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.withLock { $0 }?.value
    }

    /// Ends it abruptly, as SIGKILL would: whatever reconcile is in flight stops where it is.
    func kill() async {
        let task = self.task.withLock { $0 }
        task?.cancel()
        _ = try? await task?.value
    }
}

/// Measurements chosen by the test, per canary workload: the boundary `decide` sees, with the network left out.
/// The end-to-end suite uses a real Prometheus instead.
final class ScriptedMetrics: MetricsProvider {
    enum Behaviour: Sendable { case healthy, failing, noTraffic, down }
    private let behaviour = Mutex(Behaviour.healthy)
    let calls = Mutex(0)

    func set(_ b: Behaviour) { behaviour.withLock { $0 = b } }

    func measure(_ requests: [AnalysisRequest], at time: Date) async -> [IntervalResult] {
        calls.withLock { $0 += 1 }
        let b = behaviour.withLock { $0 }
        return requests.map { request in
            var metrics: [String: MetricSample] = [:]
            for metric in request.metrics {
                let outcome: MetricOutcome
                switch (b, metric.kind) {
                case (.healthy, .successRate): outcome = .value(99.9)
                case (.failing, .successRate): outcome = .value(90)
                case (_, .latency): outcome = b == .down ? .providerError("connection refused") : (b == .noTraffic ? .noData : .value(120))
                case (.noTraffic, _): outcome = .noData
                case (.down, _): outcome = .providerError("connection refused")
                default: outcome = .value(1)
                }
                metrics[metric.name] = MetricSample(outcome, requests: b == .noTraffic ? 0 : 500)
            }
            return IntervalResult(time: Timestamp(time), requests: b == .down ? nil : (b == .noTraffic ? 0 : 500), metrics: metrics)
        }
    }
}

/// A short version of the seed's Rollout so a whole rollout takes seconds.
let fastSpec: JSONValue = [
    "stages": [["weight": 10, "hold": "2s"], ["weight": 25, "hold": "2s"], ["weight": 50, "hold": "2s"], ["weight": 100, "hold": "2s"]],
    "analysis": ["interval": "1s", "failureLimit": 3, "minRequests": 20, "providerErrorLimit": 5],
]

/// The managed route's weights: (stable, canary).
func weights(_ virtualService: JSONValue) -> (Int64?, Int64?) {
    let route = virtualService[path: ["spec", "http"]]?[1]?["route"]
    return (route?[0]?["weight"]?.intValue, route?[1]?["weight"]?.intValue)
}

func image(_ deployment: JSONValue) -> String? {
    deployment[path: ["spec", "template", "spec", "containers"]]?[0]?["image"]?.stringValue
}

/// The VirtualService with the managed route's weights set to (stable, canary).
func settingWeights(_ virtualService: JSONValue, _ stable: Int64, _ canary: Int64) -> JSONValue {
    var vs = virtualService
    guard var http = vs[path: ["spec", "http"]]?.arrayValue, http.count > 1, var route = http[1]["route"]?.arrayValue, route.count == 2 else {
        return vs
    }
    route[0]["weight"] = .int(stable)
    route[1]["weight"] = .int(canary)
    http[1]["route"] = .array(route)
    vs[path: ["spec", "http"]] = .array(http)
    return vs
}
