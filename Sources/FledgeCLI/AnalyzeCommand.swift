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
            Rollout's own thresholds and the statistical judge. The judge continues from its state in status while \
            the rollout is in flight and the window ends at or after its last interval; otherwise (an ended rollout, \
            an earlier --at) it starts afresh and says so, since that state holds evidence from outside the window. \
            Writes nothing: a dry run for tuning thresholds and for post-mortems (--at a time during the rollout).

            The interval's verdict combines the checks and the judge exactly as the controller does: a judge \
            rollback makes it Failed, a judge that cannot judge the counts Error (unless a check failed), and a judge \
            hold Inconclusive while the checks pass and the judge has not yet accepted the stage.

            Exit status:
              0  passed
              1  failed: a check failed or the judge rolls back
                 (also when the command itself fails)
              3  inconclusive: no data, too few requests, or the judge holds;
                 or error: the metrics provider failed or the judge rejected the counts
              \(usageErrorExit)
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
        if at != nil, let warning = QueryCommand.futureWarning(time.timeIntervalSince1970, now: Date()) { StandardError.write(warning) }
        var request = AnalysisRequest(rollout: fetched.rollout, plan: plan)
        request.prometheusAddress = address
        // A failed query is shown in the table with its error; the controller's warning log would say it twice.
        var quiet = Logger(label: "fledge.analyze")
        quiet.logLevel = .error
        let analyzer = PrometheusAnalyzer(
            defaultAddress: address, http: CurlHTTPClient(logger: quiet), defaultClient: prometheus.map { prometheusAccess.makeClient(url: $0, logger: quiet) },
            requestTimeout: prometheusAccess.requestTimeout, logger: quiet)
        let result = await analyzer.measure([request], at: time)[0]
        let (judgeStatus, freshJudge) = Self.judgeStart(fetched.status, at: time)
        let judgement = judgeInterval(plan, status: judgeStatus, result: result)
        let verdict = judgement.verdict
        let metrics = judgement.checkResults
        let judged = Self.judge(judgement)

        switch output {
        case .json:
            var object: JSONObject = [
                "rollout": .string("\(fetched.namespace)/\(fetched.name)"), "time": .string(Timestamp(time).description),
                "window": .string(plan.analysis.interval.description), "prometheus": .string(address),
                "requests": result.requests.map { .int($0) } ?? .null, "verdict": .string(verdict.rawValue),
                "checks": .string(judgement.checks.rawValue), "metrics": try JSONValue(encoding: metrics),
            ]
            if var judged {
                judged["continued"] = .bool(freshJudge == nil)
                object["judge"] = judged
            }
            print(JSONValue.object(object).serializedString(pretty: true))
        case .table:
            print("Rollout \(fetched.namespace)/\(fetched.name): window \(plan.analysis.interval) ending \(Timestamp(time)) at \(address)")
            print("canary \(request.canaryWorkload): \(result.requests.map(String.init) ?? "unknown") requests (minRequests \(plan.analysis.minRequests))")
            print(Self.table(metrics, plan: plan))
            if let judged {
                if let freshJudge { print("judge: from a fresh start, \(freshJudge)") }
                print("judge: \(judged["decision"]?.stringValue ?? "?"): \(judged["explanation"]?.stringValue ?? "")")
            }
            print("interval: \(verdict.rawValue)\(Self.because(judgement))")
        }
        switch verdict {
        case .passed: return
        case .failed: throw ExitCode(1)
        case .inconclusive, .error: throw ExitCode(3)
        }
    }

    /// The status the judge continues from: the rollout's own while this window follows its last interval (in
    /// flight, the window ending at or after `lastAnalysisAt`). Otherwise the judge starts afresh, and the reason is
    /// returned: the state in status holds evidence from after the window (a post-mortem `--at`) or from a rollout
    /// that has ended, and carrying it judged any window by it (a Failed rollout's window with no data "rolled back").
    static func judgeStart(_ status: RolloutStatus, at time: Date) -> (RolloutStatus, fresh: String?) {
        guard status.judge != nil else { return (status, nil) }
        let why: String
        if status.phase.isIdle {
            why = "as the rollout has ended (\(status.phase.rawValue)): its judge state is that rollout's"
        } else if let last = status.lastAnalysisAt, Timestamp(time) < last {
            why = "as the window ends before the rollout's last interval (\(last)): its judge state holds evidence from after it"
        } else {
            return (status, nil)
        }
        var fresh = status
        fresh.judge = nil
        fresh.judgeAcceptedStage = nil
        return (fresh, why)
    }

    /// The judge's verdict for output, with its `decision` (rollback, advance, hold) as a string, or
    /// `{decision: error, explanation}` when it rejected the counts; nil when it does not apply (disabled, no counts,
    /// a 100 % stage).
    static func judge(_ judgement: IntervalJudgement) -> JSONValue? {
        switch judgement.judge {
        case nil: return nil
        case .rejected(let error)?: return ["decision": "error", "explanation": .string("\(error)")]
        case .notCompared(let message, _)?: return ["decision": "hold", "explanation": .string(message)]
        case .judged(let verdict, _)?:
            guard var object = try? JSONValue(encoding: verdict) else {
                return ["decision": .string("\(verdict.decision)"), "explanation": .string(verdict.explanation)]
            }
            object["decision"] = .string("\(verdict.decision)")
            return object
        }
    }

    /// Why the interval's verdict differs from the checks': ` (checks Passed; the judge holds)`; empty when the judge
    /// did not change it.
    static func because(_ judgement: IntervalJudgement) -> String {
        guard judgement.verdict != judgement.checks else { return "" }
        let judge: String
        switch judgement.judge {
        case .rejected?: judge = "the judge rejected the counts"
        case .notCompared?: judge = "the judge holds and has not accepted this stage"
        case .judged(let verdict, _)?:
            switch verdict.decision {
            case .rollback: judge = "the judge rolls back"
            case .hold: judge = "the judge holds and has not accepted this stage"
            case .advance: judge = "the judge advances"
            }
        case nil: return ""
        }
        return " (checks \(judgement.checks.rawValue); \(judge))"
    }

    /// The checks as `fledge status` shows the last interval's: the same column names and numbers.
    static func table(_ metrics: [MetricResult], plan: RolloutPlan?) -> String {
        var table = Table(headers: ["METRIC", "CANARY", "STABLE", "THRESHOLD", "VERDICT", "NOTE"])
        for m in metrics {
            table.rows.append([
                m.name, m.value.map { StatusView.measured($0, metric: m.name, plan: plan) } ?? "-",
                m.stableValue.map { StatusView.measured($0, metric: m.name, plan: plan) } ?? "-", m.threshold, m.verdict.rawValue,
                m.message ?? "",
            ])
        }
        return table.render()
    }
}
