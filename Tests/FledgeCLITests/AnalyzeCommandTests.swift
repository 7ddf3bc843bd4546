import FledgeCore
import FledgeJSON
import FledgeJudge
import FledgeSandbox
import Foundation
import LocalPrometheus
import Testing
import TestSupport

@testable import FledgeCLI

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

    /// analyze and status show the same checks: the same column names (VALUE/WHY against CANARY/NOTE), numbers
    /// (94.30 against 94.3) and units, as `fledge query` has them (a bare 1036.53 and 0.97 left the reader to guess).
    @Test func theTableReadsAsStatusShowsTheSameChecks() throws {
        func result(_ name: String, _ value: Double, _ stable: Double?, _ threshold: String) -> MetricResult {
            MetricResult(
                name: name, value: value, stableValue: stable, threshold: threshold, verdict: .failed, message: "m", requests: 191,
                time: Timestamp(seconds: 0))
        }
        let checks = [
            result("success-rate", 94.3, 99.875, ">= 99"), result("latency-p99", 1036.53, nil, "<= 500"), result("judge-latency", 0.97, 0, "e"),
        ]
        var rollout = RolloutViewTests.rolloutJSON(status: ["phase": "Progressing", "observedGeneration": 2])
        let plan = try FetchedRollout(rollout).rollout.plan().get()
        let analyze = AnalyzeCommand.table(checks, plan: plan)
        #expect(analyze.hasPrefix("METRIC         CANARY      STABLE  THRESHOLD  VERDICT  NOTE"), "\(analyze)")
        #expect(analyze.contains("success-rate   94.3%       99.88%  >= 99      Failed   m"), "\(analyze)")
        #expect(analyze.contains("latency-p99    1036.53 ms  -       <= 500     Failed   m"), "\(analyze)")
        #expect(analyze.contains("judge-latency  0.97%       0%      e          Failed   m"), "\(analyze)")
        rollout[path: ["status", "lastAnalysis"]] = try JSONValue(encoding: checks)
        let status = StatusView.render(try FetchedRollout(rollout), events: .success([]), now: Timestamp(seconds: 60))
        #expect(status.contains("METRIC         CANARY      STABLE  THRESHOLD  VERDICT  REQUESTS  NOTE"), "\(status)")
        #expect(status.contains("success-rate   94.3%       99.88%  >= 99      Failed   191       m"), "\(status)")
        #expect(status.contains("latency-p99    1036.53 ms  -       <= 500     Failed   191       m"), "\(status)")
        // A custom metric's number has no unit Fledge could know.
        #expect(StatusView.measured(1.5, metric: "checkout-errors", plan: plan) == "1.5")
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

    /// Per 15 s step from `start`: each workload's OK and 5xx responses, all faster than its first bucket bound.
    static func traffic(_ workloads: [(name: String, ok: Int, errors: Int, bounds: [String])]) -> String {
        func labels(_ name: String, _ code: Int) -> String {
            "reporter=\"destination\",destination_workload=\"\(name)\",destination_workload_namespace=\"shop\",response_code=\"\(code)\""
        }
        var out = "# HELP istio_requests Total requests.\n# TYPE istio_requests counter\n"
        for w in workloads {
            for (code, n) in [(200, w.ok), (503, w.errors)] where n > 0 {
                for i in 0...160 { out += "istio_requests_total{\(labels(w.name, code))} \(n * i) \(start + 15 * i)\n" }
            }
        }
        out += "# HELP istio_request_duration_milliseconds Request duration.\n# TYPE istio_request_duration_milliseconds histogram\n"
        for w in workloads {
            for (code, n) in [(200, w.ok), (503, w.errors)] where n > 0 {
                for i in 0...160 {
                    for le in w.bounds + ["+Inf"] {
                        out += "istio_request_duration_milliseconds_bucket{\(labels(w.name, code)),le=\"\(le)\"} \(n * i) \(start + 15 * i)\n"
                    }
                }
            }
        }
        return out + "# EOF\n"
    }

    /// Checks that a 20 % error rate passes (min 50), so only the judge can fail the interval.
    static func looseChecks(_ spec: inout JSONValue) {
        spec[path: ["analysis", "interval"]] = "1m"
        spec[path: ["analysis", "minRequests"]] = 1
        spec[path: ["analysis", "metrics"]] = [["name": "success-rate", "min": 50], ["name": "latency-p99", "max": 500]]
    }

    @Test func aJudgeRollbackFailsTheIntervalAndExitsOne() async throws {
        // Canary 20 % errors (80 of 400), stable 1 % (16 of 1600): conclusive harm at once.
        let data = Self.traffic([
            ("product-service", ok: 396, errors: 4, bounds: ["50", "100"]), ("product-service-canary", ok: 80, errors: 20, bounds: ["50", "100"]),
        ])
        try await withBackfilledPrometheus(data) { prometheus in
            try await CLISandbox.with { sandbox in
                try await sandbox.changeSpec { Self.looseChecks(&$0) }
                let json = try await sandbox.run(["analyze", "product-service", "--prometheus", prometheus.url, "--at", Self.at, "-o", "json"])
                #expect(json.status == 1, "the controller rolls back on this interval: \(json)")
                let object = try JSONValue(parsing: json.out)
                #expect(object["verdict"] == "Failed" && object["checks"] == "Passed", "\(object)")
                #expect(object["judge"]?["decision"] == "rollback")
                #expect(object["metrics"]?.arrayValue?.allSatisfy { $0["verdict"] == "Passed" } == true)

                let table = try await sandbox.run(["analyze", "product-service", "--prometheus", prometheus.url, "--at", Self.at])
                #expect(table.status == 1, "\(table)")
                #expect(table.out.contains("judge: rollback: Roll back"), "\(table)")
                #expect(table.out.contains("interval: Failed (checks Passed; the judge rolls back)"), "\(table)")
            }
        }
    }

    /// The judge state in status belongs to the rollout's own course. Analysing a Failed rollout's window (or one
    /// before its last interval) with it judged that window by evidence from elsewhere: a harm-conclusive state
    /// "rolled back" a window where canary and stable were the same (and one with no data at all). Now the judge
    /// starts afresh there and says so; in flight and after the last interval it continues as the controller does.
    @Test func theJudgeContinuesFromStatusOnlyWhereTheControllerWould() async throws {
        let same = Self.traffic([
            ("product-service", ok: 400, errors: 0, bounds: ["50", "100"]), ("product-service-canary", ok: 100, errors: 0, bounds: ["50", "100"]),
        ])
        try await withBackfilledPrometheus(same) { prometheus in
            try await CLISandbox.with { sandbox in
                try await sandbox.changeSpec { Self.looseChecks(&$0) }
                let rollout = try await sandbox.rollout()
                let plan = try rollout.plan().get()
                // A state the judge left after conclusive harm: canary 20 % errors against stable's 1 %, three times.
                var status = RolloutStatus()
                for step in 0..<3 {
                    let bad = IntervalResult(
                        time: Timestamp(seconds: Int64(Self.start + 60 * step)), requests: 400, metrics: [:],
                        canaryCounts: JudgeSample(requests: 400, errors: 80), stableCounts: JudgeSample(requests: 1600, errors: 16))
                    guard case .judged(let verdict, let state)? = judgeInterval(plan, status: status, result: bad).judge else {
                        Issue.record("the judge did not judge")
                        return
                    }
                    status.judge = state
                    if step == 2 { #expect(verdict.decision == .rollback) }
                }
                func store(_ phase: Phase, lastAnalysisAt: Int) async throws {
                    status.phase = phase
                    status.stage = 0
                    status.lastAnalysisAt = Timestamp(seconds: Int64(lastAnalysisAt))
                    let encoded = try JSONValue(encoding: status)
                    try await sandbox.server.store.modify(CLISandbox.rollouts, namespace: "shop", name: "product-service") { $0["status"] = encoded }
                }
                let at = Int(Self.at)!

                try await store(.failed, lastAnalysisAt: at - 60)
                let ended = try await sandbox.run(["analyze", "product-service", "--prometheus", prometheus.url, "--at", Self.at])
                #expect(ended.status != 1 && !ended.out.contains("judge: rollback"), "\(ended)")
                #expect(ended.out.contains("judge: from a fresh start, as the rollout has ended (Failed)"), "\(ended)")
                let json = try await sandbox.run(["analyze", "product-service", "--prometheus", prometheus.url, "--at", Self.at, "-o", "json"])
                #expect(try JSONValue(parsing: json.out)["judge"]?["continued"] == false, "\(json)")

                try await store(.progressing, lastAnalysisAt: at + 600)
                let earlier = try await sandbox.run(["analyze", "product-service", "--prometheus", prometheus.url, "--at", Self.at])
                #expect(earlier.status != 1 && earlier.out.contains("as the window ends before the rollout's last interval"), "\(earlier)")

                // In flight, after the last interval: the controller's own course, harm and all.
                try await store(.progressing, lastAnalysisAt: at - 60)
                let current = try await sandbox.run(["analyze", "product-service", "--prometheus", prometheus.url, "--at", Self.at, "-o", "json"])
                let object = try JSONValue(parsing: current.out)
                #expect(object["judge"]?["continued"] == true && object["judge"]?["decision"] == "rollback", "\(current)")
            }
        }
    }

    @Test func aJudgeHoldIsInconclusiveUntilTheJudgeAcceptedTheStage() async throws {
        // 8 canary requests a minute, none failed: the checks pass, the judge has too little to advance.
        let data = Self.traffic([
            ("product-service", ok: 20, errors: 0, bounds: ["50", "100"]), ("product-service-canary", ok: 2, errors: 0, bounds: ["50", "100"]),
        ])
        try await withBackfilledPrometheus(data) { prometheus in
            try await CLISandbox.with { sandbox in
                try await sandbox.changeSpec { Self.looseChecks(&$0) }
                let json = try await sandbox.run(["analyze", "product-service", "--prometheus", prometheus.url, "--at", Self.at, "-o", "json"])
                #expect(json.status == 3, "\(json)")
                let object = try JSONValue(parsing: json.out)
                #expect(object["verdict"] == "Inconclusive" && object["checks"] == "Passed" && object["judge"]?["decision"] == "hold", "\(object)")
                let table = try await sandbox.run(["analyze", "product-service", "--prometheus", prometheus.url, "--at", Self.at])
                #expect(table.status == 3 && table.out.contains("interval: Inconclusive (checks Passed; the judge holds and has not accepted this stage)"), "\(table)")

                // Once the judge has accepted the stage (status says so), its hold no longer holds the interval back.
                try await sandbox.server.store.modify(CLISandbox.rollouts, namespace: "shop", name: "product-service") { object in
                    var status = object["status"] ?? .object([:])
                    status["judgeAcceptedStage"] = 0
                    object["status"] = status
                }
                let accepted = try await sandbox.run(["analyze", "product-service", "--prometheus", prometheus.url, "--at", Self.at])
                #expect(accepted.status == 0 && accepted.out.contains("judge: hold") && accepted.out.contains("interval: Passed\n"), "\(accepted)")
            }
        }
    }

    @Test func aJudgeErrorIsAnErrorAndExitsThree() async throws {
        // The two versions report different latency buckets: the judge cannot compare them.
        let data = Self.traffic([
            ("product-service", ok: 400, errors: 0, bounds: ["50", "100"]), ("product-service-canary", ok: 100, errors: 0, bounds: ["100", "250"]),
        ])
        try await withBackfilledPrometheus(data) { prometheus in
            try await CLISandbox.with { sandbox in
                try await sandbox.changeSpec { Self.looseChecks(&$0) }
                let json = try await sandbox.run(["analyze", "product-service", "--prometheus", prometheus.url, "--at", Self.at, "-o", "json"])
                #expect(json.status == 3, "\(json)")
                let object = try JSONValue(parsing: json.out)
                #expect(object["verdict"] == "Error" && object["checks"] == "Passed" && object["judge"]?["decision"] == "error", "\(object)")
                #expect(object["judge"]?["explanation"]?.stringValue?.hasPrefix("canary.latency.bounds: differ from stable.latency.bounds") == true)
                let table = try await sandbox.run(["analyze", "product-service", "--prometheus", prometheus.url, "--at", Self.at])
                #expect(table.status == 3, "\(table)")
                #expect(table.out.contains("judge: error: canary.latency.bounds"), "\(table)")
                #expect(table.out.contains("interval: Error (checks Passed; the judge rejected the counts)"), "\(table)")
            }
        }
    }

    @Test func helpListsTheExitCodes() async throws {
        try await CLISandbox.with { sandbox in
            let help = try await sandbox.run(["analyze", "--help"])
            #expect(help.out.contains("Exit status:") && help.out.contains("judge rolls back") && help.out.contains("judge rejected the counts"), "\(help)")
        }
    }
}
