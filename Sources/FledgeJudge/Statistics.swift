// The statistics behind the judge: anytime-valid tests and confidence sequences.
//
// Everything here is a pure function of counts. Two tools are used:
//
// 1. A conditional mixture likelihood-ratio e-process on the *rate ratio* of
//    two sides (canary vs stable). Given the requests n_c, n_s of an interval
//    and the total events x = x_c + x_s (errors, or requests slower than a
//    boundary), the number on the canary side is, when both sides have the same
//    event probability, hypergeometric; by Hoeffding (1963) it is dominated in
//    the convex order by Binomial(x, θ0) with θ0 = n_c / (n_c + n_s). For a
//    rate ratio ρ the binomial probability is θρ = ρ n_c / (ρ n_c + n_s). The
//    per-interval factor (θρ/θ0)^x_c ((1−θρ)/(1−θ0))^x_s is convex and increasing
//    in x_c, so its conditional expectation is ≤ 1 whenever the canary is no
//    worse than stable. The product over intervals of each factor, and any
//    fixed mixture over ρ, is therefore a non-negative supermartingale under
//    "canary no worse", and by Ville's inequality P(sup E ≥ 1/α) ≤ α: the test
//    may be looked at after every interval and still keeps its error rate.
//
// 2. A beta-binomial mixture confidence sequence for one side's event rate
//    (Robbins 1970): M_n(p) = B(a+x, b+n−x) / B(a,b) / (p^x (1−p)^(n−x)) is a
//    martingale with mean 1 under the true p, so {p : M_n(p) < 1/α} covers p at
//    every n simultaneously with probability ≥ 1 − α. The prior Beta(a, b) is
//    fixed (`ratePriorA`, `ratePriorB`) and chosen for rare events.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Numerical helpers of the judge, exposed for tests and for `fledge analyze`.
public enum JudgeStatistics {
    /// The confidence sequence's mixing prior, Beta(0.2, 1). Any fixed prior keeps the coverage; it only sets
    /// the width. A mixture pays about −log of the prior's mass within the estimate's standard error of the rate:
    /// ½ log n + 0.2 for Jeffreys' Beta(½, ½) over n requests, but ½ log(events) − log a − a·log p − 0.9 for
    /// Beta(a, 1), whose mass sits near zero where the judge's rates are (5xx and the slowest 1 %). At a 0.1 %
    /// rate over 75,000 requests that is 1.6 nats less (a = 0.2 is near the best, 1/ln(1/p), for rates from
    /// 0.1 % to 1 %), so stable's lower bound after 76 errors is 0.059 % instead of 0.056 %, and with no events
    /// the upper bound after 1,000 requests is 0.45 % instead of 0.70 %.
    public static let ratePriorA = 0.2
    public static let ratePriorB = 1.0

    /// log B(a, b) = lgamma(a) + lgamma(b) − lgamma(a + b).
    public static func logBeta(_ a: Double, _ b: Double) -> Double {
        lgamma(a) + lgamma(b) - lgamma(a + b)
    }

    /// x·log(y) with the convention 0·log(anything) = 0.
    static func xlogy(_ x: Double, _ y: Double) -> Double {
        x == 0 ? 0 : x * log(y)
    }

    /// The log of the beta-binomial mixture martingale M_n(p) for `events` out of `trials`.
    public static func logMixtureMartingale(
        events x: Double, trials n: Double, rate p: Double, priorA a: Double = ratePriorA, priorB b: Double = ratePriorB
    ) -> Double {
        let evidence = logBeta(a + x, b + n - x) - logBeta(a, b)
        return evidence - xlogy(x, p) - xlogy(n - x, 1 - p)
    }

    /// Anytime-valid upper confidence bound on an event rate: the largest p ≥ x/n with
    /// M_n(p) < 1/α. 1 when nothing was observed.
    public static func upperConfidenceBound(events x: Double, trials n: Double, alpha: Double) -> Double {
        guard n > 0 else { return 1 }
        if x >= n { return 1 }
        let threshold = log(1 / alpha)
        var low = x / n, high = 1.0
        if logMixtureMartingale(events: x, trials: n, rate: low) >= threshold { return low }
        for _ in 0..<64 {
            let mid = (low + high) / 2
            if logMixtureMartingale(events: x, trials: n, rate: mid) < threshold { low = mid } else { high = mid }
        }
        return high
    }

    /// Anytime-valid lower confidence bound on an event rate: the smallest p ≤ x/n with
    /// M_n(p) < 1/α. 0 when no event was observed.
    public static func lowerConfidenceBound(events x: Double, trials n: Double, alpha: Double) -> Double {
        guard n > 0, x > 0 else { return 0 }
        let threshold = log(1 / alpha)
        var low = 0.0, high = x / n
        if logMixtureMartingale(events: x, trials: n, rate: high) >= threshold { return high }
        for _ in 0..<64 {
            let mid = (low + high) / 2
            if logMixtureMartingale(events: x, trials: n, rate: mid) < threshold { high = mid } else { low = mid }
        }
        return low
    }

    /// The log-likelihood ratio of one interval for rate ratio `ratio` against equal rates,
    /// conditional on the interval's total events (see the file comment). 0 when a side had
    /// no requests or nothing happened.
    public static func conditionalLogLikelihoodRatio(
        ratio: Double, canaryTrials nc: Double, canaryEvents xc: Double,
        stableTrials ns: Double, stableEvents xs: Double
    ) -> Double {
        guard nc > 0, ns > 0, xc + xs > 0 else { return 0 }
        let theta0 = nc / (nc + ns)
        let theta1 = ratio * nc / (ratio * nc + ns)
        return xlogy(xc, theta1 / theta0) + xlogy(xs, (1 - theta1) / (1 - theta0))
    }

    /// log of a uniform mixture of exp(logs): log(Σ exp(l_k) / K), computed without overflow.
    public static func logMeanExp(_ logs: [Double]) -> Double {
        guard let top = logs.max() else { return 0 }
        if top == -.infinity { return -.infinity }
        let sum = logs.reduce(0.0) { $0 + exp($1 - top) }
        return top + log(sum) - log(Double(logs.count))
    }

    /// The log e-value of "the rate is at least θ" for `events` out of `trials` Bernoulli outcomes: `logNumerator`
    /// (their log-likelihood under rates chosen without seeing them) minus their log-likelihood at the most likely
    /// rate of at least θ, max(θ, events/trials). 0 without trials, and for θ ≥ 1 (nothing is tested).
    public static func logLikelihoodRatioAgainstRateAtLeast(
        logNumerator: Double, events x: Double, trials n: Double, rate theta: Double
    ) -> Double {
        guard n > 0, theta < 1 else { return 0 }
        let p = max(theta, x / n)
        let denominator = xlogy(x, p) + xlogy(n - x, 1 - p)
        return logNumerator - denominator
    }

    /// The weighted sum of two e-values, each divided by the threshold it would need alone:
    /// E₁/t₁ + E₂/t₂, from their logs (capped at 1e300). With t_i = 1/α_i this is (α₁E₁ + α₂E₂), an e-value
    /// times α₁ + α₂ when both are e-values for the same hypothesis, so "≥ 1" rejects it at level α₁ + α₂ and
    /// whenever either alone reaches its threshold.
    public static func acceptanceScore(
        ratioLogEValue a: Double, ratioThreshold ta: Double, boundLogEValue b: Double, boundThreshold tb: Double
    ) -> Double {
        let logScore = logMeanExp([a - log(ta), b - log(tb)]) + log(2.0)
        return min(exp(min(logScore, 690)), 1e300)
    }

    /// The grid of rate ratios the harm e-process mixes over: `count` points spaced
    /// geometrically from `lowest` to `highest`.
    public static func ratioGrid(lowest: Double, highest: Double = 100, count: Int = 8) -> [Double] {
        guard count > 1, highest > lowest else { return [lowest] }
        let step = log(highest / lowest) / Double(count - 1)
        return (0..<count).map { lowest * exp(step * Double($0)) }
    }

    /// The standard normal quantile Φ⁻¹(p), Wichura's algorithm AS 241 (PPND16), accurate to
    /// about 1e-16. −∞ at 0, +∞ at 1, NaN outside [0, 1].
    public static func normalQuantile(_ p: Double) -> Double {
        guard p > 0, p < 1 else { return p == 0 ? -.infinity : p == 1 ? .infinity : .nan }
        let q = p - 0.5
        if abs(q) <= 0.425 {
            let r = 0.180625 - q * q
            let num = (((((((2509.0809287301226727 * r + 33430.575583588128105) * r + 67265.770927008700853) * r
                + 45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r
                + 133.14166789178437745) * r + 3.387132872796366608)
            let den = (((((((5226.495278852545925 * r + 28729.085735721942674) * r + 39307.89580009271061) * r
                + 21213.794301586595867) * r + 5394.1960214247511077) * r + 687.1870074920579083) * r
                + 42.313330701600911252) * r + 1)
            return q * num / den
        }
        var r = q < 0 ? p : 1 - p
        r = (-log(r)).squareRoot()
        var value: Double
        if r <= 5 {
            r -= 1.6
            let num = (((((((7.7454501427834140764e-4 * r + 0.0227238449892691845833) * r + 0.24178072517745061177) * r
                + 1.27045825245236838258) * r + 3.64784832476320460504) * r + 5.7694972214606914055) * r
                + 4.6303378461565452959) * r + 1.42343711074968357734)
            let den = (((((((1.05075007164441684324e-9 * r + 5.475938084995344946e-4) * r + 0.0151986665636164571966) * r
                + 0.14810397642748007459) * r + 0.68976733498510000455) * r + 1.6763848301838038494) * r
                + 2.05319162663775882187) * r + 1)
            value = num / den
        } else {
            r -= 5
            let num = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r + 0.0012426609473880784386) * r
                + 0.026532189526576123093) * r + 0.29656057182850489123) * r + 1.7848265399172913358) * r
                + 5.4637849111641143699) * r + 6.6579046435011037772)
            let den = (((((((2.04426310338993978564e-15 * r + 1.4215117583164458887e-7) * r + 1.8463183175100546818e-5) * r
                + 7.868691311456132591e-4) * r + 0.0148753612908506148525) * r + 0.13692988092273580531) * r
                + 0.59983220655588793769) * r + 1)
            value = num / den
        }
        return q < 0 ? -value : value
    }

    /// The standard normal distribution function Φ(x).
    public static func normalCDF(_ x: Double) -> Double {
        0.5 * erfc(-x / 2.0.squareRoot())
    }
}
