import FledgeCore
import FledgeJSON
import Testing

/// `spec.traffic` edited while the canary has weight: the routes it named before must not keep sending traffic to a
/// canary that the rollout later scales to zero (Rules 2 and 4).
@Suite struct TrafficChangeTests {
    /// The seed VirtualService under another name.
    func virtualService(named name: String, canaryWeight: Int64) -> JSONValue {
        var vs = seedVirtualService(canaryWeight: canaryWeight)
        vs[path: ["metadata", "name"]] = .string(name)
        return vs
    }

    /// `vs` with its HTTP route `index` changed by `edit`.
    func editingRoute(_ vs: JSONValue?, _ index: Int, _ edit: (inout JSONValue) -> Void) -> JSONValue? {
        guard var vs, case .array(var routes)? = vs[path: ["spec", "http"]] else { return vs }
        edit(&routes[index])
        vs[path: ["spec", "http"]] = .array(routes)
        return vs
    }

    func canaryWeight(_ vs: JSONValue?) -> Int? {
        vs.flatMap { httpRoutes(of: $0)[1].canaryWeight(stableSubset: "stable", canarySubset: "canary") }
    }

    /// A Sim at the 25 % stage whose spec now names `product-service-v2` (which exists, at 0 %), as the controller
    /// would observe it: the old VirtualService as `formerVirtualService`.
    func renamedAt25() -> Sim {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        if case .success(let plan) = sim.rollout.spec.plan() { #expect(sim.status.routedTraffic?.isRouted(by: plan.traffic) == true) }
        #expect(sim.status.routedTraffic?.host == "product-service.shop.svc.cluster.local")
        sim.rollout.spec.traffic?.virtualService = "product-service-v2"
        sim.rollout.metadata.generation! += 1
        #expect(sim.rollout.references?.formerVirtualService == "product-service")
        sim.observed.formerVirtualService = sim.observed.virtualService
        sim.observed.virtualService = virtualService(named: "product-service-v2", canaryWeight: 0)
        return sim
    }

    @Test func renamingTheVirtualServiceMidRolloutMovesTheOldWeightBackBeforeAnythingElse() throws {
        var sim = renamedAt25()
        let first = sim.reconcile()
        #expect(first.weightChanges.map(\.canaryWeight) == [0])
        #expect(first.weightChanges.first?.virtualService[path: ["metadata", "name"]] == "product-service")
        #expect(first.writes.count == first.eventReasons.count + 1, "nothing but the move back and its Event")
        #expect(first.eventReasons == ["TrafficMoved"])
        #expect(first.status.message?.contains("VirtualService product-service") == true)
        #expect(first.status.routedTraffic?.virtualService == "product-service", "kept until read back at 0")
        #expect(canaryWeight(sim.observed.formerVirtualService) == 0)
        // The old routes read back at 0: the rollout goes on, on the routes the spec names now.
        let second = sim.reconcile()
        #expect(second.weightChanges.map(\.canaryWeight) == [25])
        #expect(second.weightChanges.first?.virtualService[path: ["metadata", "name"]] == "product-service-v2")
        #expect(second.status.routedTraffic?.virtualService == "product-service-v2")
        sim.run(untilPhase: .succeeded)
        #expect(sim.formerWeightHistory == [0])
        #expect(canaryWeight(sim.observed.formerVirtualService) == 0)
        #expect(sim.observedCanaryWeight == 0)
        #expect(sim.status.routedTraffic == nil, "no route carries canary weight after the rollout")
    }

    @Test func renamingToAVirtualServiceThatDoesNotExistStillMovesTheOldWeightBack() {
        var sim = renamedAt25()
        sim.observed.virtualService = nil
        let first = sim.reconcile()
        #expect(first.weightChanges.map(\.canaryWeight) == [0])
        #expect(canaryWeight(sim.observed.formerVirtualService) == 0)
        let second = sim.reconcile()
        #expect(second.weightChanges.isEmpty)
        #expect(second.status.message?.contains("product-service-v2 not found") == true)
        #expect(second.status.routedTraffic == nil)
        // An abort is then answered at once: nothing carries canary weight.
        sim.request(.abort)
        sim.run(untilPhase: .aborted)
        #expect(sim.formerWeightHistory == [0])
    }

    @Test func deletingARolloutWhoseSpecNamesAnotherVirtualServiceMovesTheOldWeightBackFirst() {
        var sim = renamedAt25()
        // Broken on top of renamed: the deletion works from what the spec and the record name.
        sim.rollout.spec.stages = [StageSpec(weight: 50, hold: "20s"), StageSpec(weight: 25, hold: "20s")]
        sim.rollout.metadata.deletionTimestamp = "2027-01-15T10:00:00Z"
        let first = sim.reconcile()
        #expect(first.weightChanges.map(\.canaryWeight) == [0])
        #expect(first.weightChanges.first?.virtualService[path: ["metadata", "name"]] == "product-service")
        #expect(!sim.deleted)
        #expect(sim.reconcile().actions.contains(.setFinalizer(false)))
        #expect(sim.deleted)
        #expect(canaryWeight(sim.observed.formerVirtualService) == 0)
    }

    @Test func aFormerVirtualServiceThatWasDeletedIsForgotten() {
        var sim = renamedAt25()
        sim.observed.formerVirtualService = nil
        let d = sim.reconcile()
        #expect(!d.eventReasons.contains("TrafficMoved"))
        #expect(d.weightChanges.map(\.canaryWeight) == [25])
        #expect(d.status.routedTraffic?.virtualService == "product-service-v2")
    }

    @Test func formerRoutesThatNoLongerReachTheCanaryAreLeftAlone() {
        var sim = renamedAt25()
        // Someone pointed the old route at other subsets: no weight of ours is left to move there.
        sim.observed.formerVirtualService = editingRoute(sim.observed.formerVirtualService, 1) { route in
            route["route"] = [["destination": ["host": "product-service", "subset": "v3"], "weight": 100]]
        }
        let d = sim.reconcile()
        #expect(!d.eventReasons.contains("TrafficMoved"))
        #expect(d.weightChanges.map { $0.virtualService[path: ["metadata", "name"]] } == ["product-service-v2"])
        #expect(d.status.routedTraffic?.virtualService == "product-service-v2")
    }

    @Test func namingTheSameRouteExplicitlyMovesNoWeight() throws {
        var sim = Sim()
        sim.observed.virtualService = editingRoute(sim.observed.virtualService, 1) { $0["name"] = "primary" }
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        #expect(sim.status.routedTraffic?.routes == [])
        sim.rollout.spec.traffic?.routes = ["primary"]
        let d = sim.reconcile()
        #expect(d.weightChanges.isEmpty, "the route the spec now names is the one that carries the weight")
        #expect(d.status.routedTraffic?.routes == ["primary"])
        #expect(sim.observedCanaryWeight == 25)
    }

    @Test func changingTheCanarySubsetMovesTheOldSplitBack() throws {
        var sim = Sim(destinationRule: seedDestinationRule())
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        sim.rollout.spec.traffic?.canarySubset = "preview"
        let d = sim.reconcile()
        #expect(d.weightChanges.map(\.canaryWeight) == [0])
        #expect(d.eventReasons == ["TrafficMoved"])
        #expect(d.status.message?.contains("subsets stable/canary") == true)
        #expect(sim.observedCanaryWeight == 0)
    }

    @Test func theRecordRoundTripsAndOlderStatusesDecode() throws {
        var status = RolloutStatus(phase: .progressing)
        status.routedTraffic = RoutedTraffic(
            TrafficPlan(virtualService: "vs", routes: ["a"], destinationRule: "dr", stableSubset: "s", canarySubset: "c"))
        let json = try JSONValue(encoding: status)
        #expect(json[path: ["routedTraffic"]] == ["virtualService": "vs", "routes": ["a"], "stableSubset": "s", "canarySubset": "c"])
        #expect(try json.decode(RolloutStatus.self) == status)
        let older: JSONValue = ["phase": "Progressing", "routedTraffic": ["virtualService": "vs", "stableSubset": "s", "canarySubset": "c"]]
        #expect(try older.decode(RolloutStatus.self).routedTraffic?.routes == [])
    }
}

/// Weight must come off the canary even when the routes the spec names cannot be read (renamed by hand, or the
/// VirtualService gone): a rollback, a deletion and an abort finish, and nothing is left reaching a canary that goes.
@Suite struct RoutesThatCannotBeReadTests {
    func namedPrimary() -> Sim {
        var spec = seedSpec()
        spec.traffic?.routes = ["primary"]
        var sim = Sim(spec: spec)
        sim.observed.virtualService = TrafficChangeTests().editingRoute(sim.observed.virtualService, 1) { $0["name"] = "primary" }
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        // Renamed by hand: the spec's route name finds nothing, but the route still splits 75/25.
        sim.observed.virtualService = TrafficChangeTests().editingRoute(sim.observed.virtualService, 1) { $0["name"] = "main" }
        return sim
    }

    @Test func deletingMovesARenamedRouteBackBeforeLettingGo() {
        var sim = namedPrimary()
        sim.rollout.metadata.deletionTimestamp = "2027-01-15T10:00:00Z"
        let first = sim.reconcile()
        #expect(first.weightChanges.map(\.routes) == [["main"]])
        #expect(first.weightChanges.map(\.canaryWeight) == [0])
        #expect(first.eventReasons.contains("RoutesNotFound"))
        #expect(!sim.deleted)
        #expect(sim.reconcile().actions.contains(.setFinalizer(false)))
        #expect(sim.deleted && sim.observedCanaryWeight == 0)
    }

    @Test func anAbortMovesARenamedRouteBackAndFinishes() {
        var sim = namedPrimary()
        sim.request(.abort)
        sim.run(maxSteps: 30) { $0.phase.isIdle }
        #expect(sim.phase == .aborted)
        #expect(sim.observedCanaryWeight == 0)
        #expect(sim.observed.canary?.replicas == 0)
        #expect(sim.status.canaryWeight == 0)
    }

    @Test func aRollbackFinishesWhenTheVirtualServiceIsGone() {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        sim.observed.virtualService = nil
        #expect(sim.reconcile().status.canaryWeight == 0, "nothing routes through a VirtualService that does not exist")
        sim.request(.abort)
        sim.run(maxSteps: 30) { $0.phase.isIdle }
        #expect(sim.phase == .aborted)
        #expect(sim.observed.canary?.replicas == 0)
        #expect(sim.status.message == "aborted by request")
    }

    @Test func finalisingFinishesWhenTheVirtualServiceIsGone() {
        var sim = Sim()
        sim.run(untilPhase: .promoting)
        sim.observed.virtualService = nil
        sim.run(maxSteps: 60) { $0.phase.isIdle }
        #expect(sim.phase == .succeeded)
        #expect(sim.observed.canary?.replicas == 0)
    }
}

/// spec.stages edited under a stage in progress: the gates of the stage it lands on are passed again, never skipped.
@Suite struct StagesEditedMidRolloutTests {
    @Test func fewerStagesNeverPromoteWithoutTheirGates() {
        var spec = seedSpec()
        spec.stages = [
            StageSpec(weight: 10, hold: "20s", approval: "manual"), StageSpec(weight: 25, hold: "20s", approval: "manual"),
            StageSpec(weight: 50, hold: "20s"), StageSpec(weight: 100, hold: "20s"),
        ]
        var sim = Sim(spec: spec)
        sim.run { $0.phase == .paused }
        sim.request(.promote)  // approves stage 1
        sim.run { $0.phase == .paused && $0.status.stage == 1 }
        sim.rollout.spec.stages = [StageSpec(weight: 10, hold: "20s", approval: "manual")]
        sim.rollout.metadata.generation! += 1
        let edited = sim.reconcile()
        #expect(edited.eventReasons.contains("StageRestarted"))
        #expect(edited.status.phase == .progressing && edited.status.stage == 0)
        #expect(edited.weightChanges.map(\.canaryWeight) == [10])
        #expect(edited.status.approvedStage == nil, "the approval was for the old stage")
        sim.run(maxSteps: 300) { $0.phase == .paused }
        #expect(sim.phase == .paused, "waits for a new approval")
        #expect(!sim.phases.contains(.promoting))
    }

    /// An earlier stage removed while a later one waits for approval: the rollout stays at the weight it serves
    /// and waits for approval again, instead of moving up to what is now at that position.
    @Test func removingAnEarlierStageNeverRaisesTheWeightPastAnApproval() {
        var spec = seedSpec()
        spec.stages = [
            StageSpec(weight: 10, hold: "20s", approval: "manual"), StageSpec(weight: 25, hold: "20s", approval: "manual"),
            StageSpec(weight: 50, hold: "20s", approval: "manual"), StageSpec(weight: 100, hold: "20s"),
        ]
        var sim = Sim(spec: spec)
        sim.run { $0.phase == .paused }
        sim.request(.promote)
        sim.run { $0.phase == .paused && $0.status.stage == 1 }
        sim.rollout.spec.stages = Array(spec.stages!.dropFirst())
        sim.rollout.metadata.generation! += 1
        let edited = sim.reconcile()
        #expect(edited.eventReasons.contains("StageRestarted"))
        #expect(edited.status.stage == 0)
        #expect(edited.weightChanges.isEmpty, "25 % is stage 1 now: the weight stays")
        sim.run(maxSteps: 300) { $0.phase == .paused }
        #expect(sim.phase == .paused && sim.status.stage == 0 && sim.observedCanaryWeight == 25)
        #expect(sim.weightHistory.allSatisfy { $0 <= 25 })
    }

    @Test func anotherWeightForTheCurrentStageRestartsItsHold() {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 && $0.status.stageStartedAt != nil }
        let started = sim.status.stageStartedAt
        sim.now = Timestamp(seconds: sim.now.seconds + 15)
        sim.rollout.spec.stages![1] = StageSpec(weight: 30, hold: "20s")
        sim.rollout.metadata.generation! += 1
        let edited = sim.reconcile()
        #expect(edited.eventReasons.contains("StageRestarted"))
        // Never more traffic than the canary was given: back to the last stage not above 25 %, from its start.
        #expect(edited.status.stage == 0)
        #expect(edited.weightChanges.map(\.canaryWeight) == [10])
        #expect(!edited.eventReasons.contains("WeightsRestored"))
        sim.reconcile()
        #expect(sim.status.stageStartedAt.map { $0 > started! } == true, "the hold counts from the restart")
        sim.run { $0.observedCanaryWeight == 30 }
        #expect(sim.status.stage == 1)
    }
}

@Suite struct RouteHostTests {
    func vs(host: String) -> JSONValue {
        var vs = seedVirtualService(canaryWeight: 0)
        vs = TrafficChangeTests().editingRoute(vs, 1) { route in
            route["route"] = [
                ["destination": ["host": .string(host), "subset": "stable"], "weight": 100],
                ["destination": ["host": .string(host), "subset": "canary"], "weight": 0],
            ]
        }!
        return vs
    }

    @Test func aRouteToAnotherServiceGetsNoWeight() {
        // Found by default: routes to another service are not taken, whatever their subsets are called.
        var sim = Sim()
        sim.observed.virtualService = vs(host: "unrelated-svc")
        sim.run(maxSteps: 50) { $0.status.condition(ConditionType.trafficReady)?.reason == "RouteNotFound" }
        var condition = sim.status.condition(ConditionType.trafficReady)
        #expect(condition?.status == .false, "\(sim.phases) \(sim.status.message ?? "")")
        #expect(condition?.message.contains("of host product-service.shop.svc.cluster.local") == true, "\(condition?.message ?? "")")
        #expect(sim.weightHistory.allSatisfy { $0 == 0 })
        // Named: taken as named, and refused for its host.
        var spec = seedSpec()
        spec.traffic?.routes = ["edge"]
        var named = Sim(spec: spec)
        named.observed.virtualService = TrafficChangeTests().editingRoute(vs(host: "unrelated-svc"), 1) { $0["name"] = "edge" }
        named.run(maxSteps: 50) { $0.status.condition(ConditionType.trafficReady)?.reason == "HostMismatch" }
        condition = named.status.condition(ConditionType.trafficReady)
        #expect(condition?.message.contains("sends to host unrelated-svc, but DestinationRule product-service is for host product-service") == true)
        #expect(named.weightHistory.allSatisfy { $0 == 0 })
    }

    /// A route to another service with subsets of the same names is neither managed by default nor moved when the
    /// managed route was renamed by hand.
    @Test func routesToAnotherServiceAreNeverMoved() {
        var spec = seedSpec()
        spec.traffic?.routes = ["primary"]
        var sim = Sim(spec: spec)
        let other: JSONValue = [
            "name": "other", "match": [["uri": ["prefix": "/other"]]],
            "route": [
                ["destination": ["host": "other-service", "subset": "stable"], "weight": 70],
                ["destination": ["host": "other-service", "subset": "canary"], "weight": 30],
            ],
        ]
        var vs = TrafficChangeTests().editingRoute(sim.observed.virtualService, 1) { $0["name"] = "primary" }!
        if case .array(var http)? = vs[path: ["spec", "http"]] {
            http.insert(other, at: 0)
            vs[path: ["spec", "http"]] = .array(http)
        }
        sim.observed.virtualService = vs
        sim.run { $0.status.stage == 0 && $0.status.stageStartedAt != nil }
        sim.observed.virtualService = TrafficChangeTests().editingRoute(sim.observed.virtualService, 2) { $0["name"] = "renamed" }
        sim.request(.abort)
        sim.run(maxSteps: 30) { $0.phase.isIdle }
        #expect(sim.phase == .aborted)
        let routes = httpRoutes(of: sim.observed.virtualService!)
        #expect(routes[0].canaryWeight(stableSubset: "stable", canarySubset: "canary") == 30, "other-service keeps its split")
        #expect(routes[2].canaryWeight(stableSubset: "stable", canarySubset: "canary") == 0)
    }

    @Test(arguments: ["product-service", "product-service.shop", "product-service.shop.svc", "product-service.shop.svc.cluster.local"])
    func theSameServiceUnderAnyOfItsNamesIsFine(host: String) {
        var sim = Sim()
        sim.observed.virtualService = vs(host: host)
        sim.run { $0.observedCanaryWeight == 10 }
        #expect(sim.observedCanaryWeight == 10)
    }

    /// A cluster whose domain is not cluster.local: the DestinationRule names the service in full with that domain,
    /// the routes by its short name. Both are the same service; the rollout used to hold with RouteNotFound.
    @Test(arguments: ["product-service", "product-service.shop.svc.corp.local"])
    func aClusterDomainOtherThanClusterLocal(routeHost: String) {
        var dr = seedDestinationRule()
        dr[path: ["spec", "host"]] = "product-service.shop.svc.corp.local"
        var sim = Sim(destinationRule: dr)
        sim.observed.virtualService = vs(host: routeHost)
        sim.run(maxSteps: 200) { $0.observedCanaryWeight == 10 }
        #expect(sim.observedCanaryWeight == 10, "\(sim.status.message ?? "")")
        // Another namespace is still another service.
        var other = Sim(destinationRule: dr)
        other.observed.virtualService = vs(host: "product-service.other")
        other.run(maxSteps: 50) { _ in false }
        #expect(other.weightHistory.allSatisfy { $0 == 0 })
        #expect(other.status.condition(ConditionType.trafficReady)?.reason == "RouteNotFound")
    }

    @Test(arguments: [
        ("web.shop.svc.cluster.local", "web.shop.svc.corp.local", true), ("web.shop.svc.cluster.local", "web.other.svc.cluster.local", false),
        ("web.example.com", "web.example.com", true), ("web.example.com", "web.example.org", false), ("a.b.svc", "a.b.svc", true),
    ])
    func sameServiceComparesWithoutTheClusterDomain(a: String, b: String, same: Bool) {
        #expect(sameService(a, b) == same)
    }
}

@Suite struct PromoteBeforeAStageServesTests {
    /// A stage whose weight could not be set (traffic not ready) cannot be approved: once traffic flows again it
    /// would be skipped without ever serving.
    @Test func promotingAStageThatNeverServedIsRefused() {
        var sim = TrafficChangeTests().renamedAt25()
        sim.observed.virtualService = nil  // the VirtualService the spec names now does not exist yet
        sim.run(maxSteps: 20) { $0.status.condition(ConditionType.trafficReady)?.reason == "VirtualServiceNotFound" }
        #expect(sim.status.canaryWeight == 0)
        sim.request(.promote)
        let refused = sim.reconcile()
        let answer = refused.status.requests.first { $0.kind == .promote }
        #expect(answer?.accepted == false)
        #expect(answer?.message.contains("stage 2 does not serve its weight: VirtualService product-service-v2 not found") == true, "\(answer?.message ?? "")")
        sim.observed.virtualService = TrafficChangeTests().virtualService(named: "product-service-v2", canaryWeight: 0)
        sim.run(maxSteps: 50) { $0.observedCanaryWeight == 25 }
        #expect(sim.observedCanaryWeight == 25, "stage 2 serves its weight instead of being skipped")
        #expect(sim.status.stage == 1)
    }
}

@Suite struct TargetChangedMidRolloutTests {
    /// The canary made for the previous `spec.target.deployment` does not run on after an abort: it is scaled to
    /// zero once no managed route gives the canary weight.
    @Test(arguments: ["other-service", "Not_Valid"])
    func theFormerTargetsCanaryIsScaledToZero(target: String) {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        #expect(sim.status.canaryDeployment == "product-service-canary")
        sim.rollout.spec.target = TargetSpec(deployment: target)
        sim.rollout.metadata.generation! += 1
        #expect(sim.rollout.references?.formerCanaryDeployment == "product-service-canary")
        var former = sim.observed.canary!
        former.owningRollout = "product-service"
        sim.observed.formerCanary = former
        sim.observed.canary = nil
        sim.observed.stable = nil
        sim.request(.abort)
        sim.run(maxSteps: 40) { $0.phase.isIdle && $0.observed.formerCanary?.replicas == 0 }
        #expect(sim.phase == .aborted)
        #expect(sim.observedCanaryWeight == 0)
        #expect(sim.observed.formerCanary?.replicas == 0)
        #expect(sim.events.contains { $0.reason == "CanaryRetired" })
        sim.reconcile()
        #expect(sim.status.canaryDeployment == nil)
        #expect(sim.reconcile().writes.isEmpty)
    }

    @Test func aDeploymentThisRolloutDidNotMakeIsLeftAlone() {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        sim.rollout.spec.target = TargetSpec(deployment: "other-service")
        sim.observed.formerCanary = sim.observed.canary  // no owner reference to this Rollout
        sim.observed.canary = nil
        sim.observed.stable = nil
        sim.request(.abort)
        sim.run(maxSteps: 40) { $0.phase.isIdle }
        #expect(sim.observed.formerCanary?.replicas == 3)
        #expect(!sim.events.contains { $0.reason == "CanaryRetired" })
    }
}
