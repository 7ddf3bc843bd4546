// deploy/ and rollouts/: every manifest lints, `kubectl apply -k deploy/` (real kubectl) applies
// cleanly to the in-process API server, and the controller's RBAC allows what it does and nothing else.
import FledgeJSON
import FledgeKubernetes
import FledgeLint
import FledgeSandbox
import Foundation
import LocalPrometheus
import FledgeHTTP
import FledgePrometheus
import Testing

enum Repository {
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// Kubernetes manifests under deploy/ (kustomization.yaml and the Grafana dashboard are not objects).
    static var deployManifests: [String] {
        get throws {
            let deploy = root + "/deploy"
            return try FileManager.default.subpathsOfDirectory(atPath: deploy)
                .filter { $0.hasSuffix(".yaml") && $0 != "kustomization.yaml" }
                .sorted().map { deploy + "/" + $0 }
        }
    }

    static var rolloutFolders: [String] {
        get throws {
            try FileManager.default.contentsOfDirectory(atPath: root + "/rollouts").sorted().map { root + "/rollouts/" + $0 }
        }
    }
}

/// The Prometheus Operator's ServiceMonitor CRD, reduced to what kubectl needs (test fixture only:
/// deploy/ does not install the operator's CRDs).
let serviceMonitorCRD = """
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: servicemonitors.monitoring.coreos.com
    spec:
      group: monitoring.coreos.com
      scope: Namespaced
      names: {plural: servicemonitors, singular: servicemonitor, kind: ServiceMonitor, listKind: ServiceMonitorList, shortNames: [smon]}
      versions:
      - name: v1
        served: true
        storage: true
        schema:
          openAPIV3Schema:
            type: object
            x-kubernetes-preserve-unknown-fields: true

    """

/// Real kubectl against a sandbox, with its own HOME and discovery cache.
struct KubectlRunner {
    let path: String
    let folder: String
    let kubeconfig: String

    static func locate() throws -> String {
        for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/usr/local/bin").split(separator: ":") {
            let candidate = "\(folder)/kubectl"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw LocalServerError("kubectl is not installed (Debian: apt-get install kubernetes-client, or ./scripts/setup.sh)")
    }

    /// Runs kubectl to completion without blocking a thread of the cooperative pool (it has as many
    /// threads as cores, and the sandbox answering kubectl needs them).
    func run(_ arguments: [String]) async throws -> (status: Int32, out: String, err: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["--kubeconfig", kubeconfig, "--cache-dir", folder + "/cache"] + arguments
        process.environment = ["HOME": folder, "PATH": "/usr/bin:/bin"]
        let out = folder + "/out-\(UUID().uuidString)"
        let err = folder + "/err-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        process.standardInput = FileHandle.nullDevice
        try await withCheckedThrowingContinuation { (finished: CheckedContinuation<Void, any Error>) in
            process.terminationHandler = { _ in finished.resume() }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                finished.resume(throwing: error)
            }
        }
        return (process.terminationStatus, try String(contentsOfFile: out, encoding: .utf8), try String(contentsOfFile: err, encoding: .utf8))
    }
}

@Suite(.serialized) struct DeployManifestTests {
    @Test func everyManifestInDeployAndRolloutsPassesLint() throws {
        let deploy = Linter.lint(paths: try Repository.deployManifests)
        #expect(deploy.files.count >= 7)
        #expect(!deploy.hasErrors, "\(deploy.findings)")
        let folders = try Repository.rolloutFolders
        #expect(folders.count >= 3)
        for folder in folders {
            let report = Linter.lint(paths: [folder])
            #expect(!report.hasErrors, "\(folder): \(report.findings)")
            let objects = try ManifestLoader.load(paths: [folder])
            #expect(objects.contains { $0["kind"]?.stringValue == "Rollout" }, "\(folder) has a Rollout")
        }
        // The two examples show what their names say.
        let manual = try ManifestLoader.load(paths: [Repository.root + "/rollouts/checkout-manual-approval"])
            .first { $0["kind"]?.stringValue == "Rollout" }
        #expect(manual?[path: ["spec", "stages"]]?.arrayValue?.contains { $0["approval"]?.stringValue == "manual" } == true)
        let custom = try ManifestLoader.load(paths: [Repository.root + "/rollouts/search-custom-metric"])
            .first { $0["kind"]?.stringValue == "Rollout" }
        let query = custom?[path: ["spec", "analysis", "metrics"]]?.arrayValue?.compactMap { $0["query"]?.stringValue }.first
        #expect(query?.contains("{{workload}}") == true && query?.contains("{{interval}}") == true)
    }

    @Test func kubectlApplyKustomizeAppliesCleanlyAndTheRBACIsExactlyWhatTheControllerUses() async throws {
        let kubectl = try KubectlRunner.locate()
        let folder = NSTemporaryDirectory() + "fledge-deploy-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }

        let configuration = SandboxServer.Configuration(
            tls: try SandboxCertificates.generate(),
            tokens: ["admin-token": .admin(), "controller-token": .serviceAccount(namespace: "fledge-system", name: "fledge")],
            rbac: true)
        let server = SandboxServer(configuration: configuration)
        try await server.start()
        do {
            let adminConfig = folder + "/admin.kubeconfig"
            try server.kubeconfig(token: "admin-token").write(toFile: adminConfig, atomically: true, encoding: .utf8)
            let runner = KubectlRunner(path: kubectl, folder: folder, kubeconfig: adminConfig)
            let crdFile = folder + "/servicemonitor-crd.yaml"
            try serviceMonitorCRD.write(toFile: crdFile, atomically: true, encoding: .utf8)
            let crd = try await runner.run(["apply", "-f", crdFile])
            #expect(crd.status == 0, "\(crd.err)")

            let applied = try await runner.run(["apply", "-k", Repository.root + "/deploy"])
            #expect(applied.status == 0, "kubectl apply -k deploy/: \(applied.err)")
            #expect(applied.err.isEmpty, "\(applied.err)")
            for line in [
                "customresourcedefinition.apiextensions.k8s.io/rollouts.fledge.dev", "namespace/fledge-system",
                "serviceaccount/fledge", "role.rbac.authorization.k8s.io/fledge-leader-election",
                "clusterrole.rbac.authorization.k8s.io/fledge-controller", "rolebinding.rbac.authorization.k8s.io/fledge-leader-election",
                "clusterrolebinding.rbac.authorization.k8s.io/fledge-controller", "service/fledge-controller-metrics",
                "deployment.apps/fledge-controller", "servicemonitor.monitoring.coreos.com/fledge-controller",
            ] {
                #expect(applied.out.contains("\(line) created"), "\(line) in \(applied.out)")
            }
            // Applying again changes nothing.
            let again = try await runner.run(["apply", "-k", Repository.root + "/deploy"])
            #expect(again.status == 0, "\(again.err)")
            #expect(!again.out.contains("created") && !again.out.contains("configured"), "\(again.out)")

            let deployment = try #require(await server.store.object(.deployments, namespace: "fledge-system", name: "fledge-controller"))
            #expect(deployment[path: ["spec", "replicas"]]?.intValue == 2)
            #expect(deployment[path: ["spec", "template", "spec", "containers"]]?[0]?["image"]?.stringValue == "registry.example/fledge:0.1.0")

            try await provesTheControllerRBAC(server: server, folder: folder)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    /// As the controller's service account: every call the controller makes is allowed, anything else is forbidden.
    func provesTheControllerRBAC(server: SandboxServer, folder: String) async throws {
        let seed = try ManifestLoader.load(paths: [Repository.root + "/rollouts/product-service"])
        try await server.store.apply(seed)
        let path = folder + "/controller.kubeconfig"
        try server.kubeconfig(token: "controller-token", namespace: "shop").write(toFile: path, atomically: true, encoding: .utf8)
        let client = KubernetesClient(configuration: try Kubeconfig.load(paths: [path]).configuration())

        // Allowed: the controller's calls (the end-to-end suite also runs the controller itself under these rules).
        #expect(try await client.list(.rollouts, namespace: .all).items.count == 1)
        var rollout = try #require(await server.store.object(GroupResource(group: "fledge.dev", resource: "rollouts"), namespace: "shop", name: "product-service"))
        rollout["status"] = ["phase": "Healthy", "observedGeneration": 1]
        rollout = try await client.update(.rollouts, rollout, subresource: "status")
        // The traffic finalizer, merge-patched with the resourceVersion it was computed from.
        rollout = try await client.patch(
            .rollouts, namespace: "shop", name: "product-service",
            .merge(["metadata": ["finalizers": ["fledge.dev/traffic"], "resourceVersion": rollout[path: ["metadata", "resourceVersion"]] ?? .null]]))
        _ = try await client.list(.deployments, namespace: .all)
        var canary = try #require(await server.store.object(.deployments, namespace: "shop", name: "product-service"))
        canary["metadata"] = ["name": "product-service-canary", "namespace": "shop"]
        canary["status"] = nil
        _ = try await client.create(.deployments, canary)
        _ = try await client.patch(.deployments, namespace: "shop", name: "product-service-canary", .merge(["spec": ["replicas": 0]]))
        _ = try await client.patch(
            .virtualServices, namespace: "shop", name: "product-service",
            .json([.replace(path: "/spec/http/1/route/0/weight", value: 100), .replace(path: "/spec/http/1/route/1/weight", value: 0)]))
        _ = try await client.get(.virtualServices, namespace: "shop", name: "product-service")
        _ = try await client.list(.destinationRules, namespace: .all)
        var lease: JSONValue = [
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": ["name": "fledge-controller", "namespace": "fledge-system"],
            "spec": ["holderIdentity": "fledge-controller-0", "leaseDurationSeconds": 15],
        ]
        lease = try await client.create(.leases, lease)
        lease = try await client.get(.leases, namespace: "fledge-system", name: "fledge-controller")
        lease[path: ["spec", "holderIdentity"]] = "fledge-controller-1"
        _ = try await client.update(.leases, lease)
        _ = try await client.create(.events, [
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": ["name": "product-service.1", "namespace": "shop"],
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "fledge.dev/controller",
            "reportingInstance": "fledge-controller-0", "action": "Progressing", "reason": "StageAdvanced", "type": "Normal",
            "note": "canary weight 10", "regarding": ["apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout", "name": "product-service", "namespace": "shop"],
        ])
        // An Event owed in status since before a restart is read by name, to learn whether it is recorded already.
        _ = try await client.get(.events, namespace: "shop", name: "product-service.1")

        // Forbidden: everything else.
        func forbidden(_ what: String, _ call: () async throws -> Void) async {
            do {
                try await call()
                Issue.record("\(what) was allowed")
            } catch let error as KubernetesError {
                #expect(error.isForbidden, "\(what): \(error)")
            } catch {
                Issue.record("\(what): \(error)")
            }
        }
        // (RBAC cannot narrow a patch to metadata.finalizers: that the controller writes nothing else of a Rollout
        // but its status is the core's rule, tested there.)
        await forbidden("read a Deployment outside the cache") { _ = try await client.get(.deployments, namespace: "shop", name: "product-service") }
        await forbidden("a core/v1 Event") {
            _ = try await client.create(.coreEvents, [
                "apiVersion": "v1", "kind": "Event", "metadata": ["name": "product-service.2", "namespace": "shop"],
                "reason": "StageAdvanced", "type": "Normal", "message": "canary weight 10",
                "involvedObject": ["apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout", "name": "product-service", "namespace": "shop"],
            ])
        }
        await forbidden("delete a Deployment") { try await client.delete(.deployments, namespace: "shop", name: "product-service-canary") }
        await forbidden("delete a Rollout") { try await client.delete(.rollouts, namespace: "shop", name: "product-service") }
        await forbidden("create a Rollout") {
            var copy = rollout
            copy["metadata"] = ["name": "other", "namespace": "shop"]
            _ = try await client.create(.rollouts, copy)
        }
        await forbidden("read Secrets") { _ = try await client.list(.secrets, namespace: .all) }
        await forbidden("list Pods") { _ = try await client.list(.pods, namespace: .named("shop")) }
        await forbidden("patch a DestinationRule") {
            _ = try await client.patch(.destinationRules, namespace: "shop", name: "product-service", .merge(["spec": ["host": "x"]]))
        }
        await forbidden("delete a VirtualService") { try await client.delete(.virtualServices, namespace: "shop", name: "product-service") }
        await forbidden("a Lease outside fledge-system") {
            var elsewhere = lease
            elsewhere["metadata"] = ["name": "fledge-controller", "namespace": "shop"]
            _ = try await client.create(.leases, elsewhere)
        }
        await forbidden("list Leases") { _ = try await client.list(.leases, namespace: .named("fledge-system")) }
        await forbidden("list Events") { _ = try await client.list(.events, namespace: .named("shop")) }
        await forbidden("edit its own RBAC") {
            _ = try await client.patch(
                .init(group: "rbac.authorization.k8s.io", version: "v1", resource: "clusterroles", namespaced: false),
                name: "fledge-controller", .merge(["rules": []]))
        }
    }

    /// Every panel query of the dashboard is PromQL a real Prometheus accepts, and every controller metric has a panel.
    @Test func theGrafanaDashboardQueriesAreValidPromQLAndCoverEveryControllerMetric() async throws {
        let text = try String(contentsOfFile: Repository.root + "/deploy/grafana/fledge-dashboard.json", encoding: .utf8)
        let dashboard = try JSONValue(parsing: Array(text.utf8))
        #expect(dashboard["uid"]?.stringValue == "fledge-controller")
        var expressions: [String] = []
        for panel in dashboard["panels"]?.arrayValue ?? [] {
            for target in panel["targets"]?.arrayValue ?? [] {
                if let expr = target["expr"]?.stringValue { expressions.append(expr) }
            }
        }
        for annotation in dashboard[path: ["annotations", "list"]]?.arrayValue ?? [] {
            if let expr = annotation["expr"]?.stringValue { expressions.append(expr) }
        }
        for variable in dashboard[path: ["templating", "list"]]?.arrayValue ?? [] {
            if let query = variable["definition"]?.stringValue, query.hasPrefix("label_values(") {
                // label_values(metric{…}, label) is Grafana's; the selector inside must be valid PromQL.
                let inner = query.dropFirst("label_values(".count).split(separator: ",").dropLast().joined(separator: ",")
                expressions.append(String(inner))
            }
        }
        for metric in [
            "fledge_rollout_phase", "fledge_rollout_canary_weight", "fledge_analysis_metric_value", "fledge_analysis_checks_total",
            "fledge_reconcile_duration_seconds", "fledge_kubernetes_request_errors_total", "fledge_prometheus_request_errors_total",
            "fledge_leader", "fledge_cache_bytes", "fledge_cache_objects", "fledge_cache_lists_total",
        ] {
            #expect(expressions.contains { $0.contains(metric) }, "no panel shows \(metric)")
        }

        let prometheus = try PrometheusServer()
        defer { prometheus.stop() }
        try await prometheus.start()
        let client = PrometheusClient(baseURL: prometheus.url, http: CurlHTTPClient())
        for expression in expressions {
            let promql = expression
                .replacingOccurrences(of: "$namespace", with: ".*").replacingOccurrences(of: "$rollout", with: ".*")
                .replacingOccurrences(of: "$__rate_interval", with: "1m").replacingOccurrences(of: "$__range", with: "1h")
            do {
                _ = try await client.query(promql)
            } catch {
                Issue.record("dashboard query rejected: \(promql): \(error)")
            }
        }
    }
}
