import FledgeHTTP
import FledgePrometheus
import Foundation
import LocalPrometheus
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Data whose answers are worked out by hand below, backfilled into a real Prometheus.
enum CheckoutData {
    static let start = 1_767_225_600  // 2026-01-01T00:00:00Z
    static let step = 15
    static let evaluationTime = Double(start + 20 * 60 + 7)  // between samples

    static var openMetrics: String {
        IstioOpenMetrics.render([
            // Per 15 s: 392 OK requests (200 under 10 ms, 180 more under 50 ms, 12 more under 100 ms)
            // and 8 errors between 100 and 250 ms.
            IstioWorkloadTraffic(namespace: "shop", workload: "checkout", version: "v1", service: "checkout.shop.svc.cluster.local", classes: [
                .init(responseCode: 200, cumulativeBuckets: [(10, 200), (50, 380), (100, 392)], latencySumMs: 392 * 20),
                .init(responseCode: 500, cumulativeBuckets: [(100, 0), (250, 8)], latencySumMs: 8 * 200),
            ]),
            // The same workload seen by the calling proxies: must not be mixed in.
            IstioWorkloadTraffic(namespace: "shop", workload: "checkout", version: "v1", service: "checkout.shop.svc.cluster.local", reporter: "source", classes: [
                .init(responseCode: 503, cumulativeBuckets: [(5000, 1000)], latencySumMs: 1000 * 4000),
            ]),
            // Same name in another namespace: must not be mixed in either.
            IstioWorkloadTraffic(namespace: "staging", workload: "checkout", version: "v1", service: "checkout.staging.svc.cluster.local", classes: [
                .init(responseCode: 500, cumulativeBuckets: [(5000, 50)], latencySumMs: 50 * 4000),
            ]),
            // Deployed, but receiving no requests: counters exist and stay at zero.
            IstioWorkloadTraffic(namespace: "shop", workload: "checkout-canary", version: "v2", service: "checkout.shop.svc.cluster.local", classes: [
                .init(responseCode: 200, cumulativeBuckets: [(10, 0)], latencySumMs: 0),
            ]),
        ], start: start, step: step, steps: 160)
    }
}

@Suite("Prometheus client against a real Prometheus", .serialized)
struct RealPrometheusTests {
    @Test func builtInQueriesReportTheKnownAnswers() async throws {
        try await withBackfilledPrometheus(CheckoutData.openMetrics) { server in
            let client = PrometheusClient(baseURL: server.url, http: CurlHTTPClient())
            let metrics = try await client.workloadMetrics(namespace: "shop", workload: "checkout", window: "1m", at: CheckoutData.evaluationTime)
            // 392 of 400 requests succeed.
            #expect(metrics.successRate.map { abs($0 - 98) < 1e-9 } == true, "\(String(describing: metrics.successRate))")
            // Rank 0.99 × 400 = 396 falls in (100, 250] holding requests 393…400: 100 + 150 × 4/8.
            #expect(metrics.latencyP99Ms.map { abs($0 - 175) < 1e-9 } == true, "\(String(describing: metrics.latencyP99Ms))")
            // Four 15 s steps of 400 requests in one minute.
            #expect(metrics.requests.map { abs($0 - 1600) < 1e-6 } == true, "\(String(describing: metrics.requests))")

            // p90: rank 360 falls in (25, 50] holding requests 201…380: 25 + 25 × 160/180.
            let p90 = try await client.query(IstioQueries.latency(quantile: 0.9, namespace: "shop", workload: "checkout", window: "1m"), at: CheckoutData.evaluationTime)
            #expect(p90.singleValue.map { abs($0 - (25 + 25.0 * 160 / 180)) < 1e-9 } == true)
        }
    }

    @Test func noSeriesAndNoTrafficAreNoData() async throws {
        try await withBackfilledPrometheus(CheckoutData.openMetrics) { server in
            let client = PrometheusClient(baseURL: server.url, http: CurlHTTPClient())
            let missing = try await client.workloadMetrics(namespace: "shop", workload: "nothing-here", window: "1m", at: CheckoutData.evaluationTime)
            #expect(missing.successRate == nil)
            #expect(missing.latencyP99Ms == nil)
            #expect(missing.requests == nil)

            let idle = try await client.workloadMetrics(namespace: "shop", workload: "checkout-canary", window: "1m", at: CheckoutData.evaluationTime)
            #expect(idle.successRate == nil, "0/0 is no data, not a success rate")
            #expect(idle.latencyP99Ms == nil)
            #expect(idle.requests == 0, "the workload exists and saw no requests")
        }
    }

    @Test func queriesAtOtherTimesAndLongPromQL() async throws {
        try await withBackfilledPrometheus(CheckoutData.openMetrics) { server in
            let client = PrometheusClient(baseURL: server.url, http: CurlHTTPClient())
            // Before the data starts there is nothing.
            let before = try await client.workloadMetrics(namespace: "shop", workload: "checkout", window: "1m", at: Double(CheckoutData.start - 3600))
            #expect(before.requests == nil)
            // A query longer than any URL limit travels in the POST body.
            let clauses = (0..<400).map { "sum(increase(istio_requests_total{destination_workload=\"checkout\",destination_workload_namespace=\"shop\",reporter=\"destination\",source_workload!=\"x\($0)\"}[1m]))" }
            let long = try await client.query("(" + clauses.joined(separator: " + ") + ") * 0 + 1", at: CheckoutData.evaluationTime)
            #expect(long.singleValue == 1)
        }
    }

    @Test func apiErrorsCarryPrometheussMessage() async throws {
        try await withBackfilledPrometheus(CheckoutData.openMetrics) { server in
            let client = PrometheusClient(baseURL: server.url, http: CurlHTTPClient())
            let error = await #expect(throws: PrometheusError.self) { try await client.query("sum(rate(", at: CheckoutData.evaluationTime) }
            guard case .api(let type, let message)? = error?.kind else {
                Issue.record("expected an API error, got \(String(describing: error))")
                return
            }
            #expect(type == "bad_data")
            #expect(message.contains("parse error"))
            #expect(error?.description.contains("Prometheus at \(server.url) rejected the query") == true)
        }
    }

    @Test func prometheusNotRunningIsAClearError() async throws {
        let port = try LoopbackPort.free()
        let client = PrometheusClient(baseURL: "http://127.0.0.1:\(port)", http: CurlHTTPClient())
        let error = await #expect(throws: PrometheusError.self) { try await client.query("up") }
        #expect(error?.description.hasPrefix("Prometheus at http://127.0.0.1:\(port): connection refused") == true, "\(String(describing: error))")
    }

    @Test func aServerThatNeverAnswersTimesOut() async throws {
        let listener = try SilentListener()
        defer { listener.close() }
        let http = CurlHTTPClient(configuration: .init(connectTimeout: .seconds(1), timeout: .milliseconds(500)))
        let client = PrometheusClient(baseURL: "http://127.0.0.1:\(listener.port)", http: http)
        let error = await #expect(throws: PrometheusError.self) { try await client.query("up") }
        guard case .transport(let transport)? = error?.kind else {
            Issue.record("expected a transport error, got \(String(describing: error))")
            return
        }
        #expect(transport.kind == .timeout)
        #expect(error?.description.contains("timed out") == true)
    }
}

/// A socket that accepts connections (the kernel completes the handshake) but never answers.
struct SilentListener {
    let fd: Int32
    let port: Int

    init() throws {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard listen(socketFD, 16) == 0 else { throw LocalServerError("listen failed: errno \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socketFD, $0, &length) } }
        fd = socketFD
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { _ = Glibc.close(fd) }
}
