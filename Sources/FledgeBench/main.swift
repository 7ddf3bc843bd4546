import ArgumentParser

/// `fledge-bench`: benchmarks, run as a separate command and never as tests.
struct FledgeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fledge-bench",
        abstract: "Fledge's benchmarks; each reports against a baseline measured in the same run.",
        subcommands: [WatchDecodeBench.self]
    )
}

/// Runs a command's async `run()`. From top-level code, `command.run()` on an
/// `any AsyncParsableCommand` resolves to the synchronous requirement (whose
/// default prints help), so the call goes through a generic function.
func runAsync<Command: AsyncParsableCommand>(_ command: Command) async throws {
    var command = command
    try await command.run()
}

do {
    let command = try FledgeBench.parseAsRoot()
    if let asyncCommand = command as? any AsyncParsableCommand {
        try await runAsync(asyncCommand)
    } else {
        var command = command
        try command.run()
    }
} catch {
    FledgeBench.exit(withError: error)
}
