import ArgumentParser
import FledgeJSON
import FledgeSandbox
import Foundation

/// `fledge-bench sandbox-delete`: deletes per second in the sandbox's store while it holds many objects. Every
/// delete runs the garbage collector, which looks for the deleted object's dependents; this shows what that search
/// costs as the store grows (it filters to dependents first and sorts only those).
struct SandboxDeleteBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox-delete",
        abstract: "Sandbox deletes per second (each one garbage-collecting) with many other objects stored.")

    @Option(help: "Objects stored besides the ones deleted (ConfigMaps in one namespace, a tenth with an owner).")
    var objects: Int = 20_000

    @Option(help: "Owners deleted, each with two dependents that go with it.")
    var deletes: Int = 200

    func validate() throws {
        guard objects >= 0 else { throw ValidationError("--objects must be zero or more") }
        guard deletes > 0 else { throw ValidationError("--deletes must be positive") }
    }

    mutating func run() async throws {
        // The store is used directly: nothing here needs the server to listen.
        let store = SandboxServer(configuration: .init(simulatePods: false, requireNamespaces: false)).store
        func configMap(_ name: String, owner: JSONValue? = nil) -> JSONValue {
            var metadata: JSONValue = ["name": .string(name), "namespace": "bench"]
            if let owner {
                metadata["ownerReferences"] = [[
                    "apiVersion": "v1", "kind": "ConfigMap", "name": owner[path: ["metadata", "name"]] ?? "",
                    "uid": owner[path: ["metadata", "uid"]] ?? "",
                ]]
            }
            return ["apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": ["key": "value"]]
        }
        let anchor = try await store.apply([configMap("anchor")])[0]
        var filler: [JSONValue] = []
        for index in 0..<objects { filler.append(configMap("filler-\(index)", owner: index % 10 == 0 ? anchor : nil)) }
        try await store.apply(filler)
        var owners: [String] = []
        for index in 0..<deletes {
            let owner = try await store.apply([configMap("owner-\(index)")])[0]
            try await store.apply([configMap("owner-\(index)-a", owner: owner), configMap("owner-\(index)-b", owner: owner)])
            owners.append("owner-\(index)")
        }
        let before = await store.count(.configMaps)
        let start = ContinuousClock.now
        for name in owners { try await store.remove(.configMaps, namespace: "bench", name: name) }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let after = await store.count(.configMaps)
        guard before - after == deletes * 3 else {
            throw ValidationError("expected \(deletes * 3) ConfigMaps gone (owners and dependents), \(before - after) went")
        }
        print("sandbox-delete: \(deletes) owners (+\(deletes * 2) dependents collected) among \(before) stored objects")
        print(String(format: "  %.0f deletes/s, %.3f ms each", Double(deletes) / seconds, seconds / Double(deletes) * 1000))
    }
}
