import FledgeCore
import FledgeJSON
import Testing

@Suite("decide: stable losing its pods mid-rollout, a revision replaced during its rollback, a retry")
struct StableOutageAndEndingTests {
    @Test(arguments: [0, 3])
    func stableWithoutReadyPodsMidStageHoldsAndDoesNotBlameTheCanary(replicas: Int) {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 && $0.status.stageStartedAt != nil }
        sim.observed.stable!.replicas = replicas
        sim.observed.stable!.readyReplicas = 0
        let d = sim.reconcile()
        // Not a rollback (which could not move the canary's 25% to stable anyway), nor an advance, nor an analysis.
        #expect(d.status.phase == .progressing)
        #expect(d.weightChanges.isEmpty)
        #expect(!d.eventReasons.contains("RollingBack"))
        #expect(!d.actions.contains { if case .runAnalysis = $0 { true } else { false } })
        let said = replicas == 0 ? "scaled to 0" : "0/3 ready"
        let traffic = d.status.condition(ConditionType.trafficReady)
        #expect(traffic?.reason == "StableNotReady")
        #expect(traffic?.message == "stable Deployment product-service has no ready pods (\(said))")
        #expect(d.status.condition(ConditionType.progressing)?.reason == "StableNotReady")
        #expect(d.status.message?.hasPrefix("holding stage 2/4 at 25%: stable Deployment product-service has no ready pods (\(said)); the canary keeps its 25%") == true, "\(d.status.message ?? "")")
        #expect(d.events.map(\.reason) == ["StableNotReady"])
        // Nothing changes while it lasts.
        #expect(sim.reconcile().writes.isEmpty)
        sim.now = Timestamp(seconds: sim.now.seconds + 60)
        #expect(sim.reconcile().writes.isEmpty)
        #expect(sim.observedCanaryWeight == 25)
        // Once stable is back, the rollout goes on and promotes.
        sim.observed.stable = stableDeployment()
        sim.run(untilPhase: .succeeded)
        #expect(sim.phase == .succeeded)
        #expect(!sim.events.contains { $0.reason == "RollingBack" })
    }

    /// A typo in the stable subset's label mid-stage rolled back as CanaryUnavailable, and the rollback sent all the
    /// traffic to the subset that selected no pod.
    @Test func aStableSubsetThatSelectsNoPodMidStageHoldsAndARollbackWaitsForIt() {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 && $0.status.stageStartedAt != nil }
        sim.observed.destinationRule = seedDestinationRule(stableLabels: ["version": "v9"])
        let d = sim.reconcile()
        #expect(d.status.phase == .progressing)
        #expect(d.weightChanges.isEmpty)
        #expect(d.status.condition(ConditionType.progressing)?.reason == "SubsetSelectsNoPods")
        #expect(d.status.message?.hasPrefix("holding stage 2/4 at 25%: subset 'stable' of DestinationRule product-service selects label version=v9 but the pods of Deployment product-service have version=v1; the canary keeps its 25%") == true, "\(d.status.message ?? "")")
        // An abort now waits too, rather than send everything to no pod.
        sim.request(.abort)
        sim.run(maxSteps: 20) { $0.phase == .aborted }
        #expect(sim.phase == .rollingBack)
        #expect(sim.observedCanaryWeight == 25)
        #expect(sim.status.condition(ConditionType.trafficReady)?.message.contains("the canary keeps its 25% until stable can take it") == true)
        sim.observed.destinationRule = seedDestinationRule()
        sim.run(maxSteps: 20) { $0.phase == .aborted }
        #expect(sim.phase == .aborted)
        #expect(sim.observedCanaryWeight == 0)
    }

    @Test func stableStillWithoutPodsAtTheProgressDeadlineEndsTheRolloutOnceItCanTakeTheTraffic() {
        var sim = Sim()
        sim.run { $0.status.stage == 0 && $0.observedCanaryWeight == 10 && $0.status.stageStartedAt != nil }
        sim.observed.stable!.readyReplicas = 0
        #expect(sim.reconcile().status.phase == .progressing)
        sim.now = Timestamp(seconds: sim.now.seconds + 11 * 60)
        sim.run(maxSteps: 20) { $0.phase == .failed }
        #expect(sim.phase == .rollingBack)
        #expect(sim.status.condition(ConditionType.progressing)?.reason == "ProgressDeadlineExceeded")
        #expect(sim.status.message?.contains("stable Deployment product-service has no ready pods") == true, "\(sim.status.message ?? "")")
        #expect(sim.observedCanaryWeight == 10)
        sim.observed.stable = stableDeployment()
        sim.run(maxSteps: 20) { $0.phase == .failed }
        #expect(sim.phase == .failed)
        #expect(sim.observedCanaryWeight == 0)
    }

    /// Seen with the real controller: `fledge trigger --force` while stable was scaled to 0 sent the canary's 10%
    /// to stable, which had no pod to take it.
    @Test func aNewRevisionWhileStableHasNoReadyPodsLeavesTheCanaryItsShareUntilStableCanTakeIt() {
        var sim = Sim()
        sim.run { $0.status.stage == 0 && $0.observedCanaryWeight == 10 && $0.status.stageStartedAt != nil }
        let canaryTemplate = sim.observed.canary!.template
        sim.observed.stable!.replicas = 0
        sim.observed.stable!.readyReplicas = 0
        sim.rollout.spec.canary = CanaryChange(image: "registry.example/product-service:3.0.0")
        sim.rollout.metadata.generation = 2
        sim.run(maxSteps: 20) { _ in false }
        #expect(sim.phase == .initializing)
        #expect(sim.observedCanaryWeight == 10)
        // The canary still runs the revision that has the traffic.
        #expect(sim.observed.canary!.template == canaryTemplate)
        let traffic = sim.status.condition(ConditionType.trafficReady)
        #expect(traffic?.reason == "StableNotReady")
        #expect(traffic?.message.contains("has no ready pods (scaled to 0); the canary keeps its 10% until stable can take it") == true, "\(String(describing: traffic))")
        sim.observed.stable = stableDeployment()
        sim.run(untilPhase: .succeeded)
        #expect(sim.stableImage() == "registry.example/product-service:3.0.0")
        #expect(Array(sim.weightHistory.drop { $0 != 10 }.dropFirst()).first == 0)
    }

    @Test func aNewRevisionDuringAnAbortsRollbackRecordsTheAbort() {
        var sim = Sim(spec: seedSpec(webhooks: [WebhookSpec(name: "notify", type: "post-rollout", url: "http://hooks.example/notify")]))
        sim.webhookAnswers["notify"] = true
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        let first = sim.status.revision!
        // The rollback waits for stable (no ready pod) while `fledge trigger --force` writes the next revision.
        sim.observed.stable!.readyReplicas = 0
        sim.request(.abort)
        sim.reconcile()
        #expect(sim.phase == .rollingBack)
        sim.observed.stable!.readyReplicas = 3
        sim.rollout.spec.canary = CanaryChange(image: "registry.example/product-service:3.0.0")
        sim.rollout.metadata.generation = 2
        let d = sim.reconcile()
        #expect(d.status.phase == .initializing)
        let entry = d.status.history.last
        #expect(entry?.revision == first)
        #expect(entry?.outcome == "Aborted")
        #expect(entry?.reason == "Aborted")
        #expect(entry?.message == "aborted by request")
        #expect(d.events.first { $0.reason == "NewRevision" }?.message.contains("replaces \(first), whose rollback (Aborted: aborted by request) had not finished") == true)
        // Its post-rollout notification is owed as for any aborted rollout.
        #expect(sim.webhookCalls.contains { $0.body["phase"] == "Aborted" && $0.body["revision"] == .string(first) })
        sim.run(untilPhase: .succeeded)
        #expect(sim.status.history.map(\.outcome) == ["Aborted", "Succeeded"])
    }

    @Test func revertingSpecCanaryDuringARollbackKeepsTheFailure() {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        sim.observed.canary!.readyReplicas = 0
        sim.reconcile()
        #expect(sim.phase == .rollingBack)
        sim.observed.stable!.readyReplicas = 3
        sim.rollout.spec.canary = CanaryChange(image: "registry.example/product-service:1.0.0")
        sim.run(untilPhase: .healthy)
        #expect(sim.status.history.map(\.outcome) == ["Failed"])
        #expect(sim.status.history.last?.reason == "CanaryUnavailable")
    }

    /// The clean-up of a reverted spec.canary is recorded Superseded when it begins; a new revision during it added a
    /// second entry, Superseded, for the stable revision, which had never rolled out.
    @Test func aNewRevisionDuringTheCleanUpOfARevertedCanaryAddsNoHistoryEntry() {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        sim.observed.stable!.readyReplicas = 0
        sim.rollout.spec.canary = CanaryChange(image: "registry.example/product-service:1.0.0")
        sim.reconcile()
        #expect(sim.phase == .rollingBack)
        #expect(sim.status.history.map(\.outcome) == ["Superseded"])
        sim.observed.stable!.readyReplicas = 3
        sim.rollout.spec.canary = CanaryChange(image: "registry.example/product-service:3.0.0")
        let d = sim.reconcile()
        #expect(d.status.history.map(\.outcome) == ["Superseded"])
        #expect(d.events.first { $0.reason == "NewRevision" }?.message.contains("while the canary of a cancelled rollout is cleaned up") == true)
        sim.run(untilPhase: .succeeded)
        #expect(sim.status.history.map(\.outcome) == ["Superseded", "Succeeded"])
    }

    @Test func aRetrySaysItIsARetry() {
        var sim = Sim()
        sim.behaviour = .errors(successRate: 95)
        sim.run(untilPhase: .failed)
        sim.behaviour = .healthy
        sim.request(.retry)
        let d = sim.reconcile()
        let revision = d.status.revision!
        #expect(d.status.phase == .initializing)
        let started = d.status.condition(ConditionType.progressing)
        #expect(started?.reason == "Retrying")
        #expect(started?.message.hasPrefix("retrying revision \(revision) (stable runs ") == true, "\(String(describing: started))")
        #expect(d.events.first { $0.reason == "RolloutStarted" }?.message.hasPrefix("revision \(revision) rolling out again over Deployment product-service (retry;") == true)
        // The canary left at zero replicas is updated, not created.
        #expect(sim.events.last { $0.reason == "CanaryNotReady" }?.message.contains("is being updated for revision \(revision)") == true)
        sim.run(untilPhase: .succeeded)
    }
}
