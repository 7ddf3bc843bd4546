import ArgumentParser
import FledgeCore

/// `fledge promote ROLLOUT [--full]`: approve the current stage (or skip every remaining stage with `--full`).
struct PromoteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promote",
        abstract: "Promote the current stage of a rollout, or with --full the whole canary now.",
        discussion: """
            Without --full: approves a stage that waits for manual approval (Paused), or ends the current stage now and \
            moves to the next. With --full: skips the remaining stages and analysis and promotes the canary into the \
            stable Deployment. Writes the request as an annotation, waits until the controller records its answer \
            in status.requests, and prints it. A request the controller would refuse in the current phase is refused \
            at once with its reason.

            Exit status: 0 accepted, 1 refused or error, 2 no answer within --timeout, \(usageErrorExit).
            """)

    @Argument(help: "The Rollout's name.")
    var rollout: String

    @Flag(help: "Skip the remaining stages and analysis and promote now.")
    var full = false

    @OptionGroup var wait: RequestWaitOptions
    @OptionGroup var kubernetes: KubernetesOptions

    func validate() throws { try validateRolloutName(rollout) }

    func run() async throws {
        let runner = ManualRequestRunner(cluster: try kubernetes.connect(), name: rollout, kind: full ? .promoteFull : .promote, wait: wait)
        let status = try await runner.run()
        if status != 0 { throw ExitCode(status) }
    }
}

/// Rejects a name the API server could never have, before any request.
func validateRolloutName(_ name: String) throws {
    guard KubernetesOptions.isObjectName(name) else {
        throw ValidationError("\"\(name)\" is not a valid Rollout name (lowercase letters, digits, '-' and '.', at most 253)")
    }
}
