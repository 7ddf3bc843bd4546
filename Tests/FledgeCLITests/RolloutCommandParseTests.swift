import ArgumentParser
import FledgeCore
import FledgeJSON
import Foundation
import TestSupport
import Testing

@testable import FledgeCLI

/// Every flag of the rollout commands, and every validate() failure, at the parse level.
@Suite("rollout commands: parsing")
struct RolloutCommandParseTests {
    /// Help is read in 80-column terminals: an example command must fit on its line, or the help wraps it in the
    /// middle (lines continue with a backslash instead).
    @Test func helpExamplesFitEightyColumns() {
        for command in Fledge.configuration.subcommands {
            for line in command.configuration.discussion.split(separator: "\n") where line.hasPrefix("  ") {
                let example = line.drop { $0 == " " }
                guard ["fledge ", "kubectl ", "--", "&&"].contains(where: { example.hasPrefix($0) }) else { continue }
                #expect(line.count <= 78, "\(command._commandName): \(line)")
            }
        }
    }

    /// `fledge --help` lists the demo first and the commands that drive rollouts before the controller and the
    /// local tools (it began with query); a close misspelling gets a suggestion, an alias and help are commands.
    @Test func subcommandsInTheOrderANewcomerMeetsThem() {
        let names = Fledge.configuration.subcommands.map { $0._commandName }
        #expect(names == ["demo", "trigger", "status", "promote", "abort", "retry", "list", "analyze", "report", "lint", "run", "query", "sandbox", "simulate-mesh"])
        #expect(CommandLineEntry.unknownSubcommand("promte", of: Fledge.self) == "'promte' is not a subcommand; did you mean 'promote'?")
        #expect(CommandLineEntry.unknownSubcommand("sim", of: Fledge.self) == "'sim' is not a subcommand; did you mean 'simulate-mesh'?")
        #expect(CommandLineEntry.unknownSubcommand("lnt", of: Fledge.self) == "'lnt' is not a subcommand; did you mean 'lint'?")
        for word in ["ls", "help", "--help", "-h", "status", "simulate-mesh"] {
            #expect(CommandLineEntry.unknownSubcommand(word, of: Fledge.self) == nil, "\(word)")
        }
        #expect(CommandLineEntry.editDistance("stauts", "status") == 2 && CommandLineEntry.editDistance("", "ab") == 2)
    }

    // MARK: - Shared Kubernetes flags

    /// --kubeconfig and --context read alike in every help (simulate-mesh wrote KUBECONFIG without its $, and each
    /// of run, simulate-mesh and the rollout commands described --context in other words).
    @Test func kubeconfigFlagsReadAlikeInEveryHelp() {
        var described = 0
        for command in Fledge.configuration.subcommands {
            let help = command.helpMessage(columns: 400)
            guard help.contains("--kubeconfig <") else { continue }
            described += 1
            #expect(help.contains("--kubeconfig <file>     Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster)."), "\(command._commandName)")
            #expect(help.contains("--context <name>        The kubeconfig context to use (default: its current-context)."), "\(command._commandName)")
        }
        #expect(described == 10)
    }

    @Test func kubernetesFlagsOnEveryCommand() throws {
        let flags = ["--kubeconfig", "/tmp/k", "--context", "prod", "-n", "shop"]
        let commands: [([String], (any ParsableCommand) -> KubernetesOptions?)] = [
            (["trigger", "r", "--image", "i:1"], { ($0 as? TriggerCommand)?.kubernetes }),
            (["promote", "r"], { ($0 as? PromoteCommand)?.kubernetes }),
            (["abort", "r"], { ($0 as? AbortCommand)?.kubernetes }),
            (["retry", "r"], { ($0 as? RetryCommand)?.kubernetes }),
            (["status", "r"], { ($0 as? StatusCommand)?.kubernetes }),
            (["list"], { ($0 as? ListCommand)?.kubernetes }),
        ]
        for (arguments, options) in commands {
            let command = try Fledge.parseAsRoot(arguments + flags)
            let kubernetes = try #require(options(command), "\(arguments)")
            #expect(kubernetes.kubeconfig == "/tmp/k" && kubernetes.context == "prod" && kubernetes.namespace == "shop")
            let long = try #require(options(try Fledge.parseAsRoot(arguments + ["--namespace", "payments"])))
            #expect(long.namespace == "payments" && long.kubeconfig == nil && long.context == nil)
        }
    }

    @Test(arguments: [
        (["promote", "r", "-n", "Shop"], "--namespace"),
        (["promote", "r", "-n", "shop-"], "--namespace"),
        (["promote", "r", "--context", ""], "--context"),
        (["promote", "r", "--kubeconfig", ""], "--kubeconfig"),
        (["promote", "Product_Service"], "not a valid Rollout name"),
        (["status", "r", "--kubeconfig"], "--kubeconfig"),
    ])
    func badKubernetesFlags(arguments: [String], expected: String) {
        #expect(Self.failure(arguments)?.contains(expected) == true, "\(Self.failure(arguments) ?? "parsed")")
    }

    // MARK: - trigger

    @Test func triggerFlags() throws {
        let one = try TriggerCommand.parse(["product-service", "--image", "reg/app:2"])
        #expect(one.rollout == "product-service" && one.image == ["reg/app:2"] && one.templatePatch == nil && !one.force)
        #expect(try one.canary(replacing: ["image": "reg/app:1", "replicas": 2]) == ["image": "reg/app:2", "replicas": 2])
        let two = try TriggerCommand.parse(["r", "--image", "app=reg/app:2", "--image", "proxy=reg/proxy:1", "--force"])
        #expect(two.force && two.image.count == 2)
        #expect(try two.canary(replacing: ["image": "reg/app:1", "templatePatch": ["a": 1]]) == ["images": ["app=reg/app:2", "proxy=reg/proxy:1"]])

        let file = FileManager.default.temporaryDirectory.appendingPathComponent("patch-\(UUID().uuidString).json").path
        try #"{"spec": {"terminationGracePeriodSeconds": 45}}"#.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let patch = try TriggerCommand.parse(["r", "--template-patch", file])
        #expect(try patch.canary(replacing: nil) == ["templatePatch": ["spec": ["terminationGracePeriodSeconds": 45]]])
    }

    @Test func triggerTemplatePatchMustBeAnObject() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("patch-\(UUID().uuidString).yaml").path
        try "- a\n- b\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let command = try TriggerCommand.parse(["r", "--template-patch", file])
        #expect { try command.canary(replacing: nil) } throws: { "\($0)".contains("\(file) holds an array; expected an object") }
        try "a: [1\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect { try command.canary(replacing: nil) } throws: { "\($0)".contains("--template-patch: \(file): invalid YAML") }
        // Empty: said so, under the flag's name (was "FILE: empty document").
        try "".write(toFile: file, atomically: true, encoding: .utf8)
        #expect { try command.canary(replacing: nil) } throws: { "\($0)" == "--template-patch: \(file): empty document (the file is empty)" }
        // /dev/null is empty, not unreadable (was "You don't have permission").
        let null = try TriggerCommand.parse(["r", "--template-patch", "/dev/null"])
        #expect { try null.canary(replacing: nil) } throws: { "\($0)" == "--template-patch: /dev/null: empty document (the file is empty)" }
    }

    /// A template patch file is read like lint reads manifests: an alias is refused before it expands.
    @Test(.timeLimit(.minutes(1))) func triggerTemplatePatchRefusesYAMLAliases() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("patch-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        // One level first: were aliases expanded, eight would not end.
        for levels in [1, 8] {
            try yamlBomb(levels: levels, prefix: "spec:\n  x: 1\nmetadata: {}\nbomb:\n").write(toFile: file, atomically: true, encoding: .utf8)
            let command = try TriggerCommand.parse(["r", "--template-patch", file])
            do {
                _ = try command.canary(replacing: nil)
                Issue.record("an alias was accepted")
                return
            } catch {
                #expect("\(error)".contains("\(file): line 6: YAML alias '*l0' is not supported"), "\(error)")
            }
        }
    }

    @Test(arguments: [
        (["r"], "give --image [CONTAINER=]IMAGE or --template-patch FILE"),
        (["r", "--image", ""], "--image: is empty"),
        (["r", "--image", "reg/app 2"], "contains whitespace"),
        (["r", "--image", "App=reg/app:2"], "is not a container name"),
        (["r", "--image", "reg/a:1", "--image", "b=reg/b:1"], "each needs a container name"),
        (["r", "--image", "a=reg/a:1", "--image", "a=reg/a:2"], "container 'a' is given twice"),
        (["r", "--template-patch", "/nonexistent/patch.yaml"], "--template-patch: /nonexistent/patch.yaml: no such file"),
    ])
    func triggerRejects(arguments: [String], expected: String) {
        #expect(Self.failure(["trigger"] + arguments)?.contains(expected) == true, "\(Self.failure(["trigger"] + arguments) ?? "parsed")")
    }

    // MARK: - promote, abort, retry

    @Test func requestFlags() throws {
        let promote = try PromoteCommand.parse(["r"])
        #expect(!promote.full && promote.wait.timeout == .seconds(30) && !promote.wait.noWait)
        let full = try PromoteCommand.parse(["r", "--full", "--timeout", "1m30s", "--no-wait"])
        #expect(full.full && full.wait.timeout == .seconds(90) && full.wait.noWait)
        let abort = try AbortCommand.parse(["r", "--reason", "p99 doubled", "--timeout", "500ms"])
        #expect(abort.reason == "p99 doubled" && abort.wait.timeout == .milliseconds(500))
        #expect(try AbortCommand.parse(["r"]).reason == nil)
        let retry = try RetryCommand.parse(["r", "--timeout", "2m"])
        #expect(retry.rollout == "r" && retry.wait.timeout == .seconds(120))
    }

    /// The help gives --timeout's default, as the README does (a transformed option shows none by itself).
    @Test func requestHelpNamesTheTimeoutDefault() {
        for help in [PromoteCommand.helpMessage(columns: 400), AbortCommand.helpMessage(columns: 400), RetryCommand.helpMessage(columns: 400)] {
            #expect(help.contains("the request (e.g. 30s, 2m; default: 30s)"), "\(help)")
        }
    }

    @Test(arguments: [
        (["promote"], "Missing expected argument '<rollout>'"),
        (["promote", "r", "--timeout", "0s"], "--timeout: must be above 0"),
        (["promote", "r", "--timeout", "30"], "'30' has no unit"),
        (["promote", "r", "--timeout", "1m30x"], "unknown unit 'x'"),
        (["abort", "r", "--reason", "  "], "--reason: must not be empty"),
        (["abort", "r", "--reason", String(repeating: "x", count: 1025)], "--reason: at most 1024 bytes"),
        (["retry", "r", "--full"], "Unknown option '--full'"),
        (["retry", "r", "s"], "Unexpected argument 's'"),
    ])
    func requestRejects(arguments: [String], expected: String) {
        #expect(Self.failure(arguments)?.contains(expected) == true, "\(Self.failure(arguments) ?? "parsed")")
    }

    // MARK: - status and list

    @Test func statusFlags() throws {
        let plain = try StatusCommand.parse(["r"])
        #expect(!plain.watch && plain.timeout == nil && plain.output == .table)
        let watch = try StatusCommand.parse(["r", "-w", "--timeout", "10m", "-o", "yaml"])
        #expect(watch.watch && watch.timeout == .seconds(600) && watch.output == .yaml)
        #expect(try StatusCommand.parse(["r", "--watch", "--output", "json"]).output == .json)
    }

    @Test(arguments: [
        (["status", "r", "--timeout", "1m"], "--timeout needs --watch"),
        (["status", "r", "--watch", "--timeout", "0s"], "--timeout: must be above 0"),
        // A negative duration was read as an unknown short option: "Missing value for '--timeout <duration>'".
        (["status", "r", "--watch", "--timeout", "-5s"], "'-5s' is negative: give a duration above 0"),
        (["promote", "r", "--timeout", "-1m"], "'-1m' is negative: give a duration above 0"),
        (["demo", "--hold", "-2s"], "'-2s' is negative: give a duration above 0"),
        (["demo", "--interval", "-2s"], "'-2s' is negative: give a duration above 0"),
        (["demo", "--timeout", "-2s"], "'-2s' is negative: give a duration above 0"),
        // Another option where the value should be is not a duration, and not called negative.
        (["promote", "r", "--timeout", "--no-wait"], "'--no-wait' is not a duration"),
        (["status", "r", "-o", "wide"], "wide"),
        (["status"], "Missing expected argument '<rollout>'"),
        (["list", "-A", "-n", "shop"], "--namespace and --all-namespaces cannot be used together"),
        (["list", "-o", "xml"], "xml"),
        (["list", "r"], "Unexpected argument 'r'"),
    ])
    func statusAndListReject(arguments: [String], expected: String) {
        #expect(Self.failure(arguments)?.contains(expected) == true, "\(Self.failure(arguments) ?? "parsed")")
    }

    @Test func listFlags() throws {
        #expect(try ListCommand.parse(["-A"]).allNamespaces)
        #expect(try ListCommand.parse(["--all-namespaces", "-o", "json"]).output == .json)
        let named = try ListCommand.parse(["-n", "shop"])
        #expect(!named.allNamespaces && named.kubernetes.namespace == "shop")
        let alias = try Fledge.parseAsRoot(["ls"])
        #expect(alias as? ListCommand != nil)
    }

    // MARK: - The plugin name

    @Test func theKubectlPluginHasTheSameCommands() throws {
        #expect(CommandLineEntry.invokedAsPlugin("/usr/local/bin/kubectl-fledge"))
        #expect(CommandLineEntry.invokedAsPlugin("kubectl-fledge"))
        #expect(!CommandLineEntry.invokedAsPlugin("/usr/local/bin/fledge"))
        #expect(!CommandLineEntry.invokedAsPlugin(nil))
        let parsed = try KubectlFledge.parseAsRoot(["promote", "product-service", "--full"])
        let promote = parsed as? PromoteCommand
        #expect(promote?.full == true)
        let pluginNames = KubectlFledge.configuration.subcommands.map { $0.configuration.commandName ?? "" }
        let fledgeNames = Fledge.configuration.subcommands.map { $0.configuration.commandName ?? "" }
        #expect(pluginNames == fledgeNames)
        #expect(fledgeNames.contains("trigger") && fledgeNames.contains("status"))
        #expect(KubectlFledge.helpMessage(for: PromoteCommand.self).contains("USAGE: kubectl fledge promote <rollout>"))
    }

    /// The message a parse of `arguments` fails with, or nil when it parses.
    /// Object names as Kubernetes has them: 253 characters, no limit per '.'-separated part.
    @Test func rolloutNamesAreKubernetesObjectNames() throws {
        #expect(KubernetesOptions.isObjectName(String(repeating: "a", count: 100)))
        #expect(KubernetesOptions.isObjectName("shop.product-service"))
        #expect(!KubernetesOptions.isObjectName(String(repeating: "a", count: 254)))
        #expect(!KubernetesOptions.isObjectName("a..b") && !KubernetesOptions.isObjectName("-a"))
    }

    @Test func hintsNameTheNamespaceAndTheFlagsGiven() throws {
        let plain = try #require(try Fledge.parseAsRoot(["abort", "r"]) as? AbortCommand)
        #expect(plain.kubernetes.suggestion("retry", "r", namespace: "shop") == "fledge retry r -n shop")
        let flagged = try #require(try Fledge.parseAsRoot(["abort", "r", "--context", "prod", "--kubeconfig", "/tmp/my config", "-n", "x"]) as? AbortCommand)
        #expect(flagged.kubernetes.suggestion("abort", "r", namespace: "x") == "fledge abort r -n x --context prod --kubeconfig '/tmp/my config'")
    }

    static func failure(_ arguments: [String]) -> String? {
        do {
            _ = try Fledge.parseAsRoot(arguments)
            return nil
        } catch {
            return Fledge.message(for: error)
        }
    }
}
