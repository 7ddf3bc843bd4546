import FledgeCore
import FledgeJSON
import FledgeKubernetes
import FledgePrometheus
import Foundation

/// Why a report could not be made at all (the Rollout cannot be read). Keeps the server's message.
public struct ReportError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Reads what a report shows: the Rollout (status and spec), its Events (both API versions) and, when a
/// Prometheus is given, every analysis metric over the rollout's time range with the controller's own PromQL.
/// Only the Rollout is required: without Events or Prometheus the report says what is missing.
public struct ReportGatherer: Sendable {
    public let kubernetes: KubernetesClient
    public let prometheus: PrometheusClient?
    /// Printed when `prometheus` is nil, e.g. "no --prometheus was given".
    public let noPrometheusReason: String
    /// Most points per series: the range query's step grows with the rollout's length.
    public var maxPointsPerSeries = 400

    public init(kubernetes: KubernetesClient, prometheus: PrometheusClient?, noPrometheusReason: String = "no Prometheus address was given") {
        self.kubernetes = kubernetes
        self.prometheus = prometheus
        self.noPrometheusReason = noPrometheusReason
    }

    /// Everything for `ReportRenderer.html`; `now` (Unix seconds) ends the timeline of a rollout still running.
    public func gather(rollout name: String, namespace: String, now: Double) async throws(ReportError) -> RolloutReportData {
        let object: JSONValue
        do {
            object = try await kubernetes.get(.rollouts, namespace: namespace, name: name)
        } catch where error.isNotFound {
            throw ReportError("rollout \"\(name)\" not found in namespace \"\(namespace)\" (\(kubernetes.configuration.server))")
        } catch {
            throw ReportError("reading rollout \(namespace)/\(name): \(error)")
        }
        let rollout: Rollout
        do {
            rollout = try Rollout(json: object)
        } catch {
            throw ReportError("the server returned a Rollout Fledge cannot read: \(error)")
        }
        let status = rollout.status ?? RolloutStatus()
        var notes: [String] = []

        let plan: RolloutPlan?
        switch rollout.plan() {
        case .success(let checked): plan = checked
        case .failure(let errors):
            plan = nil
            notes.append("The Rollout's spec is invalid (\(errors)); stages and thresholds are shown as written, metric series are not queried.")
        }

        let events: [RolloutEventRecord]
        switch await readEvents(for: rollout, namespace: namespace) {
        case .success(let found): events = found
        case .failure(let error):
            events = []
            notes.append("The Rollout's Events could not be read (\(error.message)): decisions are not marked.")
        }

        // The time range: from the start of the current run to its end (or now while it runs).
        let lastStart = events.last { $0.reason == "RolloutStarted" }?.time
        var start = status.startedAt.map { Double($0.seconds) } ?? lastStart ?? events.first?.time ?? now - 300
        if let lastStart, lastStart < start, start - lastStart < 5 { start = lastStart }
        let shown = Self.runEvents(events, from: start)
        var end: Double
        if status.phase.isIdle {
            end = max(shown.last?.time ?? start, status.history.last.map { Double($0.finishedAt.seconds) } ?? start)
            end = max(end, status.lastAnalysisAt.map { Double($0.seconds) } ?? start)
        } else {
            end = max(now, shown.last?.time ?? start)
        }
        if end - start < 10 { end = start + 10 }
        // The axis starts at the rollout's start, so elapsed times read as "since started".
        let rangeStart = start
        let rangeEnd = end + max(2, (end - start) * 0.02)

        let markers = shown.map {
            DecisionMarker(time: $0.time, kind: DecisionMarker.kind(forReason: $0.reason, message: $0.message), reason: $0.reason, message: $0.message, count: $0.count)
        }
        let weightSteps = Self.weightSteps(events: shown, start: rangeStart, status: status, now: end)

        var metrics = Self.metricDefinitions(rollout: rollout, plan: plan, namespace: namespace)
        let checks = Self.checks(events: shown, status: status, from: start - 1)
        for index in metrics.indices {
            metrics[index].report.checks = checks[metrics[index].report.name] ?? []
        }

        var seriesUnavailable: String?
        if let prometheus, plan != nil {
            let step = max(1, ((rangeEnd - rangeStart) / Double(maxPointsPerSeries)).rounded(.up))
            // Not past now: Prometheus would answer the future with the last samples it has.
            let queryEnd = max(rangeStart, min(rangeEnd, now))
            var failures: [String] = []
            for index in metrics.indices {
                guard let canaryQuery = metrics[index].canaryQuery else { continue }
                do {
                    metrics[index].report.canary = try await Self.points(prometheus.queryRange(canaryQuery, start: rangeStart, end: queryEnd, step: step))
                } catch {
                    metrics[index].report.seriesError = "\(error)"
                    failures.append("\(error)")
                    continue
                }
                if let stableQuery = metrics[index].stableQuery {
                    // Stable's line is context only: without it the chart still answers the question.
                    metrics[index].report.stable =
                        (try? await Self.points(prometheus.queryRange(stableQuery, start: rangeStart, end: queryEnd, step: step))) ?? []
                }
            }
            let queried = metrics.filter { $0.canaryQuery != nil }.count
            if queried > 0, failures.count == queried {
                // Prometheus is down or refuses every query: say so once, not under each chart.
                seriesUnavailable = failures[0]
                for index in metrics.indices { metrics[index].report.seriesError = nil }
            }
        } else if plan == nil {
            seriesUnavailable = "the spec is invalid, so the controller's queries are not known"
        } else {
            seriesUnavailable = noPrometheusReason
        }

        let stages: [ReportStage] =
            plan.map { $0.stages.map { ReportStage(weight: $0.weight, hold: $0.hold.description, manualApproval: $0.manualApproval) } }
            ?? (rollout.spec.stages ?? []).map { ReportStage(weight: $0.weight ?? 0, hold: $0.hold ?? "-", manualApproval: $0.approval != nil) }

        // spec.canary set back to the stable image after a rollout ended: the Rollout is Healthy and names stable's
        // revision, while the timeline is still that rollout's. Head the page with the rollout shown, and say what
        // came after (the header read "Healthy" over a rollback).
        var (phase, revision, message) = (status.phase.rawValue, status.revision, status.message)
        // No status at all: the controller has not seen the Rollout (the page said Healthy, status says this).
        if rollout.status == nil {
            phase = "no status yet"
            notes.append("The Rollout has no status yet: is the Fledge controller running?")
        }
        if status.phase == .healthy, let last = status.history.last, last.revision != status.revision,
            Double(last.finishedAt.seconds) >= rangeStart
        {
            (phase, revision, message) = (last.outcome, last.revision, last.message ?? last.reason)
            notes.append(
                "Since then spec.canary was set back to the stable revision\(status.revision.map { " (\($0))" } ?? ""): the Rollout is Healthy.")
        }

        return RolloutReportData(
            name: name, namespace: namespace, revision: revision, stableRevision: status.stableRevision, phase: phase,
            message: message, stages: stages, analysisInterval: plan?.analysis.interval.description ?? rollout.spec.analysis?.interval,
            failureLimit: plan?.analysis.failureLimit ?? rollout.spec.analysis?.failureLimit, start: rangeStart, end: rangeEnd,
            weightSteps: weightSteps, metrics: metrics.map(\.report), markers: markers, seriesUnavailable: seriesUnavailable, notes: notes,
            generatedAt: now)
    }

    // MARK: - Metrics

    struct MetricDefinition {
        var report: ReportMetric
        var canaryQuery: String?
        var stableQuery: String?
    }

    /// Each analysis metric with its thresholds and the PromQL the controller runs for the canary (and the same
    /// for stable). Without metrics the controller judges the request volume alone, so that is shown instead.
    static func metricDefinitions(rollout: Rollout, plan: RolloutPlan?, namespace: String) -> [MetricDefinition] {
        guard let plan else {
            return (rollout.spec.analysis?.metrics ?? []).compactMap { spec in
                guard let name = spec.name else { return nil }
                var thresholds: [ReportThreshold] = []
                if let min = spec.min { thresholds.append(ReportThreshold(.min, min)) }
                if let max = spec.max { thresholds.append(ReportThreshold(.max, max)) }
                return MetricDefinition(report: ReportMetric(name: name, thresholds: thresholds, thresholdText: thresholdText(min: spec.min, max: spec.max, decrease: spec.maxDecreaseFromStable, ratio: spec.maxRatioToStable)))
            }
        }
        let window = plan.analysis.interval
        let canary = plan.canaryDeployment
        let stable = plan.target
        if plan.analysis.metrics.isEmpty {
            let query = { (workload: String) in try? IstioQueries.requestVolume(namespace: namespace, workload: workload, window: window.description) }
            let minimum = Double(plan.analysis.minRequests)
            return [
                MetricDefinition(
                    report: ReportMetric(
                        name: "requests", thresholds: [ReportThreshold(.min, minimum)], thresholdText: ">= \(plan.analysis.minRequests)",
                        query: query(canary)),
                    canaryQuery: query(canary), stableQuery: nil)
            ]
        }
        return plan.analysis.metrics.map { metric in
            var thresholds: [ReportThreshold] = []
            if let min = metric.min { thresholds.append(ReportThreshold(.min, min)) }
            if let max = metric.max { thresholds.append(ReportThreshold(.max, max)) }
            let unit: String
            let query: (String) -> String?
            switch metric.kind {
            case .successRate:
                unit = "%"
                query = { try? IstioQueries.successRate(namespace: namespace, workload: $0, window: window.description) }
            case .latency(let percentile):
                unit = "ms"
                query = { try? IstioQueries.latency(quantile: Double(percentile) / 100, namespace: namespace, workload: $0, window: window.description) }
            case .custom:
                unit = ""
                query = { metric.query(namespace: namespace, workload: $0, interval: window) }
            }
            let text = thresholdText(min: metric.min, max: metric.max, decrease: metric.maxDecreaseFromStable, ratio: metric.maxRatioToStable)
            return MetricDefinition(
                report: ReportMetric(name: metric.name, unit: unit, thresholds: thresholds, thresholdText: text, query: query(canary)),
                canaryQuery: query(canary), stableQuery: query(stable))
        }
    }

    /// The threshold in the controller's words (FledgeCore's `judge`).
    static func thresholdText(min: Double?, max: Double?, decrease: Double?, ratio: Double?) -> String {
        var parts: [String] = []
        if let min { parts.append(">= \(NumberText.format(min))") }
        if let max { parts.append("<= \(NumberText.format(max))") }
        if let decrease { parts.append(">= stable - \(NumberText.format(decrease))") }
        if let ratio { parts.append("<= \(NumberText.format(ratio)) × stable") }
        return parts.joined(separator: ", ")
    }

    /// The first series of a range answer (the built-in queries aggregate to one), NaN samples left out.
    static func points(_ result: QueryResult) -> [ReportPoint] {
        switch result {
        case .matrix(let series):
            let first = series.min { $0.labels.sorted { $0.key < $1.key }.description < $1.labels.sorted { $0.key < $1.key }.description }
            return (first?.points ?? []).filter { $0.value.isFinite }.map { ReportPoint(time: $0.timestamp, value: $0.value) }
        case .vector(let samples):
            return samples.prefix(1).filter { $0.point.value.isFinite }.map { ReportPoint(time: $0.point.timestamp, value: $0.point.value) }
        case .scalar(let point):
            return point.value.isFinite ? [ReportPoint(time: point.timestamp, value: point.value)] : []
        case .string:
            return []
        }
    }

    // MARK: - Events

    /// The canary's weight over time, from the Events that change it (FledgeCore's `decide` writes them).
    static func weightSteps(events: [RolloutEventRecord], start: Double, status: RolloutStatus, now: Double) -> [WeightStep] {
        var steps = [WeightStep(time: start, weight: 0)]
        for event in events {
            var weight: Int?
            switch event.reason {
            case "StageStarted":
                // "stage 2/4: 25% of traffic on revision …"
                weight = percent(in: event.message, after: ": ")
            case "WeightsReset":
                // "… moving it to 0% because …"
                weight = percent(in: event.message, after: "moving it to ")
            case "WeightsRestored":
                weight = percent(in: event.message, after: "restoring ")
            case "RolloutStarted", "RollingBack", "RolloutSucceeded", "RolloutFailed", "RolloutAborted", "NewRevision":
                weight = 0
            default:
                weight = nil
            }
            if let weight, weight != steps.last?.weight { steps.append(WeightStep(time: event.time, weight: weight)) }
        }
        // A rollout in flight: the status has the weight now.
        if !status.phase.isIdle, status.canaryWeight != steps.last?.weight {
            steps.append(WeightStep(time: now, weight: status.canaryWeight))
        }
        return steps
    }

    static func percent(in message: String, after prefix: String) -> Int? {
        guard let range = message.range(of: prefix) else { return nil }
        let digits = message[range.upperBound...].prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, message[range.upperBound...].dropFirst(digits.count).first == "%" else { return nil }
        return Int(digits)
    }

    /// The values the controller judged: every failed check's numbers (its `AnalysisFailed` Event says
    /// `check failed (1/3): success-rate=95.1 (>= 99): Failed; latency-p99=120 (<= 500): Passed`) and the last analysis.
    static func checks(events: [RolloutEventRecord], status: RolloutStatus, from start: Double) -> [String: [ReportCheck]] {
        var checks: [String: [ReportCheck]] = [:]
        for event in events where event.reason == "AnalysisFailed" {
            guard let colon = event.message.range(of: "): ") else { continue }
            for item in event.message[colon.upperBound...].components(separatedBy: "; ") {
                guard let equals = item.firstIndex(of: "="), let open = item.range(of: " (", range: equals..<item.endIndex),
                    let value = Double(item[item.index(after: equals)..<open.lowerBound]), let close = item.range(of: "): ", range: open.upperBound..<item.endIndex)
                else { continue }
                let verdict = item[close.upperBound...].prefix { $0 != "," }
                checks[String(item[..<equals]), default: []].append(ReportCheck(time: event.time, value: value, verdict: String(verdict)))
            }
        }
        for result in status.lastAnalysis ?? [] {
            let time = Double(result.time.seconds)
            guard let value = result.value, time >= start else { continue }
            // The same check may already be known from its Event (which carries the fraction of the second).
            if checks[result.name]?.contains(where: { abs($0.time - time) < 1.5 && abs($0.value - value) < 0.01 }) == true { continue }
            checks[result.name, default: []].append(ReportCheck(time: time, value: value, verdict: result.verdict.rawValue))
        }
        return checks
    }

    /// The Rollout's Events from `events.k8s.io/v1` (`regarding`) and core `v1` (`involvedObject`), oldest first;
    /// an Event served by both is kept once. Fails only when neither can be listed.
    /// The Events of the run that starts at `start` (a second early, for the Events written with its start). The run
    /// before can end in that second (a trigger right after a rollback): its ending Events, written before this run's
    /// `RolloutStarted`, were shown as this run's ("0:00 failed RolloutFailed" on a new revision's page).
    static func runEvents(_ events: [RolloutEventRecord], from start: Double) -> [RolloutEventRecord] {
        let started = events.lastIndex { $0.reason == "RolloutStarted" && $0.time >= start - 1 }
        let endings: Set<String> = ["RollingBack", "RolloutFailed", "RolloutSucceeded", "RolloutAborted"]
        return events.indices.filter { index in
            guard events[index].time >= start - 1 else { return false }
            if let started, index < started, endings.contains(events[index].reason) { return false }
            return true
        }.map { events[$0] }
    }

    func readEvents(for rollout: Rollout, namespace: String) async -> Result<[RolloutEventRecord], ReportError> {
        var byKey: [String: RolloutEventRecord] = [:]
        var failure: ReportError?
        var answered = false
        let name = rollout.metadata.name
        for (resource, field) in [(GroupVersionResource.events, "regarding"), (.coreEvents, "involvedObject")] {
            let items: [JSONValue]
            do {
                do {
                    items = try await kubernetes.listAll(resource, namespace: .named(namespace), fieldSelector: "\(field).kind=Rollout,\(field).name=\(name)").items
                } catch where error.code == 400 {
                    // A server that does not index this field: filter here instead.
                    items = try await kubernetes.listAll(resource, namespace: .named(namespace)).items
                }
            } catch {
                failure = failure ?? ReportError("listing \(resource): \(error)")
                continue
            }
            answered = true
            for item in items {
                let about = item[field]
                guard about?["kind"]?.stringValue == "Rollout", about?["name"]?.stringValue == name else { continue }
                // An Event about an earlier Rollout of the same name has another uid.
                if let uid = rollout.metadata.uid, let theirs = about?["uid"]?.stringValue, !theirs.isEmpty, theirs != uid { continue }
                if let record = RolloutEventRecord(item) { byKey[record.key] = record }
            }
        }
        if !answered, let failure { return .failure(failure) }
        return .success(byKey.values.sorted { ($0.time, $0.resourceVersion, $0.key) < ($1.time, $1.resourceVersion, $1.key) })
    }
}

/// One Event about a Rollout, from either API version.
struct RolloutEventRecord: Sendable {
    var key: String
    var time: Double
    var resourceVersion: Int64
    var reason: String
    var message: String
    var count: Int

    init?(_ event: JSONValue) {
        guard let summary = EventSummary(event),
            let time = summary.times.lazy.compactMap({ try? PrometheusTime.parse($0) }).first
        else { return nil }
        key = summary.key
        self.time = time
        resourceVersion = summary.resourceVersion
        reason = summary.reason
        message = summary.message
        count = summary.count
    }
}
