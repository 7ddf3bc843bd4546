import FledgeCore
import FledgeJSON
import Testing

/// Manifests as users coming from Flagger or Argo Rollouts write them, which differ from the seed's.
@Suite("decide: users' manifests")
struct UserManifestTests {
    /// A Deployment whose selector is `app` plus `matchExpressions` on the stable subset's label: its selector does
    /// not select the canary's pods (version=v2), so the rollout goes on. Before, only matchLabels were read, and
    /// the rollout held forever with SelectorOverlap.
    @Test func aSelectorNarrowedByMatchExpressionsDoesNotOverlapTheCanary() {
        var sim = Sim()
        sim.observed.stable!.selector = ["app": "product-service"]
        sim.observed.stable!.selectorExpressions = [SelectorRequirement(key: "version", operator: "In", values: ["v1"])]
        sim.run { $0.phase == .progressing && $0.observedCanaryWeight == 10 }
        #expect(sim.observedCanaryWeight == 10)
        #expect(sim.status.condition(ConditionType.trafficReady)?.status == .true)
        sim.run(untilPhase: .succeeded)
        #expect(sim.phase == .succeeded)
    }

    /// An expression that still lets the canary's pods through is an overlap, and the message shows it.
    @Test func anExpressionThatStillSelectsTheCanaryIsAnOverlapNamedInFull() throws {
        var sim = Sim()
        sim.observed.stable!.selector = ["app": "product-service"]
        sim.observed.stable!.selectorExpressions = [SelectorRequirement(key: "version", operator: "NotIn", values: ["v3"])]
        sim.run(maxSteps: 50) { _ in false }
        let traffic = try #require(sim.status.condition(ConditionType.trafficReady))
        #expect(traffic.reason == "SelectorOverlap")
        #expect(traffic.message == "the selector of Deployment product-service (app=product-service, version notin (v3)) also selects the canary's pods")
        #expect(sim.weightHistory.allSatisfy { $0 == 0 })
    }

    @Test func matchExpressionsAreReadAsTheAPIServerEvaluatesThem() {
        let deployment: JSONValue = [
            "metadata": ["name": "stock"],
            "spec": [
                "selector": [
                    "matchLabels": ["app": "stock"],
                    "matchExpressions": [
                        ["key": "version", "operator": "In", "values": ["v1", "v1b"]],
                        ["key": "track", "operator": "DoesNotExist"],
                    ],
                ],
                "template": ["metadata": ["labels": ["app": "stock", "version": "v1"]]],
            ],
        ]
        let observed = ObservedDeployment(json: deployment)
        #expect(observed.selectorExpressions.count == 2)
        #expect(observed.selects(["app": "stock", "version": "v1"]))
        #expect(observed.selects(["app": "stock", "version": "v1b", "team": "x"]))
        #expect(!observed.selects(["app": "stock", "version": "v2"]))
        #expect(!observed.selects(["app": "stock", "version": "v1", "track": "canary"]))
        #expect(!observed.selects(["version": "v1"]))
        #expect(observed.selectorKeys == ["app", "version", "track"])
        #expect(observed.selectorText == "app=stock, version in (v1,v1b), !track")
    }
}
