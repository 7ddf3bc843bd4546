import FledgeCore
import FledgeJSON
import FledgeJudge

/// The seed article's VirtualService, as JSON.
func seedVirtualService(canaryWeight: Int64 = 10) -> JSONValue {
    [
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": ["name": "product-service", "namespace": "shop"],
        "spec": [
            "hosts": ["product-service"],
            "http": [
                [
                    "match": [["headers": ["x-canary": ["exact": "true"]]]],
                    "route": [["destination": ["host": "product-service", "subset": "canary"]]],
                ],
                [
                    "route": [
                        ["destination": ["host": "product-service", "subset": "stable"], "weight": .int(100 - canaryWeight)],
                        ["destination": ["host": "product-service", "subset": "canary"], "weight": .int(canaryWeight)],
                    ],
                    "retries": ["attempts": 3, "perTryTimeout": "2s"],
                    "timeout": "10s",
                ],
            ],
        ],
    ]
}

func seedDestinationRule(stableLabels: JSONValue = ["version": "v1"], canaryLabels: JSONValue = ["version": "v2"]) -> JSONValue {
    [
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": ["name": "product-service", "namespace": "shop"],
        "spec": [
            "host": "product-service",
            "trafficPolicy": [
                "connectionPool": ["http": ["h2UpgradePolicy": "UPGRADE"]],
                "outlierDetection": ["consecutive5xxErrors": 3, "interval": "30s", "baseEjectionTime": "60s"],
            ],
            "subsets": [
                ["name": "stable", "labels": stableLabels],
                ["name": "canary", "labels": canaryLabels],
            ],
        ],
    ]
}

func podTemplate(image: String = "registry.example/product-service:1.0.0", version: String = "v1") -> JSONValue {
    [
        "metadata": ["labels": ["app": "product-service", "version": .string(version)]],
        "spec": [
            "containers": [
                ["name": "app", "image": .string(image), "ports": [["containerPort": 8080]]]
            ]
        ],
    ]
}

func stableDeployment(image: String = "registry.example/product-service:1.0.0", replicas: Int = 3) -> ObservedDeployment {
    ObservedDeployment(
        name: "product-service", template: podTemplate(image: image), selector: ["app": "product-service", "version": "v1"],
        replicas: replicas, readyReplicas: replicas, updatedReplicas: replicas, availableReplicas: replicas)
}

func seedSpec(
    image: String? = "registry.example/product-service:2.0.0", stages: [StageSpec]? = nil, failureLimit: Int? = 3,
    providerErrorLimit: Int? = nil, noData: String? = nil, minRequests: Int? = 20, metrics: [MetricSpec]? = nil,
    progressDeadline: String? = "10m", webhooks: [WebhookSpec]? = nil
) -> RolloutSpec {
    RolloutSpec(
        target: TargetSpec(deployment: "product-service"),
        canary: image.map { CanaryChange(image: $0) },
        traffic: TrafficSpec(virtualService: "product-service", destinationRule: "product-service", stableSubset: "stable", canarySubset: "canary"),
        stages: stages ?? [
            StageSpec(weight: 10, hold: "20s"), StageSpec(weight: 25, hold: "20s"), StageSpec(weight: 50, hold: "20s"),
            StageSpec(weight: 100, hold: "20s"),
        ],
        analysis: AnalysisSpec(
            interval: "10s", failureLimit: failureLimit, minRequests: minRequests, noData: noData, providerErrorLimit: providerErrorLimit,
            metrics: metrics ?? [MetricSpec(name: "success-rate", min: 99), MetricSpec(name: "latency-p99", max: 500)]),
        progressDeadline: progressDeadline, webhooks: webhooks)
}

func seedRollout(spec: RolloutSpec = seedSpec(), status: RolloutStatus? = nil) -> Rollout {
    Rollout(metadata: ObjectMeta(name: "product-service", namespace: "shop", generation: 1), spec: spec, status: status)
}

/// How the simulated canary behaves when measured.
enum CanaryBehaviour: Equatable {
    case healthy
    case errors(successRate: Double)
    case slow(p99: Double)
    case noData
    case providerDown
    case fewRequests(Int64)
}

func measure(_ behaviour: CanaryBehaviour, at time: Timestamp, stableSuccess: Double = 99.9) -> IntervalResult {
    switch behaviour {
    case .healthy:
        return IntervalResult(
            time: time, requests: 500,
            metrics: ["success-rate": MetricSample(.value(99.8), stableValue: stableSuccess), "latency-p99": MetricSample(.value(120), stableValue: 110)])
    case .errors(let rate):
        return IntervalResult(
            time: time, requests: 500,
            metrics: ["success-rate": MetricSample(.value(rate), stableValue: stableSuccess), "latency-p99": MetricSample(.value(120), stableValue: 110)])
    case .slow(let p99):
        return IntervalResult(
            time: time, requests: 500,
            metrics: ["success-rate": MetricSample(.value(99.9), stableValue: stableSuccess), "latency-p99": MetricSample(.value(p99), stableValue: 110)])
    case .noData:
        return IntervalResult(time: time, requests: 0, metrics: ["success-rate": MetricSample(.noData), "latency-p99": MetricSample(.noData)])
    case .providerDown:
        // As PrometheusAnalyzer reports it: every query failed, the request volume's too.
        return IntervalResult(
            time: time, requests: nil,
            metrics: ["success-rate": MetricSample(.providerError("connection refused")), "latency-p99": MetricSample(.providerError("connection refused"))],
            requestsError: "connection refused")
    case .fewRequests(let n):
        return IntervalResult(
            time: time, requests: n, metrics: ["success-rate": MetricSample(.value(100)), "latency-p99": MetricSample(.value(50))])
    }
}

/// A fake cluster + clock that executes decide's actions like the controller will.
struct Sim {
    var rollout: Rollout
    var observed: Observed
    var now = Timestamp(seconds: 1_800_000_000)
    var behaviour: CanaryBehaviour = .healthy
    var canaryPodsBecomeReady = true
    var webhookAnswers: [String: Bool] = [:]
    /// Webhooks that cannot be reached (no HTTP answer).
    var unreachableWebhooks: Set<String> = []
    var webhookOutcomes: [String: WebhookOutcome] = [:]
    var latest: IntervalResult?
    /// When the controller began deciding (`Analysis.decidingSince`): set to simulate a restart.
    var decidingSince: Timestamp?
    var phases: [Phase] = []
    var events: [RolloutEvent] = []
    var decisions: [Decision] = []
    var webhookCalls: [WebhookCall] = []
    var weightHistory: [Int] = []
    /// Weights written to `observed.formerVirtualService`.
    var formerWeightHistory: [Int] = []
    /// The Rollout had a deletion timestamp and its last finalizer was removed: the API server deletes it.
    var deleted = false
    /// When set, every analysis also carries the judge's counts for the canary weight in force.
    var counts: ((_ canaryWeight: Int) -> (canary: JudgeSample, stable: JudgeSample))?

    init(spec: RolloutSpec = seedSpec(), seedWeight: Int64 = 0, destinationRule: JSONValue = seedDestinationRule()) {
        rollout = seedRollout(spec: spec)
        observed = Observed(
            stable: stableDeployment(), canary: nil, virtualService: seedVirtualService(canaryWeight: seedWeight), destinationRule: destinationRule)
    }

    var phase: Phase { rollout.status?.phase ?? .healthy }
    var status: RolloutStatus { rollout.status ?? RolloutStatus() }

    var observedCanaryWeight: Int? {
        let routes = httpRoutes(of: observed.virtualService!)
        return routes[1].canaryWeight(stableSubset: "stable", canarySubset: "canary")
    }

    /// One reconcile: decide, store status, execute actions. Returns the decision.
    @discardableResult
    mutating func reconcile() -> Decision {
        let d = decide(rollout: rollout, observed: observed, analysis: Analysis(latest: latest, webhooks: webhookOutcomes, decidingSince: decidingSince), now: now)
        decisions.append(d)
        rollout.status = d.status
        if phases.last != d.status.phase { phases.append(d.status.phase) }
        for action in d.actions { execute(action) }
        return d
    }

    mutating func execute(_ action: Action) {
        switch action {
        case .ensureCanaryDeployment(let spec):
            let ready = canaryPodsBecomeReady ? spec.replicas : 0
            // As ClusterWriter writes it: labels and annotations added to those the canary has.
            observed.canary = ObservedDeployment(
                name: spec.name, template: spec.template, selector: spec.selector, replicas: spec.replicas, readyReplicas: ready,
                updatedReplicas: ready, availableReplicas: ready, revisionAnnotation: spec.revision, settings: spec.settings,
                labels: (observed.canary?.labels ?? [:]).merging(spec.labels) { $1 },
                annotations: (observed.canary?.annotations ?? [:]).merging(spec.annotations) { $1 })
        case .setWeights(let change):
            // Written where it is named, as the API server would.
            let name = change.virtualService[path: ["metadata", "name"]]
            if let former = observed.formerVirtualService, former[path: ["metadata", "name"]] == name {
                observed.formerVirtualService = change.virtualService
                formerWeightHistory.append(change.canaryWeight)
                return
            }
            observed.virtualService = change.virtualService
            weightHistory.append(change.canaryWeight)
        case .writeStableTemplate(_, let template, _):
            observed.stable!.template = template
        case .scaleCanary(let name, let replicas) where name == observed.formerCanary?.name:
            observed.formerCanary!.replicas = replicas
            observed.formerCanary!.readyReplicas = replicas
        case .scaleCanary(_, let replicas):
            observed.canary!.replicas = replicas
            observed.canary!.readyReplicas = replicas
            observed.canary!.updatedReplicas = replicas
            observed.canary!.availableReplicas = replicas
        case .callWebhook(let call):
            webhookCalls.append(call)
            if unreachableWebhooks.contains(call.name) {
                webhookOutcomes[call.id] = WebhookOutcome(passed: false, message: "connection refused", time: now, answered: false)
            } else if let answer = webhookAnswers[call.name] {
                webhookOutcomes[call.id] = WebhookOutcome(passed: answer, message: answer ? "200 OK" : "503 not yet", time: now)
            }
        case .setFinalizer(let present):
            var finalizers = rollout.metadata.finalizers ?? []
            finalizers.removeAll { $0 == Finalizers.traffic }
            if present { finalizers.append(Finalizers.traffic) }
            rollout.metadata.finalizers = finalizers.isEmpty ? nil : finalizers
            if rollout.metadata.deletionTimestamp != nil, finalizers.isEmpty { deleted = true }
        case .emitEvent(let e): events.append(e)
        case .runAnalysis:
            latest = measure(behaviour, at: now)
            if let counts, let weight = observedCanaryWeight {
                let (canary, stable) = counts(weight)
                latest!.canaryCounts = canary
                latest!.stableCounts = stable
            }
        case .requeue: break
        }
    }

    /// Reconciles until `done`, advancing the clock a second whenever a reconcile asks for no write.
    mutating func run(maxSteps: Int = 5000, until done: (Sim) -> Bool) {
        for _ in 0..<maxSteps {
            if done(self) { return }
            let d = reconcile()
            if d.writes.isEmpty && !d.actions.contains(where: { if case .runAnalysis = $0 { return true } else { return false } }) {
                now = Timestamp(seconds: now.seconds + 1)
            }
        }
    }

    mutating func run(untilPhase phase: Phase, maxSteps: Int = 5000) {
        run(maxSteps: maxSteps) { $0.phase == phase }
    }

    mutating func request(_ kind: ManualRequest, token: String? = nil) {
        var annotations = rollout.metadata.annotations ?? [:]
        annotations[kind.annotation] = token ?? "\(now)-\(kind.rawValue)-\(decisions.count)"
        rollout.metadata.annotations = annotations
    }

    func stableImage() -> String? {
        observed.stable?.template[path: ["spec", "containers"]]?[0]?["image"]?.stringValue
    }
}

extension Decision {
    var weightChanges: [WeightChange] {
        actions.compactMap(\.weightChange)
    }
    var eventReasons: [String] { events.map(\.reason) }
    var events: [RolloutEvent] {
        actions.compactMap { if case .emitEvent(let e) = $0 { return e } else { return nil } }
    }
}
