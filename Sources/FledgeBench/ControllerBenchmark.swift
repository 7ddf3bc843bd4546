import ArgumentParser
import FledgeController
import FledgeCore
import FledgeHTTP
import FledgeJSON
import FledgeKubernetes
import FledgeSandbox
import Foundation
import LocalPrometheus
import Logging
import ServiceLifecycle
import Synchronization

/// `fledge-bench controller`: the controller at scale, against the in-process API server holding N Rollouts (each
/// with its Deployment, VirtualService and DestinationRule): resident memory of `fledge run`, CPU of one
/// reconcile pass over idle rollouts, API reads in steady state, Prometheus queries per tick, abort-to-write time.
struct ControllerBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "controller",
        abstract: "Controller at 1,000 and 10,000 Rollouts: RSS, reconcile-pass CPU, steady-state reads, queries per tick, abort latency.")

    @Option(parsing: .upToNextOption, help: "Rollout counts to measure.")
    var rollouts: [Int] = [1000, 10_000]

    @Option(parsing: .upToNextOption, help: "Progressing rollout counts for the queries-per-tick measurement.")
    var progressing: [Int] = [10, 100, 1000]

    @Option(help: "Seconds of steady state to count API reads over.")
    var steadySeconds: Int = 10

    @Option(help: "The fledge executable for the resident-memory measurement (default: next to this one).")
    var fledge: String?

    @Flag(help: "Start `fledge run` before the Rollouts and their objects exist (the usual install order): its caches then fill from watch events, not from the first list.")
    var fledgeFirst = false

    func validate() throws {
        guard rollouts.allSatisfy({ $0 > 0 }), progressing.allSatisfy({ $0 > 0 }) else { throw ValidationError("counts must be positive") }
    }

    func run() async throws {
        let executable = fledge ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("fledge").path
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw ValidationError("no fledge executable at \(executable): build it in the same configuration (swift build -c release)")
        }
        if fledgeFirst { print("`fledge run` started before the Rollouts existed: its caches filled from watch events.\n") }
        print("| Rollouts | fledge run RSS, steady, largest sample (of which heap: anonymous) | reconcile pass (idle, CPU) | baseline: decide() all (CPU) | steady API reads / \(steadySeconds) s | writes / \(steadySeconds) s | abort → VirtualService write |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        var notes: [String] = []
        for n in rollouts {
            let (row, note) = try await measureEstate(n, executable: executable)
            print(row)
            notes.append(note)
        }
        print("")
        for note in notes { print(note) }
        print("")
        try await measureQueries()
    }

    // MARK: - One estate

    func measureEstate(_ n: Int, executable: String) async throws -> (row: String, cacheNote: String) {
        let sandbox = SandboxServer(configuration: .init(rolloutDelay: .zero, simulatePods: false))
        let url = try await sandbox.start()
        defer { Task { await sandbox.stop() } }
        // The Rollout CRD is installed first either way, as deploy/ does: without it the controller cannot start.
        if fledgeFirst { try await BenchEstate.installDefinitions(sandbox.store) } else { try await BenchEstate.populate(sandbox.store, count: n, triggered: 0) }
        let directory = try TemporaryDirectory.make(prefix: "fledge-bench-controller")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let kubeconfig = directory + "/kubeconfig"
        try sandbox.kubeconfig(token: nil, namespace: "default").write(toFile: kubeconfig, atomically: true, encoding: .utf8)
        _ = url

        // 1. `fledge run` as its own process: resident memory, steady-state reads and writes.
        let metricsPort = try LoopbackPort.free()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "run", "--kubeconfig", kubeconfig, "--metrics-port", String(metricsPort), "--metrics-host", "127.0.0.1", "--log-level", "error",
        ]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        let http = CurlHTTPClient()
        try await waitUntil(timeout: .seconds(300)) {
            (try? await http.send(HTTPRequest(url: "http://127.0.0.1:\(metricsPort)/readyz")))?.status == 200
        }
        if fledgeFirst {
            try await BenchEstate.populate(sandbox.store, count: n, triggered: 0)
            // Until its Rollouts cache holds them all (as its /metrics says), then until its writes stop.
            let cached = "fledge_cache_objects{resource=\"\(GroupVersionResource.rollouts)\"} \(n)\n"
            try await waitUntil(timeout: .seconds(300)) {
                (try? await http.send(HTTPRequest(url: "http://127.0.0.1:\(metricsPort)/metrics")))?.bodyText.contains(cached) == true
            }
        }
        try await settle(sandbox.store)
        let before = await sandbox.store.requestCounts
        // Steady state as in a cluster: Prometheus scrapes /metrics (every 5 s here); resident memory is sampled
        // every second, and the largest sample is reported.
        var rss = 0
        var anonymous = 0
        var scraped = ""
        for second in 0..<steadySeconds {
            if second % 5 == 0 { scraped = (try? await http.send(HTTPRequest(url: "http://127.0.0.1:\(metricsPort)/metrics")))?.bodyText ?? "" }
            try await Task.sleep(for: .seconds(1))
            rss = max(rss, residentKiB(pid: process.processIdentifier))
            anonymous = max(anonymous, residentKiB(pid: process.processIdentifier, field: "RssAnon:"))
        }
        let after = await sandbox.store.requestCounts
        let peak = residentKiB(pid: process.processIdentifier, field: "VmHWM:")
        process.terminate()
        process.waitUntilExit()
        let reads = Self.delta(before, after, verbs: ["get", "list"])
        let writes = Self.delta(before, after, verbs: ["create", "update", "patch", "delete"])

        // 2. In-process: CPU of one reconcile pass over the settled, idle estate, against deciding every rollout.
        let client = KubernetesClient(configuration: try Kubeconfig.load(paths: [kubeconfig]).configuration())
        var configuration = ControllerConfiguration()
        configuration.resyncInterval = .seconds(3600)
        configuration.analysisBatchWindow = .milliseconds(50)
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let controller = Controller(client: client, configuration: configuration, http: http, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: controller)], logger: logger))
        let task = Task { try await group.run() }
        try await waitUntil(timeout: .seconds(300)) { controller.isReady }
        try await waitUntil(timeout: .seconds(300)) {
            let c1 = controller.counts.reconciles
            try? await Task.sleep(for: .seconds(1))
            return controller.counts.reconciles == c1 && controller.queue.depth == 0
        }
        // As `fledge run` itself reports them (its caches filled by lists, or with --fledge-first by watch events).
        let runCaches = scraped.split(separator: "\n").filter { $0.hasPrefix("fledge_cache_bytes{") }.map { line -> String in
            let resource = line.split(separator: "\"").dropFirst().first.map(String.init) ?? "?"
            let bytes = Double(line.split(separator: " ").last.map(String.init) ?? "") ?? 0
            return resource + String(format: " %.1f MiB", bytes / 1_048_576)
        }.joined(separator: ", ")
        let cacheNote = String(format: "%d Rollouts: peak RSS %.1f MiB; ", n, Double(peak) / 1024) + "`fledge run`'s caches: \(runCaches); caches as listed: " + controller.caches.all.map { informer in
            let serialized = informer.list().reduce(0) { $0 + $1.serialized().count }
            return "\(informer.resource.resource) \(informer.count) objects, "
                + String(format: "%.1f MiB (%.1f MiB serialized)", Double(informer.storedBytes) / 1_048_576, Double(serialized) / 1_048_576)
        }.joined(separator: "; ")
        var queued = 0
        let pass = bestCPU(5) { queued += controller.resyncPass() }
        let baseline = bestCPU(3) { Self.decideAll(controller.caches) }

        // 3. Abort to VirtualService write: one rollout in flight among n.
        let abortMs = try await abortLatency(client: client, store: sandbox.store)
        await group.triggerGracefulShutdown()
        _ = try? await task.value

        let row = String(
            format: "| %d | %.1f MiB (%.1f MiB) | %.2f ms (%d queued) | %.1f ms (%.0f× the pass) | %d | %d | %.0f ms |", n, Double(rss) / 1024,
            Double(anonymous) / 1024, pass * 1000, queued / 5,
            baseline * 1000, baseline / max(pass, 1e-9), reads, writes, abortMs)
        return (row, cacheNote)
    }

    /// Triggers rollout 0, waits until its canary gets traffic, requests an abort and times the VirtualService
    /// write that sends the canary nothing, as a watch sees it.
    func abortLatency(client: KubernetesClient, store: SandboxStore) async throws -> Double {
        let ns = BenchEstate.namespace(0)
        let name = BenchEstate.name(0)
        _ = try await client.patch(.rollouts, namespace: ns, name: name, .merge(["spec": ["canary": ["image": "registry.example/app:2.0.0"]]]))
        try await waitUntil(timeout: .seconds(60)) {
            let vs = try? await client.get(.virtualServices, namespace: ns, name: name)
            return (vs?[path: ["spec", "http"]]?[0]?["route"]?[1]?["weight"]?.intValue ?? 0) > 0
        }
        let vs = try await client.get(.virtualServices, namespace: ns, name: name)
        let version = vs["metadata"]?["resourceVersion"]?.stringValue
        let watch = try await client.watch(.virtualServices, namespace: .named(ns), resourceVersion: version, fieldSelector: "metadata.name=\(name)")
        let start = ContinuousClock.now
        _ = try await client.patch(
            .rollouts, namespace: ns, name: name, .merge(["metadata": ["annotations": ["fledge.dev/abort": .string(UUID().uuidString)]]]))
        for try await event in watch {
            if event.object[path: ["spec", "http"]]?[0]?["route"]?[1]?["weight"]?.intValue == 0 {
                let elapsed = ContinuousClock.now - start
                return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            }
        }
        throw ValidationError("the watch ended before the abort was written")
    }

    static func decideAll(_ caches: Caches) {
        var sink = 0
        let now = Timestamp(Date())
        for object in caches.rollouts.list() {
            guard let rollout = try? Rollout(json: object), let r = rollout.references else { continue }
            let observed = Observed(
                stableDeployment: caches.deployments.get(namespace: r.namespace, name: r.stableDeployment),
                canaryDeployment: caches.deployments.get(namespace: r.namespace, name: r.canaryDeployment),
                virtualService: caches.virtualServices.get(namespace: r.namespace, name: r.virtualService),
                destinationRule: caches.destinationRules.get(namespace: r.namespace, name: r.destinationRule))
            sink &+= decide(rollout: rollout, observed: observed, analysis: .none, now: now).actions.count
        }
        if sink == -1 { print("") }
    }

    // MARK: - Queries per tick

    func measureQueries() async throws {
        let prometheus = try PrometheusServer()
        try await prometheus.start()
        defer { prometheus.stop() }
        print("| Progressing rollouts | Prometheus queries per tick | queries per 10 s interval | baseline: one query per metric per rollout, per interval | ratio |")
        print("|---:|---:|---:|---:|---:|")
        for n in progressing {
            let sandbox = SandboxServer(configuration: .init(rolloutDelay: .zero, simulatePods: false))
            _ = try await sandbox.start()
            try await BenchEstate.populate(sandbox.store, count: n, triggered: n)
            let directory = try TemporaryDirectory.make(prefix: "fledge-bench-queries")
            let kubeconfig = directory + "/kubeconfig"
            try sandbox.kubeconfig(token: nil, namespace: "default").write(toFile: kubeconfig, atomically: true, encoding: .utf8)
            let client = KubernetesClient(configuration: try Kubeconfig.load(paths: [kubeconfig]).configuration())
            var configuration = ControllerConfiguration()
            configuration.prometheusURL = prometheus.url
            configuration.analysisBatchWindow = .milliseconds(500)
            var logger = Logger(label: "bench")
            logger.logLevel = .error
            let controller = Controller(client: client, configuration: configuration, http: CurlHTTPClient(), logger: logger)
            let group = ServiceGroup(configuration: .init(services: [.init(service: controller)], logger: logger))
            let task = Task { try await group.run() }
            // Until every rollout is being analysed.
            try await waitUntil(timeout: .seconds(300)) {
                let all = controller.caches.rollouts.list()
                return all.count == n && all.allSatisfy { $0[path: ["status", "lastAnalysisAt"]] != nil }
            }
            let q0 = controller.metrics.prometheusQueryCount
            let b0 = controller.counts.analysisBatches
            try await Task.sleep(for: .seconds(20))
            let queries = controller.metrics.prometheusQueryCount - q0
            let batches = max(1, controller.counts.analysisBatches - b0)
            await group.triggerGracefulShutdown()
            _ = try? await task.value

            // Baseline in the same run: the same requests measured one rollout at a time.
            let counted = Mutex(0)
            let single = PrometheusAnalyzer(defaultAddress: prometheus.url, http: CurlHTTPClient(), onQuery: { _ in counted.withLock { $0 += 1 } })
            let requests = controller.caches.rollouts.list().compactMap { object -> AnalysisRequest? in
                guard let rollout = try? Rollout(json: object), case .success(let plan) = rollout.plan() else { return nil }
                return AnalysisRequest(rollout: rollout, plan: plan)
            }
            for request in requests { _ = await single.measure([request], at: Date()) }
            // Rollouts here analyse every 10 s (20 s measured = two intervals); a tick batches whatever came due together.
            let perInterval = Double(queries) / 2
            let baseline = counted.withLock { $0 }
            print(
                String(
                    format: "| %d | %.1f | %.1f | %d | %.3f× |", n, Double(queries) / Double(batches), perInterval, baseline,
                    perInterval / Double(max(baseline, 1))))
            await sandbox.stop()
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    // MARK: - Helpers

    /// Waits until the controller stopped writing (status writes of the first pass).
    func settle(_ store: SandboxStore) async throws {
        var last = -1
        while true {
            let writes = Self.delta([:], await store.requestCounts, verbs: ["create", "update", "patch"])
            if writes == last { return }
            last = writes
            try await Task.sleep(for: .seconds(2))
        }
    }

    static func delta(_ before: [String: Int], _ after: [String: Int], verbs: [String]) -> Int {
        after.filter { key, _ in verbs.contains { key.hasPrefix($0 + " ") } }.reduce(0) { $0 + $1.value - (before[$1.key] ?? 0) }
    }

    func waitUntil(timeout: Duration, _ condition: () async -> Bool) async throws {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ValidationError("timed out after \(timeout)")
    }

    func bestCPU(_ passes: Int, _ body: () -> Void) -> Double {
        var best = Double.infinity
        for _ in 0..<passes {
            var start = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start)
            body()
            var end = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &end)
            best = min(best, Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9)
        }
        return best
    }

    /// A resident-memory field of /proc/PID/status in KiB: VmRSS (all), RssAnon (the heap, not shared code).
    func residentKiB(pid: Int32, field: String = "VmRSS:") -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(field) {
            return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        }
        return 0
    }
}

/// N rollouts shaped like the seed's product-service, 100 per namespace.
enum BenchEstate {
    static func namespace(_ i: Int) -> String { "team-\(i / 100)" }
    static func name(_ i: Int) -> String { "svc-\(i)" }

    /// The Rollout CRD, from deploy/crds.
    static func installDefinitions(_ store: SandboxStore) async throws {
        _ = try await store.apply(try ManifestLoader.load(paths: [FileManager.default.currentDirectoryPath + "/deploy/crds"]))
    }

    /// The first `triggered` rollouts get a new canary image (in flight); the rest are idle.
    static func populate(_ store: SandboxStore, count: Int, triggered: Int) async throws {
        try await installDefinitions(store)
        var namespaces: [JSONValue] = []
        for n in stride(from: 0, to: count, by: 100) {
            namespaces.append(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": .string(namespace(n))]])
        }
        _ = try await store.apply(namespaces)
        var batch: [JSONValue] = []
        for i in 0..<count {
            let ns = JSONValue.string(namespace(i))
            let name = JSONValue.string(self.name(i))
            let labels: JSONValue = ["app": name, "version": "v1"]
            batch.append([
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": ["name": name, "namespace": ns, "labels": ["app": name]],
                "spec": [
                    "replicas": 2, "selector": ["matchLabels": labels],
                    "template": [
                        "metadata": ["labels": labels],
                        "spec": ["containers": [["name": "app", "image": "registry.example/app:1.0.0", "ports": [["containerPort": 8080]]]]],
                    ],
                ],
            ])
            batch.append([
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": ["name": name, "namespace": ns],
                "spec": [
                    "hosts": [name],
                    "http": [
                        [
                            "route": [
                                ["destination": ["host": name, "subset": "stable"], "weight": 100],
                                ["destination": ["host": name, "subset": "canary"], "weight": 0],
                            ],
                            "retries": ["attempts": 3, "perTryTimeout": "2s"], "timeout": "10s",
                        ]
                    ],
                ],
            ])
            batch.append([
                "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": ["name": name, "namespace": ns],
                "spec": [
                    "host": name,
                    "subsets": [["name": "stable", "labels": ["version": "v1"]], ["name": "canary", "labels": ["version": "v2"]]],
                ],
            ])
            batch.append([
                "apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout", "metadata": ["name": name, "namespace": ns],
                "spec": [
                    "target": ["deployment": name],
                    "canary": ["image": i < triggered ? "registry.example/app:2.0.0" : "registry.example/app:1.0.0"],
                    "stages": [["weight": 10, "hold": "10m"], ["weight": 100, "hold": "10m"]],
                    "analysis": [
                        "interval": "10s", "failureLimit": 3, "minRequests": 20,
                        "metrics": [["name": "success-rate", "min": 99], ["name": "latency-p99", "max": 500]],
                    ],
                ],
            ])
            if batch.count >= 2000 {
                _ = try await store.apply(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        _ = try await store.apply(batch)
        await store.settleDeployments()
    }
}
