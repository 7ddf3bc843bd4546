import ArgumentParser
import FledgeCLI

/// The entry point. The command tree lives in the FledgeCLI library so that
/// tests can parse it; this type only borrows its configuration.
@main
struct FledgeMain: AsyncParsableCommand {
    static let configuration = Fledge.configuration
}
