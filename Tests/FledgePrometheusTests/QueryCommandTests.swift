@testable import FledgeCLI
import FledgePrometheus
import Foundation
import Testing

@Suite("fledge query")
struct QueryCommandTests {
    @Test func jsonHasExactlyTheDocumentedKeysInOrder() {
        let metrics = WorkloadMetrics(namespace: "shop", workload: "product-service-canary", window: "1m", successRate: 95.83, latencyP99Ms: 2206.98, requests: 840)
        #expect(QueryCommand.json(metrics).serializedString()
            == #"{"namespace":"shop","workload":"product-service-canary","window":"1m","successRate":95.83,"latencyP99Ms":2206.98,"requests":840}"#)
        let empty = WorkloadMetrics(namespace: "shop", workload: "x", window: "5m", successRate: nil, latencyP99Ms: nil, requests: nil)
        #expect(QueryCommand.json(empty).serializedString()
            == #"{"namespace":"shop","workload":"x","window":"5m","successRate":null,"latencyP99Ms":null,"requests":null}"#)
    }

    @Test func tableShowsDashesForNoData() {
        let table = QueryCommand.table([WorkloadMetrics(namespace: "shop", workload: "x", window: "1m", successRate: nil, latencyP99Ms: 12.3456, requests: 0)])
        #expect(table == """
            NAMESPACE  WORKLOAD  WINDOW  SUCCESS RATE  P99 LATENCY  REQUESTS
            shop       x         1m      -             12.35 ms     0
            """)
    }

    /// increase() extrapolates, so the count comes fractional (11897.91): the table shows whole requests, JSON the value.
    /// --at past now got "no data" and nothing else: a mistyped year read as a workload without traffic.
    @Test func aTimeInTheFutureIsSaid() {
        let now = Date(timeIntervalSince1970: 1_795_701_720)  // 2026-11-26T14:02:00Z
        #expect(QueryCommand.futureWarning(1_795_701_720 + 30, now: now) == nil)
        #expect(
            QueryCommand.futureWarning(1_893_456_000, now: now)
                == "warning: --at 2030-01-01T00:00:00Z is in the future (now 2026-11-26T14:02:00Z): Prometheus has no data there yet")
    }

    @Test func tableShowsWholeRequests() {
        let metrics = WorkloadMetrics(namespace: "shop", workload: "x", window: "1m", successRate: 100, latencyP99Ms: 98.86, requests: 11897.91)
        #expect(QueryCommand.table([metrics]).hasSuffix("100%          98.86 ms     11898"), "\(QueryCommand.table([metrics]))")
        #expect(QueryCommand.json(metrics)["requests"] == .double(11897.91))
    }

    @Test(arguments: [
        (["--prometheus", "localhost:9090", "-n", "shop", "--workload", "w"], "--prometheus"),
        (["--prometheus", "http://p", "-n", "shop", "--workload", "w", "--window", "1 minute"], "--window"),
        // Prometheus refuses a zero range ("duration must be greater than 0"): a usage error, not a query error.
        (["--prometheus", "http://p", "-n", "shop", "--workload", "w", "--window", "0s"], "--window: 0s is no time at all"),
        (["--prometheus", "http://p", "-n", "shop", "--workload", "w", "--window", "0m0s"], "--window: 0m0s is no time at all"),
        (["--prometheus", "http://p", "-n", "shop", "--workload", "w", "--at", "noon"], "--at"),
        (["--prometheus", "http://p", "-n", "shop", "--workload", "w", "--reporter", "mesh"], "--reporter"),
        (["--prometheus", "http://p", "-n", "shop", "--workload", "w", "-o", "yaml"], "yaml"),
        (["--prometheus", "http://p", "-n", "shop"], "--workload"),
        (["--prometheus", "http://p", "-n", "shop", "--workload", "w", "--prometheus-header", "novalue"], "--prometheus-header"),
    ])
    func badFlagsNameTheFlag(arguments: [String], expected: String) {
        #expect {
            _ = try QueryCommand.parse(arguments)
        } throws: { error in
            QueryCommand.message(for: error).contains(expected)
        }
    }

    @Test func goodFlagsParse() throws {
        let command = try QueryCommand.parse(["--prometheus", "http://127.0.0.1:9090", "-n", "shop", "--workload", "w", "--at", "2026-11-26T14:02:00Z", "-o", "json"])
        #expect(command.output == .json)
        #expect(command.window == "1m")
        #expect(command.reporter == "destination")
    }
}
