import FledgeCore
import FledgeJSON
import Testing

@testable import FledgeReport

/// The parts of the gatherer that read the controller's Events, on the exact texts FledgeCore's `decide` writes.
@Suite("Rollout report: reading Events")
struct ReportGathererTests {
    static func event(_ time: Double, _ reason: String, _ message: String) -> RolloutEventRecord {
        RolloutEventRecord(
            [
                "metadata": ["name": .string("product-service.\(Int(time))"), "uid": .string("uid-\(time)"), "resourceVersion": "5"],
                "eventTime": .string(time == 0 ? "2026-11-26T14:02:00.250000Z" : "2026-11-26T14:02:\(Int(time) < 10 ? "0" : "")\(Int(time)).500000Z"),
                "reason": .string(reason), "note": .string(message), "type": "Normal",
            ])!
    }

    @Test func readsEventTimesWithTheirFraction() {
        #expect(Self.event(0, "RolloutStarted", "x").time == 1_795_701_720.25)
        #expect(Self.event(7, "StageStarted", "x").time == 1_795_701_727.5)
    }

    @Test func followsTheWeightThroughStagesAndRollback() {
        let events = [
            Self.event(1, "RolloutStarted", "revision abc rolling out over Deployment product-service (stable revision def)"),
            Self.event(2, "StageStarted", "stage 1/4: 10% of traffic on revision abc"),
            Self.event(9, "StageStarted", "stage 2/4: 25% of traffic on revision abc"),
            Self.event(12, "WeightsReset", "routes primary sent 40% to subset canary; moving it to 25% because the spec changed"),
            Self.event(14, "AnalysisFailed", "check failed (1/3): success-rate=95.12 (>= 99): Failed"),
            Self.event(20, "RollingBack", "AnalysisFailed: 3 failed checks"),
            Self.event(22, "RolloutFailed", "rolled back"),
        ]
        let start = events[0].time
        let steps = ReportGatherer.weightSteps(events: events, start: start, status: RolloutStatus(phase: .failed), now: start + 30)
        #expect(steps.map(\.weight) == [0, 10, 25, 0])
        #expect(steps[1].time == events[1].time && steps[3].time == events[5].time)
        // In flight, the status's weight ends the line.
        var running = RolloutStatus(phase: .progressing)
        running.canaryWeight = 50
        let live = ReportGatherer.weightSteps(events: Array(events.prefix(3)), start: start, status: running, now: start + 30)
        #expect(live.map(\.weight) == [0, 10, 25, 50])
        #expect(live.last?.time == start + 30)
    }

    /// A trigger right after a rollback starts the new run in the second the old one failed: the new revision's page
    /// began with "0:00 failed RolloutFailed" and the old revision's judge verdict (seen on the real stack).
    @Test func aRunDoesNotShowTheEndOfTheRunBefore() {
        let events = [
            Self.event(3, "RollingBack", "HarmConclusive: Roll back: 5xx rate canary 14.3% (4/28) vs stable 0% (0/308)"),
            Self.event(4, "RolloutFailed", "Roll back: 5xx rate canary 14.3% (4/28) vs stable 0% (0/308)"),
            Self.event(4, "RolloutStarted", "revision abc rolling out over Deployment product-service (stable revision def)"),
            Self.event(4, "CanaryNotReady", "canary Deployment product-service-canary is being created for revision abc"),
            Self.event(6, "StageStarted", "stage 1/4: 10% of traffic on revision abc"),
            Self.event(16, "RollingBack", "HarmConclusive: Roll back: 5xx rate canary 23.7% (41/173) vs stable 0.78% (14/1795)"),
            Self.event(16, "RolloutFailed", "Roll back: 5xx rate canary 23.7% (41/173) vs stable 0.78% (14/1795)"),
        ]
        let shown = ReportGatherer.runEvents(events, from: events[2].time)
        #expect(shown.map(\.reason) == ["RolloutStarted", "CanaryNotReady", "StageStarted", "RollingBack", "RolloutFailed"])
        #expect(shown.last?.message.contains("41/173") == true)
        // Without its RolloutStarted (Events expire) the second of slack still holds.
        #expect(ReportGatherer.runEvents(Array(events.dropFirst(3)), from: events[2].time).count == 4)
    }

    @Test func readsTheJudgedValuesFromFailedChecks() {
        let events = [
            Self.event(14, "AnalysisFailed",
                "check failed (1/3): success-rate=95.12 (>= 99): Failed; latency-p99=120 (<= 500): Passed; error-budget=- (<= 2): Inconclusive, no data"),
            Self.event(16, "AnalysisFailed", "check failed (2/3): success-rate=94 (>= 99, >= stable - 1): Failed, 94 < min 99"),
        ]
        let checks = ReportGatherer.checks(events: events, status: RolloutStatus(), from: 0)
        #expect(checks["success-rate"] == [
            ReportCheck(time: events[0].time, value: 95.12, verdict: "Failed"), ReportCheck(time: events[1].time, value: 94, verdict: "Failed"),
        ])
        #expect(checks["latency-p99"] == [ReportCheck(time: events[0].time, value: 120, verdict: "Passed")])
        #expect(checks["error-budget"] == nil, "no value, nothing to plot")
    }

    @Test func namesEachDecision() {
        #expect(DecisionMarker.kind(forReason: "StageStarted", message: "") == .stageAdvanced)
        #expect(DecisionMarker.kind(forReason: "AnalysisFailed", message: "") == .checkFailed)
        #expect(DecisionMarker.kind(forReason: "AwaitingApproval", message: "") == .awaitingApproval)
        #expect(DecisionMarker.kind(forReason: "Promoting", message: "") == .promoted)
        #expect(DecisionMarker.kind(forReason: "RollingBack", message: "HarmConclusive: canary worse") == .rolledBack)
        #expect(DecisionMarker.kind(forReason: "RollingBack", message: "Aborted: aborted by request") == .aborted)
        #expect(DecisionMarker.kind(forReason: "RolloutAborted", message: "") == .aborted)
        #expect(DecisionMarker.kind(forReason: "RolloutSucceeded", message: "") == .succeeded)
        #expect(DecisionMarker.kind(forReason: "MetricProviderError", message: "") == .other)
    }

    @Test func statesThresholdsInTheControllersWords() {
        #expect(ReportGatherer.thresholdText(min: 99, max: nil, decrease: 1, ratio: nil) == ">= 99, >= stable - 1")
        #expect(ReportGatherer.thresholdText(min: nil, max: 500, decrease: nil, ratio: 1.5) == "<= 500, <= 1.5 × stable")
    }
}
