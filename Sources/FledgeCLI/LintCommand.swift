import ArgumentParser
import FledgeJSON
import FledgeLint
import Foundation

/// `fledge lint PATH... [-o table|json]`: checks Rollouts against the Deployments, VirtualServices and
/// DestinationRules found with them. Exits 1 when any finding is an error.
struct LintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lint",
        abstract: "Check Rollouts and the Istio and Kubernetes manifests around them.",
        discussion: """
            Reads YAML files and folders (recursively, multi-document files too), validates every Rollout and \
            cross-checks it with the VirtualServices, DestinationRules and Deployments found with it: subsets exist \
            and select pods, no dead routes, weights sum to 100, a managed route exists, no weight on a subset whose \
            pods nothing provides. An object the Rollout names that is not among the files is a warning (it may be in \
            the cluster already).

            Files in a folder that hold no Kubernetes object (a kustomization.yaml, a Grafana dashboard) are skipped \
            with an info line; a file named on the command line must hold Kubernetes objects. A file with a YAML \
            syntax error is an error; what the other files' checks would conclude from objects it may hold is then \
            only a warning.

            Findings are sorted by file, line, then severity. Exit status 1 when any finding is an error; warnings \
            and infos alone exit 0; \(usageErrorExit).
            """)

    @Argument(help: "YAML files or folders.")
    var paths: [String]

    @Option(name: [.short, .customLong("output")], help: "Output format: table or json.")
    var output: OutputFormat = .table

    func validate() throws {
        if paths.isEmpty { throw ValidationError("give at least one file or folder") }
    }

    func run() throws {
        let report = Linter.lint(paths: paths)
        switch output {
        case .json:
            let findings: [JSONValue] = report.findings.map { f in
                var o: JSONValue = ["severity": .string(f.severity.rawValue), "file": .string(f.file)]
                o["line"] = f.line.map { .int(Int64($0)) } ?? .null
                o["object"] = f.object.map(JSONValue.string) ?? .null
                o["path"] = f.path.map(JSONValue.string) ?? .null
                o["message"] = .string(f.message)
                return o
            }
            let out: JSONValue = [
                "files": .array(report.files.map(JSONValue.string)), "errors": .int(Int64(report.errors)),
                "warnings": .int(Int64(report.warnings)), "infos": .int(Int64(report.infos)), "findings": .array(findings),
            ]
            print(out.serializedString(pretty: true))
        case .table:
            print(Self.table(report))
        }
        if report.hasErrors { throw ExitCode(1) }
    }

    static func table(_ report: LintReport) -> String {
        var lines: [String] = []
        if !report.findings.isEmpty {
            var table = Table(headers: ["SEVERITY", "LOCATION", "OBJECT", "FIELD", "MESSAGE"])
            table.rows = report.findings.map { f in
                [f.severity.rawValue.uppercased(), f.line.map { "\(f.file):\($0)" } ?? f.file, f.object ?? "-", f.path ?? "-", f.message]
            }
            lines.append(table.render())
            lines.append("")
        }
        lines.append("\(report.files.count) file(s): \(report.errors) error(s), \(report.warnings) warning(s)\(report.infos > 0 ? ", \(report.infos) info" : "")")
        return lines.joined(separator: "\n")
    }
}
