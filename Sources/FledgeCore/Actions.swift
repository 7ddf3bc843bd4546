import FledgeJSON

/// What `decide` asks the controller to do. Actions are data; the controller executes them in order.
public enum Action: Sendable, Equatable {
    /// Create or update `<target>-canary` so it matches (template, selector, replicas, revision annotation).
    case ensureCanaryDeployment(CanaryDeploymentSpec)
    /// Write the managed routes' weights. Carries the whole VirtualService as it should be: the observed one
    /// with only the managed routes' weights changed (write it with the observed resourceVersion, read it back).
    case setWeights(WeightChange)
    /// Promotion: write this pod template into the stable Deployment's `spec.template`.
    case writeStableTemplate(deployment: String, template: JSONValue, revision: String)
    /// Set the canary Deployment's `spec.replicas`.
    case scaleCanary(deployment: String, replicas: Int)
    /// Add (`true`) or remove Fledge's finalizer (`Finalizers.traffic`) on the Rollout itself.
    case setFinalizer(Bool)
    /// POST `body` to the webhook; report the answer back in `Analysis.webhooks[call.id]`. The same id may be
    /// asked for again while the call is in flight: run it once.
    case callWebhook(WebhookCall)
    /// A Kubernetes Event on the Rollout.
    case emitEvent(RolloutEvent)
    /// Measure the canary (a read) and call `decide` again with the result in `Analysis.latest`.
    case runAnalysis(AnalysisRequest)
    /// Call `decide` again after this long, even if nothing changes.
    case requeue(after: RolloutDuration)

    /// The weights a `.setWeights` writes; nil for every other action.
    public var weightChange: WeightChange? {
        if case .setWeights(let change) = self { return change } else { return nil }
    }

    /// True for actions that change something outside (the cluster, a webhook, an event). `runAnalysis` and
    /// `requeue` are not writes.
    public var isWrite: Bool {
        switch self {
        case .runAnalysis, .requeue: return false
        default: return true
        }
    }
}

public struct CanaryDeploymentSpec: Sendable, Equatable {
    public var name: String
    /// Pod template: the effective template with the canary subset's labels.
    public var template: JSONValue
    /// `spec.selector.matchLabels`.
    public var selector: [String: String]
    public var replicas: Int
    /// Put into the Deployment's `fledge.dev/revision` annotation.
    public var revision: String
    /// Taken over from the stable Deployment (see `DeploymentSettings`).
    public var settings: DeploymentSettings
    /// Taken over from the stable Deployment's metadata (see `canaryMetadata`); Fledge's own labels and its revision
    /// annotation come on top.
    public var labels: [String: String]
    public var annotations: [String: String]

    public init(
        name: String, template: JSONValue, selector: [String: String], replicas: Int, revision: String,
        settings: DeploymentSettings = DeploymentSettings(), labels: [String: String] = [:], annotations: [String: String] = [:]
    ) {
        self.name = name
        self.template = template
        self.selector = selector
        self.replicas = replicas
        self.revision = revision
        self.settings = settings
        self.labels = labels
        self.annotations = annotations
    }

    /// The canary `observed` has everything this asks for: the revision, replicas, selector and settings, and the
    /// labels and annotations (it may carry more).
    public func isMet(by canary: ObservedDeployment) -> Bool {
        canary.revisionAnnotation == revision && canary.replicas == replicas && canary.selector == selector && canary.settings == settings
            && labels.allSatisfy { canary.labels[$0.key] == $0.value } && annotations.allSatisfy { canary.annotations[$0.key] == $0.value }
    }
}

extension CanaryDeploymentSpec {
    /// The canary Deployment as Fledge creates it: owned by the Rollout (`rollout`, as the API server returns it),
    /// Fledge's labels and revision annotation on top of those taken over from stable. Test harnesses that stand in
    /// for the controller write the same object, or their canary never matches what `decide` asks for.
    public func deployment(rollout: JSONValue, namespace: String) -> JSONValue {
        let spec = self
        var ownerReference: JSONObject = [
            "apiVersion": .string(Rollout.apiVersion), "kind": .string(Rollout.kind),
            "name": rollout["metadata"]?["name"] ?? .string(""), "controller": true, "blockOwnerDeletion": true,
        ]
        if let uid = rollout["metadata"]?["uid"] { ownerReference["uid"] = uid }
        var matchLabels = JSONObject()
        for (k, v) in spec.selector.sorted(by: { $0.key < $1.key }) { matchLabels[k] = .string(v) }
        // Stable's, then Fledge's own on top.
        var labels = JSONObject()
        for (k, v) in spec.labels.sorted(by: { $0.key < $1.key }) { labels[k] = .string(v) }
        labels["app.kubernetes.io/managed-by"] = "fledge"
        labels["fledge.dev/rollout"] = rollout["metadata"]?["name"] ?? .string("")
        var annotations = JSONObject()
        for (k, v) in spec.annotations.sorted(by: { $0.key < $1.key }) { annotations[k] = .string(v) }
        annotations[Annotations.revision] = .string(spec.revision)
        var deployment: JSONValue = [
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": [
                "name": .string(spec.name), "namespace": .string(namespace),
                "labels": .object(labels),
                "annotations": .object(annotations),
                "ownerReferences": [.object(ownerReference)],
            ],
            "spec": [
                "replicas": .int(Int64(spec.replicas)),
                "selector": ["matchLabels": .object(matchLabels)],
                "template": spec.template,
                "strategy": spec.settings.strategy,
                "progressDeadlineSeconds": .int(Int64(spec.settings.progressDeadlineSeconds)),
                "revisionHistoryLimit": .int(Int64(spec.settings.revisionHistoryLimit)),
            ],
        ]
        // 0 is left out, as the API server leaves it out.
        if spec.settings.minReadySeconds != 0 {
            deployment[path: ["spec", "minReadySeconds"]] = .int(Int64(spec.settings.minReadySeconds))
        }
        return deployment
    }
}

public struct WeightChange: Sendable, Equatable {
    public var stableWeight: Int
    public var canaryWeight: Int
    /// Ids of the managed routes (`name` or `http[INDEX]`).
    public var routes: [String]
    /// The VirtualService to write.
    public var virtualService: JSONValue
}

public struct WebhookCall: Sendable, Equatable {
    /// `TYPE/NAME/REVISION[/STAGE]`; answers are matched by it.
    public var id: String
    public var name: String
    public var type: WebhookType
    public var url: String
    public var timeout: RolloutDuration
    /// The JSON body to POST.
    public var body: JSONValue
}

public struct RolloutEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable { case normal = "Normal", warning = "Warning" }
    public var type: Kind
    public var reason: String
    public var message: String

    public init(type: Kind, reason: String, message: String) {
        self.type = type
        self.reason = reason
        self.message = message
    }
}

/// What to measure for a rollout.
public struct AnalysisRequest: Sendable, Equatable {
    public var namespace: String
    /// `destination_workload` of the canary (`<target>-canary`) and of stable (`<target>`).
    public var canaryWorkload: String
    public var stableWorkload: String
    /// The window of every query (`rate(…[interval])`).
    public var window: RolloutDuration
    public var metrics: [MetricPlan]
    /// Stable's side is needed for metrics with a comparison.
    public var needsStable: Bool
    public var prometheusAddress: String?
    /// The statistical judge wants both workloads' counts over the window in `IntervalResult.canaryCounts` and
    /// `stableCounts` (requests, 5xx, latency bucket increases; `PrometheusClient.workloadCounts` batches them).
    /// False when the judge is disabled or the stage sends everything to the canary.
    public var needsCounts: Bool
}

/// `decide`'s answer: the status to write (when it differs from the current one) and the actions to run.
public struct Decision: Sendable, Equatable {
    public var status: RolloutStatus
    public var actions: [Action]

    /// The actions that change something outside.
    public var writes: [Action] { actions.filter(\.isWrite) }
}
