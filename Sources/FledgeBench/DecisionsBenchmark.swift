// `fledge-bench decisions`: Fledge's statistical judge against Flagger's fixed-threshold rule,
// on the same simulated request streams.
import ArgumentParser
import FledgeJudge
import Foundation
import Synchronization

struct DecisionsBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decisions",
        abstract: "Simulate canary rollouts and compare Fledge's judge with Flagger's rule (writes Markdown, CSV, SVG).",
        discussion: """
            Every run draws one stream of requests (Poisson arrivals, Bernoulli errors, latencies from a \
            distribution counted into Istio's buckets) and replays it through every policy with the same \
            stages (10 %, 25 %, 50 %, then promotion). Same seed, same numbers.

            The scenarios are issue 8's unless --traffic, --baseline-error-rates, --error-multipliers or --latency \
            choose others. A scenario changes one thing about the canary: for every request rate and baseline error \
            rate, each error multiplier runs with stable's latency (when --latency includes unchanged), and each \
            other latency shape with the canary's errors ×1. The report describes the scenarios it ran and counts its \
            targets over them.
            """)

    @Option(help: "Seed of the random streams.") var seed: UInt64 = 1
    @Option(help: "Simulated rollouts per scenario.") var runs: Int = 1000
    @Option(help: "Folder to write README.md, decisions.csv and decisions.svg into.") var out: String = "docs/decisions"
    @Option(help: "The judge's analysis interval in seconds.") var judgeInterval: Int = 15
    @Option(help: "How long a rollout is followed, in minutes (exposure of a promoted bad canary counts until then).")
    var horizonMinutes: Int = 30
    @Option(
        name: .customLong("traffic"), parsing: .upToNextOption,
        help: ArgumentHelp("Request rates (req/s) to simulate (space- or comma-separated, repeatable).", valueName: "rate"))
    var trafficArguments: [String] = ["1", "10", "100", "1000"]
    @Option(
        parsing: .upToNextOption,
        help: ArgumentHelp(
            "Stable's error rates to simulate, each in (0, 0.5]: 0.001 or 0.1% (space- or comma-separated, repeatable).",
            valueName: "rate"))
    var baselineErrorRates: [String] = ["0.001", "0.01"]
    @Option(
        parsing: .upToNextOption,
        help: ArgumentHelp(
            "Canary error rate ÷ stable's, each ≥ 1 (1 is a good canary; space- or comma-separated, repeatable). They run with stable's latency.",
            valueName: "multiplier"))
    var errorMultipliers: [String] = ["1", "2", "5", "20"]
    @Option(
        parsing: .upToNextOption,
        help: ArgumentHelp(
            "Canary latency shapes: unchanged (the error multipliers run with it), p99+50 (p99 1.5× stable's), heavy-tail (5 % from a Pareto tail); each other than unchanged runs with errors ×1.",
            valueName: "shape"))
    var latency: [String] = ["unchanged", "p99+50", "heavy-tail"]
    @Option(help: "Judge: target chance of rolling back a good canary.") var falseRollbackRate: Double = 0.01
    @Option(help: "Judge: error-rate margin relative to stable.") var errorRatioMargin: Double = 1.5
    @Option(help: "Judge: error-rate margin in absolute terms (0.001 = 0.1 percentage point).")
    var errorAbsoluteMargin: Double = 0.001
    @Option(help: "Judge: margin on the share of requests slower than the latency boundary, relative to stable.")
    var latencyRatioMargin: Double = 1.5

    var judgeConfiguration: JudgeConfiguration {
        JudgeConfiguration(
            falseRollbackRate: falseRollbackRate, errorRateRatioMargin: errorRatioMargin,
            errorRateAbsoluteMargin: errorAbsoluteMargin, latencyTailRatioMargin: latencyRatioMargin)
    }

    /// `--traffic`, parsed (see `validate()`).
    var traffic: [Double] { (try? Self.numbers(trafficArguments, option: "--traffic")) ?? [] }
    /// `--baseline-error-rates`, parsed (see `validate()`).
    var baselineRates: [Double] { (try? Self.rates(baselineErrorRates, option: "--baseline-error-rates")) ?? [] }
    /// `--error-multipliers`, parsed.
    var multipliers: [Double] { (try? Self.numbers(errorMultipliers, option: "--error-multipliers")) ?? [] }
    /// `--latency`, parsed, in the report's order.
    var latencies: [LatencyCase] { (try? Self.latencyCases(latency)) ?? [] }

    var scenarios: [DecisionScenario] {
        DecisionScenario.all(traffic: traffic, baselineErrorRates: baselineRates, errorMultipliers: multipliers, latencies: latencies)
    }

    /// Every value of a list option: each argument may hold several, separated by commas.
    static func words(_ arguments: [String]) -> [String] {
        arguments.flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }.map { $0.trimmingCharacters(in: .whitespaces) }
    }

    static func numbers(_ arguments: [String], option: String, percentAllowed: Bool = false) throws -> [Double] {
        var values: [Double] = []
        for word in words(arguments) {
            let isPercent = percentAllowed && word.hasSuffix("%")
            guard let value = Double(isPercent ? String(word.dropLast()) : word), value.isFinite else {
                throw ValidationError("\(option): \"\(word)\" is not a number")
            }
            let scaled = isPercent ? value / 100 : value
            if !values.contains(scaled) { values.append(scaled) }
        }
        guard !values.isEmpty else { throw ValidationError("\(option) needs one or more values") }
        return values
    }

    static func rates(_ arguments: [String], option: String) throws -> [Double] {
        let values = try numbers(arguments, option: option, percentAllowed: true)
        for value in values where !(value > 0 && value <= 0.5) {
            throw ValidationError("\(option): \(value) is not an error rate in (0, 0.5] (write 0.01 or 1% for 1 %)")
        }
        return values
    }

    static func latencyCases(_ arguments: [String]) throws -> [LatencyCase] {
        var found: Set<String> = []
        for word in words(arguments) {
            guard let shape = LatencyCase(argument: word) else {
                throw ValidationError(
                    "--latency: \"\(word)\" is not a latency shape (one of \(LatencyCase.allCases.map(\.argument).joined(separator: ", ")))")
            }
            found.insert(shape.rawValue)
        }
        guard !found.isEmpty else { throw ValidationError("--latency needs one or more shapes") }
        return LatencyCase.allCases.filter { found.contains($0.rawValue) }
    }

    /// The scenarios in words, for a run that is not issue 8's full set.
    var scenarioNote: String? {
        guard !scenarioFlags.isEmpty || traffic != [1, 10, 100, 1000] else { return nil }
        let all = scenarios
        var parts = ["stable error rates " + baselineRates.map(pct).joined(separator: ", ")]
        if latencies.contains(.unchanged) {
            parts.append("canary errors " + multipliers.map { "×" + num($0) }.joined(separator: ", ") + " with stable's latency")
        }
        let shapes = latencies.filter { $0 != .unchanged }
        if !shapes.isEmpty { parts.append("canary latency " + shapes.map(\.rawValue).joined(separator: ", ") + " with errors ×1") }
        parts.append(traffic.map(num).joined(separator: ", ") + " req/s")
        let good = all.filter(\.isGood).count
        return "Scenarios run: " + parts.joined(separator: "; ")
            + ": \(all.count) \(all.count == 1 ? "scenario" : "scenarios"), \(good) with a good canary and \(all.count - good) with a bad one."
    }

    /// The scenario axes' flags that differ from the defaults, as they reproduce the run.
    var scenarioFlags: [String] {
        var flags: [String] = []
        if baselineRates != DecisionScenario.defaultBaselineErrorRates {
            flags.append("--baseline-error-rates " + baselineRates.map { "\($0)" }.joined(separator: ","))
        }
        if multipliers != DecisionScenario.defaultErrorMultipliers { flags.append("--error-multipliers " + multipliers.map(num).joined(separator: ",")) }
        if latencies != LatencyCase.allCases { flags.append("--latency " + latencies.map(\.argument).joined(separator: ",")) }
        return flags
    }

    /// The flags that differ from the defaults, to print the command that reproduces a report.
    var nonDefaultFlags: String {
        var flags: [String] = []
        if judgeInterval != 15 { flags.append("--judge-interval \(judgeInterval)") }
        if horizonMinutes != 30 { flags.append("--horizon-minutes \(horizonMinutes)") }
        if traffic != [1, 10, 100, 1000] { flags.append("--traffic " + traffic.map(num).joined(separator: " ")) }
        flags += scenarioFlags
        if falseRollbackRate != 0.01 { flags.append("--false-rollback-rate \(falseRollbackRate)") }
        if errorRatioMargin != 1.5 { flags.append("--error-ratio-margin \(errorRatioMargin)") }
        if errorAbsoluteMargin != 0.001 { flags.append("--error-absolute-margin \(errorAbsoluteMargin)") }
        if latencyRatioMargin != 1.5 { flags.append("--latency-ratio-margin \(latencyRatioMargin)") }
        return flags.map { " " + $0 }.joined()
    }

    /// What stops the report being written into `folder` (created with its parents if missing), checked before
    /// the simulation runs: the path or an ancestor is a file, or the nearest existing folder is not writable.
    static func outputFolderProblem(_ folder: String) -> String? {
        guard !folder.isEmpty else { return "must not be empty" }
        let manager = FileManager.default
        var url = URL(fileURLWithPath: folder).standardizedFileURL
        var isFolder: ObjCBool = false
        while !manager.fileExists(atPath: url.path, isDirectory: &isFolder) {
            url.deleteLastPathComponent()
        }
        if !isFolder.boolValue { return "cannot write the report into \(folder): \(url.path) is a file, not a folder" }
        if !manager.isWritableFile(atPath: url.path) { return "cannot write the report into \(folder): the folder \(url.path) is not writable" }
        return nil
    }

    /// The operating system's reason inside a Foundation file error, when it carries one.
    static func reason(_ error: any Error) -> String {
        let error = error as NSError
        if let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return error.localizedDescription
    }

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1, got \(runs)") }
        guard judgeInterval >= 1 else { throw ValidationError("--judge-interval must be at least 1 second, got \(judgeInterval)") }
        guard horizonMinutes >= 1 else { throw ValidationError("--horizon-minutes must be at least 1, got \(horizonMinutes)") }
        // A judge that never looks within the horizon holds every canary, and the report would read as its verdict.
        guard judgeInterval <= horizonMinutes * 60 else {
            throw ValidationError(
                "--judge-interval \(judgeInterval) s is longer than --horizon-minutes \(horizonMinutes) (\(horizonMinutes * 60) s): the judge would never look")
        }
        if let problem = Self.outputFolderProblem(out) { throw ValidationError("--out: \(problem)") }
        for rate in try Self.numbers(trafficArguments, option: "--traffic") where rate <= 0 {
            throw ValidationError("--traffic: \(num(rate)) is not a positive request rate")
        }
        let rates = try Self.rates(baselineErrorRates, option: "--baseline-error-rates")
        let multipliers = try Self.numbers(errorMultipliers, option: "--error-multipliers")
        for multiplier in multipliers where multiplier < 1 {
            throw ValidationError("--error-multipliers: \(num(multiplier)) is below 1 (the canary's error rate ÷ stable's; 1 is a good canary)")
        }
        for multiplier in multipliers {
            for rate in rates where rate * multiplier > 1 {
                throw ValidationError(
                    "--error-multipliers: ×\(num(multiplier)) of the baseline error rate \(rate) is a canary error rate of \(rate * multiplier), above 1")
            }
        }
        let latencies = try Self.latencyCases(latency)
        if !latencies.contains(.unchanged), multipliers != DecisionScenario.defaultErrorMultipliers {
            throw ValidationError("--error-multipliers run with unchanged latency: add unchanged to --latency (now \(latencies.map(\.argument).joined(separator: ",")))")
        }
        do {
            try judgeConfiguration.validate()
        } catch {
            // Named by the option typed, not by the configuration field behind it.
            let options = [
                "falseRollbackRate": "--false-rollback-rate", "errorRateRatioMargin": "--error-ratio-margin",
                "errorRateAbsoluteMargin": "--error-absolute-margin", "latencyTailRatioMargin": "--latency-ratio-margin",
            ]
            throw ValidationError("\(options[error.field] ?? "judge option \(error.field)"): \(error.problem)")
        }
    }

    func run() throws {
        let judge = try CanaryJudge(configuration: judgeConfiguration)
        let policies = [
            DecisionPolicy(name: "Fledge judge", intervalSeconds: judgeInterval, rule: .judge(judge)),
            DecisionPolicy(name: "Flagger 1m/5", intervalSeconds: 60, rule: .flagger(threshold: 5, successRateMin: 99, latencyP99Max: 500)),
            DecisionPolicy(name: "Flagger 30s/3", intervalSeconds: 30, rule: .flagger(threshold: 3, successRateMin: 99, latencyP99Max: 500)),
        ]
        let stages: [Double] = [10, 25, 50]
        let scenarios = self.scenarios
        let horizon = horizonMinutes * 60
        let root = SplitMix64(seed: seed)
        let started = ContinuousClock.now
        // Scenarios are independent and each run has its own random stream, so they can be
        // simulated in parallel without changing a single number.
        let results = Mutex<[Int: Result<[PolicySummary], any Error>]>([:])
        DispatchQueue.concurrentPerform(iterations: scenarios.count) { index in
            let scenario = scenarios[index]
            let streams = root.split(UInt64(index) &* 0x1_0000_0001)
            let outcome = Result {
                try simulate(scenario, policies: policies, stages: stages, runs: runs, seed: streams, horizonSeconds: horizon)
                    .map { PolicySummary($0, horizon: horizon) }
            }
            let count = results.withLock {
                $0[index] = outcome
                return $0.count
            }
            FileHandle.standardError.write(Data("[\(count)/\(scenarios.count)] \(scenario.label)\n".utf8))
        }
        let summaries = try results.withLock { done in try scenarios.indices.map { try done[$0]!.get() } }
        let report = DecisionReport(
            scenarios: scenarios, policies: policies.map(\.name), summaries: summaries, runs: runs, seed: seed,
            judgeInterval: judgeInterval, horizon: horizon, flags: nonDefaultFlags, judge: judgeConfiguration, scenarioNote: scenarioNote)
        let folder = URL(fileURLWithPath: out, isDirectory: true)
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try report.markdown().write(to: folder.appendingPathComponent("README.md"), atomically: true, encoding: .utf8)
            try report.csv().write(to: folder.appendingPathComponent("decisions.csv"), atomically: true, encoding: .utf8)
            try report.svg().write(to: folder.appendingPathComponent("decisions.svg"), atomically: true, encoding: .utf8)
        } catch {
            throw ValidationError("--out: \(Self.outputFolderProblem(out) ?? "cannot write the report into \(out): \(Self.reason(error))")")
        }
        print(report.targetSummary().joined(separator: "\n"))
        print("Wrote \(out)/README.md, decisions.csv, decisions.svg in \(started.duration(to: .now)).")
    }
}

/// One policy's results over the runs of one scenario.
struct PolicySummary: Sendable {
    var runs: Int
    var rolledBack: Int
    var promoted: Int
    /// Median time until the canary stopped getting traffic by a rollback; the horizon when
    /// it did not in at least half of the runs.
    var medianRollback: Int
    /// Median time to promotion; the horizon when it did not promote in at least half.
    var medianPromotion: Int
    var meanExposure: Double
    let horizon: Int

    init(_ results: [RunResult], horizon: Int) {
        self.horizon = horizon
        runs = results.count
        var rollbackTimes: [Int] = [], promotionTimes: [Int] = []
        var rolledBack = 0, promoted = 0
        for result in results {
            switch result.outcome {
            case .rolledBack(let t):
                rolledBack += 1
                rollbackTimes.append(t)
                promotionTimes.append(horizon)
            case .promoted(let t):
                promoted += 1
                promotionTimes.append(t)
                rollbackTimes.append(horizon)
            case .running:
                rollbackTimes.append(horizon)
                promotionTimes.append(horizon)
            }
        }
        self.rolledBack = rolledBack
        self.promoted = promoted
        medianRollback = rollbackTimes.sorted()[(runs - 1) / 2]
        medianPromotion = promotionTimes.sorted()[(runs - 1) / 2]
        meanExposure = results.reduce(0) { $0 + $1.exposure } / Double(runs)
    }

    var held: Int { runs - rolledBack - promoted }
    var rollbackRate: Double { Double(rolledBack) / Double(runs) }
    var promotionRate: Double { Double(promoted) / Double(runs) }
}

/// Formats the results.
struct DecisionReport {
    var scenarios: [DecisionScenario]
    var policies: [String]
    var summaries: [[PolicySummary]]
    var runs: Int
    var seed: UInt64
    var judgeInterval: Int
    var horizon: Int
    var flags: String
    var judge: JudgeConfiguration
    /// The scenarios in words when they are not issue 8's full set (nil for the default run, whose tables say it).
    var scenarioNote: String? = nil

    struct BadCheck {
        var exposureRatio: Double
        var timeRatio: Double
        var met: Bool
    }

    /// Judge (index 0) against a Flagger policy for a bad scenario.
    func badCheck(_ s: [PolicySummary], against flagger: Int) -> BadCheck {
        let exposureRatio = s[flagger].meanExposure > 0 ? s[0].meanExposure / s[flagger].meanExposure : .infinity
        let timeRatio = Double(s[0].medianRollback) / Double(s[flagger].medianRollback)
        // A median at the horizon means "never" for that policy: the judge meets the time target
        // only by actually rolling back, in at most half of Flagger's time.
        let timeMet = s[0].medianRollback < horizon && timeRatio <= 0.5
        return BadCheck(exposureRatio: exposureRatio, timeRatio: timeRatio, met: exposureRatio <= 0.25 && timeMet)
    }

    /// Whether the bad-scenario target is within reach of any policy with the judge's false-rollback rate
    /// (`InformationBound`): `.any` when the bound allows it; `.onlyByAdvancing` when it allows it only if the
    /// bad canary is moved beyond the first stage's weight before it is caught (the judge advances only on
    /// evidence of non-inferiority, so it does not); `.none` when no policy can, even with all traffic on the
    /// canary.
    enum Reach: String { case any = "possible", onlyByAdvancing = "not at 10 %", none = "impossible" }

    func badReach(_ i: Int, against flagger: Int) -> Reach {
        let scenario = scenarios[i], s = summaries[i]
        let needed = InformationBound.requestsToRollBack(scenario, falseRollbackRate: judge.falseRollbackRate)
        // Exposure ≤ 0.25 × Flagger's: the canary may serve at most this many requests on average.
        let byExposure = 0.25 * s[flagger].meanExposure / scenario.excessRate
        // Rollback in ≤ 0.5 × Flagger's median time (the horizon when Flagger never rolls back).
        let seconds = 0.5 * Double(s[flagger].medianRollback)
        if byExposure < needed || scenario.requestsPerSecond * seconds < needed { return .none }
        if scenario.requestsPerSecond * seconds * stagesFirstWeight / 100 < needed { return .onlyByAdvancing }
        return .any
    }

    /// Whether promoting a good canary within Flagger's median time is within reach of any policy with the
    /// judge's false-promotion rate, the evidence gathered at weights up to the last stage's.
    func promoteReachable(_ i: Int, against flagger: Int) -> Bool {
        let needed = InformationBound.requestsToPromote(scenarios[i], judge: judge)
        let seconds = Double(summaries[i][flagger].medianPromotion)
        return scenarios[i].requestsPerSecond * seconds * stagesLastWeight / 100 >= needed
    }

    var stagesFirstWeight: Double { 10 }
    var stagesLastWeight: Double { 50 }

    func promoteMet(_ s: [PolicySummary], against flagger: Int) -> Bool {
        s[0].medianPromotion < horizon && s[0].medianPromotion <= s[flagger].medianPromotion
    }

    var indicesBad: [Int] { scenarios.indices.filter { !scenarios[$0].isGood && scenarios[$0].requestsPerSecond >= 10 } }
    var indicesGood: [Int] { scenarios.indices.filter { scenarios[$0].isGood } }

    func targetSummary() -> [String] {
        var lines: [String] = []
        if indicesBad.isEmpty {
            lines.append("Bad canaries, ≥ 10 req/s: none among these scenarios, so the exposure and time-to-rollback targets were not checked.")
        }
        for flagger in 1..<policies.count where !indicesBad.isEmpty {
            let met = indicesBad.filter { badCheck(summaries[$0], against: flagger).met }
            let missed = indicesBad.filter { !badCheck(summaries[$0], against: flagger).met }
            let impossible = missed.filter { badReach($0, against: flagger) == .none }.count
            let notAtFirst = missed.filter { badReach($0, against: flagger) == .onlyByAdvancing }.count
            var line = "Bad canaries, ≥ 10 req/s: exposure ≤ 0.25× and time to rollback ≤ 0.5× \(policies[flagger]) in \(met.count) of \(indicesBad.count) \(plural(indicesBad.count))"
            if missed.isEmpty {
                line += "."
            } else {
                var reasons: [String] = []
                if impossible > 0 {
                    reasons.append(
                        "\(impossible) \(impossible == 1 ? "is" : "are") impossible for any policy with ≤ \(pct(judge.falseRollbackRate)) false rollbacks")
                }
                if notAtFirst > 0 {
                    reasons.append("\(notAtFirst) \(notAtFirst == 1 ? "is" : "are") possible only by advancing the bad canary past 10 % first")
                }
                line += reasons.isEmpty
                    ? "; the information bound puts none of the \(missed.count) missed out of reach."
                    : "; of the \(missed.count) missed, " + reasons.joined(separator: " and ") + "."
            }
            lines.append(line)
        }
        let goodTraffic = indicesGood.filter { scenarios[$0].requestsPerSecond >= 10 }
        if indicesGood.isEmpty {
            lines.append("Good canaries: none among these scenarios, so the false-rollback and time-to-promote targets were not checked.")
        } else {
            let falseOK = indicesGood.filter { summaries[$0][0].rollbackRate <= 0.01 }.count
            lines.append(
                "Good canaries: false rollbacks ≤ 1 % in \(falseOK) of \(indicesGood.count) \(plural(indicesGood.count)) (worst \(pct(indicesGood.map { summaries[$0][0].rollbackRate }.max() ?? 0))).")
            if goodTraffic.isEmpty { lines.append("Good canaries, ≥ 10 req/s: none among these scenarios, so time to promote was not compared.") }
        }
        for flagger in 1..<policies.count where !goodTraffic.isEmpty {
            let met = goodTraffic.filter { promoteMet(summaries[$0], against: flagger) }.count
            let impossible = goodTraffic.filter { !promoteMet(summaries[$0], against: flagger) && !promoteReachable($0, against: flagger) }.count
            var line = "Good canaries, ≥ 10 req/s: median time to promote no worse than \(policies[flagger]) in \(met) of \(goodTraffic.count) \(plural(goodTraffic.count))"
            if met == goodTraffic.count {
                line += "."
            } else {
                line += impossible == 0
                    ? "; the information bound puts none of the \(goodTraffic.count - met) missed out of reach."
                    : "; of the \(goodTraffic.count - met) missed, \(impossible) \(impossible == 1 ? "is" : "are") impossible for any policy that promotes a canary at the error margin "
                        + "at most \(pct(judge.falsePromotionRate)) of the time."
            }
            lines.append(line)
        }
        let slow = scenarios.indices.filter { scenarios[$0].requestsPerSecond < 10 }
        if !slow.isEmpty {
            let promotedSlow = slow.reduce(0) { $0 + summaries[$1][0].promoted }
            let kinds = slow.allSatisfy { scenarios[$0].isGood } ? "all good" : slow.allSatisfy { !scenarios[$0].isGood } ? "all bad" : "good and bad"
            lines.append("Below 10 req/s the judge promoted \(promotedSlow) of \(slow.count * runs) rollouts (\(kinds)) and held the rest as inconclusive or rolled back.")
        }
        return lines
    }

    func plural(_ count: Int) -> String { count == 1 ? "scenario" : "scenarios" }

    /// Context computed from this run's numbers, so the notes stay true for any seed.
    func readingNotes() -> [String] {
        var notes: [String] = []
        let flaggerFalse = indicesGood.flatMap { i in (1..<policies.count).map { summaries[i][$0].rollbackRate } }
        let judgeFalse = indicesGood.map { summaries[$0][0].rollbackRate }
        if !indicesGood.isEmpty {
            // Why Flagger's rule rolls good canaries back, said for the baseline where this run shows it most: near its
            // 99 % threshold each check is a coin toss; above it (a 5 % baseline) nearly every check fails.
            let worst = indicesGood.max { a, b in
                (1..<policies.count).map { summaries[a][$0].rollbackRate }.max()! < (1..<policies.count).map { summaries[b][$0].rollbackRate }.max()!
            }!
            let baseline = scenarios[worst].baselineErrorRate
            let why: String
            if (flaggerFalse.max() ?? 0) == 0 || baseline < 0.005 {
                why = "."
            } else if baseline <= 0.015 {
                why = ": with a \(num(baseline * 100)) % baseline the 99 % success threshold sits on the good "
                    + "canary's own error rate, so each check is close to a coin toss. Flagger's fast rollbacks of "
                    + "mildly bad canaries at that baseline come from the same trigger."
            } else {
                why = ": with a \(num(baseline * 100)) % baseline a good canary's own success rate, \(num((1 - baseline) * 100)) %, is "
                    + "below the 99 % success threshold, so nearly every check fails. Flagger's rollbacks of bad canaries at "
                    + "that baseline come from the same trigger."
            }
            notes.append(
                "- False rollbacks of good canaries: judge at most \(pct(judgeFalse.max() ?? 0)), Flagger's rule up to "
                    + "\(pct(flaggerFalse.max() ?? 0))" + why)
        }
        notes.append(
            "- The judge's guarantees cost evidence: to roll back with at most \(pct(judge.falseRollbackRate)) false rollbacks, or to show a "
                + "canary within its margins of stable, it needs enough bad requests on both sides. For example, at 10 req/s "
                + "a 10 % stage sends the canary one request a second; at a 0.1 % error rate that is one error "
                + "every ~17 minutes. There the judge holds (and says why) where Flagger promotes on a clean "
                + "success rate, and it rolls back mild degradations later than the targets ask.")
        let missedBad = (1..<policies.count).flatMap { f in indicesBad.filter { !badCheck(summaries[$0], against: f).met }.map { ($0, f) } }
        let beyond = missedBad.filter { badReach($0.0, against: $0.1) != .any }.count
        if !missedBad.isEmpty {
            let goodRollbacks = indicesGood.isEmpty ? "" : " (up to \(pct(flaggerFalse.max() ?? 0)) here)"
            notes.append(
                "- Of the \(missedBad.count) missed bad-canary comparisons, \(beyond) ask for more than the information bound below allows a "
                    + "policy that keeps a bad canary at its first stage (the judge advances only on evidence of non-inferiority): "
                    + "Flagger's rule reaches those times because its fixed threshold also rolls back good canaries\(goodRollbacks), "
                    + "or because it never rolls back at all and the target is then measured against the horizon.")
        }
        let goodTraffic = indicesGood.filter { scenarios[$0].requestsPerSecond >= 10 }
        let missedPromote = (1..<policies.count).flatMap { f in
            goodTraffic.filter { !promoteMet(summaries[$0], against: f) }.map { ($0, f) }
        }
        let reachable = missedPromote.filter { promoteReachable($0.0, against: $0.1) }
        if !reachable.isEmpty {
            let listed = reachable.map { i, f in
                "\(pct(scenarios[i].baselineErrorRate)) at \(num(scenarios[i].requestsPerSecond)) req/s: "
                    + "\(censored(summaries[i][0].medianPromotion)) against \(policies[f])'s \(censored(summaries[i][f].medianPromotion))"
            }
            notes.append(
                "- Of the \(missedPromote.count) missed time-to-promote comparisons, \(reachable.count) are within the information bound ("
                    + listed.joined(separator: "; ") + "). The bound grants exact knowledge of stable's rate and a fixed sample; "
                    + "an anytime-valid test must also bound stable's rate at every look (at a 0.1 % baseline the lower bound sits a third "
                    + "or more below the rate after tens of thousands of requests, which shrinks the margin left to show) and pays "
                    + "log(1/α) however long it runs, so it needs several times the bound's requests. Flagger's rule promotes these "
                    + "canaries on a few clean intervals, and at a 0.1 % baseline a canary with twice the errors just as fast.")
        }
        if scenarios.contains(where: { !$0.isGood }) {
            notes.append(
                "- Promoted bad canaries dominate exposure: Flagger's rule cannot see an error rate below 1 % or a "
                    + "latency change under its 500 ms p99 limit, and promotes those canaries to everyone.")
        }
        return notes
    }

    func markdown() -> String {
        var md = """
            # Decisions: Fledge's judge against Flagger's rule

            Generated by `fledge-bench decisions --seed \(seed) --runs \(runs)\(flags)`. Same seed, same numbers.\(scenarioNote.map { "\n\n" + $0 } ?? "")

            Each run draws one stream of requests and replays it through every policy with the same stages
            (canary weight 10 %, 25 %, 50 %, then promotion): Poisson arrivals at the scenario's rate, each request
            routed to the canary when its routing number is below the policy's current weight, Bernoulli 5xx errors,
            latencies counted into Istio's default histogram buckets. Stable: lognormal latency (median 50 ms,
            σ 0.6, p99 ≈ 202 ms).\(latencyNotes)

            - **Fledge judge** (`FledgeJudge.CanaryJudge`: false-rollback rate \(pct(judge.falseRollbackRate)),
              false-promotion rate \(pct(judge.falsePromotionRate)), error margin ×\(num(judge.errorRateRatioMargin)) or
              +\(num(judge.errorRateAbsoluteMargin * 100)) pp, latency margin ×\(num(judge.latencyTailRatioMargin)) or
              +\(num(judge.latencyTailAbsoluteMargin * 100)) pp on the share of requests slower than the boundary near p99;
              see [../judge.md](../judge.md)), looking every \(judgeInterval) s (a common Prometheus scrape
              interval): it rolls back when harm is conclusive, advances a stage only when it has shown the canary
              acceptable at the next weight, and otherwise holds.
            - **Flagger 1m/5** and **Flagger 30s/3**: Flagger's documented rule: every interval the canary's
              success rate must be ≥ 99 % and its histogram p99 ≤ 500 ms (no data is a failed check); a passed
              check moves one stage on, the 5th (3rd) failed check rolls back.

            Exposure = expected excess bad requests (5xx, or slower than stable's p99) served by the canary; a
            promoted bad canary keeps serving everyone until the \(horizon / 60)-minute horizon. Times are medians
            over the runs; "≥ \(horizon / 60)m" means it did not happen in at least half of them.

            ## Targets

            \(targetSummary().map { "- " + $0 }.joined(separator: "\n"))

            ## Reading the results

            \(readingNotes().joined(separator: "\n"))

            ## Bad canaries

            Rolled back % · median time to rollback · mean exposure. Target (issue 8, ≥ 10 req/s): exposure
            ≤ 0.25× and time to rollback ≤ 0.5× Flagger's; the last columns give judge/Flagger ratios (exposure,
            time), ✓ or ✗, and for a miss whether the target is within reach at all: "impossible" when no policy
            with ≤ \(pct(judge.falseRollbackRate)) false rollbacks can meet it even knowing stable's behaviour exactly and
            sending the canary all traffic; "not at 10 %" when it could only by moving the bad canary past its
            first stage before catching it (see [the bound](#the-information-bound)).

            | scenario | \(policies.joined(separator: " | ")) | vs \(policies[1]) | vs \(policies[2]) |
            |---|\(policies.map { _ in "---|" }.joined())---|---|

            """
        if !scenarios.contains(where: { !$0.isGood }) { md += "| none among these scenarios |\(policies.map { _ in " |" }.joined()) | |\n" }
        for i in scenarios.indices where !scenarios[i].isGood {
            let s = summaries[i]
            let cells = s.map { "\(pct($0.rollbackRate)) · \(censored($0.medianRollback)) · \(num($0.meanExposure))" }
            let checks = (1..<policies.count).map { f -> String in
                let c = badCheck(s, against: f)
                var mark = scenarios[i].requestsPerSecond >= 10 ? (c.met ? " ✓" : " ✗") : ""
                if scenarios[i].requestsPerSecond >= 10, !c.met, badReach(i, against: f) != .any { mark += " (\(badReach(i, against: f).rawValue))" }
                return "\(ratio(c.exposureRatio)), \(ratio(c.timeRatio))\(mark)"
            }
            md += "| \(scenarios[i].label) | \(cells.joined(separator: " | ")) | \(checks.joined(separator: " | ")) |\n"
        }
        md += """

            ## Good canaries

            False rollbacks % · promoted % · median time to promote. Targets: false rollbacks ≤ 1 %, time to promote
            no worse than Flagger's (✓/✗ per Flagger setting, ≥ 10 req/s; "impossible": no policy that promotes a
            canary at the error margin at most \(pct(judge.falsePromotionRate)) of the time can promote within Flagger's
            median time, see below); at 1 req/s the judge holds rather than promoting on thin evidence.

            | scenario | \(policies.joined(separator: " | ")) | false rollbacks ≤ 1 % | promote vs \(policies[1]) | promote vs \(policies[2]) |
            |---|\(policies.map { _ in "---|" }.joined())---|---|---|

            """
        if indicesGood.isEmpty { md += "| none among these scenarios |\(policies.map { _ in " |" }.joined()) | | |\n" }
        for i in indicesGood {
            let s = summaries[i]
            let cells = s.map { "\(pct($0.rollbackRate)) · \(pct($0.promotionRate)) · \(censored($0.medianPromotion))" }
            let fr = s[0].rollbackRate <= 0.01 ? "✓" : "✗"
            let promote = (1..<policies.count).map { f -> String in
                if scenarios[i].requestsPerSecond < 10 { return s[0].promoted == 0 ? "holds ✓" : "promoted \(s[0].promoted) ✗" }
                return promoteMet(s, against: f) ? "✓" : promoteReachable(i, against: f) ? "✗" : "✗ (impossible)"
            }
            md += "| \(scenarios[i].label) | \(cells.joined(separator: " | ")) | \(fr) | \(promote.joined(separator: " | ")) |\n"
        }
        md += """

            ## The information bound

            How many canary requests does *any* policy need? If a policy rolls back a bad canary in at least half
            of the runs but a canary identical to stable in at most α of them, the data it saw must tell the two
            apart by at least d(½ ‖ α) nats of Kullback–Leibler divergence (data-processing inequality; d is the
            binary divergence, 1.61 nats for α = 1 %). Stable's requests look the same either way, so by Wald's
            identity that is E[canary requests] × the divergence per canary request (5xx outcome and latency
            bucket). The exposure target caps the canary's requests at 0.25 × Flagger's exposure ÷ the excess
            per request; the time target at the request rate × half Flagger's median time (× 10 % while the
            canary stays at its first stage). Promotion likewise: telling a good canary from one at the error
            margin (stable × \(num(judge.errorRateRatioMargin)) or + \(num(judge.errorRateAbsoluteMargin * 100)) pp, whichever is larger)
            with at most \(pct(judge.falsePromotionRate)) promotions of the latter needs d(½ ‖ \(pct(judge.falsePromotionRate))) = 0.83 nats,
            from requests served at weights up to 50 % within Flagger's median time to promote. The bound grants
            the policy exact knowledge of stable's behaviour and a fixed sample size, so real sequential tests
            need several times more.

            ![exposure and time ratios](decisions.svg)

            Raw numbers: [decisions.csv](decisions.csv) (a median time equal to `horizon_seconds` means it did not
            happen in at least half of the runs: "≥ 30m" above).
            """
        return md + "\n"
    }

    /// What the latency shapes run here mean, after the description of stable's (nothing for those not run).
    var latencyNotes: String {
        var text = ""
        if scenarios.contains(where: { $0.latency == .p99Plus50 }) {
            text += " \"p99 +50%\": the canary's σ grows so its p99 is 1.5× stable's, median unchanged."
        }
        if scenarios.contains(where: { $0.latency == .heavyTail }) {
            text += "\n\"heavy tail\": 5 % of the canary's requests come from a Pareto tail (scale 100 ms, shape 1.2)."
        }
        return text
    }

    /// A median time, or "≥ horizon" when it did not happen in at least half of the runs.
    func censored(_ seconds: Int) -> String { seconds >= horizon ? "≥ \(time(horizon))" : time(seconds) }

    func csv() -> String {
        var lines = ["baseline_error_rate,error_multiplier,latency,requests_per_second,good,policy,runs,rolled_back,promoted,held,median_seconds_to_rollback,median_seconds_to_promote,mean_exposure,horizon_seconds"]
        for (i, scenario) in scenarios.enumerated() {
            for (p, s) in summaries[i].enumerated() {
                lines.append([
                    "\(scenario.baselineErrorRate)", num(scenario.errorMultiplier), "\"\(scenario.latency.rawValue)\"",
                    num(scenario.requestsPerSecond), scenario.isGood ? "true" : "false", "\"\(policies[p])\"", "\(s.runs)",
                    "\(s.rolledBack)", "\(s.promoted)", "\(s.held)", "\(s.medianRollback)", "\(s.medianPromotion)",
                    String(format: "%.4f", s.meanExposure), "\(horizon)",
                ].joined(separator: ","))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Two panels: judge/Flagger exposure ratio and time-to-rollback ratio per bad scenario
    /// (log scale, target lines), and time to promote per good scenario.
    func svg() -> String {
        let bad = scenarios.indices.filter { !scenarios[$0].isGood }
        let good = indicesGood
        let width = max(60 + bad.count * 18 + 40, 60 + indicesGood.count * 100 + 40)
        let panel = 220, top = 40
        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(top + 3 * (panel + 60) + 40)" font-family="sans-serif" font-size="11">
            <rect width="100%" height="100%" fill="white"/>
            <text x="10" y="20" font-size="14">Fledge judge vs Flagger (seed \(seed), \(runs) runs per scenario)</text>

            """
        let colors = ["#1f77b4", "#d62728"]
        func y(_ ratio: Double, _ base: Int) -> Double {
            // log10 from 1e-3 (bottom) to 1e1 (top), clamped.
            let v = min(1, max(-3, log10(max(ratio, 1e-9))))
            return Double(base) + Double(panel) * (1 - (v + 3) / 4)
        }
        for (p, (title, target)) in [("exposure: judge ÷ Flagger (target ≤ 0.25)", 0.25), ("time to rollback: judge ÷ Flagger (target ≤ 0.5)", 0.5)].enumerated() {
            let base = top + 20 + p * (panel + 60)
            out += "<text x=\"60\" y=\"\(base - 8)\" font-size=\"12\">\(title); ● vs 1m/5, ▲ vs 30s/3; bad scenarios (grey: below 10 req/s)</text>\n"
            out += "<rect x=\"60\" y=\"\(base)\" width=\"\(bad.count * 18)\" height=\"\(panel)\" fill=\"none\" stroke=\"#999\"/>\n"
            for tick in [-3, -2, -1, 0, 1] {
                let ty = y(pow(10, Double(tick)), base)
                out += "<line x1=\"60\" x2=\"\(60 + bad.count * 18)\" y1=\"\(ty)\" y2=\"\(ty)\" stroke=\"#eee\"/><text x=\"55\" y=\"\(ty + 4)\" text-anchor=\"end\">1e\(tick)</text>\n"
            }
            let ty = y(target, base)
            out += "<line x1=\"60\" x2=\"\(60 + bad.count * 18)\" y1=\"\(ty)\" y2=\"\(ty)\" stroke=\"green\" stroke-dasharray=\"4 3\"/>\n"
            for (k, i) in bad.enumerated() {
                let x = 60 + k * 18 + 9
                if scenarios[i].requestsPerSecond < 10 {
                    out += "<rect x=\"\(x - 9)\" y=\"\(base)\" width=\"18\" height=\"\(panel)\" fill=\"#f4f4f4\"/>\n"
                }
                for f in 1..<policies.count {
                    let c = badCheck(summaries[i], against: f)
                    let v = p == 0 ? c.exposureRatio : c.timeRatio
                    let cy = y(v, base)
                    if f == 1 {
                        out += "<circle cx=\"\(x)\" cy=\"\(cy)\" r=\"3.5\" fill=\"\(colors[0])\"><title>\(scenarios[i].label): \(ratio(v))</title></circle>\n"
                    } else {
                        out += "<path d=\"M\(x) \(cy - 4) L\(x + 4) \(cy + 3) L\(x - 4) \(cy + 3) Z\" fill=\"\(colors[1])\"><title>\(scenarios[i].label): \(ratio(v))</title></path>\n"
                    }
                }
            }
            for (k, i) in bad.enumerated() where k % 6 == 0 {
                let s = scenarios[i]
                out += "<text x=\"\(60 + k * 18)\" y=\"\(base + panel + 14)\">\(pct(s.baselineErrorRate)) \(num(s.requestsPerSecond))/s</text>\n"
            }
        }
        // Time to promote, good canaries.
        let base = top + 20 + 2 * (panel + 60)
        let group = 100
        out += "<text x=\"60\" y=\"\(base - 8)\" font-size=\"12\">good canaries: median time to promote (bars: judge, Flagger 1m/5, Flagger 30s/3); top = not promoted in \(horizon / 60) min</text>\n"
        out += "<rect x=\"60\" y=\"\(base)\" width=\"\(good.count * group)\" height=\"\(panel)\" fill=\"none\" stroke=\"#999\"/>\n"
        for minutes in stride(from: 0, through: horizon / 60, by: max(1, horizon / 60 / 3)) {
            let ty = Double(base + panel) - Double(panel) * Double(minutes * 60) / Double(horizon)
            out += "<line x1=\"60\" x2=\"\(60 + good.count * group)\" y1=\"\(ty)\" y2=\"\(ty)\" stroke=\"#eee\"/><text x=\"55\" y=\"\(ty + 4)\" text-anchor=\"end\">\(minutes)m</text>\n"
        }
        let barColors = ["#2ca02c", "#1f77b4", "#d62728"]
        for (k, i) in good.enumerated() {
            for p in 0..<policies.count {
                let s = summaries[i][p]
                let h = Double(panel) * Double(s.medianPromotion) / Double(horizon)
                let x = 60 + k * group + 16 + p * 22
                out += "<rect x=\"\(x)\" y=\"\(Double(base + panel) - h)\" width=\"20\" height=\"\(h)\" fill=\"\(barColors[p])\"><title>\(policies[p]) \(scenarios[i].label): \(time(s.medianPromotion)), false rollbacks \(pct(s.rollbackRate))</title></rect>\n"
                out += "<text x=\"\(x + 10)\" y=\"\(Double(base + panel) - h - 3)\" text-anchor=\"middle\" font-size=\"9\">\(pct(s.rollbackRate))</text>\n"
            }
            let s = scenarios[i]
            out += "<text x=\"\(60 + k * group + group / 2)\" y=\"\(base + panel + 14)\" text-anchor=\"middle\">\(pct(s.baselineErrorRate)) \(num(s.requestsPerSecond))/s</text>\n"
        }
        out += "<text x=\"60\" y=\"\(base + panel + 30)\" font-size=\"10\">numbers above the bars: false rollbacks</text>\n"
        return out + "</svg>\n"
    }
}

func num(_ value: Double) -> String {
    if value == value.rounded() && abs(value) < 1e15 { return String(Int(value)) }
    if abs(value) >= 100 { return String(format: "%.0f", value) }
    if abs(value) >= 1 { return String(format: "%.1f", value) }
    return String(format: "%.2g", value)
}

func number(_ value: Double) -> String { num(value) }

func pct(_ rate: Double) -> String {
    let p = rate * 100
    if p == p.rounded() { return "\(Int(p))%" }
    return (p >= 1 ? String(format: "%.1f", p) : String(format: "%.2g", p)) + "%"
}

func percent(_ rate: Double) -> String { pct(rate) }

func ratio(_ value: Double) -> String {
    guard value.isFinite else { return "∞" }
    return value >= 10 ? String(format: "%.0f×", value) : String(format: "%.2g×", value)
}

func time(_ seconds: Int) -> String {
    if seconds >= 60 && seconds % 60 == 0 { return "\(seconds / 60)m" }
    if seconds >= 60 { return "\(seconds / 60)m\(seconds % 60)s" }
    return "\(seconds)s"
}
