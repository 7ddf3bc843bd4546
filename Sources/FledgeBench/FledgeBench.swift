import ArgumentParser

/// `fledge-bench`: benchmarks, run as a separate command and never as tests.
@main
struct FledgeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fledge-bench",
        abstract: "Fledge's benchmarks; each reports against a baseline measured in the same run.",
        subcommands: [
            PrometheusClientBenchmark.self,
            WatchDecodeBench.self,
            ListDecodeBench.self,
            DecideBenchmark.self,
            DecisionsBenchmark.self,
            ControllerBenchmark.self,
            SandboxDeleteBench.self,
            WorkloadCountsBench.self,
            HangingPrometheusBenchmark.self,
        ]
    )
}
