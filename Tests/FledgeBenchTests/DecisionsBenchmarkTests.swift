import ArgumentParser
import Foundation
import Testing

@testable import FledgeBench

/// `fledge-bench decisions`' scenario options and the report over whatever was run.
@Suite("fledge-bench decisions")
struct DecisionsBenchmarkTests {
    static func parse(_ arguments: [String]) throws -> DecisionsBenchmark {
        try #require(try FledgeBench.parseAsRoot(["decisions"] + arguments) as? DecisionsBenchmark)
    }

    static func message(_ arguments: [String]) -> String? {
        do {
            _ = try FledgeBench.parseAsRoot(["decisions"] + arguments)
            return nil
        } catch {
            return FledgeBench.message(for: error)
        }
    }

    @Test func theDefaultsAreIssue8sScenarios() throws {
        let command = try Self.parse([])
        #expect(command.baselineRates == [0.001, 0.01])
        #expect(command.multipliers == [1, 2, 5, 20])
        #expect(command.latencies == [.unchanged, .p99Plus50, .heavyTail])
        #expect(command.scenarioFlags.isEmpty && command.scenarioNote == nil)
        let scenarios = command.scenarios
        #expect(scenarios.count == 4 * 2 * 6)
        // Per rate and baseline: the multipliers with stable's latency, then each latency shape with errors ×1.
        #expect(scenarios.prefix(6).map(\.label) == [
            "0.1% ×1, latency unchanged, 1 req/s", "0.1% ×2, latency unchanged, 1 req/s", "0.1% ×5, latency unchanged, 1 req/s",
            "0.1% ×20, latency unchanged, 1 req/s", "0.1% ×1, latency p99 +50%, 1 req/s", "0.1% ×1, latency heavy tail, 1 req/s",
        ])
        #expect(scenarios.filter(\.isGood).count == 8)
    }

    @Test func listsAreCommaSeparatedOrRepeatedAndRatesMayBePercentages() throws {
        let commas = try Self.parse([
            "--traffic", "10,100", "--baseline-error-rates", "0.5%,2%", "--error-multipliers", "1,3", "--latency", "unchanged,heavy-tail",
        ])
        let spaces = try Self.parse([
            "--traffic", "10", "100", "--baseline-error-rates", "0.005", "0.02", "--error-multipliers", "1", "3", "--latency", "heavy-tail", "unchanged",
        ])
        let repeated = try Self.parse([
            "--traffic", "10", "--traffic", "100", "--baseline-error-rates", "0.005", "--baseline-error-rates", "0.02", "--error-multipliers", "1",
            "--error-multipliers", "3", "--latency", "heavy tail", "--latency", "unchanged",
        ])
        for command in [commas, spaces, repeated] {
            #expect(command.traffic == [10, 100])
            #expect(command.baselineRates == [0.005, 0.02])
            #expect(command.multipliers == [1, 3])
            #expect(command.latencies == [.unchanged, .heavyTail])
            #expect(command.scenarios.count == 2 * 2 * 3)
        }
        #expect(commas.nonDefaultFlags == " --traffic 10 100 --baseline-error-rates 0.005,0.02 --error-multipliers 1,3 --latency unchanged,heavy-tail")
        // The flags printed reproduce the run.
        let again = try Self.parse(commas.nonDefaultFlags.split(separator: " ").map(String.init))
        #expect(again.scenarios.map(\.label) == commas.scenarios.map(\.label))
    }

    @Test(arguments: [
        (["--baseline-error-rates", "0"], "--baseline-error-rates: 0.0 is not an error rate in (0, 0.5]"),
        (["--baseline-error-rates", "0.6"], "--baseline-error-rates: 0.6 is not an error rate in (0, 0.5]"),
        (["--baseline-error-rates", "60%"], "--baseline-error-rates: 0.6 is not an error rate in (0, 0.5]"),
        (["--baseline-error-rates=-0.01"], "--baseline-error-rates: -0.01 is not an error rate"),
        (["--baseline-error-rates", "often"], "--baseline-error-rates: \"often\" is not a number"),
        (["--baseline-error-rates", "0.01,"], "--baseline-error-rates: \"\" is not a number"),
        (["--baseline-error-rates", "nan"], "--baseline-error-rates: \"nan\" is not a number"),
        (["--error-multipliers", "0.5"], "--error-multipliers: 0.5 is below 1"),
        (["--error-multipliers", "x5"], "--error-multipliers: \"x5\" is not a number"),
        (["--baseline-error-rates", "0.1", "--error-multipliers", "1,20"], "--error-multipliers: ×20 of the baseline error rate 0.1 is a canary error rate of 2.0, above 1"),
        (["--latency", "fast"], "--latency: \"fast\" is not a latency shape (one of unchanged, p99+50, heavy-tail)"),
        (["--latency", "heavy-tail", "--error-multipliers", "5"], "--error-multipliers run with unchanged latency: add unchanged to --latency"),
        (["--traffic", "0"], "--traffic: 0 is not a positive request rate"),
        (["--traffic=-5"], "--traffic: -5 is not a positive request rate"),
        (["--traffic", "10,lots"], "--traffic: \"lots\" is not a number"),
        // The judge's options by the flag typed (was "judge option falseRollbackRate: …").
        (["--false-rollback-rate", "0"], "--false-rollback-rate: must be a probability above 0 and at most 0.5"),
        (["--error-ratio-margin", "1"], "--error-ratio-margin: must be a ratio above 1 and at most 100"),
        (["--error-absolute-margin", "1"], "--error-absolute-margin: must be a rate in [0, 1)"),
        (["--latency-ratio-margin", "0.5"], "--latency-ratio-margin: must be a ratio above 1 and at most 100"),
        // A judge that never looks within the horizon (was accepted, and every canary "held").
        (["--judge-interval", "3600", "--horizon-minutes", "30"],
         "--judge-interval 3600 s is longer than --horizon-minutes 30 (1800 s): the judge would never look"),
    ])
    func badScenarioOptionsNameTheOption(arguments: [String], expected: String) {
        let message = Self.message(arguments)
        #expect(message?.contains(expected) == true, "\(message ?? "accepted")")
    }

    /// Runs the benchmark into a temporary folder and returns its README.
    static func readme(_ arguments: [String]) throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-decisions-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let command = try parse(arguments + ["--runs", "3", "--horizon-minutes", "5", "--out", folder.path])
        try command.run()
        #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("decisions.svg").path))
        let csv = try String(contentsOf: folder.appendingPathComponent("decisions.csv"), encoding: .utf8)
        #expect(csv.split(separator: "\n").count == 1 + command.scenarios.count * 3)
        return try String(contentsOf: folder.appendingPathComponent("README.md"), encoding: .utf8)
    }

    static func noOddities(_ text: String) {
        for odd in ["0 of 0", " nan", "NaN", "of the 0 missed", "inf×", "∞", "0 scenarios", "in 0 of", ", 0 are", "and 0 are", " 0 is "] {
            #expect(!text.contains(odd), "\(odd) in:\n\(text)")
        }
    }

    /// Scenarios of the user's own (rates the bound never rules out): the summary says so instead of "0 are impossible".
    @Test func ownScenariosSummariseWithoutZeroCounts() throws {
        let text = try Self.readme(["--baseline-error-rates", "0.5%", "--error-multipliers", "1,3,10", "--latency", "unchanged", "--traffic", "50,500"])
        let targets = text.components(separatedBy: "## Targets")[1].components(separatedBy: "## Reading")[0]
        for odd in [", 0 are", "and 0 are", " 0 is "] { #expect(!targets.contains(odd), "\(odd) in:\n\(targets)") }
    }

    @Test func onlyGoodCanariesAtOneRequestASecond() throws {
        let text = try Self.readme(["--traffic", "1", "--baseline-error-rates", "1%", "--error-multipliers", "1", "--latency", "unchanged"])
        Self.noOddities(text)
        #expect(text.contains("--traffic 1 --baseline-error-rates 0.01 --error-multipliers 1 --latency unchanged"))
        #expect(text.contains("Scenarios run: stable error rates 1%; canary errors ×1 with stable's latency; 1 req/s: 1 scenario, 1 with a good canary and 0 with a bad one."))
        #expect(text.contains("- Bad canaries, ≥ 10 req/s: none among these scenarios"))
        #expect(text.contains("- Good canaries: false rollbacks ≤ 1 % in"))
        #expect(text.contains("- Good canaries, ≥ 10 req/s: none among these scenarios"))
        #expect(text.contains("rollouts (all good)"))
        #expect(!text.contains("p99 +50%\": the canary") && !text.contains("\"heavy tail\": 5 %"))
        #expect(!text.contains("Promoted bad canaries dominate exposure"))
        #expect(text.contains("| none among these scenarios |"))
    }

    /// The reading of Flagger's false rollbacks names the baseline it happened at: with a 5 % baseline it said "with a
    /// 1 % baseline the 99 % success threshold sits on the good canary's own error rate … a coin toss", while every
    /// check failed.
    @Test func flaggersFalseRollbacksAreExplainedAtTheBaselineRun() throws {
        let high = try Self.readme(["--traffic", "100", "--baseline-error-rates", "5%", "--error-multipliers", "1", "--latency", "unchanged"])
        #expect(high.contains("with a 5 % baseline a good canary's own success rate, 95 %, is below the 99 % success threshold"), "\(high)")
        #expect(!high.contains("coin toss") && !high.contains("with a 1 % baseline"), "\(high)")
        let near = try Self.readme(["--traffic", "1000", "--baseline-error-rates", "1%", "--error-multipliers", "1", "--latency", "unchanged"])
        #expect(near.contains("with a 1 % baseline the 99 % success threshold sits on the good canary's own error rate"), "\(near)")
    }

    @Test func onlyBadCanariesAtHighTraffic() throws {
        let text = try Self.readme(["--traffic", "100", "--baseline-error-rates", "0.001", "--error-multipliers", "20", "--latency", "unchanged,heavy-tail"])
        Self.noOddities(text)
        #expect(text.contains("Scenarios run: stable error rates 0.1%; canary errors ×20 with stable's latency; canary latency heavy tail with errors ×1; 100 req/s: 2 scenarios, 0 with a good canary and 2 with a bad one."))
        #expect(text.contains("- Good canaries: none among these scenarios"))
        #expect(text.contains("in 2 of 2 scenarios") || text.contains("of 2 scenarios;"))
        #expect(!text.contains("Below 10 req/s"))
        #expect(text.contains("\"heavy tail\": 5 %") && !text.contains("\"p99 +50%\": the canary"))
        #expect(text.contains("| 0.1% ×20, latency unchanged, 100 req/s |"))
    }
}

/// `--out` is checked before the simulation: a file in the way is named; missing folders are created.
@Suite struct DecisionsOutputFolderTests {
    @Test func aFileInTheWayIsNamedBeforeTheRun() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-decisions-out-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("file").path
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(DecisionsBenchmark.outputFolderProblem(folder.appendingPathComponent("new/deeper").path) == nil)
        #expect(DecisionsBenchmark.outputFolderProblem(file) == "cannot write the report into \(file): \(file) is a file, not a folder")
        #expect(
            DecisionsBenchmark.outputFolderProblem(file + "/sub")
                == "cannot write the report into \(file)/sub: \(file) is a file, not a folder")
        #expect(throws: (any Error).self) { try DecisionsBenchmark.parse(["--out", file + "/sub"]) }
    }
}
