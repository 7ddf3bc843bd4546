import ArgumentParser
import FledgeCore

/// Parses a duration flag as the Rollout spec writes durations: `30s`, `5m`, `1h30m`, `500ms`.
/// Options using it take `parsing: .unconditional`, so that `-5s` reaches it rather than read as a short option.
func parseDuration(_ text: String) throws -> Duration {
    if text.hasPrefix("-"), text.dropFirst().first?.isNumber == true { throw ValidationError("'\(text)' is negative: give a duration above 0 such as 30s or 5m") }
    do {
        return .milliseconds(try RolloutDuration(parsing: text).milliseconds)
    } catch {
        throw ValidationError("\(error) (write e.g. 30s, 5m or 1h30m)")
    }
}

/// How long a manual request waits for the controller's answer.
struct RequestWaitOptions: ParsableArguments {
    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("How long to wait for the controller to acknowledge the request (e.g. 30s, 2m; default: 30s).", valueName: "duration"),
        transform: parseDuration)
    var timeout: Duration = .seconds(30)

    @Flag(help: "Write the request and return without waiting for the controller's answer.")
    var noWait = false

    func validate() throws {
        if timeout <= .zero { throw ValidationError("--timeout: must be above 0") }
    }
}
