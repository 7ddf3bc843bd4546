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

/// How every subcommand's help names the exit status of a usage error: ArgumentParser's `ExitCode.validationFailure`
/// (EX_USAGE), which `CommandLineEntry` exits with for an unknown option, a missing or malformed value, or a
/// `validate()` that refused the arguments, before anything reaches a cluster.
let usageErrorExit = "64 usage error (an unknown option, a missing or malformed argument: nothing was done)"
