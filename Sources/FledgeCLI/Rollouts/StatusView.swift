import FledgeController
import FledgeCore
import FledgeJSON
import Foundation

/// How `fledge status` shows a Rollout: why it is where it is, at a glance.
enum StatusView {
    /// A measured value with its unit, as `fledge query` shows them: `97.88%` for success-rate (and the judge's
    /// shares of 5xx and of slow requests), `120 ms` for a latency; a custom metric's number as it is.
    static func measured(_ value: Double, metric name: String, plan: RolloutPlan?) -> String {
        let kind = plan?.analysis.metrics.first { $0.name == name }?.kind
        let unit: String
        switch kind {
        case .successRate?: unit = "%"
        case .latency?: unit = " ms"
        case .custom?: unit = ""
        case nil: unit = ["judge-errors", "judge-latency"].contains(name) ? "%" : ""
        }
        return QueryCommand.decimal(value) + unit
    }

    /// The full block: phase, revision, stages with the current weight, analysis against thresholds, counters,
    /// conditions, requests and recent Events.
    static func render(_ fetched: FetchedRollout, events: Result<[EventLine], CLIError>?, now: Timestamp) -> String {
        let rollout = fetched.rollout
        let status = fetched.status
        let plan = try? CoreBridge.plan(rollout)
        var out: [String] = []
        func field(_ name: String, _ value: String) { out.append((name + ":").padding(to: 15) + value) }

        field("Rollout", "\(fetched.namespace)/\(fetched.name)")
        var phase = rollout.status == nil ? "(no status yet: is the Fledge controller running?)" : status.phase.rawValue
        if rollout.status != nil, !fetched.statusIsCurrent {
            phase += "  (the controller has not yet seen generation \(rollout.metadata.generation ?? 0))"
        }
        field("Phase", phase)
        if let revision = status.revision {
            field("Revision", revision + (status.stableRevision.map { $0 == revision ? "  (= stable)" : "  (stable \($0))" } ?? ""))
        } else if let stable = status.stableRevision {
            field("Revision", "stable \(stable)")
        }
        if let message = status.message, !message.isEmpty { field("Message", message) }
        // The controller puts the reason into status.message (one line, bounded); the whole of it when it does not.
        if let reason = rollout.metadata.annotations?[AbortCommand.reasonAnnotation], [.rollingBack, .aborted].contains(status.phase),
            rollout.abortReason.map({ status.message?.hasSuffix(": " + $0) == true }) != true || reason != rollout.abortReason
        {
            field("Abort reason", reason)
        }
        let weights = plan?.stages.map { ($0.weight, $0.manualApproval) }
            ?? (rollout.spec.stages ?? []).compactMap { s in s.weight.map { ($0, s.approval == "manual") } }
        if !weights.isEmpty {
            field("Stages", progressLine(weights, current: showsStage(status) ? status.stage : nil) + "   canary weight \(status.canaryWeight)%")
        } else {
            field("Weight", "canary \(status.canaryWeight)%")
        }
        let failureLimit = limit(
            "spec.analysis.failureLimit", planned: plan?.analysis.failureLimit, spec: rollout.spec.analysis?.failureLimit,
            default: Defaults.failureLimit, rollout: rollout)
        let providerErrorLimit = limit(
            "spec.analysis.providerErrorLimit", planned: plan?.analysis.providerErrorLimit, spec: rollout.spec.analysis?.providerErrorLimit,
            default: Defaults.providerErrorLimit, rollout: rollout)
        var checks = "failed \(status.failedChecks)/\(failureLimit.value)"
        checks += ", inconclusive \(status.inconclusiveChecks)"
        checks += ", provider errors \(status.errorChecks)/\(providerErrorLimit.value)"
        let unknown = [failureLimit.unknownBecause, providerErrorLimit.unknownBecause].compactMap { $0 }
        if !unknown.isEmpty { checks += " (? = \(unknown.joined(separator: "; ")))" }
        if showsStage(status) { checks += ", passed in this stage \(status.passedChecks)" }
        field("Checks", checks)

        if let analysis = status.lastAnalysis, !analysis.isEmpty {
            field("Analysis", status.lastAnalysisAt.map { "\($0) (\(age(since: $0, now: now)) ago)" } ?? "")
            var table = Table(headers: ["METRIC", "CANARY", "STABLE", "THRESHOLD", "VERDICT", "REQUESTS", "NOTE"])
            for metric in analysis {
                table.rows.append([
                    metric.name, metric.value.map { Self.measured($0, metric: metric.name, plan: plan) } ?? "-",
                    metric.stableValue.map { Self.measured($0, metric: metric.name, plan: plan) } ?? "-",
                    metric.threshold, metric.verdict.rawValue, metric.requests.map(String.init) ?? "-", metric.message ?? "",
                ])
            }
            out.append(indent(table.render()))
        }
        if !status.conditions.isEmpty {
            out.append("Conditions:")
            var table = Table(headers: ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"])
            for c in status.conditions {
                table.rows.append([c.type, c.status.rawValue, c.reason, age(since: c.lastTransitionTime, now: now), c.message])
            }
            out.append(indent(table.render()))
        }
        if !status.requests.isEmpty {
            out.append("Requests:")
            var table = Table(headers: ["REQUEST", "ANSWER", "AGE", "MESSAGE"])
            for r in status.requests {
                table.rows.append([r.kind.rawValue, r.accepted ? "accepted" : "refused", age(since: r.seenAt, now: now), r.message])
            }
            out.append(indent(table.render()))
        }
        if let last = status.history.last {
            field("Last rollout", "\(last.revision) \(last.outcome) (\(last.reason)) \(age(since: last.finishedAt, now: now)) ago")
        }
        switch events {
        case .success(let lines) where lines.isEmpty: out.append("Events:".padding(to: 15) + "<none>")
        case .success(let lines):
            out.append("Events:")
            var table = Table(headers: ["AGE", "TYPE", "REASON", "MESSAGE"])
            for e in lines {
                let when = e.time.map { age(since: $0, now: now) } ?? "-"
                table.rows.append([e.count > 1 ? "\(when) (x\(e.count))" : when, e.type, e.reason, e.message])
            }
            out.append(indent(table.render()))
        case .failure(let error): out.append("Events:".padding(to: 15) + "cannot be listed: \(error.message)")
        case nil: break
        }
        return out.joined(separator: "\n")
    }

    /// `10 ─ [25] ─ 50⏸ ─ 100`: the stages' weights, the current one in brackets, manual approvals marked.
    static func progressLine(_ stages: [(weight: Int, manual: Bool)], current: Int?) -> String {
        stages.enumerated().map { index, stage in
            let text = "\(stage.weight)\(stage.manual ? "⏸" : "")"
            return index == current ? "[\(text)]" : text
        }.joined(separator: " ─ ")
    }

    /// What keeps the rollout from doing its job, beyond its phase: an invalid spec, a write that keeps failing, or
    /// traffic that cannot be routed (not the canary still starting). `nil` when nothing does.
    static func problem(_ status: RolloutStatus) -> String? {
        for type in [ConditionType.specValid, reconciledCondition, ConditionType.trafficReady] {
            if let c = status.condition(type), c.status == .false, c.reason != "CanaryNotReady" { return c.reason }
        }
        return nil
    }

    /// A limit of the Checks line: the plan's; with an invalid spec, what the spec sets (or the default when it sets
    /// none), unless that field is among what is wrong: then `?` and why.
    static func limit(_ field: String, planned: Int?, spec: Int?, default: Int, rollout: Rollout) -> (value: String, unknownBecause: String?) {
        if let planned { return (String(planned), nil) }
        guard case .failure(let errors) = rollout.plan() else { return (String(spec ?? `default`), nil) }
        // An issue about the field, or about what holds it (`spec.analysis` that did not decode).
        if let issue = errors.issues.first(where: { $0.path == field || field.hasPrefix($0.path + ".") || $0.path.isEmpty }) {
            return ("?", issue.description)
        }
        return (String(spec ?? `default`), nil)
    }

    static func showsStage(_ status: RolloutStatus) -> Bool {
        (status.phase == .progressing || status.phase == .paused) && status.stage != nil
    }

    /// `Progressing, stage 2/4 at 25%`, for messages.
    static func phaseSummary(_ status: RolloutStatus, stages: Int) -> String {
        guard showsStage(status), let stage = status.stage else { return status.phase.rawValue }
        return "\(status.phase.rawValue), stage \(stage + 1)/\(stages), canary weight \(status.canaryWeight)%"
    }

    /// One plain line for `status --watch` when the output is not a terminal.
    static func line(_ fetched: FetchedRollout) -> String {
        let status = fetched.status
        guard fetched.rollout.status != nil else { return "\(fetched.name): no status yet (is the Fledge controller running?)" }
        var parts = [status.phase.rawValue]
        if showsStage(status), let stage = status.stage {
            parts.append("stage \(stage + 1)/\(fetched.rollout.spec.stages?.count ?? 0)")
        }
        parts.append("weight \(status.canaryWeight)%")
        if let revision = status.revision { parts.append("revision \(revision)") }
        if status.failedChecks > 0 || status.inconclusiveChecks > 0 {
            parts.append("failed \(status.failedChecks) inconclusive \(status.inconclusiveChecks)")
        }
        var text = "\(fetched.name): " + parts.joined(separator: "  ")
        if let message = status.message, !message.isEmpty { text += "  — \(message)" }
        if !fetched.statusIsCurrent { text += "  (status not yet updated for the current spec)" }
        return text
    }

    /// kubectl-style ages: `45s`, `12m`, `5h`, `3d`.
    static func age(since then: Timestamp, now: Timestamp) -> String {
        let seconds = max(0, now.seconds - then.seconds)
        if seconds < 120 { return "\(seconds)s" }
        if seconds < 120 * 60 { return "\(seconds / 60)m" }
        if seconds < 48 * 3600 { return "\(seconds / 3600)h" }
        return "\(seconds / 86400)d"
    }

    static func indent(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n")
    }
}
