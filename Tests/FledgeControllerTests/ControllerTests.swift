import FledgeController
import FledgeCore
import FledgeJSON
import FledgeKubernetes
import Foundation
import Logging
import Synchronization
import Testing

/// The controller against the in-process API server, with measurements scripted at the `MetricsProvider`
/// boundary. (EndToEndTests run the same flows with the mesh simulator and a real Prometheus.)
@Suite(.serialized) struct ControllerTests {
    @Test func adoptsTheSeedSplitThenPromotesAHealthyCanary() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        let original = try await world.virtualService()
        #expect(weights(original) == (90, 10))
        try await world.patchSpec(fastSpec)
        let running = world.startController(analyzer: ScriptedMetrics())

        // Nothing in flight: the seed's 10 % to a canary with no pods would fail, so it goes back to stable.
        _ = try await world.waitForPhase("Healthy")
        let deadline = ContinuousClock.now.advanced(by: .seconds(20))
        while weights(try await world.virtualService()) != (100, 0), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        #expect(weights(try await world.virtualService()) == (100, 0))

        try await world.trigger(image: "registry.example/product-service:2.0.0")
        let done = try await world.waitForPhase("Succeeded", timeout: .seconds(90))
        #expect(done[path: ["status", "canaryWeight"]]?.intValue == 0)
        #expect(image(try await world.deployment("product-service")) == "registry.example/product-service:2.0.0")
        // The stable slot keeps its labels: the stable subset still selects it.
        #expect(try await world.deployment("product-service")[path: ["spec", "template", "metadata", "labels", "version"]] == "v1")
        let canary = try await world.deployment("product-service-canary")
        #expect(canary[path: ["spec", "replicas"]]?.intValue == 0)
        #expect(canary[path: ["metadata", "ownerReferences"]]?[0]?["kind"] == "Rollout")

        // Everything but the weights is exactly as the seed had it.
        let final = try await world.virtualService()
        #expect(weights(final) == (100, 0))
        #expect(settingWeights(final, 90, 10)["spec"] == original["spec"])
        #expect(running.controller.counts.writes > 0)
        _ = running
    }

    /// A template patch replaces the containers list (JSON merge patch replaces arrays), so the promoted template
    /// lacks what the API server defaults into every container (`imagePullPolicy`, `terminationMessagePath`, a probe's
    /// `timeoutSeconds` …): the stored stable template never equals what was written. Promotion must still end, once,
    /// and the promoted revision stay the stable one — not be written again every reconcile, nor start again.
    @Test func aPromotedTemplateThatTheServerDefaultsIsTheStableRevision() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(fastSpec)
        _ = world.startController(analyzer: ScriptedMetrics())
        _ = try await world.waitForPhase("Healthy")
        let patch: JSONValue = [
            "spec": [
                "containers": [
                    [
                        "name": "product-service", "image": "registry.example/product-service:1.0.0",
                        "ports": [["name": "http", "containerPort": 8080]],
                        "readinessProbe": ["httpGet": ["path": "/ready", "port": "http"]],
                    ],
                    ["name": "log-shipper", "image": "registry.example/log-shipper:3.1"],
                ]
            ]
        ]
        try await world.patchSpec(["canary": ["image": "product-service=registry.example/product-service:2.0.0", "templatePatch": patch]])
        let done = try await world.waitForPhase("Succeeded", timeout: .seconds(90))
        let revision = try #require(done[path: ["status", "revision"]]?.stringValue)
        let stable = try await world.deployment("product-service")
        let containers = stable[path: ["spec", "template", "spec", "containers"]]?.arrayValue ?? []
        #expect(containers.count == 2)
        #expect(containers.first?["image"] == "registry.example/product-service:2.0.0")
        // The server's defaults are there: what Fledge wrote is not what it reads back.
        #expect(containers.last?["imagePullPolicy"] == "IfNotPresent", "\(containers)")
        #expect(containers.first?[path: ["readinessProbe", "timeoutSeconds"]] == 1)
        // It stays done: no further promotion write, no new rollout of the same change.
        let generation = stable[path: ["metadata", "generation"]]
        for _ in 0..<20 {
            try await Task.sleep(for: .milliseconds(100))
            let now = try await world.rollout()
            #expect(now[path: ["status", "phase"]] == "Succeeded")
            #expect(now[path: ["status", "revision"]]?.stringValue == revision)
            #expect(now[path: ["status", "stableRevision"]]?.stringValue == revision)
        }
        #expect(try await world.deployment("product-service")[path: ["metadata", "generation"]] == generation)
        #expect((try await world.rollout())[path: ["status", "history"]]?.arrayValue?.count == 1)
    }

    @Test func theCanaryDeploymentTakesOverStablesRolloutSettingsAndLabelsAndKeepsThemUpToDate() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(fastSpec)
        // A stable Deployment whose pods must prove stable for 3 s and that never surges; a team label, and
        // kubectl's own annotation, which must not follow.
        _ = try await world.client.patch(
            .deployments, namespace: "shop", name: "product-service",
            .merge([
                "metadata": [
                    "labels": ["team": "shop"], "annotations": ["kubectl.kubernetes.io/last-applied-configuration": "{}", "owner": "shop-team"],
                ],
                "spec": ["minReadySeconds": 3, "strategy": ["rollingUpdate": ["maxSurge": 0, "maxUnavailable": 1]]],
            ]))
        let running = world.startController(analyzer: ScriptedMetrics())
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        // The canary's ready pods take no traffic before they are available.
        try await world.waitFor("the canary's pods ready, not yet available") { rollout in
            rollout[path: ["status", "conditions"]]?.arrayValue?.contains {
                $0["type"] == "TrafficReady" && $0["message"]?.stringValue?.hasSuffix("3/3 pods ready on revision \(rollout[path: ["status", "revision"]]?.stringValue ?? "?"), 0/3 available (minReadySeconds: 3)") == true
            } ?? false
        }
        #expect(weights(try await world.virtualService()).1 == 0)
        _ = try await world.waitForPhase("Succeeded", timeout: .seconds(90))
        var canary = try await world.deployment("product-service-canary")
        #expect(canary[path: ["spec", "minReadySeconds"]] == 3)
        #expect(canary[path: ["spec", "strategy"]] == ["type": "RollingUpdate", "rollingUpdate": ["maxSurge": 0, "maxUnavailable": 1]])
        #expect(canary[path: ["metadata", "labels", "team"]] == "shop")
        #expect(canary[path: ["metadata", "labels", "app.kubernetes.io/managed-by"]] == "fledge")
        #expect(canary[path: ["metadata", "annotations", "owner"]] == "shop-team")
        #expect(canary[path: ["metadata", "annotations", "kubectl.kubernetes.io/last-applied-configuration"]] == nil)

        // Between revisions stable changes to Recreate (which the API server refuses next to a rollingUpdate) and
        // drops minReadySeconds: the existing canary follows with the next revision.
        _ = try await world.client.patch(
            .deployments, namespace: "shop", name: "product-service",
            .merge(["spec": ["minReadySeconds": .null, "progressDeadlineSeconds": 120, "strategy": ["type": "Recreate", "rollingUpdate": .null]]]))
        try await world.trigger(image: "registry.example/product-service:3.0.0")
        _ = try await world.waitFor("revision 3.0.0 promoted") {
            $0[path: ["status", "phase"]] == "Succeeded" && $0[path: ["status", "history"]]?.arrayValue?.count == 2
        }
        canary = try await world.deployment("product-service-canary")
        #expect(canary[path: ["spec", "minReadySeconds"]] == nil)
        #expect(canary[path: ["spec", "progressDeadlineSeconds"]] == 120)
        #expect(canary[path: ["spec", "strategy"]] == ["type": "Recreate"])
        #expect(image(try await world.deployment("product-service")) == "registry.example/product-service:3.0.0")
        _ = running
    }

    /// The first line after a start said `canaryWeight=10 events=WeightsReset` while it moved the seed's 10 % to 0.
    @Test func theLogLineOfADecisionThatWritesAWeightSaysTheWeightWritten() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        let logs = CapturedLogs()
        _ = world.startController(analyzer: ScriptedMetrics(), logger: logs.logger)
        func resetLine() -> (level: Logger.Level, message: String, metadata: Logger.Metadata)? {
            logs.all.first { $0.message == "reconciled" && $0.metadata["events"]?.description == "WeightsReset" }
        }
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while resetLine() == nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        let line = resetLine()
        #expect(weights(try await world.virtualService()) == (100, 0))
        #expect(line?.metadata["canaryWeight"]?.description == "10")
        #expect(line?.metadata["weightWritten"]?.description == "0", "\(String(describing: line))")
    }

    @Test func abortMidStageSendsNothingToTheCanary() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(fastSpec.applyingMergePatch(["stages": [["weight": 10, "hold": "2s"], ["weight": 50, "hold": "60s"]]]))
        _ = world.startController(analyzer: ScriptedMetrics())
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        try await world.waitFor("stage 2 at 50%") { $0[path: ["status", "canaryWeight"]]?.intValue == 50 }
        try await world.request(.abort)
        let aborted = try await world.waitForPhase("Aborted", timeout: .seconds(30))
        #expect(aborted[path: ["status", "canaryWeight"]]?.intValue == 0)
        #expect(weights(try await world.virtualService()) == (100, 0))
        #expect(image(try await world.deployment("product-service")) == "registry.example/product-service:1.0.0")
        #expect(try await world.deployment("product-service-canary")[path: ["spec", "replicas"]]?.intValue == 0)
    }

    @Test func failingCanaryRollsBackAfterFailureLimit() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(fastSpec)
        let metrics = ScriptedMetrics()
        metrics.set(.failing)
        _ = world.startController(analyzer: metrics)
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        let failed = try await world.waitForPhase("Failed", timeout: .seconds(60))
        #expect(failed[path: ["status", "failedChecks"]]?.intValue == 3)
        #expect(weights(try await world.virtualService()) == (100, 0))
        #expect(image(try await world.deployment("product-service")) == "registry.example/product-service:1.0.0")
        // The reason and the measured numbers are in status and in an Event.
        let message = failed[path: ["status", "history"]]?.arrayValue?.last?["reason"]?.stringValue ?? ""
        #expect(message.contains("AnalysisFailed"), "history: \(failed[path: ["status", "history"]]?.serializedString() ?? "")")
        let events = try await world.client.list(.events, namespace: "shop")
        #expect(events.items.contains { $0["reason"] == "AnalysisFailed" && ($0["note"]?.stringValue ?? "").contains("success-rate=90") })
    }

    @Test func handEditedWeightsArePutBack() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(fastSpec.applyingMergePatch(["stages": [["weight": 25, "hold": "60s"], ["weight": 100, "hold": "2s"]]]))
        _ = world.startController(analyzer: ScriptedMetrics())
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        try await world.waitFor("stage 1 at 25%") { $0[path: ["status", "canaryWeight"]]?.intValue == 25 }
        _ = try await world.client.update(.virtualServices, namespace: "shop", settingWeights(try await world.virtualService(), 40, 60))
        let deadline = ContinuousClock.now.advanced(by: .seconds(20))
        while weights(try await world.virtualService()) != (75, 25), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        #expect(weights(try await world.virtualService()) == (75, 25))
        // The Event follows the write (Events are recorded last).
        var restored = false
        for _ in 0..<50 where !restored {
            restored = try await world.client.list(.events, namespace: "shop").items.contains { $0["reason"] == "WeightsRestored" }
            if !restored { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(restored)
    }

    /// Rule 7: a controller killed after any write, restarted, reaches the same end state as one never killed.
    @Test func killedAfterEveryWriteStillPromotes() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(fastSpec.applyingMergePatch(["stages": [["weight": 20, "hold": "1s"], ["weight": 100, "hold": "1s"]]]))
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        var lives = 0
        while try await world.phase() != "Succeeded" {
            lives += 1
            try #require(lives < 200, "no progress after \(lives) restarts")
            // This controller may make exactly one write, then it dies.
            let budget = Mutex(1)
            let running = world.startController(analyzer: ScriptedMetrics(), writeGate: {
                budget.withLock { b in
                    defer { b -= 1 }
                    return b > 0
                }
            })
            let deadline = ContinuousClock.now.advanced(by: .seconds(5))
            while budget.withLock({ $0 }) > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            try await Task.sleep(for: .milliseconds(50))
            await running.kill()
        }
        #expect(lives > 5)
        #expect(image(try await world.deployment("product-service")) == "registry.example/product-service:2.0.0")
        #expect(weights(try await world.virtualService()) == (100, 0))
        #expect(try await world.deployment("product-service-canary")[path: ["spec", "replicas"]]?.intValue == 0)
    }

    @Test func onlyTheLeaderWrites() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(fastSpec)
        func elect(_ c: inout ControllerConfiguration) {
            var election = LeaderElectionConfiguration(namespace: "shop")
            election.leaseDuration = .seconds(3)
            election.renewDeadline = .seconds(2)
            election.retryPeriod = .milliseconds(300)
            c.leaderElection = election
        }
        let first = world.startController(configure: elect, analyzer: ScriptedMetrics())
        let second = world.startController(configure: elect, analyzer: ScriptedMetrics())
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        try await world.waitFor("stage 2") { ($0[path: ["status", "stage"]]?.intValue ?? 0) >= 1 }
        let writers = [first, second].filter { $0.controller.counts.writes + $0.controller.counts.statusWrites > 0 }
        #expect(writers.count == 1)
        // The leader goes away; the standby takes over and finishes the rollout.
        let leader = writers[0]
        let standby = leader === first ? second : first
        await leader.stop()
        _ = try await world.waitForPhase("Succeeded", timeout: .seconds(90))
        #expect(standby.controller.counts.statusWrites > 0)
    }

    /// Deleting a Rollout mid-rollout moves its traffic back to stable before the Rollout goes (its canary would
    /// be garbage-collected on a cluster); an idle Rollout carries no finalizer.
    @Test func deletingARolloutMidRolloutMovesItsTrafficBackFirst() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(fastSpec.applyingMergePatch(["stages": [["weight": 10, "hold": "2s"], ["weight": 50, "hold": "60s"]]]))
        _ = world.startController(analyzer: ScriptedMetrics())
        _ = try await world.waitForPhase("Healthy")
        #expect(try await world.rollout()[path: ["metadata", "finalizers"]] == nil)
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        let serving = try await world.waitFor("stage 2 at 50%") { $0[path: ["status", "canaryWeight"]]?.intValue == 50 }
        #expect(serving[path: ["metadata", "finalizers"]] == ["fledge.dev/traffic"])
        _ = try await world.client.delete(.rollouts, namespace: "shop", name: "product-service")
        #expect(try await world.waitUntilDeleted(timeout: .seconds(30)))
        #expect(weights(try await world.virtualService()) == (100, 0))
    }

    /// `spec.traffic` renamed to another VirtualService mid-rollout: the old one's canary weight goes back to stable
    /// before the new one gets any, and the old one sends nothing to the canary from then on.
    @Test func renamingTheVirtualServiceMidRolloutMovesTheOldWeightBackFirst() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(fastSpec.applyingMergePatch(["stages": [["weight": 10, "hold": "2s"], ["weight": 50, "hold": "60s"]]]))
        var copy = settingWeights(try await world.virtualService(), 100, 0)
        copy["metadata"] = ["name": "product-service-v2", "namespace": "shop"]
        _ = try await world.client.create(.virtualServices, namespace: "shop", copy)
        _ = world.startController(analyzer: ScriptedMetrics())
        _ = try await world.waitForPhase("Healthy")
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        let serving = try await world.waitFor("stage 2 at 50%") { $0[path: ["status", "canaryWeight"]]?.intValue == 50 }
        #expect(serving[path: ["status", "routedTraffic", "virtualService"]] == "product-service")
        try await world.patchSpec(["traffic": ["virtualService": "product-service-v2"]])
        let moved = try await world.waitFor("the new VirtualService at 50%") {
            $0[path: ["status", "routedTraffic", "virtualService"]] == "product-service-v2" && $0[path: ["status", "canaryWeight"]]?.intValue == 50
        }
        #expect(moved[path: ["status", "phase"]] == "Progressing")
        #expect(weights(try await world.virtualService()) == (100, 0))
        #expect(weights(try await world.client.get(.virtualServices, namespace: "shop", name: "product-service-v2")) == (50, 50))
        let events = try await world.client.list(.events, namespace: "shop")
        #expect(events.items.contains { $0["reason"] == "TrafficMoved" })
        // Each Event names its object fully, so `kubectl get events --field-selector involvedObject.kind=Rollout` finds it.
        #expect(events.items.allSatisfy { ($0["regarding"] ?? $0["involvedObject"])?["kind"] == "Rollout" }, "\(events.items.first ?? .null)")
    }

    /// A spec broken mid-rollout does not trap the canary's traffic: an abort still takes it off.
    @Test func anAbortIsTakenWhileTheSpecIsInvalid() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(fastSpec.applyingMergePatch(["stages": [["weight": 10, "hold": "2s"], ["weight": 50, "hold": "60s"]]]))
        _ = world.startController(analyzer: ScriptedMetrics())
        _ = try await world.waitForPhase("Healthy")
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        _ = try await world.waitFor("stage 2 at 50%") { $0[path: ["status", "canaryWeight"]]?.intValue == 50 }
        // Stages out of order: the CRD's schema cannot see it; the controller's validation does.
        try await world.patchSpec(["stages": [["weight": 50, "hold": "2s"], ["weight": 25, "hold": "60s"]]])
        _ = try await world.waitFor("SpecValid=False") { rollout in
            rollout[path: ["status", "conditions"]]?.arrayValue?.contains { $0["type"] == "SpecValid" && $0["status"] == "False" } == true
        }
        try await world.request(.abort)
        let aborted = try await world.waitForPhase("Aborted")
        #expect(aborted[path: ["status", "canaryWeight"]]?.intValue == 0)
        #expect(weights(try await world.virtualService()) == (100, 0))
        #expect(try await world.deployment("product-service-canary")[path: ["spec", "replicas"]]?.intValue == 0)
    }

    /// A leader that shuts down hands its Lease over at once instead of leaving it to expire.
    @Test func aLeaderThatStopsReleasesItsLease() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        let running = world.startController(configure: { $0.leaderElection = LeaderElectionConfiguration(namespace: "shop") }, analyzer: ScriptedMetrics())
        let name = running.controller.configuration.leaderElection!.leaseName
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while !running.controller.canWrite, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        #expect(try await world.client.get(.leases, namespace: "shop", name: name)[path: ["spec", "holderIdentity"]]?.stringValue
            == running.controller.configuration.identity)
        await running.stop()
        let lease = try await world.client.get(.leases, namespace: "shop", name: name)
        #expect(lease[path: ["spec", "holderIdentity"]] == nil)
        #expect(lease[path: ["spec", "leaseDurationSeconds"]]?.intValue == 1)
    }

    /// Sharding: a controller with a label selector (or a namespace) leaves other Rollouts alone.
    @Test func aLabelSelectorScopesWhichRolloutsAreReconciled() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        _ = world.startController(configure: { $0.labelSelector = "fledge.dev/shard=a" }, analyzer: ScriptedMetrics())
        _ = world.startController(configure: { $0.namespace = .named("elsewhere") }, analyzer: ScriptedMetrics())
        try await Task.sleep(for: .seconds(2))
        #expect(try await world.rollout()["status"] == nil)
        #expect(weights(try await world.virtualService()) == (90, 10))
        _ = try await world.client.patch(
            .rollouts, namespace: "shop", name: "product-service", .merge(["metadata": ["labels": ["fledge.dev/shard": "a"]]]))
        let reconciled = try await world.waitFor("the shard's controller") { $0[path: ["status", "observedGeneration"]] != nil }
        #expect(reconciled[path: ["status", "phase"]] == "Healthy")
    }

    /// A write that keeps failing shows in `Reconciled=False` for as long as it fails, and the condition goes once
    /// the write succeeds.
    @Test func aFailingWriteStaysVisibleUntilItSucceeds() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(fastSpec)
        // A Deployment under the canary's name that selects other pods: a selector cannot be changed.
        let podSpec = try await world.deployment("product-service")[path: ["spec", "template", "spec"]] ?? [:]
        let squatter: JSONValue = [
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": ["name": "product-service-canary", "namespace": "shop"],
            "spec": ["replicas": 1, "selector": ["matchLabels": ["app": "other"]], "template": ["metadata": ["labels": ["app": "other"]], "spec": podSpec]],
        ]
        _ = try await world.client.create(.deployments, namespace: "shop", squatter)
        _ = world.startController(analyzer: ScriptedMetrics())
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        func reconciled(_ rollout: JSONValue) -> JSONValue? {
            rollout[path: ["status", "conditions"]]?.arrayValue?.first { $0["type"] == "Reconciled" }
        }
        let failing = try await world.waitFor("Reconciled=False") { reconciled($0)?["status"] == "False" }
        #expect(reconciled(failing)?["reason"] == "ActionFailed")
        #expect(reconciled(failing)?["message"]?.stringValue?.contains("kubectl delete deployment product-service-canary -n shop") == true)
        // The controller retries (with backoff) and the condition stays through every attempt.
        for _ in 0..<15 {
            try await Task.sleep(for: .milliseconds(200))
            #expect(reconciled(try await world.rollout())?["status"] == "False")
        }
        _ = try await world.client.delete(.deployments, namespace: "shop", name: "product-service-canary")
        let recovered = try await world.waitFor("the canary made and the condition gone", timeout: .seconds(60)) {
            reconciled($0) == nil && $0[path: ["status", "phase"]] == "Progressing"
        }
        #expect(recovered[path: ["status", "phase"]] == "Progressing")
    }
}
