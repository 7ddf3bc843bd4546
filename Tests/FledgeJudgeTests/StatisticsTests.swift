import Foundation
import Testing

@testable import FledgeJudge

@Suite struct StatisticsTests {
    @Test(arguments: [
        // Published values of the standard normal quantile (e.g. Abramowitz & Stegun table 26.5,
        // Wichura 1988).
        (0.5, 0.0),
        (0.975, 1.959963984540054),
        (0.99, 2.326347874040841),
        (0.995, 2.575829303548901),
        (0.999, 3.090232306167814),
        (0.025, -1.959963984540054),
        (1e-10, -6.361340902404056),
    ])
    func normalQuantileMatchesPublishedValues(p: Double, z: Double) {
        #expect(abs(JudgeStatistics.normalQuantile(p) - z) < 1e-12)
    }

    @Test func normalQuantileOutsideTheOpenInterval() {
        #expect(JudgeStatistics.normalQuantile(0) == -.infinity)
        #expect(JudgeStatistics.normalQuantile(1) == .infinity)
        #expect(JudgeStatistics.normalQuantile(1.5).isNaN)
        #expect(JudgeStatistics.normalQuantile(-0.1).isNaN)
    }

    @Test func normalQuantileInvertsTheDistributionFunction() {
        for p in stride(from: 0.001, to: 1, by: 0.037) {
            #expect(abs(JudgeStatistics.normalCDF(JudgeStatistics.normalQuantile(p)) - p) < 1e-13)
        }
    }

    @Test func logBetaKnownValues() {
        #expect(abs(JudgeStatistics.logBeta(1, 1)) < 1e-14)
        #expect(abs(JudgeStatistics.logBeta(0.5, 0.5) - log(Double.pi)) < 1e-14)
        #expect(abs(JudgeStatistics.logBeta(2, 3) - log(1.0 / 12)) < 1e-14)
    }

    @Test func conditionalLikelihoodRatioHandComputed() {
        // Equal traffic, so θ0 = 1/2; ratio 2 gives θ1 = 2/3.
        // 3 canary events, 1 stable: 3·ln(4/3) + ln(2/3) = 0.457581…
        let llr = JudgeStatistics.conditionalLogLikelihoodRatio(
            ratio: 2, canaryTrials: 100, canaryEvents: 3, stableTrials: 100, stableEvents: 1)
        #expect(abs(llr - (3 * log(4.0 / 3) + log(2.0 / 3))) < 1e-14)
        #expect(abs(llr - 0.4575811092) < 1e-9)
        // A tenth of the traffic on the canary: θ0 = 0.1, ratio 5: θ1 = 5/14.
        let llr2 = JudgeStatistics.conditionalLogLikelihoodRatio(
            ratio: 5, canaryTrials: 10, canaryEvents: 2, stableTrials: 90, stableEvents: 0)
        #expect(abs(llr2 - 2 * log((5.0 / 14) / 0.1)) < 1e-14)
        // Nothing happened, or one side had no traffic: no evidence.
        #expect(JudgeStatistics.conditionalLogLikelihoodRatio(
            ratio: 5, canaryTrials: 10, canaryEvents: 0, stableTrials: 90, stableEvents: 0) == 0)
        #expect(JudgeStatistics.conditionalLogLikelihoodRatio(
            ratio: 5, canaryTrials: 0, canaryEvents: 0, stableTrials: 90, stableEvents: 4) == 0)
    }

    @Test func mixtureBoundWithNoEventsHasTheClosedForm() {
        // With x = 0 of n and the prior Beta(a, 1), M_n(p) = B(a, n + 1) / B(a, 1) / (1 − p)^n, so the upper bound
        // solves −n·ln(1 − p) = ln(1/α) − ln B(a, n + 1) + ln B(a, 1).
        let n = 1000.0, alpha = 0.05, a = JudgeStatistics.ratePriorA
        #expect(JudgeStatistics.ratePriorB == 1)
        let expected = 1 - exp(-(log(1 / alpha) - JudgeStatistics.logBeta(a, n + 1) + JudgeStatistics.logBeta(a, 1)) / n)
        let bound = JudgeStatistics.upperConfidenceBound(events: 0, trials: n, alpha: alpha)
        #expect(abs(bound - expected) < 1e-12)
        // Hand-computed for a = 0.2: B(0.2, 1) = 5, B(0.2, 1001) = Γ(0.2)·Γ(1001)/Γ(1001.2) = 1.1530;
        // ln 20 − 0.1424 + 1.6094 = 4.4628 → 1 − e^−0.0044628. Jeffreys' prior gave 0.006998 here.
        #expect(abs(bound - 0.0044528) < 2e-6)
        #expect(JudgeStatistics.lowerConfidenceBound(events: 0, trials: n, alpha: alpha) == 0)
        #expect(JudgeStatistics.upperConfidenceBound(events: 0, trials: 0, alpha: alpha) == 1)
    }

    @Test func mixtureBoundsBracketTheEstimateAndShrink() {
        var previousWidth = 1.0
        for n in [100.0, 1000, 10000, 100_000] {
            let x = n * 0.01
            let upper = JudgeStatistics.upperConfidenceBound(events: x, trials: n, alpha: 0.0125)
            let lower = JudgeStatistics.lowerConfidenceBound(events: x, trials: n, alpha: 0.0125)
            #expect(lower < 0.01 && 0.01 < upper)
            // At the bounds the martingale sits exactly at 1/α.
            #expect(abs(JudgeStatistics.logMixtureMartingale(events: x, trials: n, rate: upper) - log(80)) < 1e-6)
            #expect(abs(JudgeStatistics.logMixtureMartingale(events: x, trials: n, rate: lower) - log(80)) < 1e-6)
            #expect(upper - lower < previousWidth)
            previousWidth = upper - lower
        }
    }

    @Test func confidenceSequenceCoversAtEveryLook() {
        // Anytime validity: over 1,000 Bernoulli(1 %) streams of 5,000 observations, looked at
        // after every 50, the share of streams whose bounds ever exclude the truth stays ≤ α.
        var rng = SplitMix64(seed: 42)
        let p = 0.01, alpha = 0.05
        var missed = 0
        for _ in 0..<1000 {
            var n = 0.0, x = 0.0
            for _ in 0..<100 {
                x += Double(JudgeSampling.binomial(trials: 50, probability: p, using: &rng))
                n += 50
                if JudgeStatistics.upperConfidenceBound(events: x, trials: n, alpha: alpha) < p
                    || JudgeStatistics.lowerConfidenceBound(events: x, trials: n, alpha: alpha) > p
                {
                    missed += 1
                    break
                }
            }
        }
        #expect(Double(missed) / 1000 <= alpha)
    }

    @Test func ratioGridIsGeometric() {
        let grid = JudgeStatistics.ratioGrid(lowest: 1.5, highest: 100, count: 8)
        #expect(grid.count == 8)
        #expect(abs(grid[0] - 1.5) < 1e-12 && abs(grid[7] - 100) < 1e-9)
        let step = grid[1] / grid[0]
        for i in 1..<8 { #expect(abs(grid[i] / grid[i - 1] - step) < 1e-12) }
    }

    @Test func likelihoodRatioAgainstARateAtLeastTheta() {
        // 2 events in 1,000, θ = 0.5 %: the denominator is at θ (the observed 0.2 % is below it):
        // −10 − (2 ln 0.005 + 998 ln 0.995) = −10 + 10.5966 + 5.0025 = 5.5992.
        let below = JudgeStatistics.logLikelihoodRatioAgainstRateAtLeast(logNumerator: -10, events: 2, trials: 1000, rate: 0.005)
        #expect(abs(below - 5.59915147299327) < 1e-9)
        // 10 events in 1,000 is above θ: the denominator is at the observed 1 %: −60 − (10 ln 0.01 + 990 ln 0.99).
        let above = JudgeStatistics.logLikelihoodRatioAgainstRateAtLeast(logNumerator: -60, events: 10, trials: 1000, rate: 0.005)
        #expect(abs(above - -3.998465645152656) < 1e-9)
        // Nothing observed, or a rate of 1 tested: nothing shown.
        #expect(JudgeStatistics.logLikelihoodRatioAgainstRateAtLeast(logNumerator: 0, events: 0, trials: 0, rate: 0.01) == 0)
        #expect(JudgeStatistics.logLikelihoodRatioAgainstRateAtLeast(logNumerator: -1, events: 0, trials: 10, rate: 1) == 0)
    }

    @Test func acceptanceScoreAddsEachEValueOverItsThreshold() {
        // 20/40 + 30/53.3 = 0.5 + 0.5625 = 1.0625.
        let score = JudgeStatistics.acceptanceScore(
            ratioLogEValue: log(20), ratioThreshold: 40, boundLogEValue: log(30), boundThreshold: 160.0 / 3)
        #expect(abs(score - 1.0625) < 1e-12)
        // Either alone at its threshold gives at least 1.
        #expect(JudgeStatistics.acceptanceScore(ratioLogEValue: log(40), ratioThreshold: 40, boundLogEValue: -.infinity, boundThreshold: 53) == 1)
        // Huge e-values do not overflow.
        let huge = JudgeStatistics.acceptanceScore(ratioLogEValue: 5000, ratioThreshold: 40, boundLogEValue: 0, boundThreshold: 53)
        #expect(huge.isFinite && huge > 1e299)
    }

    @Test func logMeanExpIsStable() {
        #expect(abs(JudgeStatistics.logMeanExp([0, 0]) - 0) < 1e-15)
        #expect(abs(JudgeStatistics.logMeanExp([1000, 1000]) - 1000) < 1e-9)
        #expect(abs(JudgeStatistics.logMeanExp([log(3), log(1)]) - log(2)) < 1e-15)
    }
}

@Suite struct SamplingTests {
    @Test func splitMix64MatchesReferenceOutputs() {
        // Reference outputs of SplitMix64 seeded with 1234567.
        var rng = SplitMix64(seed: 1_234_567)
        let expected: [UInt64] = [
            6_457_827_717_110_365_317, 3_203_168_211_198_807_973, 9_817_491_932_198_370_423,
            4_593_380_528_125_082_431, 16_408_922_859_458_223_821,
        ]
        for value in expected { #expect(rng.next() == value) }
    }

    @Test(arguments: [0.7, 4.0, 25.0, 3000.0])
    func poissonHasTheRightMeanAndVariance(mean: Double) {
        var rng = SplitMix64(seed: 7)
        let draws = (0..<20000).map { _ in Double(JudgeSampling.poisson(mean: mean, using: &rng)) }
        let m = draws.reduce(0, +) / Double(draws.count)
        let v = draws.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(draws.count - 1)
        // Five standard errors.
        #expect(abs(m - mean) < 5 * (mean / 20000).squareRoot())
        #expect(abs(v / mean - 1) < 0.05)
    }

    @Test(arguments: [(30, 0.01), (1000, 0.001), (5000, 0.01), (400, 0.5), (100, 0.97)])
    func binomialHasTheRightMeanAndVariance(n: Int, p: Double) {
        var rng = SplitMix64(seed: 11)
        let draws = (0..<20000).map { _ in Double(JudgeSampling.binomial(trials: n, probability: p, using: &rng)) }
        #expect(draws.allSatisfy { $0 >= 0 && $0 <= Double(n) })
        let m = draws.reduce(0, +) / Double(draws.count)
        let v = draws.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(draws.count - 1)
        let variance = Double(n) * p * (1 - p)
        #expect(abs(m - Double(n) * p) < 5 * (variance / 20000).squareRoot())
        #expect(abs(v / variance - 1) < 0.06)
    }

    @Test func multinomialKeepsTheTotal() {
        var rng = SplitMix64(seed: 3)
        for n in [0, 1, 17, 5000] {
            let counts = JudgeSampling.multinomial(trials: n, probabilities: [0.1, 0.6, 0.0, 0.3], using: &rng)
            #expect(counts.reduce(0, +) == n)
            #expect(counts[2] == 0)
        }
    }

    @Test func lognormalLatencyQuantiles() {
        let latency = SimulatedLatency(median: 50, sigma: 0.6)
        #expect(abs(latency.quantile(0.5) - 50) < 1e-6)
        // p99 = median · e^(σ·z₀.₉₉) = 50 · e^(0.6 · 2.326348) = 202.27…
        #expect(abs(latency.quantile(0.99) - 50 * exp(0.6 * 2.326347874040841)) < 1e-6)
        let probabilities = latency.bucketProbabilities(bounds: istioLatencyBounds)
        #expect(abs(probabilities.reduce(0, +) - 1) < 1e-12)
    }

    @Test func simulatorRoutesTheSameRequestsForEveryWeight() {
        let version = SimulatedVersion(errorRate: 0.01, latency: SimulatedLatency(median: 50, sigma: 0.6))
        let simulator = TrafficSimulator(requestsPerSecond: 100, canary: version, stable: version, weights: [10, 25, 50])
        var rng = SplitMix64(seed: 5)
        let tick = simulator.tick(seconds: 30, using: &rng)
        for weight in [0.0, 10, 25, 50, 100] {
            let (c, s) = tick.observe(weight: weight)
            #expect(c.requests + s.requests == tick.requests)
            #expect(c.buckets.reduce(0, +) == c.requests)
        }
        #expect(tick.observe(weight: 0).canary.requests == 0)
        #expect(tick.observe(weight: 100).stable.requests == 0)
        // A higher weight sends a superset of the requests to the canary.
        #expect(tick.observe(weight: 10).canary.requests <= tick.observe(weight: 25).canary.requests)
    }
}
