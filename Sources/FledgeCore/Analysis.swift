import FledgeJSON
import FledgeJudge

/// What a metric provider returned for one metric in one window.
public enum MetricOutcome: Sendable, Equatable {
    case value(Double)
    /// The query returned no series (e.g. no requests at all).
    case noData
    /// The provider could not answer (down, timeout, bad query); its message.
    case providerError(String)
}

/// One metric measured for the canary, with the stable side of the same window when asked for.
public struct MetricSample: Sendable, Equatable {
    public var outcome: MetricOutcome
    /// Canary requests in the window behind this value, when known.
    public var requests: Int64?
    /// Stable's value in the same window, when a comparison is configured.
    public var stableValue: Double?

    public init(_ outcome: MetricOutcome, requests: Int64? = nil, stableValue: Double? = nil) {
        self.outcome = outcome
        self.requests = requests
        self.stableValue = stableValue
    }
}

/// The latest measurement of one analysis interval.
public struct IntervalResult: Sendable, Equatable {
    /// End of the measured window (`[time - interval, time]`).
    public var time: Timestamp
    /// Canary requests in the window; used for `minRequests` when a metric has no count of its own.
    public var requests: Int64?
    /// By metric name. A configured metric that is missing counts as no data.
    public var metrics: [String: MetricSample]
    /// The canary's and stable's increases over the window (requests, 5xx, latency histogram buckets), for the
    /// statistical judge (`spec.analysis.judge`). Both present: the judge decides with the metrics as guardrails;
    /// either missing: the metrics alone decide, as without a judge.
    public var canaryCounts: JudgeSample?
    public var stableCounts: JudgeSample?
    /// The provider's error when `requests` could not be measured (Prometheus down, a query error): with no metrics
    /// the request volume is the whole check, and that is a provider error, not a canary without traffic.
    public var requestsError: String?
    /// The provider's error when the judge's counts were asked for and could not be measured: the judge cannot
    /// judge, which is an error, not a reason to let the metrics alone advance the stage.
    public var countsError: String?

    public init(
        time: Timestamp, requests: Int64?, metrics: [String: MetricSample], canaryCounts: JudgeSample? = nil,
        stableCounts: JudgeSample? = nil, requestsError: String? = nil, countsError: String? = nil
    ) {
        self.time = time
        self.requests = requests
        self.metrics = metrics
        self.canaryCounts = canaryCounts
        self.stableCounts = stableCounts
        self.requestsError = requestsError
        self.countsError = countsError
    }
}

/// The answer to a `callWebhook` action.
public struct WebhookOutcome: Sendable, Equatable {
    public var passed: Bool
    /// The HTTP status and body excerpt, or the transport error.
    public var message: String
    public var time: Timestamp
    /// False when no HTTP answer came (connection refused, timeout, TLS): the hook said nothing yet.
    public var answered: Bool

    public init(passed: Bool, message: String, time: Timestamp, answered: Bool = true) {
        self.passed = passed
        self.message = message
        self.time = time
        self.answered = answered
    }
}

/// Everything measured outside the cluster: the latest interval's metrics and webhook answers by call id.
public struct Analysis: Sendable, Equatable {
    public var latest: IntervalResult?
    public var webhooks: [String: WebhookOutcome]
    /// When the controller making this decision began deciding (its caches complete and, with leader election, the
    /// lease held). Time before it, when no controller was looking (one killed, a node lost, a lease changing hands),
    /// is not held against `progressDeadline` until this controller has had `deadlineGrace` to look and measure.
    /// Nil: no restart to allow for.
    public var decidingSince: Timestamp?

    public init(latest: IntervalResult? = nil, webhooks: [String: WebhookOutcome] = [:], decidingSince: Timestamp? = nil) {
        self.latest = latest
        self.webhooks = webhooks
        self.decidingSince = decidingSince
    }

    public static let none = Analysis()
}

/// Judges one metric. Order: provider error, no data (by `noData`), too few requests (inconclusive), the
/// fixed thresholds, then the comparison with stable (inconclusive when stable's value is missing).
public func judge(
    metric: MetricPlan, sample: MetricSample?, intervalRequests: Int64?, minRequests: Int, noData: NoDataPolicy, time: Timestamp
) -> MetricResult {
    var thresholds: [String] = []
    if let min = metric.min { thresholds.append(">= \(fmt(min))") }
    if let max = metric.max { thresholds.append("<= \(fmt(max))") }
    if let d = metric.maxDecreaseFromStable { thresholds.append(">= stable - \(fmt(d))") }
    if let r = metric.maxRatioToStable { thresholds.append("<= \(fmt(r)) × stable") }
    let threshold = thresholds.joined(separator: ", ")
    let requests = sample?.requests ?? intervalRequests
    func result(_ verdict: Verdict, _ value: Double?, _ message: String?) -> MetricResult {
        MetricResult(
            name: metric.name, value: value, stableValue: sample?.stableValue, threshold: threshold, verdict: verdict, message: message,
            requests: requests, time: time)
    }
    // A custom query that found nothing though the canary served: most often a count of events that did not happen
    // (5xx of a healthy canary), which PromQL answers with no series rather than 0. Only the query can say so.
    var noDataMessage = "no data"
    if case .custom = metric.kind, let requests, requests >= Int64(minRequests) {
        noDataMessage += " though the canary served \(requests) requests (a query counting events that did not happen returns nothing: end it with `or vector(0)`)"
    }
    guard let sample else {
        return result(noData == .fail ? .failed : .inconclusive, nil, noDataMessage)
    }
    let value: Double
    switch sample.outcome {
    case .providerError(let message): return result(.error, nil, "metric provider error: \(message)")
    case .noData: return result(noData == .fail ? .failed : .inconclusive, nil, noDataMessage)
    case .value(let v):
        guard v.isFinite else { return result(noData == .fail ? .failed : .inconclusive, nil, "no data (value is \(v))") }
        value = v
    }
    guard let requests else { return result(.inconclusive, value, "request count unknown; minRequests \(minRequests) not shown") }
    guard requests >= Int64(minRequests) else {
        return result(.inconclusive, value, "\(requests) requests < minRequests \(minRequests)")
    }
    if let min = metric.min, value < min { return result(.failed, value, "\(fmt2(value)) < min \(fmt(min))") }
    if let max = metric.max, value > max { return result(.failed, value, "\(fmt2(value)) > max \(fmt(max))") }
    if metric.maxDecreaseFromStable != nil || metric.maxRatioToStable != nil {
        guard let stable = sample.stableValue, stable.isFinite else {
            return result(.inconclusive, value, "stable's value is not available for the comparison")
        }
        if let d = metric.maxDecreaseFromStable, value < stable - d {
            return result(.failed, value, "\(fmt2(value)) is more than \(fmt(d)) below stable's \(fmt2(stable))")
        }
        if let r = metric.maxRatioToStable, value > stable * r {
            return result(.failed, value, "\(fmt2(value)) is above \(fmt(r)) × stable's \(fmt2(stable))")
        }
    }
    return result(.passed, value, nil)
}

/// Judges an interval: Failed if any metric failed, else Error if the provider erred, else Inconclusive if any
/// metric (or the request volume) was inconclusive, else Passed. With no metrics, the request volume alone
/// decides (a canary that gets no traffic never passes).
public func judgeInterval(_ plan: AnalysisPlan, _ result: IntervalResult) -> (verdict: Verdict, metrics: [MetricResult], summary: String) {
    var metrics = plan.metrics.map {
        judge(
            metric: $0, sample: result.metrics[$0.name], intervalRequests: result.requests, minRequests: plan.minRequests,
            noData: plan.noData, time: result.time)
    }
    if plan.metrics.isEmpty {
        let verdict: Verdict
        let message: String?
        switch (result.requests, result.requestsError) {
        case _ where (result.requests ?? 0) >= Int64(plan.minRequests): (verdict, message) = (.passed, nil)
        case (let requests?, _): (verdict, message) = (.inconclusive, "\(requests) requests < minRequests \(plan.minRequests)")
        case (nil, let error?): (verdict, message) = (.error, "metric provider error: \(error)")
        case (nil, nil): (verdict, message) = (.inconclusive, "request count unknown")
        }
        metrics.append(
            MetricResult(
                name: "requests", value: result.requests.map(Double.init), stableValue: nil, threshold: ">= \(plan.minRequests)",
                verdict: verdict, message: message, requests: result.requests, time: result.time))
    }
    let verdict: Verdict
    if metrics.contains(where: { $0.verdict == .failed }) {
        verdict = .failed
    } else if metrics.contains(where: { $0.verdict == .error }) {
        verdict = .error
    } else if metrics.contains(where: { $0.verdict == .inconclusive }) {
        verdict = .inconclusive
    } else {
        verdict = .passed
    }
    let summary = metrics.map { m in
        let value = m.value.map(fmt2) ?? "-"
        return "\(m.name)=\(value) (\(m.threshold)): \(m.verdict.rawValue)\(m.message.map { ", \($0)" } ?? "")"
    }.joined(separator: "; ")
    return (verdict, metrics, summary)
}

/// Two decimals at most: `99.25`, `480`.
func fmt2(_ d: Double) -> String {
    let r = (d * 100).rounded() / 100
    return fmt(r)
}
