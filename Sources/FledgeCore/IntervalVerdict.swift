import FledgeJudge

/// What the statistical judge made of one interval's counts.
public enum JudgeOutcome: Sendable, Equatable {
    /// The judge's verdict and the state to carry to the next interval.
    case judged(JudgeVerdict, state: JudgeState)
    /// The counts (or the judge's configuration or state) could not be judged.
    case rejected(JudgeError)
    /// Not given to the judge: the canary served requests but stable has served none since the revision started, so
    /// there is nothing to compare them with. The judge holds (the message says why) and `state` is the one to keep,
    /// so the stage still waits for the judge's permission.
    case notCompared(String, state: JudgeState)
}

/// One analysis interval judged as the controller judges it: the metric checks, then the statistical judge.
public struct IntervalJudgement: Sendable, Equatable {
    /// The interval's verdict, checks and judge combined: a judge rollback is Failed, a judge error Error (unless a
    /// check failed), a judge hold Inconclusive when the checks passed and the judge has not yet accepted the stage.
    public var verdict: Verdict
    /// The metric checks' verdict alone (the guardrails).
    public var checks: Verdict
    /// One result per metric check.
    public var checkResults: [MetricResult]
    /// The judge's results (`judge`, `judge-errors`, `judge-latency`); empty when the judge does not apply.
    public var judgeResults: [MetricResult]
    /// nil when the judge does not apply: disabled, counts missing, or a stage at 100 % where stable serves nothing.
    public var judge: JudgeOutcome?
    /// One line: every check, then the judge.
    public var summary: String

    /// The checks' results followed by the judge's, as status records them.
    public var metrics: [MetricResult] { checkResults + judgeResults }

    /// The judge's decision, nil when it did not judge; a hold when there was nothing to compare.
    public var judgeDecision: JudgeDecision? {
        switch judge {
        case .judged(let verdict, _)?: verdict.decision
        case .notCompared?: .hold
        case .rejected?, nil: nil
        }
    }
}

/// Judges `result` at the rollout's current stage (`status.stage`, the first when none) exactly as the controller
/// does, continuing the judge from `status.judge`. Pure: the controller applies the outcome (rollback, counters,
/// the judge's state); `fledge analyze` prints it.
public func judgeInterval(_ plan: RolloutPlan, status: RolloutStatus, result: IntervalResult) -> IntervalJudgement {
    let (checks, checkResults, checkSummary) = judgeInterval(plan.analysis, result)
    var judgement = IntervalJudgement(
        verdict: checks, checks: checks, checkResults: checkResults, judgeResults: [], judge: nil, summary: checkSummary)
    let index = min(max(status.stage ?? 0, 0), plan.stages.count - 1)
    guard plan.analysis.judge.enabled, index >= 0, plan.stages[index].weight < 100 else { return judgement }
    guard let canary = result.canaryCounts, let stable = result.stableCounts else {
        // Asked for and not measured: the judge cannot judge this interval, which must not let the metrics alone
        // advance the stage.
        if let error = result.countsError {
            judgement.judgeCouldNotJudge("metric provider error: \(error)", time: result.time)
        }
        return judgement
    }
    let next = index + 1 < plan.stages.count ? plan.stages[index + 1].weight : 100
    do {
        let judge = try CanaryJudge(configuration: plan.analysis.judge.configuration)
        let state = status.judge ?? judge.initialState()
        // Canary requests while stable has served none yet (header-routed test traffic, stable's series missing):
        // nothing to compare them with, as at a 100 % stage. Given to the judge, they also went into its
        // absolute-margin test at stable's rate plugged in as ½ (no data), which no later evidence could undo: the
        // judge held such a canary for good ("nor below 0.4%: e-value 0") once stable's traffic was back.
        if stable.requests.rounded() == 0, state.errors.stable.requests == 0, canary.requests.rounded() > 0 {
            let target = next >= 100 ? "promote" : "advance to \(next)%"
            let message =
                "Not compared, holding (not enough evidence to \(target)): stable has served no requests since this revision "
                + "started, so the canary's \(fmt(canary.requests.rounded())) requests (\(fmt(canary.errors.rounded())) 5xx) in this "
                + "interval have nothing to be compared with"
            judgement.judge = .notCompared(message, state: state)
            judgement.judgeResults = [
                MetricResult(
                    name: "judge", value: nil, stableValue: nil, threshold: "roll back on harm, advance within margins",
                    verdict: .inconclusive, message: message, requests: Int64(canary.requests.rounded()), time: result.time)
            ]
            judgement.summary += "; judge: \(message)"
            if checks == .passed, status.judgeAcceptedStage != index { judgement.verdict = .inconclusive }
            return judgement
        }
        let (verdict, nextState) = try judge.judge(canary: canary, stable: stable, nextWeight: Double(next), state: state)
        judgement.judge = .judged(verdict, state: nextState)
        judgement.judgeResults = judgeResults(verdict, time: result.time)
        judgement.summary += "; judge: \(verdict.explanation)"
        switch verdict.decision {
        case .rollback: judgement.verdict = .failed
        case .advance: break
        case .hold:
            // Until the judge accepts the stage its evidence is missing, however well the checks went.
            if checks == .passed, status.judgeAcceptedStage != index { judgement.verdict = .inconclusive }
        }
    } catch {
        judgement.judge = .rejected(error)
        judgement.judgeCouldNotJudge("the judge rejected the counts: \(error)", time: result.time)
    }
    return judgement
}

extension IntervalJudgement {
    /// The judge could not judge the interval (counts missing or refused): an error result in its place, and the
    /// interval an error unless the checks already failed it.
    mutating func judgeCouldNotJudge(_ message: String, time: Timestamp) {
        judgeResults = [
            MetricResult(
                name: "judge", value: nil, stableValue: nil, threshold: "counts of both workloads", verdict: .error, message: message,
                requests: nil, time: time)
        ]
        summary += "; judge: \(message)"
        if checks != .failed { verdict = .error }
    }
}

/// The judge's evidence as metric results, every number kept in `evidence`.
/// `judge`: the decision and its explanation; `judge-errors`, `judge-latency`: each comparison.
func judgeResults(_ judged: JudgeVerdict, time: Timestamp) -> [MetricResult] {
    let decision: Verdict = judged.decision == .rollback ? .failed : judged.decision == .advance ? .passed : .inconclusive
    let overall = MetricResult(
        name: "judge", value: nil, stableValue: nil, threshold: "roll back on harm, advance within margins",
        verdict: decision, message: judged.explanation, requests: Int64(judged.errors.canary.requests), time: time)
    return [overall] + [("judge-errors", judged.errors), ("judge-latency", judged.latency)].compactMap { name, evidence in
        guard let evidence else { return nil }
        // Short enough for a table column; the summary and `evidence` say the rest.
        let threshold =
            "harm e-value >= \(fmt2(evidence.harmThreshold)); advance ≤ \(fmt2(evidence.allowedRatio))× stable "
            + "(e >= \(fmt2(evidence.acceptThreshold))) or < \(fmt2(evidence.allowedRate * 100))% (e >= \(fmt2(evidence.boundThreshold ?? 0)))"
        let verdict: Verdict = evidence.harmful ? .failed : evidence.acceptable ? .passed : .inconclusive
        return MetricResult(
            name: name, value: evidence.canary.rate.map { $0 * 100 }, stableValue: evidence.stable.rate.map { $0 * 100 },
            threshold: threshold, verdict: verdict, message: evidence.summary, requests: Int64(evidence.canary.requests), time: time,
            evidence: evidence)
    }
}
