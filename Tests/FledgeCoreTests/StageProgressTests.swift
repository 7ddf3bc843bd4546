import FledgeCore
import Foundation
import FledgeJSON
import Testing

/// `status.stageProgress`: the stage for people (`kubectl get rollouts`' Stage column), `2/4` as `fledge list` shows
/// it, written by `decide` with every status.
@Suite("decide: status.stageProgress")
struct StageProgressTests {
    @Test func isOneBasedOfTheStagesWhileProgressingAndAbsentOtherwise() {
        var sim = Sim()
        sim.run(untilPhase: .succeeded)
        var seen: [String] = []
        for decision in sim.decisions {
            let status = decision.status
            switch status.phase {
            case .progressing, .paused:
                let stage = try! #require(status.stage)
                #expect(status.stageProgress == "\(stage + 1)/4", "\(status.phase) at stage \(stage)")
            default:
                #expect(status.stageProgress == nil, "\(status.phase): \(status.stageProgress ?? "nil")")
            }
            if let progress = status.stageProgress, progress != seen.last { seen.append(progress) }
        }
        #expect(seen == ["1/4", "2/4", "3/4", "4/4"])
        // Settled, the field is gone and stays gone.
        #expect(sim.status.stageProgress == nil)
        #expect(sim.reconcile().writes.isEmpty)
    }

    @Test func pausedAtAManualStageShowsThatStage() {
        let stages = [StageSpec(weight: 10, hold: "10s"), StageSpec(weight: 50, hold: "10s", approval: "manual"), StageSpec(weight: 100, hold: "10s")]
        var sim = Sim(spec: seedSpec(stages: stages))
        sim.run(untilPhase: .paused)
        #expect(sim.status.stageProgress == "2/3")
        sim.request(.promote)
        #expect(sim.reconcile().status.stageProgress == "3/3")
    }

    @Test func aRollbackClearsIt() {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        #expect(sim.status.stageProgress == "2/4")
        sim.request(.abort)
        let d = sim.reconcile()
        #expect(d.status.phase == .rollingBack)
        #expect(d.status.stageProgress == nil)
        sim.run(untilPhase: .aborted)
        #expect(sim.status.stageProgress == nil)
    }

    /// An invalid spec holds the rollout at its stage, counted among the stages the edited spec lists, as `fledge
    /// list` shows it: it used to keep the last valid count (`2/4` next to a spec of 3 stages).
    @Test func anInvalidSpecCountsTheStagesItLists() throws {
        var sim = Sim()
        sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        sim.rollout.spec.stages = [StageSpec(weight: 10), StageSpec(weight: 50), StageSpec(weight: 40)]
        let d = sim.reconcile()
        #expect(d.status.condition(ConditionType.specValid)?.status == .false)
        #expect(d.status.phase == .progressing)
        #expect(d.status.stageProgress == "2/3")
        // Fewer stages than the one it holds at, or none: no stage of the spec to show.
        sim.rollout.spec.stages = [StageSpec(weight: 10)]
        sim.rollout.spec.analysis!.interval = "0s"
        #expect(sim.reconcile().status.stageProgress == nil)
        sim.rollout.spec.stages = nil
        #expect(sim.reconcile().status.stageProgress == nil)
        // Fixed, the plan counts again.
        sim.rollout.spec = seedSpec()
        #expect(sim.reconcile().status.stageProgress == "2/4")
    }

    @Test(arguments: [
        (Phase.progressing, 0, 4, "1/4"), (.paused, 2, 3, "3/3"), (.progressing, nil, 4, nil), (.healthy, 0, 4, nil),
        (.initializing, 0, 4, nil), (.promoting, 3, 4, nil), (.rollingBack, 1, 4, nil), (.succeeded, nil, 4, nil),
        (.progressing, 3, 2, nil), (.paused, 0, nil, nil),
    ] as [(Phase, Int?, Int?, String?)])
    func derivedFromPhaseAndStage(phase: Phase, stage: Int?, stages: Int?, expected: String?) {
        #expect(RolloutStatus.stageProgress(phase: phase, stage: stage, stages: stages) == expected)
    }

    /// Whatever the phase, stage and count, the value is one the CRD's schema takes: a value it refuses fails every
    /// status write (422) while it lasts. (`2/?` for an invalid spec did, in a first version of this fix.)
    @Test func everyValueMatchesTheCRDPattern() throws {
        let crd = try String(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("deploy/crds/rollouts.fledge.dev.yaml"), encoding: .utf8)
        let line = try #require(crd.split(separator: "\n").first { $0.contains("stageProgress: {type: string, pattern: ") })
        let pattern = try #require(line.split(separator: "'").dropFirst().first.map(String.init))
        #expect(pattern == "^[1-9][0-9]*/[1-9][0-9]*$")
        let regex = try Regex(pattern)
        for phase in Phase.allCases {
            for stage in [nil, -1, 0, 1, 3, 49] as [Int?] {
                for stages in [nil, 0, 1, 2, 4, 50] as [Int?] {
                    guard let value = RolloutStatus.stageProgress(phase: phase, stage: stage, stages: stages) else { continue }
                    #expect(value.wholeMatch(of: regex) != nil, "\(phase) \(String(describing: stage)) of \(String(describing: stages)): \(value)")
                }
            }
        }
    }

    @Test func roundTripsThroughJSON() throws {
        var status = RolloutStatus(phase: .progressing)
        status.stage = 1
        status.stageProgress = "2/4"
        let json = try JSONValue(encoding: status)
        #expect(json["stageProgress"] == "2/4")
        #expect(try json.decode(RolloutStatus.self) == status)
        #expect(try JSONValue(encoding: RolloutStatus())["stageProgress"] == nil)
    }
}
