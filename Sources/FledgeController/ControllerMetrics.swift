import FledgeCore
import FledgeKubernetes
import Foundation
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

    /// Per-rollout series are kept compact here and written at scrape time: a swift-prometheus gauge per rollout
    /// and label set costs kilobytes, and 10,000 rollouts must fit the memory budget.
    private struct PerRollout {
        var phase: Phase
        var weight: Int
        var metricValues: [String: Double] = [:]
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

    /// A failed Kubernetes request. A 409 Conflict is not an error: the write was computed from a cache that had
    /// just gone stale, and it is retried at once with the newer object, so it is counted on its own.
    func kubernetesFailure(_ error: KubernetesError, action: String) {
        let verb = error.verb ?? action
        if error.isConflict {
            registry.makeCounter(
                descriptor: descriptor(
                    "fledge_kubernetes_conflicts_total", "Kubernetes writes refused with 409 Conflict (a stale cache) and retried at once"),
                labels: [("verb", verb)]
            ).increment()
        } else {
            registry.makeCounter(
                descriptor: descriptor("fledge_kubernetes_request_errors_total", "Kubernetes API requests that failed"), labels: [("verb", verb)]
            ).increment()
        }
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
        let key = Informer.key(namespace: namespace, name: rollout)
        rollouts.withLock { all in
            var entry = all[key] ?? PerRollout(phase: status.phase, weight: status.canaryWeight)
            entry.phase = status.phase
            entry.weight = status.canaryWeight
            for result in status.lastAnalysis ?? [] {
                if let value = result.value { entry.metricValues[result.name] = value }
            }
            all[key] = entry
        }
    }

    /// Drops a deleted rollout's series.
    func forget(namespace: String, rollout: String) {
        _ = rollouts.withLock { $0.removeValue(forKey: Informer.key(namespace: namespace, name: rollout)) }
    }

    /// The Prometheus text format: the registry's metrics, then the per-rollout series, then the caches'.
    public func text(caches: [Informer] = []) -> String {
        textChunks(caches: caches).joined()
    }

    /// What the watch caches hold, read at scrape time: the cache is most of the controller's memory at scale, and
    /// relists (a 410 Gone, a broken watch) are worth alerting on.
    static func cacheText(_ caches: [Informer]) -> String {
        guard !caches.isEmpty else { return "" }
        let labelled = caches.map { ("resource=\"\($0.resource)\"", $0) }
        var text = "# HELP fledge_cache_objects Objects held in the controller's watch cache\n# TYPE fledge_cache_objects gauge\n"
        for (labels, cache) in labelled { text += "fledge_cache_objects{\(labels)} \(cache.count)\n" }
        text += "# HELP fledge_cache_bytes Bytes the watch cache's stored objects take, deflated or serialized\n"
        text += "# TYPE fledge_cache_bytes gauge\n"
        for (labels, cache) in labelled { text += "fledge_cache_bytes{\(labels)} \(cache.storedBytes)\n" }
        text += "# HELP fledge_cache_lists_total Complete lists applied to the watch cache: 1 at start, more after each relist\n"
        text += "# TYPE fledge_cache_lists_total counter\n"
        for (labels, cache) in labelled { text += "fledge_cache_lists_total{\(labels)} \(cache.relistCount)\n" }
        return text
    }

    /// The text format in pieces of about `chunkSize` bytes, made as they are read: `/metrics` streams them, so a
    /// scrape of 10,000 rollouts never holds the whole text (and glibc does not keep a heap grown to its size).
    public func textChunks(caches: [Informer] = [], chunkSize: Int = 64 * 1024) -> some Sequence<String> {
        let all = rollouts.withLock { $0 }.sorted { $0.key < $1.key }
        func labels(_ key: String) -> String {
            let (namespace, name) = Informer.location(ofKey: key)
            return "namespace=\"\(escape(namespace))\",rollout=\"\(escape(name))\""
        }
        // Each section: a header, then one line (or a few) per rollout.
        let sections: [(header: String, lines: (PerRollout, String) -> String)] = [
            ("# HELP fledge_rollout_phase 1 for the phase each Rollout is in\n# TYPE fledge_rollout_phase gauge\n",
             { entry, labels in "fledge_rollout_phase{\(labels),phase=\"\(entry.phase.rawValue)\"} 1\n" }),
            ("# HELP fledge_rollout_canary_weight Canary weight of the managed routes, as read back\n# TYPE fledge_rollout_canary_weight gauge\n",
             { entry, labels in "fledge_rollout_canary_weight{\(labels)} \(entry.weight)\n" }),
            ("# HELP fledge_analysis_metric_value Last measured value of each analysis metric\n# TYPE fledge_analysis_metric_value gauge\n",
             { entry, labels in
                 entry.metricValues.sorted(by: { $0.key < $1.key }).map { metric, value in
                     "fledge_analysis_metric_value{\(labels),metric=\"\(self.escape(metric))\"} \(value)\n"
                 }.joined()
             }),
        ]
        var registryText: String? = registry.emitToString()
        var section = 0
        var index = 0
        return AnySequence {
            AnyIterator { () -> String? in
                if let text = registryText {
                    registryText = nil
                    return text
                }
                guard section < sections.count else {
                    guard section == sections.count else { return nil }
                    section += 1
                    let text = Self.cacheText(caches)
                    return text.isEmpty ? nil : text
                }
                var chunk = index == 0 ? sections[section].header : ""
                // At least one rollout per chunk, however small chunkSize is.
                repeat {
                    guard index < all.count else { break }
                    chunk += sections[section].lines(all[index].value, labels(all[index].key))
                    index += 1
                } while chunk.utf8.count < chunkSize
                if index == all.count {
                    section += 1
                    index = 0
                }
                return chunk
            }
        }
    }

    /// Escapes a label value for the text format.
    private func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}
