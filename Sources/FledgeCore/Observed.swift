import FledgeJSON

/// What Fledge needs to know about a Deployment.
public struct ObservedDeployment: Sendable, Equatable {
    public var name: String
    /// `spec.template`.
    public var template: JSONValue
    /// `spec.selector.matchLabels`.
    public var selector: [String: String]
    /// `spec.selector.matchExpressions`: a selector may narrow `matchLabels` with them (`version in (v1)`), or use
    /// only them.
    public var selectorExpressions: [SelectorRequirement]
    /// `spec.replicas` (Kubernetes' default 1 when absent).
    public var replicas: Int
    public var readyReplicas: Int
    public var updatedReplicas: Int
    public var availableReplicas: Int
    public var generation: Int64
    public var observedGeneration: Int64
    /// The `fledge.dev/revision` annotation Fledge puts on the canary Deployment.
    public var revisionAnnotation: String? { annotations[Annotations.revision] }
    /// The name of the Rollout that controls this Deployment (its controller owner reference), if one does.
    public var owningRollout: String?
    /// `spec.strategy`, `minReadySeconds`, `progressDeadlineSeconds` and `revisionHistoryLimit`, as the API server
    /// defaults them.
    public var settings: DeploymentSettings
    /// `metadata.labels` and `metadata.annotations`.
    public var labels: [String: String]
    public var annotations: [String: String]
    /// The revision this Deployment's pod template runs: the one promotion recorded on it
    /// (`Annotations.promotedRevision`) while the template still hashes as the API server stored it then
    /// (`Annotations.promotedTemplate`), else the hash of the template (`revision(of:)`).
    public var revision: String {
        let own = FledgeCore.revision(of: template)
        if let promoted = annotations[Annotations.promotedRevision], annotations[Annotations.promotedTemplate] == own { return promoted }
        return own
    }

    public init(
        name: String, template: JSONValue, selector: [String: String] = [:], selectorExpressions: [SelectorRequirement] = [],
        replicas: Int = 1, readyReplicas: Int = 0, updatedReplicas: Int = 0, availableReplicas: Int = 0, generation: Int64 = 1,
        observedGeneration: Int64 = 1, revisionAnnotation: String? = nil, owningRollout: String? = nil,
        settings: DeploymentSettings = DeploymentSettings(), labels: [String: String] = [:], annotations: [String: String] = [:]
    ) {
        self.name = name
        self.template = template
        self.selector = selector
        self.selectorExpressions = selectorExpressions
        self.replicas = replicas
        self.readyReplicas = readyReplicas
        self.updatedReplicas = updatedReplicas
        self.availableReplicas = availableReplicas
        self.generation = generation
        self.observedGeneration = observedGeneration
        self.owningRollout = owningRollout
        self.settings = settings
        self.labels = labels
        var annotations = annotations
        if let revisionAnnotation { annotations[Annotations.revision] = revisionAnnotation }
        self.annotations = annotations
    }

    /// Reads a Deployment object as the API server returns it.
    public init(json d: JSONValue) {
        name = d[path: ["metadata", "name"]]?.stringValue ?? ""
        template = d[path: ["spec", "template"]] ?? .object([:])
        var selector: [String: String] = [:]
        for (k, v) in d[path: ["spec", "selector", "matchLabels"]]?.objectValue ?? [:] { selector[k] = v.stringValue }
        self.selector = selector
        selectorExpressions = (d[path: ["spec", "selector", "matchExpressions"]]?.arrayValue ?? []).map { e in
            SelectorRequirement(
                key: e["key"]?.stringValue ?? "", operator: e["operator"]?.stringValue ?? "",
                values: (e["values"]?.arrayValue ?? []).compactMap(\.stringValue))
        }
        replicas = Int(d[path: ["spec", "replicas"]]?.intValue ?? 1)
        readyReplicas = Int(d[path: ["status", "readyReplicas"]]?.intValue ?? 0)
        updatedReplicas = Int(d[path: ["status", "updatedReplicas"]]?.intValue ?? 0)
        availableReplicas = Int(d[path: ["status", "availableReplicas"]]?.intValue ?? 0)
        generation = d[path: ["metadata", "generation"]]?.intValue ?? 1
        observedGeneration = d[path: ["status", "observedGeneration"]]?.intValue ?? 0
        owningRollout = d[path: ["metadata", "ownerReferences"]]?.arrayValue?.first {
            $0["controller"]?.boolValue == true && $0["kind"]?.stringValue == Rollout.kind
                && $0["apiVersion"]?.stringValue?.hasPrefix(Rollout.apiVersion.prefix { $0 != "/" } + "/") == true
        }?["name"]?.stringValue
        settings = DeploymentSettings(spec: d["spec"])
        var labels: [String: String] = [:]
        for (k, v) in d[path: ["metadata", "labels"]]?.objectValue ?? [:] { labels[k] = v.stringValue }
        self.labels = labels
        var annotations: [String: String] = [:]
        for (k, v) in d[path: ["metadata", "annotations"]]?.objectValue ?? [:] { annotations[k] = v.stringValue }
        self.annotations = annotations
    }

    /// True when the Deployment's selector, `matchLabels` and `matchExpressions` both, selects pods with `labels`.
    public func selects(_ labels: [String: String]) -> Bool {
        FledgeCore.selects(selector, labels) && selectorExpressions.allSatisfy { $0.matches(labels) }
    }

    /// Every label key the selector looks at: a pod template must keep them to stay selected.
    public var selectorKeys: Set<String> { Set(selector.keys).union(selectorExpressions.map(\.key)) }

    /// `app=web, version in (v1)`, for messages.
    public var selectorText: String {
        let labels = selector.isEmpty ? [] : [labelText(selector)]
        let parts = labels + selectorExpressions.map(\.description)
        return parts.isEmpty ? "(none)" : parts.joined(separator: ", ")
    }

    /// The pod template's labels.
    public var podLabels: [String: String] {
        var out: [String: String] = [:]
        for (k, v) in template[path: ["metadata", "labels"]]?.objectValue ?? [:] { out[k] = v.stringValue }
        return out
    }

    /// The Deployment controller has seen the latest spec and every replica runs it and is ready.
    public var isRolledOut: Bool {
        observedGeneration >= generation && updatedReplicas >= replicas && readyReplicas >= replicas && availableReplicas >= replicas
    }

    /// How many pods run the latest spec and are ready, as far as the status tells: none while the Deployment
    /// controller has not seen that spec (its counts are still the former template's).
    public var readyOnLatestSpec: Int {
        observedGeneration >= generation ? min(updatedReplicas, readyReplicas) : 0
    }
}

/// The fields of a Deployment's spec, besides its pod template, that say how its pods are rolled out and kept: the
/// canary takes them over from stable, or a canary of a stable Deployment with `minReadySeconds: 30` would take
/// traffic before its pods had proven stable, and one with `maxUnavailable: 0` would drop pods while it scales.
/// Absent fields are what the API server defaults them to, so a Deployment written with a default spelled out and one
/// defaulted by the server compare equal (no write on every reconcile).
public struct DeploymentSettings: Sendable, Equatable {
    /// `spec.strategy`, with the API server's defaults filled in (`RollingUpdate`, 25 % surge and unavailable).
    public var strategy: JSONValue
    public var minReadySeconds: Int
    public var progressDeadlineSeconds: Int
    public var revisionHistoryLimit: Int

    public init(strategy: JSONValue = ["type": "RollingUpdate"], minReadySeconds: Int = 0, progressDeadlineSeconds: Int = 600, revisionHistoryLimit: Int = 10) {
        self.strategy = Self.defaulted(strategy)
        self.minReadySeconds = minReadySeconds
        self.progressDeadlineSeconds = progressDeadlineSeconds
        self.revisionHistoryLimit = revisionHistoryLimit
    }

    /// From a Deployment's `spec`.
    public init(spec: JSONValue?) {
        self.init(
            strategy: spec?["strategy"] ?? ["type": "RollingUpdate"], minReadySeconds: Int(spec?["minReadySeconds"]?.intValue ?? 0),
            progressDeadlineSeconds: Int(spec?["progressDeadlineSeconds"]?.intValue ?? 600),
            revisionHistoryLimit: Int(spec?["revisionHistoryLimit"]?.intValue ?? 10))
    }

    /// As the API server defaults `spec.strategy` (apps/v1 SetDefaults_Deployment).
    static func defaulted(_ strategy: JSONValue) -> JSONValue {
        var strategy = strategy.objectValue.map(JSONValue.object) ?? [:]
        if strategy["type"] == nil || strategy["type"]?.isNull == true { strategy["type"] = "RollingUpdate" }
        if strategy["type"]?.stringValue == "RollingUpdate" {
            var rolling = strategy["rollingUpdate"]?.objectValue.map(JSONValue.object) ?? [:]
            if rolling["maxUnavailable"] == nil || rolling["maxUnavailable"]?.isNull == true { rolling["maxUnavailable"] = "25%" }
            if rolling["maxSurge"] == nil || rolling["maxSurge"]?.isNull == true { rolling["maxSurge"] = "25%" }
            strategy["rollingUpdate"] = rolling
        }
        return strategy
    }
}

/// The stable Deployment's labels and annotations that the canary Deployment carries too (a team or cost-centre
/// label, a policy engine's required label, Reloader's annotations): all but those that belong to a tool and say
/// something about the stable Deployment object itself, which would be false on the canary:
/// - kubectl's (`kubectl.kubernetes.io/last-applied-configuration`: a later `kubectl apply` diffs against it) and the
///   Deployment controller's (`deployment.kubernetes.io/revision`: its own ReplicaSet count);
/// - Fledge's own (`fledge.dev/…`) and `app.kubernetes.io/managed-by` (the canary is managed by Fledge);
/// - GitOps and Helm ownership: Argo CD (`argocd.argoproj.io/…`, its tracking id names the stable object), Flux
///   (`….fluxcd.io/…`) and Helm (`meta.helm.sh/…`) would take the canary, which is in no Git repository or chart,
///   for theirs.
/// A label the stable subset selects on takes the canary subset's value (`version: v1` becomes `v2`), as in the pod
/// template. Labels and annotations are added or updated on the canary, never removed from it.
public func canaryMetadata(_ stable: [String: String], canaryLabels: [String: String] = [:]) -> [String: String] {
    var out: [String: String] = [:]
    for (key, value) in stable {
        let prefix = key.contains("/") ? String(key.prefix { $0 != "/" }) : ""
        if ["kubectl.kubernetes.io", "deployment.kubernetes.io", "fledge.dev", "argocd.argoproj.io", "meta.helm.sh"].contains(prefix)
            || prefix.hasSuffix("fluxcd.io") || key == "app.kubernetes.io/managed-by"
        {
            continue
        }
        out[key] = canaryLabels[key] ?? value
    }
    return out
}

/// One entry of a label selector's `matchExpressions`.
public struct SelectorRequirement: Sendable, Equatable, CustomStringConvertible {
    public var key: String
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    public var `operator`: String
    public var values: [String]

    public init(key: String, operator: String, values: [String] = []) {
        self.key = key
        self.operator = `operator`
        self.values = values
    }

    /// As the API server evaluates it; an operator it would not accept matches nothing.
    public func matches(_ labels: [String: String]) -> Bool {
        switch `operator` {
        case "In": return labels[key].map(values.contains) ?? false
        case "NotIn": return labels[key].map { !values.contains($0) } ?? true
        case "Exists": return labels[key] != nil
        case "DoesNotExist": return labels[key] == nil
        default: return false
        }
    }

    /// `version in (v1)`, as kubectl writes selectors.
    public var description: String {
        switch `operator` {
        case "In": return "\(key) in (\(values.joined(separator: ",")))"
        case "NotIn": return "\(key) notin (\(values.joined(separator: ",")))"
        case "Exists": return key
        case "DoesNotExist": return "!\(key)"
        default: return "\(key) \(`operator`) (\(values.joined(separator: ",")))"
        }
    }
}

public enum Annotations {
    /// On the canary Deployment: the revision its template was built for.
    public static let revision = "fledge.dev/revision"
    /// On the stable Deployment, written by promotion: the revision promoted into it, and the hash of its template
    /// as the API server stored it (`fledge.dev/promoted-template`). The server adds defaults to what promotion wrote
    /// (`imagePullPolicy`, `terminationMessagePath`, a probe's `timeoutSeconds` …), so the stored template's own
    /// hash is not the revision; while the template is unchanged since, it still is that revision.
    public static let promotedRevision = "fledge.dev/promoted-revision"
    public static let promotedTemplate = "fledge.dev/promoted-template"
}

/// What the cluster has, as the controller's watch caches see it. The controller passes the objects; the core
/// reads the managed routes and subsets itself.
public struct Observed: Sendable, Equatable {
    /// The target Deployment; nil when it does not exist.
    public var stable: ObservedDeployment?
    /// `<target>-canary`; nil when it does not exist.
    public var canary: ObservedDeployment?
    /// The VirtualService object; nil when it does not exist.
    public var virtualService: JSONValue?
    /// The DestinationRule object; nil when it does not exist.
    public var destinationRule: JSONValue?
    /// The VirtualService `status.routedTraffic` names when it is not the one the spec names (`spec.traffic`
    /// changed while the canary had weight there); nil otherwise, or when it does not exist.
    public var formerVirtualService: JSONValue?
    /// The canary Deployment `status.canaryDeployment` names when it is not `<target>-canary` any more
    /// (`spec.target.deployment` changed); nil otherwise, or when it does not exist.
    public var formerCanary: ObservedDeployment?

    public init(
        stable: ObservedDeployment?, canary: ObservedDeployment?, virtualService: JSONValue?, destinationRule: JSONValue?,
        formerVirtualService: JSONValue? = nil, formerCanary: ObservedDeployment? = nil
    ) {
        self.stable = stable
        self.canary = canary
        self.virtualService = virtualService
        self.destinationRule = destinationRule
        self.formerVirtualService = formerVirtualService
        self.formerCanary = formerCanary
    }

    /// From the objects as the API server returns them.
    public init(
        stableDeployment: JSONValue?, canaryDeployment: JSONValue?, virtualService: JSONValue?, destinationRule: JSONValue?,
        formerVirtualService: JSONValue? = nil, formerCanaryDeployment: JSONValue? = nil
    ) {
        self.init(
            stable: stableDeployment.map(ObservedDeployment.init(json:)), canary: canaryDeployment.map(ObservedDeployment.init(json:)),
            virtualService: virtualService, destinationRule: destinationRule, formerVirtualService: formerVirtualService,
            formerCanary: formerCanaryDeployment.map(ObservedDeployment.init(json:)))
    }
}
