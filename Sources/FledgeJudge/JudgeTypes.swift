// The judge's inputs, configuration, carried state and verdicts. All plain values:
// Codable (the state lives in the Rollout's status), Sendable, Equatable.

/// What went wrong with the judge's input or configuration. The message names the field.
public struct JudgeError: Error, Equatable, Sendable, CustomStringConvertible {
    public var field: String
    public var problem: String
    public init(field: String, problem: String) {
        self.field = field
        self.problem = problem
    }
    public var description: String { "\(field): \(problem)" }
}

/// How strict the judge is. Every field can be overridden per Rollout; a missing field in
/// the encoded form takes its default.
public struct JudgeConfiguration: Codable, Sendable, Equatable {
    /// The chance of rolling back a canary that is no worse than stable (errors and
    /// latency together). Default 1 %.
    public var falseRollbackRate: Double
    /// The chance of promoting a canary that is worse than the margins below (errors and
    /// latency together). Default 5 %.
    public var falsePromotionRate: Double
    /// The smallest error-rate degradation worth detecting, relative to stable: a canary
    /// is acceptable while its error rate is at most stable's × this (default 1.5) …
    public var errorRateRatioMargin: Double
    /// … or at most stable's + this absolute amount, whichever allows more (default
    /// 0.001 = 0.1 percentage point, so very low error rates are not held to a ratio no
    /// amount of traffic can prove).
    public var errorRateAbsoluteMargin: Double
    /// The latency comparison looks at the share of requests slower than one histogram
    /// boundary (chosen once, as the lowest bucket boundary that at most
    /// `latencyTailShare` of all requests exceed, default 1 %: the boundary nearest p99
    /// from above, where a slow tail shows). A canary is acceptable while its share is at
    /// most stable's × this (default 1.5) …
    public var latencyTailRatioMargin: Double
    /// … or stable's + this absolute amount (default 0.005), whichever allows more.
    public var latencyTailAbsoluteMargin: Double
    /// See `latencyTailRatioMargin`. Default 0.01.
    public var latencyTailShare: Double
    /// How many requests (both sides together) the histogram must have seen before the
    /// boundary is chosen. Default 200.
    public var latencyBoundarySamples: Double

    public init(
        falseRollbackRate: Double = 0.01,
        falsePromotionRate: Double = 0.05,
        errorRateRatioMargin: Double = 1.5,
        errorRateAbsoluteMargin: Double = 0.001,
        latencyTailRatioMargin: Double = 1.5,
        latencyTailAbsoluteMargin: Double = 0.005,
        latencyTailShare: Double = 0.01,
        latencyBoundarySamples: Double = 200
    ) {
        self.falseRollbackRate = falseRollbackRate
        self.falsePromotionRate = falsePromotionRate
        self.errorRateRatioMargin = errorRateRatioMargin
        self.errorRateAbsoluteMargin = errorRateAbsoluteMargin
        self.latencyTailRatioMargin = latencyTailRatioMargin
        self.latencyTailAbsoluteMargin = latencyTailAbsoluteMargin
        self.latencyTailShare = latencyTailShare
        self.latencyBoundarySamples = latencyBoundarySamples
    }

    public static let `default` = JudgeConfiguration()

    enum CodingKeys: String, CodingKey {
        case falseRollbackRate, falsePromotionRate, errorRateRatioMargin, errorRateAbsoluteMargin
        case latencyTailRatioMargin, latencyTailAbsoluteMargin, latencyTailShare, latencyBoundarySamples
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = JudgeConfiguration.default
        falseRollbackRate = try c.decodeIfPresent(Double.self, forKey: .falseRollbackRate) ?? d.falseRollbackRate
        falsePromotionRate = try c.decodeIfPresent(Double.self, forKey: .falsePromotionRate) ?? d.falsePromotionRate
        errorRateRatioMargin = try c.decodeIfPresent(Double.self, forKey: .errorRateRatioMargin) ?? d.errorRateRatioMargin
        errorRateAbsoluteMargin =
            try c.decodeIfPresent(Double.self, forKey: .errorRateAbsoluteMargin) ?? d.errorRateAbsoluteMargin
        latencyTailRatioMargin =
            try c.decodeIfPresent(Double.self, forKey: .latencyTailRatioMargin) ?? d.latencyTailRatioMargin
        latencyTailAbsoluteMargin =
            try c.decodeIfPresent(Double.self, forKey: .latencyTailAbsoluteMargin) ?? d.latencyTailAbsoluteMargin
        latencyTailShare = try c.decodeIfPresent(Double.self, forKey: .latencyTailShare) ?? d.latencyTailShare
        latencyBoundarySamples =
            try c.decodeIfPresent(Double.self, forKey: .latencyBoundarySamples) ?? d.latencyBoundarySamples
    }

    /// Checks every field; the error names the first bad one. Each field has a range beyond which it means
    /// nothing useful and the judge's numbers stop being finite (a ratio margin of 1e308 made every state value
    /// infinite, which no status can encode):
    /// - the error rates and `latencyTailShare` in (0, 0.5]: a test wrong half the time or more decides nothing;
    /// - the ratio margins in (1, 100]: a canary 100× worse than stable is no canary to accept;
    /// - the absolute margins in [0, 1): a rate can differ by less than 1;
    /// - `latencyBoundarySamples` from 1 to 1,000,000,000 requests.
    public func validate() throws(JudgeError) {
        for (value, name) in [
            (falseRollbackRate, "falseRollbackRate"), (falsePromotionRate, "falsePromotionRate"), (latencyTailShare, "latencyTailShare"),
        ] {
            guard value.isFinite, value > 0, value <= Self.maximumRate else {
                throw JudgeError(field: name, problem: "must be a probability above 0 and at most \(JudgeFormat.number(Self.maximumRate)), got \(value)")
            }
        }
        for (value, name) in [(errorRateRatioMargin, "errorRateRatioMargin"), (latencyTailRatioMargin, "latencyTailRatioMargin")] {
            guard value.isFinite, value > 1, value <= Self.maximumRatioMargin else {
                throw JudgeError(
                    field: name, problem: "must be a ratio above 1 and at most \(JudgeFormat.number(Self.maximumRatioMargin)), got \(value)")
            }
        }
        for (value, name) in [
            (errorRateAbsoluteMargin, "errorRateAbsoluteMargin"), (latencyTailAbsoluteMargin, "latencyTailAbsoluteMargin"),
        ] {
            guard value.isFinite, value >= 0, value < 1 else {
                throw JudgeError(field: name, problem: "must be a rate in [0, 1), got \(value)")
            }
        }
        guard latencyBoundarySamples.isFinite, latencyBoundarySamples >= 1, latencyBoundarySamples <= Self.maximumBoundarySamples else {
            throw JudgeError(
                field: "latencyBoundarySamples",
                problem: "must be from 1 to \(Int(Self.maximumBoundarySamples)) requests, got \(latencyBoundarySamples)")
        }
    }

    /// The largest `falseRollbackRate`, `falsePromotionRate` and `latencyTailShare`.
    public static let maximumRate = 0.5
    /// The largest `errorRateRatioMargin` and `latencyTailRatioMargin`.
    public static let maximumRatioMargin = 100.0
    /// The largest `latencyBoundarySamples`.
    public static let maximumBoundarySamples = 1_000_000_000.0
}

/// A latency histogram's increase over one interval, as Prometheus reports
/// `increase(istio_request_duration_milliseconds_bucket[…])`: cumulative counts per `le`
/// boundary (milliseconds, ascending, finite) and the `+Inf` bucket as `total`.
public struct JudgeHistogram: Codable, Sendable, Equatable {
    public var bounds: [Double]
    public var cumulativeCounts: [Double]
    public var total: Double

    public init(bounds: [Double], cumulativeCounts: [Double], total: Double) {
        self.bounds = bounds
        self.cumulativeCounts = cumulativeCounts
        self.total = total
    }

    /// Builds a histogram from per-bucket (non-cumulative) counts; `counts` has one more
    /// entry than `bounds`, the last being the requests slower than the last bound.
    public init(bounds: [Double], bucketCounts counts: [Double]) throws(JudgeError) {
        guard counts.count == bounds.count + 1 else {
            throw JudgeError(
                field: "bucketCounts",
                problem: "needs one more entry than bounds (\(bounds.count + 1)), got \(counts.count)")
        }
        var running = 0.0
        var cumulative: [Double] = []
        cumulative.reserveCapacity(bounds.count)
        for i in 0..<bounds.count {
            running += counts[i]
            cumulative.append(running)
        }
        self.init(bounds: bounds, cumulativeCounts: cumulative, total: running + counts[bounds.count])
    }

    /// Requests slower than `bound` (which must be one of `bounds`).
    public func slower(than bound: Double) -> Double {
        guard let index = bounds.firstIndex(of: bound) else { return 0 }
        return max(0, total - cumulativeCounts[index])
    }

    /// The φ-quantile estimated the way Prometheus's `histogram_quantile` does: linear
    /// interpolation inside the bucket, the lower edge of the first bucket taken as 0, and
    /// the last finite bound returned when the quantile falls into the `+Inf` bucket.
    /// nil when the histogram is empty.
    public func quantile(_ phi: Double) -> Double? {
        guard total > 0, !bounds.isEmpty else { return nil }
        let rank = phi * total
        var previousBound = 0.0, previousCount = 0.0
        for (bound, count) in zip(bounds, cumulativeCounts) {
            if count >= rank {
                if count == previousCount { return bound }
                return previousBound + (bound - previousBound) * (rank - previousCount) / (count - previousCount)
            }
            previousBound = bound
            previousCount = count
        }
        return bounds.last
    }

    /// Checks the shape and repairs what Prometheus's extrapolating `increase` can produce:
    /// counts are rounded to whole requests and made non-decreasing (as `histogram_quantile`
    /// does). Throws on what cannot be repaired.
    func normalised(field: String) throws(JudgeError) -> JudgeHistogram {
        guard bounds.count == cumulativeCounts.count else {
            throw JudgeError(
                field: field,
                problem: "has \(bounds.count) bounds but \(cumulativeCounts.count) cumulative counts")
        }
        guard !bounds.isEmpty else { throw JudgeError(field: field, problem: "has no finite bucket bounds") }
        for (i, bound) in bounds.enumerated() {
            guard bound.isFinite, bound > 0 else {
                throw JudgeError(field: "\(field).bounds[\(i)]", problem: "must be a positive finite number of milliseconds, got \(bound)")
            }
            if i > 0, bound <= bounds[i - 1] {
                throw JudgeError(field: "\(field).bounds[\(i)]", problem: "must be greater than the previous bound \(bounds[i - 1]), got \(bound)")
            }
        }
        var repaired: [Double] = []
        repaired.reserveCapacity(cumulativeCounts.count)
        var running = 0.0
        for (i, count) in cumulativeCounts.enumerated() {
            guard count.isFinite, count >= 0 else {
                throw JudgeError(field: "\(field).cumulativeCounts[\(i)]", problem: "must be a non-negative number, got \(count)")
            }
            running = max(running, count.rounded())
            repaired.append(running)
        }
        guard total.isFinite, total >= 0 else {
            throw JudgeError(field: "\(field).total", problem: "must be a non-negative number, got \(total)")
        }
        return JudgeHistogram(bounds: bounds, cumulativeCounts: repaired, total: max(running, total.rounded()))
    }
}

/// One side's (canary or stable) increases over one analysis interval.
public struct JudgeSample: Codable, Sendable, Equatable {
    /// Requests served (`increase(istio_requests_total[interval])`).
    public var requests: Double
    /// Requests answered with a 5xx.
    public var errors: Double
    /// The latency histogram's increase, nil when the mesh reports none.
    public var latency: JudgeHistogram?

    public init(requests: Double, errors: Double, latency: JudgeHistogram? = nil) {
        self.requests = requests
        self.errors = errors
        self.latency = latency
    }
}

/// Two event counts compared side by side: requests and the events among them.
public struct JudgeCounts: Codable, Sendable, Equatable {
    public var requests: Double
    public var events: Double
    public init(requests: Double, events: Double) {
        self.requests = requests
        self.events = events
    }
    /// events / requests, nil without requests.
    public var rate: Double? { requests > 0 ? events / requests : nil }
}

/// The evidence carried between intervals for one comparison (errors, or slow requests).
public struct JudgeComparisonState: Codable, Sendable, Equatable {
    /// Totals since the comparison started.
    public var canary: JudgeCounts
    public var stable: JudgeCounts
    /// The rate ratios the harm e-process mixes over, and the accumulated log-likelihood
    /// ratio of each against equal rates.
    public var harmRatios: [Double]
    public var harmLogLikelihoodRatios: [Double]
    /// One acceptance test per tested exposure w_k (`CanaryJudge.acceptExposures`): the relative
    /// margin there, ρ_k = 1 + (ratio margin − 1) / w_k, the floor of the ratio tested …
    public var acceptRatios: [Double]
    /// … the ratio actually tested in the latest interval: the larger of the floor and what the
    /// absolute margin allows relative to stable's rate, 1 + absolute margin / (w_k × stable's upper
    /// bound from the intervals before) — chosen before the interval is seen …
    public var acceptTestedRatios: [Double]
    /// … and the accumulated log-likelihood ratio of equal rates against the tested ratios.
    public var acceptLogLikelihoodRatios: [Double]
    /// The absolute margin's acceptance test, one per tested exposure w_k: the rate θ_k tested in the latest
    /// interval (stable's anytime-valid lower bound + absolute margin / w_k) …
    public var boundTestedRates: [Double]
    /// … and the log e-value of "the canary's rate is at least θ" now: `boundLogNumerator` minus the
    /// log-likelihood of `boundCanary` at the most likely rate of at least θ (see `CanaryJudge.accumulate`).
    public var boundLogEValues: [Double]
    /// The log-likelihood of the canary's outcomes under stable's rate as it was known at each interval (the
    /// e-process's numerator, shared by every tested exposure) …
    public var boundLogNumerator: Double
    /// … and the canary's counts it covers. Both start at 0 for a state of version 2 or 3, whose absolute test
    /// kept only a running product: the test starts again from the interval the upgraded judge first sees (an
    /// e-process may start at any interval).
    public var boundCanary: JudgeCounts

    public init(harmRatios: [Double], acceptRatios: [Double]) {
        canary = JudgeCounts(requests: 0, events: 0)
        stable = JudgeCounts(requests: 0, events: 0)
        self.harmRatios = harmRatios
        harmLogLikelihoodRatios = Array(repeating: 0, count: harmRatios.count)
        self.acceptRatios = acceptRatios
        acceptTestedRatios = acceptRatios
        acceptLogLikelihoodRatios = Array(repeating: 0, count: acceptRatios.count)
        boundTestedRates = Array(repeating: 0, count: acceptRatios.count)
        boundLogEValues = Array(repeating: 0, count: acceptRatios.count)
        boundLogNumerator = 0
        boundCanary = JudgeCounts(requests: 0, events: 0)
    }

    enum CodingKeys: String, CodingKey {
        case canary, stable, harmRatios, harmLogLikelihoodRatios, acceptRatios, acceptTestedRatios, acceptLogLikelihoodRatios
        case boundTestedRates, boundLogEValues, boundLogNumerator, boundCanary
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        canary = try c.decode(JudgeCounts.self, forKey: .canary)
        stable = try c.decode(JudgeCounts.self, forKey: .stable)
        harmRatios = try c.decode([Double].self, forKey: .harmRatios)
        harmLogLikelihoodRatios = try c.decode([Double].self, forKey: .harmLogLikelihoodRatios)
        acceptRatios = try c.decode([Double].self, forKey: .acceptRatios)
        acceptTestedRatios = try c.decode([Double].self, forKey: .acceptTestedRatios)
        acceptLogLikelihoodRatios = try c.decode([Double].self, forKey: .acceptLogLikelihoodRatios)
        // A state written by version 2 has no absolute-margin test yet: it starts now (an e-process may start at
        // any interval), so a controller upgraded mid-rollout keeps going.
        let zeros = Array(repeating: 0.0, count: acceptRatios.count)
        boundTestedRates = try c.decodeIfPresent([Double].self, forKey: .boundTestedRates) ?? zeros
        // Versions 2 and 3 have no numerator: the test restarts (its running product cannot be split into the
        // numerator and the canary counts), and the e-values shown start from 1.
        boundLogNumerator = try c.decodeIfPresent(Double.self, forKey: .boundLogNumerator) ?? 0
        boundCanary = try c.decodeIfPresent(JudgeCounts.self, forKey: .boundCanary) ?? JudgeCounts(requests: 0, events: 0)
        let stored = try c.decodeIfPresent([Double].self, forKey: .boundLogEValues) ?? zeros
        boundLogEValues = c.contains(.boundLogNumerator) ? stored : zeros
    }
}

/// The latency part of the state: the boundary once chosen, the pooled histogram before.
public struct JudgeLatencyState: Codable, Sendable, Equatable {
    /// The boundary (ms) whose exceedances are compared; nil until enough requests were seen.
    public var boundary: Double?
    /// Until the boundary is chosen: both sides' histograms added up.
    public var pooled: JudgeHistogram?
    public var comparison: JudgeComparisonState
}

/// Everything the judge carries from one interval to the next. Small and Codable: store it
/// in the Rollout's status so a restarted controller resumes exactly where it stopped.
public struct JudgeState: Codable, Sendable, Equatable {
    /// Bumped when the meaning of the fields changes.
    public var version: Int
    /// Intervals judged so far.
    public var intervals: Int
    public var errors: JudgeComparisonState
    public var latency: JudgeLatencyState
}

/// What the controller should do after this interval.
public enum JudgeDecision: String, Codable, Sendable, Equatable {
    /// Harm is conclusive: send no more traffic to the canary.
    case rollback
    /// There is enough evidence that the canary is not worse than the margins at the next
    /// weight: move to it (or promote when the next weight is 100).
    case advance
    /// Inconclusive: keep the current weight and look again next interval.
    case hold
}

/// The numbers behind one comparison's part of a verdict.
public struct JudgeEvidence: Codable, Sendable, Equatable {
    /// What is compared: "5xx rate", or "share slower than 250 ms".
    public var metric: String
    /// Totals since the start of the analysis.
    public var canary: JudgeCounts
    public var stable: JudgeCounts
    /// Canary rate / stable rate, nil when a side has no requests or stable had no events.
    public var ratio: Double?
    /// Anytime-valid upper bound on the canary's rate and lower bound on stable's.
    public var canaryUpperBound: Double
    public var stableLowerBound: Double
    /// The highest canary rate the absolute margin allows at the next weight: stable's lower
    /// bound + the absolute margin ÷ the next weight.
    public var allowedRate: Double
    /// The e-value of "the canary's rate is below the allowed rate" and the value that shows it (nil in
    /// evidence recorded before this test existed).
    public var boundEValue: Double?
    public var boundThreshold: Double?
    /// The rate ratio the relative margin allows at the next weight (1 + (ratio margin − 1) ÷
    /// the next weight, rounded down to the tested grid), its e-value and threshold.
    public var allowedRatio: Double
    public var acceptEValue: Double
    public var acceptThreshold: Double
    /// The harm e-value (capped at 1e300) and the value that makes harm conclusive.
    public var harmEValue: Double
    public var harmThreshold: Double
    /// Harm is conclusive (e-value ≥ threshold).
    public var harmful: Bool
    /// The canary is shown not worse than a margin: the bound e-value or the ratio e-value reached
    /// its threshold.
    public var acceptable: Bool
    /// One line for people.
    public var summary: String
}

/// The judge's answer for one interval, with its numbers.
public struct JudgeVerdict: Codable, Sendable, Equatable {
    public var decision: JudgeDecision
    public var errors: JudgeEvidence
    /// nil when there is no histogram, or before the boundary could be chosen.
    public var latency: JudgeEvidence?
    /// One line for status, Events and `fledge analyze`.
    public var explanation: String
}
