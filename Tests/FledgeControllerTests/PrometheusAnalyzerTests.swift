import FledgeController
import FledgeCore
import FledgeHTTP
import FledgePrometheus
import Foundation
import LocalPrometheus
import Synchronization
import Testing
import TestSupport

/// Traffic whose answers are worked out by hand, for several rollouts at once.
enum EstateData {
    static let start = 1_767_225_600
    static let evaluationTime = Date(timeIntervalSince1970: Double(start + 20 * 60 + 7))

    static var openMetrics: String {
        let shop = "checkout.shop.svc.cluster.local"
        return IstioOpenMetrics.render(
            [
                // Per 15 s: 392 OK (200 < 10 ms, 180 < 50 ms, 12 < 100 ms), 8 errors in (100, 250]: 98 %, p99 175 ms.
                IstioWorkloadTraffic(
                    namespace: "shop", workload: "checkout", version: "v1", service: shop,
                    classes: [
                        .init(responseCode: 200, cumulativeBuckets: [(10, 200), (50, 380), (100, 392)], latencySumMs: 392 * 20),
                        .init(responseCode: 500, cumulativeBuckets: [(100, 0), (250, 8)], latencySumMs: 8 * 200),
                    ]),
                // The canary: 100 OK in (50, 100], 100 errors in (100, 250]: 50 %.
                IstioWorkloadTraffic(
                    namespace: "shop", workload: "checkout-canary", version: "v2", service: shop,
                    classes: [
                        .init(responseCode: 200, cumulativeBuckets: [(50, 0), (100, 100)], latencySumMs: 100 * 80),
                        .init(responseCode: 503, cumulativeBuckets: [(100, 0), (250, 100)], latencySumMs: 100 * 200),
                    ]),
                // Every request fails: 0 %, which must not read as "no data".
                IstioWorkloadTraffic(
                    namespace: "payments", workload: "ledger-canary", version: "v2", service: "ledger.payments.svc.cluster.local",
                    classes: [.init(responseCode: 500, cumulativeBuckets: [(5, 0), (10, 40)], latencySumMs: 40 * 8)]),
                // Same workload name in another namespace: never mixed in.
                IstioWorkloadTraffic(
                    namespace: "staging", workload: "checkout-canary", version: "v2", service: "checkout.staging.svc.cluster.local",
                    classes: [.init(responseCode: 200, cumulativeBuckets: [(5, 1000)], latencySumMs: 1000)]),
            ], start: start, step: 15, steps: 160)
    }
}

func plan(_ name: String, _ kind: MetricPlan.Kind, min: Double? = nil, max: Double? = nil, decrease: Double? = nil) -> MetricPlan {
    MetricPlan(name, kind, min: min, max: max, maxDecreaseFromStable: decrease)
}

@Suite(.serialized) struct PrometheusAnalyzerTests {
    @Test func measuresManyRolloutsWithAConstantNumberOfQueries() async throws {
        try await withBackfilledPrometheus(EstateData.openMetrics) { server in
            let queries = Mutex(0)
            let analyzer = PrometheusAnalyzer(defaultAddress: server.url, http: CurlHTTPClient(), onQuery: { _ in queries.withLock { $0 += 1 } })
            let builtIns = [plan("success-rate", .successRate, min: 99, decrease: 1), plan("latency-p99", .latency(percentile: 99), max: 500)]
            let requests = [
                AnalysisRequest(
                    in: "shop", canary: "checkout-canary", stable: "checkout", window: .minutes(1), metrics: builtIns,
                    needsStable: true),
                AnalysisRequest(
                    in: "payments", canary: "ledger-canary", stable: "ledger", window: .minutes(1), metrics: builtIns,
                    needsStable: false),
                AnalysisRequest(
                    in: "shop", canary: "cart-canary", stable: "cart", window: .minutes(1), metrics: builtIns,
                    needsStable: false),
            ]
            let results = await analyzer.measure(requests, at: EstateData.evaluationTime)
            // Volume, success rate and p99 for all three rollouts: three queries, not nine.
            #expect(queries.withLock { $0 } == 3)

            let checkout = results[0]
            #expect(checkout.requests == 800)  // 4 steps × 200 in one minute
            #expect(checkout.metrics["success-rate"] == MetricSample(.value(50), requests: 800, stableValue: 98))
            // Rank 0.99 × 200 = 198 falls in (100, 250] holding requests 101…200: 100 + 150 × 98/100.
            let p99 = try #require(checkout.metrics["latency-p99"])
            if case .value(let v) = p99.outcome { #expect(abs(v - 247) < 1e-9) } else { Issue.record("p99: \(p99)") }

            #expect(results[1].metrics["success-rate"]?.outcome == .value(0))
            #expect(results[1].requests == 160)
            // No series at all: no data, never a pass.
            #expect(results[2].metrics["success-rate"]?.outcome == .noData)
            #expect(results[2].requests == 0)
        }
    }

    @Test func customQueriesAndTheirFailuresAreReportedPerRollout() async throws {
        try await withBackfilledPrometheus(EstateData.openMetrics) { server in
            let analyzer = PrometheusAnalyzer(defaultAddress: server.url, http: CurlHTTPClient())
            let custom = plan(
                "errors-per-minute",
                .custom(query: #"sum(increase(istio_requests_total{destination_workload_namespace="{{namespace}}",destination_workload="{{workload}}",response_code=~"5.."}[{{interval}}]))"#),
                max: 5)
            let broken = plan("broken", .custom(query: "sum(rate(istio_requests_total[{{interval}}])"), max: 1)
            let request = AnalysisRequest(
                in: "shop", canary: "checkout-canary", stable: "checkout", window: .minutes(1), metrics: [custom, broken],
                needsStable: false)
            let result = try #require(await analyzer.measure([request], at: EstateData.evaluationTime).first)
            #expect(result.metrics["errors-per-minute"]?.outcome == .value(400))
            guard case .providerError(let message)? = result.metrics["broken"]?.outcome else {
                Issue.record("a query Prometheus rejects is a provider error: \(String(describing: result.metrics["broken"]))")
                return
            }
            #expect(message.contains("parse error") || message.contains("bad_data"), "\(message)")
        }
    }

    /// A custom query without its aggregation gives one series per workload (or per pod): that used to read as no
    /// data (Inconclusive for ever, or failed checks with noData: fail); it is an error that says what to change.
    @Test func aCustomQueryThatGivesSeveralSeriesSaysSo() async throws {
        try await withBackfilledPrometheus(EstateData.openMetrics) { server in
            let analyzer = PrometheusAnalyzer(defaultAddress: server.url, http: CurlHTTPClient())
            let perWorkload = plan(
                "errors", .custom(query: #"sum by (destination_workload) (increase(istio_requests_total{destination_workload_namespace="{{namespace}}"}[{{interval}}]))"#),
                max: 5)
            let range = plan("raw", .custom(query: #"istio_requests_total{destination_workload="{{workload}}",response_code="200"}[{{interval}}]"#), max: 5)
            let request = AnalysisRequest(
                in: "shop", canary: "checkout-canary", stable: "checkout", window: .minutes(1), metrics: [perWorkload, range], needsStable: false)
            let result = try #require(await analyzer.measure([request], at: EstateData.evaluationTime).first)
            guard case .providerError(let message)? = result.metrics["errors"]?.outcome else {
                Issue.record("several series: \(String(describing: result.metrics["errors"]))")
                return
            }
            #expect(
                message
                    == "query of metric errors returned 2 series (differing in destination_workload) where one number is needed: aggregate them, e.g. sum(…)")
            guard case .providerError(let rangeMessage)? = result.metrics["raw"]?.outcome else {
                Issue.record("a range vector: \(String(describing: result.metrics["raw"]))")
                return
            }
            #expect(rangeMessage.hasPrefix("query of metric raw returned a range vector where one number is needed"), "\(rangeMessage)")
        }
    }

    @Test func prometheusDownIsAProviderErrorNamingTheServer() async throws {
        let port = try LoopbackPort.free()
        let analyzer = PrometheusAnalyzer(defaultAddress: "http://127.0.0.1:\(port)", http: CurlHTTPClient())
        let request = AnalysisRequest(
            in: "shop", canary: "checkout-canary", stable: "checkout", window: .seconds(30),
            metrics: [plan("success-rate", .successRate, min: 99)], needsStable: false)
        let result = try #require(await analyzer.measure([request], at: Date()).first)
        guard case .providerError(let message)? = result.metrics["success-rate"]?.outcome else {
            Issue.record("expected a provider error, got \(String(describing: result.metrics["success-rate"]))")
            return
        }
        #expect(message.contains("127.0.0.1:\(port)") && message.contains("refused"), "\(message)")
        #expect(result.requests == nil)

        let none = PrometheusAnalyzer(defaultAddress: nil, http: CurlHTTPClient())
        let unconfigured = try #require(await none.measure([request], at: Date()).first)
        guard case .providerError(let why)? = unconfigured.metrics["success-rate"]?.outcome else { return }
        #expect(why.contains("--prometheus"))
    }

    /// A Rollout without metrics is judged on the canary's request volume (and the judge's counts). With Prometheus
    /// down, the result carries why neither was measured, so the interval is a provider error; it used to read as a
    /// canary without traffic (Inconclusive, "unknown requests < minRequests"), never reaching providerErrorLimit.
    @Test func prometheusDownWithoutMetricsKeepsTheErrorOfTheVolumeAndCounts() async throws {
        let port = try LoopbackPort.free()
        let analyzer = PrometheusAnalyzer(defaultAddress: "http://127.0.0.1:\(port)", http: CurlHTTPClient())
        let request = AnalysisRequest(
            in: "shop", canary: "checkout-canary", stable: "checkout", window: .seconds(30), metrics: [], needsStable: false, needsCounts: true)
        let noMetrics = try Rollout(
            metadata: ObjectMeta(name: "checkout", namespace: "shop", generation: 1),
            spec: RolloutSpec(target: TargetSpec(deployment: "checkout"), stages: [StageSpec(weight: 10)])
        ).plan().get().analysis
        let result = try #require(await analyzer.measure([request], at: Date()).first)
        #expect(result.requests == nil)
        #expect(result.requestsError?.contains("127.0.0.1:\(port)") == true, "\(String(describing: result.requestsError))")
        #expect(result.countsError?.contains("127.0.0.1:\(port)") == true, "\(String(describing: result.countsError))")
        #expect(judgeInterval(noMetrics, result).verdict == .error)

        let none = PrometheusAnalyzer(defaultAddress: nil, http: CurlHTTPClient())
        let unconfigured = try #require(await none.measure([request], at: Date()).first)
        #expect(unconfigured.requestsError?.contains("--prometheus") == true)
        #expect(judgeInterval(noMetrics, unconfigured).verdict == .error)
    }

    /// A Prometheus that takes the connection and never answers. The client a Rollout's own address gets has the
    /// controller's timeout (not the transport's 30 s default), and once a query got no answer at all, none of that
    /// server's other queries (success rate, latency, custom, the judge's counts) is sent that interval: its rollouts
    /// get that one error as their provider error.
    @Test func aServerThatNeverAnswersGetsOneQueryWithTheConfiguredTimeout() async throws {
        let silent = try SilentServer()
        defer { silent.close() }
        let http = RecordingHTTPClient(CurlHTTPClient())
        let queries = Mutex<[Bool]>([])
        let analyzer = PrometheusAnalyzer(
            defaultAddress: nil, http: http, requestTimeout: .milliseconds(300), onQuery: { failed in queries.withLock { $0.append(failed) } })
        let metrics = [
            plan("success-rate", .successRate, min: 99), plan("latency-p99", .latency(percentile: 99), max: 500),
            plan("errors", .custom(query: "sum(rate(istio_requests_total{destination_workload=\"{{workload}}\"}[{{interval}}]))"), max: 1),
        ]
        let requests = [
            AnalysisRequest(
                in: "shop", canary: "checkout-canary", stable: "checkout", window: .seconds(30), metrics: metrics, needsStable: true,
                needsCounts: true, prometheus: silent.url),
            // Another window on the same server: still nothing more sent to it.
            AnalysisRequest(
                in: "shop", canary: "cart-canary", stable: "cart", window: .minutes(1), metrics: metrics, needsStable: false,
                prometheus: silent.url),
        ]
        let results = await analyzer.measure(requests, at: Date())
        let sent = http.requests
        #expect(sent.count == 1, "\(sent.map(\.url))")
        #expect(sent.allSatisfy { $0.timeout == .milliseconds(300) }, "\(sent.map { String(describing: $0.timeout) })")
        #expect(queries.withLock { $0 } == [true])
        for result in results {
            #expect(result.requests == nil)
            for metric in metrics {
                guard case .providerError(let message)? = result.metrics[metric.name]?.outcome else {
                    Issue.record("\(metric.name): expected a provider error, got \(String(describing: result.metrics[metric.name]))")
                    continue
                }
                #expect(message.contains(silent.url) && message.contains("timed out"), "\(message)")
            }
            #expect(result.canaryCounts == nil)
        }
    }

    /// Each server's results are handed over when that server has answered: a healthy Prometheus's rollouts get
    /// theirs while another server still hangs (here for as long as the test lets it).
    @Test func aHealthyServersResultsDoNotWaitForAHangingOne() async throws {
        let silent = try SilentServer()
        defer { silent.close() }
        try await withBackfilledPrometheus(EstateData.openMetrics) { server in
            let analyzer = PrometheusAnalyzer(defaultAddress: server.url, http: CurlHTTPClient(), requestTimeout: .seconds(3600))
            let builtIns = [plan("success-rate", .successRate, min: 99)]
            let requests = [
                AnalysisRequest(
                    in: "shop", canary: "checkout-canary", stable: "checkout", window: .minutes(1), metrics: builtIns, needsStable: false,
                    prometheus: silent.url),
                AnalysisRequest(in: "shop", canary: "checkout-canary", stable: "checkout", window: .minutes(1), metrics: builtIns, needsStable: false),
            ]
            let (delivered, sink) = AsyncStream<([Int], [IntervalResult])>.makeStream()
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    await analyzer.measure(requests, at: EstateData.evaluationTime) { indices, results in sink.yield((indices, results)) }
                    sink.finish()
                }
                var first: ([Int], [IntervalResult])?
                for await batch in delivered {
                    first = batch
                    break
                }
                #expect(first?.0 == [1])
                #expect(first?.1.first?.metrics["success-rate"]?.outcome == .value(50))
                // The hanging server's query is abandoned when the measurement is cancelled (the controller stopping).
                group.cancelAll()
            }
        }
    }
}

/// The real transport, noting every request it sends.
final class RecordingHTTPClient: HTTPClient {
    private let inner: any HTTPClient
    private let sent = Mutex<[HTTPRequest]>([])

    init(_ inner: any HTTPClient) { self.inner = inner }

    var requests: [HTTPRequest] { sent.withLock { $0 } }

    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        sent.withLock { $0.append(request) }
        return try await inner.send(request)
    }

    func stream(_ request: HTTPRequest) async throws -> HTTPStreamingResponse {
        sent.withLock { $0.append(request) }
        return try await inner.stream(request)
    }
}
