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
    public var revisionAnnotation: String?
    /// The name of the Rollout that controls this Deployment (its controller owner reference), if one does.
    public var owningRollout: String?
    /// What promotion recorded on the stable Deployment: (revision, hash of the template as stored). See
    /// `Annotations.promotedRevision`.
    public var promoted: (revision: String, template: String)? {
        get { promotedRevision.flatMap { revision in promotedTemplate.map { (revision, $0) } } }
        set { (promotedRevision, promotedTemplate) = (newValue?.revision, newValue?.template) }
    }
    var promotedRevision: String?
    var promotedTemplate: String?

    /// The revision this Deployment's pod template runs: the one promoted into it while the template is still as
    /// the API server stored it then, else the hash of the template (`revision(of:)`).
    public var revision: String {
        let own = FledgeCore.revision(of: template)
        if let promoted, promoted.template == own { return promoted.revision }
        return own
    }

    public init(
        name: String, template: JSONValue, selector: [String: String] = [:], selectorExpressions: [SelectorRequirement] = [],
        replicas: Int = 1, readyReplicas: Int = 0, updatedReplicas: Int = 0, availableReplicas: Int = 0, generation: Int64 = 1,
        observedGeneration: Int64 = 1, revisionAnnotation: String? = nil, owningRollout: String? = nil
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
        self.revisionAnnotation = revisionAnnotation
        self.owningRollout = owningRollout
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
        revisionAnnotation = d[path: ["metadata", "annotations", Annotations.revision]]?.stringValue
        promotedRevision = d[path: ["metadata", "annotations", Annotations.promotedRevision]]?.stringValue
        promotedTemplate = d[path: ["metadata", "annotations", Annotations.promotedTemplate]]?.stringValue
        owningRollout = d[path: ["metadata", "ownerReferences"]]?.arrayValue?.first {
            $0["controller"]?.boolValue == true && $0["kind"]?.stringValue == Rollout.kind
                && $0["apiVersion"]?.stringValue?.hasPrefix(Rollout.apiVersion.prefix { $0 != "/" } + "/") == true
        }?["name"]?.stringValue
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
