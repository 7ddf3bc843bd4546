import Foundation
import Testing

@testable import FledgeJudge

@Suite struct CanaryJudgeTests {
    let judge = try! CanaryJudge()

    @Test func overwhelmingHarmRollsBackInTheFirstInterval() throws {
        // 20× the errors on 10 % of 1,000 req/s over 30 s.
        let (verdict, state) = try judge.judge(
            canary: JudgeSample(requests: 3000, errors: 60),
            stable: JudgeSample(requests: 27000, errors: 27),
            nextWeight: 25, state: judge.initialState())
        #expect(verdict.decision == .rollback)
        #expect(verdict.errors.harmful)
        #expect(verdict.errors.harmEValue >= 200)
        #expect(verdict.errors.harmThreshold == 200)
        #expect(verdict.errors.canary == JudgeCounts(requests: 3000, events: 60))
        #expect(abs((verdict.errors.ratio ?? 0) - 20) < 1e-9)
        #expect(verdict.explanation.hasPrefix("Roll back: 5xx rate canary 2% (60/3000) vs stable 0.1% (27/27000), ratio 20×"))
        #expect(state.intervals == 1)
    }

    @Test func thinEvidenceHolds() throws {
        // 1 req/s at 10 %: three canary requests, nothing wrong, and still no promotion.
        let (verdict, _) = try judge.judge(
            canary: JudgeSample(requests: 3, errors: 0), stable: JudgeSample(requests: 27, errors: 0),
            nextWeight: 100, state: judge.initialState())
        #expect(verdict.decision == .hold)
        #expect(!verdict.errors.acceptable && !verdict.errors.harmful)
        #expect(verdict.explanation.hasPrefix("Inconclusive, holding (not enough evidence to promote)"))
        #expect(verdict.explanation.contains("after 3 canary requests"))
    }

    @Test func noCanaryTrafficHoldsAndSaysSo() throws {
        let (verdict, _) = try judge.judge(
            canary: JudgeSample(requests: 0, errors: 0), stable: JudgeSample(requests: 500, errors: 3),
            nextWeight: 25, state: judge.initialState())
        #expect(verdict.decision == .hold)
        #expect(verdict.explanation.contains("the canary served no requests yet"))
    }

    @Test func plentyOfCleanTrafficAdvancesAndTheMarginTightensWithWeight() throws {
        // Errors too rare for a ratio to be shown: the absolute margin decides.
        let canary = JudgeSample(requests: 20000, errors: 20)
        let stable = JudgeSample(requests: 180_000, errors: 180)
        let toQuarter = try judge.judge(canary: canary, stable: stable, nextWeight: 25, state: judge.initialState())
        #expect(toQuarter.verdict.decision == .advance)
        #expect(toQuarter.verdict.explanation.hasPrefix("Canary not worse than the margins, advance to 25%"))
        let lower = toQuarter.verdict.errors.stableLowerBound
        // The allowed excess is the absolute margin divided by the next weight …
        #expect(abs(toQuarter.verdict.errors.allowedRate - (lower + 0.001 / 0.25)) < 1e-15)
        // … and the relative margin is 1 + 0.5 / 0.25 = 3× stable.
        #expect(abs(toQuarter.verdict.errors.allowedRatio - 3) < 1e-12)
        // The same evidence is not enough to promote: the allowed excess is 4× smaller at 100 %.
        let toFull = try judge.judge(canary: canary, stable: stable, nextWeight: 100, state: judge.initialState())
        #expect(abs(toFull.verdict.errors.allowedRate - (lower + 0.001)) < 1e-15)
        #expect(abs(toFull.verdict.errors.allowedRatio - 1.5) < 1e-12)
        #expect(toFull.verdict.decision == .hold)
        // Weights between tested margins use the next stricter one: 40 % → the 50 % margin, 2×.
        let toForty = try judge.judge(canary: canary, stable: stable, nextWeight: 40, state: judge.initialState())
        #expect(abs(toForty.verdict.errors.allowedRatio - 2) < 1e-12)
    }

    /// Without histograms (a Prometheus that drops the bucket series) the judge decides on errors alone; its
    /// advance read exactly like one where latency was shown within its margin too (seen on the real stack).
    @Test func anAdvanceWithoutAnyHistogramSaysLatencyWasNotCompared() throws {
        let canary = JudgeSample(requests: 20000, errors: 20)
        let stable = JudgeSample(requests: 180_000, errors: 180)
        let blind = try judge.judge(canary: canary, stable: stable, nextWeight: 25, state: judge.initialState()).verdict
        #expect(blind.decision == .advance)
        #expect(blind.explanation.hasSuffix("; latency not compared: no latency histogram of both workloads so far"), "\(blind.explanation)")
        let held = try judge.judge(canary: canary, stable: stable, nextWeight: 100, state: judge.initialState()).verdict
        #expect(held.decision == .hold)
        #expect(held.explanation.hasSuffix("; latency not compared: no latency histogram of both workloads so far"), "\(held.explanation)")
        // With histograms nothing of the kind is said.
        let histogram = { (n: Double) in try JudgeHistogram(bounds: [50, 100, 250], bucketCounts: [n * 0.9, n * 0.09, n * 0.01, 0]) }
        let seen = try judge.judge(
            canary: JudgeSample(requests: 20000, errors: 20, latency: histogram(20000)),
            stable: JudgeSample(requests: 180_000, errors: 180, latency: histogram(180_000)), nextWeight: 25, state: judge.initialState()
        ).verdict
        #expect(!seen.explanation.contains("latency not compared"), "\(seen.explanation)")
        #expect(seen.latency != nil)
    }

    @Test func noErrorsOnEitherSideAreShownBelowTheAbsoluteMarginByItsEValue() throws {
        // No errors anywhere: stable's lower bound is 0, so the rate tested at the step to 25 % is θ = 0.001 / 0.25,
        // against stable's plug-in rate q = 0.5 / (stable requests + 1). Each canary request without an error
        // multiplies the e-value by (1 − q) / (1 − θ); the threshold is 8 / (3 × 5 %) ≈ 53.3 (3/8 of the whole
        // false-promotion rate: errors and latency must both be shown, so each may use all of it).
        let theta = 0.004
        var state = judge.initialState()
        var stableRequests = 0.0
        var expected = 0.0
        var verdicts: [JudgeVerdict] = []
        for _ in 0..<4 {
            stableRequests += 2700
            let q = 0.5 / (stableRequests + 1)
            expected += 300 * log((1 - q) / (1 - theta))
            let result = try judge.judge(
                canary: JudgeSample(requests: 300, errors: 0), stable: JudgeSample(requests: 2700, errors: 0), nextWeight: 25, state: state)
            state = result.state
            verdicts.append(result.verdict)
        }
        let quarter = CanaryJudge.acceptExposures.firstIndex(of: 0.25)!
        #expect(abs(state.errors.boundLogEValues[quarter] - expected) < 1e-9)
        #expect(state.errors.boundTestedRates[quarter] == theta)
        #expect(abs(verdicts[3].errors.boundThreshold! - 8 / (3 * 0.05)) < 1e-9)
        // 900 canary requests: e-value e^3.5 ≈ 33 < 53.3, and with the ratio test's e-value 1 (no events at all)
        // 1/40 + 33.3/53.3 = 0.649 < 1: hold; 1,200: e^4.69 ≈ 109, advance.
        #expect(verdicts[2].decision == .hold)
        #expect(verdicts[2].explanation.contains("nor below 0.4%: e-value 33.3 < 53.3, nor together (0.649 < 1)"), "\(verdicts[2].explanation)")
        #expect(verdicts[3].decision == .advance, "\(verdicts[3].explanation)")
        #expect(verdicts[3].explanation.contains("below 0.4%: e-value 109 ≥ 53.3"), "\(verdicts[3].explanation)")
        // 1,500 clean requests do not promote: at 100 % the tested rate is 0.1 %.
        #expect(try judge.judge(
            canary: JudgeSample(requests: 300, errors: 0), stable: JudgeSample(requests: 2700, errors: 0), nextWeight: 100, state: state
        ).verdict.decision == .hold)
    }

    @Test func aStableWithAlmostNoRequestsYetDoesNotSinkTheAbsoluteTest() throws {
        // Test traffic sent to the canary before stable serves much: 3,000 clean canary requests against 1 stable one.
        // Stable's plug-in rate (0 + ½)/(1 + 1) = ¼ would make that interval's factor (¾)^3000 ≈ e^-863, which no later
        // evidence wins back; q is capped at the lowest rate tested (stable's lower bound 0 + 0.1 % at promotion).
        // The 3,000 clean requests then show the canary below 0.4 % (step to 25 %): 3000 × ln(0.999 / 0.996) ≈ 9.0.
        let (first, state) = try judge.judge(
            canary: JudgeSample(requests: 3000, errors: 0), stable: JudgeSample(requests: 1, errors: 0), nextWeight: 25,
            state: judge.initialState())
        let quarter = CanaryJudge.acceptExposures.firstIndex(of: 0.25)!
        let theta = state.errors.boundTestedRates[quarter]
        #expect(theta < 0.0041 && theta >= 0.004)
        #expect(abs(state.errors.boundLogEValues[quarter] - 3000 * log(0.999 / (1 - theta))) < 1e-9)
        #expect(first.decision == .advance, "\(first.explanation)")
        // And the normal traffic after it goes on from there (not from e^-863).
        let (next, _) = try judge.judge(
            canary: JudgeSample(requests: 300, errors: 0), stable: JudgeSample(requests: 2700, errors: 0), nextWeight: 25, state: state)
        #expect(next.decision == .advance, "\(next.explanation)")
    }

    @Test func theTwoAcceptanceEValuesAreAddedEachOverItsThreshold() throws {
        // One interval, no errors on either side, next weight 25 %: the ratio test has no events, e-value 1
        // (1/40 = 0.025 of its threshold); the absolute test's rate is θ = 0.004, stable's plug-in q = 0.5 / 10⁶,
        // so n clean canary requests give e-value ((1 − q) / (1 − θ))^n, threshold 53.3. 988 requests: e^3.9594 =
        // 52.4, short of 53.3 alone, but 1/40 + 52.4/53.3 = 1.008 ≥ 1: advance. 980 requests: e^3.9274 = 50.8,
        // 0.025 + 0.952 = 0.977 < 1: hold.
        let q = 0.5 / 1_000_000
        func verdict(_ canaryRequests: Double) throws -> JudgeVerdict {
            try judge.judge(
                canary: JudgeSample(requests: canaryRequests, errors: 0), stable: JudgeSample(requests: 999_999, errors: 0),
                nextWeight: 25, state: judge.initialState()
            ).verdict
        }
        let advanced = try verdict(988)
        let boundE = exp(988 * log((1 - q) / (1 - 0.004)))
        #expect(abs(advanced.errors.boundEValue! - boundE) < 1e-9 * boundE)
        #expect(abs(boundE - 52.42) < 0.01)
        #expect(advanced.errors.acceptEValue == 1)
        #expect(advanced.errors.acceptThreshold == 40)
        #expect(advanced.decision == .advance, "\(advanced.explanation)")
        #expect(advanced.explanation.contains("together: 1/40 + 52.4/53.3 = 1.01 ≥ 1"), "\(advanced.explanation)")
        let held = try verdict(980)
        #expect(held.decision == .hold, "\(held.explanation)")
        #expect(held.explanation.contains("nor together (0.977 < 1)"), "\(held.explanation)")
    }

    @Test func theAbsoluteTestWeighsEveryCanaryRequestAgainstTheLatestRate() throws {
        // Two intervals of 1 error in 1,000 canary requests and 9 in 9,000 stable ones. The numerator is the
        // canary's likelihood under stable's rate as known at each interval, q_t = (x_s + ½)/(n_s + 1); the
        // denominator is the likelihood of all 2,000 canary requests at θ = stable's lower bound after both
        // intervals + 0.1 % (promotion), the tighter bound applying to the first interval's requests too.
        var state = judge.initialState()
        for _ in 0..<2 {
            state = try judge.judge(
                canary: JudgeSample(requests: 1000, errors: 1), stable: JudgeSample(requests: 9000, errors: 9), nextWeight: 100,
                state: state
            ).state
        }
        let q1 = 9.5 / 9001, q2 = 18.5 / 18001
        let numerator = log(q1) + 999 * log(1 - q1) + log(q2) + 999 * log(1 - q2)
        let theta = JudgeStatistics.lowerConfidenceBound(events: 18, trials: 18000, alpha: 0.05 / 8) + 0.001
        let expected = numerator - (2 * log(theta) + 1998 * log(1 - theta))
        let full = CanaryJudge.acceptExposures.firstIndex(of: 1)!
        #expect(abs(state.errors.boundLogNumerator - numerator) < 1e-9)
        #expect(state.errors.boundCanary == JudgeCounts(requests: 2000, events: 2))
        #expect(state.errors.boundTestedRates[full] == theta)
        #expect(abs(state.errors.boundLogEValues[full] - expected) < 1e-9)
    }

    @Test func aVersionThreeStateIsReadAndTheAbsoluteTestRestarts() throws {
        // Version 3 kept the absolute test as a running product, with no numerator: the test starts again.
        let (_, state) = try judge.judge(
            canary: JudgeSample(requests: 300, errors: 0), stable: JudgeSample(requests: 2700, errors: 3), nextWeight: 25,
            state: judge.initialState())
        #expect(state.errors.boundLogEValues.contains { $0 > 0 })
        var json = try #require(String(data: JSONEncoder().encode(state), encoding: .utf8))
        json = json.replacingOccurrences(of: #""version":4"#, with: #""version":3"#)
        json = json.replacingOccurrences(of: #","boundLogNumerator":[^,}]*"#, with: "", options: .regularExpression)
        json = json.replacingOccurrences(of: #""boundLogNumerator":[^,}]*,"#, with: "", options: .regularExpression)
        json = json.replacingOccurrences(of: #","boundCanary":\{[^}]*\}"#, with: "", options: .regularExpression)
        json = json.replacingOccurrences(of: #""boundCanary":\{[^}]*\},"#, with: "", options: .regularExpression)
        #expect(!json.contains("boundLogNumerator") && !json.contains("boundCanary"))
        let old = try JSONDecoder().decode(JudgeState.self, from: Data(json.utf8))
        #expect(old.version == 3)
        #expect(old.errors.boundLogEValues == Array(repeating: 0, count: CanaryJudge.acceptExposures.count))
        #expect(old.errors.boundCanary == JudgeCounts(requests: 0, events: 0))
        let (_, resumed) = try judge.judge(
            canary: JudgeSample(requests: 300, errors: 0), stable: JudgeSample(requests: 2700, errors: 3), nextWeight: 25, state: old)
        #expect(resumed.version == 4)
        #expect(resumed.errors.canary == JudgeCounts(requests: 600, events: 0))
        #expect(resumed.errors.boundCanary == JudgeCounts(requests: 300, events: 0))
    }

    @Test func aVersionTwoStateIsReadAndTheAbsoluteTestStartsFromIt() throws {
        // A controller upgraded mid-rollout finds a state without the absolute-margin e-process.
        let (_, state) = try judge.judge(
            canary: JudgeSample(requests: 300, errors: 1), stable: JudgeSample(requests: 2700, errors: 3), nextWeight: 25,
            state: judge.initialState())
        var json = try #require(String(data: JSONEncoder().encode(state), encoding: .utf8))
        json = json.replacingOccurrences(of: #""version":4"#, with: #""version":2"#)
        json = json.replacingOccurrences(of: #","boundLogNumerator":[^,}]*"#, with: "", options: .regularExpression)
        json = json.replacingOccurrences(of: #""boundLogNumerator":[^,}]*,"#, with: "", options: .regularExpression)
        json = json.replacingOccurrences(of: #","boundCanary":\{[^}]*\}"#, with: "", options: .regularExpression)
        json = json.replacingOccurrences(of: #""boundCanary":\{[^}]*\},"#, with: "", options: .regularExpression)
        for key in ["boundTestedRates", "boundLogEValues"] {
            json = json.replacingOccurrences(of: #","\#(key)":\[[^\]]*\]"#, with: "", options: .regularExpression)
            json = json.replacingOccurrences(of: #""\#(key)":\[[^\]]*\],"#, with: "", options: .regularExpression)
        }
        #expect(!json.contains("bound"))
        let old = try JSONDecoder().decode(JudgeState.self, from: Data(json.utf8))
        #expect(old.version == 2)
        #expect(old.errors.boundLogEValues == Array(repeating: 0, count: CanaryJudge.acceptExposures.count))
        let (_, resumed) = try judge.judge(
            canary: JudgeSample(requests: 300, errors: 0), stable: JudgeSample(requests: 2700, errors: 3), nextWeight: 25, state: old)
        #expect(resumed.version == CanaryJudge.stateVersion)
        #expect(resumed.errors.canary == JudgeCounts(requests: 600, events: 1))
        #expect(resumed.errors.boundLogEValues.contains { $0 > 0 })
    }

    @Test func relativeMarginIsShownByTheAcceptanceEValue() throws {
        // Equal traffic, equal error rates: the e-value of "equal" against "1.5× stable" is
        // ∏ over intervals of (1/2)^x_c (1/2)^x_s / ((0.6)^x_c (0.4)^x_s) (θ0 = 1/2, θ(1.5) = 0.6).
        var state = judge.initialState()
        var verdict: JudgeVerdict?
        for _ in 0..<3 {
            let result = try judge.judge(
                canary: JudgeSample(requests: 10000, errors: 100), stable: JudgeSample(requests: 10000, errors: 100),
                nextWeight: 100, state: state)
            state = result.state
            verdict = result.verdict
        }
        let expected = 3 * (100 * log(0.5 / 0.6) + 100 * log(0.5 / 0.4))
        let promotion = state.errors.acceptRatios.firstIndex(of: 1.5)!
        #expect(abs(state.errors.acceptLogLikelihoodRatios[promotion] - expected) < 1e-9)
        #expect(abs(log(verdict!.errors.acceptEValue) - expected) < 1e-9)
        #expect(verdict!.errors.acceptThreshold == 40)
        #expect(verdict!.decision == .advance)
        #expect(verdict!.explanation.contains("below 1.5× stable: e-value"))
    }

    @Test func evidenceAccumulatesAcrossIntervals() throws {
        // Each interval alone is too little to roll back a 5× canary; together they are enough.
        var state = judge.initialState()
        var decisions: [JudgeDecision] = []
        for _ in 0..<6 {
            let result = try judge.judge(
                canary: JudgeSample(requests: 1000, errors: 5), stable: JudgeSample(requests: 9000, errors: 9),
                nextWeight: 25, state: state)
            decisions.append(result.verdict.decision)
            state = result.state
        }
        #expect(decisions.first == .hold)
        #expect(decisions.last == .rollback)
        #expect(state.errors.canary == JudgeCounts(requests: 6000, events: 30))
    }

    @Test func stateSurvivesARestartExactly() throws {
        // Encoding the state to JSON and back between every interval (as the Rollout status does)
        // gives exactly the verdicts of an uninterrupted run.
        let intervals: [(JudgeSample, JudgeSample)] = (0..<8).map { i in
            let latency = try! JudgeHistogram(bounds: [50, 100, 250], bucketCounts: [Double(400 + i), 80, 15, 5])
            return (
                JudgeSample(requests: 500, errors: Double(i % 3), latency: latency),
                JudgeSample(requests: 4500, errors: Double(5 + i), latency: latency)
            )
        }
        var plain = judge.initialState()
        var restarted = judge.initialState()
        for (canary, stable) in intervals {
            let a = try judge.judge(canary: canary, stable: stable, nextWeight: 50, state: plain)
            let data = try JSONEncoder().encode(restarted)
            let decoded = try JSONDecoder().decode(JudgeState.self, from: data)
            let b = try judge.judge(canary: canary, stable: stable, nextWeight: 50, state: decoded)
            #expect(a.verdict == b.verdict)
            plain = a.state
            restarted = b.state
        }
        #expect(plain == restarted)
        // And the verdict itself is Codable, for status and Events.
        let verdict = try judge.judge(canary: intervals[0].0, stable: intervals[0].1, nextWeight: 50, state: plain).verdict
        let round = try JSONDecoder().decode(JudgeVerdict.self, from: JSONEncoder().encode(verdict))
        #expect(round == verdict)
    }

    @Test func slowerCanaryIsRolledBackOnLatency() throws {
        let bounds = [25.0, 50, 100, 250, 500]
        // Stable: 2 % slower than 250 ms. Canary: 20 %.
        let stable = JudgeSample(
            requests: 9000, errors: 0, latency: try JudgeHistogram(bounds: bounds, bucketCounts: [2000, 3000, 3000, 820, 150, 30]))
        let canary = JudgeSample(
            requests: 1000, errors: 0, latency: try JudgeHistogram(bounds: bounds, bucketCounts: [100, 200, 300, 200, 150, 50]))
        let (verdict, state) = try judge.judge(canary: canary, stable: stable, nextWeight: 25, state: judge.initialState())
        // Pooled, 80 of 10,000 requests (0.8 %) are slower than 500 ms and 380 (3.8 %) slower than
        // 250 ms: the lowest boundary that at most 1 % exceed (p99 from above) is 500 ms.
        #expect(state.latency.boundary == 500)
        #expect(verdict.decision == .rollback)
        let latency = try #require(verdict.latency)
        #expect(latency.metric == "share slower than 500 ms")
        #expect(latency.canary == JudgeCounts(requests: 1000, events: 50))
        #expect(latency.stable == JudgeCounts(requests: 9000, events: 30))
        #expect(latency.harmful && !verdict.errors.harmful)
        #expect(verdict.explanation.contains("share slower than 500 ms canary 5% (50/1000)"))
    }

    @Test func latencyWaitsForEnoughRequestsToChooseItsBoundary() throws {
        let bounds = [50.0, 100, 250]
        let histogram = try JudgeHistogram(bounds: bounds, bucketCounts: [20, 5, 1, 0])
        var state = judge.initialState()
        let first = try judge.judge(
            canary: JudgeSample(requests: 26, errors: 0, latency: histogram),
            stable: JudgeSample(requests: 26, errors: 0, latency: histogram), nextWeight: 25, state: state)
        state = first.state
        #expect(state.latency.boundary == nil)
        #expect(state.latency.pooled?.total == 52)
        #expect(first.verdict.latency == nil)
        #expect(first.verdict.decision == .hold)
        #expect(first.verdict.explanation.contains("latency: 52 of 200 requests needed to choose a boundary"))
    }

    @Test func histogramQuantileInterpolatesLikePrometheus() {
        // 100 requests: 50 ≤ 10 ms, 40 in (10, 20], 10 in (20, 40].
        let histogram = JudgeHistogram(bounds: [10, 20, 40], cumulativeCounts: [50, 90, 100], total: 100)
        #expect(histogram.quantile(0.5) == 10)
        #expect(histogram.quantile(0.7) == 15)
        #expect(histogram.quantile(0.99) == 38)
        #expect(histogram.quantile(0.25) == 5)
        // Quantiles in the +Inf bucket report the last finite bound.
        let overflow = JudgeHistogram(bounds: [10, 20], cumulativeCounts: [50, 60], total: 100)
        #expect(overflow.quantile(0.99) == 20)
        #expect(JudgeHistogram(bounds: [10], cumulativeCounts: [0], total: 0).quantile(0.99) == nil)
    }

    @Test func histogramFromBucketCountsChecksItsLength() throws {
        let histogram = try JudgeHistogram(bounds: [10, 20], bucketCounts: [5, 3, 2])
        #expect(histogram == JudgeHistogram(bounds: [10, 20], cumulativeCounts: [5, 8], total: 10))
        #expect(throws: JudgeError(field: "bucketCounts", problem: "needs one more entry than bounds (3), got 2")) {
            _ = try JudgeHistogram(bounds: [10, 20], bucketCounts: [5, 3])
        }
    }

    @Test func extrapolatedCountsAreRepaired() throws {
        let bounds = [10.0, 20, 40]
        let wobbly = JudgeHistogram(bounds: bounds, cumulativeCounts: [50.2, 49.9, 100.4], total: 99.8)
        let repaired = try wobbly.normalised(field: "canary.latency")
        #expect(repaired.cumulativeCounts == [50, 50, 100])
        #expect(repaired.total == 100)
    }

    @Test func badInputNamesTheField() {
        let state = judge.initialState()
        let ok = JudgeSample(requests: 10, errors: 0)
        func error(_ body: () throws -> Void) -> JudgeError? {
            do { try body() } catch let e as JudgeError { return e } catch { return nil }
            return nil
        }
        #expect(error { _ = try judge.judge(canary: JudgeSample(requests: 10, errors: 12), stable: ok, nextWeight: 25, state: state) }?.field == "canary.errors")
        #expect(error { _ = try judge.judge(canary: ok, stable: JudgeSample(requests: -1, errors: 0), nextWeight: 25, state: state) }?.field == "stable.requests")
        #expect(error { _ = try judge.judge(canary: JudgeSample(requests: .nan, errors: 0), stable: ok, nextWeight: 25, state: state) }?.field == "canary.requests")
        #expect(error { _ = try judge.judge(canary: ok, stable: ok, nextWeight: 0, state: state) }?.field == "nextWeight")
        #expect(error { _ = try judge.judge(canary: ok, stable: ok, nextWeight: 120, state: state) }?.field == "nextWeight")
        var future = state
        future.version = CanaryJudge.stateVersion + 1
        #expect(error { _ = try judge.judge(canary: ok, stable: ok, nextWeight: 25, state: future) }?.field == "state.version")
        let a = JudgeHistogram(bounds: [10, 20], cumulativeCounts: [5, 10], total: 10)
        let b = JudgeHistogram(bounds: [10, 30], cumulativeCounts: [5, 10], total: 10)
        let mismatch = error {
            _ = try judge.judge(
                canary: JudgeSample(requests: 10, errors: 0, latency: a), stable: JudgeSample(requests: 10, errors: 0, latency: b),
                nextWeight: 25, state: state)
        }
        #expect(mismatch?.field == "canary.latency.bounds")
        let unordered = JudgeHistogram(bounds: [20, 10], cumulativeCounts: [5, 10], total: 10)
        let unorderedError = error {
            _ = try judge.judge(
                canary: JudgeSample(requests: 10, errors: 0, latency: unordered),
                stable: JudgeSample(requests: 10, errors: 0, latency: unordered), nextWeight: 25, state: state)
        }
        #expect(unorderedError?.field == "canary.latency.bounds[1]")
        #expect(unorderedError?.description.contains("greater than the previous bound") == true)
        let short = JudgeHistogram(bounds: [10, 20], cumulativeCounts: [5], total: 10)
        #expect(error {
            _ = try judge.judge(
                canary: JudgeSample(requests: 10, errors: 0, latency: short),
                stable: JudgeSample(requests: 10, errors: 0, latency: a), nextWeight: 25, state: state)
        }?.field == "canary.latency")
    }

    @Test func configurationIsValidatedAndDecodesWithDefaults() throws {
        #expect(throws: JudgeError(field: "falseRollbackRate", problem: "must be a probability above 0 and at most 0.5, got 0.0")) {
            _ = try CanaryJudge(configuration: JudgeConfiguration(falseRollbackRate: 0))
        }
        #expect(throws: JudgeError.self) { _ = try CanaryJudge(configuration: JudgeConfiguration(errorRateRatioMargin: 1)) }
        #expect(throws: JudgeError.self) { _ = try CanaryJudge(configuration: JudgeConfiguration(errorRateAbsoluteMargin: -0.1)) }
        let partial = try JSONDecoder().decode(JudgeConfiguration.self, from: Data(#"{"falseRollbackRate": 0.001}"#.utf8))
        #expect(partial.falseRollbackRate == 0.001)
        #expect(partial.errorRateRatioMargin == JudgeConfiguration.default.errorRateRatioMargin)
        let strict = try CanaryJudge(configuration: partial)
        #expect(strict.initialState().errors.harmRatios.count == 8)
    }

    /// Every field has an upper bound too: the largest ratio margin that passed (1e308) made the acceptance grid
    /// infinite, and a status holding inf cannot be encoded, so the rollout never left its first stage.
    @Test(arguments: [
        (JudgeConfiguration(errorRateRatioMargin: 1e308), "errorRateRatioMargin", "must be a ratio above 1 and at most 100, got 1e+308"),
        (JudgeConfiguration(latencyTailRatioMargin: 100.5), "latencyTailRatioMargin", "must be a ratio above 1 and at most 100, got 100.5"),
        (JudgeConfiguration(falseRollbackRate: 0.6), "falseRollbackRate", "must be a probability above 0 and at most 0.5, got 0.6"),
        (JudgeConfiguration(falsePromotionRate: .nan), "falsePromotionRate", "must be a probability above 0 and at most 0.5, got nan"),
        (JudgeConfiguration(latencyTailShare: 0.9), "latencyTailShare", "must be a probability above 0 and at most 0.5, got 0.9"),
        (JudgeConfiguration(errorRateAbsoluteMargin: 1), "errorRateAbsoluteMargin", "must be a rate in [0, 1), got 1.0"),
        (JudgeConfiguration(latencyBoundarySamples: 1e12), "latencyBoundarySamples", "must be from 1 to 1000000000 requests, got 1000000000000.0"),
    ])
    func everyFieldIsBounded(configuration: JudgeConfiguration, field: String, problem: String) {
        #expect(throws: JudgeError(field: field, problem: problem)) { _ = try CanaryJudge(configuration: configuration) }
    }

    /// At the widest valid settings and extreme counts, every number in the state and the verdict stays finite,
    /// so both encode as JSON (which has no inf or NaN).
    @Test func theWidestValidSettingsKeepEveryNumberFinite() throws {
        let judge = try CanaryJudge(configuration: JudgeConfiguration(
            falseRollbackRate: 0.5, falsePromotionRate: 0.5, errorRateRatioMargin: 100, errorRateAbsoluteMargin: 0.999_999,
            latencyTailRatioMargin: 100, latencyTailAbsoluteMargin: 0.999_999, latencyTailShare: 0.5, latencyBoundarySamples: 1))
        var state = judge.initialState()
        let histogram = JudgeHistogram(bounds: [10, 100], cumulativeCounts: [1e12, 1e15], total: 1e15)
        let samples: [(JudgeSample, JudgeSample)] = [
            (JudgeSample(requests: 1e15, errors: 1e15, latency: histogram), JudgeSample(requests: 1e15, errors: 0, latency: histogram)),
            (JudgeSample(requests: 1e15, errors: 0, latency: histogram), JudgeSample(requests: 1e15, errors: 1e15, latency: histogram)),
            (JudgeSample(requests: 0, errors: 0, latency: histogram), JudgeSample(requests: 1, errors: 1, latency: histogram)),
        ]
        for weight in [1.0, 5, 50, 100] {
            for (canary, stable) in samples {
                let result = try judge.judge(canary: canary, stable: stable, nextWeight: weight, state: state)
                state = result.state
                let encoder = JSONEncoder()
                _ = try encoder.encode(result.state)
                _ = try encoder.encode(result.verdict)
            }
        }
        #expect(state.errors.acceptRatios.allSatisfy { $0.isFinite && $0 <= 1e6 })
    }
}

/// The false-rollback guarantee, checked by simulation with a fixed seed.
@Suite struct JudgeGuaranteeTests {
    /// Replays a rollout driven by the judge on simulated traffic; returns the last decision.
    static func rollout(
        simulator: TrafficSimulator, judge: CanaryJudge, intervals: Int, rng: inout SplitMix64
    ) throws -> (decision: JudgeDecision, interval: Int) {
        let stages: [Double] = [10, 25, 50]
        var stage = 0
        var state = judge.initialState()
        for interval in 1...intervals {
            let tick = simulator.tick(seconds: 30, using: &rng)
            let (c, s) = tick.observe(weight: stages[stage])
            let next = stage + 1 < stages.count ? stages[stage + 1] : 100
            let result = try judge.judge(
                canary: try c.sample(bounds: simulator.bounds), stable: try s.sample(bounds: simulator.bounds),
                nextWeight: next, state: state)
            state = result.state
            switch result.verdict.decision {
            case .rollback: return (.rollback, interval)
            case .advance:
                if stage + 1 == stages.count { return (.advance, interval) }
                stage += 1
            case .hold: continue
            }
        }
        return (.hold, intervals)
    }

    @Test(arguments: [0.001, 0.01])
    func goodCanariesAreRarelyRolledBack(baseline: Double) throws {
        // A canary identical to stable, watched every 30 s for up to 30 minutes at 200 req/s.
        let judge = try CanaryJudge()
        let version = SimulatedVersion(errorRate: baseline, latency: SimulatedLatency(median: 50, sigma: 0.6))
        let simulator = TrafficSimulator(requestsPerSecond: 200, canary: version, stable: version, weights: [10, 25, 50])
        let root = SplitMix64(seed: 2026)
        var rollbacks = 0
        let runs = 600
        for run in 0..<runs {
            var rng = root.split(UInt64(run))
            if try Self.rollout(simulator: simulator, judge: judge, intervals: 60, rng: &rng).decision == .rollback {
                rollbacks += 1
            }
        }
        #expect(Double(rollbacks) / Double(runs) <= 0.01, "\(rollbacks) of \(runs) good canaries rolled back")
    }

    @Test func canariesJustWorseThanTheMarginAreRarelyPromoted() throws {
        // 1.6× stable's 1 % error rate: worse than both margins (×1.5 and +0.1 pp) at full traffic.
        let judge = try CanaryJudge()
        let latency = SimulatedLatency(median: 50, sigma: 0.6)
        let simulator = TrafficSimulator(
            requestsPerSecond: 200, canary: SimulatedVersion(errorRate: 0.016, latency: latency),
            stable: SimulatedVersion(errorRate: 0.01, latency: latency), weights: [10, 25, 50])
        let root = SplitMix64(seed: 16)
        var promoted = 0
        let runs = 400
        for run in 0..<runs {
            var rng = root.split(UInt64(run))
            if try Self.rollout(simulator: simulator, judge: judge, intervals: 60, rng: &rng).decision == .advance {
                promoted += 1
            }
        }
        #expect(Double(promoted) / Double(runs) <= 0.05, "\(promoted) of \(runs) bad canaries promoted")
    }

    @Test func canariesJustWorseThanTheAbsoluteMarginAreRarelyPromoted() throws {
        // Stable 0.1 %, canary 0.21 %: worse than ×1.5 and than +0.1 pp at full traffic. The acceptance
        // test's ratio follows the absolute margin (about 2× here), so this is where it could go wrong.
        let judge = try CanaryJudge()
        let latency = SimulatedLatency(median: 50, sigma: 0.6)
        let simulator = TrafficSimulator(
            requestsPerSecond: 2000, canary: SimulatedVersion(errorRate: 0.0021, latency: latency),
            stable: SimulatedVersion(errorRate: 0.001, latency: latency), weights: [10, 25, 50])
        let root = SplitMix64(seed: 21)
        var promoted = 0
        let runs = 200
        for run in 0..<runs {
            var rng = root.split(UInt64(run))
            if try Self.rollout(simulator: simulator, judge: judge, intervals: 40, rng: &rng).decision == .advance {
                promoted += 1
            }
        }
        #expect(Double(promoted) / Double(runs) <= 0.05, "\(promoted) of \(runs) bad canaries promoted")
    }

    @Test func theAcceptanceRatioFollowsTheAbsoluteMarginFromEarlierIntervalsOnly() throws {
        let judge = try CanaryJudge()
        // First interval: nothing known about stable before it, so the relative floors are tested.
        let first = try judge.judge(
            canary: JudgeSample(requests: 10000, errors: 10), stable: JudgeSample(requests: 90000, errors: 90),
            nextWeight: 100, state: judge.initialState())
        #expect(first.state.errors.acceptTestedRatios == first.state.errors.acceptRatios)
        // Second interval: 1 + 0.001 / (w × stable's upper bound after 90/90000), never below the floor.
        let upper = JudgeStatistics.upperConfidenceBound(events: 90, trials: 90000, alpha: 0.05 / 8)
        let second = try judge.judge(
            canary: JudgeSample(requests: 10000, errors: 10), stable: JudgeSample(requests: 90000, errors: 90),
            nextWeight: 100, state: first.state)
        for (i, w) in CanaryJudge.acceptExposures.enumerated() {
            let expected = max(second.state.errors.acceptRatios[i], 1 + 0.001 / (w * upper))
            #expect(abs(second.state.errors.acceptTestedRatios[i] - expected) < 1e-9)
        }
        #expect(second.verdict.errors.allowedRatio == second.state.errors.acceptTestedRatios[0])
    }

    @Test func aTwentyTimesErrorCanaryAtHighTrafficIsRolledBackInTheFirstInterval() throws {
        let judge = try CanaryJudge()
        let latency = SimulatedLatency(median: 50, sigma: 0.6)
        let simulator = TrafficSimulator(
            requestsPerSecond: 1000, canary: SimulatedVersion(errorRate: 0.02, latency: latency),
            stable: SimulatedVersion(errorRate: 0.001, latency: latency), weights: [10, 25, 50])
        let root = SplitMix64(seed: 20)
        var first = 0
        for run in 0..<200 {
            var rng = root.split(UInt64(run))
            let outcome = try Self.rollout(simulator: simulator, judge: judge, intervals: 20, rng: &rng)
            #expect(outcome.decision == .rollback)
            if outcome.interval == 1 { first += 1 }
        }
        #expect(first >= 198, "only \(first) of 200 rolled back in the first interval")
    }
}
