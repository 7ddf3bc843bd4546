import FledgeCore
import FledgeHTTP
import FledgeMesh
import FledgePrometheus
import FledgeReport
import Foundation
import LocalPrometheus
import Testing
import TestSupport

/// `fledge report` on real parts: a canary with 5 % errors is rolled back by the controller, then the report is
/// gathered the way the CLI does (Rollout, Events, range queries on the real Prometheus) and rendered by Chromium.
@Suite(.serialized) struct ReportEndToEndTests {
    @Test func theReportOfARolledBackCanaryShowsTheSuccessRateCrossingItsThreshold() async throws {
        // Without the judge, the success-rate guardrail fails `failureLimit` (3) checks in a row: the chart then
        // shows several intervals of the canary below its threshold.
        let spec = Stack.spec.applyingMergePatch(["analysis": ["judge": ["enabled": false]]])
        try await withStack(spec: spec, canary: WorkloadBehaviour(errorRate: 0.05)) { stack in
            let world = stack.world
            let prometheus = PrometheusClient(baseURL: stack.prometheus.url, http: CurlHTTPClient())
            // The rollout starts once Prometheus has scraped the mesh, so its whole time range has samples.
            let stableTraffic = #"sum(rate(istio_requests_total{destination_workload="product-service"}[2s]))"#
            for _ in 0..<300 where (try? await prometheus.query(stableTraffic))?.singleValue == nil {
                try await Task.sleep(for: .milliseconds(100))
            }
            _ = stack.startController()
            try await world.trigger(image: EndToEndTests.newImage)
            _ = try await world.waitForPhase("Failed", timeout: .seconds(120))
            let now = Date().timeIntervalSince1970
            let data = try await ReportGatherer(kubernetes: world.client, prometheus: prometheus)
                .gather(rollout: "product-service", namespace: "shop", now: now)

            #expect(data.phase == "Failed")
            #expect(data.seriesUnavailable == nil, "\(data.seriesUnavailable ?? "")")
            #expect(data.stages.map(\.weight) == [10, 25, 50, 100])
            let kinds = data.markers.map(\.kind)
            #expect(kinds.contains(.started) && kinds.contains(.stageAdvanced) && kinds.contains(.rolledBack) && kinds.contains(.failed), "\(kinds)")
            #expect(kinds.filter { $0 == .checkFailed }.count == 3, "\(kinds)")
            // The canary got 10 % of the traffic, then none after the rollback.
            #expect(data.weightSteps.map(\.weight).contains(10), "\(data.weightSteps)")
            #expect(data.weightSteps.last?.weight == 0)

            let successRate = try #require(data.metrics.first { $0.name == "success-rate" })
            #expect(successRate.thresholds == [ReportThreshold(.min, 99)])
            let trafficFrom = try #require(data.weightSteps.first { $0.weight > 0 }?.time)
            let rolledBackAt = try #require(data.markers.first { $0.kind == .rolledBack }?.time)
            let whileServing = successRate.canary.filter { $0.time > trafficFrom && $0.time <= rolledBackAt + 1 }
            #expect(!whileServing.isEmpty, "\(successRate.canary)")
            // 5 % errors: the canary's success rate is below the 99 % threshold once it serves traffic, stable's is not.
            #expect(whileServing.filter { $0.value < 99 }.count >= 3, "\(whileServing)")
            #expect(successRate.checks.filter { $0.verdict == "Failed" && $0.value < 99 }.count == 3, "\(successRate.checks)")
            #expect(successRate.stable.contains { $0.value >= 99 }, "\(successRate.stable)")
            #expect(data.metrics.contains { $0.name == "latency-p99" && !$0.canary.isEmpty })

            let html = ReportRenderer.html(data)
            #expect(html.contains("data-series=\"canary\" data-metric=\"success-rate\""))
            #expect(html.contains("data-threshold=\"min 99\""))
            #expect(html.contains("data-kind=\"rolledBack\""))
            let directory = NSTemporaryDirectory() + "fledge-report-e2e-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try Data(html.utf8).write(to: URL(fileURLWithPath: directory + "/report.html"))
            let png = try await Chromium.screenshot(htmlFile: directory + "/report.html", pngFile: directory + "/report.png")
            #expect(Chromium.isPNG(png, width: 1200, height: 900))
            if let keep = ProcessInfo.processInfo.environment["FLEDGE_REPORT_KEEP"] {
                try? FileManager.default.removeItem(atPath: keep + ".html")
                try? FileManager.default.removeItem(atPath: keep + ".png")
                try FileManager.default.copyItem(atPath: directory + "/report.html", toPath: keep + ".html")
                try FileManager.default.copyItem(atPath: directory + "/report.png", toPath: keep + ".png")
            }

            // Without Prometheus the page says why, and still shows the values the controller judged.
            let offline = try await ReportGatherer(kubernetes: world.client, prometheus: nil, noPrometheusReason: "no --prometheus was given")
                .gather(rollout: "product-service", namespace: "shop", now: now)
            #expect(offline.seriesUnavailable == "no --prometheus was given")
            #expect(offline.markers == data.markers)
            #expect(offline.metrics.allSatisfy { $0.canary.isEmpty })
            #expect(offline.metrics.contains { $0.checks.contains { $0.value < 99 } }, "\(offline.metrics.map(\.checks))")
            // With Prometheus unreachable, the reason names the server.
            let closed = "http://127.0.0.1:\(try LoopbackPort.free())"
            let down = try await ReportGatherer(kubernetes: world.client, prometheus: PrometheusClient(baseURL: closed, http: CurlHTTPClient()))
                .gather(rollout: "product-service", namespace: "shop", now: now)
            #expect(down.seriesUnavailable?.contains("Prometheus at \(closed)") == true, "\(down.seriesUnavailable ?? "nil")")
            #expect(ReportRenderer.html(down).contains("Metric series were not available"))
        }
    }

    @Test func theReportOfAPromotedCanaryShowsEveryStage() async throws {
        try await withStack { stack in
            let world = stack.world
            let prometheus = PrometheusClient(baseURL: stack.prometheus.url, http: CurlHTTPClient())
            _ = stack.startController()
            try await world.trigger(image: EndToEndTests.newImage)
            _ = try await world.waitForPhase("Succeeded", timeout: .seconds(300))
            let data = try await ReportGatherer(kubernetes: world.client, prometheus: prometheus)
                .gather(rollout: "product-service", namespace: "shop", now: Date().timeIntervalSince1970)
            #expect(data.phase == "Succeeded")
            // Each stage's weight in order, then back to 0 once stable runs the new revision.
            var weights: [Int] = []
            for step in data.weightSteps where step.weight != weights.last { weights.append(step.weight) }
            #expect(weights == [0, 10, 25, 50, 100, 0], "\(data.weightSteps)")
            let kinds = data.markers.map(\.kind)
            #expect(kinds.filter { $0 == .stageAdvanced }.count == 4, "\(kinds)")
            #expect(kinds.contains(.promoted) && kinds.contains(.succeeded) && !kinds.contains(.rolledBack), "\(kinds)")
            #expect(!kinds.contains(.checkFailed))
            let successRate = try #require(data.metrics.first { $0.name == "success-rate" })
            #expect(!successRate.canary.isEmpty && successRate.canary.allSatisfy { $0.value >= 99 }, "\(successRate.canary)")

            let html = ReportRenderer.html(data)
            #expect(html.contains("data-kind=\"promoted\"") && html.contains("data-kind=\"succeeded\""))
            #expect(html.contains(">100%</text>"))
            let directory = NSTemporaryDirectory() + "fledge-report-e2e-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try Data(html.utf8).write(to: URL(fileURLWithPath: directory + "/report.html"))
            let png = try await Chromium.screenshot(htmlFile: directory + "/report.html", pngFile: directory + "/report.png")
            #expect(Chromium.isPNG(png, width: 1200, height: 900))
            if let keep = ProcessInfo.processInfo.environment["FLEDGE_REPORT_KEEP"] {
                try? FileManager.default.removeItem(atPath: keep + "-promoted.png")
                try FileManager.default.copyItem(atPath: directory + "/report.png", toPath: keep + "-promoted.png")
            }
        }
    }

    @Test func aMissingRolloutIsAClearError() async throws {
        let world = try await World()
        do {
            _ = try await ReportGatherer(kubernetes: world.client, prometheus: nil).gather(rollout: "nope", namespace: "shop", now: 0)
            Issue.record("a report of a missing rollout")
        } catch {
            #expect(error.message.contains("rollout \"nope\" not found in namespace \"shop\""), "\(error.message)")
        }
        await world.stop()
    }
}
