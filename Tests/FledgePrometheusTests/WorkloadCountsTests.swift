import FledgeHTTP
import FledgePrometheus
import Foundation
import LocalPrometheus
import Synchronization
import Testing
import TestSupport

/// Counts whose answers are worked out by hand, for several workloads at once.
enum CountsData {
    static let start = 1_767_225_600  // 2026-01-01T00:00:00Z
    static let step = 15
    /// Between samples: a 1m window holds 4 samples 45 s apart, extrapolated by 60/45 to the
    /// window's edges, so every increase is exactly 4 steps' worth.
    static let evaluationTime = Double(start + 20 * 60 + 7)

    static var openMetrics: String {
        IstioOpenMetrics.render([
            // Stable, per step: 392 OK (200 ≤ 10 ms, 180 more ≤ 50 ms, 12 more ≤ 100 ms), 8 × 500 in (100, 250].
            IstioWorkloadTraffic(namespace: "shop", workload: "checkout", version: "v1", service: "checkout.shop.svc.cluster.local", classes: [
                .init(responseCode: 200, cumulativeBuckets: [(10, 200), (50, 380), (100, 392)], latencySumMs: 392 * 20),
                .init(responseCode: 500, cumulativeBuckets: [(100, 0), (250, 8)], latencySumMs: 8 * 200),
            ]),
            // Canary, per step: 90 OK (50 ≤ 10 ms, 40 more ≤ 50 ms), 10 × 503 in (100, 250].
            IstioWorkloadTraffic(namespace: "shop", workload: "checkout-canary", version: "v2", service: "checkout.shop.svc.cluster.local", classes: [
                .init(responseCode: 200, cumulativeBuckets: [(10, 50), (50, 90)], latencySumMs: 90 * 20),
                .init(responseCode: 503, cumulativeBuckets: [(100, 0), (250, 10)], latencySumMs: 10 * 200),
            ]),
            // The caller's view of the canary: another reporter, must not be mixed in.
            IstioWorkloadTraffic(namespace: "shop", workload: "checkout-canary", version: "v2", service: "checkout.shop.svc.cluster.local", reporter: "source", classes: [
                .init(responseCode: 503, cumulativeBuckets: [(5000, 1000)], latencySumMs: 1000 * 4000),
            ]),
            // Same name in a namespace that is asked about for another workload: the namespace and name
            // matchers select it (cross product), the client must drop it.
            IstioWorkloadTraffic(namespace: "staging", workload: "checkout", version: "v1", service: "checkout.staging.svc.cluster.local", classes: [
                .init(responseCode: 500, cumulativeBuckets: [(5000, 50)], latencySumMs: 50 * 4000),
            ]),
            IstioWorkloadTraffic(namespace: "staging", workload: "cart.v2", version: "v2", service: "cart.staging.svc.cluster.local", classes: [
                .init(responseCode: 200, cumulativeBuckets: [(25, 7)], latencySumMs: 7 * 20),
            ]),
            // Matches "cart.v2" if the dot were not escaped.
            IstioWorkloadTraffic(namespace: "staging", workload: "cartxv2", version: "v2", service: "cart.staging.svc.cluster.local", classes: [
                .init(responseCode: 500, cumulativeBuckets: [(25, 1000)], latencySumMs: 1000 * 20),
            ]),
            // Deployed, no requests: counters exist and stay at zero.
            IstioWorkloadTraffic(namespace: "shop", workload: "idle", version: "v1", service: "idle.shop.svc.cluster.local", classes: [
                .init(responseCode: 200, cumulativeBuckets: [(10, 0)], latencySumMs: 0),
            ]),
        ], start: start, step: step, steps: 160)
    }
}

/// The real libcurl client, counting the requests it sends.
final class CountingHTTPClient: HTTPClient {
    let inner = CurlHTTPClient()
    let sent = Mutex(0)
    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        sent.withLock { $0 += 1 }
        return try await inner.send(request)
    }
    func stream(_ request: HTTPRequest) async throws -> HTTPStreamingResponse {
        sent.withLock { $0 += 1 }
        return try await inner.stream(request)
    }
}

@Suite("Batched workload counts against a real Prometheus", .serialized)
struct WorkloadCountsTests {
    static func near(_ a: Double?, _ b: Double) -> Bool { a.map { abs($0 - b) < 1e-6 } ?? false }

    @Test func threeQueriesGiveEveryWorkloadsCounts() async throws {
        try await withBackfilledPrometheus(CountsData.openMetrics) { server in
            let http = CountingHTTPClient()
            let client = PrometheusClient(baseURL: server.url, http: http)
            let stable = WorkloadRef(namespace: "shop", workload: "checkout")
            let canary = WorkloadRef(namespace: "shop", workload: "checkout-canary")
            let dotted = WorkloadRef(namespace: "staging", workload: "cart.v2")
            let idle = WorkloadRef(namespace: "shop", workload: "idle")
            let missing = WorkloadRef(namespace: "shop", workload: "nothing-here")
            let counts = try await client.workloadCounts(
                workloads: [stable, canary, dotted, idle, missing], window: "1m", at: CountsData.evaluationTime)
            #expect(http.sent.withLock { $0 } == 3)
            #expect(Set(counts.keys) == [stable, canary, dotted, idle], "no other workload, and none without series")

            let s = try #require(counts[stable])
            #expect(Self.near(s.requests, 1600) && Self.near(s.errors, 32), "\(s)")
            let sl = try #require(s.latency)
            #expect(sl.bounds == IstioOpenMetrics.defaultBuckets)
            // Cumulative per bound: ≤10 ms 800, ≤50 ms 1520, ≤100 ms 1568, ≤250 ms and above 1600.
            let expectedStable: [Double] = [0, 0, 0, 800, 800, 1520, 1568] + Array(repeating: 1600, count: 12)
            #expect(zip(sl.cumulativeCounts, expectedStable).allSatisfy { abs($0 - $1) < 1e-6 }, "\(sl.cumulativeCounts)")
            #expect(Self.near(sl.total, 1600))

            let c = try #require(counts[canary])
            #expect(Self.near(c.requests, 400) && Self.near(c.errors, 40), "the source reporter's 4000 errors stay out: \(c)")
            let cl = try #require(c.latency)
            let expectedCanary: [Double] = [0, 0, 0, 200, 200, 360, 360] + Array(repeating: 400, count: 12)
            #expect(zip(cl.cumulativeCounts, expectedCanary).allSatisfy { abs($0 - $1) < 1e-6 }, "\(cl.cumulativeCounts)")

            let d = try #require(counts[dotted])
            #expect(Self.near(d.requests, 28) && Self.near(d.errors, 0), "'.' matches only a dot: \(d)")

            let i = try #require(counts[idle])
            #expect(Self.near(i.requests, 0) && i.errors == 0)
            #expect(i.latency.map { $0.total == 0 && $0.cumulativeCounts.allSatisfy { $0 == 0 } } == true)
        }
    }

    @Test func theQueryCountDoesNotGrowWithWorkloads() async throws {
        try await withBackfilledPrometheus(CountsData.openMetrics) { server in
            let http = CountingHTTPClient()
            let client = PrometheusClient(baseURL: server.url, http: http)
            let many = (0..<500).map { WorkloadRef(namespace: "ns-\($0 % 7)", workload: "service-\($0)") }
                + [WorkloadRef(namespace: "shop", workload: "checkout")]
            let counts = try await client.workloadCounts(workloads: many, window: "1m", at: CountsData.evaluationTime)
            #expect(http.sent.withLock { $0 } == 3)
            #expect(Array(counts.keys) == [WorkloadRef(namespace: "shop", workload: "checkout")])
            // Nothing asked, nothing sent.
            let none = try await client.workloadCounts(workloads: [], window: "1m")
            #expect(none.isEmpty && http.sent.withLock { $0 } == 3)
        }
    }

    @Test func badInputAndBadAnswersAreClearErrors() throws {
        #expect(throws: PromQLTemplate.Error(message: "window \"1 minute\" is not a PromQL duration such as 30s, 1m or 1h30m")) {
            try IstioQueries.batchedCounts(workloads: [WorkloadRef(namespace: "a", workload: "b")], window: "1 minute")
        }
        #expect(throws: PromQLTemplate.Error.self) { try IstioQueries.batchedCounts(workloads: [WorkloadRef(namespace: "", workload: "b")], window: "1m") }
        let queries = try IstioQueries.batchedCounts(
            workloads: [WorkloadRef(namespace: "shop", workload: "a.b"), WorkloadRef(namespace: "shop", workload: "c\"d")], window: "30s")
        #expect(queries.requests.contains(#"destination_workload_namespace=~"shop",destination_workload=~"a\\.b|c\"d""#), "\(queries.requests)")
        #expect(queries.errors.contains(#"response_code=~"5..""#))
        #expect(queries.latencyBuckets.hasPrefix("clamp_min(sum by (destination_workload_namespace, destination_workload, le) (istio_request_duration_milliseconds_bucket{"))
        #expect(queries.latencyBuckets.contains(" offset 30s) or ") && !queries.latencyBuckets.contains("increase("), "exact counts, never extrapolated")

        let ref = WorkloadRef(namespace: "shop", workload: "a")
        let labels = ["destination_workload_namespace": "shop", "destination_workload": "a"]
        func vector(_ value: Double, _ extra: [String: String] = [:]) -> QueryResult {
            .vector([InstantSample(labels: labels.merging(extra) { $1 }, point: SamplePoint(timestamp: 0, value: value))])
        }
        let scalar = QueryResult.scalar(SamplePoint(timestamp: 0, value: 1))
        let notVector = #expect(throws: PrometheusError.self) {
            try PrometheusClient.decodeCounts(requests: scalar, errors: vector(0), latencyBuckets: vector(0, ["le": "+Inf"]), wanted: [ref], server: "p", queries: queries)
        }
        #expect(notVector?.description.contains("expected an instant vector, got a scalar") == true)
        let negative = #expect(throws: PrometheusError.self) {
            try PrometheusClient.decodeCounts(requests: vector(-3), errors: vector(0), latencyBuckets: vector(0, ["le": "+Inf"]), wanted: [ref], server: "p", queries: queries)
        }
        #expect(negative?.description.contains("is not a non-negative number") == true)
        let noLe = #expect(throws: PrometheusError.self) {
            try PrometheusClient.decodeCounts(requests: vector(3), errors: vector(0), latencyBuckets: vector(3, ["le": "fast"]), wanted: [ref], server: "p", queries: queries)
        }
        #expect(noLe?.description.contains("no numeric le label") == true)
        let unlabelled = #expect(throws: PrometheusError.self) {
            try PrometheusClient.decodeCounts(
                requests: .vector([InstantSample(labels: [:], point: SamplePoint(timestamp: 0, value: 1))]), errors: vector(0),
                latencyBuckets: vector(0, ["le": "+Inf"]), wanted: [ref], server: "p", queries: queries)
        }
        #expect(unlabelled?.description.contains("lacks destination_workload_namespace") == true)
    }

    @Test func prometheusDownIsAClearError() async throws {
        let port = try LoopbackPort.free()
        let client = PrometheusClient(baseURL: "http://127.0.0.1:\(port)", http: CurlHTTPClient())
        let error = await #expect(throws: PrometheusError.self) {
            try await client.workloadCounts(workloads: [WorkloadRef(namespace: "a", workload: "b")], window: "30s")
        }
        #expect(error?.description.hasPrefix("Prometheus at http://127.0.0.1:\(port): connection refused") == true, "\(String(describing: error))")
    }
}
