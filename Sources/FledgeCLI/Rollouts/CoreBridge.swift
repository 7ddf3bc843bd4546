import FledgeCore
import FledgeJSON
import Foundation

/// What FledgeCore would make of a change, computed in the CLI with the controller's own functions, so that the
/// CLI can answer at once (the revision `trigger` starts, a request the controller would refuse) and the answer is
/// the controller's by construction.
enum CoreBridge {
    /// The revision `decide` rolls out for `plan` over the stable Deployment (see `Engine.prepare`): the effective
    /// template keeps the stable selector's and the stable subset's label keys, and its hash is the revision.
    static func revision(plan: RolloutPlan, observed: Observed, namespace: String) throws(CLIError) -> (revision: String, stableRevision: String) {
        let (stable, effective) = try templates(plan: plan, observed: observed, namespace: namespace)
        let stableRevision = observed.stable?.revision ?? FledgeCore.revision(of: stable)
        return (effective == stable ? stableRevision : FledgeCore.revision(of: effective), stableRevision)
    }

    /// The stable Deployment's pod template and the canary's effective one (what promotion writes into it).
    static func templates(plan: RolloutPlan, observed: Observed, namespace: String) throws(CLIError) -> (stable: JSONValue, effective: JSONValue) {
        guard let stable = observed.stable else {
            throw CLIError("Deployment \"\(plan.target)\" (spec.target.deployment) not found in namespace \"\(namespace)\"")
        }
        let stableLabels = observed.destinationRule.flatMap { dr in subsets(of: dr).first { $0.name == plan.traffic.stableSubset }?.labels } ?? [:]
        do {
            let effective = try effectiveTemplate(
                stable: stable.template, change: plan.change, keepingLabels: stable.selectorKeys.union(stableLabels.keys))
            return (stable.template, effective)
        } catch {
            throw CLIError(error.message)
        }
    }

    /// What the controller would answer to `kind` (with `token`) if it reconciled now: nil when `decide` would not
    /// look at requests (invalid spec, stable Deployment missing).
    static func requestOutcome(_ kind: ManualRequest, token: String, rollout: Rollout, observed: Observed, now: Date) -> RequestRecord? {
        var asked = rollout
        var annotations = asked.metadata.annotations ?? [:]
        annotations[kind.annotation] = token
        asked.metadata.annotations = annotations
        let decision = decide(rollout: asked, observed: observed, analysis: .none, now: Timestamp(now))
        return decision.status.requests.first { $0.kind == kind && $0.token == token }
    }

    /// `Rollout.plan()` as one CLI error listing every problem.
    static func plan(_ rollout: Rollout) throws(CLIError) -> RolloutPlan {
        switch rollout.plan() {
        case .success(let plan): return plan
        case .failure(let errors):
            throw CLIError("rollout \"\(rollout.metadata.name)\" has an invalid spec: \(errors.issues.map(\.description).joined(separator: "; "))")
        }
    }
}
