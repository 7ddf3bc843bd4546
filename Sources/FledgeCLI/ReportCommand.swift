import ArgumentParser
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
            metric over the rollout's time range with the controller's own PromQL (authenticating with --prometheus-token, \
            or --prometheus-user and FLEDGE_PROMETHEUS_PASSWORD, and --prometheus-header, as `fledge query` does). Without Prometheus the page still \
            shows the weights, the decisions and the values the controller judged, and says why the series are missing.

            The file needs no network: inline CSS and SVG, no scripts, no web fonts.
            """)

    @Argument(help: "The Rollout's name.")
    var rollout: String

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("Where to write the HTML; - writes it to stdout.", valueName: "file"))
    var output: String = "report.html"

    @Option(name: .customLong("prometheus"), help: ArgumentHelp("Prometheus base URL, e.g. http://127.0.0.1:9090, for the metric series.", valueName: "url"))
    var prometheusURL: String?

    @OptionGroup var prometheus: PrometheusAccessOptions

    @OptionGroup var kubernetes: KubernetesOptions

    func validate() throws {
        try validateRolloutName(rollout)
        if output.isEmpty { throw ValidationError("--output: must not be empty") }
        if output != "-", let problem = OutputFile.problem(output) { throw ValidationError("--output: \(problem)") }
        try prometheus.validate(optionalURL: prometheusURL)
    }

    func run() async throws {
        let cluster = try kubernetes.connect()
        // A missing Rollout, refused credentials or an unreachable server, said as every other command says them.
        _ = try await cluster.rollout(rollout)
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
        // "-": the page on stdout (to pipe it on), and what would be printed there goes to stderr. It made a file named -.
        let toStdout = output == "-"
        if toStdout {
            FileHandle.standardOutput.write(Data(html.utf8))
        } else {
            try OutputFile.write(Data(html.utf8), to: output)
        }
        if let reason = data.seriesUnavailable {
            StandardError.write("warning: metric series not available: \(reason)")
        }
        let summary = "rollout \(data.namespace)/\(data.name) (\(data.phase)), \(data.metrics.count) metrics, \(data.markers.count) decisions"
        if toStdout { StandardError.write("wrote the page to stdout: \(summary)") } else { print("wrote \(output): \(summary)") }
    }

    func makePrometheusClient() -> PrometheusClient? {
        prometheusURL.map { prometheus.makeClient(url: $0) }
    }
}
