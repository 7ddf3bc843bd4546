import ArgumentParser
import FledgeHTTP
import FledgePrometheus
import FledgeReport
import Foundation

/// `fledge report ROLLOUT [-o report.html] [--prometheus URL]`: the rollout as a picture.
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write a rollout's timeline as one self-contained HTML page.",
        discussion: """
            The page shows the canary weight and every analysis metric against its threshold over the rollout, with \
            each decision of the controller marked (stage advanced, check failed, paused for approval, promoted, rolled \
            back, aborted) and listed. It reads the Rollout and its Events; with --prometheus it also queries each \
            metric over the rollout's time range with the controller's own PromQL. Without Prometheus the page still \
            shows the weights, the decisions and the values the controller judged, and says why the series are missing.

            The file needs no network: inline CSS and SVG, no scripts, no web fonts.
            """)

    @Argument(help: "The Rollout's name.")
    var rollout: String

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("Where to write the HTML.", valueName: "file"))
    var output: String = "report.html"

    @Option(name: .customLong("prometheus"), help: ArgumentHelp("Prometheus base URL, e.g. http://127.0.0.1:9090, for the metric series.", valueName: "url"))
    var prometheusURL: String?

    @Option(name: .customLong("prometheus-token"), help: ArgumentHelp("Bearer token for Prometheus.", valueName: "token"))
    var prometheusToken: String?

    @Option(name: .customLong("prometheus-ca"), help: ArgumentHelp("CA bundle (PEM file) to verify an HTTPS Prometheus.", valueName: "file"))
    var prometheusCA: String?

    @Option(name: .customLong("prometheus-timeout"), help: ArgumentHelp("Seconds to wait for each query.", valueName: "seconds"))
    var prometheusTimeout: Double = 10

    @OptionGroup var kubernetes: KubernetesOptions

    func validate() throws {
        try validateRolloutName(rollout)
        if output.isEmpty { throw ValidationError("--output: must not be empty") }
        if let prometheusURL, !(prometheusURL.hasPrefix("http://") || prometheusURL.hasPrefix("https://")) {
            throw ValidationError("--prometheus: \"\(prometheusURL)\" is not an http:// or https:// URL")
        }
        if prometheusURL == nil, prometheusToken != nil || prometheusCA != nil {
            throw ValidationError("--prometheus-token and --prometheus-ca need --prometheus")
        }
        guard prometheusTimeout > 0, prometheusTimeout.isFinite else { throw ValidationError("--prometheus-timeout: must be above 0") }
    }

    func run() async throws {
        let cluster = try kubernetes.connect()
        let gatherer = ReportGatherer(
            kubernetes: cluster.client, prometheus: makePrometheusClient(),
            noPrometheusReason: "no --prometheus was given")
        let data: RolloutReportData
        do {
            data = try await gatherer.gather(rollout: rollout, namespace: cluster.namespace, now: Date().timeIntervalSince1970)
        } catch {
            throw CLIError(error.message)
        }
        let html = ReportRenderer.html(data)
        do {
            try Data(html.utf8).write(to: URL(fileURLWithPath: output), options: .atomic)
        } catch {
            throw CLIError("cannot write \(output): \(error.localizedDescription)")
        }
        if let reason = data.seriesUnavailable {
            StandardError.write("warning: metric series not available: \(reason)")
        }
        print("wrote \(output): rollout \(data.namespace)/\(data.name) (\(data.phase)), \(data.metrics.count) metrics, \(data.markers.count) decisions")
    }

    func makePrometheusClient() -> PrometheusClient? {
        guard let prometheusURL else { return nil }
        var configuration = HTTPClientConfiguration(
            connectTimeout: .milliseconds(Int64(min(prometheusTimeout, 5) * 1000)), timeout: .milliseconds(Int64(prometheusTimeout * 1000)))
        if let prometheusToken { configuration.authorization = .bearer(prometheusToken) }
        if let prometheusCA { configuration.tls.certificateAuthority = .file(prometheusCA) }
        return PrometheusClient(baseURL: prometheusURL, http: CurlHTTPClient(configuration: configuration))
    }
}
