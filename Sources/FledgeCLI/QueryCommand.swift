import ArgumentParser
import FledgeCore
import FledgeJSON
import FledgePrometheus
import Foundation

/// `fledge query`: success rate, p99 latency and request volume of one workload.
struct QueryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Show a workload's success rate, p99 latency and request volume from Prometheus.",
        discussion: """
            Uses the same Istio queries as the controller (istio_requests_total and
            istio_request_duration_milliseconds_bucket, reporter="destination").
            "-" in a table and null in JSON mean no data.
            """
    )

    @OptionGroup var prometheus: PrometheusOptions

    @Option(name: [.short, .long], help: "The workload's namespace.")
    var namespace: String

    @Option(help: "The workload (Deployment) name, as destination_workload.")
    var workload: String

    @Option(help: "Window of the rates, a PromQL duration.")
    var window: String = "1m"

    @Option(parsing: .unconditional, help: "Evaluation time: RFC 3339 (2026-11-26T14:02:00Z) or Unix seconds. Default: now.")
    var at: String?

    @Option(help: "Which Istio proxy reports: destination or source.")
    var reporter: String = "destination"

    @Option(name: [.short, .customLong("output")], help: "Output format: table or json.")
    var output: OutputFormat = .table

    func validate() throws {
        guard PromQLTemplate.isDuration(window) else {
            throw ValidationError("--window: \"\(window)\" is not a PromQL duration such as 30s, 1m or 1h30m")
        }
        guard window.contains(where: { $0 != "0" && $0.isNumber }) else {
            throw ValidationError("--window: \(window) is no time at all; give a window such as 30s, 1m or 1h30m")
        }
        if let at {
            do { _ = try PrometheusTime.parse(at) } catch { throw ValidationError("--at: \(error)") }
        }
        try KubernetesOptions.validateNamespace(namespace)
        guard !workload.isEmpty else { throw ValidationError("--workload: must not be empty") }
        guard ["destination", "source"].contains(reporter) else {
            throw ValidationError("--reporter: \"\(reporter)\" is neither destination nor source")
        }
    }

    func run() async throws {
        let time = try at.map { try PrometheusTime.parse($0) }
        if let time, let warning = Self.futureWarning(time, now: Date()) { StandardError.write(warning) }
        let metrics: WorkloadMetrics
        do {
            metrics = try await prometheus.makeClient().workloadMetrics(
                namespace: namespace, workload: workload, window: window, at: time, reporter: reporter)
        } catch {
            throw CLIError("\(error)")
        }
        switch output {
        case .json: print(Self.json(metrics).serializedString())
        case .table: print(Self.table([metrics]))
        }
    }

    static func json(_ metrics: WorkloadMetrics) -> JSONValue {
        func number(_ value: Double?) -> JSONValue {
            guard let value, value.isFinite else { return .null }
            return .double(value)
        }
        return [
            "namespace": .string(metrics.namespace),
            "workload": .string(metrics.workload),
            "window": .string(metrics.window),
            "successRate": number(metrics.successRate),
            "latencyP99Ms": number(metrics.latencyP99Ms),
            "requests": number(metrics.requests),
        ]
    }

    static func table(_ metrics: [WorkloadMetrics]) -> String {
        var table = Table(headers: ["NAMESPACE", "WORKLOAD", "WINDOW", "SUCCESS RATE", "P99 LATENCY", "REQUESTS"])
        for metrics in metrics {
            table.rows.append([
                metrics.namespace, metrics.workload, metrics.window,
                metrics.successRate.map { "\(decimal($0))%" } ?? "-",
                metrics.latencyP99Ms.map { "\(decimal($0)) ms" } ?? "-",
                // Whole requests: increase() extrapolates to the window's edges, which gives fractions.
                metrics.requests.map { decimal($0.rounded()) } ?? "-",
            ])
        }
        return table.render()
    }

    /// A time past now has no data yet: said, so that a mistyped year does not read as a workload without traffic.
    /// A minute of slack for clocks.
    static func futureWarning(_ seconds: Double, now: Date) -> String? {
        guard seconds > now.timeIntervalSince1970 + 60 else { return nil }
        return "warning: --at \(Timestamp(Date(timeIntervalSince1970: seconds))) is in the future (now \(Timestamp(now))): Prometheus has no data there yet"
    }

    /// Two decimals, without trailing zeros.
    static func decimal(_ value: Double) -> String {
        // Beyond 1e15 there is no fraction to show (and value * 100 may overflow to inf): as Swift writes it.
        guard value.isFinite, abs(value) < 1e15 else { return "\(value)" }
        let rounded = (value * 100).rounded() / 100
        if rounded == rounded.rounded() { return String(Int64(rounded)) }
        var text = "\(rounded)"
        if text.contains("e") { text = "\(value)" }
        return text
    }
}
