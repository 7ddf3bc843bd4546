import ArgumentParser
import FledgeController
import FledgeCore
import FledgeHTTP
import FledgeJSON
import FledgeJudge
import FledgePrometheus
import Foundation
import Logging

/// `fledge analyze ROLLOUT`: the rollout's analysis, once, as the controller would run it, printed; nothing written.
struct AnalyzeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze",
        abstract: "Run a rollout's analysis once, as the controller would, and print every metric against its threshold.",
        discussion: """
            Measures the canary (and stable, where a metric compares with it) over the analysis interval ending now \
            or at --at, with the same batched queries the controller sends, and judges the interval with the \
            Rollout's own thresholds and the statistical judge (continuing from the judge's state in status). \
            Writes nothing: a dry run for tuning thresholds and for post-mortems (--at a time during the rollout).

            Exit status: 0 when the interval passes, 1 when it fails or on an error, 3 when it is inconclusive \
            (no data, too few requests) or the metrics provider erred.
            """)

    @Argument(help: "The Rollout's name.")
    var rollout: String

    @Option(help: ArgumentHelp("Prometheus URL (default: the Rollout's spec.analysis.prometheus.address).", valueName: "url"))
    var prometheus: String?

    /// Credentials and TLS for `--prometheus` only.
    @OptionGroup var prometheusAccess: PrometheusAccessOptions

    @Option(parsing: .unconditional, help: ArgumentHelp("End of the measured window: RFC 3339 or Unix seconds (default: now).", valueName: "time"))
    var at: String?

    @Option(name: [.short, .customLong("output")], help: "Output format: table or json.")
    var output: OutputFormat = .table

    @OptionGroup var kubernetes: KubernetesOptions

    func validate() throws {
        try validateRolloutName(rollout)
        if let at {
            do { _ = try PrometheusTime.parse(at) } catch { throw ValidationError("--at: \(error)") }
        }
        try prometheusAccess.validate(optionalURL: prometheus)
    }

    func run() async throws {
        let cluster = try kubernetes.connect()
        let fetched = try await cluster.rollout(rollout)
        let plan: RolloutPlan
        switch fetched.rollout.plan() {
        case .success(let p): plan = p
        case .failure(let errors):
            throw CLIError("rollout \"\(rollout)\" has an invalid spec: \(errors.issues.map(\.description).joined(separator: "; "))")
        }
        guard let address = prometheus ?? plan.analysis.prometheusAddress else {
            throw CLIError("no Prometheus to ask: pass --prometheus URL (the Rollout names none in spec.analysis.prometheus.address)")
        }
        let time = try at.map { Date(timeIntervalSince1970: try PrometheusTime.parse($0)) } ?? Date()
        var request = AnalysisRequest(rollout: fetched.rollout, plan: plan)
        request.prometheusAddress = address
        // A failed query is shown in the table with its error; the controller's warning log would say it twice.
        var quiet = Logger(label: "fledge.analyze")
        quiet.logLevel = .error
        let analyzer = PrometheusAnalyzer(
            defaultAddress: address, http: CurlHTTPClient(logger: quiet), defaultClient: prometheus.map { prometheusAccess.makeClient(url: $0, logger: quiet) },
            logger: quiet)
        let result = await analyzer.measure([request], at: time)[0]
        let (verdict, metrics, _) = judgeInterval(plan.analysis, result)
        let judged = Self.judge(plan: plan, status: fetched.status, result: result)

        switch output {
        case .json:
            var object: JSONObject = [
                "rollout": .string("\(fetched.namespace)/\(fetched.name)"), "time": .string(Timestamp(time).description),
                "window": .string(plan.analysis.interval.description), "prometheus": .string(address),
                "requests": result.requests.map { .int($0) } ?? .null, "verdict": .string(verdict.rawValue),
                "metrics": try JSONValue(encoding: metrics),
            ]
            if let judged { object["judge"] = judged }
            print(JSONValue.object(object).serializedString(pretty: true))
        case .table:
            print("Rollout \(fetched.namespace)/\(fetched.name): window \(plan.analysis.interval) ending \(Timestamp(time)) at \(address)")
            print("canary \(request.canaryWorkload): \(result.requests.map(String.init) ?? "unknown") requests (minRequests \(plan.analysis.minRequests))")
            var table = Table(headers: ["METRIC", "VALUE", "STABLE", "THRESHOLD", "VERDICT", "WHY"])
            for m in metrics {
                table.rows.append([
                    m.name, m.value.map(Self.number) ?? "-", m.stableValue.map(Self.number) ?? "-", m.threshold, m.verdict.rawValue, m.message ?? "",
                ])
            }
            print(table.render())
            if let judged { print("judge: \(judged["decision"]?.stringValue ?? "?"): \(judged["explanation"]?.stringValue ?? "")") }
            print("interval: \(verdict.rawValue)")
        }
        switch verdict {
        case .passed: return
        case .failed: throw ExitCode(1)
        case .inconclusive, .error: throw ExitCode(3)
        }
    }

    /// The statistical judge on this interval's counts, continuing from the state in status, as the next
    /// controller check would; nil when it does not apply (disabled, no counts, a 100 % stage).
    static func judge(plan: RolloutPlan, status: RolloutStatus, result: IntervalResult) -> JSONValue? {
        guard plan.analysis.judge.enabled, let canary = result.canaryCounts, let stable = result.stableCounts else { return nil }
        let stage = min(status.stage ?? 0, plan.stages.count - 1)
        guard plan.stages[stage].weight < 100 else { return nil }
        let next = stage + 1 < plan.stages.count ? plan.stages[stage + 1].weight : 100
        do {
            let judge = try CanaryJudge(configuration: plan.analysis.judge.configuration)
            let (verdict, _) = try judge.judge(canary: canary, stable: stable, nextWeight: Double(next), state: status.judge ?? judge.initialState())
            var object = try JSONValue(encoding: verdict)
            object["decision"] = .string("\(verdict.decision)")
            return object
        } catch {
            return ["decision": "error", "explanation": .string("\(error)")]
        }
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(format: "%.2f", value)
    }
}
