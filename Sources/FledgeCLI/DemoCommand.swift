import ArgumentParser
import FledgeHTTP
import FledgePrometheus
import LocalPrometheus
import UnixSignals

/// `fledge demo`: Fledge's analysis on a real Prometheus, with no cluster.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Start a real Prometheus loaded with sample Istio traffic and show what Fledge measures.",
        discussion: """
            Backfills one hour of product-service traffic (stable v1 healthy, canary v2 with
            5 % errors and a slow tail) with promtool, starts prometheus on a free loopback
            port, runs `fledge query` for both workloads, and stops Prometheus again.
            Needs Debian's prometheus package (./scripts/setup.sh installs it).
            """
    )

    @Flag(help: "Keep Prometheus running until interrupted, to try `fledge query` by hand.")
    var keep = false

    func run() async throws {
        let server = try PrometheusServer()
        defer { server.stop() }
        print("Backfilling sample Istio traffic for shop/product-service…")
        try PrometheusServer.backfill(openMetrics: ProductServiceSample.openMetrics, into: server.dataDirectory)
        try await server.start()
        print("Prometheus is ready at \(server.url)\n")

        let client = PrometheusClient(baseURL: server.url, http: CurlHTTPClient())
        let at = Double(ProductServiceSample.evaluationTime)
        var rows: [WorkloadMetrics] = []
        for workload in ["product-service", "product-service-canary", "product-service-missing"] {
            rows.append(try await client.workloadMetrics(namespace: "shop", workload: workload, window: "1m", at: at))
        }
        print(QueryCommand.table(rows))
        let time = PrometheusTime.format(at)
        print("""

            The canary answers 5 % of its requests with 503 and its p99 is far above stable's:
            a rollout with success-rate ≥ 99 and p99 ≤ 500 ms would roll it back.
            "-" means no data: Fledge never counts that as a pass.

            Same numbers by hand:
              fledge query --prometheus \(server.url) -n shop --workload product-service-canary --at \(time) -o json
            """)
        if keep {
            print("\nPrometheus keeps running at \(server.url); press Ctrl-C to stop it.")
            _ = await UnixSignalsSequence(trapping: .sigint, .sigterm).first { _ in true }
        }
    }
}
