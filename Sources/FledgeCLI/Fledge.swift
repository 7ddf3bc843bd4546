import ArgumentParser

/// The `fledge` command: one subcommand per file in this folder.
public struct Fledge: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "fledge",
        abstract: "Progressive canary rollouts for Istio.",
        version: "0.1.0",
        // In the order a newcomer meets them: the demo, driving rollouts, then the controller and the local tools.
        subcommands: [DemoCommand.self] + Fledge.rolloutCommands + [
            LintCommand.self,
            RunCommand.self,
            QueryCommand.self,
            SandboxCommand.self,
            SimulateMeshCommand.self,
        ]
    )

    public init() {}
}

/// How every subcommand's help names the exit status of a usage error: ArgumentParser's `ExitCode.validationFailure`
/// (EX_USAGE), which `CommandLineEntry` exits with for an unknown option, a missing or malformed value, or a
/// `validate()` that refused the arguments, before anything reaches a cluster.
let usageErrorExit = "64 usage error (an unknown option, a missing or malformed argument: nothing was done)"
