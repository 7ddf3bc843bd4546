import FledgeCore
import FledgeJSON
import FledgeKubernetes
import FledgeSandbox
import Foundation

/// Plays the controller's part for the CLI's contract tests, until the real controller exists: reads the Rollout
/// and the objects it names from the sandbox, calls FledgeCore's `decide` (the same function the controller
/// calls), writes the status it returns and carries out its actions on the sandbox. What the CLI reads back is
/// therefore exactly what the core writes. Time is a synthetic clock; the analysis is a canned measurement.
struct ContractController {
    enum Canary { case healthy, failing }

    let sandbox: CLISandbox
    var namespace = "shop"
    var name = "product-service"
    var now = Timestamp(Date())
    var canary: Canary = .healthy
    var latest: IntervalResult?
    /// While set, Events are kept here instead of recorded, as a controller whose Event writes lag behind its status
    /// writes; `recordHeldEvents()` writes them (with the times of their decisions).
    var heldEvents: [JSONValue]?

    init(_ sandbox: CLISandbox) { self.sandbox = sandbox }

    var store: SandboxStore { sandbox.server.store }

    func object(_ resource: GroupResource, _ name: String) async -> JSONValue? {
        await store.object(resource, namespace: namespace, name: name)
    }

    /// One reconcile: decide, write status, execute the actions.
    @discardableResult
    mutating func reconcile() async throws -> Decision {
        let object = try requireObjectHelper(await object(CLISandbox.rollouts, name))
        let rollout = try Rollout(json: object)
        let references = try requireReferences(rollout)
        let observed = Observed(
            stableDeployment: await self.object(.deployments, references.stableDeployment),
            canaryDeployment: await self.object(.deployments, references.canaryDeployment),
            virtualService: await self.object(GroupResource(group: "networking.istio.io", resource: "virtualservices"), references.virtualService),
            destinationRule: await self.object(GroupResource(group: "networking.istio.io", resource: "destinationrules"), references.destinationRule))
        let decision = decide(rollout: rollout, observed: observed, analysis: Analysis(latest: latest), now: now)
        if decision.status != rollout.status {
            try await store.setStatus(CLISandbox.rollouts, namespace: namespace, name: name, status: try JSONValue(encoding: decision.status))
        }
        for action in decision.actions { try await execute(action, rollout: object) }
        await store.settleDeployments()
        return decision
    }

    func requireReferences(_ rollout: Rollout) throws -> RolloutReferences {
        guard let references = rollout.references else { throw HarnessError("the Rollout has no target") }
        return references
    }

    mutating func execute(_ action: Action, rollout: JSONValue) async throws {
        switch action {
        case .ensureCanaryDeployment(let spec):
            // The object ClusterWriter creates.
            try await store.apply([spec.deployment(rollout: rollout, namespace: namespace)])
        case .setWeights(let change):
            let vsName = change.virtualService[path: ["metadata", "name"]]?.stringValue ?? name
            try await store.modify(GroupResource(group: "networking.istio.io", resource: "virtualservices"), namespace: namespace, name: vsName) {
                $0["spec"] = change.virtualService["spec"]
            }
        case .writeStableTemplate(let deployment, let template, _):
            try await store.modify(.deployments, namespace: namespace, name: deployment) { $0[path: ["spec", "template"]] = template }
        case .scaleCanary(let deployment, let replicas):
            try await store.modify(.deployments, namespace: namespace, name: deployment) { $0[path: ["spec", "replicas"]] = .int(Int64(replicas)) }
        case .emitEvent(let event):
            // As the controller records it: an events.k8s.io/v1 Event regarding the Rollout.
            let record = EventRecord(
                regarding: rollout, reason: event.reason, note: event.message, type: event.type == .warning ? .warning : .normal,
                action: event.reason, reportingInstance: "contract-test", time: now.date)
            let eventObject = record.eventObject(namespace: namespace, name: EventRecord.uniqueName(regarding: rollout, time: now.date))
            if heldEvents != nil {
                heldEvents?.append(eventObject)
            } else {
                try await store.apply([eventObject])
            }
        case .runAnalysis(let request):
            var metrics: [String: MetricSample] = [:]
            for metric in request.metrics {
                let good = metric.name.hasPrefix("latency") ? 120.0 : 99.9
                let bad = metric.name.hasPrefix("latency") ? 2400.0 : 80.0
                metrics[metric.name] = MetricSample(.value(canary == .healthy ? good : bad), requests: 500)
            }
            latest = IntervalResult(time: now, requests: 500, metrics: metrics)
        case .setFinalizer(let present):
            try await store.modify(CLISandbox.rollouts, namespace: namespace, name: name) { object in
                var finalizers = (object[path: ["metadata", "finalizers"]]?.arrayValue ?? []).filter { $0.stringValue != Finalizers.traffic }
                if present { finalizers.append(.string(Finalizers.traffic)) }
                object[path: ["metadata", "finalizers"]] = finalizers.isEmpty ? nil : .array(finalizers)
            }
        case .callWebhook, .requeue:
            break
        }
    }

    /// Records the Events held back, and records the next ones at once again.
    mutating func recordHeldEvents() async throws {
        let held = heldEvents ?? []
        heldEvents = nil
        if !held.isEmpty { try await store.apply(held) }
    }

    /// Reconciles until `done` holds for the stored Rollout, moving the synthetic clock on whenever a reconcile
    /// asks for nothing.
    mutating func run(maxSteps: Int = 400, until done: (Rollout) -> Bool) async throws {
        for _ in 0..<maxSteps {
            if done(try await sandbox.rollout(namespace, name)) { return }
            let decision = try await reconcile()
            let analysing = decision.actions.contains { if case .runAnalysis = $0 { true } else { false } }
            if decision.writes.isEmpty && !analysing { now = Timestamp(seconds: now.seconds + 5) }
        }
        throw HarnessError("the rollout did not get there in \(maxSteps) reconciles: \(String(describing: try await sandbox.rollout(namespace, name).status))")
    }

    mutating func run(untilPhase phase: Phase) async throws {
        try await run { $0.status?.phase == phase }
    }
}
