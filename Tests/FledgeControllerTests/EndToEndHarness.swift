import FledgeController
import FledgeCore
import FledgeJSON
import FledgeKubernetes
import FledgeMesh
import FledgeSandbox
import Foundation
import LocalPrometheus
import Logging
import Synchronization
import Testing

/// Everything real that a rollout touches: the in-process API server with the seed's manifests, the mesh
/// simulator following the VirtualService, a real Prometheus scraping it every second, and the controller.
final class Stack: Sendable {
    let world: World
    let mesh: MeshSimulator
    let prometheus: PrometheusServer
    let prometheusData: String
    /// The controller's client: deploy/'s service account.
    let controllerClient: KubernetesClient
    static let controllerToken = "fledge-controller-token"
    private let meshTask: Mutex<Task<Void, any Error>?> = Mutex(nil)

    /// The short rollout every scenario uses: analysis every 2 s over a 2 s window, four stages of 4 s. The judge
    /// allows a 1 % absolute margin (the success-rate guardrail's), so a healthy canary is accepted in seconds: with
    /// the default 0.1 pp margin a clean canary at 50 req/s needs ~1,200 requests (~25 s) at the first stage alone,
    /// which passes alone (~60 s to Succeeded) but not within these scenarios' timeouts on a busy machine.
    static let spec: JSONValue = [
        "stages": [["weight": 10, "hold": "4s"], ["weight": 25, "hold": "4s"], ["weight": 50, "hold": "4s"], ["weight": 100, "hold": "4s"]],
        "analysis": [
            "interval": "2s", "failureLimit": 3, "minRequests": 10, "providerErrorLimit": 100, "noData": "inconclusive",
            "metrics": [["name": "success-rate", "min": 99], ["name": "latency-p99", "max": 500]],
            "judge": ["errorRateAbsoluteMargin": 0.01],
        ],
        "progressDeadline": "10m",
    ]

    init(spec: JSONValue = Stack.spec, rps: Double = 500, stable: WorkloadBehaviour = WorkloadBehaviour(), canary: WorkloadBehaviour = WorkloadBehaviour()) async throws {
        // RBAC enforced: the controller runs as deploy/'s service account under exactly deploy/rbac.yaml.
        world = try await World(
            rolloutDelay: .milliseconds(500), rbac: true,
            tokens: [Stack.controllerToken: .serviceAccount(namespace: "fledge-system", name: "fledge")])
        let rbac = try ManifestLoader.load(paths: ["namespace.yaml", "serviceaccount.yaml", "rbac.yaml"].map { repositoryRoot + "/deploy/" + $0 })
        try await world.sandbox.store.apply(rbac)
        controllerClient = try world.client(token: Stack.controllerToken)
        try await world.patchSpec(spec)
        var configuration = MeshConfiguration(
            namespace: "shop", virtualService: "product-service", requestsPerSecond: rps, seed: 7,
            behaviours: ["product-service-canary": canary, "product-service": stable])
        configuration.tickInterval = .milliseconds(100)
        var logger = Logger(label: "test.mesh")
        logger.logLevel = .critical
        mesh = try MeshSimulator(configuration: configuration, kubernetes: world.client, logger: logger)
        let mesh = self.mesh
        meshTask.withLock { $0 = Task { try await mesh.run() } }
        prometheusData = NSTemporaryDirectory() + "fledge-e2e-prom-\(UUID().uuidString)"
        prometheus = try PrometheusServer(
            configuration: .init(
                scrapeTargets: [.init(job: "mesh", address: mesh.metricsAddress)], scrapeInterval: "1s", dataDirectory: prometheusData,
                port: try LoopbackPort.free()))
        try await prometheus.start()
        _ = await mesh.waitUntilReady()
    }

    func startController(configure: (inout ControllerConfiguration) -> Void = { _ in }) -> RunningController {
        let url = prometheus.url
        return world.startController(
            configure: {
                $0.prometheusURL = url
                configure(&$0)
            }, client: controllerClient)
    }

    func stop() async {
        let task = meshTask.withLock { $0 }
        task?.cancel()
        _ = try? await task?.value
        await world.stop()
        prometheus.stop()
        try? FileManager.default.removeItem(atPath: prometheusData)
    }
}

/// Runs `body` with a started stack and stops it afterwards, also when `body` throws.
func withStack(
    spec: JSONValue = Stack.spec, rps: Double = 500, stable: WorkloadBehaviour = WorkloadBehaviour(), canary: WorkloadBehaviour = WorkloadBehaviour(),
    _ body: (Stack) async throws -> Void
) async throws {
    let stack = try await Stack(spec: spec, rps: rps, stable: stable, canary: canary)
    do {
        try await body(stack)
    } catch {
        await stack.stop()
        throw error
    }
    await stack.stop()
}

func lastHistory(_ rollout: JSONValue) -> JSONValue? { rollout[path: ["status", "history"]]?.arrayValue?.last }

func eventNotes(_ world: World, reason: String) async throws -> [String] {
    try await world.client.list(.events, namespace: "shop").items.filter { $0["reason"]?.stringValue == reason }.compactMap { $0["note"]?.stringValue }
}
