import FledgeCore
import FledgeHTTP
import FledgeJudge
import FledgePrometheus
import Foundation
import Logging
import Synchronization

/// Measures rollouts for `decide`. The boundary the controller analyses through, so tests and `fledge analyze`
/// can use the same code.
public protocol MetricsProvider: Sendable {
    /// Measures every request at `time`; one result per request, in order. Never throws: a provider that cannot
    /// answer gives `.providerError` outcomes, which `decide` holds on (Rule 6).
    func measure(_ requests: [AnalysisRequest], at time: Date) async -> [IntervalResult]
}

/// The built-in metrics for many rollouts at once: one query per metric kind, window and Prometheus, grouped
/// `by (destination_workload_namespace, destination_workload)`, so the number of queries does not grow with the
/// number of rollouts (Flagger sends one per metric per canary). Custom PromQL metrics go one by one.
public final class PrometheusAnalyzer: MetricsProvider {
    public let defaultAddress: String?
    public let reporter: String
    private let http: any HTTPClient
    private let logger: Logger
    private let onQuery: @Sendable (_ failed: Bool) -> Void
    private let clients = Mutex<[String: PrometheusClient]>([:])
    private let defaultClient: PrometheusClient?

    /// - Parameters:
    ///   - defaultAddress: for requests that name no Prometheus (`--prometheus`).
    ///   - defaultClient: the client for `defaultAddress` when it needs more than `http` (credentials, extra
    ///     headers, a CA, timeouts). Only that address gets it: a Rollout that names its own Prometheus must not
    ///     receive the controller's credentials.
    ///   - onQuery: called after every query with whether it failed (for `/metrics`).
    public init(
        defaultAddress: String?, http: any HTTPClient, reporter: String = "destination", defaultClient: PrometheusClient? = nil,
        logger: Logger = Logger(label: "fledge.analysis"), onQuery: @escaping @Sendable (_ failed: Bool) -> Void = { _ in }
    ) {
        self.defaultAddress = defaultAddress
        self.http = http
        self.reporter = reporter
        self.defaultClient = defaultClient
        self.logger = logger
        self.onQuery = onQuery
    }

    private func client(_ address: String) -> PrometheusClient {
        if address == defaultAddress, let defaultClient { return defaultClient }
        return clients.withLock { clients in
            if let client = clients[address] { return client }
            let client = PrometheusClient(baseURL: address, http: http, logger: logger)
            clients[address] = client
            return client
        }
    }

    public func measure(_ requests: [AnalysisRequest], at time: Date) async -> [IntervalResult] {
        var results = [IntervalResult?](repeating: nil, count: requests.count)
        // Group by (Prometheus, window): one batch of built-in queries each.
        var groups: [BatchKey: [Int]] = [:]
        for (i, request) in requests.enumerated() {
            guard let address = request.prometheusAddress ?? defaultAddress else {
                results[i] = Self.failed(
                    request, time: time,
                    message: "no Prometheus configured: start the controller with --prometheus URL or set spec.analysis.prometheus.address")
                continue
            }
            groups[BatchKey(address: address, window: request.window), default: []].append(i)
        }
        for (key, indices) in groups.sorted(by: { $0.key.address + "\($0.key.window)" < $1.key.address + "\($1.key.window)" }) {
            let batch = indices.map { requests[$0] }
            let measured = await measureBatch(batch, address: key.address, window: key.window, time: time)
            for (i, result) in zip(indices, measured) { results[i] = result }
        }
        return results.map { $0! }
    }

    struct BatchKey: Hashable {
        var address: String
        var window: RolloutDuration
    }

    /// `namespace/workload` → value, or the query's error.
    typealias Series = Result<[WorkloadKey: Double], PrometheusError>

    struct WorkloadKey: Hashable {
        var namespace: String
        var workload: String
    }

    func measureBatch(_ batch: [AnalysisRequest], address: String, window: RolloutDuration, time: Date) async -> [IntervalResult] {
        let prometheus = client(address)
        var workloads: Set<WorkloadKey> = []
        var percentiles: Set<Int> = []
        var wantsSuccessRate = false
        for request in batch {
            workloads.insert(WorkloadKey(namespace: request.namespace, workload: request.canaryWorkload))
            if request.needsStable { workloads.insert(WorkloadKey(namespace: request.namespace, workload: request.stableWorkload)) }
            for metric in request.metrics {
                switch metric.kind {
                case .successRate: wantsSuccessRate = true
                case .latency(let p): percentiles.insert(p)
                case .custom: break
                }
            }
        }
        let selector = Self.selector(for: workloads, reporter: reporter)
        let w = window.description
        let by = "by (destination_workload_namespace, destination_workload)"
        let at = time.timeIntervalSince1970

        let volume = await grouped(prometheus, "sum \(by) (increase(istio_requests_total{\(selector)}[\(w)]))", at: at)
        var successRate: Series?
        if wantsSuccessRate {
            // `or … * 0` keeps workloads whose every request failed (the numerator would have no series at all).
            let total = "sum \(by) (rate(istio_requests_total{\(selector)}[\(w)]))"
            let good = "sum \(by) (rate(istio_requests_total{\(selector),response_code!~\"5.*\"}[\(w)]))"
            successRate = await grouped(prometheus, "(\(good) or \(total) * 0) / \(total) * 100", at: at)
        }
        var latency: [Int: Series] = [:]
        for p in percentiles.sorted() {
            let q = "histogram_quantile(\(Double(p) / 100), sum by (destination_workload_namespace, destination_workload, le) (rate(istio_request_duration_milliseconds_bucket{\(selector)}[\(w)])))"
            latency[p] = await grouped(prometheus, q, at: at)
        }

        // The statistical judge's counts (requests, 5xx, latency buckets) for both sides: three queries more.
        var counts: Result<[WorkloadRef: WorkloadCounts], any Error>?
        let countWorkloads = Set(batch.filter(\.needsCounts).flatMap {
            [WorkloadRef(namespace: $0.namespace, workload: $0.canaryWorkload), WorkloadRef(namespace: $0.namespace, workload: $0.stableWorkload)]
        })
        if !countWorkloads.isEmpty {
            do {
                counts = .success(
                    try await prometheus.workloadCounts(
                        workloads: countWorkloads.sorted { $0.description < $1.description }, window: w, at: at, reporter: reporter))
                for _ in 0..<3 { onQuery(false) }
                if case .success(let known)? = counts {
                    for (workload, adjusted) in known.sorted(by: { $0.key.description < $1.key.description }) {
                        guard let why = adjusted.adjustment else { continue }
                        logger.warning("counts adjusted", metadata: ["workload": "\(workload)", "why": "\(why)"])
                    }
                }
            } catch {
                onQuery(true)
                logger.warning("Prometheus count queries failed", metadata: ["error": "\(error)"])
                counts = .failure(error)
            }
        }

        var results: [IntervalResult] = []
        for request in batch {
            let canary = WorkloadKey(namespace: request.namespace, workload: request.canaryWorkload)
            let stable = WorkloadKey(namespace: request.namespace, workload: request.stableWorkload)
            let canaryRequests: Int64? =
                switch volume {
                case .success(let values): Int64((values[canary] ?? 0).rounded())
                case .failure: nil
                }
            var metrics: [String: MetricSample] = [:]
            for metric in request.metrics {
                let wantsStable = metric.maxDecreaseFromStable != nil || metric.maxRatioToStable != nil
                switch metric.kind {
                case .successRate:
                    metrics[metric.name] = Self.sample(successRate!, canary: canary, stable: wantsStable ? stable : nil, requests: canaryRequests)
                case .latency(let p):
                    metrics[metric.name] = Self.sample(latency[p]!, canary: canary, stable: wantsStable ? stable : nil, requests: canaryRequests)
                case .custom:
                    metrics[metric.name] = await custom(
                        prometheus, metric, request: request, stable: wantsStable, window: window, at: at, requests: canaryRequests)
                }
            }
            var result = IntervalResult(time: Timestamp(time), requests: canaryRequests, metrics: metrics)
            if request.needsCounts, case .success(let known)? = counts {
                result.canaryCounts = Self.sample(known[WorkloadRef(namespace: request.namespace, workload: request.canaryWorkload)])
                result.stableCounts = Self.sample(known[WorkloadRef(namespace: request.namespace, workload: request.stableWorkload)])
            }
            results.append(result)
        }
        return results
    }

    /// A workload without any series got no requests in the window.
    static func sample(_ counts: WorkloadCounts?) -> JudgeSample {
        guard let counts else { return JudgeSample(requests: 0, errors: 0) }
        return JudgeSample(
            requests: counts.requests, errors: counts.errors,
            latency: counts.latency.map { JudgeHistogram(bounds: $0.bounds, cumulativeCounts: $0.cumulativeCounts, total: $0.total) })
    }

    static func sample(_ series: Series, canary: WorkloadKey, stable: WorkloadKey?, requests: Int64?) -> MetricSample {
        switch series {
        case .failure(let error):
            return MetricSample(.providerError(error.description), requests: requests)
        case .success(let values):
            let stableValue = stable.flatMap { values[$0] }.flatMap { $0.isFinite ? $0 : nil }
            guard let value = values[canary], value.isFinite else { return MetricSample(.noData, requests: requests, stableValue: stableValue) }
            return MetricSample(.value(value), requests: requests, stableValue: stableValue)
        }
    }

    func custom(
        _ prometheus: PrometheusClient, _ metric: MetricPlan, request: AnalysisRequest, stable: Bool, window: RolloutDuration,
        at: Double, requests: Int64?
    ) async -> MetricSample {
        guard let query = metric.query(namespace: request.namespace, workload: request.canaryWorkload, interval: window) else {
            return MetricSample(.noData, requests: requests)
        }
        let canaryValue: Double?
        do {
            let result = try await prometheus.query(query, at: at)
            onQuery(false)
            canaryValue = result.singleValue
        } catch {
            onQuery(true)
            logger.warning("custom metric query failed", metadata: ["metric": "\(metric.name)", "error": "\(error)"])
            return MetricSample(.providerError(error.description), requests: requests)
        }
        var stableValue: Double?
        if stable, let q = metric.query(namespace: request.namespace, workload: request.stableWorkload, interval: window) {
            stableValue = (try? await prometheus.query(q, at: at))?.singleValue
        }
        guard let canaryValue, canaryValue.isFinite else { return MetricSample(.noData, requests: requests, stableValue: stableValue) }
        return MetricSample(.value(canaryValue), requests: requests, stableValue: stableValue)
    }

    func grouped(_ prometheus: PrometheusClient, _ query: String, at: Double) async -> Series {
        do {
            let result = try await prometheus.query(query, at: at)
            onQuery(false)
            var out: [WorkloadKey: Double] = [:]
            for (labels, value) in result.values(groupedBy: ["destination_workload_namespace", "destination_workload"]) {
                out[WorkloadKey(namespace: labels[0], workload: labels[1])] = value
            }
            return .success(out)
        } catch {
            onQuery(true)
            logger.warning("Prometheus query failed", metadata: ["query": "\(query)", "error": "\(error)"])
            return .failure(error)
        }
    }

    /// Label matchers restricting a batch to its namespaces and workloads (regex alternations; names are
    /// DNS labels, so only `.` needs escaping).
    static func selector(for workloads: Set<WorkloadKey>, reporter: String) -> String {
        func alternation(_ values: Set<String>) -> String {
            let escaped = values.sorted().map { $0.replacingOccurrences(of: ".", with: "\\.") }.joined(separator: "|")
            return PromQLTemplate.escapeLabelValue(escaped)
        }
        let namespaces = Set(workloads.map(\.namespace))
        let names = Set(workloads.map(\.workload))
        return "reporter=\"\(PromQLTemplate.escapeLabelValue(reporter))\",destination_workload_namespace=~\"\(alternation(namespaces))\",destination_workload=~\"\(alternation(names))\""
    }

    static func failed(_ request: AnalysisRequest, time: Date, message: String) -> IntervalResult {
        var metrics: [String: MetricSample] = [:]
        for metric in request.metrics { metrics[metric.name] = MetricSample(.providerError(message)) }
        return IntervalResult(time: Timestamp(time), requests: nil, metrics: metrics)
    }
}
