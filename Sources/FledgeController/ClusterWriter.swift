import FledgeCore
import FledgeJSON
import FledgeKubernetes
import Foundation
import Logging

/// Turns the core's write actions into Kubernetes writes. Every write is a merge patch that carries the
/// `resourceVersion` it was computed from, so a write based on a stale cache fails with a conflict instead of
/// overwriting someone else's change, and it touches only the fields the action is about: Fledge never
/// drops a field it does not understand (Rule 1).
struct ClusterWriter: Sendable {
    let client: KubernetesClient
    let caches: Caches
    let fieldManager: String
    /// Checked right before every write: a replica that lost its lease must not write (Rule 7).
    let mayWrite: @Sendable () -> Bool
    let logger: Logger

    /// Carries out `action`. Returns the Rollout as written when the action changed it (the finalizer added), so that a
    /// later write of the same reconcile carries its new `resourceVersion` instead of meeting a conflict.
    @discardableResult
    func execute(_ action: Action, rollout: JSONValue, references: RolloutReferences) async throws(ControllerError) -> JSONValue? {
        switch action {
        case .ensureCanaryDeployment(let spec):
            try await ensureCanary(spec, rollout: rollout, namespace: references.namespace)
        case .setWeights(let change):
            try await setWeights(change, namespace: references.namespace)
        case .writeStableTemplate(let deployment, let template, let revision):
            try await writeStableTemplate(deployment: deployment, template: template, revision: revision, namespace: references.namespace)
        case .scaleCanary(let deployment, let replicas):
            try await scaleCanary(deployment: deployment, replicas: replicas, namespace: references.namespace)
        case .setFinalizer(let present):
            return try await setFinalizer(present, rollout: rollout, namespace: references.namespace)
        case .callWebhook, .emitEvent, .runAnalysis, .requeue:
            break  // not cluster writes; the controller runs these itself
        }
        return nil
    }

    // MARK: - Traffic

    /// Writes only the managed routes' weights, then reads the VirtualService back: status records a weight only
    /// once the cluster has it (Rule 3).
    func setWeights(_ change: WeightChange, namespace: String) async throws(ControllerError) {
        let action = "set weights \(change.stableWeight)/\(change.canaryWeight)"
        guard let name = change.virtualService["metadata"]?["name"]?.stringValue,
            let current = caches.virtualServices.get(namespace: namespace, name: name)
        else {
            throw .missingObject(action: action, kind: "VirtualService", name: "\(namespace)/\(change.virtualService["metadata"]?["name"]?.stringValue ?? "?")")
        }
        let patch = Self.preconditioned(current.mergePatch(to: change.virtualService), on: current)
        let written = try await write(action) { () async throws(KubernetesError) in
            try await client.patch(.virtualServices, namespace: namespace, name: name, .merge(patch), fieldManager: fieldManager)
        }
        let readBack: JSONValue
        do {
            readBack = try await client.get(.virtualServices, namespace: namespace, name: name)
        } catch {
            throw .kubernetes(action: "\(action): read back", error)
        }
        guard readBack["spec"]?["http"] == change.virtualService["spec"]?["http"] else {
            throw .readBackMismatch(
                action: action, detail: "VirtualService \(namespace)/\(name) does not carry the written routes (another writer changed it)")
        }
        caches.virtualServices.inject(readBack, replacing: current)
        _ = written
    }

    // MARK: - Workloads

    func ensureCanary(_ spec: CanaryDeploymentSpec, rollout: JSONValue, namespace: String) async throws(ControllerError) {
        let action = "ensure canary Deployment \(spec.name) (\(spec.replicas) replica\(spec.replicas == 1 ? "" : "s"), revision \(spec.revision))"
        let desired = spec.deployment(rollout: rollout, namespace: namespace)
        if let current = caches.deployments.get(namespace: namespace, name: spec.name) {
            // A Deployment's selector is immutable. Fledge never deletes (its RBAC has no delete): it says what to do.
            if current[path: ["spec", "selector"]] != desired[path: ["spec", "selector"]] {
                throw .needsAction(
                    action: action,
                    message: "Deployment \(namespace)/\(spec.name) selects \(current[path: ["spec", "selector", "matchLabels"]]?.serializedString() ?? "{}") but the canary needs \(desired[path: ["spec", "selector", "matchLabels"]]?.serializedString() ?? "{}"), and a selector cannot change: delete it (kubectl delete deployment \(spec.name) -n \(namespace)) and Fledge creates it again")
            }
            var wanted = current
            // Labels and annotations are added or updated, never removed: others (people, policy engines) may add theirs.
            for key in ["labels", "annotations"] {
                for (name, value) in desired[path: ["metadata", key]]?.objectValue ?? [:] { wanted[path: ["metadata", key, name]] = value }
            }
            wanted[path: ["metadata", "ownerReferences"]] = desired[path: ["metadata", "ownerReferences"]]
            for field in Self.canarySpecFields { wanted[path: ["spec", field]] = desired[path: ["spec", field]] }
            let patch = current.mergePatch(to: wanted)
            if patch == [:] { return }
            let updated = try await write(action) { () async throws(KubernetesError) in
                try await client.patch(
                    .deployments, namespace: namespace, name: spec.name, .merge(Self.preconditioned(patch, on: current)),
                    fieldManager: fieldManager)
            }
            caches.deployments.inject(updated, replacing: current)
        } else {
            do {
                let created = try await write(action) { () async throws(KubernetesError) in
                    try await client.create(.deployments, namespace: namespace, desired)
                }
                caches.deployments.inject(created, replacing: nil)
            } catch {
                // Created by an earlier run whose watch event has not arrived yet: the next reconcile updates it.
                if case .kubernetes(_, let k) = error, k.isAlreadyExists { return }
                throw error
            }
        }
    }

    /// Promotion: the canary's template into the stable Deployment (the core keeps the stable slot's labels).
    func writeStableTemplate(deployment: String, template: JSONValue, revision: String, namespace: String) async throws(ControllerError) {
        let action = "promote revision \(revision) into Deployment \(deployment)"
        guard let current = caches.deployments.get(namespace: namespace, name: deployment) else {
            throw .missingObject(action: action, kind: "Deployment", name: "\(namespace)/\(deployment)")
        }
        var wanted = current
        wanted[path: ["spec", "template"]] = template
        wanted[path: ["metadata", "annotations", Annotations.promotedRevision]] = .string(revision)
        var stored = current
        let patch = current.mergePatch(to: wanted)
        if patch != [:] {
            stored = try await write(action) { () async throws(KubernetesError) in
                try await client.patch(
                    .deployments, namespace: namespace, name: deployment, .merge(Self.preconditioned(patch, on: current)),
                    fieldManager: fieldManager)
            }
            caches.deployments.inject(stored, replacing: current)
        }
        // The server stored the template with its defaults added: record the hash of what it stored, so that while the
        // template stays so it counts as this revision (ObservedDeployment.revision). Preconditioned on what the write
        // returned: a template someone changed in between is theirs, and is not called this revision. Killed before
        // this, the next reconcile writes the (unchanged) template again and gets here.
        let storedTemplate = FledgeCore.revision(of: stored[path: ["spec", "template"]] ?? .null)
        guard stored[path: ["metadata", "annotations", Annotations.promotedTemplate]]?.stringValue != storedTemplate else { return }
        let record: JSONValue = ["metadata": ["annotations": [Annotations.promotedTemplate: .string(storedTemplate)]]]
        let recorded = try await write(action) { () async throws(KubernetesError) in
            try await client.patch(
                .deployments, namespace: namespace, name: deployment, .merge(Self.preconditioned(record, on: stored)),
                fieldManager: fieldManager)
        }
        caches.deployments.inject(recorded, replacing: stored)
    }

    func scaleCanary(deployment: String, replicas: Int, namespace: String) async throws(ControllerError) {
        let action = "scale Deployment \(deployment) to \(replicas)"
        guard let current = caches.deployments.get(namespace: namespace, name: deployment) else {
            if replicas == 0 { return }  // nothing to scale down
            throw .missingObject(action: action, kind: "Deployment", name: "\(namespace)/\(deployment)")
        }
        if current[path: ["spec", "replicas"]]?.intValue == Int64(replicas) { return }
        let patch: JSONValue = ["spec": ["replicas": .int(Int64(replicas))]]
        let updated = try await write(action) { () async throws(KubernetesError) in
            try await client.patch(
                .deployments, namespace: namespace, name: deployment, .merge(Self.preconditioned(patch, on: current)),
                fieldManager: fieldManager)
        }
        caches.deployments.inject(updated, replacing: current)
    }

    /// Adds or removes `Finalizers.traffic`, keeping any other finalizer, with the Rollout's `resourceVersion`
    /// (the list is replaced whole by a merge patch, so it must be the list it was computed from).
    /// Returns the Rollout as written after an addition (nil when nothing was written, or after a removal).
    @discardableResult
    func setFinalizer(_ present: Bool, rollout: JSONValue, namespace: String) async throws(ControllerError) -> JSONValue? {
        let name = rollout[path: ["metadata", "name"]]?.stringValue ?? ""
        let action = present ? "add finalizer \(Finalizers.traffic)" : "remove finalizer \(Finalizers.traffic)"
        let current = rollout[path: ["metadata", "finalizers"]]?.arrayValue ?? []
        var finalizers = current.filter { $0.stringValue != Finalizers.traffic }
        if present { finalizers.append(.string(Finalizers.traffic)) }
        if finalizers == current { return nil }
        let patch: JSONValue = ["metadata": ["finalizers": finalizers.isEmpty ? .null : .array(finalizers)]]
        let updated: JSONValue
        do {
            updated = try await write(action) { () async throws(KubernetesError) in
                try await client.patch(.rollouts, namespace: namespace, name: name, .merge(Self.preconditioned(patch, on: rollout)), fieldManager: fieldManager)
            }
        } catch {
            // Gone already: an earlier removal let the deletion finish, which is what this one wanted.
            if !present, case .kubernetes(_, let k) = error, k.isNotFound { return nil }
            throw error
        }
        // Not after a removal: that may have let the API server delete the Rollout, and its watch says so.
        guard present else { return nil }
        caches.rollouts.inject(updated, replacing: rollout)
        return updated
    }

    // MARK: - Status and Events

    /// Writes the Rollout's status with the `resourceVersion` it was decided from.
    @discardableResult
    func writeStatus(_ status: RolloutStatus, of rollout: JSONValue) async throws(ControllerError) -> JSONValue {
        let name = rollout["metadata"]?["name"]?.stringValue ?? ""
        let namespace = rollout["metadata"]?["namespace"]?.stringValue
        let action = "write status of Rollout \(namespace ?? "")/\(name) (phase \(status.phase.rawValue))"
        var object = rollout
        do {
            object["status"] = try JSONValue(encoding: status)
        } catch {
            throw .readBackMismatch(action: action, detail: "status could not be encoded: \(error)")
        }
        let written = try await write(action) { () async throws(KubernetesError) in
            try await client.updateStatus(.rollouts, namespace: namespace, object)
        }
        caches.rollouts.inject(written, replacing: rollout)
        return written
    }

    func recordEvent(_ event: RolloutEvent, about rollout: JSONValue, identity: String, now: Date) async {
        guard mayWrite() else { return }
        let record = EventRecord(
            regarding: Self.eventSubject(rollout), reason: event.reason, note: event.message, type: event.type == .warning ? .warning : .normal,
            action: event.reason, reportingInstance: identity, time: now)
        do {
            try await client.recordEvent(record)
        } catch {
            // Events are best effort: a rollout must not stop because its diary is full.
            logger.warning("could not record Event", metadata: ["reason": "\(event.reason)", "error": "\(error)"])
        }
    }

    /// Records one of a decision's Events under the name it was given in `status.pendingEvents`. True when it is
    /// recorded, now or before (409 AlreadyExists), or never can be (refused: RBAC, validation; Events are best effort
    /// and must not hold a rollout up); false when it is worth trying again (no answer, 429/5xx, not the leader).
    /// `lookFirst`: the Event was owed before this reconcile (a controller killed, a write that failed), so it may exist
    /// already; it is read first, and a restarted controller writes nothing for Events that exist.
    func record(_ pending: PendingEvent, about rollout: JSONValue, identity: String, lookFirst: Bool) async -> Bool {
        let namespace = rollout["metadata"]?["namespace"]?.stringValue
        if lookFirst {
            do {
                _ = try await client.get(.events, namespace: namespace, name: pending.name)
                return true
            } catch {
                // Not found, or not readable (RBAC without get on Events): created below, and 409 says it exists.
            }
        }
        guard mayWrite() else { return false }
        let record = EventRecord(
            regarding: Self.eventSubject(rollout), reason: pending.reason, note: pending.message, type: pending.type == .warning ? .warning : .normal,
            action: pending.reason, reportingInstance: identity, time: EventRecord.parseTime(pending.time) ?? Date(), name: pending.name)
        do {
            try await client.recordEvent(record)
            return true
        } catch {
            if error.isAlreadyExists { return true }
            let retry = error.kind == .transport || (error.kind == .api && (error.code == 429 || (error.code ?? 0) >= 500))
            logger.warning(
                "could not record Event", metadata: ["reason": "\(pending.reason)", "event": "\(pending.name)", "error": "\(error)", "retried": "\(retry)"])
            return !retry
        }
    }

    /// The Rollout as an Event's subject. Objects from a list may come without their type; an Event must name it
    /// (`involvedObject.kind=Rollout`).
    static func eventSubject(_ rollout: JSONValue) -> JSONValue {
        var regarding = rollout
        if regarding["kind"] == nil { regarding["kind"] = .string(Rollout.kind) }
        if regarding["apiVersion"] == nil { regarding["apiVersion"] = .string(Rollout.apiVersion) }
        return regarding
    }

    // MARK: - Helpers

    private func write<T>(_ action: String, _ body: () async throws(KubernetesError) -> T) async throws(ControllerError) -> T {
        guard mayWrite() else { throw .notLeader(action: action) }
        logger.debug("write", metadata: ["action": "\(action)"])
        do {
            return try await body()
        } catch {
            throw .kubernetes(action: action, error)
        }
    }

    /// A merge patch that fails with 409 Conflict unless the object is still at `base`'s resourceVersion.
    static func preconditioned(_ patch: JSONValue, on base: JSONValue) -> JSONValue {
        var patch = patch
        if let version = base["metadata"]?["resourceVersion"] {
            patch[path: ["metadata", "resourceVersion"]] = version
        }
        return patch
    }

    /// The fields of the canary's spec Fledge decides; on an update each is written whole (an absent one removed).
    static let canarySpecFields = ["replicas", "template", "strategy", "minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit"]
}
