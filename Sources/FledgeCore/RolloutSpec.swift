import FledgeJSON

// The Rollout resource (`fledge.dev/v1alpha1`, kind `Rollout`) as Codable typed views over JSON.
//
// The spec types mirror what a user writes: every field is optional and durations stay text, so that a
// spec with mistakes still decodes and `validate()` can report every mistake at once with its field path.
// `RolloutPlan` (see Validation.swift) is the checked form with defaults applied; `decide` works on it.

/// `spec` of a Rollout.
public struct RolloutSpec: Codable, Sendable, Equatable {
    /// The user's existing Deployment: the stable slot.
    public var target: TargetSpec?
    /// What the canary changes relative to the stable template. Absent means "no change": nothing to roll out.
    public var canary: CanaryChange?
    public var traffic: TrafficSpec?
    /// Strictly increasing canary weights; after the last stage the canary is promoted.
    public var stages: [StageSpec]?
    public var analysis: AnalysisSpec?
    /// How long a rollout may go without progress (entering a stage, a passing check) before it is rolled back.
    /// Time spent waiting for a manual approval does not count. Default `10m`.
    public var progressDeadline: String?
    public var webhooks: [WebhookSpec]?

    public init(
        target: TargetSpec? = nil, canary: CanaryChange? = nil, traffic: TrafficSpec? = nil, stages: [StageSpec]? = nil,
        analysis: AnalysisSpec? = nil, progressDeadline: String? = nil, webhooks: [WebhookSpec]? = nil
    ) {
        self.target = target
        self.canary = canary
        self.traffic = traffic
        self.stages = stages
        self.analysis = analysis
        self.progressDeadline = progressDeadline
        self.webhooks = webhooks
    }
}

public struct TargetSpec: Codable, Sendable, Equatable {
    /// Name of the stable Deployment, in the Rollout's namespace. The canary Deployment is `<deployment>-canary`.
    public var deployment: String?
    public init(deployment: String? = nil) { self.deployment = deployment }
}

/// The canary change. `templatePatch` (a JSON merge patch, RFC 7386, over the pod template) is applied first,
/// then each image. An image is written `[CONTAINER=]IMAGE`; without a container name the pod template must
/// have exactly one container.
public struct CanaryChange: Codable, Sendable, Equatable {
    /// One image change, `[CONTAINER=]IMAGE`.
    public var image: String?
    /// Several image changes, each `[CONTAINER=]IMAGE`.
    public var images: [String]?
    /// A JSON merge patch over the stable Deployment's `spec.template`.
    public var templatePatch: JSONValue?
    /// Replicas of the canary Deployment while it serves; default: the stable Deployment's replicas (at least 1).
    public var replicas: Int?

    public init(image: String? = nil, images: [String]? = nil, templatePatch: JSONValue? = nil, replicas: Int? = nil) {
        self.image = image
        self.images = images
        self.templatePatch = templatePatch
        self.replicas = replicas
    }
}

public struct TrafficSpec: Codable, Sendable, Equatable {
    /// Default: the target Deployment's name.
    public var virtualService: String?
    /// Names of the HTTP routes whose weights Fledge manages. Default: every route whose destinations are
    /// only the stable and canary subsets, with both present (in the seed: the second, unnamed route).
    public var routes: [String]?
    /// Default: the target Deployment's name.
    public var destinationRule: String?
    /// Default `stable`.
    public var stableSubset: String?
    /// Default `canary`.
    public var canarySubset: String?

    public init(
        virtualService: String? = nil, routes: [String]? = nil, destinationRule: String? = nil, stableSubset: String? = nil,
        canarySubset: String? = nil
    ) {
        self.virtualService = virtualService
        self.routes = routes
        self.destinationRule = destinationRule
        self.stableSubset = stableSubset
        self.canarySubset = canarySubset
    }
}

public struct StageSpec: Codable, Sendable, Equatable {
    /// Percent of the managed routes' traffic sent to the canary, 1…100.
    public var weight: Int?
    /// How long the stage runs (and is analysed) before it may advance. Default: one analysis interval.
    public var hold: String?
    /// `auto` (default) or `manual`: a manual stage waits in `Paused` for a promote request once its hold passed.
    public var approval: String?

    public init(weight: Int? = nil, hold: String? = nil, approval: String? = nil) {
        self.weight = weight
        self.hold = hold
        self.approval = approval
    }
}

public struct AnalysisSpec: Codable, Sendable, Equatable {
    /// How often the canary is measured, and the window of each measurement. Default `30s`.
    public var interval: String?
    /// Failed checks (cumulative over one rollout) that roll it back. Default 3, at least 1.
    public var failureLimit: Int?
    /// Canary requests an interval needs before its metrics can pass. Default 10, at least 1.
    public var minRequests: Int?
    /// What a metric with no data means: `inconclusive` (default: hold, never pass) or `fail` (a failed check).
    public var noData: String?
    /// Consecutive intervals with a metric-provider error that roll the rollout back. Default 5, at least 1.
    /// Until then the rollout holds.
    public var providerErrorLimit: Int?
    public var metrics: [MetricSpec]?
    /// The Prometheus to ask; default: the controller's `--prometheus`.
    public var prometheus: PrometheusRef?
    /// The statistical judge of canary against stable; on by default whenever the controller can measure counts.
    public var judge: JudgeSpec?

    public init(
        interval: String? = nil, failureLimit: Int? = nil, minRequests: Int? = nil, noData: String? = nil,
        providerErrorLimit: Int? = nil, metrics: [MetricSpec]? = nil, prometheus: PrometheusRef? = nil, judge: JudgeSpec? = nil
    ) {
        self.interval = interval
        self.failureLimit = failureLimit
        self.minRequests = minRequests
        self.noData = noData
        self.providerErrorLimit = providerErrorLimit
        self.metrics = metrics
        self.prometheus = prometheus
        self.judge = judge
    }
}

/// `spec.analysis.judge`: the statistical judge (see docs/judge.md). With request and 5xx counts and latency
/// histograms of both workloads it rolls back as soon as harm is conclusive (a chance of at most
/// `falseRollbackRate` for a canary no worse than stable, however often it looks) and lets a stage advance only
/// once the canary is shown not worse than the margins at the next weight; thin evidence holds. The metrics'
/// thresholds stay as guardrails. Every field is optional; the defaults are `FledgeJudge.JudgeConfiguration`'s.
public struct JudgeSpec: Codable, Sendable, Equatable {
    /// Default true. False: the metrics alone decide, as in Flagger.
    public var enabled: Bool?
    /// Chance of rolling back a canary no worse than stable. Default 0.01.
    public var falseRollbackRate: Double?
    /// Chance of promoting a canary worse than the margins. Default 0.05.
    public var falsePromotionRate: Double?
    /// The smallest error-rate degradation worth detecting: canary ≤ stable × this is acceptable (default 1.5) …
    public var errorRateRatioMargin: Double?
    /// … or canary ≤ stable + this (a rate, default 0.001 = 0.1 percentage point), whichever allows more.
    public var errorRateAbsoluteMargin: Double?
    /// The same for the share of requests slower than a boundary near stable's p99 (default 1.5) …
    public var latencyTailRatioMargin: Double?
    /// … or + this (default 0.005).
    public var latencyTailAbsoluteMargin: Double?
    /// The latency boundary: the lowest bucket bound that at most this share of requests exceed. Default 0.01.
    public var latencyTailShare: Double?
    /// Requests (both sides) seen before the latency boundary is chosen. Default 200.
    public var latencyBoundarySamples: Double?

    public init(
        enabled: Bool? = nil, falseRollbackRate: Double? = nil, falsePromotionRate: Double? = nil, errorRateRatioMargin: Double? = nil,
        errorRateAbsoluteMargin: Double? = nil, latencyTailRatioMargin: Double? = nil, latencyTailAbsoluteMargin: Double? = nil,
        latencyTailShare: Double? = nil, latencyBoundarySamples: Double? = nil
    ) {
        self.enabled = enabled
        self.falseRollbackRate = falseRollbackRate
        self.falsePromotionRate = falsePromotionRate
        self.errorRateRatioMargin = errorRateRatioMargin
        self.errorRateAbsoluteMargin = errorRateAbsoluteMargin
        self.latencyTailRatioMargin = latencyTailRatioMargin
        self.latencyTailAbsoluteMargin = latencyTailAbsoluteMargin
        self.latencyTailShare = latencyTailShare
        self.latencyBoundarySamples = latencyBoundarySamples
    }
}

public struct PrometheusRef: Codable, Sendable, Equatable {
    public var address: String?
    public init(address: String? = nil) { self.address = address }
}

/// A metric judged every interval.
///
/// Built-ins (from Istio's standard metrics): `success-rate` (percent of non-5xx responses, needs `min`),
/// `latency-p50`, `latency-p90`, `latency-p99` (milliseconds, need `max`). Any other name needs `query`: a
/// PromQL template with `{{namespace}}`, `{{workload}}` and `{{interval}}`, judged by `min` and/or `max`.
///
/// Comparison with the stable workload measured in the same window: `maxDecreaseFromStable` (points below
/// stable's value; for metrics where higher is better, like success rate) and `maxRatioToStable` (a multiple
/// of stable's value; for metrics where lower is better, like latency).
public struct MetricSpec: Codable, Sendable, Equatable {
    public var name: String?
    public var query: String?
    public var min: Double?
    public var max: Double?
    public var maxDecreaseFromStable: Double?
    public var maxRatioToStable: Double?

    public init(
        name: String? = nil, query: String? = nil, min: Double? = nil, max: Double? = nil,
        maxDecreaseFromStable: Double? = nil, maxRatioToStable: Double? = nil
    ) {
        self.name = name
        self.query = query
        self.min = min
        self.max = max
        self.maxDecreaseFromStable = maxDecreaseFromStable
        self.maxRatioToStable = maxRatioToStable
    }
}

/// An HTTP POST with a JSON body; any 2xx answer passes.
/// - `pre-rollout`: after the canary is ready, before it gets traffic; a failure rolls back.
/// - `stage-gate`: before leaving each stage; a failure holds the stage and is retried every interval.
/// - `post-rollout`: a notification when the rollout ends (Succeeded, Failed or Aborted), owed in status and called
///   again every interval until it answers 2xx (for up to `progressDeadline` after the end).
public struct WebhookSpec: Codable, Sendable, Equatable {
    public var name: String?
    public var type: String?
    public var url: String?
    /// Default `10s`.
    public var timeout: String?

    public init(name: String? = nil, type: String? = nil, url: String? = nil, timeout: String? = nil) {
        self.name = name
        self.type = type
        self.url = url
        self.timeout = timeout
    }
}
