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
        #expect(
            traffic.message
                == "the selector of Deployment product-service (app=product-service, version notin (v3)) also selects the canary's pods; it needs the stable subset's label (version=v1), and as a Deployment's selector cannot change, the Deployment must be created again with it"
        )
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

/// `progressDeadline` against the analysis interval: a passing check is progress, so the deadline must leave room
/// for one interval to be measured and judged.
@Suite("decide: progressDeadline and long analysis intervals")
struct ProgressDeadlineTests {
    /// `interval: 15m` with no progressDeadline: the default (10m) used to end every such rollout with
    /// ProgressDeadlineExceeded before its first check. The default is now at least two intervals.
    @Test func theDefaultLeavesRoomForALongInterval() throws {
        var spec = seedSpec(stages: [StageSpec(weight: 20, hold: "15m"), StageSpec(weight: 60, hold: "15m")], progressDeadline: nil)
        spec.analysis!.interval = "15m"
        let plan = try seedRollout(spec: spec).plan().get()
        #expect(plan.progressDeadline == .minutes(30))
        var sim = Sim(spec: spec)
        sim.run(maxSteps: 20_000) { $0.phase.isIdle && $0.phase != .healthy }
        #expect(sim.phase == .succeeded, "\(sim.status.message ?? "")")
        // The seed's default is unchanged where intervals are short.
        #expect(try seedRollout(spec: seedSpec(progressDeadline: nil)).plan().get().progressDeadline == .minutes(10))
    }

    /// A deadline equal to the interval is valid; the check measured at the end of the interval arrives a moment
    /// later (the query takes time), and is judged before the deadline is: a passing check counts as progress made
    /// when it was measured.
    @Test func aCheckMeasuredInTimeCountsThoughItArrivesAfterTheDeadline() throws {
        var spec = seedSpec(stages: [StageSpec(weight: 20, hold: "10s"), StageSpec(weight: 60, hold: "10s")], progressDeadline: "10s")
        spec.analysis!.interval = "10s"
        var sim = Sim(spec: spec)
        sim.run { $0.phase == .progressing && $0.status.stageStartedAt != nil }
        let started = try #require(sim.status.stageStartedAt)
        sim.now = started + .seconds(10)
        let asked = sim.reconcile()
        #expect(asked.actions.contains { if case .runAnalysis = $0 { true } else { false } })
        #expect(sim.latest?.time == started + .seconds(10))
        // The answer is judged 2 s later.
        sim.now = started + .seconds(12)
        let judged = sim.reconcile()
        #expect(judged.status.phase == .progressing, "\(judged.status.message ?? "")")
        #expect(judged.status.stage == 1)
        // Without a new check, the deadline still ends it.
        sim.behaviour = .noData
        sim.run(maxSteps: 200) { $0.phase.isIdle }
        #expect(sim.phase == .failed)
        #expect(sim.status.history.last?.reason == "ProgressDeadlineExceeded")
    }
}

/// Subsets named otherwise than the Rollout says (Istio's docs name them v1 and v2).
@Suite("decide: subsets named otherwise")
struct SubsetNamesTests {
    /// The routes send to v1/v2, the Rollout keeps the defaults stable/canary: TrafficReady names the subsets the
    /// DestinationRule has and the field to set, rather than only that no route sends to 'stable'.
    @Test func theConditionNamesTheSubsetsTheDestinationRuleHas() throws {
        var dr = seedDestinationRule()
        dr[path: ["spec", "subsets"]] = [["name": "v1", "labels": ["version": "v1"]], ["name": "v2", "labels": ["version": "v2"]]]
        var sim = Sim(destinationRule: dr)
        var vs = sim.observed.virtualService!
        vs[path: ["spec", "http"]] = [["route": [["destination": ["host": "product-service", "subset": "v1"]]]]]
        sim.observed.virtualService = vs
        sim.run(maxSteps: 50) { _ in false }
        let traffic = try #require(sim.status.condition(ConditionType.trafficReady))
        #expect(traffic.reason == "SubsetNotFound")
        #expect(traffic.message == "DestinationRule product-service has no subset 'stable' (it has 'v1', 'v2'): check spec.traffic.stableSubset")
        #expect(sim.status.message == "holding: \(traffic.message)")
        #expect(sim.weightHistory.isEmpty)
        // Named in the spec, the rollout runs on them, and adds the missing v2 destination.
        sim.rollout.spec.traffic!.stableSubset = "v1"
        sim.rollout.spec.traffic!.canarySubset = "v2"
        sim.rollout.metadata.generation = 2
        sim.run(maxSteps: 200) { $0.status.canaryWeight == 10 }
        let route = try #require(sim.observed.virtualService?[path: ["spec", "http"]]?[0]?["route"]?.arrayValue)
        #expect(route.map { $0[path: ["destination", "subset"]] } == ["v1", "v2"])
        #expect(route.map { $0["weight"] } == [90, 10])
    }
}

/// What a user reads while the canary Deployment rolls a new revision out over the pods of the one before.
@Suite("decide: the canary's readiness while its template changes")
struct CanaryReadinessMessageTests {
    /// `trigger --force` replaces revision A in flight by B: the canary Deployment still has A's three ready pods
    /// while the Deployment controller has not seen B. The message used to say `3/3 pods ready` under
    /// CanaryNotReady; it counts the pods of B.
    @Test func podsOfTheFormerRevisionAreNotCountedAsReady() throws {
        var sim = Sim()
        sim.run { $0.status.canaryWeight == 10 }
        sim.rollout.spec.canary = CanaryChange(image: "registry.example/product-service:3.0.0")
        sim.rollout.metadata.generation = 2
        sim.canaryPodsBecomeReady = false
        sim.run(maxSteps: 50) { $0.observed.canary?.revisionAnnotation == $0.status.revision && $0.phase == .initializing }
        // As the API server has it just after the canary's template was written: the former pods still count.
        sim.observed.canary!.generation = 2
        sim.observed.canary!.observedGeneration = 1
        sim.observed.canary!.readyReplicas = 3
        sim.observed.canary!.updatedReplicas = 3
        sim.observed.canary!.availableReplicas = 3
        let revision = try #require(sim.status.revision)
        let d = sim.reconcile()
        let traffic = try #require(d.status.condition(ConditionType.trafficReady))
        #expect(traffic.reason == "CanaryNotReady")
        #expect(traffic.message == "canary Deployment product-service-canary: 0/3 pods ready on revision \(revision)")
        // Seen and partly rolled out.
        sim.observed.canary!.observedGeneration = 2
        sim.observed.canary!.updatedReplicas = 2
        #expect(
            sim.reconcile().status.condition(ConditionType.trafficReady)?.message
                == "canary Deployment product-service-canary: 2/3 pods ready on revision \(revision)")
    }
}

/// A managed route whose destinations for one subset differ (two ports of stable, 50/50): setting weights used to
/// drop the second one silently, changing where the user's traffic goes (Rule 1).
@Suite("decide: routes with several destinations for one subset")
struct DuplicateDestinationTests {
    static func virtualService(_ route: JSONValue) -> JSONValue {
        var vs = seedVirtualService()
        vs[path: ["spec", "http"]] = [route]
        return vs
    }

    @Test func differentDestinationsForOneSubsetAreNotRewritten() throws {
        var sim = Sim()
        sim.observed.virtualService = Self.virtualService([
            "route": [
                ["destination": ["host": "product-service", "subset": "stable", "port": ["number": 80]], "weight": 50],
                ["destination": ["host": "product-service", "subset": "stable", "port": ["number": 81]], "weight": 50],
            ]
        ])
        let before = sim.observed.virtualService
        sim.run(maxSteps: 50) { _ in false }
        #expect(sim.observed.virtualService == before)
        #expect(sim.weightHistory.isEmpty)
        let traffic = try #require(sim.status.condition(ConditionType.trafficReady))
        #expect(traffic.reason == "RouteNotManageable")
        #expect(
            traffic.message
                == "route http[0] of VirtualService product-service has 2 different destinations for subset stable; Fledge splits a route between one stable and one canary destination, and would have to drop one")
        // Named in spec.traffic.routes, the same.
        var route = sim.observed.virtualService![path: ["spec", "http"]]!.arrayValue![0]
        route["name"] = "main"
        sim.observed.virtualService![path: ["spec", "http"]] = [route]
        sim.rollout.spec.traffic!.routes = ["main"]
        sim.rollout.metadata.generation = 2
        sim.reconcile()
        #expect(sim.status.condition(ConditionType.trafficReady)?.reason == "RouteNotManageable")
    }

    /// Copies that differ only in weight route alike: they are merged into one, as before.
    @Test func identicalCopiesAreMerged() throws {
        var sim = Sim()
        sim.observed.virtualService = Self.virtualService([
            "route": [
                ["destination": ["host": "product-service", "subset": "stable"], "weight": 50],
                ["destination": ["host": "product-service", "subset": "stable"], "weight": 50],
            ]
        ])
        sim.run { $0.status.canaryWeight == 10 }
        let route = try #require(sim.observed.virtualService?[path: ["spec", "http"]]?[0]?["route"]?.arrayValue)
        #expect(route.map { $0[path: ["destination", "subset"]] } == ["stable", "canary"])
        #expect(route.map { $0["weight"] } == [90, 10])
    }

    /// Made unmanageable while the canary has weight there, the route still gets that weight back to stable when the
    /// rollout rolls back (Rule 4): the canary is about to lose its pods.
    @Test func aRollbackStillTakesTheWeightOffSuchARoute() throws {
        var sim = Sim()
        sim.run { $0.status.canaryWeight == 10 }
        var http = sim.observed.virtualService![path: ["spec", "http"]]!.arrayValue!
        var destinations = http[1]["route"]!.arrayValue!
        var other = destinations[0]
        other[path: ["destination", "port"]] = ["number": 81]
        destinations.append(other)
        http[1]["route"] = .array(destinations)
        sim.observed.virtualService![path: ["spec", "http"]] = .array(http)
        sim.reconcile()
        #expect(sim.status.condition(ConditionType.trafficReady)?.reason == "RouteNotManageable")
        sim.request(.abort)
        sim.run(maxSteps: 100) { $0.phase == .aborted }
        #expect(sim.phase == .aborted)
        let canary = sim.observed.virtualService?[path: ["spec", "http"]]?[1]?["route"]?.arrayValue?.filter { $0[path: ["destination", "subset"]] == "canary" }
        #expect(canary?.map { $0["weight"] } == [0])
    }
}

/// A VirtualService for a TCP (or TLS passthrough) service: Fledge shifts HTTP routes only, and says so.
@Suite("decide: tcp and tls routes")
struct NonHTTPRouteTests {
    @Test(arguments: ["tcp", "tls"])
    func theConditionSaysOnlyHTTPRoutesAreShifted(kind: String) throws {
        var sim = Sim()
        var vs = seedVirtualService()
        vs[path: ["spec", "http"]] = nil
        vs[path: ["spec", .init(kind)]] = [
            [
                "route": [
                    ["destination": ["host": "product-service", "subset": "stable", "port": ["number": 5432]], "weight": 100]
                ]
            ]
        ]
        sim.observed.virtualService = vs
        sim.run(maxSteps: 50) { _ in false }
        #expect(sim.observed.virtualService == vs)
        let traffic = try #require(sim.status.condition(ConditionType.trafficReady))
        #expect(traffic.reason == "RouteNotFound")
        #expect(
            traffic.message
                == "VirtualService product-service has no HTTP route that sends to subset stable (and canary only) of host product-service.shop.svc.cluster.local; its \(kind) route \(kind)[0] sends to subset stable, but Fledge shifts weights on HTTP routes only"
        )
    }
}

/// A Rollout without metrics (judged on request volume and the judge) while Prometheus is down.
@Suite("decide: provider errors without metrics")
struct ProviderErrorWithoutMetricsTests {
    /// It used to hold as Inconclusive ("unknown requests < minRequests") until the progress deadline, never saying
    /// Prometheus was down; now each interval is a provider error and providerErrorLimit rolls it back.
    @Test func prometheusDownRollsBackAtProviderErrorLimit() throws {
        var spec = seedSpec(providerErrorLimit: 3, metrics: [], progressDeadline: "1h")
        spec.analysis!.judge = JudgeSpec(enabled: false)
        var sim = Sim(spec: spec)
        sim.behaviour = .providerDown
        sim.run(untilPhase: .failed)
        #expect(sim.phase == .failed)
        let last = try #require(sim.status.history.last)
        #expect(last.reason == "MetricProviderUnavailable")
        #expect(last.message?.contains("requests=- (>= 20): Error, metric provider error: connection refused") == true, "\(last.message ?? "")")
        #expect(sim.status.inconclusiveChecks == 0)
    }

    /// The judge's counts asked for and not measured: an Error, not a pass of the metrics alone.
    @Test func countsThatCouldNotBeMeasuredAreAnError() throws {
        let rollout = seedRollout(spec: seedSpec())
        let plan = try rollout.plan().get()
        var result = measure(.healthy, at: Timestamp(seconds: 1_800_000_000))
        #expect(judgeInterval(plan, status: RolloutStatus(), result: result).verdict == .passed)
        result.countsError = "Prometheus at http://127.0.0.1:9: connection refused"
        let judged = judgeInterval(plan, status: RolloutStatus(), result: result)
        #expect(judged.verdict == .error)
        #expect(judged.judgeResults.map(\.verdict) == [.error])
        #expect(judged.summary.hasSuffix("; judge: metric provider error: Prometheus at http://127.0.0.1:9: connection refused"))
        // A failed check stays Failed.
        result.metrics["success-rate"] = MetricSample(.value(50), stableValue: 99.9)
        #expect(judgeInterval(plan, status: RolloutStatus(), result: result).verdict == .failed)
    }
}

/// A custom query counting 5xx of a healthy canary finds no series: PromQL's answer for "none", which Fledge (rightly)
/// cannot tell from missing data. It stays Inconclusive, and the note says how to write the query.
@Suite("decide: custom queries that count events that did not happen")
struct CustomNoDataTests {
    @Test func theNoteSaysToEndTheQueryWithOrVectorZero() {
        let metric = MetricPlan("errors", .custom(query: #"sum(increase(x{code=~"5.."}[{{interval}}]))"#), max: 5)
        let served = judge(
            metric: metric, sample: MetricSample(.noData, requests: 150), intervalRequests: 150, minRequests: 20, noData: .inconclusive,
            time: Timestamp(seconds: 0))
        #expect(served.verdict == .inconclusive)
        #expect(
            served.message
                == "no data though the canary served 150 requests (a query counting events that did not happen returns nothing: end it with `or vector(0)`)")
        // Too few requests, or a built-in metric: plain "no data".
        let few = judge(
            metric: metric, sample: MetricSample(.noData, requests: 5), intervalRequests: 5, minRequests: 20, noData: .inconclusive,
            time: Timestamp(seconds: 0))
        #expect(few.message == "no data")
        let builtIn = judge(
            metric: MetricPlan("success-rate", .successRate, min: 99), sample: MetricSample(.noData, requests: 150), intervalRequests: 150,
            minRequests: 20, noData: .inconclusive, time: Timestamp(seconds: 0))
        #expect(builtIn.message == "no data")
    }
}


/// `spec.traffic.routes` naming the seed's x-canary header route, which sends only to the canary: there is no stable
/// destination to split with. It used to sit in Initializing, rewriting the route unchanged on every reconcile (a
/// WeightsReset Event each time) with no word of why.
@Suite("decide: a named route without a stable destination")
struct NamedCanaryOnlyRouteTests {
    @Test func isRefusedByName() throws {
        var spec = seedSpec()
        spec.traffic!.routes = ["tagged"]
        var sim = Sim(spec: spec)
        var http = sim.observed.virtualService![path: ["spec", "http"]]!.arrayValue!
        http[0]["name"] = "tagged"
        sim.observed.virtualService![path: ["spec", "http"]] = .array(http)
        sim.run(maxSteps: 100) { _ in false }
        #expect(sim.weightHistory.isEmpty)
        #expect(!sim.events.contains { $0.reason == "WeightsReset" })
        let traffic = try #require(sim.status.condition(ConditionType.trafficReady))
        #expect(traffic.reason == "RouteNotManageable")
        #expect(
            traffic.message
                == "route 'tagged' of VirtualService product-service has no destination for subset stable: Fledge splits a route between stable and canary (a route that sends only to the canary is left alone)")
        #expect(sim.status.message == "holding: \(traffic.message)")
    }
}

/// An Argo Rollouts user's DestinationRule: both subsets select only `app`, since Argo adds a hash label to each.
@Suite("decide: subsets that select the same labels")
struct IdenticalSubsetsTests {
    @Test func theMessageSaysWhatToAdd() throws {
        var sim = Sim(destinationRule: seedDestinationRule(stableLabels: ["app": "product-service"], canaryLabels: ["app": "product-service"]))
        sim.run(maxSteps: 50) { _ in false }
        #expect(sim.weightHistory.isEmpty)
        let traffic = try #require(sim.status.condition(ConditionType.trafficReady))
        #expect(traffic.reason == "SubsetsIdentical")
        #expect(
            traffic.message
                == "subsets 'stable' and 'canary' of DestinationRule product-service select the same labels (give each a label that tells the versions apart, e.g. version: v1 and v2; Fledge does not add one, as Argo Rollouts adds rollouts-pod-template-hash)"
        )
    }
}
