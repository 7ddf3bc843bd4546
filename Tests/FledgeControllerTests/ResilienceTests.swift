// The controller against servers that misbehave: a Prometheus that never answers, an API server that comes back
// with other state (restarted empty, restored from a backup), an API server that is gone. Real servers, all
// stopped by the test that starts them.
import FledgeController
import FledgeCore
import FledgeHTTP
import FledgeJSON
import FledgeKubernetes
import FledgeSandbox
import Foundation
import LocalPrometheus
import Logging
import Synchronization
import Testing
import TestSupport

extension World {
    /// Another service like the seed's, under another name: its Deployment, Service, DestinationRule,
    /// VirtualService and Rollout.
    func addService(_ name: String) async throws {
        var objects: [JSONValue] = []
        for file in ["deployment.yaml", "service.yaml", "destinationrule.yaml", "virtualservice.yaml", "rollout.yaml"] {
            let text = try String(contentsOfFile: repositoryRoot + "/rollouts/product-service/" + file, encoding: .utf8)
            objects += try ManifestLoader.parseYAML(text.replacingOccurrences(of: "product-service", with: name))
        }
        try await sandbox.store.apply(objects)
    }
}

/// A plain-HTTP sandbox holding the CRDs and the seed's manifests, restartable on the same port with fresh state.
/// Stops the controller, then the API servers a restore test started (the second, if it got that far).
private func stopAll(_ running: RunningController?, _ first: Cluster, _ second: Cluster?) async {
    await running?.stop()
    await first.server.stop()
    await second?.server.stop()
}

private struct Cluster {
    let server: SandboxServer
    let client: KubernetesClient

    /// Starts on `port` (0: a free one) once the manifests, then whatever `prepare` adds, are stored; the port of a
    /// server just stopped may take a moment to be free again.
    static func start(port: Int = 0, directory: String, prepare: (SandboxStore) async throws -> Void = { _ in }) async throws -> Cluster {
        let objects = try ManifestLoader.load(paths: [repositoryRoot + "/deploy/crds", repositoryRoot + "/rollouts/product-service"])
        var attempt = 0
        while true {
            let server = SandboxServer(configuration: .init(port: port, rolloutDelay: .milliseconds(100)))
            try await server.store.apply(objects.filter { $0["kind"]?.stringValue == "CustomResourceDefinition" })
            try await server.store.apply(objects.filter { $0["kind"]?.stringValue != "CustomResourceDefinition" })
            try await prepare(server.store)
            do {
                let url = try await server.start()
                do {
                    let path = directory + "/kubeconfig-\(url.port ?? 0)"
                    try SandboxServer.kubeconfig(server: url.absoluteString, token: nil, certificateAuthorityPEM: nil, namespace: "shop")
                        .write(toFile: path, atomically: true, encoding: .utf8)
                    return Cluster(server: server, client: KubernetesClient(configuration: try Kubeconfig.load(paths: [path]).configuration()))
                } catch {
                    await server.stop()
                    throw error
                }
            } catch SandboxError.cannotListen(_, _, _, true) where attempt < 50 {
                attempt += 1
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    var port: Int { server.url?.port ?? 0 }

    func rollout() async throws -> JSONValue { try await client.get(.rollouts, namespace: "shop", name: "product-service") }
}

/// Waits (without asserting on time) until `condition` holds, for at most `limit`; false if it never did.
private func eventually(_ limit: Duration = .seconds(90), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now.advanced(by: limit)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(100))
    }
    return try await condition()
}

private func quietLogger() -> Logger {
    var logger = Logger(label: "test.controller")
    logger.logLevel = ProcessInfo.processInfo.environment["FLEDGE_TEST_LOG"] != nil ? .debug : .critical
    return logger
}

@Suite(.serialized) struct ResilienceTests {
    /// One rollout's own Prometheus takes connections and never answers; another rollout uses the controller's
    /// (healthy) Prometheus. The hanging one costs its rollout one provider error per interval, within the
    /// controller's timeout; the other rollout's analyses go on as if nothing were wrong.
    @Test func aHangingPrometheusDelaysOnlyItsOwnRollouts() async throws {
        let silent = try SilentServer()
        defer { silent.close() }
        try await withBackfilledPrometheus(EstateData.openMetrics) { prometheus in
            let world = try await World()
            do {
                try await world.addService("catalog")
                let spec: JSONValue = [
                    "stages": [["weight": 10, "hold": "10m"], ["weight": 100, "hold": "2s"]],
                    "analysis": ["interval": "1s", "failureLimit": 3, "minRequests": 20, "providerErrorLimit": 100, "noData": "inconclusive"],
                ]
                try await world.patchSpec(spec.applyingMergePatch(["analysis": ["prometheus": ["address": .string(silent.url)]]]))
                try await world.patchSpec(spec, rollout: "catalog")
                _ = world.startController(configure: {
                    $0.prometheusURL = prometheus.url
                    $0.requestTimeout = .seconds(2)
                })
                _ = try await world.waitForPhase("Healthy")
                _ = try await world.waitForPhase("Healthy", rollout: "catalog")
                try await world.trigger(image: "registry.example/product-service:2.0.0")
                try await world.trigger(image: "registry.example/catalog:2.0.0", rollout: "catalog")

                // The hanging server's rollout: a provider error naming it, long before the transport's own 30 s
                // per query would have given one.
                let failing = try await world.waitFor("a provider error from the silent Prometheus") { rollout in
                    rollout[path: ["status", "lastAnalysis"]]?.arrayValue?.contains {
                        let message = $0["message"]?.stringValue ?? ""
                        return message.contains(silent.url) && message.contains("timed out")
                    } == true
                }
                #expect(failing[path: ["status", "phase"]] == "Progressing")
                // The other rollout: analysis after analysis meanwhile.
                var times: Set<String> = []
                _ = try await world.waitFor("three analyses of catalog", rollout: "catalog") { rollout in
                    if let at = rollout[path: ["status", "lastAnalysisAt"]]?.stringValue { times.insert(at) }
                    return times.count >= 3
                }
                let other = try await world.rollout("catalog")
                #expect(other[path: ["status", "lastAnalysis"]]?.arrayValue?.allSatisfy { $0["verdict"] != "Error" } == true, "\(other[path: ["status", "lastAnalysis"]] ?? .null)")
            } catch {
                await world.stop()
                throw error
            }
            await world.stop()
        }
    }

    /// A controller on a fresh cluster kept in `directory`, having taken the seed's Rollout to its second stage
    /// (25 %, held for 10 minutes): where the restore tests kill the API server.
    fileprivate static func rolloutAtStageTwo(directory: String) async throws -> (Cluster, Controller, RunningController) {
        let cluster = try await Cluster.start(directory: directory)
        var running: RunningController?
        do {
            _ = try await cluster.client.patch(
                .rollouts, namespace: "shop", name: "product-service",
                .merge(["spec": fastSpec.applyingMergePatch(["stages": [["weight": 10, "hold": "1s"], ["weight": 25, "hold": "10m"]]])]))
            var configuration = ControllerConfiguration()
            configuration.analysisBatchWindow = .milliseconds(20)
            let logger = quietLogger()
            let controller = Controller(client: cluster.client, configuration: configuration, http: CurlHTTPClient(), analyzer: ScriptedMetrics(), logger: logger)
            let started = RunningController(controller: controller, logger: logger)
            running = started
            #expect(try await eventually { try await cluster.rollout()[path: ["status", "phase"]] == "Healthy" })
            _ = try await cluster.client.patch(
                .rollouts, namespace: "shop", name: "product-service", .merge(["spec": ["canary": ["image": "registry.example/product-service:2.0.0"]]]))
            #expect(try await eventually { try await cluster.rollout()[path: ["status", "canaryWeight"]]?.intValue == 25 })
            return (cluster, controller, started)
        } catch {
            await running?.stop()
            await cluster.server.stop()
            throw error
        }
    }

    /// The API server is killed mid-rollout and comes back with the state it had before the rollout (restarted
    /// from its manifests; an etcd restore), so every resourceVersion the controller saw is ahead of it. The
    /// controller's watches cannot resume there: it lists afresh and decides from what the cluster now holds: no
    /// rollout in flight, weights back to 100/0 — not a status copied from its old caches.
    @Test func aControllerRelistsWhenTheAPIServerComesBackWithOlderState() async throws {
        let directory = NSTemporaryDirectory() + "fledge-reset-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (first, controller, started) = try await Self.rolloutAtStageTwo(directory: directory)
        var second: Cluster?
        let running: RunningController? = started
        do {
            #expect(controller.caches.all.allSatisfy { $0.relistCount == 1 })

            // Read before the restart: once the new server is up, the controller may already have relisted there.
            let lastSeen = Int64(controller.caches.rollouts.resourceVersion) ?? 0
            await first.server.stop()
            let restarted = try await Cluster.start(port: first.port, directory: directory)
            second = restarted
            #expect(await restarted.server.store.resourceVersion < lastSeen)
            let settled = try await eventually {
                let rollout = try await restarted.rollout()
                let vs = try await restarted.client.get(.virtualServices, namespace: "shop", name: "product-service")
                // The status records a weight once it has read it back: the seed's 90/10 until the next decision.
                return rollout[path: ["status", "phase"]] == "Healthy" && weights(vs) == (100, 0)
                    && rollout[path: ["status", "canaryWeight"]]?.intValue ?? 0 == 0
            }
            let rollout = try await restarted.rollout()
            #expect(settled, "status on the restarted server: \(rollout["status"] ?? .null)")
            #expect(rollout[path: ["status", "canaryWeight"]]?.intValue ?? 0 == 0)
            // Every cache that had seen changes past the restarted server's versions listed again. (One that had not,
            // here the DestinationRules', resumes from its version, which the server still has.)
            let relisted = [controller.caches.rollouts, controller.caches.deployments, controller.caches.virtualServices]
            #expect(relisted.allSatisfy { $0.relistCount >= 2 }, "\(controller.caches.all.map { "\($0.resource): \($0.relistCount)" })")
            // The canary it made on the old server is not in the cache any more: nothing was made on this one.
            #expect(controller.caches.deployments.get(namespace: "shop", name: "product-service-canary") == nil)
        } catch {
            await stopAll(running, first, second)
            throw error
        }
        await stopAll(running, first, second)
    }

    /// As above, but the server comes back with resourceVersions beyond those the controller saw (a backup restored
    /// on a server that had moved on): the watches resume there and bring nothing of what changed, so the caches
    /// stay stale and writes conflict. A second conflict in a row makes the controller re-read the conflicting object
    /// from the API (reads only then), and the rollout converges on what the server holds.
    @Test func repeatedConflictsHealAStaleCache() async throws {
        let directory = NSTemporaryDirectory() + "fledge-reset-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (first, controller, started) = try await Self.rolloutAtStageTwo(directory: directory)
        var second: Cluster?
        let running: RunningController? = started
        do {
            let seen = await first.server.store.resourceVersion
            await first.server.stop()

            // The old state again, at versions past everything the controller saw, before it can reconnect: its
            // watches resume from their versions and see only changes to other objects.
            let restarted = try await Cluster.start(port: first.port, directory: directory) { store in
                let count = Int(seen) + 10
                try await store.apply((0..<count).map { index in
                    ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": .string("filler-\(index)"), "namespace": "shop"]]
                })
            }
            second = restarted
            let store = restarted.server.store
            #expect(await store.resourceVersion > seen)
            // Watched through the store itself, so that the server's request counts are the controller's alone.
            let rollouts = GroupResource(group: "fledge.dev", resource: "rollouts")
            let virtualServices = GroupResource(group: "networking.istio.io", resource: "virtualservices")
            let settled = await eventually {
                let rollout = await store.object(rollouts, namespace: "shop", name: "product-service")
                let vs = await store.object(virtualServices, namespace: "shop", name: "product-service")
                return rollout?[path: ["status", "phase"]] == "Healthy" && vs.map(weights) ?? (nil, nil) == (100, 0)
                    && controller.caches.deployments.get(namespace: "shop", name: "product-service-canary") == nil
            }
            let rollout = await store.object(rollouts, namespace: "shop", name: "product-service")
            #expect(settled, "status on the restored server: \(rollout?["status"] ?? .null)")
            // Healed by reading only what conflicted (a Rollout, a VirtualService), not by listing anything again.
            let requests = await store.requestCounts
            #expect((1...3).contains(requests["get rollouts"] ?? 0), "\(requests)")
            #expect(requests.keys.filter { $0.hasPrefix("list ") }.isEmpty, "\(requests)")
            #expect(controller.caches.all.allSatisfy { $0.relistCount == 1 })
        } catch {
            await stopAll(running, first, second)
            throw error
        }
        await stopAll(running, first, second)
    }

    /// Every write refused with 409 Conflict for as long as it lasts (another writer racing, an API server that lost
    /// its data): no retry every 100 ms for ever. The retries back off (100, 200, 400 ms…), from the second conflict
    /// the object is read again from the API, and at the third the whole resource is listed again; once writes go
    /// through, the rollout carries on.
    @Test func persistentConflictsBackOffReReadAndRelist() async throws {
        let world = try await World()
        do {
            try await world.patchSpec(fastSpec.applyingMergePatch(["stages": [["weight": 10, "hold": "2s"], ["weight": 25, "hold": "10m"]]]))
            let controller = world.startController(analyzer: ScriptedMetrics()).controller
            _ = try await world.waitForPhase("Healthy")
            try await world.trigger(image: "registry.example/product-service:2.0.0")
            _ = try await world.waitFor("stage 1 at 10%") { $0[path: ["status", "canaryWeight"]]?.intValue == 10 }
            let store = world.sandbox.store
            let before = await store.requestCounts
            await store.setFaults(SandboxFaults(conflictRate: 1))
            // Watched in memory only: the test itself sends nothing the counts would include. Which write meets the
            // conflicts first (the Rollout's status or metadata, or the VirtualService's weights) depends on where the
            // rollout is when they begin; whichever it is, its resource is listed again.
            func writes(_ counts: [String: Int]) -> Int {
                Set(counts.keys).union(before.keys).filter { $0.hasPrefix("update ") || $0.hasPrefix("patch ") }
                    .reduce(0) { $0 + (counts[$1] ?? 0) - (before[$1] ?? 0) }
            }
            // The third conflict relists. (A watch dropped under load relists too, so the writes are waited for as well.)
            let relisted = await eventually {
                let relistedNow = controller.caches.all.contains { $0.relistCount >= 2 }
                return relistedNow ? writes(await store.requestCounts) >= 3 : false
            }
            let after = await store.requestCounts
            await store.setFaults(SandboxFaults())
            #expect(relisted)
            func delta(_ key: String) -> Int { (after[key] ?? 0) - (before[key] ?? 0) }
            func total(_ verbs: [String]) -> Int {
                Set(after.keys).union(before.keys).filter { key in verbs.contains { key.hasPrefix($0 + " ") } }.reduce(0) { $0 + delta($1) }
            }
            let writes = total(["update", "patch"])
            let reads = total(["get"])
            let lists = total(["list"])
            // A few conflicts reach the relist: not a retry every 100 ms (thirty and more in the same time).
            #expect((3...16).contains(writes), "\(writes) writes: before \(before), after \(after)")
            #expect(reads >= 2 && reads <= writes + 1, "\(reads) reads for \(writes) writes: \(after)")
            #expect((1...2).contains(lists), "\(lists) lists: \(after)")
            // Writes going through again, the rollout goes on.
            _ = try await world.waitFor("stage 2 at 25%") { $0[path: ["status", "canaryWeight"]]?.intValue == 25 }
        } catch {
            await world.stop()
            throw error
        }
        await world.stop()
    }

    /// Writes of one kind refused again and again (here the VirtualService's, as when another tool keeps rewriting
    /// it) are reported where an operator looks: a `WriteConflict` Warning Event on the Rollout, once, at the third
    /// conflict in a row, naming the refused write. The Events themselves go through.
    @Test func persistentConflictsAreReportedAsAWriteConflictEvent() async throws {
        let world = try await World()
        do {
            try await world.patchSpec(fastSpec.applyingMergePatch(["stages": [["weight": 10, "hold": "1s"], ["weight": 25, "hold": "10m"]]]))
            _ = world.startController(analyzer: ScriptedMetrics())
            _ = try await world.waitForPhase("Healthy")
            let store = world.sandbox.store
            await store.setFaults(SandboxFaults(conflictRate: 1, resources: ["virtualservices"]))
            try await world.trigger(image: "registry.example/product-service:2.0.0")
            let reported = await eventually {
                ((try? await world.client.list(.events, namespace: "shop").items) ?? []).contains { $0["reason"] == "WriteConflict" }
            }
            #expect(reported)
            await store.setFaults(SandboxFaults())
            let events = try await world.client.list(.events, namespace: "shop").items.filter { $0["reason"] == "WriteConflict" }
            #expect(events.count == 1, "\(events)")
            let event = try #require(events.first)
            #expect(event["type"] == "Warning")
            #expect(event[path: ["regarding", "kind"]] == "Rollout" && event[path: ["regarding", "name"]] == "product-service", "\(event)")
            let note = event["note"]?.stringValue ?? ""
            #expect(note.hasPrefix("3 writes in a row refused with 409 Conflict"), "\(note)")
            #expect(note.contains("virtualservices"), "\(note)")
            // Writes going through again, the rollout goes on.
            _ = try await world.waitFor("stage 2 at 25%") { $0[path: ["status", "canaryWeight"]]?.intValue == 25 }
        } catch {
            await world.stop()
            throw error
        }
        await world.stop()
    }

    /// `/readyz` follows the API server: ready once the caches are synced, still ready through a short outage (a
    /// dropped watch must not flap it), not ready once the caches could not list or watch for the grace period,
    /// and ready again once they reconnect. The grace period runs on the controller's injected clock.
    @Test func readinessFollowsTheAPIServer() async throws {
        let directory = NSTemporaryDirectory() + "fledge-ready-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try await Cluster.start(directory: directory)
        var second: Cluster?
        var running: RunningController?
        let clock = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        do {
            var configuration = ControllerConfiguration()
            configuration.readinessGrace = .seconds(30)
            let logger = quietLogger()
            let controller = Controller(
                client: first.client, configuration: configuration, http: CurlHTTPClient(), analyzer: ScriptedMetrics(), logger: logger,
                now: { clock.withLock { $0 } })
            #expect(!controller.isReady)
            #expect(controller.readiness.message.contains("not synced"))
            running = RunningController(controller: controller, logger: logger)
            #expect(await eventually { controller.isReady })
            #expect(controller.readiness.message == "ok")

            await first.server.stop()
            #expect(await eventually { controller.caches.all.allSatisfy { $0.failingSince != nil } })
            // Within the grace period: still ready.
            clock.withLock { $0 += 29 }
            #expect(controller.isReady)
            clock.withLock { $0 += 2 }
            #expect(!controller.isReady)
            let message = controller.readiness.message
            #expect(message.contains("cannot list or watch") && message.contains("127.0.0.1:\(first.port)"), "\(message)")

            second = try await Cluster.start(port: first.port, directory: directory)
            #expect(await eventually { controller.isReady }, "\(controller.readiness.message)")
        } catch {
            await stopAll(running, first, second)
            throw error
        }
        await stopAll(running, first, second)
    }
}
