import ArgumentParser
import Foundation

extension Fledge {
    /// The commands that drive rollouts on a cluster; also the whole of the kubectl plugin.
    static let rolloutCommands: [any ParsableCommand.Type] = [
        TriggerCommand.self,
        StatusCommand.self,
        PromoteCommand.self,
        AbortCommand.self,
        RetryCommand.self,
        ListCommand.self,
        AnalyzeCommand.self,
        ReportCommand.self,
    ]
}

/// `fledge` installed as a kubectl plugin: the same binary named (or linked as) `kubectl-fledge` on PATH, so that
/// `kubectl fledge promote product-service` runs `fledge promote product-service`. Only the usage text differs.
public struct KubectlFledge: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "kubectl fledge",
        abstract: "Progressive canary rollouts for Istio (the fledge CLI as a kubectl plugin).",
        version: Fledge.configuration.version,
        subcommands: Fledge.configuration.subcommands)

    public init() {}
}

extension CommandLineEntry {
    /// Why `word`, the first argument, is no subcommand of `root`, with the nearest names; nil when it is one (or an
    /// alias, `help`, or an option).
    static func unknownSubcommand<Root: ParsableCommand>(_ word: String, of root: Root.Type) -> String? {
        guard !word.hasPrefix("-"), word != "help" else { return nil }
        var names: [String] = []
        for command in root.configuration.subcommands {
            names.append(command._commandName)
            names += command.configuration.aliases
        }
        guard !names.contains(word) else { return nil }
        // The closest names within two edits, else those it begins.
        let distances = names.map { ($0, editDistance(word, $0)) }.filter { $0.1 <= 2 }
        let closest = distances.map(\.1).min()
        var near = distances.filter { $0.1 == closest }.map(\.0)
        if near.isEmpty, word.count >= 3 { near = names.filter { $0.hasPrefix(word) } }
        let hint = near.isEmpty ? "" : "; did you mean \(near.map { "'\($0)'" }.joined(separator: " or "))?"
        return "'\(word)' is not a subcommand\(hint)"
    }

    /// Levenshtein distance, for the suggestion.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var previous = row[0]
            row[0] = i
            for j in 1...b.count {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return row[b.count]
    }
}

/// The process entry point of `fledge` and `kubectl-fledge`.
public enum CommandLineEntry {
    /// The executable names that make the binary act as the kubectl plugin.
    static let pluginNames: Set<String> = ["kubectl-fledge"]

    /// Whether argv[0] names the kubectl plugin.
    public static func invokedAsPlugin(_ argument0: String?) -> Bool {
        pluginNames.contains(URL(fileURLWithPath: argument0 ?? "fledge").lastPathComponent)
    }

    /// Parses and runs the command line, and exits: 0 on success; errors print one line on stderr
    /// (`Error: …`, no usage dump, no stack trace) and exit non-zero.
    public static func main(arguments: [String] = CommandLine.arguments) async -> Never {
        let rest = Array(arguments.dropFirst())
        // Completion scripts are for the `fledge` command: shell function names cannot hold "kubectl fledge".
        if invokedAsPlugin(arguments.first), !rest.contains(where: { $0.hasPrefix("--generate-completion-script") }) {
            await run(KubectlFledge.self, rest, displayName: "kubectl fledge")
        } else {
            await run(Fledge.self, rest, displayName: "fledge")
        }
    }

    static func run<Root: ParsableCommand>(_ root: Root.Type, _ arguments: [String], displayName: String) async -> Never {
        // A mistyped subcommand was "2 unexpected arguments: 'stauts', 'product-service'".
        // `help WORD` too: it printed the top-level help and exited 0.
        let named = arguments.first == "help" ? arguments.dropFirst().first : arguments.first
        if let named, let message = unknownSubcommand(named, of: root) {
            StandardError.write("Error: \(message) (see '\(displayName) --help')")
            exit(ExitCode.validationFailure.rawValue)
        }
        do {
            var command = try root.parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            exit(0)
        } catch {
            let code = root.exitCode(for: error)
            if code == .success {
                // --help, --version, --generate-completion-script: their text is the output.
                print(root.fullMessage(for: error))
                exit(0)
            }
            let message = root.message(for: error)
            if !message.isEmpty {
                var line = "Error: " + message.split(whereSeparator: \.isNewline).joined(separator: " ")
                if code == .validationFailure {
                    let subcommand = root.configuration.subcommands.first { $0._commandName == arguments.first }
                    line += " (see '\(displayName)\(subcommand.map { " " + $0._commandName } ?? "") --help')"
                }
                StandardError.write(line)
            }
            exit(code.rawValue)
        }
    }
}
