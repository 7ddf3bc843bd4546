import FledgeJSON
import FledgeSandbox
import Foundation
import LocalPrometheus
import Testing
import TestSupport

/// `fledge analyze` against the sandbox and a real Prometheus holding hand-made Istio traffic.
@Suite(.serialized) struct AnalyzeCommandTests {
    static let start = 1_767_225_600
    static let at = String(start + 20 * 60 + 7)

    /// Per 15 s: stable serves 400 OK under 100 ms; the canary 95 OK under 100 ms and 5 errors in (100, 250] ms.
    static var traffic: String {
        let service = "product-service.shop.svc.cluster.local"
        return IstioOpenMetrics.render(
            [
                IstioWorkloadTraffic(
                    namespace: "shop", workload: "product-service", version: "v1", service: service,
                    classes: [.init(responseCode: 200, cumulativeBuckets: [(50, 300), (100, 400)], latencySumMs: 400 * 40)]),
                IstioWorkloadTraffic(
                    namespace: "shop", workload: "product-service-canary", version: "v2", service: service,
                    classes: [
                        .init(responseCode: 200, cumulativeBuckets: [(50, 60), (100, 95)], latencySumMs: 95 * 50),
                        .init(responseCode: 503, cumulativeBuckets: [(100, 0), (250, 5)], latencySumMs: 5 * 200),
                    ]),
            ], start: start, step: 15, steps: 160)
    }

    @Test func printsEveryMetricAgainstItsThresholdAndWritesNothing() async throws {
        try await withBackfilledPrometheus(Self.traffic) { prometheus in
            try await CLISandbox.with { sandbox in
                try await sandbox.changeSpec { $0[path: ["analysis", "interval"]] = "1m" }
                let before = try await sandbox.rollout()
                let result = try await sandbox.run(["analyze", "product-service", "--prometheus", prometheus.url, "--at", Self.at, "-o", "json"])
                #expect(result.status == 1, "a 95 % success rate fails min 99: \(result)")
                let json = try JSONValue(parsing: result.out)
                #expect(json["verdict"] == "Failed")
                #expect(json["requests"]?.intValue == 400)  // 4 × 100 canary requests in one minute
                let metrics = json["metrics"]?.arrayValue ?? []
                let success = try #require(metrics.first { $0["name"] == "success-rate" })
                #expect(success["value"]?.doubleValue.map { abs($0 - 95) < 1e-9 } == true, "\(success)")
                #expect(success["verdict"] == "Failed" && success["threshold"] == ">= 99")
                let p99 = try #require(metrics.first { $0["name"] == "latency-p99" })
                #expect(p99["verdict"] == "Passed", "\(p99)")
                // The judge sees the counts of both sides.
                #expect(json["judge"]?["errors"]?["canary"]?["requests"]?.doubleValue == 400, "\(json["judge"] ?? .null)")
                // A dry run: the Rollout is untouched.
                #expect(try await sandbox.rollout() == before)

                let table = try await sandbox.run(["analyze", "product-service", "--prometheus", prometheus.url, "--at", Self.at])
                #expect(table.out.contains("success-rate") && table.out.contains("95") && table.out.contains(">= 99") && table.out.contains("Failed"), "\(table)")
                #expect(table.out.contains("interval: Failed"))
            }
        }
    }

    /// `--prometheus-user` and `--prometheus-header` reach the Prometheus, as with `query` and `report`.
    @Test func authenticatesToPrometheus() async throws {
        let proxy = try AuthenticatingPrometheus(authorization: "Basic ZmxlZGdlOnMzY3JldA==", tenant: "team-a")  // fledge:s3cret
        defer { Task { await proxy.stop() } }
        await proxy.listening()
        try await CLISandbox.with { sandbox in
            let flags = ["--prometheus", proxy.url, "--prometheus-user", "fledge", "--prometheus-header", "X-Scope-OrgID=team-a"]
            let result = try await sandbox.run(["analyze", "product-service"] + flags, environment: ["FLEDGE_PROMETHEUS_PASSWORD": "s3cret"])
            #expect(result.status == 3 && result.out.contains("no data") && !result.out.contains("401"), "no traffic, but no refusal: \(result)")
            #expect(!proxy.seen.isEmpty && proxy.seen.allSatisfy { $0.authorization == "Basic ZmxlZGdlOnMzY3JldA==" && $0.tenant == "team-a" })
            let refused = try await sandbox.run(["analyze", "product-service"] + flags, environment: ["FLEDGE_PROMETHEUS_PASSWORD": "wrong"])
            #expect(refused.status == 3 && refused.out.contains("401"), "\(refused)")
        }
    }

    @Test func noDataIsInconclusiveAndProblemsAreOneLine() async throws {
        try await withBackfilledPrometheus(Self.traffic) { prometheus in
            try await CLISandbox.with { sandbox in
                try await sandbox.changeSpec { $0[path: ["analysis", "interval"]] = "1m" }
                // Before the traffic began: no series at all.
                let early = try await sandbox.run(["analyze", "product-service", "--prometheus", prometheus.url, "--at", String(Self.start - 3600)])
                #expect(early.status == 3, "\(early)")
                #expect(early.out.contains("Inconclusive") && early.out.contains("no data"), "\(early)")

                let port = try LoopbackPort.free()
                let down = try await sandbox.run(["analyze", "product-service", "--prometheus", "http://127.0.0.1:\(port)"])
                #expect(down.status == 3, "\(down)")
                #expect(down.out.contains("Error") && down.out.contains("refused"), "\(down)")
                // Said once, in the table; no warning log lines around it.
                #expect(!down.err.contains("warning"), "\(down)")

                let nowhere = try await sandbox.run(["analyze", "product-service"])
                #expect(nowhere.status != 0 && nowhere.err.contains("--prometheus"), "\(nowhere)")
                let missing = try await sandbox.run(["analyze", "nope", "--prometheus", prometheus.url])
                #expect(missing.status == 1 && missing.err.contains("\"nope\" not found"), "\(missing)")
            }
        }
    }
}
