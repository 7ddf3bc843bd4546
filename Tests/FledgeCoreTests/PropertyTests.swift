import FledgeCore
import FledgeJSON
import PropertyBased
import Testing

/// Random specs and random sequences of what the world does between reconciles.
enum WorldEvent: Sendable, CustomStringConvertible {
    /// The controller executes the last decision's actions.
    case applyActions
    /// Time passes.
    case tick(Int64)
    /// A measurement arrives.
    case measure(CanaryBehaviour)
    case request(ManualRequest)
    /// Canary pods become (un)ready.
    case canaryReady(Bool)
    /// Someone edits the managed route's weights by hand.
    case handEdit(Int64)
    /// spec.canary changes.
    case newImage(Int)
    /// The DestinationRule's stable subset label gets (or loses) a typo.
    case subsetTypo(Bool)

    var description: String {
        switch self {
        case .applyActions: return "apply"
        case .tick(let s): return "tick \(s)s"
        case .measure(let b): return "measure \(b)"
        case .request(let r): return "request \(r.rawValue)"
        case .canaryReady(let r): return "canaryReady \(r)"
        case .handEdit(let w): return "handEdit \(w)"
        case .newImage(let i): return "image \(i)"
        case .subsetTypo(let t): return "typo \(t)"
        }
    }
}

struct PropertyCase: Sendable, CustomStringConvertible {
    var spec: RolloutSpec
    var seedWeight: Int64
    var events: [WorldEvent]
    var description: String {
        "stages \(spec.stages!.map { "\($0.weight!)\($0.approval == "manual" ? "m" : "")" }) failureLimit \(spec.analysis!.failureLimit!) providerErrorLimit \(spec.analysis!.providerErrorLimit!) noData \(spec.analysis!.noData!) seed \(seedWeight)\n"
            + events.map(\.description).joined(separator: ", ")
    }
}

func randomCase(_ rng: inout any SeededRandomNumberGenerator) -> PropertyCase {
    var weights: Set<Int> = []
    let count = Int.random(in: 1...4, using: &rng)
    while weights.count < count { weights.insert(Int.random(in: 1...100, using: &rng)) }
    let stages = weights.sorted().map { w in
        StageSpec(weight: w, hold: "\(Int.random(in: 1...30, using: &rng))s", approval: Int.random(in: 0..<5, using: &rng) == 0 ? "manual" : "auto")
    }
    let spec = seedSpec(
        stages: stages, failureLimit: Int.random(in: 1...4, using: &rng), providerErrorLimit: Int.random(in: 1...4, using: &rng),
        noData: Bool.random(using: &rng) ? "fail" : "inconclusive", minRequests: 20, progressDeadline: "\(Int.random(in: 1...5, using: &rng))m")
    let behaviours: [CanaryBehaviour] = [.healthy, .healthy, .healthy, .errors(successRate: 90), .slow(p99: 800), .noData, .providerDown, .fewRequests(5)]
    var events: [WorldEvent] = []
    for _ in 0..<Int.random(in: 10...60, using: &rng) {
        switch Int.random(in: 0..<100, using: &rng) {
        case 0..<40: events.append(.applyActions)
        case 40..<60: events.append(.tick(Int64.random(in: 1...40, using: &rng)))
        case 60..<78: events.append(.measure(behaviours[Int.random(in: 0..<behaviours.count, using: &rng)]))
        case 78..<86: events.append(.request(ManualRequest.allCases[Int.random(in: 0..<4, using: &rng)]))
        case 86..<90: events.append(.canaryReady(Bool.random(using: &rng)))
        case 90..<94: events.append(.handEdit(Int64.random(in: 0...100, using: &rng)))
        case 94..<97: events.append(.newImage(Int.random(in: 1...3, using: &rng)))
        default: events.append(.subsetTypo(Bool.random(using: &rng)))
        }
    }
    return PropertyCase(spec: spec, seedWeight: [0, 0, 10, 100][Int.random(in: 0..<4, using: &rng)], events: events)
}

let caseGenerator = Generator<PropertyCase, Shrink.None<PropertyCase>>(run: { rng in randomCase(&rng) })

@Suite("decide: properties over random specs and observation sequences")
struct PropertyTests {
    /// The invariants that hold for every decision.
    static func checkInvariants(_ d: Decision, observed: Observed, case c: PropertyCase, step: Int) {
        let context = "step \(step): \(c)"
        let observedWeight = observed.virtualService.flatMap { httpRoutes(of: $0)[1].canaryWeight(stableSubset: "stable", canarySubset: "canary") }
        for change in d.weightChanges {
            #expect((0...100).contains(change.canaryWeight), "\(context)")
            #expect(change.canaryWeight + change.stableWeight == 100, "\(context)")
            // Every route that sends to the two subsets sums to 100 in the VirtualService to write.
            for route in httpRoutes(of: change.virtualService) where route.destinations.count == 2 {
                #expect(route.destinations.map { $0.weight ?? 0 }.reduce(0, +) == 100, "\(context)")
                #expect(route.canaryWeight(stableSubset: "stable", canarySubset: "canary") == change.canaryWeight, "\(context)")
            }
            // The header-match route is never touched.
            #expect(httpRoutes(of: change.virtualService)[0] == httpRoutes(of: observed.virtualService!)[0], "\(context)")
            if change.canaryWeight > 0 {
                // Rule 2: weight only to a ready canary selected by a sane subset.
                #expect(observed.canary.map { $0.readyReplicas > 0 } == true, "\(context)")
                #expect(d.status.condition(ConditionType.trafficReady)?.status == .true, "\(context)")
            }
        }
        #expect((0...100).contains(d.status.canaryWeight), "\(context)")
        // Rule 3: status records the observed weight.
        if let observedWeight { #expect(d.status.canaryWeight == observedWeight, "\(context)") }
        // Rule 4: Failed and Aborted send nothing to the canary.
        if d.status.phase == .failed || d.status.phase == .aborted {
            #expect(d.weightChanges.allSatisfy { $0.canaryWeight == 0 }, "\(context)")
            #expect(!d.actions.contains { if case .ensureCanaryDeployment = $0 { return true } else { return false } }, "\(context)")
            if observedWeight != 0 { #expect(d.weightChanges.map(\.canaryWeight) == [0], "\(context)") }
        }
    }

    @Test func invariantsDeterminismAndIdempotence() async {
        var phasesSeen: Set<Phase> = []
        await propertyCheck(count: 2000, input: caseGenerator) { c in
            var sim = Sim(spec: c.spec, seedWeight: c.seedWeight)
            var last: Decision?
            var sawPassingMeasurement = false
            var sawPromote = false
            for (step, event) in c.events.enumerated() {
                let analysis = Analysis(latest: sim.latest, webhooks: sim.webhookOutcomes)
                let d = decide(rollout: sim.rollout, observed: sim.observed, analysis: analysis, now: sim.now)
                // Deterministic.
                #expect(d == decide(rollout: sim.rollout, observed: sim.observed, analysis: analysis, now: sim.now), "step \(step): \(c)")
                Self.checkInvariants(d, observed: sim.observed, case: c, step: step)
                // Deciding again with its own status and nothing else changed: same status, nothing new to write.
                var settled = sim.rollout
                settled.status = d.status
                let again = decide(rollout: settled, observed: sim.observed, analysis: analysis, now: sim.now)
                #expect(again.status == d.status, "step \(step): \(c)")
                for write in again.writes { #expect(d.writes.contains(write), "step \(step): new write \(write)\n\(c)") }
                if d.writes.isEmpty { #expect(again.writes.isEmpty, "step \(step): \(c)") }
                // No promotion without a passing check (or a human asking for it).
                if !sawPassingMeasurement && !sawPromote {
                    #expect(![.promoting, .finalising, .succeeded].contains(d.status.phase), "step \(step): \(c)")
                }
                sim.rollout.status = d.status
                phasesSeen.insert(d.status.phase)
                last = d
                switch event {
                case .applyActions:
                    for action in d.actions { sim.execute(action) }
                    if case .measure = event {} else if d.actions.contains(where: { if case .runAnalysis = $0 { return true } else { return false } }) {
                        if sim.behaviour == .healthy { sawPassingMeasurement = true }
                    }
                case .tick(let s): sim.now = Timestamp(seconds: sim.now.seconds + s)
                case .measure(let b):
                    sim.behaviour = b
                    sim.latest = measure(b, at: sim.now)
                    if b == .healthy { sawPassingMeasurement = true }
                case .request(let r):
                    sim.request(r)
                    if r == .promote || r == .promoteFull { sawPromote = true }
                case .canaryReady(let ready):
                    sim.canaryPodsBecomeReady = ready
                    if sim.observed.canary != nil {
                        let n = ready ? sim.observed.canary!.replicas : 0
                        sim.observed.canary!.readyReplicas = n
                        sim.observed.canary!.availableReplicas = n
                        sim.observed.canary!.updatedReplicas = n
                    }
                case .handEdit(let w): sim.observed.virtualService = seedVirtualService(canaryWeight: w)
                case .newImage(let i): sim.rollout.spec.canary = CanaryChange(image: "registry.example/product-service:\(i + 1).0.0")
                case .subsetTypo(let typo):
                    sim.observed.destinationRule = seedDestinationRule(stableLabels: typo ? ["version": "v1x"] : ["version": "v1"])
                }
            }
            _ = last
        }
        // The random worlds reach every phase, so the properties are not checked on idle rollouts only.
        #expect(phasesSeen == Set(Phase.allCases), "phases reached: \(phasesSeen)")
    }

    /// Settle: execute every action until a decision asks for no write; then a reconcile with nothing changed
    /// writes nothing (Rule 8), and Failed/Aborted/Succeeded/Healthy leave no traffic on the canary.
    @Test func settledWorldsWriteNothing() async {
        await propertyCheck(count: 1000, input: caseGenerator) { c in
            var sim = Sim(spec: c.spec, seedWeight: c.seedWeight)
            for event in c.events {
                switch event {
                case .tick(let s): sim.now = Timestamp(seconds: sim.now.seconds + s)
                case .measure(let b): sim.behaviour = b
                case .request(let r): sim.request(r)
                default: break
                }
                for _ in 0..<20 {
                    let d = sim.reconcile()
                    if d.writes.isEmpty && !d.actions.contains(where: { if case .runAnalysis = $0 { return true } else { return false } }) { break }
                }
                let d = decide(rollout: sim.rollout, observed: sim.observed, analysis: Analysis(latest: sim.latest, webhooks: sim.webhookOutcomes), now: sim.now)
                #expect(d.writes.isEmpty, "\(c)")
                #expect(d.status == sim.rollout.status, "\(c)")
                if d.status.phase.isIdle { #expect(sim.observedCanaryWeight == 0, "\(c)") }
            }
        }
    }

    @Test func revisionIgnoresKeyOrder() async {
        let gen = Generator<[(String, Int)], Shrink.None<[(String, Int)]>>(run: { rng in
            (0..<Int.random(in: 0...8, using: &rng)).map { i in ("k\(i)\(Int.random(in: 0...9, using: &rng))", Int.random(in: -1000...1000, using: &rng)) }
        })
        await propertyCheck(count: 1000, input: gen) { pairs in
            var unique: [(String, Int)] = []
            for p in pairs where !unique.contains(where: { $0.0 == p.0 }) { unique.append(p) }
            let a = JSONValue.object(JSONObject(uniqueKeysWithValues: unique.map { ($0.0, JSONValue.int(Int64($0.1))) }))
            let b = JSONValue.object(JSONObject(uniqueKeysWithValues: unique.reversed().map { ($0.0, JSONValue.int(Int64($0.1))) }))
            #expect(revision(of: ["spec": a]) == revision(of: ["spec": b]))
        }
    }
}
