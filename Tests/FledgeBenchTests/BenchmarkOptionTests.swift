import ArgumentParser
import Foundation
import Testing

@testable import FledgeBench

/// Counts of zero are usage errors naming the flag: `decide --count 0` printed "inf µs each", `--passes 0` measured
/// nothing for minutes, `prometheus-client --queries 0` ended in "curl exited with 2".
@Suite("fledge-bench options")
struct BenchmarkOptionTests {
    @Test(arguments: [
        (["decide", "--count", "0"], "--count must be at least 1"),
        (["decide", "--passes", "0"], "--passes must be at least 1"),
        (["prometheus-client", "--queries", "0"], "--queries must be at least 1"),
        (["prometheus-client", "--rounds", "0"], "--rounds must be at least 1"),
        (["workload-counts", "--rollouts", "0"], "--rollouts must be at least 1"),
        (["workload-counts", "--batches", "0"], "--batches must be at least 1"),
        (["workload-counts", "--rounds", "0"], "--rounds must be at least 1"),
    ])
    func zeroCountsAreUsageErrors(arguments: [String], expected: String) {
        do {
            _ = try FledgeBench.parseAsRoot(arguments)
            Issue.record("\(arguments) parsed")
        } catch {
            #expect(FledgeBench.message(for: error) == expected, "\(arguments)")
            #expect(FledgeBench.exitCode(for: error) == .validationFailure)
        }
    }

    /// The README's Benchmarks list runs every subcommand (sandbox-delete was missing).
    @Test func theReadmeListsEverySubcommand() throws {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        for command in FledgeBench.configuration.subcommands {
            #expect(readme.contains("fledge-bench \(command._commandName)"), "README.md does not list fledge-bench \(command._commandName)")
        }
    }
}
