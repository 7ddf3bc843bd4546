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
        if case .success(let plan) = sim.rollout.spec.plan() { #expect(sim.status.routedTraffic == RoutedTraffic(plan.traffic)) }
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

    @Test func formerRoutesEditedByHandAreReportedAndLeftAlone() {
        var sim = renamedAt25()
        // Someone pointed the old route at other subsets: no weight of ours is left to move there.
        sim.observed.formerVirtualService = editingRoute(sim.observed.formerVirtualService, 1) { route in
            route["route"] = [["destination": ["host": "product-service", "subset": "v3"], "weight": 100]]
        }
        let d = sim.reconcile()
        #expect(d.eventReasons.contains("FormerTrafficUnreadable"))
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
