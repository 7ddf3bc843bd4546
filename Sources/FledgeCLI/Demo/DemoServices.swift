import FledgeController
import FledgeCore
import FledgeJSON
import FledgeKubernetes
import FledgeMesh
import FledgeSandbox
import FledgeReport
import FledgePrometheus
import FledgeHTTP
import Foundation
import LocalPrometheus
import ServiceLifecycle
import Synchronization

/// The manifests the demo loads: the CRD and the seed's product-service, with the timings optionally shortened.
enum DemoManifests {
    static let required = ["deploy/crds", "rollouts/product-service"]

    /// The folder holding `deploy/crds` and `rollouts/product-service`: the one given, else the current folder, else
    /// the checkout this binary was built from (so `swift run fledge demo` works from any folder of it).
    static func folder(given: String?) throws(CLIError) -> String {
        func holdsManifests(_ folder: String) -> Bool {
            required.allSatisfy { FileManager.default.fileExists(atPath: folder + "/" + $0) }
        }
        if let given {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: given, isDirectory: &isFolder) else {
                throw CLIError("--manifests \(given): no such folder (give the Fledge checkout, which holds \(required.joined(separator: " and ")))")
            }
            guard isFolder.boolValue else {
                throw CLIError("--manifests \(given): is a file, not a folder (give the Fledge checkout, which holds \(required.joined(separator: " and ")))")
            }
            guard holdsManifests(given) else {
                throw CLIError("--manifests \(given): expected the folders \(required.joined(separator: " and ")) in it (the Fledge checkout)")
            }
            return given
        }
        let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
        for candidate in [FileManager.default.currentDirectoryPath, checkout] where holdsManifests(candidate) {
            return candidate
        }
        throw CLIError(
            "cannot find \(required.joined(separator: " and ")): run fledge demo from the Fledge checkout, or pass --manifests FOLDER")
    }

    /// Every object under the two folders, the Rollout's stage holds and analysis interval replaced when given.
    static func load(root: String, hold: Duration?, interval: Duration?) throws(CLIError) -> [JSONValue] {
        var objects: [JSONValue]
        do {
            objects = try ManifestLoader.load(paths: required.map { root + "/" + $0 })
        } catch {
            throw CLIError("cannot load the demo's manifests from \(root): \(error)")
        }
        guard let index = objects.firstIndex(where: { isDemoRollout($0) }) else {
            throw CLIError("\(root)/rollouts/product-service holds no Rollout named \(DemoDriver.rollout) in namespace \(DemoDriver.namespace)")
        }
        if let hold {
            let text = JSONValue.string(RolloutDuration(milliseconds: hold.milliseconds).description)
            let stages = objects[index][path: ["spec", "stages"]]?.arrayValue ?? []
            objects[index][path: ["spec", "stages"]] = .array(stages.map { stage in
                var stage = stage
                stage["hold"] = text
                return stage
            })
        }
        if let interval {
            objects[index][path: ["spec", "analysis", "interval"]] = .string(RolloutDuration(milliseconds: interval.milliseconds).description)
        }
        return objects
    }

    static func isDemoRollout(_ object: JSONValue) -> Bool {
        object["kind"]?.stringValue == "Rollout" && object[path: ["metadata", "name"]]?.stringValue == DemoDriver.rollout
            && object[path: ["metadata", "namespace"]]?.stringValue == DemoDriver.namespace
    }
}

/// A real Prometheus (a child process) as a Service: started when the group runs, killed when it shuts down or is
/// cancelled, so no prometheus outlives the demo.
final class PrometheusService: Service, Sendable {
    let server: PrometheusServer
    private let ready = Mutex(false)

    init(server: PrometheusServer) { self.server = server }

    func run() async throws {
        defer { server.stop() }
        try await server.start()
        ready.withLock { $0 = true }
        try? await gracefulShutdown()
    }

    var isReady: Bool { ready.withLock { $0 } }
}

/// What the demo prints last with `-o json`.
struct DemoSummary: Sendable, Equatable {
    var rollout: String
    var phase: String
    var revision: String?
    var stableImage: String?
    var canaryWeight: Int
    var durationSeconds: Int

    /// One line, the keys in the documented order.
    var json: String {
        let fields: [(String, JSONValue)] = [
            ("rollout", .string(rollout)), ("phase", .string(phase)), ("revision", revision.map(JSONValue.string) ?? .null),
            ("stableImage", stableImage.map(JSONValue.string) ?? .null), ("canaryWeight", .int(Int64(canaryWeight))),
            ("durationSeconds", .int(Int64(durationSeconds))),
        ]
        return "{" + fields.map { "\(JSONValue.string($0.0).serializedString()): \($0.1.serializedString())" }.joined(separator: ", ") + "}"
    }
}

/// Waits for the servers, triggers the rollout, shows it until it ends, and then lets the group shut down.
final class DemoDriver: Service, Sendable {
    static let namespace = "shop"
    static let rollout = "product-service"

    enum Outcome: Sendable {
        case finished(DemoSummary)
        case timedOut(phase: String)
        case interrupted
        case failed(CLIError)
    }

    let cluster: Cluster
    let sandbox: SandboxServer
    let mesh: MeshSimulator
    let prometheus: PrometheusService
    let controller: Controller
    let image: String
    let kubeconfigPath: String
    let metricsURL: String
    let timeout: Duration
    let json: Bool
    private let result = Mutex<Outcome?>(nil)

    init(
        cluster: Cluster, sandbox: SandboxServer, mesh: MeshSimulator, prometheus: PrometheusService, controller: Controller, image: String,
        kubeconfigPath: String, metricsURL: String, timeout: Duration, json: Bool
    ) {
        self.cluster = cluster
        self.sandbox = sandbox
        self.mesh = mesh
        self.prometheus = prometheus
        self.controller = controller
        self.image = image
        self.kubeconfigPath = kubeconfigPath
        self.metricsURL = metricsURL
        self.timeout = timeout
        self.json = json
    }

    /// How the demo ended; nil while it runs (and when the group stopped before the driver ran).
    var outcome: Outcome? { result.withLock { $0 } }

    /// Human-readable text: stdout, or stderr with `-o json` (stdout then carries only the summary).
    private var sink: FileHandle { json ? .standardError : .standardOutput }
    private func say(_ text: String) { sink.write(Data((text + "\n").utf8)) }

    func run() async throws {
        let outcome: Outcome
        do {
            outcome = try await cancelWhenGracefulShutdown { try await self.drive() }
        } catch is CancellationError {
            outcome = .interrupted
        } catch let error as CLIError {
            outcome = .failed(error)
        } catch {
            outcome = .failed(CLIError("\(error)"))
        }
        result.withLock { $0 = $0 ?? outcome }
    }

    private func drive() async throws -> Outcome {
        let started = ContinuousClock.now
        try await waitUntil("the API server to listen") { self.sandbox.url != nil }
        guard await mesh.waitUntilReady() else { throw CancellationError() }
        try await waitUntil("Prometheus to be ready") { self.prometheus.isReady }
        try await waitUntil("the controller's caches to sync") { self.controller.isReady }
        let header = self.header(ready: started.duration(to: .now))
        say(header)

        let revision = try await trigger()
        let triggered = ContinuousClock.now
        say("Triggered: \(cluster.namespace)/\(Self.rollout) → \(image)\(revision.map { " (revision \($0))" } ?? "")\n")

        let printer = StatusPrinter(
            cluster: cluster, output: .table, terminal: isatty(json ? STDERR_FILENO : STDOUT_FILENO) == 1, sink: sink, header: header + "\n")
        let ended = try await cluster.waitForRollout(Self.rollout, timeout: timeout) { fetched throws(CLIError) -> FetchedRollout? in
            await printer.show(fetched)
            return StatusCommand.outcome(fetched) != nil && fetched.status.phase != .healthy ? fetched : nil
        }
        guard let ended else {
            // The watch also ends with nil when the group is shutting down (Ctrl-C): that is no timeout.
            try Task.checkCancellation()
            return .timedOut(phase: await printer.lastPhase ?? "unknown")
        }
        let duration = triggered.duration(to: .now)
        await printer.drainFinalEvents()
        let status = ended.status
        let stableImage = try? await stableDeploymentImage(ended)
        let summary = DemoSummary(
            rollout: "\(cluster.namespace)/\(Self.rollout)", phase: status.phase.rawValue, revision: status.revision, stableImage: stableImage,
            canaryWeight: status.canaryWeight, durationSeconds: Int((Double(duration.milliseconds) / 1000).rounded()))
        say(conclusion(summary, message: status.message))
        do {
            let path = try await writeReport(for: ended, prometheusURL: prometheus.server.url)
            say("Report: \(path)  (open it in a browser: the canary weight and every metric against its threshold, with each decision)\n")
        } catch {
            say("Report: not written: \(error)\n")
        }
        return .finished(summary)
    }

    // MARK: - The rollout report

    /// Where the demo's rollout report goes: next to the kubeconfig, `fledge-demo-report.html`.
    var reportPath: String {
        URL(fileURLWithPath: kubeconfigPath).deletingLastPathComponent().appendingPathComponent("fledge-demo-report.html").path
    }

    /// Renders the report of the rollout that just ended into `reportPath` (as `fledge report` does) and returns
    /// the path. Called while the API server (status, Events) and Prometheus (the metric series) still run.
    func writeReport(for rollout: FetchedRollout, prometheusURL: String) async throws -> String {
        let gatherer = ReportGatherer(
            kubernetes: cluster.client, prometheus: PrometheusClient(baseURL: prometheusURL, http: CurlHTTPClient()))
        let data: RolloutReportData
        do {
            data = try await gatherer.gather(rollout: rollout.name, namespace: rollout.namespace, now: Date().timeIntervalSince1970)
        } catch {
            throw CLIError("cannot gather the report of \(rollout.namespace)/\(rollout.name): \(error.message)")
        }
        try OutputFile.write(Data(ReportRenderer.html(data).utf8), to: reportPath)
        return reportPath
    }

    /// Where the servers are, and how to look with kubectl and Prometheus while it runs.
    private func header(ready after: Duration) -> String {
        let shares = MeshSimulator.describe(mesh.traffic.expectedShares(cluster: mesh.clusterState()))
        return """
            fledge demo: everything runs in this process (ready in \(RolloutDuration(milliseconds: after.milliseconds)))
              Kubernetes API  \(sandbox.url?.absoluteString ?? "?")   kubeconfig \(kubeconfigPath)
                              watch it: KUBECONFIG=\(kubeconfigPath) kubectl get rollouts -n \(cluster.namespace) -w
              Prometheus      \(prometheus.server.url) (pid \(prometheus.server.processIdentifier.map(String.init) ?? "?"))
              Mesh            \(mesh.configuration.requestsPerSecond) req/s through VirtualService \(Self.rollout): \(shares)  (metrics \(mesh.metricsURL))
              Controller      metrics \(metricsURL)
              Ctrl-C stops everything.
            """
    }

    /// Starts the rollout as `fledge trigger` does: a new `spec.canary`; returns the revision it starts.
    private func trigger() async throws -> String? {
        let fetched = try await cluster.rollout(Self.rollout)
        var changed = fetched.object
        changed[path: ["spec", "canary"]] = ["image": .string(image)]
        let plan = try CoreBridge.plan(try FetchedRollout(changed).rollout)
        let observed = await cluster.observed(for: fetched.rollout)
        if let observed, case let revisions = try CoreBridge.revision(plan: plan, observed: observed, namespace: cluster.namespace), revisions.revision == revisions.stableRevision {
            // The rollout would stay Healthy and the demo would wait for nothing.
            throw CLIError("--image \(image): Deployment \(plan.target) already runs it; nothing to roll out (give another image)")
        }
        do {
            _ = try await cluster.client.patch(
                .rollouts, namespace: cluster.namespace, name: Self.rollout, .json([.add(path: "/spec/canary", value: ["image": .string(image)])]),
                fieldManager: "fledge-demo")
        } catch {
            throw cluster.failure(error, rollout: Self.rollout)
        }
        guard let observed else { return nil }
        return try CoreBridge.revision(plan: plan, observed: observed, namespace: cluster.namespace).revision
    }

    private func stableDeploymentImage(_ rollout: FetchedRollout) async throws -> String? {
        let name = rollout.rollout.spec.target?.deployment ?? Self.rollout
        let deployment = try await cluster.client.get(.deployments, namespace: cluster.namespace, name: name)
        return deployment[path: ["spec", "template", "spec", "containers"]]?[0]?["image"]?.stringValue
    }

    private func conclusion(_ summary: DemoSummary, message: String?) -> String {
        let took = "\(summary.durationSeconds)s after the trigger"
        switch summary.phase {
        case Phase.succeeded.rawValue:
            return "\nPromoted: \(summary.rollout) runs \(summary.stableImage ?? "?") (revision \(summary.revision ?? "?")), \(took)."
        case Phase.failed.rawValue:
            return "\nRolled back: \(summary.rollout) still runs \(summary.stableImage ?? "?"), \(took). \(message ?? "")"
        default:
            return "\nEnded \(summary.phase): \(summary.rollout) runs \(summary.stableImage ?? "?"), \(took). \(message ?? "")"
        }
    }

    private func waitUntil(_ what: String, within limit: Duration = .seconds(60), _ condition: @Sendable () -> Bool) async throws {
        let deadline = ContinuousClock.now.advanced(by: limit)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw CLIError("gave up waiting \(RolloutDuration(milliseconds: limit.milliseconds)) for \(what)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}
