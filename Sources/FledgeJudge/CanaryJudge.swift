// The statistical judge: one call per analysis interval, counts in, verdict and new state out.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Decides, after every analysis interval, whether a canary is harmful (roll back), shown
/// acceptable at the next weight (advance) or not yet known (hold).
///
/// Two comparisons, each with the same sequential discipline:
/// - **errors**: 5xx / requests;
/// - **latency**: the share of requests slower than one histogram boundary near p99.
///
/// *Roll back* when a harm e-process (a mixture over rate ratios ρ ≥ the ratio margin of the
/// conditional likelihood ratio, see `JudgeStatistics`) reaches 2/`falseRollbackRate`: a
/// canary no worse than stable is rolled back with probability at most `falseRollbackRate`
/// however often the judge looks. Overwhelming evidence crosses the threshold in the first
/// interval.
///
/// *Advance* when, for both comparisons, the canary is shown not worse than the margin at the
/// next weight, in either of two ways:
/// - relative: an e-process for "canary rate ≥ ρ × stable's" (the conditional likelihood
///   ratio of equal rates against ρ) reaches 4/`falsePromotionRate`;
/// - absolute: an e-process for "canary rate ≥ stable's lower bound + the absolute margin"
///   (a likelihood ratio against stable's rate) reaches 16/(3 × `falsePromotionRate`); this is
///   what proves anything when events are too rare for a ratio, or absent.
/// The margin is a budget of excess bad requests at full traffic, so it is divided by the next
/// weight: the step to 25 % tolerates 4× the excess that promotion does (ρ = 1 + (margin −
/// 1) ÷ 0.25). A canary worse than both margins is promoted with probability at most
/// `falsePromotionRate`. Without enough requests nothing is shown and the judge holds: thin
/// evidence never advances.
public struct CanaryJudge: Sendable {
    public let configuration: JudgeConfiguration

    public init(configuration: JudgeConfiguration = .default) throws(JudgeError) {
        try configuration.validate()
        self.configuration = configuration
    }

    /// The state before the first interval.
    public func initialState() -> JudgeState {
        JudgeState(
            version: Self.stateVersion, intervals: 0,
            errors: JudgeComparisonState(
                harmRatios: JudgeStatistics.ratioGrid(lowest: configuration.errorRateRatioMargin),
                acceptRatios: Self.acceptGrid(configuration.errorRateRatioMargin)),
            latency: JudgeLatencyState(
                boundary: nil, pooled: nil,
                comparison: JudgeComparisonState(
                    harmRatios: JudgeStatistics.ratioGrid(lowest: configuration.latencyTailRatioMargin),
                    acceptRatios: Self.acceptGrid(configuration.latencyTailRatioMargin))))
    }

    /// Judges one interval.
    /// - Parameters:
    ///   - canary, stable: each side's increases over the interval just ended.
    ///   - nextWeight: the canary weight (percent, in (0, 100]) that `advance` would move to;
    ///     100 means promotion.
    ///   - state: what the previous call returned (or `initialState()`).
    public func judge(
        canary: JudgeSample, stable: JudgeSample, nextWeight: Double, state: JudgeState
    ) throws(JudgeError) -> (verdict: JudgeVerdict, state: JudgeState) {
        guard nextWeight.isFinite, nextWeight > 0, nextWeight <= 100 else {
            throw JudgeError(field: "nextWeight", problem: "must be a percentage in (0, 100], got \(nextWeight)")
        }
        guard (Self.stateVersion - 2)...Self.stateVersion ~= state.version else {
            throw JudgeError(
                field: "state.version",
                problem: "is \(state.version); this judge reads versions \(Self.stateVersion - 2) to \(Self.stateVersion)")
        }
        try Self.checkCounts(canary, side: "canary")
        try Self.checkCounts(stable, side: "stable")
        let exposure = nextWeight / 100
        var next = state
        next.version = Self.stateVersion
        next.intervals += 1

        // Errors.
        next.errors = Self.accumulate(
            next.errors,
            canary: JudgeCounts(requests: canary.requests.rounded(), events: canary.errors.rounded()),
            stable: JudgeCounts(requests: stable.requests.rounded(), events: stable.errors.rounded()),
            absoluteMargin: configuration.errorRateAbsoluteMargin, stableAlpha: alphaBound)
        let errorEvidence = evidence(
            of: next.errors, metric: "5xx rate", ratioMargin: configuration.errorRateRatioMargin,
            absoluteMargin: configuration.errorRateAbsoluteMargin, exposure: exposure)

        // Latency.
        var latencyEvidence: JudgeEvidence?
        if let canaryHistogram = canary.latency, let stableHistogram = stable.latency {
            let c = try canaryHistogram.normalised(field: "canary.latency")
            let s = try stableHistogram.normalised(field: "stable.latency")
            guard c.bounds == s.bounds else {
                throw JudgeError(field: "canary.latency.bounds", problem: "differ from stable.latency.bounds (\(c.bounds) vs \(s.bounds))")
            }
            next.latency = try Self.accumulateLatency(next.latency, canary: c, stable: s, configuration: configuration)
        }
        if let boundary = next.latency.boundary {
            latencyEvidence = evidence(
                of: next.latency.comparison, metric: "share slower than \(JudgeFormat.number(boundary)) ms",
                ratioMargin: configuration.latencyTailRatioMargin,
                absoluteMargin: configuration.latencyTailAbsoluteMargin, exposure: exposure)
        }
        let latencyExpected = next.latency.boundary != nil || next.latency.pooled != nil
        // Said, so that an advance on errors alone does not read as latency shown within its margin too (a
        // Prometheus that drops the bucket series, a mesh without the histogram).
        let latencyUnseen = latencyExpected ? [] : ["latency not compared: no latency histogram of both workloads so far"]

        // Decide.
        let decision: JudgeDecision
        let explanation: String
        let harmful = [errorEvidence, latencyEvidence].compactMap { $0 }.filter(\.harmful)
        let target = nextWeight >= 100 ? "promote" : "advance to \(JudgeFormat.number(nextWeight))%"
        if !harmful.isEmpty {
            decision = .rollback
            explanation = "Roll back: " + harmful.map(\.summary).joined(separator: "; ")
        } else if errorEvidence.acceptable && (latencyEvidence?.acceptable ?? !latencyExpected) {
            decision = .advance
            explanation = "Canary not worse than the margins, \(target): "
                + ([errorEvidence, latencyEvidence].compactMap { $0?.summary } + latencyUnseen).joined(separator: "; ")
        } else {
            decision = .hold
            var parts = [errorEvidence, latencyEvidence].compactMap { $0 }.filter { !$0.acceptable }.map(\.summary)
            if latencyExpected && latencyEvidence == nil {
                let seen = next.latency.pooled?.total ?? 0
                parts.append(
                    "latency: \(JudgeFormat.number(seen)) of \(JudgeFormat.number(configuration.latencyBoundarySamples)) requests needed to choose a boundary")
            }
            explanation = "Inconclusive, holding (not enough evidence to \(target)): " + (parts + latencyUnseen).joined(separator: "; ")
        }
        return (JudgeVerdict(decision: decision, errors: errorEvidence, latency: latencyEvidence, explanation: explanation), next)
    }

    // MARK: - Pieces

    /// The exposures (fractions of traffic) whose relative margins are tested: for a next
    /// weight w the judge uses the largest tested margin not above 1 + (margin − 1) / w.
    static let acceptExposures: [Double] = [1, 0.75, 0.5, 1.0 / 3, 0.25, 0.2, 0.1, 0.05]

    /// Version 2: the acceptance tests' ratios follow the absolute margin (`acceptTestedRatios`).
    /// Version 3: the absolute margin is shown by an e-process (`boundLogEValues`); a version-2 state is read
    /// and that test starts from it.
    /// Version 4: that e-process keeps its numerator (`boundLogNumerator`) and the canary counts it covers
    /// (`boundCanary`), so the whole record is weighed against the latest rate tested; a version-2 or 3 state is
    /// read and the test starts from it.
    static let stateVersion = 4

    /// A canary advances only when errors *and* latency are shown within their margins, so a canary worse than a
    /// margin in either is advanced only if that comparison's test wrongly shows it: each comparison may use the
    /// whole false-promotion rate α (an intersection–union test). Within a comparison α is split as α/2 for the
    /// ratio e-process, 3α/8 for the absolute-margin e-process and α/8 for stable's confidence sequence (whose
    /// upper end sets the ratio tested and whose lower end sets the rate tested; both ends come from the same
    /// sequence). The two e-processes are combined by their weighted sum α/2 · E_ratio + 3α/8 · E_absolute ≥ 1
    /// (an e-process too, since both are under "worse than the margins"), which shows at least what either alone
    /// would at its share of α.
    var alphaBound: Double { Self.alphaBound(configuration) }
    static func alphaBound(_ configuration: JudgeConfiguration) -> Double { configuration.falsePromotionRate / 8 }
    var alphaAbsolute: Double { configuration.falsePromotionRate * 3 / 8 }
    var alphaRelative: Double { configuration.falsePromotionRate / 2 }

    /// The largest ratio any acceptance test uses (also the cap on the ratio the absolute margin allows).
    static let maximumTestedRatio = 1e6

    /// Capped at `maximumTestedRatio`, so that the state stays finite (and encodable) whatever margin it is given.
    static func acceptGrid(_ ratioMargin: Double) -> [Double] {
        acceptExposures.map { min(maximumTestedRatio, 1 + (ratioMargin - 1) / $0) }
    }

    static func checkCounts(_ sample: JudgeSample, side: String) throws(JudgeError) {
        guard sample.requests.isFinite, sample.requests >= 0 else {
            throw JudgeError(field: "\(side).requests", problem: "must be a non-negative number, got \(sample.requests)")
        }
        guard sample.errors.isFinite, sample.errors >= 0 else {
            throw JudgeError(field: "\(side).errors", problem: "must be a non-negative number, got \(sample.errors)")
        }
        // increase() extrapolates, so a few hundredths of a request either way are normal.
        guard sample.errors.rounded() <= sample.requests.rounded() else {
            throw JudgeError(
                field: "\(side).errors",
                problem: "\(sample.errors) errors is more than the \(sample.requests) requests of the same interval")
        }
    }

    static func accumulate(
        _ state: JudgeComparisonState, canary: JudgeCounts, stable: JudgeCounts, absoluteMargin: Double, stableAlpha: Double
    ) -> JudgeComparisonState {
        var next = state
        next.canary.requests += canary.requests
        next.canary.events += canary.events
        next.stable.requests += stable.requests
        next.stable.events += stable.events
        for (i, ratio) in state.harmRatios.enumerated() {
            next.harmLogLikelihoodRatios[i] += JudgeStatistics.conditionalLogLikelihoodRatio(
                ratio: ratio, canaryTrials: canary.requests, canaryEvents: canary.events,
                stableTrials: stable.requests, stableEvents: stable.events)
        }
        // Equal rates against ρ: the reverse of the ratio-ρ likelihood ratio. ρ is chosen from the
        // intervals before this one (predictable), never above what the margins allow while stable's
        // rate is below its anytime-valid upper bound: a canary worse than the margins keeps each
        // factor's expectation ≤ 1, so the product stays an e-process for "worse than the margins".
        // With rare events the absolute margin allows a large ratio, which is far quicker to show.
        var stableUpper = 1.0
        if absoluteMargin > 0, state.stable.requests > 0 {
            stableUpper = JudgeStatistics.upperConfidenceBound(
                events: state.stable.events, trials: state.stable.requests, alpha: stableAlpha)
        }
        // The absolute margin: for each tested exposure w_k an e-process for "the canary's rate is at least θ_k",
        // θ_k = stable's anytime-valid lower bound now + absolute margin / w_k. Numerator: the canary's likelihood
        // under a plug-in rate q_t, stable's rate up to and including interval t (independent of the canary's
        // outcomes), multiplied over the intervals — one number for all exposures. Denominator: the canary's
        // likelihood over the same requests at the most likely rate of at least θ_k, max(θ_k, X/N). For a canary
        // whose rate p is at least θ_k the denominator is at least the likelihood at p, so the ratio is at most
        // the likelihood ratio of q_t against the true p — a test martingale — and by Ville's inequality it
        // reaches 1/α with probability ≤ α however often it is looked at, while stable's bound holds. θ_k may
        // therefore be the latest one, applied to every canary request since the test started: requests served
        // at earlier stages, when stable's bound was still wide, count in full once it has tightened. q is
        // where a good canary's rate is, so each canary request adds the Kullback–Leibler divergence of stable's
        // rate from θ_k; with no errors on either side that is about θ_k per request (e.g. 0.4 % at the step to
        // 25 %, ~990 requests to show).
        let stableNow = JudgeCounts(requests: next.stable.requests, events: next.stable.events)
        let stableLower = stableNow.requests > 0
            ? JudgeStatistics.lowerConfidenceBound(events: stableNow.events, trials: stableNow.requests, alpha: stableAlpha) : 0
        if canary.requests > 0 {
            // Never above the lowest rate tested (the promotion's θ): a q above θ only costs evidence, and a product
            // cannot win back a factor near zero — stable's first request alone gave q = ¼, and 3,000 clean canary
            // requests served meanwhile held a good canary until its progress deadline. Any q chosen before the
            // canary's outcomes are seen keeps the test valid.
            let lowestTested = min(1, stableLower + absoluteMargin)  // θ at full exposure, the promotion's
            let q = min((stableNow.events + 0.5) / (stableNow.requests + 1), max(lowestTested, Double.leastNormalMagnitude))
            next.boundLogNumerator += JudgeStatistics.xlogy(canary.events, q) + (canary.requests - canary.events) * log(1 - q)
            next.boundCanary.requests += canary.requests
            next.boundCanary.events += canary.events
        }
        for (i, exposure) in acceptExposures.enumerated() {
            let theta = min(1, stableLower + absoluteMargin / exposure)
            next.boundTestedRates[i] = theta
            next.boundLogEValues[i] = JudgeStatistics.logLikelihoodRatioAgainstRateAtLeast(
                logNumerator: next.boundLogNumerator, events: next.boundCanary.events, trials: next.boundCanary.requests, rate: theta)
        }
        for (i, floor) in state.acceptRatios.enumerated() {
            var ratio = floor
            if absoluteMargin > 0, stableUpper > 0, stableUpper < 1 {
                ratio = min(maximumTestedRatio, max(floor, 1 + absoluteMargin / (acceptExposures[i] * stableUpper)))
            }
            next.acceptTestedRatios[i] = ratio
            next.acceptLogLikelihoodRatios[i] -= JudgeStatistics.conditionalLogLikelihoodRatio(
                ratio: ratio, canaryTrials: canary.requests, canaryEvents: canary.events,
                stableTrials: stable.requests, stableEvents: stable.events)
        }
        return next
    }

    static func accumulateLatency(
        _ state: JudgeLatencyState, canary: JudgeHistogram, stable: JudgeHistogram, configuration: JudgeConfiguration
    ) throws(JudgeError) -> JudgeLatencyState {
        var next = state
        if let boundary = state.boundary {
            guard canary.bounds.contains(boundary) else {
                throw JudgeError(
                    field: "canary.latency.bounds",
                    problem: "no longer contain the boundary \(boundary) ms chosen earlier; the histogram's buckets changed during the analysis")
            }
            next.comparison = accumulate(
                state.comparison,
                canary: JudgeCounts(requests: canary.total, events: canary.slower(than: boundary)),
                stable: JudgeCounts(requests: stable.total, events: stable.slower(than: boundary)),
                absoluteMargin: configuration.latencyTailAbsoluteMargin, stableAlpha: alphaBound(configuration))
            return next
        }
        // Pool both sides until enough requests were seen, then choose the boundary from the
        // pooled histogram only: which side a request came from plays no part in the choice,
        // so the tests that follow keep their guarantees.
        var pooled = JudgeHistogram(
            bounds: canary.bounds,
            cumulativeCounts: zip(canary.cumulativeCounts, stable.cumulativeCounts).map { $0 + $1 },
            total: canary.total + stable.total)
        if let previous = state.pooled {
            guard previous.bounds == pooled.bounds else {
                throw JudgeError(
                    field: "canary.latency.bounds",
                    problem: "differ from the earlier intervals' bounds (\(pooled.bounds) vs \(previous.bounds))")
            }
            pooled.cumulativeCounts = zip(previous.cumulativeCounts, pooled.cumulativeCounts).map { $0 + $1 }
            pooled.total += previous.total
        }
        if pooled.total >= configuration.latencyBoundarySamples {
            let share = configuration.latencyTailShare
            // The lowest bound that at most `share` of the requests exceed: p99 from above. Istio's buckets are
            // coarse (100, 250, 500 ms); the bound below p99 can hold 10 % of the requests, where a slow tail
            // barely moves the share.
            let boundary = pooled.bounds.first { pooled.slower(than: $0) <= share * pooled.total } ?? pooled.bounds[pooled.bounds.count - 1]
            next.boundary = boundary
            next.pooled = nil
            // This interval counts: given the pooled histogram, which side each request came
            // from is independent of the choice when the sides do not differ.
            next.comparison = accumulate(
                state.comparison,
                canary: JudgeCounts(requests: canary.total, events: canary.slower(than: boundary)),
                stable: JudgeCounts(requests: stable.total, events: stable.slower(than: boundary)),
                absoluteMargin: configuration.latencyTailAbsoluteMargin, stableAlpha: alphaBound(configuration))
        } else {
            next.pooled = pooled
        }
        return next
    }

    func evidence(
        of state: JudgeComparisonState, metric: String, ratioMargin: Double, absoluteMargin: Double, exposure: Double
    ) -> JudgeEvidence {
        let alphaHarm = configuration.falseRollbackRate / 2
        // The false-promotion rate is split within each comparison by the ratio e-process, the absolute-margin
        // e-process and stable's confidence sequence (see `alphaBound`). The canary's upper bound is only reported.
        let logE = JudgeStatistics.logMeanExp(state.harmLogLikelihoodRatios)
        let eValue = min(exp(min(logE, 690)), 1e300)
        let threshold = 1 / alphaHarm
        let harmful = logE >= log(threshold)

        let upper = JudgeStatistics.upperConfidenceBound(
            events: state.canary.events, trials: state.canary.requests, alpha: alphaBound)
        let lower = JudgeStatistics.lowerConfidenceBound(
            events: state.stable.events, trials: state.stable.requests, alpha: alphaBound)
        let allowed = min(1, lower + absoluteMargin / exposure)

        // Both acceptance tests use the tested exposure next at or above the next weight (the stricter margin).
        let wanted = 1 + (ratioMargin - 1) / exposure
        let index = state.acceptRatios.indices.last { state.acceptRatios[$0] <= wanted * (1 + 1e-12) } ?? 0
        let boundLog = state.boundLogEValues[index]
        let boundE = min(exp(min(boundLog, 690)), 1e300)
        let boundThreshold = 1 / alphaAbsolute
        let boundShown = state.canary.requests > 0 && boundLog >= log(boundThreshold)
        let allowedRatio = state.acceptTestedRatios[index]
        let acceptLog = state.acceptLogLikelihoodRatios[index]
        let acceptE = min(exp(min(acceptLog, 690)), 1e300)
        let acceptThreshold = 1 / alphaRelative
        let ratioShown = acceptLog >= log(acceptThreshold)
        // The weighted sum E_ratio / its threshold + E_absolute / its threshold ≥ 1 (see `alphaBound`).
        let acceptScore = state.canary.requests > 0
            ? JudgeStatistics.acceptanceScore(
                ratioLogEValue: acceptLog, ratioThreshold: acceptThreshold, boundLogEValue: boundLog, boundThreshold: boundThreshold)
            : 0
        let acceptable = boundShown || ratioShown || acceptScore >= 1

        var ratio: Double?
        if let c = state.canary.rate, let s = state.stable.rate, s > 0 { ratio = c / s }

        let c = state.canary, s = state.stable
        let sides = "canary \(JudgeFormat.rate(c)) vs stable \(JudgeFormat.rate(s))"
            + (ratio.map { ", ratio \(JudgeFormat.number($0))×" } ?? "")
        let relative = "below \(JudgeFormat.number(allowedRatio))× stable: e-value \(JudgeFormat.number(acceptE))"
        let absolute = "below \(JudgeFormat.percent(allowed)): e-value \(JudgeFormat.number(boundE))"
        let summary: String
        if harmful {
            summary = "\(metric) \(sides); harm e-value \(JudgeFormat.number(eValue)) ≥ \(JudgeFormat.number(threshold))"
        } else if ratioShown {
            summary = "\(metric) \(sides); \(relative) ≥ \(JudgeFormat.number(acceptThreshold))"
        } else if boundShown {
            summary = "\(metric) \(sides); \(absolute) ≥ \(JudgeFormat.number(boundThreshold))"
        } else if acceptable {
            summary = "\(metric) \(sides); \(relative) and \(absolute) together: "
                + "\(JudgeFormat.number(acceptE))/\(JudgeFormat.number(acceptThreshold)) + \(JudgeFormat.number(boundE))/\(JudgeFormat.number(boundThreshold)) "
                + "= \(JudgeFormat.number(acceptScore)) ≥ 1"
        } else if c.requests == 0 {
            summary = "\(metric): the canary served no requests yet"
        } else {
            summary = "\(metric) \(sides) after \(JudgeFormat.number(c.requests)) canary requests; not yet \(relative) < \(JudgeFormat.number(acceptThreshold)), "
                + "nor \(absolute) < \(JudgeFormat.number(boundThreshold)), nor together (\(JudgeFormat.number(acceptScore)) < 1); "
                + "harm e-value \(JudgeFormat.number(eValue)) < \(JudgeFormat.number(threshold))"
        }
        return JudgeEvidence(
            metric: metric, canary: c, stable: s, ratio: ratio, canaryUpperBound: upper, stableLowerBound: lower,
            allowedRate: allowed, boundEValue: boundE, boundThreshold: boundThreshold, allowedRatio: allowedRatio, acceptEValue: acceptE, acceptThreshold: acceptThreshold,
            harmEValue: eValue, harmThreshold: threshold, harmful: harmful, acceptable: acceptable, summary: summary)
    }
}

/// Number formatting for explanations, without Foundation.
enum JudgeFormat {
    /// Up to three significant digits, scientific above 1e5.
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return value > 0 ? "∞" : (value < 0 ? "-∞" : "NaN") }
        let magnitude = abs(value)
        if magnitude >= 1e5 {
            let exponent = Int(floor(log10(magnitude)))
            let mantissa = value / pow(10, Double(exponent))
            return fixed(mantissa, decimals: 1) + "e\(exponent)"
        }
        if value == value.rounded() { return String(Int(value)) }
        let decimals = magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : magnitude >= 1 ? 2 : max(2, 2 - Int(floor(log10(magnitude))))
        return fixed(value, decimals: min(decimals, 8))
    }

    static func percent(_ rate: Double) -> String { number(rate * 100) + "%" }

    static func rate(_ counts: JudgeCounts) -> String {
        guard let r = counts.rate else { return "– (0 requests)" }
        return "\(percent(r)) (\(number(counts.events))/\(number(counts.requests)))"
    }

    static func fixed(_ value: Double, decimals: Int) -> String {
        let scale = pow(10.0, Double(decimals))
        let scaled = (abs(value) * scale).rounded()
        let whole = Int(scaled / scale)
        let fraction = Int(scaled - Double(whole) * scale)
        let sign = value < 0 && scaled > 0 ? "-" : ""
        guard decimals > 0 else { return sign + String(whole) }
        var digits = String(fraction)
        while digits.count < decimals { digits = "0" + digits }
        while digits.hasSuffix("0") { digits.removeLast() }
        return sign + String(whole) + (digits.isEmpty ? "" : "." + digits)
    }
}
