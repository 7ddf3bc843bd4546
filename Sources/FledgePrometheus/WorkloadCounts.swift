// Batched counts for the statistical judge: requests, 5xx responses and latency bucket
// increases of any number of workloads, in three queries per window.

/// A workload as Istio labels it: `destination_workload_namespace` and `destination_workload`.
public struct WorkloadRef: Hashable, Sendable, CustomStringConvertible {
    public var namespace: String
    public var workload: String

    public init(namespace: String, workload: String) {
        self.namespace = namespace
        self.workload = workload
    }

    public var description: String { "\(namespace)/\(workload)" }
}

/// One workload's increases over one window, as the judge wants them. Doubles, because
/// `increase` extrapolates to the window's edges.
public struct WorkloadCounts: Sendable, Equatable {
    /// `increase(istio_requests_total[window])`, all response codes.
    public var requests: Double
    /// The same for response codes 5xx; 0 when the workload has no 5xx series.
    public var errors: Double
    /// The latency histogram's increase; nil when the workload reports no
    /// `istio_request_duration_milliseconds_bucket` series.
    public var latency: LatencyIncrease?
    /// Why the counts were adjusted, nil when they are Prometheus's answer as it came. Set when the 5xx count
    /// exceeded the request count (the two queries saw different scrapes) and was lowered to it.
    public var adjustment: String?

    public init(requests: Double, errors: Double, latency: LatencyIncrease?, adjustment: String? = nil) {
        self.requests = requests
        self.errors = errors
        self.latency = latency
        self.adjustment = adjustment
    }

    /// `increase(istio_request_duration_milliseconds_bucket[window])` summed per `le`: the finite
    /// bounds (milliseconds, ascending), the cumulative count at each, and the `+Inf` bucket.
    /// The same shape as `FledgeJudge.JudgeHistogram(bounds:cumulativeCounts:total:)`.
    public struct LatencyIncrease: Sendable, Equatable {
        public var bounds: [Double]
        public var cumulativeCounts: [Double]
        public var total: Double

        public init(bounds: [Double], cumulativeCounts: [Double], total: Double) {
            self.bounds = bounds
            self.cumulativeCounts = cumulativeCounts
            self.total = total
        }
    }
}

extension IstioQueries {
    /// The three batched count queries for `workloads` over `window`:
    /// `sum by (destination_workload_namespace, destination_workload[, le]) (increase(…[window]))` for all
    /// requests, for 5xx responses, and for the latency buckets.
    ///
    /// The workloads are selected with two regular-expression matchers (namespaces, names) of exact,
    /// escaped alternatives. That selects the cross product of namespaces and names, a superset that
    /// `PrometheusClient.workloadCounts` filters down. A matcher rather than "every workload in the mesh"
    /// because a mesh has far more workloads than rollouts in progress: the answer (about 20 bucket series
    /// per workload) stays proportional to the rollouts analysed, while the number of queries stays at three.
    public static func batchedCounts(
        workloads: [WorkloadRef], window: String, reporter: String = "destination"
    ) throws(PromQLTemplate.Error) -> (requests: String, errors: String, latencyBuckets: String) {
        guard PromQLTemplate.isDuration(window) else {
            throw PromQLTemplate.Error(message: "window \"\(window)\" is not a PromQL duration such as 30s, 1m or 1h30m")
        }
        guard !workloads.isEmpty else { throw PromQLTemplate.Error(message: "no workloads to query") }
        for ref in workloads where ref.namespace.isEmpty || ref.workload.isEmpty {
            throw PromQLTemplate.Error(message: "workload \"\(ref)\" needs a namespace and a name")
        }
        let namespaces = alternatives(workloads.map(\.namespace))
        let names = alternatives(workloads.map(\.workload))
        let selector =
            "reporter=\"\(PromQLTemplate.escapeLabelValue(reporter))\",destination_workload_namespace=~\"\(namespaces)\",destination_workload=~\"\(names)\""
        let by = "destination_workload_namespace, destination_workload"
        // Exact counts, not `increase()`: increase extrapolates each series on its own, and for series younger than
        // the window (a canary that just started) it extrapolates the buckets of one histogram by different factors,
        // which made a healthy canary's share of slow requests look 8× stable's. What happened in the window is, per
        // series (one label set: pod, response code, bucket), the counter now minus the counter a window ago, summed
        // over the workload's series afterwards:
        // - a series that did not exist a window ago counts from zero (Envoy creates a counter at its first
        //   increment, so its whole value was served since; `increase()` extrapolates such a series towards zero);
        // - a series whose counter went down, or that `resets()` shows restarting inside the window (a restarted
        //   sidecar or `fledge simulate-mesh`), counts its value now, the requests served since the restart, as
        //   `increase()` treats a drop. What the old process served between the earlier sample and its restart is
        //   not counted: no sample tells how much it was.
        // Differencing the workload's sums instead made one restarted series cancel every other series' increase
        // (clamped to 0 requests) while a new 5xx series still counted in full: more errors than requests.
        // The number of queries stays one per metric; `resets()` reads the window's samples, as `increase()` would.
        func delta(_ series: String, _ grouping: String) -> String {
            let continuing = "(\(series) - \(series) offset \(window)) >= 0 unless resets(\(series)[\(window)]) > 0"
            return "sum by (\(grouping)) ((\(continuing)) or \(series))"
        }
        return (
            requests: delta("istio_requests_total{\(selector)}", by),
            errors: delta("istio_requests_total{\(selector),response_code=~\"5..\"}", by),
            latencyBuckets: delta("istio_request_duration_milliseconds_bucket{\(selector)}", "\(by), le")
        )
    }

    /// A count as people read it: `386`, `2.5`.
    static func countText(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    /// `a|b|c` of the distinct values, each escaped for RE2 and then for a PromQL string. Prometheus
    /// anchors regular-expression matchers, so each alternative matches exactly.
    static func alternatives(_ values: [String]) -> String {
        var seen: Set<String> = []
        var parts: [String] = []
        for value in values where seen.insert(value).inserted {
            var escaped = ""
            for character in value {
                if "\\.+*?()|[]{}^$".contains(character) { escaped.append("\\") }
                escaped.append(character)
            }
            parts.append(PromQLTemplate.escapeLabelValue(escaped))
        }
        return parts.joined(separator: "|")
    }
}

extension PrometheusClient {
    /// Requests, 5xx errors and latency bucket increases over `window` for every workload in `workloads`,
    /// in exactly three queries whatever their number (run concurrently). Throws `PromQLTemplate.Error` for a
    /// bad window or workload, `PrometheusError` when Prometheus fails or answers something unusable.
    ///
    /// A workload is in the answer when Prometheus has request series for it in the window (its value may be
    /// 0: deployed, no traffic); a workload without any series is left out, which the caller reads as no data.
    /// - Parameters:
    ///   - window: a PromQL duration, e.g. `30s` (the analysis interval).
    ///   - time: evaluation time (Unix seconds), or now.
    ///   - reporter: which proxy reports, `destination` by default.
    public func workloadCounts(
        workloads: [WorkloadRef], window: String, at time: Double? = nil, reporter: String = "destination"
    ) async throws -> [WorkloadRef: WorkloadCounts] {
        guard !workloads.isEmpty else { return [:] }
        let queries = try IstioQueries.batchedCounts(workloads: workloads, window: window, reporter: reporter)
        async let requests = query(queries.requests, at: time)
        async let errors = query(queries.errors, at: time)
        async let buckets = query(queries.latencyBuckets, at: time)
        return try Self.decodeCounts(
            requests: try await requests, errors: try await errors, latencyBuckets: try await buckets, wanted: Set(workloads),
            server: baseURL, queries: queries)
    }

    /// Turns the three answers into counts per wanted workload. Separate from IO so any answer can be tested.
    public static func decodeCounts(
        requests: QueryResult, errors: QueryResult, latencyBuckets: QueryResult, wanted: Set<WorkloadRef>, server: String,
        queries: (requests: String, errors: String, latencyBuckets: String)
    ) throws(PrometheusError) -> [WorkloadRef: WorkloadCounts] {
        func series(_ result: QueryResult, query: String) throws(PrometheusError) -> [InstantSample] {
            switch result {
            case .vector(let samples): return samples
            default:
                throw PrometheusError(kind: .malformedResponse("expected an instant vector, got \(result.kindName)"), server: server, query: query)
            }
        }
        func ref(_ sample: InstantSample, query: String) throws(PrometheusError) -> WorkloadRef {
            guard let namespace = sample.labels["destination_workload_namespace"], let workload = sample.labels["destination_workload"] else {
                throw PrometheusError(
                    kind: .malformedResponse("a series lacks destination_workload_namespace or destination_workload: \(sample.labels)"),
                    server: server, query: query)
            }
            return WorkloadRef(namespace: namespace, workload: workload)
        }
        func count(_ sample: InstantSample, query: String) throws(PrometheusError) -> Double {
            let value = sample.point.value
            // increase() of a counter is never negative; NaN/Inf would poison every sum after it.
            guard value.isFinite, value >= 0 else {
                throw PrometheusError(
                    kind: .malformedResponse("count \(value) for \(sample.labels) is not a non-negative number"), server: server, query: query)
            }
            return value
        }

        var out: [WorkloadRef: WorkloadCounts] = [:]
        for sample in try series(requests, query: queries.requests) {
            let key = try ref(sample, query: queries.requests)
            guard wanted.contains(key) else { continue }
            out[key] = WorkloadCounts(requests: try count(sample, query: queries.requests), errors: 0, latency: nil)
        }
        for sample in try series(errors, query: queries.errors) {
            let key = try ref(sample, query: queries.errors)
            guard out[key] != nil else { continue }
            let errors = try count(sample, query: queries.errors)
            let requests = out[key]!.requests
            // The 5xx series are some of the request series and both queries count each series the same way at the
            // same time, so this only happens when a scrape landed between the two queries. Errors without their
            // requests would make the interval unjudgeable; the requests are the better-known count.
            if errors > requests {
                out[key]!.adjustment =
                    "\(IstioQueries.countText(errors)) 5xx responses but \(IstioQueries.countText(requests)) requests in the window "
                    + "(the queries saw different scrapes): errors lowered to the requests"
            }
            out[key]!.errors = min(errors, requests)
        }
        var buckets: [WorkloadRef: [(le: Double, count: Double)]] = [:]
        for sample in try series(latencyBuckets, query: queries.latencyBuckets) {
            let key = try ref(sample, query: queries.latencyBuckets)
            guard out[key] != nil else { continue }
            guard let text = sample.labels["le"], let le = PrometheusResponse.parseSampleValue(text), !le.isNaN else {
                throw PrometheusError(
                    kind: .malformedResponse("a bucket series has no numeric le label: \(sample.labels)"), server: server,
                    query: queries.latencyBuckets)
            }
            buckets[key, default: []].append((le, try count(sample, query: queries.latencyBuckets)))
        }
        for (key, list) in buckets {
            let sorted = list.sorted { $0.le < $1.le }
            let finite = sorted.filter { $0.le.isFinite }
            // Without a +Inf bucket (a partial scrape) the largest finite bucket is the best total there is.
            let total = sorted.last { $0.le == .infinity }?.count ?? finite.last?.count ?? 0
            out[key]!.latency = WorkloadCounts.LatencyIncrease(
                bounds: finite.map(\.le), cumulativeCounts: finite.map(\.count), total: total)
        }
        return out
    }
}

extension QueryResult {
    var kindName: String {
        switch self {
        case .vector: return "a vector"
        case .scalar: return "a scalar"
        case .matrix: return "a matrix"
        case .string: return "a string"
        }
    }
}
