import ArgumentParser
import FledgeCore
import FledgeJSON
import FledgeKubernetes
import Foundation

/// `fledge list [-n NS | -A]`: every Rollout with its phase, stage, weight, revision and age.
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List rollouts with their phase, stage, canary weight, revision and age.",
        aliases: ["ls"])

    @Flag(name: [.customShort("A"), .customLong("all-namespaces")], help: "List the rollouts of every namespace.")
    var allNamespaces = false

    @Option(name: [.short, .customLong("output")], help: "Output format: table, or json/yaml for the Rollout objects.")
    var output: ResourceOutputFormat = .table

    @OptionGroup var kubernetes: KubernetesOptions

    func validate() throws {
        if allNamespaces, kubernetes.namespace != nil { throw ValidationError("--namespace and --all-namespaces cannot be used together") }
    }

    func run() async throws {
        let cluster = try kubernetes.connect()
        let list: ObjectList
        do {
            list = try await cluster.client.listAll(.rollouts, namespace: allNamespaces ? .all : .named(cluster.namespace))
        } catch {
            throw cluster.failure(error)
        }
        if output != .table {
            try output.print(["apiVersion": "v1", "kind": "List", "items": .array(list.items), "metadata": ["resourceVersion": .string(list.resourceVersion)]])
            return
        }
        guard !list.items.isEmpty else {
            StandardError.write(allNamespaces ? "No rollouts found." : "No rollouts found in namespace \"\(cluster.namespace)\".")
            return
        }
        print(Self.table(list.items, allNamespaces: allNamespaces, now: Timestamp(Date())))
    }

    static func table(_ items: [JSONValue], allNamespaces: Bool, now: Timestamp) -> String {
        var table = Table(headers: (allNamespaces ? ["NAMESPACE"] : []) + ["NAME", "PHASE", "STAGE", "WEIGHT", "REVISION", "AGE"])
        var rows: [(namespace: String, name: String, cells: [String])] = []
        for item in items {
            let namespace = item[path: ["metadata", "namespace"]]?.stringValue ?? ""
            let name = item[path: ["metadata", "name"]]?.stringValue ?? ""
            let rollout = try? Rollout(json: item)
            let status = rollout?.status
            let stages = rollout?.spec.stages?.count
            let stage = status.flatMap { RolloutStatus.stageProgress(phase: $0.phase, stage: $0.stage, stages: stages) } ?? "-"
            let createdText = item[path: ["metadata", "creationTimestamp"]]?.stringValue
            let created: Timestamp? = createdText.flatMap { Timestamp(rfc3339: $0) }
            var phase: String = status?.phase.rawValue ?? "-"
            if let status, let problem = StatusView.problem(status) { phase += " (\(problem))" }
            let weight: String = status.map { "\($0.canaryWeight)%" } ?? "-"
            let revision: String = status?.revision.map { String($0.prefix(8)) } ?? "-"
            let age: String = created.map { StatusView.age(since: $0, now: now) } ?? "-"
            var cells: [String] = allNamespaces ? [namespace] : []
            cells += [name, phase, stage, weight, revision, age]
            rows.append((namespace, name, cells))
        }
        rows.sort { ($0.namespace, $0.name) < ($1.namespace, $1.name) }
        table.rows = rows.map { $0.cells }
        return table.render()
    }
}
