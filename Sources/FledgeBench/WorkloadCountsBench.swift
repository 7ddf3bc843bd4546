import ArgumentParser
import FledgeHTTP
import FledgePrometheus
import Foundation
import LocalPrometheus

/// What counting per series (counter resets handled) costs Prometheus against the former difference of sums.
struct WorkloadCountsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workload-counts",
        abstract: "The judge's three batched count queries for N canary/stable pairs: per-series with resets vs the former sums."
    )

    @Option(help: "Rollouts (canary/stable pairs) counted in one batch.")
    var rollouts = 50

    @Option(help: "Batches per measurement, each at another evaluation time.")
    var batches = 30

    @Option(help: "Measurements of each side (the median is reported).")
    var rounds = 3

    func validate() throws {
        guard rollouts >= 1 else { throw ValidationError("--rollouts must be at least 1") }
        guard batches >= 1 else { throw ValidationError("--batches must be at least 1") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
    }

    func run() async throws {
        let start = ProductServiceSample.start
        let steps = 60  // 15 minutes of 15 s scrapes
        var workloads: [IstioWorkloadTraffic] = []
        var refs: [WorkloadRef] = []
        for i in 0..<rollouts {
            let namespace = "team-\(i % 10)"
            for (name, version) in [("service-\(i)", "v1"), ("service-\(i)-canary", "v2")] {
                workloads.append(
                    IstioWorkloadTraffic(
                        namespace: namespace, workload: name, version: version, service: "service-\(i).\(namespace).svc.cluster.local",
                        classes: [
                            .init(responseCode: 200, cumulativeBuckets: [(25, 100), (100, 190), (500, 198)], latencySumMs: 198 * 40),
                            .init(responseCode: 503, cumulativeBuckets: [(1000, 2)], latencySumMs: 2 * 800),
                        ]))
                refs.append(WorkloadRef(namespace: namespace, workload: name))
            }
        }
        let server = try PrometheusServer()
        defer { server.stop() }
        try PrometheusServer.backfill(openMetrics: IstioOpenMetrics.render(workloads, start: start, step: 15, steps: steps), into: server.dataDirectory)
        try await server.start()

        let window = "30s"
        let current = try IstioQueries.batchedCounts(workloads: refs, window: window)
        let former = try Self.formerQueries(workloads: refs, window: window)
        let client = PrometheusClient(baseURL: server.url, http: CurlHTTPClient())
        let times = (0..<batches).map { Double(start + 120 + ($0 * 7) % (steps * 15 - 150)) }

        func batch(_ queries: (requests: String, errors: String, latencyBuckets: String)) async throws -> Double {
            let clock = ContinuousClock()
            let began = clock.now
            for time in times {
                async let a = client.query(queries.requests, at: time)
                async let b = client.query(queries.errors, at: time)
                async let c = client.query(queries.latencyBuckets, at: time)
                _ = try await (a, b, c)
            }
            return (clock.now - began).seconds
        }
        // Both sides answer the same counts on data without resets: a benchmark of two different answers means nothing.
        let check = try await client.workloadCounts(workloads: refs, window: window, at: times[0])
        let checkFormer = try PrometheusClient.decodeCounts(
            requests: try await client.query(former.requests, at: times[0]), errors: try await client.query(former.errors, at: times[0]),
            latencyBuckets: try await client.query(former.latencyBuckets, at: times[0]), wanted: Set(refs), server: server.url, queries: former)
        guard check == checkFormer, check.count == refs.count else {
            throw ValidationError("the two forms disagree on data without resets")
        }
        _ = try await batch(current)
        _ = try await batch(former)

        var currentTimes: [Double] = []
        var formerTimes: [Double] = []
        for round in 1...rounds {
            currentTimes.append(try await batch(current))
            formerTimes.append(try await batch(former))
            print("round \(round): per series \(format(currentTimes.last!)) s, sums \(format(formerTimes.last!)) s")
        }
        let perSeries = median(currentTimes) / Double(batches) * 1000
        let sums = median(formerTimes) / Double(batches) * 1000
        print("""

            Three count queries for \(rollouts) rollouts (\(refs.count) workloads, 2 response codes, \(IstioOpenMetrics.defaultBuckets.count + 1) \
            buckets each), \(window) window, 15 s scrapes, median of \(rounds) × \(batches) batches:
              per series, resets handled: \(String(format: "%.2f", perSeries)) ms per batch
              former difference of sums:  \(String(format: "%.2f", sums)) ms per batch
              ratio: \(String(format: "%.2f", perSeries / sums))×
            """)
    }

    /// The queries before counter resets were handled: the workload's sum now minus its sum a window ago.
    static func formerQueries(workloads: [WorkloadRef], window: String) throws -> (requests: String, errors: String, latencyBuckets: String) {
        let current = try IstioQueries.batchedCounts(workloads: workloads, window: window)
        // The selector is the same; only the arithmetic around it changed.
        func selector(_ query: String, metric: String) -> String {
            let from = query.range(of: metric + "{")!.lowerBound
            let to = query[from...].firstIndex(of: "}")!
            return String(query[from...to])
        }
        func delta(_ series: String, _ grouping: String) -> String {
            let now = "sum by (\(grouping)) (\(series))"
            let before = "sum by (\(grouping)) (\(series) offset \(window))"
            return "clamp_min(\(now) - (\(before) or \(now) * 0), 0)"
        }
        let by = "destination_workload_namespace, destination_workload"
        return (
            delta(selector(current.requests, metric: "istio_requests_total"), by),
            delta(selector(current.errors, metric: "istio_requests_total"), by),
            delta(selector(current.latencyBuckets, metric: "istio_request_duration_milliseconds_bucket"), "\(by), le")
        )
    }
}
