import FledgeCLI

/// The entry point. The command tree lives in the FledgeCLI library so that tests can parse it; the same binary
/// is the kubectl plugin when it runs as `kubectl-fledge` (see `CommandLineEntry`).
@main
struct FledgeMain {
    static func main() async {
        await CommandLineEntry.main()
    }
}
