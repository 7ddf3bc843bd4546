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

    /// Measures every request at `time`, handing results over as soon as they are known: `deliver` gets the indices
    /// (into `requests`) of the results it carries, and is called until every request has one. A provider that asks
    /// several servers delivers each server's results when that server has answered, so rollouts on a healthy server
    /// do not wait for a hanging one.
    func measure(
        _ requests: [AnalysisRequest], at time: Date, deliver: @escaping @Sendable (_ indices: [Int], _ results: [IntervalResult]) -> Void
    ) async
}

extension MetricsProvider {
    /// Everything at once, when the provider has no finer grain.
    public func measure(
        _ requests: [AnalysisRequest], at time: Date, deliver: @escaping @Sendable (_ indices: [Int], _ results: [IntervalResult]) -> Void
    ) async {
        let results = await measure(requests, at: time)
        deliver(Array(results.indices), results)
    }
}

/// The built-in metrics for many rollouts at once: one query per metric kind, window and Prometheus, grouped
/// `by (destination_workload_namespace, destination_workload)`, so the number of queries does not grow with the
/// number of rollouts (Flagger sends one per metric per canary). Custom PromQL metrics go one by one.
///
/// Each Prometheus is asked concurrently with the others (a hanging one delays only its own rollouts), and a server
/// that gave no answer at all (refused, timed out) is sent none of its remaining queries of that measurement: its
/// rollouts get that one transport error as their provider error, within one request timeout.
public final class PrometheusAnalyzer: MetricsProvider {
    public let defaultAddress: String?
    public let reporter: String
    /// Total time allowed for each query to a Prometheus the analyzer makes the client of (every address but
    /// `defaultAddress` when a `defaultClient` is given, which keeps its own).
    public let requestTimeout: Duration
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
    ///   - requestTimeout: total time per query (`--prometheus-timeout`), for every client the analyzer makes.
    ///   - onQuery: called after every query sent with whether it failed (for `/metrics`).
    public init(
        defaultAddress: String?, http: any HTTPClient, reporter: String = "destination", defaultClient: PrometheusClient? = nil,
        requestTimeout: Duration = .seconds(10),
        logger: Logger = Logger(label: "fledge.analysis"), onQuery: @escaping @Sendable (_ failed: Bool) -> Void = { _ in }
    ) {
        self.defaultAddress = defaultAddress
        self.http = http
        self.reporter = reporter
        self.defaultClient = defaultClient
        self.requestTimeout = requestTimeout
        self.logger = logger
        self.onQuery = onQuery
    }

    private func client(_ address: String) -> PrometheusClient {
        if address == defaultAddress, let defaultClient { return defaultClient }
        return clients.withLock { clients in
            if let client = clients[address] { return client }
            let client = PrometheusClient(baseURL: address, http: http, timeout: requestTimeout, logger: logger)
            clients[address] = client
            return client
        }
    }

    public func measure(_ requests: [AnalysisRequest], at time: Date) async -> [IntervalResult] {
        let collected = Mutex([IntervalResult?](repeating: nil, count: requests.count))
        await measure(requests, at: time) { indices, results in
            collected.withLock { all in
                for (i, result) in zip(indices, results) { all[i] = result }
            }
        }
        return collected.withLock { $0.map { $0! } }
    }

    public func measure(
        _ requests: [AnalysisRequest], at time: Date, deliver: @escaping @Sendable (_ indices: [Int], _ results: [IntervalResult]) -> Void
    ) async {
        // Group by Prometheus, then by window: one batch of built-in queries per (server, window).
        var servers: [String: [RolloutDuration: [Int]]] = [:]
        var unconfigured: [Int] = []
        for (i, request) in requests.enumerated() {
            guard let address = request.prometheusAddress ?? defaultAddress else {
                unconfigured.append(i)
                continue
            }
            servers[address, default: [:]][request.window, default: []].append(i)
        }
        if !unconfigured.isEmpty {
            deliver(
                unconfigured,
                unconfigured.map {
                    Self.failed(
                        requests[$0], time: time,
                        message: "no Prometheus configured: start the controller with --prometheus URL or set spec.analysis.prometheus.address")
                })
        }
        // One child per server: the measurement takes as long as the slowest server, and each server's rollouts get
        // their results as soon as it has answered.
        await withDiscardingTaskGroup { group in
            for (address, windows) in servers {
                group.addTask {
                    var unreachable: PrometheusError?
                    for (window, indices) in windows.sorted(by: { $0.key < $1.key }) {
                        let measured = await self.measureBatch(
                            indices.map { requests[$0] }, address: address, window: window, time: time, unreachable: &unreachable)
                        deliver(indices, measured)
                    }
                }
            }
        }
    }

    /// `namespace/workload` → value, or the query's error.
    typealias Series = Result<[WorkloadKey: Double], PrometheusError>

    struct WorkloadKey: Hashable {
        var namespace: String
        var workload: String
    }

    /// Measures one (server, window) batch. `unreachable` is the transport error of an earlier query to this server in
    /// this measurement: once set, no further query is sent and every one not sent fails with it.
    func measureBatch(
        _ batch: [AnalysisRequest], address: String, window: RolloutDuration, time: Date, unreachable: inout PrometheusError?
    ) async -> [IntervalResult] {
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

        let volume = await grouped(prometheus, "sum \(by) (increase(istio_requests_total{\(selector)}[\(w)]))", at: at, unreachable: &unreachable)
        var successRate: Series?
        if wantsSuccessRate {
            // `or … * 0` keeps workloads whose every request failed (the numerator would have no series at all).
            let total = "sum \(by) (rate(istio_requests_total{\(selector)}[\(w)]))"
            let good = "sum \(by) (rate(istio_requests_total{\(selector),response_code!~\"5.*\"}[\(w)]))"
            successRate = await grouped(prometheus, "(\(good) or \(total) * 0) / \(total) * 100", at: at, unreachable: &unreachable)
        }
        var latency: [Int: Series] = [:]
        for p in percentiles.sorted() {
            let q = "histogram_quantile(\(Double(p) / 100), sum by (destination_workload_namespace, destination_workload, le) (rate(istio_request_duration_milliseconds_bucket{\(selector)}[\(w)])))"
            latency[p] = await grouped(prometheus, q, at: at, unreachable: &unreachable)
        }

        // The statistical judge's counts (requests, 5xx, latency buckets) for both sides: three queries more.
        var counts: Result<[WorkloadRef: WorkloadCounts], any Error>?
        let countWorkloads = Set(batch.filter(\.needsCounts).flatMap {
            [WorkloadRef(namespace: $0.namespace, workload: $0.canaryWorkload), WorkloadRef(namespace: $0.namespace, workload: $0.stableWorkload)]
        })
        if let unreachable, !countWorkloads.isEmpty {
            counts = .failure(unreachable)
        } else if !countWorkloads.isEmpty {
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
                if let error = error as? PrometheusError, error.isTransport { unreachable = error }
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
                        prometheus, metric, request: request, stable: wantsStable, window: window, at: at, requests: canaryRequests,
                        unreachable: &unreachable)
                }
            }
            var result = IntervalResult(time: Timestamp(time), requests: canaryRequests, metrics: metrics)
            if case .failure(let error) = volume { result.requestsError = error.description }
            if request.needsCounts {
                switch counts {
                case .success(let known)?:
                    result.canaryCounts = Self.sample(known[WorkloadRef(namespace: request.namespace, workload: request.canaryWorkload)])
                    result.stableCounts = Self.sample(known[WorkloadRef(namespace: request.namespace, workload: request.stableWorkload)])
                case .failure(let error)?: result.countsError = "\(error)"
                case nil: break
                }
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
        at: Double, requests: Int64?, unreachable: inout PrometheusError?
    ) async -> MetricSample {
        guard let query = metric.query(namespace: request.namespace, workload: request.canaryWorkload, interval: window) else {
            return MetricSample(.noData, requests: requests)
        }
        let canaryValue: Double?
        let sent = unreachable == nil
        switch await send(prometheus, query, at: at, unreachable: &unreachable) {
        case .success(let result):
            if let problem = result.notOneNumber {
                // A mistake in the query: said as an error (like a query Prometheus rejects), not read as no data.
                logger.warning("custom metric query is not one number", metadata: ["metric": "\(metric.name)", "problem": "\(problem)"])
                return MetricSample(.providerError("query of metric \(metric.name) \(problem)"), requests: requests)
            }
            canaryValue = result.singleValue
        case .failure(let error):
            if sent { logger.warning("custom metric query failed", metadata: ["metric": "\(metric.name)", "error": "\(error)"]) }
            return MetricSample(.providerError(error.description), requests: requests)
        }
        var stableValue: Double?
        if stable, let q = metric.query(namespace: request.namespace, workload: request.stableWorkload, interval: window) {
            stableValue = try? await send(prometheus, q, at: at, unreachable: &unreachable).get().singleValue
        }
        guard let canaryValue, canaryValue.isFinite else { return MetricSample(.noData, requests: requests, stableValue: stableValue) }
        return MetricSample(.value(canaryValue), requests: requests, stableValue: stableValue)
    }

    func grouped(_ prometheus: PrometheusClient, _ query: String, at: Double, unreachable: inout PrometheusError?) async -> Series {
        switch await send(prometheus, query, at: at, unreachable: &unreachable) {
        case .success(let result):
            var out: [WorkloadKey: Double] = [:]
            for (labels, value) in result.values(groupedBy: ["destination_workload_namespace", "destination_workload"]) {
                out[WorkloadKey(namespace: labels[0], workload: labels[1])] = value
            }
            return .success(out)
        case .failure(let error):
            return .failure(error)
        }
    }

    /// Sends one query unless the server already gave no answer in this measurement; a transport failure marks it so.
    func send(_ prometheus: PrometheusClient, _ query: String, at: Double, unreachable: inout PrometheusError?) async -> Result<QueryResult, PrometheusError> {
        if let unreachable { return .failure(unreachable) }
        do {
            let result = try await prometheus.query(query, at: at)
            onQuery(false)
            return .success(result)
        } catch {
            onQuery(true)
            if error.isTransport {
                unreachable = error
                logger.warning(
                    "Prometheus did not answer; its other queries wait for the next interval",
                    metadata: ["server": "\(error.server)", "error": "\(error)"])
            } else {
                logger.warning("Prometheus query failed", metadata: ["query": "\(query)", "error": "\(error)"])
            }
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
        return IntervalResult(
            time: Timestamp(time), requests: nil, metrics: metrics, requestsError: message, countsError: request.needsCounts ? message : nil)
    }
}
