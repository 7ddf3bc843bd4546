import Foundation
import Testing
import TestSupport

@testable import FledgeReport

/// A rolled-back rollout as the gatherer would describe it: stage 1 at 10 %, the success rate falling below 99,
/// three failed checks, rollback.
enum Fixture {
    static let start = 1_795_700_000.0

    static var rolledBack: RolloutReportData {
        var canary: [ReportPoint] = []
        var stable: [ReportPoint] = []
        for second in stride(from: 2.0, through: 40, by: 1) {
            canary.append(ReportPoint(time: start + second, value: second < 8 ? 99.8 : 95 + (second.truncatingRemainder(dividingBy: 3)) * 0.4))
            stable.append(ReportPoint(time: start + second, value: 99.9))
        }
        // A gap: Prometheus had no samples between 20 s and 26 s.
        canary.removeAll { $0.time > start + 20 && $0.time < start + 26 }
        return RolloutReportData(
            name: "product-service", namespace: "shop", revision: "7f9c2e1a", stableRevision: "a1b2c3d4", phase: "Failed",
            message: "check failed 3 times", stages: [ReportStage(weight: 10, hold: "4s"), ReportStage(weight: 25, hold: "4s", manualApproval: true)],
            analysisInterval: "2s", failureLimit: 3, start: start, end: start + 45,
            weightSteps: [WeightStep(time: start, weight: 0), WeightStep(time: start + 1.5, weight: 10), WeightStep(time: start + 31, weight: 0)],
            metrics: [
                ReportMetric(
                    name: "success-rate", unit: "%", thresholds: [ReportThreshold(.min, 99)], thresholdText: ">= 99", canary: canary, stable: stable,
                    checks: [ReportCheck(time: start + 27, value: 95.2, verdict: "Failed"), ReportCheck(time: start + 29, value: 95.6, verdict: "Failed")],
                    query: "sum(rate(istio_requests_total{destination_workload=\"product-service-canary\"}[2s]))"),
                ReportMetric(name: "latency-p99", unit: "ms", thresholds: [ReportThreshold(.max, 500)], thresholdText: "<= 500",
                             canary: canary.map { ReportPoint(time: $0.time, value: 120) }),
            ],
            markers: [
                DecisionMarker(time: start + 1, kind: .started, reason: "RolloutStarted", message: "revision 7f9c2e1a rolling out"),
                DecisionMarker(time: start + 1.5, kind: .stageAdvanced, reason: "StageStarted", message: "stage 1/2: 10% of traffic on revision 7f9c2e1a"),
                DecisionMarker(time: start + 27, kind: .checkFailed, reason: "AnalysisFailed", message: "check failed (1/3): success-rate=95.2 (>= 99): Failed"),
                DecisionMarker(time: start + 31, kind: .rolledBack, reason: "RollingBack", message: "AnalysisFailed: 3 failed checks"),
                DecisionMarker(time: start + 33, kind: .failed, reason: "RolloutFailed", message: "rolled back"),
            ],
            generatedAt: start + 60)
    }
}

@Suite("Rollout report HTML")
struct ReportRendererTests {
    @Test func drawsEachSeriesItsThresholdAndEveryDecision() {
        let html = ReportRenderer.html(Fixture.rolledBack)
        #expect(html.contains("data-series=\"weight\""))
        #expect(html.contains("class=\"series canary\" data-series=\"canary\" data-metric=\"success-rate\""))
        #expect(html.contains("class=\"series stable\" data-series=\"stable\" data-metric=\"success-rate\""))
        #expect(html.contains("data-series=\"canary\" data-metric=\"latency-p99\""))
        #expect(html.contains("class=\"threshold\" data-metric=\"success-rate\" data-threshold=\"min 99\""))
        #expect(html.contains("class=\"threshold\" data-metric=\"latency-p99\" data-threshold=\"max 500\""))
        #expect(html.contains("class=\"check check-failed\" data-metric=\"success-rate\""))
        for kind in ["started", "stageAdvanced", "checkFailed", "rolledBack", "failed"] {
            #expect(html.contains("<g class=\"marker marker-\(kind)\" data-kind=\"\(kind)\""), "\(kind)")
            #expect(html.contains("<tr class=\"decision marker-\(kind)\""), "\(kind)")
        }
        #expect(!html.contains("data-kind=\"promoted\""))
        #expect(html.contains("phase-bad\">Failed</span>"))
        #expect(html.contains("10% · hold 4s") && html.contains("25% · hold 4s · approval"))
        #expect(!html.contains("series-unavailable"))
    }

    @Test func theCanaryLineBreaksWhereSamplesAreMissing() throws {
        let html = ReportRenderer.html(Fixture.rolledBack)
        let start = try #require(html.range(of: "data-series=\"canary\" data-metric=\"success-rate\" d=\""))
        let d = html[start.upperBound...].prefix { $0 != "\"" }
        #expect(d.filter { $0 == "M" }.count == 2, "\(d)")
        #expect(d.filter { $0 == "L" }.count == Fixture.rolledBack.metrics[0].canary.count - 2)
    }

    @Test func mapsValuesOntoTheAxesItDraws() {
        // The 99 % threshold lies between the plotted 95 % and 100 % values: below the top, above the bottom.
        let scale = ValueScale(values: [95, 99.9, 99], unit: "%")
        #expect(scale.low <= 95 && scale.high >= 99.9 && scale.high <= 100)
        #expect(scale.ticks.first == scale.low && scale.ticks.last == scale.high)
        let axis = TimeAxis(start: 100, end: 200)
        #expect(axis.x(100) == ReportRenderer.left)
        #expect(axis.x(200) == ReportRenderer.left + ReportRenderer.plotWidth)
        #expect(axis.x(50) == ReportRenderer.left, "times outside the range are clamped")
        #expect(axis.ticks == stride(from: 100.0, through: 200, by: 10).map { $0 })
    }

    @Test func escapesNamesAndMessages() {
        var data = Fixture.rolledBack
        data.name = "a<b>&\"c'"
        data.message = "<script>alert(1)</script>"
        data.markers[2].message = "value </td><img src=x onerror=alert(1)> & more"
        data.metrics[0].name = "rate\"><svg onload=alert(1)>"
        data.notes = ["note <b>bold</b>"]
        let html = ReportRenderer.html(data)
        #expect(!html.contains("<script"))
        #expect(!html.contains("<img"))
        #expect(!html.contains("<b>bold"))
        #expect(!html.contains("\"><svg onload"))
        #expect(html.contains("a&lt;b&gt;&amp;&quot;c&#39;"))
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        #expect(html.contains("value &lt;/td&gt;&lt;img src=x onerror=alert(1)&gt; &amp; more"))
        #expect(HTMLText.escape("tab\tline\u{1}end") == "tab\tline\u{FFFD}end")
    }

    @Test func isSelfContainedAndDeterministic() {
        let html = ReportRenderer.html(Fixture.rolledBack)
        #expect(html == ReportRenderer.html(Fixture.rolledBack))
        for forbidden in ["<script", "<link", "@import", "src=", "url(http", "@font-face", "https://"] {
            #expect(!html.contains(forbidden), "\(forbidden)")
        }
        // The only URL is the SVG namespace, which browsers never fetch.
        #expect(html.components(separatedBy: "http://").count - 1 == html.components(separatedBy: "http://www.w3.org/2000/svg").count - 1)
    }

    @Test func saysWhySeriesAreMissingAndStillShowsTheJudgedValues() {
        var data = Fixture.rolledBack
        data.seriesUnavailable = "no --prometheus was given"
        for index in data.metrics.indices {
            data.metrics[index].canary = []
            data.metrics[index].stable = []
        }
        let html = ReportRenderer.html(data)
        #expect(html.contains("id=\"series-unavailable\""))
        #expect(html.contains("no --prometheus was given"))
        #expect(!html.contains("data-series=\"canary\""))
        #expect(html.contains("class=\"check check-failed\" data-metric=\"success-rate\""))
        #expect(html.contains("class=\"threshold\" data-metric=\"success-rate\""))
        #expect(html.contains("no values to show"), "latency-p99 has neither series nor checks")
        #expect(html.contains("data-series=\"weight\""))
    }

    @Test func formatsNumbersAndTimesTheSameEverywhere() {
        #expect(NumberText.format(99.256) == "99.26")
        #expect(NumberText.format(480) == "480")
        #expect(NumberText.format(-0.5) == "-0.5")
        #expect(NumberText.format(-0.001) == "0")
        #expect(NumberText.format(0.05) == "0.05")
        #expect(NumberText.format(.nan) == "NaN")
        #expect(NumberText.coordinate(12.349) == "12.3")
        #expect(NumberText.elapsed(97) == "1:37")
        #expect(NumberText.elapsed(3725) == "1:02:05")
        #expect(NumberText.duration(97) == "1m 37s")
        #expect(NumberText.utc(1_795_701_720) == "2026-11-26 14:02:00 UTC")
        #expect(NumberText.utc(0) == "1970-01-01 00:00:00 UTC")
    }

    @Test func chromiumRendersTheReport() async throws {
        let directory = NSTemporaryDirectory() + "fledge-report-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let htmlFile = directory + "/report.html"
        try Data(ReportRenderer.html(Fixture.rolledBack).utf8).write(to: URL(fileURLWithPath: htmlFile))
        let png = try await Chromium.screenshot(htmlFile: htmlFile, pngFile: directory + "/report.png")
        #expect(Chromium.isPNG(png, width: 1200, height: 900), "\(png.prefix(24))")
        // A blank page compresses to a few kilobytes; the charts and the table make it much larger.
        #expect(png.count > 20_000, "\(png.count) bytes")
        if let keep = ProcessInfo.processInfo.environment["FLEDGE_REPORT_SCREENSHOT"] {
            try? FileManager.default.removeItem(atPath: keep)
            try FileManager.default.copyItem(atPath: directory + "/report.png", toPath: keep)
        }
    }
}
