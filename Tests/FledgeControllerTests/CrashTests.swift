// An operator's bad day: the controller killed at any moment, down for a while, restarted. Rule 7 (the same end
// state) and the rules it must not break on the way (weights sum to 100, no weight to a canary without ready pods,
// nothing on the canary once Failed or Aborted).
import FledgeController
import FledgeCore
import FledgeJSON
import FledgeKubernetes
import FledgeSandbox
import Foundation
import LocalPrometheus
import Synchronization
import Testing

@Suite(.serialized) struct CrashTests {
    /// The rules that must hold whenever the cluster is looked at, whatever the controller was doing.
    static func checkInvariants(_ world: World, _ context: String) async throws {
        let vs = try await world.virtualService()
        let (stable, canary) = weights(vs)
        #expect((stable ?? 0) + (canary ?? 0) == 100, "\(context): weights \(String(describing: stable))/\(String(describing: canary))")
        let rollout = try await world.rollout()
        let phase = rollout[path: ["status", "phase"]]?.stringValue
        if (canary ?? 0) > 0, phase != nil, phase != "Healthy" {
            let ready = try? await world.deployment("product-service-canary")[path: ["status", "readyReplicas"]]?.intValue
            #expect((ready ?? 0) > 0, "\(context): \(canary ?? 0)% to a canary with no ready pods (phase \(phase ?? "-"))")
        }
    }

    /// The Events a decision asks for (not the controller's own ActionFailed and WriteConflict, which say how a write
    /// went), reason and message, as many times as the API server has each.
    static func decisionEvents(_ world: World) async throws -> [String: Int] {
        let own: Set<String> = [EventReason.actionFailed.rawValue, EventReason.writeConflict.rawValue]
        var counts: [String: Int] = [:]
        for event in try await world.client.list(.events, namespace: "shop").items {
            guard let reason = event["reason"]?.stringValue, !own.contains(reason) else { continue }
            counts["\(reason): \(event["note"]?.stringValue ?? "")", default: 0] += 1
        }
        return counts
    }

    /// Every Event of the rollout's course exists once, however often the controller was killed on the way (after the
    /// status write that decided it, after each Event, after any other write): each of `reasons` at least once, and no
    /// Event twice.
    static func expectEachEventOnce(_ world: World, _ reasons: [EventReason]) async throws {
        let events = try await decisionEvents(world)
        for reason in reasons {
            #expect(events.keys.contains { $0.hasPrefix("\(reason.rawValue): ") }, "no \(reason.rawValue) Event: \(events.keys.sorted())")
        }
        let twice = events.filter { $0.value > 1 }
        #expect(twice.isEmpty, "Events recorded more than once: \(twice)")
    }

    /// The seed's VirtualService sends 10 % to a canary subset with no pods yet; start where Fledge leaves it.
    /// A rollout held at its second stage (600 s) with a 5 s progress deadline and 2 s intervals: only passing checks
    /// keep it going, so a deadline wrongly passed shows at once.
    static let shortDeadlineSpec = fastSpec.applyingMergePatch([
        "stages": [["weight": 20, "hold": "1s"], ["weight": 50, "hold": "600s"]], "progressDeadline": "5s", "analysis": ["interval": "2s"],
    ])

    /// One stage, and a post-rollout notification to a receiver on `port` (down until the test starts it).
    static func notifyingSpec(port: Int) -> JSONValue {
        fastSpec.applyingMergePatch([
            "stages": [["weight": 50, "hold": "1s"]],
            "webhooks": [["name": "notify", "type": "post-rollout", "url": .string("http://127.0.0.1:\(port)/gate"), "timeout": "1s"]],
        ])
    }

    /// The fast spec with `stages`, the VirtualService on stable, and revision 2.0.0 triggered.
    static func triggerFromStable(_ world: World, stages: JSONValue) async throws {
        try await world.patchSpec(fastSpec.applyingMergePatch(["stages": stages]))
        try await startFromStable(world)
        try await world.trigger(image: "registry.example/product-service:2.0.0")
    }

    static func startFromStable(_ world: World) async throws {
        _ = try await world.client.update(.virtualServices, namespace: "shop", settingWeights(try await world.virtualService(), 100, 0))
    }

    /// Kills the controller after `budget` writes each life until `done`, checking the invariants between lives.
    static func killRepeatedly(
        _ world: World, metrics: ScriptedMetrics, budget: @escaping @Sendable (Int) -> Int = { _ in 1 }, maxLives: Int = 200,
        until done: () async throws -> Bool
    ) async throws -> Int {
        var lives = 0
        while try await !done() {
            lives += 1
            let status = try await world.rollout()["status"]?.serializedString() ?? ""
            try #require(lives < maxLives, "no progress after \(lives) restarts; status: \(status)")
            let left = Mutex(budget(lives))
            let running = world.startController(analyzer: metrics, writeGate: {
                left.withLock { b in
                    defer { b -= 1 }
                    return b > 0
                }
            })
            let deadline = ContinuousClock.now.advanced(by: .seconds(5))
            while left.withLock({ $0 }) > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            try await Task.sleep(for: .milliseconds(50))
            await running.kill()
            try await checkInvariants(world, "life \(lives)")
        }
        return lives
    }

    @Test func killedAfterEveryWriteStillRollsBackAFailingCanary() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await Self.triggerFromStable(world, stages: [["weight": 20, "hold": "1s"], ["weight": 100, "hold": "1s"]])
        let metrics = ScriptedMetrics()
        metrics.set(.failing)
        let lives = try await Self.killRepeatedly(world, metrics: metrics) { try await world.phase() == "Failed" }
        #expect(lives > 3)
        let failed = try await world.rollout()
        #expect(weights(try await world.virtualService()) == (100, 0))
        #expect(image(try await world.deployment("product-service")) == "registry.example/product-service:1.0.0")
        // Finish with a controller that is not killed: nothing more to do, canary down.
        _ = world.startController(analyzer: metrics)
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while try await world.deployment("product-service-canary")[path: ["spec", "replicas"]]?.intValue != 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try await world.deployment("product-service-canary")[path: ["spec", "replicas"]]?.intValue == 0)
        let history = failed[path: ["status", "history"]]?.arrayValue ?? []
        #expect(history.count == 1, "\(history)")
        try await world.waitFor("every Event owed recorded") { $0[path: ["status", "pendingEvents"]] == nil }
        try await Self.expectEachEventOnce(world, [.rolloutStarted, .stageStarted, .analysisFailed, .rollingBack, .rolloutFailed])
    }

    @Test func killedAfterEveryWriteStillAborts() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await Self.triggerFromStable(world, stages: [["weight": 20, "hold": "1s"], ["weight": 50, "hold": "600s"]])
        let metrics = ScriptedMetrics()
        _ = try await Self.killRepeatedly(world, metrics: metrics) { try await world.rollout()[path: ["status", "canaryWeight"]]?.intValue == 50 }
        try await world.request(.abort)
        _ = try await Self.killRepeatedly(world, metrics: metrics) {
            // Ended, with every Event it owes recorded.
            let status = try await world.rollout()["status"]
            return status?["phase"] == "Aborted" && status?["pendingEvents"] == nil
        }
        #expect(weights(try await world.virtualService()) == (100, 0))
        let history = try await world.rollout()[path: ["status", "history"]]?.arrayValue ?? []
        #expect(history.count == 1, "\(history)")
        try await Self.expectEachEventOnce(world, [.rolloutStarted, .stageStarted, .requestAccepted, .rollingBack, .rolloutAborted])
    }

    /// `spec.canary` changed again mid-rollout while the controller keeps dying: the first revision is superseded once,
    /// the second promoted once, and the canary never has weight without ready pods of its revision on the way.
    @Test func killedAfterEveryWriteThroughANewRevisionPromotesTheNewOne() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await Self.triggerFromStable(world, stages: [["weight": 20, "hold": "1s"], ["weight": 100, "hold": "1s"]])
        let metrics = ScriptedMetrics()
        _ = try await Self.killRepeatedly(world, metrics: metrics) { try await world.rollout()[path: ["status", "canaryWeight"]]?.intValue == 20 }
        try await world.trigger(image: "registry.example/product-service:3.0.0")
        _ = try await Self.killRepeatedly(world, metrics: metrics) {
            let rollout = try await world.rollout()
            return rollout[path: ["status", "phase"]] == "Succeeded"
                && rollout[path: ["status", "observedGeneration"]] == rollout[path: ["metadata", "generation"]]
                && rollout[path: ["status", "pendingEvents"]] == nil
        }
        #expect(image(try await world.deployment("product-service")) == "registry.example/product-service:3.0.0")
        #expect(weights(try await world.virtualService()) == (100, 0))
        let history = try await world.rollout()[path: ["status", "history"]]?.arrayValue ?? []
        #expect(history.map { $0["outcome"]?.stringValue ?? "" } == ["Superseded", "Succeeded"], "\(history)")
        try await Self.expectEachEventOnce(world, [.rolloutStarted, .stageStarted, .newRevision, .promoting, .rolloutSucceeded])
    }

    /// Deleting a Rollout mid-rollout while the controller keeps dying: its traffic is back on stable before it goes.
    @Test func killedAfterEveryWriteADeletedRolloutMovesItsTrafficBackFirst() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await Self.triggerFromStable(world, stages: [["weight": 20, "hold": "1s"], ["weight": 50, "hold": "600s"]])
        let metrics = ScriptedMetrics()
        _ = try await Self.killRepeatedly(world, metrics: metrics) { try await world.rollout()[path: ["status", "canaryWeight"]]?.intValue == 50 }
        _ = try await world.client.delete(.rollouts, namespace: "shop", name: "product-service")
        func gone() async throws -> Bool {
            do {
                _ = try await world.rollout()
                return false
            } catch let error as KubernetesError where error.isNotFound {
                return true
            }
        }
        var lives = 0
        while try await !gone() {
            lives += 1
            try #require(lives < 50)
            let left = Mutex(1)
            let running = world.startController(analyzer: metrics, writeGate: {
                left.withLock { b in
                    defer { b -= 1 }
                    return b > 0
                }
            })
            let deadline = ContinuousClock.now.advanced(by: .seconds(5))
            while left.withLock({ $0 }) > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            try await Task.sleep(for: .milliseconds(50))
            await running.kill()
            if try await gone() { #expect(weights(try await world.virtualService()) == (100, 0), "gone with weight on the canary") }
        }
        #expect(weights(try await world.virtualService()) == (100, 0))
        try await Self.expectEachEventOnce(world, [.rolloutStarted, .stageStarted, .deleting])
    }

    /// A controller down for longer than the progress deadline (a node lost, the pod rescheduled late) comes back to
    /// a healthy canary: it measures before it judges the rollout stuck.
    @Test func aControllerDownLongerThanTheProgressDeadlineDoesNotFailAHealthyCanary() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(Self.shortDeadlineSpec)
        let first = world.startController(analyzer: ScriptedMetrics())
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        let serving = try await world.waitFor("stage 2 analysed") {
            $0[path: ["status", "stage"]]?.intValue == 1 && ($0[path: ["status", "passedChecks"]]?.intValue ?? 0) >= 1
        }
        await first.kill()
        // Back 15 minutes later (the controller's clock says so).
        let downtime: TimeInterval = 15 * 60
        _ = world.startController(analyzer: ScriptedMetrics(), now: { Date().addingTimeInterval(downtime) })
        let lastBefore = serving[path: ["status", "lastAnalysisAt"]]?.stringValue ?? ""
        let after = try await world.waitFor("a measurement after the restart, or a rollback") {
            $0[path: ["status", "phase"]]?.stringValue != "Progressing" || ($0[path: ["status", "lastAnalysisAt"]]?.stringValue ?? "") > lastBefore
        }
        #expect(after[path: ["status", "phase"]] == "Progressing", "\(after["status"]?.serializedString() ?? "")")
    }

    /// A post-rollout notification is owed in status before it is called: a receiver that was down when the rollout
    /// ended, and a controller killed meanwhile, still get it delivered by the next controller.
    @Test func aPostRolloutNotificationSurvivesADownReceiverAndAControllerRestart() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        let port = try LoopbackPort.free()
        try await world.patchSpec(Self.notifyingSpec(port: port))
        try await Self.startFromStable(world)
        let first = world.startController(analyzer: ScriptedMetrics())
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        let ended = try await world.waitFor("Succeeded with the notification owed") {
            $0[path: ["status", "phase"]] == "Succeeded" && $0[path: ["status", "pendingNotifications"]]?.arrayValue?.count == 1
        }
        #expect(ended[path: ["status", "pendingNotifications"]]?[0]?["webhook"] == "notify")
        await first.kill()

        let receiver = try GateServer(port: port)
        defer { Task { await receiver.stop() } }
        receiver.state.status.withLock { $0 = .ok }
        _ = world.startController(analyzer: ScriptedMetrics())
        try await world.waitFor("the notification delivered") { $0[path: ["status", "pendingNotifications"]] == nil }
        let bodies = receiver.state.bodies.withLock { $0 }
        #expect(bodies.contains { $0["type"] == "post-rollout" && $0["phase"] == "Succeeded" }, "\(bodies)")
    }

    /// A Rollout deleted right after it ended, while its post-rollout notification is owed (the receiver down): the
    /// finalizer holds the deletion until the notification is delivered, and the Rollout goes then.
    @Test func aRolloutDeletedWhileANotificationIsOwedGoesOnceItIsDelivered() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        let port = try LoopbackPort.free()
        try await world.patchSpec(Self.notifyingSpec(port: port))
        try await Self.startFromStable(world)
        _ = world.startController(analyzer: ScriptedMetrics())
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        try await world.waitFor("Succeeded with the notification owed") {
            $0[path: ["status", "phase"]] == "Succeeded" && $0[path: ["status", "pendingNotifications"]] != nil
        }
        _ = try await world.client.delete(.rollouts, namespace: "shop", name: "product-service")
        let held = try await world.waitFor("the deletion held for the notification") {
            $0[path: ["status", "message"]]?.stringValue?.contains("waiting for post-rollout webhook notify") == true
        }
        #expect(held[path: ["metadata", "finalizers"]] == ["fledge.dev/traffic"])

        let receiver = try GateServer(port: port)
        defer { Task { await receiver.stop() } }
        receiver.state.status.withLock { $0 = .ok }
        #expect(try await world.waitUntilDeleted(timeout: .seconds(60)), "the Rollout is still there after the notification could be delivered")
        let bodies = receiver.state.bodies.withLock { $0 }
        #expect(bodies.contains { $0["type"] == "post-rollout" && $0["phase"] == "Succeeded" }, "\(bodies)")
    }

    /// The API server takes no writes (down, overloaded, etcd full) for longer than the progress deadline: the checks
    /// that passed meanwhile could not be recorded, and once it is back the canary is measured before the deadline can
    /// end the rollout.
    @Test func anAPIServerThatTookNoWritesForLongerThanTheDeadlineDoesNotFailAHealthyCanary() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(Self.shortDeadlineSpec)
        _ = world.startController(analyzer: ScriptedMetrics())
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        // Past the grace that follows the controller's start (two intervals).
        let serving = try await world.waitFor("stage 2 analysed twice") {
            $0[path: ["status", "stage"]]?.intValue == 1 && ($0[path: ["status", "passedChecks"]]?.intValue ?? 0) >= 2
        }
        await world.sandbox.store.setFaults(SandboxFaults(serverErrorRate: 1))
        // The outage outlasts the deadline (the controller keeps measuring and deciding meanwhile).
        try await Task.sleep(for: .seconds(8))
        await world.sandbox.store.setFaults(SandboxFaults())
        _ = serving
        // What the outage left in status: the last check recorded before it.
        let frozen = try await world.rollout()
        let lastBefore = frozen[path: ["status", "lastAnalysisAt"]]?.stringValue ?? ""
        let after = try await world.waitFor("a measurement after the outage, or a rollback") {
            $0[path: ["status", "phase"]]?.stringValue != "Progressing" || ($0[path: ["status", "lastAnalysisAt"]]?.stringValue ?? "") > lastBefore
        }
        #expect(after[path: ["status", "phase"]] == "Progressing", "\(after["status"]?.serializedString() ?? "")")
    }

    /// While a notification is owed (its receiver down), `fledge retry` of the same revision asks its stage gate again:
    /// only the notification's answers outlive the rollout that ended.
    @Test func aRetryWhileANotificationIsOwedAsksItsGatesAgain() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        let gate = try GateServer()
        defer { Task { await gate.stop() } }
        gate.state.status.withLock { $0 = .ok }
        let down = try LoopbackPort.free()
        try await world.patchSpec(
            fastSpec.applyingMergePatch([
                "stages": [["weight": 20, "hold": "1s"], ["weight": 50, "hold": "600s"]],
                "webhooks": [
                    ["name": "gate", "type": "stage-gate", "url": .string("http://127.0.0.1:\(gate.port)/gate"), "timeout": "1s"],
                    ["name": "notify", "type": "post-rollout", "url": .string("http://127.0.0.1:\(down)/gate"), "timeout": "1s"],
                ],
            ]))
        try await Self.startFromStable(world)
        _ = world.startController(analyzer: ScriptedMetrics())
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        try await world.waitFor("stage 2") { $0[path: ["status", "canaryWeight"]]?.intValue == 50 }
        try await world.request(.abort)
        try await world.waitFor("Aborted, the notification owed") {
            $0[path: ["status", "phase"]] == "Aborted" && $0[path: ["status", "pendingNotifications"]] != nil
        }
        try await world.request(.retry)
        try await world.waitFor("stage 2 again") { $0[path: ["status", "canaryWeight"]]?.intValue == 50 && $0[path: ["status", "phase"]] == "Progressing" }
        let asked = gate.state.bodies.withLock { $0 }.filter { $0["type"] == "stage-gate" && $0["stage"] == 0 }
        #expect(asked.count == 2, "the gate of stage 1 was asked \(asked.count) times")
    }

    /// The wall clock jumps forward 15 minutes mid-stage (an NTP step, a VM resumed): like a restart, the skipped time
    /// is not held against the canary's progress deadline before the controller has measured it again.
    @Test func aWallClockJumpForwardDoesNotFailAHealthyCanary() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(Self.shortDeadlineSpec)
        let offset = Mutex<TimeInterval>(0)
        _ = world.startController(analyzer: ScriptedMetrics(), now: { Date().addingTimeInterval(offset.withLock { $0 }) })
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        let serving = try await world.waitFor("stage 2 analysed") {
            $0[path: ["status", "stage"]]?.intValue == 1 && ($0[path: ["status", "passedChecks"]]?.intValue ?? 0) >= 1
        }
        offset.withLock { $0 = 15 * 60 }
        let lastBefore = serving[path: ["status", "lastAnalysisAt"]]?.stringValue ?? ""
        let after = try await world.waitFor("a measurement after the jump, or a rollback") {
            $0[path: ["status", "phase"]]?.stringValue != "Progressing" || ($0[path: ["status", "lastAnalysisAt"]]?.stringValue ?? "") > lastBefore
        }
        #expect(after[path: ["status", "phase"]] == "Progressing", "\(after["status"]?.serializedString() ?? "")")
    }

    /// An API server that answers some requests with 500 (overloaded, restarting): what the controller writes after a
    /// failure never puts back the status from before its decision, so a rollout never goes back a stage, never
    /// "restores" weights nobody changed, and ends once, with one history entry.
    @Test func failedWritesNeverPutAnOlderStatusBack() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await Self.triggerFromStable(world, stages: [["weight": 20, "hold": "1s"], ["weight": 50, "hold": "1s"], ["weight": 100, "hold": "1s"]])
        await world.sandbox.store.setFaults(SandboxFaults(serverErrorRate: 0.25, seed: 4))
        _ = world.startController(analyzer: ScriptedMetrics())
        let rollouts = GroupResource(group: "fledge.dev", resource: "rollouts")
        var stages: [Int] = []
        var ended: JSONValue?
        let deadline = ContinuousClock.now.advanced(by: .seconds(120))
        while ended == nil, ContinuousClock.now < deadline {
            let status = await world.sandbox.store.object(rollouts, namespace: "shop", name: "product-service")?["status"]
            if let stage = status?["stage"]?.intValue, stages.last != Int(stage) { stages.append(Int(stage)) }
            if status?["phase"] == "Succeeded" { ended = status }
            try await Task.sleep(for: .milliseconds(20))
        }
        await world.sandbox.store.setFaults(SandboxFaults())
        let status = try #require(ended, "no Succeeded in time")
        #expect(stages == stages.sorted(), "the stage went back: \(stages)")
        // A little later: still one Succeeded, not a second after a status from before it was put back.
        _ = world.startController(analyzer: ScriptedMetrics())
        try await Task.sleep(for: .seconds(2))
        let history = try await world.rollout()[path: ["status", "history"]]?.arrayValue ?? []
        #expect(history.count == 1, "\(history)")
        let events = try await world.client.list(.events, namespace: "shop").items
        #expect(!events.contains { $0["reason"] == "WeightsRestored" }, "nobody changed the weights")
        #expect(events.filter { $0["reason"] == "RolloutSucceeded" }.count <= 1)
        _ = status
    }

    /// The deploy/ RBAC for a controller running as fledge-system/fledge, with `edit` applied to its ClusterRole's rules.
    static func controllerRBAC(_ edit: (inout [JSONValue]) -> Void = { _ in }) throws -> [JSONValue] {
        var rbac = try ManifestLoader.load(paths: ["namespace.yaml", "serviceaccount.yaml", "rbac.yaml"].map { repositoryRoot + "/deploy/" + $0 })
        for i in rbac.indices where rbac[i]["kind"] == "ClusterRole" {
            var rules = rbac[i]["rules"]?.arrayValue ?? []
            edit(&rules)
            rbac[i]["rules"] = .array(rules)
        }
        return rbac
    }

    /// An abort whose first weight write is refused (RBAC here; a 409 or a 500 alike): the rollback is in status, and
    /// so are its Events, RequestAccepted and RollingBack, although the write failed (the next decision, already
    /// RollingBack, does not ask for them again).
    @Test func theEventsOfADecisionWhoseWriteFailsAreKept() async throws {
        let token = "controller"
        let world = try await World(rbac: true, tokens: [token: .serviceAccount(namespace: "fledge-system", name: "fledge")])
        defer { Task { await world.stop() } }
        try await world.sandbox.store.apply(try Self.controllerRBAC())
        try await world.patchSpec(fastSpec.applyingMergePatch(["stages": [["weight": 20, "hold": "600s"]]]))
        try await Self.startFromStable(world)
        _ = world.startController(analyzer: ScriptedMetrics(), client: try world.client(token: token))
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        try await world.waitFor("stage 1 at 20%") { $0[path: ["status", "canaryWeight"]]?.intValue == 20 }
        // The VirtualService may no longer be patched.
        try await world.sandbox.store.apply(
            try Self.controllerRBAC { rules in
                for j in rules.indices where rules[j]["resources"] == ["virtualservices"] { rules[j]["verbs"] = ["get", "list", "watch"] }
            })
        try await world.request(.abort)
        try await world.waitFor("rolling back, the weight write refused") { rollout in
            rollout[path: ["status", "phase"]] == "RollingBack"
                && rollout[path: ["status", "conditions"]]?.arrayValue?.contains { $0["type"] == "Reconciled" && $0["status"] == "False" } == true
        }
        let reasons = try await world.client.list(.events, namespace: "shop").items.compactMap { $0["reason"]?.stringValue }
        #expect(reasons.contains("RequestAccepted"), "\(reasons)")
        #expect(reasons.contains("RollingBack"), "\(reasons)")
        #expect(reasons.contains("ActionFailed"), "\(reasons)")
        // Allowed again: the rollback finishes, and says so once.
        try await world.sandbox.store.apply(try Self.controllerRBAC())
        _ = try await world.waitForPhase("Aborted")
        let after = try await world.client.list(.events, namespace: "shop").items.compactMap { $0["reason"]?.stringValue }
        #expect(after.filter { $0 == "RollingBack" }.count == 1)
        #expect(after.filter { $0 == "RolloutAborted" }.count == 1)
        #expect(weights(try await world.virtualService()) == (100, 0))
    }

    /// The API server takes no Events for a while (500s for Events only): the rollout goes on, its Events stay owed in
    /// status, and once Events are taken again each is recorded, once (they were dropped as best effort).
    @Test func eventsTheAPIServerCouldNotTakeStayOwedUntilItDoes() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        try await world.patchSpec(fastSpec.applyingMergePatch(["stages": [["weight": 20, "hold": "600s"]]]))
        try await Self.startFromStable(world)
        await world.sandbox.store.setFaults(SandboxFaults(serverErrorRate: 1, resources: ["events"]))
        _ = world.startController(analyzer: ScriptedMetrics())
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        let held = try await world.waitFor("stage 1 at 20%, its Events owed") { rollout in
            let owed = rollout[path: ["status", "pendingEvents"]]?.arrayValue?.compactMap { $0["reason"]?.stringValue } ?? []
            return rollout[path: ["status", "canaryWeight"]]?.intValue == 20 && owed.contains("StageStarted")
        }
        #expect(held[path: ["status", "pendingEvents"]]?.arrayValue?.contains { $0["reason"] == "RolloutStarted" } == true)
        // Ended meanwhile: an idle Rollout, which nothing else reconciles, still gets its Events recorded.
        try await world.request(.promoteFull)
        try await world.waitFor("Succeeded, its Events owed") { rollout in
            let owed = rollout[path: ["status", "pendingEvents"]]?.arrayValue?.compactMap { $0["reason"]?.stringValue } ?? []
            return rollout[path: ["status", "phase"]] == "Succeeded" && owed.contains("RolloutSucceeded")
        }
        await world.sandbox.store.setFaults(SandboxFaults())
        try await world.waitFor("the Events recorded") { $0[path: ["status", "pendingEvents"]] == nil }
        try await Self.expectEachEventOnce(world, [.rolloutStarted, .stageStarted, .requestAccepted, .rolloutSucceeded])
    }

    /// An idle Rollout whose Event the API server could not take (its spec broken while Events get 500s): nothing else
    /// reconciles it, and the Event is still tried again until it is recorded (a reconcile that only found it owed
    /// again counted the Rollout as settled, and it stayed owed until something changed).
    @Test func anIdleRolloutsOwedEventIsTriedAgainUntilRecorded() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        await world.sandbox.store.setFaults(SandboxFaults(serverErrorRate: 1, resources: ["events"]))
        let running = world.startController(analyzer: ScriptedMetrics())
        try await world.patchSpec(fastSpec.applyingMergePatch(["stages": [["weight": 50, "hold": "1s"], ["weight": 20, "hold": "1s"]]]))
        try await world.waitFor("InvalidSpec owed") { rollout in
            rollout[path: ["status", "pendingEvents"]]?.arrayValue?.contains { $0["reason"] == "InvalidSpec" } == true
        }
        // The decisions that follow find the Event owed, with nothing else to do, and fail it again: none of them may
        // count the Rollout as settled (a resync pass would skip it, and the retry after 5 s would find it settled).
        let decided = running.controller.counts.decisions
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        var settledWhileOwed = false
        while running.controller.counts.decisions < decided + 3, ContinuousClock.now < deadline {
            if running.controller.resyncPass() == 0 {
                settledWhileOwed = true
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(!settledWhileOwed, "settled with an Event owed")
        #expect(running.controller.counts.decisions >= decided + 3)
        await world.sandbox.store.setFaults(SandboxFaults())
        try await world.waitFor("the Event recorded") { $0[path: ["status", "pendingEvents"]] == nil }
        try await Self.expectEachEventOnce(world, [.invalidSpec])
    }

    /// The write after the one that ended the rollout fails (here: RBAC forbids taking the finalizer off): the failure
    /// is recorded on the Succeeded status just written, not on the Finalising one the decision started from, which
    /// would end the rollout again and again (a RolloutSucceeded Event, a history entry, a notification each time).
    @Test func aFailureAfterTheEndKeepsTheEnd() async throws {
        let token = "controller-without-patch"
        let world = try await World(rbac: true, tokens: [token: .serviceAccount(namespace: "fledge-system", name: "fledge")])
        defer { Task { await world.stop() } }
        try await world.sandbox.store.apply(
            try Self.controllerRBAC { rules in
                for j in rules.indices where rules[j]["resources"] == ["rollouts"] { rules[j]["verbs"] = ["list", "watch"] }
            })
        try await world.patchSpec(fastSpec.applyingMergePatch(["stages": [["weight": 50, "hold": "1s"]]]))
        _ = try await world.client.patch(.rollouts, namespace: "shop", name: "product-service", .merge(["metadata": ["finalizers": ["fledge.dev/traffic"]]]))
        try await Self.startFromStable(world)
        _ = world.startController(analyzer: ScriptedMetrics(), client: try world.client(token: token))
        try await world.trigger(image: "registry.example/product-service:2.0.0")
        let failing = try await world.waitFor("Succeeded, and the finalizer refused") { rollout in
            rollout[path: ["status", "conditions"]]?.arrayValue?.contains { $0["type"] == "Reconciled" && $0["status"] == "False" } == true
                && rollout[path: ["status", "phase"]] == "Succeeded"
        }
        #expect(failing[path: ["status", "conditions"]]?.arrayValue?.first { $0["type"] == "Reconciled" }?["message"]?.stringValue?.contains("finalizer") == true)
        // Several retries later (they back off from 0.5 s), still the one end.
        var phases: Set<String> = []
        for _ in 0..<30 {
            phases.insert(try await world.phase() ?? "-")
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(phases == ["Succeeded"])
        let history = try await world.rollout()[path: ["status", "history"]]?.arrayValue ?? []
        #expect(history.count == 1, "\(history)")
        let succeeded = try await world.client.list(.events, namespace: "shop").items.filter { $0["reason"] == "RolloutSucceeded" }
        #expect(succeeded.count == 1)
    }
}
