import FledgeCore
import FledgeJSON
import FledgeJudge
import Testing

/// Counts of one 10 s analysis window: `rate` requests per second split by the canary weight, errors and slow
/// requests in exact proportions (deterministic, so every assertion is about the decision, not luck).
func windowCounts(
    rate: Double, canaryWeight: Int, canaryErrorRate: Double, stableErrorRate: Double, seconds: Double = 10
) -> (canary: JudgeSample, stable: JudgeSample) {
    let total = rate * seconds
    let canaryRequests = (total * Double(canaryWeight) / 100).rounded()
    let stableRequests = total - canaryRequests
    // Istio's buckets; 60 % ≤ 50 ms, 35 % more ≤ 100 ms, 4 % more ≤ 250 ms, 1 % ≤ 500 ms.
    func histogram(_ n: Double) -> JudgeHistogram {
        let shares: [Double] = [0, 0, 0, 0, 0, 0.6, 0.35, 0.04, 0.01] + Array(repeating: 0, count: 11)
        return try! JudgeHistogram(bounds: istioLatencyBounds, bucketCounts: shares.map { ($0 * n).rounded() })
    }
    return (
        JudgeSample(requests: canaryRequests, errors: (canaryRequests * canaryErrorRate).rounded(), latency: histogram(canaryRequests)),
        JudgeSample(requests: stableRequests, errors: (stableRequests * stableErrorRate).rounded(), latency: histogram(stableRequests))
    )
}

@Suite("decide with the statistical judge")
struct JudgeScenarioTests {
    @Test func twentyTimesTheErrorsRollsBackAtTheFirstAnalysis() throws {
        // failureLimit 3: the guardrails alone would need three failed intervals.
        var sim = Sim()
        sim.behaviour = .errors(successRate: 80)
        sim.counts = { windowCounts(rate: 100, canaryWeight: $0, canaryErrorRate: 0.2, stableErrorRate: 0.01) }
        sim.run { $0.phase == .rollingBack || $0.phase == .failed }
        let status = sim.status
        #expect(status.failedChecks == 1, "rolled back at the first analysis, not at failureLimit")
        #expect(status.condition(ConditionType.progressing)?.reason == "HarmConclusive")
        #expect(status.condition(ConditionType.analysis)?.reason == "HarmConclusive")
        let judge = try #require(status.lastAnalysis?.first { $0.name == "judge" })
        #expect(judge.verdict == .failed)
        let errors = try #require(status.lastAnalysis?.first { $0.name == "judge-errors" }?.evidence)
        #expect(errors.canary == JudgeCounts(requests: 100, events: 20))
        #expect(errors.stable == JudgeCounts(requests: 900, events: 9))
        #expect(errors.harmful && errors.harmEValue >= errors.harmThreshold)
        // The Event carries the numbers.
        let event = try #require(sim.events.first { $0.reason == "RollingBack" })
        #expect(event.message.contains("HarmConclusive"))
        #expect(event.message.contains("canary 20% (20/100) vs stable 1% (9/900)"), "\(event.message)")
        #expect(event.message.contains("harm e-value"))
        sim.run(untilPhase: .failed)
        #expect(sim.phase == .failed)
        #expect(sim.observedCanaryWeight == 0)
        #expect(sim.weightHistory == [10, 0])
    }

    @Test func goodCanaryIsPromotedWithTheJudgesPermissionAtEveryStage() throws {
        var sim = Sim()
        sim.counts = { windowCounts(rate: 2000, canaryWeight: $0, canaryErrorRate: 0.01, stableErrorRate: 0.01) }
        sim.run(untilPhase: .succeeded)
        #expect(sim.phase == .succeeded)
        #expect(sim.weightHistory == [10, 25, 50, 100, 0])
        #expect(sim.status.failedChecks == 0)
        // The stages below 100 % advanced with the judge's permission; the 100 % stage has nothing to compare.
        let accepted = sim.events.filter { $0.reason == "JudgeAccepted" }.map(\.message)
        #expect(accepted.count == 3, "\(accepted)")
        #expect(accepted.first?.hasPrefix("stage 1/4: Canary not worse than the margins, advance to 25%") == true, "\(accepted)")
        #expect(accepted.last?.contains("Canary not worse than the margins, promote") == true, "\(accepted)")
        let judgeState = try #require(sim.status.judge)
        #expect(judgeState.intervals >= 3)
    }

    /// Timestamps are whole seconds, so a stage entered in the second its predecessor's last check was measured
    /// quoted that check's verdict until its own first check: "stage 2/4 at 25%: … judge: Canary not worse than the
    /// margins, advance to 25%" (seen with the real controller), as if this stage were judged and accepted.
    @Test func aNewStageDoesNotQuoteThePreviousStagesVerdict() throws {
        var sim = Sim()
        sim.counts = { windowCounts(rate: 2000, canaryWeight: $0, canaryErrorRate: 0.01, stableErrorRate: 0.01) }
        sim.run(untilPhase: .succeeded)
        #expect(sim.phase == .succeeded)
        let messages = sim.decisions.compactMap(\.status.message)
        for (stage, weight) in [(2, 25), (3, 50)] {
            let held = messages.filter { $0.hasPrefix("stage \(stage)/4 at \(weight)%: ") }
            #expect(!held.isEmpty)
            #expect(!held.contains { $0.contains("advance to \(weight)%") }, "\(held)")
            #expect(
                held.first?.hasSuffix("judge: holding until counts of this stage are judged") == true, "\(held)")
        }
    }

    /// Canary traffic while stable has none (header-routed test traffic first): nothing to compare, so the judge
    /// holds and says why; once stable serves too the canary is judged and promoted. Given to the judge, those canary
    /// requests entered its absolute-margin test against stable's unknown rate as ½, and it held the canary for good
    /// ("nor below 0.4%: e-value 0", seen with the real controller).
    @Test func canaryTrafficBeforeStableHasAnyHoldsThenIsJudged() throws {
        final class Intervals { var count = 0 }
        let intervals = Intervals()
        var sim = Sim(spec: seedSpec(progressDeadline: "30m"))
        sim.counts = { weight in
            intervals.count += 1
            let (canary, stable) = windowCounts(rate: 2000, canaryWeight: weight, canaryErrorRate: 0, stableErrorRate: 0)
            guard intervals.count <= 3 else { return (canary, stable) }
            // All of it tagged for the canary.
            return (JudgeSample(requests: canary.requests + stable.requests, errors: 0), JudgeSample(requests: 0, errors: 0))
        }
        sim.run { intervals.count >= 3 && $0.status.lastAnalysis != nil }
        #expect(sim.status.stage == 0 && sim.weightHistory == [10])
        #expect(!sim.events.contains { $0.reason == "JudgeAccepted" })
        let message = try #require(sim.status.message)
        #expect(
            message.contains(
                "judge: Not compared, holding (not enough evidence to advance to 25%): stable has served no requests since this revision started, "
                    + "so the canary's 20000 requests (0 5xx) in this interval have nothing to be compared with"), "\(message)")
        #expect(sim.status.judge != nil, "kept, so the stage waits for the judge")
        sim.run { $0.phase == .succeeded || $0.phase == .failed }
        #expect(sim.phase == .succeeded, "\(sim.status.message ?? "")")
        #expect(sim.events.filter { $0.reason == "JudgeAccepted" }.count == 3)
    }

    @Test func oneRequestPerSecondHoldsAsInconclusiveAndSaysSo() throws {
        // minRequests 1 so the guardrails pass: only the judge's evidence is missing.
        var sim = Sim(spec: seedSpec(minRequests: 1, progressDeadline: "30m"))
        sim.counts = { windowCounts(rate: 1, canaryWeight: $0, canaryErrorRate: 0, stableErrorRate: 0) }
        let start = sim.now
        sim.run { $0.now.seconds - start.seconds > 20 * 60 }
        let status = sim.status
        #expect(sim.phase == .progressing)
        #expect(status.stage == 0)
        #expect(sim.weightHistory == [10])
        #expect(!sim.events.contains { $0.reason == "JudgeAccepted" })
        #expect(status.passedChecks > 100, "the guardrails passed every interval")
        #expect(status.inconclusiveChecks == status.passedChecks)
        #expect(status.condition(ConditionType.analysis)?.reason == "Inconclusive")
        let message = try #require(status.message)
        #expect(message.contains("judge: Inconclusive, holding (not enough evidence to advance to 25%)"), "\(message)")
        #expect(message.contains("5xx rate canary 0% (0/"), "\(message)")
        let errors = try #require(status.lastAnalysis?.first { $0.name == "judge-errors" })
        #expect(errors.verdict == .inconclusive)
        #expect(errors.evidence?.acceptable == false)
        #expect(errors.threshold.hasPrefix("harm e-value >= 200"))
    }

    @Test func withoutCountsDecideIsUnchanged() {
        var plain = Sim()
        plain.run(untilPhase: .succeeded)
        var disabled = Sim(spec: {
            var spec = seedSpec()
            spec.analysis?.judge = JudgeSpec(enabled: false)
            return spec
        }())
        disabled.counts = { windowCounts(rate: 1, canaryWeight: $0, canaryErrorRate: 0, stableErrorRate: 0) }
        disabled.run(untilPhase: .succeeded)
        #expect(plain.weightHistory == disabled.weightHistory)
        #expect(plain.now == disabled.now)
        #expect(plain.status.judge == nil && disabled.status.judge == nil)
        // The analysis requests say whether counts are wanted.
        let requests = { (sim: Sim) in
            sim.decisions.flatMap(\.actions).compactMap { if case .runAnalysis(let r) = $0 { return r } else { return nil } }
        }
        #expect(requests(disabled).allSatisfy { !$0.needsCounts })
        let wanted = requests(plain)
        #expect(wanted.contains { $0.needsCounts } && wanted.contains { !$0.needsCounts }, "every stage but the one at 100 %")
        #expect(!(plain.status.lastAnalysis ?? []).contains { $0.name.hasPrefix("judge") })
    }

    @Test func judgeStateSurvivesARestartThroughJSON() throws {
        var sim = Sim(spec: seedSpec(minRequests: 1))
        sim.counts = { windowCounts(rate: 20, canaryWeight: $0, canaryErrorRate: 0.01, stableErrorRate: 0.01) }
        let start = sim.now
        sim.run { $0.now.seconds - start.seconds > 120 }
        let state = try #require(sim.status.judge)
        let back = try Rollout(json: JSONValue(encoding: sim.rollout))
        #expect(back.status?.judge == state)
        #expect(back.status == sim.rollout.status)
        // A restarted controller (status from JSON) decides exactly as the one that kept running.
        var restarted = sim
        restarted.rollout = back
        sim.run { $0.now.seconds - start.seconds > 400 }
        restarted.run { $0.now.seconds - start.seconds > 400 }
        #expect(restarted.status == sim.status)
    }

    @Test func malformedCountsAreAProviderErrorNotAVerdict() {
        var sim = Sim(spec: seedSpec(providerErrorLimit: 2))
        sim.counts = { _ in (JudgeSample(requests: 5, errors: 9), JudgeSample(requests: 100, errors: 0)) }
        sim.run { $0.phase == .rollingBack }
        #expect(sim.status.condition(ConditionType.progressing)?.reason == "MetricProviderUnavailable")
        #expect(sim.status.lastAnalysis?.first { $0.name == "judge" }?.message?.contains("canary.errors") == true)
        #expect(sim.status.judge == nil, "rejected counts leave no trace in the evidence")
    }

    /// Upper bounds too, each with its path: `errorRateRatioMargin: 1e308` passed and left every status write
    /// failing on an infinite acceptance ratio.
    @Test func judgeSettingsHaveUpperBoundsWithTheirPaths() throws {
        var spec = seedSpec()
        spec.analysis?.judge = JudgeSpec(
            falseRollbackRate: 0.9, falsePromotionRate: 0.75, errorRateRatioMargin: 1e308, errorRateAbsoluteMargin: 2,
            latencyTailRatioMargin: 101, latencyTailAbsoluteMargin: 1, latencyTailShare: 0.51, latencyBoundarySamples: 1e10)
        let issues = spec.validate().map(\.description)
        for field in [
            "falseRollbackRate", "falsePromotionRate", "errorRateRatioMargin", "errorRateAbsoluteMargin", "latencyTailRatioMargin",
            "latencyTailAbsoluteMargin", "latencyTailShare", "latencyBoundarySamples",
        ] {
            #expect(issues.contains { $0.hasPrefix("spec.analysis.judge.\(field): must be") }, "\(field): \(issues)")
        }
        #expect(issues.contains("spec.analysis.judge.errorRateRatioMargin: must be a ratio above 1 and at most 100, got 1e+308"), "\(issues)")
        #expect(issues.count == 8, "\(issues)")
        spec.analysis?.judge = JudgeSpec(errorRateRatioMargin: 100, latencyTailShare: 0.5)
        #expect(spec.validate().isEmpty)
    }

    @Test func judgeSettingsAreValidatedWithTheirPaths() throws {
        var spec = seedSpec()
        spec.analysis?.judge = JudgeSpec(falseRollbackRate: 1.5, errorRateRatioMargin: 0.9, latencyBoundarySamples: 0)
        let issues = spec.validate().map(\.description)
        #expect(issues.contains { $0.hasPrefix("spec.analysis.judge.falseRollbackRate: must be a probability above 0 and at most 0.5") })
        #expect(issues.contains { $0.hasPrefix("spec.analysis.judge.errorRateRatioMargin: must be a ratio above 1 and at most 100") })
        #expect(issues.contains { $0.hasPrefix("spec.analysis.judge.latencyBoundarySamples: must be from 1 to 1000000000") })
        #expect(issues.count == 3, "\(issues)")

        spec.analysis?.judge = JudgeSpec(falseRollbackRate: 0.001, errorRateAbsoluteMargin: 0.002)
        let plan = try spec.plan().get()
        #expect(plan.analysis.judge.enabled)
        #expect(plan.analysis.judge.configuration.falseRollbackRate == 0.001)
        #expect(plan.analysis.judge.configuration.errorRateAbsoluteMargin == 0.002)
        #expect(plan.analysis.judge.configuration.falsePromotionRate == JudgeConfiguration.default.falsePromotionRate)
        // Decoding from YAML-shaped JSON.
        let decoded = try JSONValue(parsing: #"{"enabled": false, "falseRollbackRate": 0.02}"#).decode(JudgeSpec.self)
        #expect(decoded == JudgeSpec(enabled: false, falseRollbackRate: 0.02))
    }

    /// The last measurement of a stage is judged in the same second the next stage's weight is confirmed: its "advance
    /// to 25%" was shown under stage 2 at 25% until that stage's first measurement.
    @Test func aNewStagesMessageDoesNotCarryThePreviousStagesJudgement() {
        var sim = Sim()
        sim.counts = { windowCounts(rate: 1000, canaryWeight: $0, canaryErrorRate: 0.001, stableErrorRate: 0.001) }
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 && $0.status.stageStartedAt != nil }
        #expect(sim.status.message == "stage 2/4 at 25%: 0/2 passing checks, hold 20s; judge: holding until counts of this stage are judged")
        sim.run { $0.status.passedChecks == 1 }
        #expect(sim.status.message?.contains("not enough evidence to advance to 50%") == true, "\(sim.status.message ?? "")")
    }
}
