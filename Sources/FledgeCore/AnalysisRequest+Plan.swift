extension AnalysisRequest {
    /// Measure `canary` (and `stable`, for comparisons) in `namespace` over `window`.
    public init(
        in namespace: String, canary: String, stable: String, window: RolloutDuration, metrics: [MetricPlan], needsStable: Bool,
        needsCounts: Bool = false, prometheus: String? = nil
    ) {
        self.init(
            namespace: namespace, canaryWorkload: canary, stableWorkload: stable, window: window, metrics: metrics, needsStable: needsStable,
            prometheusAddress: prometheus, needsCounts: needsCounts)
    }

    /// The measurement `decide` asks for when an analysis is due: the same request for `fledge analyze`'s dry run.
    public init(rollout: Rollout, plan: RolloutPlan) {
        self.init(
            in: rollout.metadata.namespace ?? "default", canary: plan.canaryDeployment, stable: plan.target, window: plan.analysis.interval,
            metrics: plan.analysis.metrics,
            needsStable: plan.analysis.metrics.contains { $0.maxDecreaseFromStable != nil || $0.maxRatioToStable != nil },
            needsCounts: plan.analysis.judge.enabled, prometheus: plan.analysis.prometheusAddress)
    }
}

extension MetricPlan {
    /// A metric judged by fixed thresholds and/or against stable.
    public init(_ name: String, _ kind: Kind, min: Double? = nil, max: Double? = nil, maxDecreaseFromStable: Double? = nil, maxRatioToStable: Double? = nil) {
        self.init(name: name, kind: kind, min: min, max: max, maxDecreaseFromStable: maxDecreaseFromStable, maxRatioToStable: maxRatioToStable)
    }
}
