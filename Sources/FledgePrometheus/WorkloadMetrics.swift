/// The three numbers Fledge asks of a workload: how often it succeeds, how slow
/// its slowest requests are, and how much traffic it saw. `nil` means "no data".
public struct WorkloadMetrics: Sendable, Equatable {
    public var namespace: String
    public var workload: String
    public var window: String
    /// Percent of non-5xx responses.
    public var successRate: Double?
    /// 99th percentile latency in milliseconds.
    public var latencyP99Ms: Double?
    /// Requests in the window.
    public var requests: Double?

    public init(namespace: String, workload: String, window: String, successRate: Double?, latencyP99Ms: Double?, requests: Double?) {
        self.namespace = namespace
        self.workload = workload
        self.window = window
        self.successRate = successRate
        self.latencyP99Ms = latencyP99Ms
        self.requests = requests
    }
}

extension PrometheusClient {
    /// Success rate, p99 latency and request volume of one workload, queried concurrently.
    public func workloadMetrics(
        namespace: String, workload: String, window: String, at time: Double? = nil, reporter: String = "destination"
    ) async throws -> WorkloadMetrics {
        let successQuery: String
        let latencyQuery: String
        let volumeQuery: String
        do {
            successQuery = try IstioQueries.successRate(namespace: namespace, workload: workload, window: window, reporter: reporter)
            latencyQuery = try IstioQueries.latency(quantile: 0.99, namespace: namespace, workload: workload, window: window, reporter: reporter)
            volumeQuery = try IstioQueries.requestVolume(namespace: namespace, workload: workload, window: window, reporter: reporter)
        }
        async let success = query(successQuery, at: time)
        async let latency = query(latencyQuery, at: time)
        async let volume = query(volumeQuery, at: time)
        return WorkloadMetrics(
            namespace: namespace, workload: workload, window: window,
            successRate: try await success.singleValue,
            latencyP99Ms: try await latency.singleValue,
            requests: try await volume.singleValue)
    }
}
