import ArgumentParser
import FledgeCore
import FledgeJSON

/// `fledge retry ROLLOUT`: start a Failed or Aborted rollout of the same revision again.
struct RetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Start a Failed or Aborted rollout of the same revision again.",
        discussion: """
            Accepted only when the rollout is Failed or Aborted and its revision is not already the stable one. Waits \
            until the controller records its answer in status.requests and prints it.

            Exit status: 0 accepted, 1 refused or error, 2 no answer within --timeout, \(usageErrorExit).
            """)

    @Argument(help: "The Rollout's name.")
    var rollout: String

    @OptionGroup var wait: RequestWaitOptions
    @OptionGroup var kubernetes: KubernetesOptions

    func validate() throws { try validateRolloutName(rollout) }

    func run() async throws {
        var runner = ManualRequestRunner(cluster: try kubernetes.connect(), name: rollout, kind: .retry, wait: wait)
        // The new attempt starts without the last abort's reason (a later automatic rollback must not show it).
        runner.extraAnnotations[AbortCommand.reasonAnnotation] = .null
        let status = try await runner.run()
        if status != 0 { throw ExitCode(status) }
    }
}
