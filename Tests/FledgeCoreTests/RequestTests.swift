import FledgeCore
import FledgeJSON
import Testing

/// Every manual request in every phase: accepted where it makes sense, refused with a reason elsewhere.
@Suite("decide: manual requests in every phase")
struct RequestTests {
    /// Brings a simulation into `phase`.
    static func sim(in phase: Phase) -> Sim {
        var sim: Sim
        switch phase {
        case .healthy:
            sim = Sim(spec: seedSpec(image: nil))
            sim.reconcile()
        case .initializing:
            sim = Sim()
            sim.canaryPodsBecomeReady = false
            sim.run(maxSteps: 5) { _ in false }
        case .progressing:
            sim = Sim()
            sim.run { $0.status.stage == 1 && $0.observedCanaryWeight == 25 }
        case .paused:
            sim = Sim(spec: seedSpec(stages: [StageSpec(weight: 10, hold: "10s", approval: "manual"), StageSpec(weight: 100, hold: "10s")]))
            sim.run(untilPhase: .paused)
        case .promoting:
            sim = Sim()
            sim.run(untilPhase: .promoting)
        case .finalising:
            sim = Sim()
            sim.run(untilPhase: .finalising)
        case .succeeded:
            sim = Sim()
            sim.run(untilPhase: .succeeded)
        case .rollingBack:
            sim = Sim()
            sim.behaviour = .errors(successRate: 50)
            sim.run(untilPhase: .rollingBack)
        case .failed:
            sim = Sim()
            sim.behaviour = .errors(successRate: 50)
            sim.run(untilPhase: .failed)
        case .aborted:
            sim = Sim()
            sim.run { $0.status.stage == 0 && $0.observedCanaryWeight == 10 }
            sim.request(.abort, token: "first")
            sim.run(untilPhase: .aborted)
        }
        #expect(sim.phase == phase)
        return sim
    }

    struct Case: Sendable, CustomStringConvertible {
        var phase: Phase
        var request: ManualRequest
        var accepted: Bool
        /// Phase right after the request was handled (one reconcile).
        var next: Phase?
        var description: String { "\(request.rawValue) in \(phase.rawValue)" }
    }

    static let cases: [Case] = [
        // abort
        Case(phase: .healthy, request: .abort, accepted: false),
        Case(phase: .initializing, request: .abort, accepted: true, next: .rollingBack),
        Case(phase: .progressing, request: .abort, accepted: true, next: .rollingBack),
        Case(phase: .paused, request: .abort, accepted: true, next: .rollingBack),
        Case(phase: .promoting, request: .abort, accepted: false),
        Case(phase: .finalising, request: .abort, accepted: false),
        Case(phase: .succeeded, request: .abort, accepted: false),
        Case(phase: .rollingBack, request: .abort, accepted: false),
        Case(phase: .failed, request: .abort, accepted: false),
        Case(phase: .aborted, request: .abort, accepted: false),
        // promote
        Case(phase: .healthy, request: .promote, accepted: false),
        Case(phase: .initializing, request: .promote, accepted: false),
        Case(phase: .progressing, request: .promote, accepted: true, next: .progressing),
        Case(phase: .paused, request: .promote, accepted: true, next: .progressing),
        Case(phase: .promoting, request: .promote, accepted: false),
        Case(phase: .finalising, request: .promote, accepted: false),
        Case(phase: .succeeded, request: .promote, accepted: false),
        Case(phase: .rollingBack, request: .promote, accepted: false),
        Case(phase: .failed, request: .promote, accepted: false),
        Case(phase: .aborted, request: .promote, accepted: false),
        // promote-full
        Case(phase: .healthy, request: .promoteFull, accepted: false),
        Case(phase: .initializing, request: .promoteFull, accepted: false),
        Case(phase: .progressing, request: .promoteFull, accepted: true, next: .promoting),
        Case(phase: .paused, request: .promoteFull, accepted: true, next: .promoting),
        Case(phase: .promoting, request: .promoteFull, accepted: false),
        Case(phase: .finalising, request: .promoteFull, accepted: false),
        Case(phase: .succeeded, request: .promoteFull, accepted: false),
        Case(phase: .rollingBack, request: .promoteFull, accepted: false),
        Case(phase: .failed, request: .promoteFull, accepted: false),
        Case(phase: .aborted, request: .promoteFull, accepted: false),
        // retry
        Case(phase: .healthy, request: .retry, accepted: false),
        Case(phase: .initializing, request: .retry, accepted: false),
        Case(phase: .progressing, request: .retry, accepted: false),
        Case(phase: .paused, request: .retry, accepted: false),
        Case(phase: .promoting, request: .retry, accepted: false),
        Case(phase: .finalising, request: .retry, accepted: false),
        Case(phase: .succeeded, request: .retry, accepted: false),
        Case(phase: .rollingBack, request: .retry, accepted: false),
        Case(phase: .failed, request: .retry, accepted: true, next: .initializing),
        Case(phase: .aborted, request: .retry, accepted: true, next: .initializing),
    ]

    @Test(arguments: cases)
    func request(_ c: Case) {
        var sim = Self.sim(in: c.phase)
        // What the same reconcile decides without the request.
        let control = decide(
            rollout: sim.rollout, observed: sim.observed, analysis: Analysis(latest: sim.latest, webhooks: sim.webhookOutcomes), now: sim.now)
        sim.request(c.request, token: "token-\(c.request.rawValue)")
        let d = sim.reconcile()
        let record = d.status.requests.first { $0.kind == c.request }
        #expect(record?.token == "token-\(c.request.rawValue)")
        #expect(record?.accepted == c.accepted)
        #expect(record?.seenAt == sim.now)
        #expect(record?.message.isEmpty == false)
        #expect(d.eventReasons.contains(c.accepted ? "RequestAccepted" : "RequestRefused"))
        if let next = c.next {
            #expect(d.status.phase == next)
        }
        if !c.accepted {
            // A refused request changes nothing but its record.
            var expected = control.status
            expected.requests = d.status.requests
            #expect(d.status == expected)
            #expect(d.writes.filter { if case .emitEvent = $0 { return false } else { return true } } == control.writes.filter { if case .emitEvent = $0 { return false } else { return true } })
        }
        // Seen once: the same token is not handled again.
        let again = sim.reconcile()
        #expect(!again.eventReasons.contains("RequestAccepted") && !again.eventReasons.contains("RequestRefused"))
        // Failed and Aborted never route to the canary, whatever was requested.
        if [.failed, .aborted].contains(d.status.phase) {
            #expect(d.weightChanges.allSatisfy { $0.canaryWeight == 0 })
        }
    }
}
