import ArgumentParser
import FledgeJSON
import FledgeKubernetes
import FledgeSandbox
import Foundation

/// `fledge-bench list-decode`: a list of 10,000 objects fetched from the sandbox
/// API server and decoded by the client, against `curl` fetching the same URL
/// and Foundation decoding the same bytes.
struct ListDecodeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list-decode",
        abstract: "Fetch and decode a 10,000-object list from the sandbox (target < 1 s), against curl + JSONSerialization.")

    @Option(help: "Objects in the list.")
    var objects: Int = 10_000

    @Option(help: "Timed rounds; the best round is reported.")
    var rounds: Int = 3

    @Flag(help: "Serve the sandbox over HTTPS.")
    var tls = false

    func validate() throws {
        guard objects > 0 else { throw ValidationError("--objects must be positive") }
        guard rounds > 0 else { throw ValidationError("--rounds must be positive") }
    }

    mutating func run() async throws {
        let token = "bench-token"
        let certificates = tls ? try SandboxCertificates.generate() : nil
        let server = SandboxServer(
            configuration: .init(tls: certificates, tokens: [token: .admin()], simulatePods: false, requireNamespaces: false))
        let url = try await server.start()
        do {
            try await measure(server: server, url: url, token: token, certificates: certificates)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    private func measure(server: SandboxServer, url: URL, token: String, certificates: SandboxCertificates?) async throws {
        var seed: [JSONValue] = []
        seed.reserveCapacity(objects)
        for index in 0..<objects { seed.append(virtualService(index: index)) }
        _ = try await server.store.apply(seed, defaultNamespace: "bench")

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let kubeconfig = folder.appendingPathComponent("kubeconfig").path
        try server.kubeconfig(token: token, namespace: "bench").write(toFile: kubeconfig, atomically: true, encoding: .utf8)
        let client = KubernetesClient(configuration: try Kubeconfig.load(paths: [kubeconfig]).configuration())

        // Warm the connection once, then time.
        _ = try await client.list(.virtualServices, limit: 1)
        var count = 0
        let oneRequest = try await bestAsync(rounds) {
            count = try await client.list(.virtualServices).items.count
        }
        guard count == objects else { throw ValidationError("listed \(count) objects, expected \(objects)") }
        let paged = try await bestAsync(rounds) {
            count = try await client.listAll(.virtualServices, pageSize: 500).items.count
        }

        // Baselines: one curl process fetching the same URL, and Foundation decoding the same bytes.
        let listURL = url.absoluteString + "/apis/networking.istio.io/v1/namespaces/bench/virtualservices"
        let body = folder.appendingPathComponent("body.json").path
        var curlArguments = ["-sS", "--fail", "-o", body, "-H", "Authorization: Bearer \(token)", "-H", "Accept: application/json"]
        if let certificates {
            let ca = folder.appendingPathComponent("ca.pem").path
            try certificates.certificateAuthorityPEM.write(toFile: ca, atomically: true, encoding: .utf8)
            curlArguments += ["--cacert", ca]
        }
        curlArguments.append(listURL)
        let curl = try best(rounds) { try runCurl(curlArguments) }
        let data = try Data(contentsOf: URL(fileURLWithPath: body))
        let foundation = try best(rounds) {
            let decoded = try JSONSerialization.jsonObject(with: data) as? [String: Any]
            count = (decoded?["items"] as? [Any])?.count ?? 0
        }
        let ourDecode = try best(rounds) {
            count = try JSONValue(parsing: Array(data))["items"]?.arrayValue?.count ?? 0
        }

        let megabytes = Double(data.count) / 1e6
        print("list-decode: \(objects) VirtualServices, \(String(format: "%.1f", megabytes)) MB list, \(url.scheme ?? "http")")
        print(String(format: "  client list (one request), fetch + decode   %7.3f s", oneRequest))
        print(String(format: "  client listAll (pages of 500)               %7.3f s", paged))
        print(String(format: "  baseline curl fetch (one process)           %7.3f s", curl))
        print(String(format: "  baseline JSONSerialization decode           %7.3f s", foundation))
        print(String(format: "  baseline curl + JSONSerialization           %7.3f s", curl + foundation))
        print(String(format: "  (FledgeJSON decode alone                    %7.3f s)", ourDecode))
        print(String(format: "  ratio: %.2f× the curl + Foundation baseline; target < 1 s: %@", oneRequest / (curl + foundation), oneRequest < 1 ? "met" : "NOT met"))
    }
}

func bestAsync(_ rounds: Int, _ body: () async throws -> Void) async rethrows -> Double {
    var fastest = Double.infinity
    for _ in 0..<rounds {
        let start = ContinuousClock.now
        try await body()
        let elapsed = ContinuousClock.now - start
        fastest = min(fastest, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }
    return fastest
}

private func runCurl(_ arguments: [String]) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    process.arguments = arguments
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw ValidationError("curl exited with status \(process.terminationStatus)") }
}

/// A VirtualService shaped like the seed's, with a unique name.
func virtualService(index: Int) -> JSONValue {
    let name = "service-\(index)"
    return [
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": ["name": .string(name), "namespace": "bench", "labels": ["app": .string(name), "team": "catalog"]],
        "spec": [
            "hosts": [.string(name)],
            "http": [
                ["name": "canary-header", "match": [["headers": ["x-canary": ["exact": "true"]]]],
                 "route": [["destination": ["host": .string(name), "subset": "canary"]]]],
                ["name": "primary",
                 "route": [["destination": ["host": .string(name), "subset": "stable"], "weight": 90],
                           ["destination": ["host": .string(name), "subset": "canary"], "weight": 10]],
                 "retries": ["attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,reset"], "timeout": "10s"],
            ],
        ],
    ]
}
