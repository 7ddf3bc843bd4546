import ArgumentParser
import FledgeController
import FledgeCore
import FledgeHTTP
import FledgePrometheus
import Foundation
import LocalPrometheus
import Synchronization

/// One measurement (an analysis tick) over rollouts on a healthy Prometheus and rollouts whose own Prometheus takes
/// connections and never answers: how long the healthy ones wait for their results, how long the hanging ones wait
/// for their provider error, and how many queries the hanging server is sent. The baseline, in the same run, is
/// the serial path: every query of the hanging server sent one after another, each waiting the whole timeout,
/// before the healthy server is asked.
struct HangingPrometheusBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hanging-prometheus",
        abstract: "An analysis tick with one Prometheus that never answers beside a healthy one: when each side gets its results."
    )

    @Option(help: "Rollouts on the healthy Prometheus.")
    var healthy = 100

    @Option(help: "Rollouts on the Prometheus that never answers.")
    var hanging = 10

    @Option(help: "Seconds each query may take (--prometheus-timeout).")
    var timeout: Double = 2

    @Option(help: "Measurements (the median is reported).")
    var rounds = 3

    func validate() throws {
        guard healthy >= 1, hanging >= 1 else { throw ValidationError("--healthy and --hanging must be at least 1") }
        guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be above 0") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
    }

    func run() async throws {
        let prometheus = try PrometheusServer()
        defer { prometheus.stop() }
        try PrometheusServer.backfill(openMetrics: ProductServiceSample.openMetrics, into: prometheus.dataDirectory)
        try await prometheus.start()
        let silent = try SilentServer()
        defer { silent.close() }

        let metrics = [
            MetricPlan("success-rate", .successRate, min: 99), MetricPlan("latency-p99", .latency(percentile: 99), max: 500),
        ]
        func request(_ index: Int, prometheus address: String?) -> AnalysisRequest {
            AnalysisRequest(
                in: "shop", canary: index == 0 ? "product-service-canary" : "canary-\(index)", stable: "product-service", window: .minutes(1),
                metrics: metrics, needsStable: true, needsCounts: true, prometheus: address)
        }
        let requests = (0..<healthy).map { request($0, prometheus: nil) } + (0..<hanging).map { request($0, prometheus: silent.url) }
        let at = Date(timeIntervalSince1970: Double(ProductServiceSample.evaluationTime))
        let requestTimeout = Duration.milliseconds(Int64(timeout * 1000))

        var healthyTimes: [Double] = []
        var hangingTimes: [Double] = []
        var baselineTimes: [Double] = []
        var hangingQueries = 0
        var baselineQueries = 0
        for round in 1...rounds {
            let failed = Mutex(0)
            let analyzer = PrometheusAnalyzer(
                defaultAddress: prometheus.url, http: CurlHTTPClient(), requestTimeout: requestTimeout,
                onQuery: { didFail in if didFail { failed.withLock { $0 += 1 } } })
            let clock = ContinuousClock()
            let start = clock.now
            let arrivals = Mutex<(healthy: Duration?, hanging: Duration?)>((nil, nil))
            await analyzer.measure(requests, at: at) { indices, _ in
                let elapsed = clock.now - start
                arrivals.withLock { times in
                    if indices.contains(0) { times.healthy = elapsed } else { times.hanging = elapsed }
                }
            }
            let (healthyAt, hangingAt) = arrivals.withLock { $0 }
            healthyTimes.append(healthyAt?.seconds ?? .nan)
            hangingTimes.append(hangingAt?.seconds ?? .nan)
            hangingQueries = failed.withLock { $0 }

            // Baseline: the hanging server first, every one of its queries in turn, then the healthy server.
            let serial = PrometheusClient(baseURL: silent.url, http: CurlHTTPClient(), timeout: requestTimeout)
            let queries = [
                "volume", "success rate", "latency p99",
            ]
            let baselineStart = clock.now
            for name in queries { _ = try? await serial.query("vector(1) # \(name)", at: at.timeIntervalSince1970) }
            // The judge's three count queries went out together.
            await withTaskGroup(of: Void.self) { group in
                for name in ["requests", "errors", "buckets"] {
                    group.addTask { _ = try? await serial.query("vector(1) # \(name)", at: at.timeIntervalSince1970) }
                }
            }
            let healthyOnly = PrometheusAnalyzer(defaultAddress: prometheus.url, http: CurlHTTPClient(), requestTimeout: requestTimeout)
            _ = await healthyOnly.measure(Array(requests.prefix(healthy)), at: at)
            baselineTimes.append((clock.now - baselineStart).seconds)
            baselineQueries = queries.count + 3
            print(
                "round \(round): healthy results after \(format(healthyTimes.last!)) s, hanging server's provider error after \(format(hangingTimes.last!)) s; serial baseline \(format(baselineTimes.last!)) s"
            )
        }
        let healthyMedian = median(healthyTimes)
        print("""

            One analysis tick, \(healthy) rollouts on a healthy Prometheus and \(hanging) on one that never answers, timeout \(timeout) s (median of \(rounds)):
              healthy rollouts' results:            \(format(healthyMedian)) s
              hanging rollouts' provider error:     \(format(median(hangingTimes))) s  (\(hangingQueries) query sent to the hanging server)
              baseline, servers one after another:  \(format(median(baselineTimes))) s before the healthy rollouts' results (\(baselineQueries) queries sent to the hanging server)
              the healthy rollouts wait \(String(format: "%.1f", median(baselineTimes) / max(healthyMedian, 1e-6)))× less
            """)
    }
}
