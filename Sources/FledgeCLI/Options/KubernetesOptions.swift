import ArgumentParser
import Foundation
import FledgeKubernetes

/// Which cluster, user and namespace, as kubectl takes them; shared by every command that talks to the API server.
struct KubernetesOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).", valueName: "file"))
    var kubeconfig: String?

    @Option(help: ArgumentHelp("The kubeconfig context to use (default: its current-context).", valueName: "name"))
    var context: String?

    @Option(name: [.short, .long], help: ArgumentHelp("The namespace (default: the context's namespace).", valueName: "namespace"))
    var namespace: String?

    func validate() throws {
        if let kubeconfig, kubeconfig.isEmpty { throw ValidationError("--kubeconfig: must not be empty") }
        if let context, context.isEmpty { throw ValidationError("--context: must not be empty") }
        try Self.validateNamespace(namespace)
    }

    /// Every command's `-n`/`--namespace` takes a Kubernetes namespace name, a DNS-1123 label: anything else would
    /// only be refused by the API server later, or match nothing at all.
    static func validateNamespace(_ namespace: String?) throws {
        if let namespace, !KubernetesOptions.isDNSLabel(namespace) {
            throw ValidationError("--namespace: \"\(namespace)\" is not a valid namespace name (lowercase letters, digits and '-', at most 63)")
        }
    }

    /// The configuration kubectl would use with these flags.
    func configuration() throws(CLIError) -> KubernetesConfiguration {
        do {
            if let kubeconfig {
                return try Kubeconfig.load(paths: [kubeconfig]).configuration(context: context)
            }
            return try KubernetesConfiguration.load(context: context)
        } catch {
            throw CLIError(kubernetes: error)
        }
    }

    /// A client and the namespace commands work in.
    func connect() throws(CLIError) -> Cluster {
        let configuration = try configuration()
        return Cluster(client: KubernetesClient(configuration: configuration), namespace: namespace ?? configuration.namespace)
    }

    /// A command line to suggest in a hint, e.g. `fledge abort product-service -n shop`: with the namespace the
    /// command worked in, and the --context and --kubeconfig given to this one (the defaults need none), so that
    /// it reaches the same Rollout when pasted. `kubectl fledge` when run as the plugin.
    func suggestion(_ subcommand: String, _ rollout: String, namespace: String) -> String {
        var words = [CommandLineEntry.invokedAsPlugin(CommandLine.arguments.first) ? "kubectl fledge" : "fledge", subcommand, rollout, "-n", namespace]
        if let context { words += ["--context", context] }
        if let kubeconfig { words += ["--kubeconfig", kubeconfig] }
        return words.enumerated().map { $0.offset == 0 ? $0.element : Self.shellQuoted($0.element) }.joined(separator: " ")
    }

    /// `word` as a shell reads it back: as it is when it has nothing special, else in single quotes.
    static func shellQuoted(_ word: String) -> String {
        let plain = !word.isEmpty && word.unicodeScalars.allSatisfy { c in
            ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) || "-_./:=@%+,".unicodeScalars.contains(c)
        }
        return plain ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    static func isDNSLabel(_ text: String, maximum: Int = 63) -> Bool {
        guard !text.isEmpty, text.count <= maximum, let first = text.first, let last = text.last else { return false }
        let allowed = text.allSatisfy { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "-" }
        return allowed && first != "-" && last != "-"
    }

    /// Rollout names are DNS-1123 subdomains, as for any Kubernetes object: at most 253 characters, '.'-separated
    /// parts of lowercase letters, digits and '-' (no length per part, as Kubernetes has it).
    static func isObjectName(_ text: String) -> Bool {
        guard !text.isEmpty, text.count <= 253 else { return false }
        return text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { isDNSLabel(String($0), maximum: 253) }
    }
}

/// A connected client plus the namespace a command works in.
struct Cluster: Sendable {
    let client: KubernetesClient
    let namespace: String
    var server: String { client.configuration.server }
}
