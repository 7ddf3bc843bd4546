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

    /// Restarted sidecars (or a restarted `fledge simulate-mesh`): counters that drop back, and 5xx series that are
    /// new after the restart. Samples every 15 s from `start`; evaluated at step 22 + 7 s with a 1m window, so the
    /// earlier sample is step 18 and the window holds steps 19–22.
    enum ResetData {
        static let start = CountsData.start
        static let evaluationTime = Double(start + 22 * 15 + 7)
        static func labels(_ workload: String, code: Int, pod: String) -> String {
            "reporter=\"destination\",destination_workload=\"\(workload)\",destination_workload_namespace=\"shop\",response_code=\"\(code)\",pod=\"\(pod)\""
        }
        static func series(_ name: String, _ labels: String, _ values: [(step: Int, value: Int)]) -> String {
            values.map { "\(name){\(labels)} \($0.value) \(start + $0.step * 15)\n" }.joined()
        }
        static var openMetrics: String {
            var out = "# HELP istio_requests Total requests.\n# TYPE istio_requests counter\n"
            // Canary: 100 OK per step up to step 20 (2000), then restarted: 80 per step (80, 160). A drop: 160 served
            // since the restart. Its 503 series is new after the restart: 4 per step (4, 8), counted from zero.
            out += series("istio_requests_total", labels("checkout-canary", code: 200, pod: "c1"),
                (0...20).map { ($0, 100 * $0) } + [(21, 80), (22, 160)])
            out += series("istio_requests_total", labels("checkout-canary", code: 503, pod: "c1"), [(21, 4), (22, 8)])
            // Stable pod s1: 5 per step up to step 20 (100; 90 at step 18), restarted: 60 per step (60, 120). The value
            // now (120) is above the earlier one (90): only resets() inside the window shows the restart.
            out += series("istio_requests_total", labels("checkout", code: 200, pod: "s1"), (0...20).map { ($0, 5 * $0) } + [(21, 60), (22, 120)])
            // Stable pod s2, untouched: 1000 per step, 4000 in the window. Summed with s1 before differencing, s1's
            // restart would hide; per series it neither hides nor is hidden.
            out += series("istio_requests_total", labels("checkout", code: 200, pod: "s2"), (0...22).map { ($0, 1000 * $0) })
            out += "# HELP istio_request_duration_milliseconds Request duration.\n# TYPE istio_request_duration_milliseconds histogram\n"
            // The canary's 200s are all ≤ 100 ms, its 503s in (100, 250]: each bucket series restarts with its counter.
            for (le, ok, bad) in [("100", true, false), ("250", true, true), ("+Inf", true, true)] {
                let okLabels = labels("checkout-canary", code: 200, pod: "c1") + ",le=\"\(le)\""
                let badLabels = labels("checkout-canary", code: 503, pod: "c1") + ",le=\"\(le)\""
                if ok { out += series("istio_request_duration_milliseconds_bucket", okLabels, (0...20).map { ($0, 100 * $0) } + [(21, 80), (22, 160)]) }
                out += series("istio_request_duration_milliseconds_bucket", badLabels, bad ? [(21, 4), (22, 8)] : [(21, 0), (22, 0)])
            }
            return out + "# EOF\n"
        }
    }

    @Test func counterResetsCountPerSeriesAsIncreaseDoes() async throws {
        try await withBackfilledPrometheus(ResetData.openMetrics) { server in
            let http = CountingHTTPClient()
            let client = PrometheusClient(baseURL: server.url, http: http)
            let canary = WorkloadRef(namespace: "shop", workload: "checkout-canary")
            let stable = WorkloadRef(namespace: "shop", workload: "checkout")
            let counts = try await client.workloadCounts(workloads: [canary, stable], window: "1m", at: ResetData.evaluationTime)
            #expect(http.sent.withLock { $0 } == 3, "still one query per metric")

            let c = try #require(counts[canary])
            // 160 OK since the restart and 8 errors from the new 503 series: 168 requests, not 0.
            #expect(Self.near(c.requests, 168) && Self.near(c.errors, 8), "\(c)")
            #expect(c.adjustment == nil)
            let cl = try #require(c.latency)
            #expect(cl.bounds == [100, 250])
            #expect(zip(cl.cumulativeCounts, [160.0, 168]).allSatisfy { abs($0 - $1) < 1e-6 } && Self.near(cl.total, 168), "\(cl)")

            let s = try #require(counts[stable])
            // s2: 22000 − 18000; s1: 120 since its restart (not 120 − 90).
            #expect(Self.near(s.requests, 4120) && s.errors == 0, "\(s)")

            // The same check through `increase()`'s own reset handling: Prometheus sees resets where we do.
            let resets = try await client.query(
                "sum by (destination_workload) (resets(istio_requests_total{destination_workload_namespace=\"shop\"}[1m]))",
                at: ResetData.evaluationTime)
            let perWorkload = resets.values(groupedBy: ["destination_workload"])
            #expect(perWorkload == [["checkout-canary"]: 1, ["checkout"]: 1], "\(perWorkload)")
        }
    }

    @Test func moreErrorsThanRequestsAreLoweredWithAReason() throws {
        let ref = WorkloadRef(namespace: "shop", workload: "a")
        let labels = ["destination_workload_namespace": "shop", "destination_workload": "a"]
        func vector(_ value: Double, _ extra: [String: String] = [:]) -> QueryResult {
            .vector([InstantSample(labels: labels.merging(extra) { $1 }, point: SamplePoint(timestamp: 0, value: value))])
        }
        let queries = try IstioQueries.batchedCounts(workloads: [ref], window: "30s")
        let counts = try PrometheusClient.decodeCounts(
            requests: vector(5), errors: vector(7), latencyBuckets: vector(5, ["le": "+Inf"]), wanted: [ref], server: "p", queries: queries)
        let a = try #require(counts[ref])
        #expect(a.requests == 5 && a.errors == 5, "never errors without their requests: \(a)")
        #expect(a.adjustment == "7 5xx responses but 5 requests in the window (the queries saw different scrapes): errors lowered to the requests")
        let fine = try PrometheusClient.decodeCounts(
            requests: vector(5), errors: vector(5), latencyBuckets: vector(5, ["le": "+Inf"]), wanted: [ref], server: "p", queries: queries)
        #expect(fine[ref]?.adjustment == nil && fine[ref]?.errors == 5)
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
        #expect(queries.latencyBuckets.hasPrefix("sum by (destination_workload_namespace, destination_workload, le) (((istio_request_duration_milliseconds_bucket{"))
        #expect(queries.latencyBuckets.contains(" offset 30s) >= 0 unless resets(") && !queries.latencyBuckets.contains("increase("), "exact counts, never extrapolated")

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
