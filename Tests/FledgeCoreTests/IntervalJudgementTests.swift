import FledgeCore
import FledgeJudge
import Testing

/// `judgeInterval(plan, status:, result:)`: the one rule the controller and `fledge analyze` share for an interval's
/// verdict, checks and judge combined.
@Suite("an interval's verdict, checks and judge combined")
struct IntervalJudgementTests {
    static func plan(_ spec: RolloutSpec = seedSpec(minRequests: 1)) throws -> RolloutPlan {
        try seedRollout(spec: spec).plan().get()
    }

    static func result(_ behaviour: CanaryBehaviour, counts: (canary: JudgeSample, stable: JudgeSample)?) -> IntervalResult {
        var result = measure(behaviour, at: Timestamp(seconds: 1_000))
        result.canaryCounts = counts?.canary
        result.stableCounts = counts?.stable
        return result
    }

    static let harmful = windowCounts(rate: 100, canaryWeight: 10, canaryErrorRate: 0.2, stableErrorRate: 0.01)
    static let thin = windowCounts(rate: 1, canaryWeight: 10, canaryErrorRate: 0, stableErrorRate: 0)

    @Test func aJudgeRollbackFailsAnIntervalWhoseChecksPassed() throws {
        let judged = judgeInterval(try Self.plan(), status: RolloutStatus(), result: Self.result(.healthy, counts: Self.harmful))
        #expect(judged.checks == .passed)
        #expect(judged.verdict == .failed)
        #expect(judged.judgeDecision == .rollback)
        #expect(judged.judgeResults.first?.name == "judge" && judged.judgeResults.first?.verdict == .failed)
        #expect(judged.metrics.map(\.name) == ["success-rate", "latency-p99", "judge", "judge-errors", "judge-latency"])
        #expect(judged.summary.contains("; judge: Roll back"), "\(judged.summary)")
    }

    @Test func aJudgeHoldIsInconclusiveUntilTheJudgeAcceptedTheStage() throws {
        let plan = try Self.plan()
        var status = RolloutStatus()
        status.stage = 0
        let held = judgeInterval(plan, status: status, result: Self.result(.healthy, counts: Self.thin))
        #expect(held.judgeDecision == .hold)
        #expect(held.checks == .passed && held.verdict == .inconclusive)
        // Once the judge accepted this stage, a later hold no longer holds the interval back.
        status.judgeAcceptedStage = 0
        #expect(judgeInterval(plan, status: status, result: Self.result(.healthy, counts: Self.thin)).verdict == .passed)
        // A hold never hides a failed check.
        #expect(judgeInterval(plan, status: RolloutStatus(), result: Self.result(.errors(successRate: 80), counts: Self.thin)).verdict == .failed)
    }

    @Test func countsTheJudgeRejectsAreAnErrorUnlessACheckFailed() throws {
        let plan = try Self.plan()
        let bad = (canary: JudgeSample(requests: 0, errors: 98), stable: JudgeSample(requests: 900, errors: 9))
        let judged = judgeInterval(plan, status: RolloutStatus(), result: Self.result(.healthy, counts: bad))
        #expect(judged.verdict == .error && judged.checks == .passed)
        #expect(judged.judge == .rejected(JudgeError(field: "canary.errors", problem: "98.0 errors is more than the 0.0 requests of the same interval")))
        #expect(judged.judgeResults.map(\.verdict) == [.error])
        #expect(judged.summary.hasSuffix("; judge: the judge rejected the counts: canary.errors: 98.0 errors is more than the 0.0 requests of the same interval"))
        let failing = judgeInterval(plan, status: RolloutStatus(), result: Self.result(.errors(successRate: 80), counts: bad))
        #expect(failing.verdict == .failed)
    }

    @Test func withoutTheJudgeTheChecksDecide() throws {
        let plan = try Self.plan()
        let noCounts = judgeInterval(plan, status: RolloutStatus(), result: Self.result(.healthy, counts: nil))
        #expect(noCounts.judge == nil && noCounts.verdict == .passed && noCounts.judgeResults.isEmpty)
        // A 100 % stage has no stable traffic to compare with.
        var atFull = RolloutStatus()
        atFull.stage = 3
        #expect(judgeInterval(plan, status: atFull, result: Self.result(.healthy, counts: Self.harmful)).judge == nil)
        var spec = seedSpec(minRequests: 1)
        spec.analysis?.judge = JudgeSpec(enabled: false)
        #expect(judgeInterval(try Self.plan(spec), status: RolloutStatus(), result: Self.result(.healthy, counts: Self.harmful)).verdict == .passed)
        // An advancing judge leaves the checks' verdict as it was, a failure included.
        let good = windowCounts(rate: 2000, canaryWeight: 10, canaryErrorRate: 0.01, stableErrorRate: 0.01)
        let failing = judgeInterval(plan, status: RolloutStatus(), result: Self.result(.errors(successRate: 80), counts: good))
        #expect(failing.judgeDecision == .advance && failing.verdict == .failed)
    }
}
