import FledgeCore
import FledgeJSON
import Testing

@Suite("decide: whole rollouts with a fake clock")
struct ScenarioTests {
    @Test func healthyCanaryIsPromotedThroughEveryPhase() {
        var sim = Sim()
        sim.run(untilPhase: .succeeded)
        #expect(sim.phase == .succeeded)
        #expect(sim.phases == [.initializing, .progressing, .promoting, .finalising, .succeeded])
        #expect(sim.stableImage() == "registry.example/product-service:2.0.0")
        #expect(sim.observedCanaryWeight == 0)
        #expect(sim.observed.canary?.replicas == 0)
        #expect(sim.weightHistory == [10, 25, 50, 100, 0])
        // Stable keeps its slot's labels; the header route and retries survive.
        #expect(sim.observed.stable!.template[path: ["metadata", "labels", "version"]] == "v1")
        let http = sim.observed.virtualService![path: ["spec", "http"]]!
        #expect(http[0] == seedVirtualService()[path: ["spec", "http"]]![0])
        #expect(http[1]!["retries"] == ["attempts": 3, "perTryTimeout": "2s"])
        #expect(sim.status.history.last?.outcome == "Succeeded")
        #expect(sim.status.revision == sim.status.stableRevision)
        #expect(sim.events.map(\.reason).contains("RolloutSucceeded"))
        // Settled: nothing more to write.
        let d = sim.reconcile()
        #expect(d.writes.isEmpty)
    }

    @Test func templatePatchRolloutIsPromoted() {
        var spec = seedSpec(image: nil)
        spec.canary = CanaryChange(
            images: ["app=registry.example/product-service:2.1.0"],
            templatePatch: ["spec": ["containers": [["name": "app", "image": "ignored", "env": [["name": "FEATURE", "value": "on"]]]]]])
        var sim = Sim(spec: spec)
        sim.run(untilPhase: .succeeded)
        let container = sim.observed.stable!.template[path: ["spec", "containers"]]?[0]
        #expect(container?["image"] == "registry.example/product-service:2.1.0")
        #expect(container?["env"] == [["name": "FEATURE", "value": "on"]])
        #expect(sim.status.revision == sim.status.stableRevision)
        // The change is already live: nothing more to roll out.
        #expect(sim.reconcile().writes.isEmpty)
    }

    @Test func canaryIsBuiltWithTheCanarySubsetsLabelsAndItsOwnSelector() {
        var sim = Sim()
        sim.run { $0.observed.canary != nil }
        let canary = sim.observed.canary!
        #expect(canary.name == "product-service-canary")
        #expect(canary.podLabels == ["app": "product-service", "version": "v2"])
        #expect(canary.selector == ["app": "product-service", "version": "v2"])
        #expect(canary.template[path: ["spec", "containers"]]?[0]?["image"] == "registry.example/product-service:2.0.0")
        #expect(canary.replicas == 3)
        #expect(canary.revisionAnnotation == sim.status.revision)
    }

    @Test func failingCanaryRollsBackAtExactlyFailureLimit() {
        var sim = Sim()
        sim.behaviour = .errors(successRate: 95)
        sim.run { $0.phase == .rollingBack }
        #expect(sim.status.failedChecks == 3)
        #expect(sim.status.condition(ConditionType.progressing)?.reason == "AnalysisFailed")
        #expect(sim.status.message?.contains("success-rate=95") == true)
        sim.run(untilPhase: .failed)
        #expect(sim.observedCanaryWeight == 0)
        #expect(sim.observed.canary?.replicas == 0)
        #expect(sim.stableImage() == "registry.example/product-service:1.0.0")
        #expect(sim.status.history.last?.outcome == "Failed")
        #expect(sim.status.history.last?.reason == "AnalysisFailed")
        // Failed stays failed and settled.
        #expect(sim.reconcile().writes.isEmpty)
    }

    @Test(arguments: [1, 2, 3, 4])
    func failuresBelowTheLimitDoNotRollBack(limit: Int) {
        var sim = Sim(spec: seedSpec(failureLimit: limit))
        sim.behaviour = .errors(successRate: 90)
        // Let limit - 1 failures happen, then the canary recovers.
        sim.run { $0.status.failedChecks >= limit - 1 && $0.phase == .progressing || $0.phase == .rollingBack }
        if limit == 1 {
            sim.run { $0.phase == .rollingBack }
            #expect(sim.status.failedChecks == 1)
            return
        }
        #expect(sim.phase == .progressing)
        sim.behaviour = .healthy
        sim.run(untilPhase: .succeeded)
        #expect(sim.phase == .succeeded)
        #expect(sim.status.history.last?.outcome == "Succeeded")
    }

    @Test func slowCanaryRollsBack() {
        var sim = Sim()
        sim.behaviour = .slow(p99: 900)
        sim.run(untilPhase: .failed)
        #expect(sim.status.lastAnalysis?.first { $0.name == "latency-p99" }?.verdict == .failed)
        #expect(sim.stableImage() == "registry.example/product-service:1.0.0")
    }

    @Test func noDataIsNeverAPassAndEndsAtTheProgressDeadline() {
        var sim = Sim(spec: seedSpec(progressDeadline: "2m"))
        sim.behaviour = .noData
        sim.run(maxSteps: 3000) { $0.phase == .rollingBack }
        #expect(sim.phase == .rollingBack)
        #expect(sim.status.stage == 0)
        #expect(sim.status.passedChecks == 0)
        #expect(sim.status.inconclusiveChecks >= 10)
        #expect(sim.status.failedChecks == 0)
        #expect(sim.status.condition(ConditionType.progressing)?.reason == "ProgressDeadlineExceeded")
        #expect(!sim.phases.contains(.promoting))
        #expect(!sim.weightHistory.contains(25))
    }

    /// Rule 7: a controller that comes back after more than the progress deadline (it was killed, its node lost)
    /// measures a healthy canary before it judges the rollout stuck; a stuck one still ends, after the grace.
    @Test func aProgressDeadlinePassedWhileNoControllerLookedIsCheckedAfterALook() {
        var sim = Sim(spec: seedSpec(progressDeadline: "2m"))
        sim.run { $0.status.stage == 1 && $0.status.passedChecks >= 1 }
        #expect(sim.phase == .progressing)
        // The controller was down 15 minutes; the new one began deciding just now.
        sim.now = Timestamp(seconds: sim.now.seconds + 15 * 60)
        sim.decidingSince = sim.now
        sim.latest = nil
        let first = sim.reconcile()
        #expect(sim.phase == .progressing, "\(sim.status.message ?? "")")
        #expect(first.actions.contains { if case .runAnalysis = $0 { true } else { false } })
        sim.run(untilPhase: .succeeded)
        #expect(sim.phase == .succeeded)
        #expect(!sim.phases.contains(.rollingBack))

        // Stuck: no data after the restart. Nothing ends before the grace (2 intervals) is over.
        var stuck = Sim(spec: seedSpec(progressDeadline: "2m"))
        stuck.run { $0.status.stage == 1 && $0.status.passedChecks >= 1 }
        stuck.behaviour = .noData
        stuck.now = Timestamp(seconds: stuck.now.seconds + 15 * 60)
        stuck.decidingSince = stuck.now
        stuck.latest = nil
        let restarted = stuck.now
        let wakeUp = stuck.reconcile().actions.compactMap { if case .requeue(let after) = $0 { after } else { nil } }
        #expect(wakeUp.contains(.seconds(21)), "\(wakeUp)")
        stuck.run { $0.phase != .progressing }
        #expect(stuck.phase == .rollingBack)
        #expect(stuck.status.condition(ConditionType.progressing)?.reason == "ProgressDeadlineExceeded")
        #expect(stuck.now.seconds - restarted.seconds >= 20)
    }

    /// The clock steps back an hour mid-stage (NTP, or a new leader whose clock is behind): the canary is still
    /// measured every interval, not left unjudged until the clock catches up with the times in status.
    @Test func aClockSteppedBackStillAnalysesTheCanary() {
        var sim = Sim(spec: seedSpec(progressDeadline: "2m"))
        sim.run { $0.status.stage == 1 && $0.status.passedChecks >= 1 }
        sim.now = Timestamp(seconds: sim.now.seconds - 3600)
        let stepped = sim.now
        sim.behaviour = .errors(successRate: 80)
        sim.run(maxSteps: 500) { $0.phase != .progressing }
        #expect(sim.phase == .rollingBack)
        #expect(sim.status.condition(ConditionType.progressing)?.reason == "AnalysisFailed")
        #expect(sim.now.seconds - stepped.seconds <= 60, "rolled back \(sim.now.seconds - stepped.seconds) s after the step")
        sim.run(untilPhase: .failed)
        #expect(sim.phase == .failed)

        // A stage gate that answered before the step is asked again at once, not an hour later.
        let hooks = [WebhookSpec(name: "gate", type: "stage-gate", url: "http://127.0.0.1:9/gate")]
        var gated = Sim(spec: seedSpec(webhooks: hooks))
        gated.webhookAnswers["gate"] = false
        gated.run(maxSteps: 300) { $0.webhookCalls.count >= 2 }
        gated.now = Timestamp(seconds: gated.now.seconds - 3600)
        let calls = gated.webhookCalls.count
        gated.webhookAnswers["gate"] = true
        gated.run(maxSteps: 100) { $0.status.stage == 1 }
        #expect(gated.status.stage == 1)
        #expect(gated.webhookCalls.count == calls + 1)
    }

    /// A canary whose old pods are all ready while the new revision rolls out waits, and says for what.
    @Test func aCanaryRollingOutSaysHowManyPodsRunTheNewTemplate() {
        var sim = Sim()
        sim.run { $0.observed.canary != nil }
        sim.observed.canary!.updatedReplicas = 1
        sim.observed.canary!.availableReplicas = 3
        sim.reconcile()
        #expect(sim.phase == .initializing)
        let message = sim.status.condition(ConditionType.trafficReady)?.message ?? ""
        // Counted on the revision being rolled out: 1 pod runs it, though 3 of the former one are ready.
        #expect(message.hasPrefix("canary Deployment product-service-canary: 1/3 pods ready on revision "), "\(message)")
    }

    @Test func noDataCountsAsFailureWhenConfigured() {
        var sim = Sim(spec: seedSpec(noData: "fail"))
        sim.behaviour = .noData
        sim.run(untilPhase: .failed)
        #expect(sim.status.failedChecks == 3)
        #expect(sim.status.history.last?.reason == "AnalysisFailed")
    }

    @Test(arguments: [Int64(0), 19])
    func tooFewRequestsHoldTheStage(requests: Int64) {
        var sim = Sim(spec: seedSpec(minRequests: 20, progressDeadline: "1h"))
        sim.behaviour = .fewRequests(requests)
        sim.run(maxSteps: 400) { _ in false }
        #expect(sim.phase == .progressing)
        #expect(sim.status.stage == 0)
        #expect(sim.status.passedChecks == 0)
        #expect(sim.status.lastAnalysis?.first?.message == "\(requests) requests < minRequests 20")
        // Exactly minRequests passes.
        sim.behaviour = .fewRequests(20)
        sim.run(untilPhase: .succeeded)
        #expect(sim.phase == .succeeded)
    }

    @Test func providerErrorsHoldThenRollBackAtTheLimit() {
        var sim = Sim(spec: seedSpec(providerErrorLimit: 4, progressDeadline: "1h"))
        sim.behaviour = .providerDown
        sim.run { $0.status.errorChecks == 3 }
        #expect(sim.phase == .progressing)
        #expect(sim.status.stage == 0)
        // The provider comes back: the error streak resets and the rollout continues.
        sim.behaviour = .healthy
        sim.run { $0.status.passedChecks >= 1 }
        #expect(sim.status.errorChecks == 0)
        sim.behaviour = .providerDown
        sim.run { $0.phase == .rollingBack }
        #expect(sim.status.errorChecks == 4)
        #expect(sim.status.condition(ConditionType.progressing)?.reason == "MetricProviderUnavailable")
        sim.run(untilPhase: .failed)
        #expect(sim.observedCanaryWeight == 0)
    }

    @Test func progressDeadlineWhileTheCanaryNeverGetsReady() {
        var sim = Sim(spec: seedSpec(progressDeadline: "1m"))
        sim.canaryPodsBecomeReady = false
        sim.run { $0.phase == .rollingBack }
        #expect(sim.status.condition(ConditionType.progressing)?.reason == "ProgressDeadlineExceeded")
        #expect(sim.weightHistory.allSatisfy { $0 == 0 })
        #expect(sim.status.condition(ConditionType.trafficReady)?.reason == "CanaryNotReady")
        sim.run(untilPhase: .failed)
    }

    @Test func newRevisionMidRolloutGoesBackToStableThenStartsOver() {
        var sim = Sim()
        sim.run { $0.status.stage == 2 && $0.observedCanaryWeight == 50 }
        let first = sim.status.revision
        sim.rollout.spec.canary = CanaryChange(image: "registry.example/product-service:3.0.0")
        sim.rollout.metadata.generation = 2
        let d = sim.reconcile()
        #expect(d.status.phase == .initializing)
        #expect(d.weightChanges.map(\.canaryWeight) == [0])
        #expect(!d.actions.contains { if case .ensureCanaryDeployment = $0 { return true } else { return false } })
        #expect(d.status.history.last?.outcome == "Superseded")
        #expect(d.status.history.last?.revision == first)
        #expect(d.events.first { $0.reason == "NewRevision" }?.message.contains("then starting over") == true)
        #expect(d.status.revision != first)
        #expect(d.status.observedGeneration == 2)
        sim.run(untilPhase: .succeeded)
        #expect(sim.stableImage() == "registry.example/product-service:3.0.0")
        // After the switch, the weight went to 0 before any new stage weight.
        let afterSwitch = Array(sim.weightHistory.drop { $0 != 50 }.dropFirst())
        #expect(afterSwitch.first == 0)
    }

    @Test func revertingTheCanaryChangeMidRolloutCleansUpToHealthy() {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        let first = sim.status.revision!
        sim.rollout.spec.canary = CanaryChange(image: "registry.example/product-service:1.0.0")
        let d = sim.reconcile()
        // A cancel, not a new rollout: the Event says the canary went back to stable and nothing starts over.
        let newRevision = d.events.first { $0.reason == "NewRevision" }
        #expect(newRevision?.message.contains("set back to the stable revision \(d.status.stableRevision!)") == true, "\(newRevision?.message ?? "")")
        #expect(newRevision?.message.contains("\(first) is cancelled") == true)
        #expect(newRevision?.message.contains("ends without promotion") == true)
        #expect(newRevision?.message.contains("starting over") == false)
        #expect(d.status.history.last?.message?.contains("set back to the stable revision") == true)
        sim.run(untilPhase: .healthy)
        #expect(sim.observedCanaryWeight == 0)
        #expect(sim.observed.canary?.replicas == 0)
        #expect(sim.stableImage() == "registry.example/product-service:1.0.0")
        #expect(!sim.events.contains { $0.reason == "RolloutStarted" && $0.message.hasPrefix("revision \(d.status.stableRevision!) ") })
    }

    @Test func manualApprovalStagePausesUntilPromote() {
        let stages = [StageSpec(weight: 10, hold: "10s"), StageSpec(weight: 50, hold: "10s", approval: "manual"), StageSpec(weight: 100, hold: "10s")]
        var sim = Sim(spec: seedSpec(stages: stages))
        sim.run(untilPhase: .paused)
        #expect(sim.status.stage == 1)
        #expect(sim.observedCanaryWeight == 50)
        #expect(sim.events.contains { $0.reason == "AwaitingApproval" })
        // Waiting does not hit the progress deadline.
        sim.now = Timestamp(seconds: sim.now.seconds + 3600)
        sim.run(maxSteps: 50) { _ in false }
        #expect(sim.phase == .paused)
        sim.request(.promote)
        let d = sim.reconcile()
        #expect(d.status.requests.first { $0.kind == .promote }?.accepted == true)
        #expect(d.status.stage == 2)
        sim.run(untilPhase: .succeeded)
    }

    @Test func theAbortReasonReachesTheEventsStatusAndHistory() {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        sim.rollout.metadata.annotations = (sim.rollout.metadata.annotations ?? [:]).merging([ManualRequest.abortReasonAnnotation: "testing\n  abort"]) { $1 }
        sim.request(.abort)
        let d = sim.reconcile()
        #expect(d.status.message == "aborted by request: testing abort")
        #expect(d.events.contains { $0.reason == "RollingBack" && $0.message == "Aborted: aborted by request: testing abort" })
        sim.run(untilPhase: .aborted)
        #expect(sim.events.last { $0.reason == "RolloutAborted" }?.message == "aborted by request: testing abort")
        #expect(sim.status.history.last?.message == "aborted by request: testing abort")
    }

    @Test func aLongOrBlankAbortReasonStaysOneBoundedLine() {
        var rollout = seedRollout()
        rollout.metadata.annotations = [ManualRequest.abortReasonAnnotation: "  \n "]
        #expect(rollout.abortReason == nil)
        rollout.metadata.annotations = [ManualRequest.abortReasonAnnotation: String(repeating: "x", count: 1000)]
        #expect(rollout.abortReason?.count == Rollout.abortReasonLimit)
        #expect(rollout.abortReason?.hasSuffix("…") == true)
    }

    @Test func thePromotingEventNamesTheStagesPromotedByRequest() {
        var sim = Sim()
        sim.run(untilPhase: .promoting)
        #expect(sim.events.last { $0.reason == "Promoting" }?.message.hasPrefix("all 4 stages passed; promoting revision") == true)

        var skipped = Sim()
        skipped.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        skipped.request(.promote)
        skipped.reconcile()
        skipped.run { $0.status.stage == 2 && $0.observedCanaryWeight == 50 }
        skipped.request(.promote)
        skipped.reconcile()
        #expect(skipped.status.promotedStages == [1, 2])
        skipped.run(untilPhase: .promoting)
        let message = skipped.events.last { $0.reason == "Promoting" }?.message ?? ""
        #expect(message.hasPrefix("4 stages done, stages 2 and 3 promoted by request; promoting revision"), "\(message)")
        skipped.run(untilPhase: .succeeded)
        #expect(skipped.status.promotedStages == nil)
    }

    @Test func approvingAStageThatPassedIsNotASkip() {
        let stages = [StageSpec(weight: 10, hold: "10s"), StageSpec(weight: 50, hold: "10s", approval: "manual"), StageSpec(weight: 100, hold: "10s")]
        var sim = Sim(spec: seedSpec(stages: stages))
        sim.run(untilPhase: .paused)
        sim.request(.promote)
        sim.reconcile()
        #expect(sim.status.promotedStages == nil)
        sim.run(untilPhase: .promoting)
        #expect(sim.events.last { $0.reason == "Promoting" }?.message.hasPrefix("all 3 stages passed") == true)
    }

    @Test func abortMidStageSendsNothingToTheCanary() {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        sim.request(.abort)
        let d = sim.reconcile()
        #expect(d.status.phase == .rollingBack)
        #expect(d.weightChanges.map(\.canaryWeight) == [0])
        #expect(d.weightChanges.first?.stableWeight == 100)
        sim.run(untilPhase: .aborted)
        #expect(sim.observedCanaryWeight == 0)
        #expect(sim.observed.canary?.replicas == 0)
        #expect(sim.status.history.last?.outcome == "Aborted")
        #expect(sim.stableImage() == "registry.example/product-service:1.0.0")
        // The same request is not acted on twice; a retry starts over.
        #expect(sim.reconcile().writes.isEmpty)
        sim.request(.retry)
        let r = sim.reconcile()
        #expect(r.status.phase == .initializing)
        sim.run(untilPhase: .succeeded)
    }

    @Test func promoteFullSkipsTheRemainingStages() {
        var sim = Sim()
        sim.run { $0.status.stage == 0 && $0.observedCanaryWeight == 10 }
        sim.request(.promoteFull)
        let d = sim.reconcile()
        #expect(d.status.phase == .promoting)
        #expect(d.actions.contains { if case .writeStableTemplate = $0 { return true } else { return false } })
        sim.run(untilPhase: .succeeded)
        #expect(!sim.weightHistory.contains(25))
    }

    @Test func promoteEndsTheCurrentStageEarly() {
        var sim = Sim()
        sim.run { $0.status.stage == 0 && $0.observedCanaryWeight == 10 }
        sim.request(.promote)
        let d = sim.reconcile()
        #expect(d.status.stage == 1)
        #expect(d.weightChanges.map(\.canaryWeight) == [25])
    }

    @Test func seedsNinetyTenSplitIsMovedToStableWhenNothingIsInFlight() {
        var sim = Sim(spec: seedSpec(image: nil), seedWeight: 10)
        let d = sim.reconcile()
        #expect(d.status.phase == .healthy)
        #expect(d.weightChanges.map(\.canaryWeight) == [0])
        #expect(d.eventReasons.contains("WeightsReset"))
        #expect(d.status.canaryWeight == 10)  // what the cluster had when read
        let again = sim.reconcile()
        #expect(again.status.canaryWeight == 0)
        #expect(again.writes.isEmpty)
        #expect(sim.reconcile().writes.isEmpty)
    }

    @Test func adoptionDoesNotMoveWeightOntoABrokenStableSubset() {
        var sim = Sim(spec: seedSpec(image: nil), seedWeight: 10, destinationRule: seedDestinationRule(stableLabels: ["version": "v11"]))
        let d = sim.reconcile()
        #expect(d.weightChanges.isEmpty)
        #expect(d.status.condition(ConditionType.trafficReady)?.reason == "SubsetSelectsNoPods")
        // Once the DestinationRule is fixed, the split is moved.
        sim.observed.destinationRule = seedDestinationRule()
        #expect(sim.reconcile().weightChanges.map(\.canaryWeight) == [0])
    }

    @Test func stableSubsetLabelTypoHoldsBeforeAnyTraffic() {
        var sim = Sim(destinationRule: seedDestinationRule(stableLabels: ["version": "v11"]))
        sim.run(maxSteps: 200) { _ in false }
        #expect(sim.phase == .initializing)
        #expect(sim.weightHistory.allSatisfy { $0 == 0 })
        let c = sim.status.condition(ConditionType.trafficReady)
        #expect(c?.status == .false)
        #expect(c?.reason == "SubsetSelectsNoPods")
        #expect(c?.message.contains("version=v11") == true)
    }

    @Test func canarySubsetLabelKeyTypoHolds() {
        var sim = Sim(destinationRule: seedDestinationRule(canaryLabels: ["verison": "v2"]))
        sim.run(maxSteps: 200) { _ in false }
        #expect(sim.weightHistory.allSatisfy { $0 == 0 })
        #expect(sim.status.condition(ConditionType.trafficReady)?.reason == "SubsetLabelMismatch")
        #expect(sim.status.condition(ConditionType.trafficReady)?.message.contains("verison") == true)
    }

    @Test func aSubsetLabelTypoFixedLaterGivesTheCanaryTheRightLabels() {
        // The typo is fixed before the canary exists: its labels and selector come from the fixed subset.
        var sim = Sim(destinationRule: seedDestinationRule(canaryLabels: ["verison": "v2"]))
        sim.run(maxSteps: 50) { _ in false }
        #expect(sim.observed.canary == nil)
        #expect(sim.status.condition(ConditionType.trafficReady)?.reason == "SubsetLabelMismatch")
        sim.observed.destinationRule = seedDestinationRule()
        sim.run(maxSteps: 200) { $0.phase == .progressing }
        #expect(sim.phase == .progressing)
        #expect(sim.observed.canary?.podLabels["version"] == "v2")
        #expect(sim.observed.canary?.podLabels["verison"] == nil)
        #expect(sim.observed.canary?.selector == ["app": "product-service", "version": "v2"])
        // Making the canary is a normal step, not a Warning.
        #expect(sim.events.first { $0.message.contains("is being created") }?.type == .normal)
    }

    @Test func aCanaryWhoseLabelsNoLongerMatchTheSubsetIsRewritten() {
        var sim = Sim()
        sim.run { $0.observed.canary != nil }
        // The canary subset now selects another label value than the canary Deployment carries.
        sim.observed.destinationRule = seedDestinationRule(canaryLabels: ["version": "v2b"])
        let d = sim.reconcile()
        let ensured = d.actions.compactMap { a -> CanaryDeploymentSpec? in
            if case .ensureCanaryDeployment(let spec) = a { return spec } else { return nil }
        }
        #expect(ensured.first?.selector == ["app": "product-service", "version": "v2b"])
        #expect(ensured.first?.template[path: ["metadata", "labels", "version"]] == "v2b")
    }

    @Test func aCanaryThatAnotherRolloutOwnsIsLeftAlone() {
        var sim = Sim(seedWeight: 10)
        var canary = stableDeployment()
        canary.name = "product-service-canary"
        canary.owningRollout = "product-service-2"
        sim.observed.canary = canary
        let first = sim.reconcile()
        #expect(first.actions.count == 1)
        #expect(first.eventReasons == ["TargetInUse"])
        let valid = first.status.condition(ConditionType.specValid)
        #expect(valid?.status == .false)
        #expect(valid?.reason == "TargetInUse")
        #expect(valid?.message.contains("Rollout product-service-2") == true)
        // Nothing written, no Event repeated: no tug of war over the canary's replicas or the weights.
        sim.now = Timestamp(seconds: sim.now.seconds + 30)
        #expect(sim.reconcile().actions.isEmpty)
        #expect(sim.observedCanaryWeight == 10)
        // Its own canary (a Rollout created again under the same name) is not a conflict.
        sim.observed.canary?.owningRollout = "product-service"
        sim.run(maxSteps: 500) { $0.phase == .progressing }
        #expect(sim.status.condition(ConditionType.specValid)?.status == .true)
    }

    @Test func missingSubsetHolds() {
        var dr = seedDestinationRule()
        dr[path: ["spec", "subsets"]] = [["name": "stable", "labels": ["version": "v1"]]]
        var sim = Sim(destinationRule: dr)
        sim.run(maxSteps: 100) { _ in false }
        #expect(sim.weightHistory.allSatisfy { $0 == 0 })
        #expect(sim.status.condition(ConditionType.trafficReady)?.message == "DestinationRule product-service has no subset 'canary' (it has 'stable'): check spec.traffic.canarySubset")
    }

    @Test func handEditedWeightsArePutBack() {
        var sim = Sim(spec: seedSpec(progressDeadline: "1h"))
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 && $0.status.stageStartedAt != nil }
        sim.observed.virtualService = seedVirtualService(canaryWeight: 70)
        let d = sim.reconcile()
        #expect(d.weightChanges.map(\.canaryWeight) == [25])
        #expect(d.eventReasons.contains("WeightsRestored"))
        #expect(d.status.canaryWeight == 70)
    }

    @Test func canaryPodsDisappearingWhileServingRollBack() {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        sim.observed.canary!.readyReplicas = 0
        let d = sim.reconcile()
        #expect(d.status.phase == .rollingBack)
        #expect(d.weightChanges.map(\.canaryWeight) == [0])
    }

    @Test func comparisonWithStable() {
        let metrics = [MetricSpec(name: "success-rate", min: 90, maxDecreaseFromStable: 0.5)]
        var sim = Sim(spec: seedSpec(metrics: metrics))
        sim.behaviour = .errors(successRate: 99.0)  // stable 99.9: 0.9 points lower
        sim.run(untilPhase: .failed)
        let last = sim.status.history.last
        #expect(last?.reason == "AnalysisFailed")
        #expect(last?.message?.contains("more than 0.5 below stable's 99.9") == true)
    }

    @Test func preRolloutWebhookGatesTraffic() {
        let hooks = [WebhookSpec(name: "smoke", type: "pre-rollout", url: "http://127.0.0.1:9/smoke")]
        var sim = Sim(spec: seedSpec(webhooks: hooks))
        sim.webhookAnswers["smoke"] = false
        sim.run(untilPhase: .failed)
        #expect(sim.weightHistory.allSatisfy { $0 == 0 })
        #expect(sim.status.history.last?.reason == "PreRolloutWebhookFailed")
        #expect(sim.webhookCalls.first?.body["revision"] == .string(sim.status.revision!))

        var ok = Sim(spec: seedSpec(webhooks: hooks))
        ok.webhookAnswers["smoke"] = true
        ok.run(untilPhase: .succeeded)
    }

    @Test func anUnreachablePreRolloutWebhookIsRetriedUntilItAnswers() {
        let hooks = [WebhookSpec(name: "smoke", type: "pre-rollout", url: "http://127.0.0.1:9/smoke")]
        var sim = Sim(spec: seedSpec(webhooks: hooks))
        sim.unreachableWebhooks = ["smoke"]
        sim.run(maxSteps: 300) { $0.webhookCalls.count >= 3 }
        #expect(sim.phase == .initializing)
        #expect(sim.status.message?.contains("waiting for pre-rollout webhook smoke") == true)
        #expect(sim.weightHistory.allSatisfy { $0 == 0 })
        // Asked again once per interval (10s), not on every reconcile.
        let times = sim.decisions.indices.filter { i in sim.decisions[i].actions.contains { if case .callWebhook = $0 { true } else { false } } }
        #expect(times.count == 3)
        sim.unreachableWebhooks = []
        sim.webhookAnswers["smoke"] = true
        sim.run(untilPhase: .progressing)
        #expect(sim.phase == .progressing)

        // Never reachable: the progressDeadline ends it, and an answer that says no still fails at once.
        var down = Sim(spec: seedSpec(progressDeadline: "2m", webhooks: hooks))
        down.unreachableWebhooks = ["smoke"]
        down.run(untilPhase: .failed)
        #expect(down.status.history.last?.reason == "ProgressDeadlineExceeded")
        #expect(down.weightHistory.allSatisfy { $0 == 0 })
    }

    @Test func stageGateHoldsAndIsRetried() {
        let hooks = [
            WebhookSpec(name: "gate", type: "stage-gate", url: "http://127.0.0.1:9/gate"),
            WebhookSpec(name: "notify", type: "post-rollout", url: "http://127.0.0.1:9/notify"),
        ]
        var sim = Sim(spec: seedSpec(webhooks: hooks, ))
        sim.webhookAnswers["gate"] = false
        sim.run(maxSteps: 300) { _ in false }
        #expect(sim.status.stage == 0)
        #expect(sim.webhookCalls.filter { $0.name == "gate" }.count > 1)
        sim.webhookAnswers["gate"] = true
        sim.webhookOutcomes = [:]
        sim.run(untilPhase: .succeeded)
        #expect(sim.webhookCalls.contains { $0.name == "notify" && $0.body["phase"] == "Succeeded" })
    }

    /// Rule 7 for notifications: a post-rollout webhook is owed in status with the status that ends the rollout, called
    /// again every interval while it gives no 2xx, by whichever controller decides next, and given up (with a Warning)
    /// once a call fails after `progressDeadline`.
    @Test func aPostRolloutNotificationIsOwedInStatusUntilAnswered() {
        let hooks = [WebhookSpec(name: "notify", type: "post-rollout", url: "http://127.0.0.1:9/notify")]
        var sim = Sim(spec: seedSpec(progressDeadline: "2m", webhooks: hooks))
        sim.unreachableWebhooks = ["notify"]
        sim.run(untilPhase: .succeeded)
        let ending = sim.decisions.last!
        #expect(ending.status.pendingNotifications?.map(\.webhook) == ["notify"])
        #expect(ending.status.pendingNotifications?.first?.phase == .succeeded)
        #expect(ending.actions.contains { if case .callWebhook(let call) = $0 { call.name == "notify" } else { false } })

        // A controller killed before its call: the next one calls (it has no answer in memory).
        var restarted = sim
        restarted.webhookOutcomes = [:]
        restarted.webhookCalls = []
        restarted.unreachableWebhooks = []
        restarted.webhookAnswers["notify"] = true
        restarted.reconcile()
        #expect(restarted.webhookCalls.map { $0.body["phase"] } == ["Succeeded"])
        restarted.reconcile()
        #expect(restarted.status.pendingNotifications == nil)
        #expect(restarted.webhookCalls.count == 1)

        // Unreachable: called again every interval (10 s), not on every reconcile, then given up.
        sim.webhookCalls = []
        sim.run(maxSteps: 5000) { $0.status.pendingNotifications == nil }
        #expect(sim.status.pendingNotifications == nil)
        let times = sim.webhookCalls.map(\.id).count
        #expect(times >= 12 && times <= 13, "\(times) calls")
        #expect(sim.events.contains { $0.reason == "NotificationFailed" })
        #expect(sim.phase == .succeeded)
    }

    /// A Rollout deleted while a post-rollout notification is owed keeps its finalizer until the notification is
    /// delivered: its status, where it is owed, goes with the Rollout (the finalizer used to come off with the end).
    @Test func deletingARolloutWaitsForItsOwedNotification() {
        let hooks = [WebhookSpec(name: "notify", type: "post-rollout", url: "http://127.0.0.1:9/notify")]
        var sim = Sim(spec: seedSpec(progressDeadline: "2m", webhooks: hooks))
        sim.unreachableWebhooks = ["notify"]
        sim.run(untilPhase: .succeeded)
        #expect(sim.status.pendingNotifications != nil)
        #expect(sim.rollout.metadata.finalizers == [Finalizers.traffic], "an owed notification keeps the finalizer")
        sim.rollout.metadata.deletionTimestamp = "2027-01-15T10:00:00Z"
        let waiting = sim.reconcile()
        #expect(!sim.deleted)
        #expect(waiting.status.message?.contains("waiting for post-rollout webhook notify") == true, "\(waiting.status.message ?? "")")
        // The receiver is back: delivered, then the Rollout goes.
        sim.unreachableWebhooks = []
        sim.webhookAnswers["notify"] = true
        sim.webhookCalls = []
        sim.run(maxSteps: 100) { $0.deleted }
        #expect(sim.deleted)
        #expect(sim.webhookCalls.contains { $0.name == "notify" && $0.body["phase"] == "Succeeded" })
        #expect(!sim.events.contains { $0.reason == "NotificationFailed" })

        // Once delivered, an idle Rollout lets its finalizer go as before.
        var delivered = Sim(spec: seedSpec(webhooks: hooks))
        delivered.webhookAnswers["notify"] = true
        delivered.run(untilPhase: .succeeded)
        delivered.run(maxSteps: 20) { $0.rollout.metadata.finalizers == nil }
        #expect(delivered.rollout.metadata.finalizers == nil)
        #expect(delivered.status.pendingNotifications == nil)
    }

    /// The wait is bounded: a receiver that stays down is given up `progressDeadline` after the end (NotificationFailed),
    /// and with a spec that no longer validates (nothing can be called) at once.
    @Test func deletingARolloutGivesUpAnUndeliverableNotification() {
        let hooks = [WebhookSpec(name: "notify", type: "post-rollout", url: "http://127.0.0.1:9/notify")]
        var down = Sim(spec: seedSpec(progressDeadline: "2m", webhooks: hooks))
        down.unreachableWebhooks = ["notify"]
        down.run(untilPhase: .succeeded)
        let ended = down.now
        down.rollout.metadata.deletionTimestamp = "2027-01-15T10:00:00Z"
        down.run(maxSteps: 5000) { $0.deleted }
        #expect(down.deleted)
        #expect(down.now.seconds - ended.seconds >= 120)
        #expect(down.events.filter { $0.reason == "NotificationFailed" }.count == 1)

        var broken = Sim(spec: seedSpec(progressDeadline: "2m", webhooks: hooks))
        broken.unreachableWebhooks = ["notify"]
        broken.run(untilPhase: .succeeded)
        broken.rollout.spec.stages = [StageSpec(weight: 50, hold: "20s"), StageSpec(weight: 25, hold: "20s")]
        broken.rollout.metadata.deletionTimestamp = "2027-01-15T10:00:00Z"
        let last = broken.reconcile()
        #expect(broken.deleted)
        #expect(last.events.first { $0.reason == "NotificationFailed" }?.message.contains("does not validate") == true)
    }

    @Test func invalidSpecChangesNothingButTheCondition() {
        var spec = seedSpec()
        spec.stages = [StageSpec(weight: 10), StageSpec(weight: 50), StageSpec(weight: 40)]
        spec.analysis?.interval = "10 seconds"
        var sim = Sim(spec: spec, seedWeight: 10)
        let d = sim.reconcile()
        #expect(d.status.phase == .healthy)
        #expect(d.writes.count == 1)
        #expect(d.eventReasons == ["InvalidSpec"])
        let c = d.status.condition(ConditionType.specValid)
        #expect(c?.status == .false)
        #expect(c?.reason == "InvalidSpec")
        #expect(c?.message.contains("spec.stages[2].weight: 40 is not above the previous stage's 50") == true)
        #expect(c?.message.contains("spec.analysis.interval") == true)
        #expect(sim.reconcile().writes.isEmpty)
        #expect(sim.reconcile().status == d.status)
    }

    @Test func undecodableSpecIsReportedWithItsPath() throws {
        var json = try JSONValue(encoding: seedRollout())
        json[path: ["spec", "stages"]] = [["weight": "ten"]]
        let rollout = try Rollout(json: json)
        #expect(rollout.specDecodingIssues.first?.path == "spec.stages[0].weight")
        let d = decide(
            rollout: rollout, observed: Observed(stable: stableDeployment(), canary: nil, virtualService: seedVirtualService(), destinationRule: seedDestinationRule()),
            analysis: .none, now: Timestamp(seconds: 0))
        #expect(d.status.condition(ConditionType.specValid)?.message.hasPrefix("spec.stages[0].weight: expected an integer") == true)
    }

    /// Every field of the wrong type is reported, with what was found, and the rest of the spec is still checked.
    @Test func everyUndecodableFieldIsReportedWithTheRest() throws {
        var json = try JSONValue(encoding: seedRollout())
        json[path: ["spec", "stages"]] = [["weight": 10.5], ["weight": 5], ["weight": .double(1e23)]]
        json[path: ["spec", "analysis", "judge", "enabled"]] = "yes"
        let rollout = try Rollout(json: json)
        #expect(rollout.specDecodingIssues.map(\.description) == [
            "spec.stages[0].weight: expected an integer, found 10.5",
            "spec.stages[2].weight: 1e+23 is too large for an integer",
            "spec.analysis.judge.enabled: expected a boolean, found \"yes\"",
        ])
        guard case .failure(let errors) = rollout.plan() else {
            Issue.record("an undecodable spec planned")
            return
        }
        // The decoding problems, then what plan() finds in the rest; nothing about the fields read as absent.
        #expect(errors.issues.map(\.path) == ["spec.stages[0].weight", "spec.stages[2].weight", "spec.analysis.judge.enabled"])
        json[path: ["spec", "stages"]] = [["weight": 10.5], ["weight": 200]]
        let withRest = try Rollout(json: json)
        guard case .failure(let more) = withRest.plan() else { return }
        #expect(more.issues.map(\.description).contains("spec.stages[1].weight: 200 is not within 1…100"), "\(more)")
    }

    @Test func missingStableDeploymentHolds() {
        var sim = Sim()
        sim.observed.stable = nil
        let d = sim.reconcile()
        #expect(d.status.phase == .healthy)
        #expect(d.status.condition(ConditionType.trafficReady)?.reason == "StableNotFound")
        #expect(d.weightChanges.map(\.canaryWeight) == [])
    }

    @Test func anAbortIsAnsweredAfterTheStableDeploymentDisappeared() {
        var sim = Sim()
        sim.run { $0.phase == .progressing && $0.observedCanaryWeight == 10 }
        sim.observed.stable = nil
        sim.request(.promote)
        var d = sim.reconcile()
        #expect(d.status.phase == .progressing)
        #expect(d.status.requests.first { $0.kind == .promote }?.accepted == false)
        #expect(d.status.requests.first { $0.kind == .promote }?.message.contains("Deployment product-service not found") == true)
        sim.request(.abort)
        d = sim.reconcile()
        #expect(d.status.phase == .rollingBack)
        #expect(d.status.requests.first { $0.kind == .abort }?.accepted == true)
        // Rule 2 on the way back: with no stable pod to take it, the canary keeps its traffic (and its pods).
        sim.run(maxSteps: 20) { $0.phase == .aborted }
        #expect(sim.phase == .rollingBack)
        #expect(sim.weightHistory.last == 10)
        #expect(sim.observed.canary?.replicas ?? 0 > 0)
        let waiting = sim.status.condition(ConditionType.trafficReady)
        #expect(waiting?.reason == "StableNotFound")
        #expect(waiting?.message.contains("the canary keeps its 10%") == true, "\(String(describing: waiting))")
        // Stable back: the rollback finishes.
        sim.observed.stable = stableDeployment()
        sim.run(maxSteps: 20) { $0.phase == .aborted }
        #expect(sim.phase == .aborted)
        #expect(sim.status.stageProgress == nil)
        #expect(sim.observedCanaryWeight == 0)
        #expect(sim.observed.canary?.replicas == 0)
        // The outcome says why it ended, not what it held on.
        #expect(sim.status.history.last?.message == "aborted by request")
        #expect(sim.status.message == "aborted by request")
    }

    @Test func theProgressDeadlineStillEndsARolloutWhoseStableDeploymentDisappeared() {
        var sim = Sim()
        sim.run { $0.phase == .progressing && $0.observedCanaryWeight == 10 }
        sim.observed.stable = nil
        let d = sim.reconcile()
        #expect(d.status.phase == .progressing)
        #expect(d.status.message?.contains("Deployment product-service not found") == true)
        #expect(d.actions.contains { if case .requeue = $0 { return true } else { return false } })
        sim.now = Timestamp(seconds: sim.now.seconds + 11 * 60)
        sim.run(maxSteps: 20) { $0.phase == .failed }
        // The rollback waits for a stable pod rather than sending the canary's 10% to none.
        #expect(sim.phase == .rollingBack)
        #expect(sim.observedCanaryWeight == 10)
        sim.observed.stable = stableDeployment()
        sim.run(maxSteps: 20) { $0.phase == .failed }
        #expect(sim.phase == .failed)
        #expect(sim.status.history.last?.reason == "ProgressDeadlineExceeded")
        #expect(sim.observedCanaryWeight == 0)
    }

    @Test func theStatusMessageSaysWhyChecksDoNotAddUp() {
        var sim = Sim()
        sim.run { $0.phase == .progressing && $0.observedCanaryWeight == 10 && $0.status.stageStartedAt != nil }
        sim.behaviour = .providerDown
        sim.run(maxSteps: 200) { $0.status.errorChecks == 1 }
        #expect(sim.status.message?.contains("passing checks") == true)
        #expect(sim.status.message?.contains("last interval Error: ") == true, "\(sim.status.message ?? "")")
        #expect(sim.status.message?.contains("connection refused") == true, "\(sim.status.message ?? "")")
        sim.behaviour = .noData
        sim.run(maxSteps: 200) { $0.status.condition(ConditionType.analysis)?.reason == "Inconclusive" }
        #expect(sim.status.message?.contains("last interval Inconclusive: ") == true, "\(sim.status.message ?? "")")
        sim.behaviour = .healthy
        sim.run(maxSteps: 200) { $0.status.condition(ConditionType.analysis)?.reason == "Passed" }
        #expect(sim.status.message?.contains("last interval") != true, "\(sim.status.message ?? "")")
    }

    @Test func aDeletedCanaryIsReportedAsMissingNotAsLagging() {
        var sim = Sim()
        sim.run { $0.phase == .progressing && $0.observedCanaryWeight == 10 }
        sim.observed.virtualService = seedVirtualService(canaryWeight: 0)
        sim.observed.canary = nil
        let d = sim.reconcile()
        #expect(d.weightChanges.isEmpty)
        #expect(d.status.condition(ConditionType.trafficReady)?.message == "canary Deployment product-service-canary not found")
    }

    @Test func aRollbackWaitsForAStablePodBeforeMovingTheCanarysTrafficToIt() {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        sim.observed.stable!.readyReplicas = 0
        sim.request(.abort)
        sim.run(maxSteps: 30) { $0.phase == .aborted }
        #expect(sim.phase == .rollingBack)
        #expect(sim.observedCanaryWeight == 25)
        #expect(sim.observed.canary?.replicas ?? 0 > 0)
        let condition = sim.status.condition(ConditionType.trafficReady)
        #expect(condition?.reason == "StableNotReady")
        #expect(condition?.message.contains("has no ready pods (0/3 ready); the canary keeps its 25%") == true, "\(String(describing: condition))")
        // Said once, not on every reconcile.
        #expect(sim.events.filter { $0.reason == "StableNotReady" }.count == 1)
        // The outcome keeps the rollback's reason.
        sim.observed.stable!.readyReplicas = 3
        sim.run(maxSteps: 30) { $0.phase == .aborted }
        #expect(sim.phase == .aborted)
        #expect(sim.observedCanaryWeight == 0)
        #expect(sim.observed.canary?.replicas == 0)
        #expect(sim.status.history.last?.message == "aborted by request")
    }

    @Test func promotionFinishesMovingTrafficOnlyOnceStableHasReadyPods() {
        var sim = Sim()
        sim.run(untilPhase: .finalising)
        // Weight put back on the canary by hand while stable loses its pods.
        sim.observed.virtualService = seedVirtualService(canaryWeight: 50)
        let before = sim.observedCanaryWeight
        #expect(before == 50)
        sim.observed.stable!.readyReplicas = 0
        sim.run(maxSteps: 30) { $0.phase == .succeeded }
        #expect(sim.phase == .finalising)
        #expect(sim.observedCanaryWeight == before)
        #expect(sim.status.message?.contains("has no ready pods") == true)
        sim.observed.stable!.readyReplicas = 3
        sim.run(maxSteps: 30) { $0.phase == .succeeded }
        #expect(sim.phase == .succeeded)
        #expect(sim.observedCanaryWeight == 0)
    }

    @Test func aRolloutInFlightHoldsTheFinalizerUntilItIsDone() {
        var sim = Sim()
        sim.run { $0.rollout.metadata.finalizers != nil }
        // Added in the decision that starts the rollout, before any weight moves.
        let adding = sim.decisions.last!
        #expect(adding.actions.first == .setFinalizer(true))
        #expect(sim.weightHistory.allSatisfy { $0 == 0 })
        sim.run(untilPhase: .succeeded)
        sim.run(maxSteps: 10) { $0.rollout.metadata.finalizers == nil }
        #expect(sim.rollout.metadata.finalizers == nil)
        #expect(sim.observedCanaryWeight == 0)
        // Idle: no finalizer comes back.
        #expect(!sim.reconcile().actions.contains(.setFinalizer(true)))
    }

    @Test func deletingARolloutMidRolloutMovesItsTrafficBackFirst() {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        #expect(sim.rollout.metadata.finalizers == [Finalizers.traffic])
        sim.rollout.metadata.deletionTimestamp = "2027-01-15T10:00:00Z"
        let first = sim.reconcile()
        #expect(first.weightChanges.map(\.canaryWeight) == [0])
        #expect(!first.actions.contains(.setFinalizer(false)))
        #expect(first.eventReasons.contains("Deleting"))
        #expect(!sim.deleted)
        let second = sim.reconcile()
        #expect(second.actions.contains(.setFinalizer(false)))
        #expect(second.weightChanges.isEmpty)
        #expect(sim.deleted)
        #expect(sim.observedCanaryWeight == 0)
    }

    @Test func deletingARolloutWhoseSpecBrokeMidRolloutStillMovesItsTrafficBack() {
        var sim = Sim()
        sim.run { $0.observedCanaryWeight == 10 && $0.phase == .progressing }
        // Stages no longer ascending: the spec does not validate, and requests are answered, not left waiting.
        sim.rollout.spec.stages = [StageSpec(weight: 50, hold: "20s"), StageSpec(weight: 25, hold: "20s")]
        sim.request(.promote)
        let invalid = sim.reconcile()
        #expect(invalid.status.condition(ConditionType.specValid)?.status == .false)
        let answer = invalid.status.requests.first { $0.kind == .promote }
        #expect(answer?.accepted == false)
        #expect(answer?.message.contains("the spec is invalid") == true)
        #expect(invalid.weightChanges.isEmpty)
        sim.rollout.metadata.deletionTimestamp = "2027-01-15T10:00:00Z"
        #expect(sim.reconcile().weightChanges.map(\.canaryWeight) == [0])
        #expect(!sim.deleted)
        #expect(sim.reconcile().actions.contains(.setFinalizer(false)))
        #expect(sim.deleted)
        #expect(sim.observedCanaryWeight == 0)
    }

    /// The way out of a broken spec must not depend on fixing it: an abort takes the weight off the canary and
    /// scales it down on the routes the spec names.
    @Test func anAbortIsTakenWhileTheSpecIsInvalid() {
        var sim = Sim()
        sim.run { $0.observedCanaryWeight == 25 && $0.phase == .progressing }
        sim.rollout.spec.stages = [StageSpec(weight: 50, hold: "20s"), StageSpec(weight: 25, hold: "20s")]
        sim.rollout.spec.analysis?.interval = "nonsense"
        sim.request(.abort)
        let first = sim.reconcile()
        #expect(first.status.requests.first { $0.kind == .abort }?.accepted == true)
        #expect(first.weightChanges.map(\.canaryWeight) == [0])
        sim.run(maxSteps: 20) { $0.phase.isIdle }
        #expect(sim.phase == .aborted)
        #expect(sim.status.stageProgress == nil)
        #expect(sim.observedCanaryWeight == 0)
        #expect(sim.observed.canary?.replicas == 0)
        #expect(sim.rollout.metadata.finalizers == nil)
        #expect(sim.status.history.last?.outcome == "Aborted")
        #expect(sim.status.condition(ConditionType.specValid)?.status == .false)
        // Still nothing else: a retry is refused with the reason.
        sim.request(.retry)
        let retry = sim.reconcile()
        #expect(retry.status.requests.first { $0.kind == .retry }?.accepted == false)
        #expect(retry.writes.allSatisfy { if case .emitEvent = $0 { true } else { false } })
    }

    @Test func deletingARolloutWithAnInvalidSpecOrNoVirtualServiceLetsItGo() {
        var sim = Sim()
        sim.run { $0.observedCanaryWeight == 10 }
        sim.rollout.metadata.deletionTimestamp = "2027-01-15T10:00:00Z"
        sim.observed.virtualService = nil
        #expect(sim.reconcile().actions == [.setFinalizer(false)])
        #expect(sim.deleted)
        // Without the finalizer (an idle Rollout) there is nothing to do.
        var idle = Sim(spec: seedSpec(image: nil))
        idle.rollout.metadata.deletionTimestamp = "2027-01-15T10:00:00Z"
        #expect(idle.reconcile().actions.isEmpty)
    }

    @Test func promotionWaitsForTheStableDeployment() {
        var sim = Sim()
        sim.run { $0.phase == .promoting }
        let write = sim.decisions.last!.actions.compactMap { a -> JSONValue? in
            if case .writeStableTemplate(let name, let template, let rev) = a, name == "product-service", rev == sim.status.revision { return template }
            return nil
        }.first
        #expect(write?[path: ["spec", "containers"]]?[0]?["image"] == "registry.example/product-service:2.0.0")
        #expect(write?[path: ["metadata", "labels", "version"]] == "v1")
        // The template landed, but the Deployment controller has not caught up yet.
        sim.observed.stable!.generation += 1
        var d = sim.reconcile()
        #expect(d.status.phase == .promoting)
        #expect(d.writes.isEmpty)
        sim.observed.stable!.observedGeneration = sim.observed.stable!.generation
        sim.observed.stable!.readyReplicas = 1
        d = sim.reconcile()
        #expect(d.status.phase == .promoting)
        #expect(d.writes.isEmpty)
        #expect(d.status.message?.contains("1/3 ready") == true)
        sim.observed.stable!.readyReplicas = 3
        d = sim.reconcile()
        #expect(d.status.phase == .finalising)
        #expect(d.weightChanges.map(\.canaryWeight) == [0])
    }

    @Test func statusRoundTripsThroughJSON() throws {
        var sim = Sim()
        sim.behaviour = .errors(successRate: 97)
        sim.run(untilPhase: .failed)
        let json = try JSONValue(encoding: sim.rollout)
        let back = try Rollout(json: json)
        #expect(back.status == sim.rollout.status)
        #expect(back.spec == sim.rollout.spec)
        #expect(json[path: ["status", "phase"]] == "Failed")
        #expect(json[path: ["status", "history"]]?[0]?["finishedAt"]?.stringValue?.hasSuffix("Z") == true)
    }
}

