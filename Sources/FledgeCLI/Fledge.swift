import ArgumentParser

/// The `fledge` command: one subcommand per file in this folder.
public struct Fledge: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "fledge",
        abstract: "Progressive canary rollouts for Istio.",
        version: "0.1.0",
        subcommands: [
            QueryCommand.self,
            DemoCommand.self,
            LintCommand.self,
            SandboxCommand.self,
            RunCommand.self,
            SimulateMeshCommand.self,
        ] + Fledge.rolloutCommands
    )

    public init() {}
}
