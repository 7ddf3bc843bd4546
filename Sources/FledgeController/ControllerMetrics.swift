import FledgeCore
import Prometheus
import Synchronization

/// A metric's full name and help text (swift-prometheus' descriptor without namespace or unit parts).
private func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
}

/// Fledge's own metrics, served on `/metrics` in the Prometheus text format (swift-prometheus).
public final class ControllerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let reconcileDuration: DurationHistogram
    let leader: Gauge
    let prometheusErrors: Counter
    let prometheusQueries: Counter
    let kubernetesWrites: Counter

    private struct PerRollout {
        var phase: Gauge?
        var phaseName: String?
        var weight: Gauge?
        var metricValues: [String: Gauge] = [:]
    }
    private let rollouts = Mutex<[String: PerRollout]>([:])

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        reconcileDuration = registry.makeDurationHistogram(
            descriptor: descriptor("fledge_reconcile_duration_seconds", "Time to reconcile one Rollout: decide plus the writes it asked for"),
            buckets: [.microseconds(100), .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(50), .milliseconds(100),
                .milliseconds(500), .seconds(1), .seconds(5)])
        leader = registry.makeGauge(descriptor: descriptor("fledge_leader", "1 while this replica holds the leader lease and may write"))
        prometheusErrors = registry.makeCounter(descriptor: descriptor("fledge_prometheus_request_errors_total", "Prometheus queries that failed"))
        prometheusQueries = registry.makeCounter(descriptor: descriptor("fledge_prometheus_queries_total", "Prometheus queries sent"))
        kubernetesWrites = registry.makeCounter(descriptor: descriptor("fledge_kubernetes_writes_total", "Kubernetes writes sent"))
    }

    func kubernetesError(verb: String) {
        registry.makeCounter(
            descriptor: descriptor("fledge_kubernetes_request_errors_total", "Kubernetes API requests that failed"), labels: [("verb", verb)]
        ).increment()
    }

    private let queryCount = Atomic<Int>(0)
    /// Prometheus queries sent since start.
    public var prometheusQueryCount: Int { queryCount.load(ordering: .relaxed) }

    func prometheusQuery(failed: Bool) {
        queryCount.add(1, ordering: .relaxed)
        prometheusQueries.increment()
        if failed { prometheusErrors.increment() }
    }

    func analysisCheck(namespace: String, rollout: String, metric: String, verdict: String) {
        registry.makeCounter(
            descriptor: descriptor("fledge_analysis_checks_total", "Analysis checks per metric and verdict"),
            labels: [("namespace", namespace), ("rollout", rollout), ("metric", metric), ("verdict", verdict)]
        ).increment()
    }

    /// Records a rollout's phase, weight and last measured values.
    func record(namespace: String, rollout: String, status: RolloutStatus) {
        let key = "\(namespace)/\(rollout)"
        let labels = [("namespace", namespace), ("rollout", rollout)]
        rollouts.withLock { all in
            var entry = all[key] ?? PerRollout()
            if entry.phaseName != status.phase.rawValue {
                if let old = entry.phase { registry.unregisterGauge(old) }
                let gauge = registry.makeGauge(
                    descriptor: descriptor("fledge_rollout_phase", "1 for the phase each Rollout is in"), labels: labels + [("phase", status.phase.rawValue)])
                gauge.set(1.0)
                entry.phase = gauge
                entry.phaseName = status.phase.rawValue
            }
            if entry.weight == nil {
                entry.weight = registry.makeGauge(
                    descriptor: descriptor("fledge_rollout_canary_weight", "Canary weight of the managed routes, as read back"), labels: labels)
            }
            entry.weight!.set(Double(status.canaryWeight))
            for result in status.lastAnalysis ?? [] {
                guard let value = result.value else { continue }
                let gauge =
                    entry.metricValues[result.name]
                    ?? registry.makeGauge(
                        descriptor: descriptor("fledge_analysis_metric_value", "Last measured value of each analysis metric"), labels: labels + [("metric", result.name)])
                gauge.set(value)
                entry.metricValues[result.name] = gauge
            }
            all[key] = entry
        }
    }

    /// Drops a deleted rollout's series.
    func forget(namespace: String, rollout: String) {
        let key = "\(namespace)/\(rollout)"
        guard let entry = rollouts.withLock({ $0.removeValue(forKey: key) }) else { return }
        if let gauge = entry.phase { registry.unregisterGauge(gauge) }
        if let gauge = entry.weight { registry.unregisterGauge(gauge) }
        for gauge in entry.metricValues.values { registry.unregisterGauge(gauge) }
    }

    public func text() -> String { registry.emitToString() }
}
