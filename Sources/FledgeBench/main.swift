import ArgumentParser

/// `fledge-bench`: benchmarks, run as a separate command and never as tests.
struct FledgeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fledge-bench",
        abstract: "Fledge's benchmarks; each reports against a baseline measured in the same run.",
        subcommands: [WatchDecodeBench.self]
    )
}

await FledgeBench.main()
