import ArgumentParser
import FledgeCore
import FledgeJSON
import Foundation

/// `fledge abort ROLLOUT [--reason TEXT]`: roll back now and end Aborted.
struct AbortCommand: AsyncParsableCommand {
    /// Where `--reason` goes, next to the request; `fledge status` shows it.
    static let reasonAnnotation = ManualRequest.abortReasonAnnotation

    static let configuration = CommandConfiguration(
        commandName: "abort",
        abstract: "Abort a rollout: traffic back to stable at once, canary scaled down, phase Aborted.",
        discussion: """
            Accepted while Initializing, Progressing or Paused. Refused while Promoting or Finalising (the canary is \
            already being promoted: change spec.canary to roll back), and when nothing is in flight. Waits until the \
            controller records its answer in status.requests and prints it.

            Exit status: 0 accepted, 1 refused or error, 2 no answer within --timeout, \(usageErrorExit).
            """)

    @Argument(help: "The Rollout's name.")
    var rollout: String

    @Option(help: ArgumentHelp(
        "Why, recorded on the Rollout as the fledge.dev/abort-reason annotation (without it, an earlier abort's reason is removed).",
        valueName: "text"))
    var reason: String?

    @OptionGroup var wait: RequestWaitOptions
    @OptionGroup var kubernetes: KubernetesOptions

    func validate() throws {
        try validateRolloutName(rollout)
        if let reason {
            if reason.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--reason: must not be empty") }
            if reason.utf8.count > 1024 { throw ValidationError("--reason: at most 1024 bytes, got \(reason.utf8.count)") }
        }
    }

    func run() async throws {
        var runner = ManualRequestRunner(cluster: try kubernetes.connect(), name: rollout, kind: .abort, wait: wait)
        // Without --reason an earlier abort's reason is removed (merge patch null): status never shows a stale one.
        runner.extraAnnotations[Self.reasonAnnotation] = reason.map(JSONValue.string) ?? .null
        let status = try await runner.run()
        if status != 0 { throw ExitCode(status) }
    }
}
