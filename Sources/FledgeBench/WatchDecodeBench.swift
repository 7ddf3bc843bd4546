import ArgumentParser
import FledgeJSON
import FledgeKubernetes
import Foundation

/// `fledge-bench watch-decode`: watch event lines parsed per second by the
/// client's parser, against Foundation's JSONSerialization on the same lines.
struct WatchDecodeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch-decode",
        abstract: "Kubernetes watch events parsed per second (target ≥ 50,000/s), against JSONSerialization.")

    @Option(help: "Number of distinct event lines.")
    var events: Int = 20_000

    @Option(help: "Timed rounds per parser; the best round is reported.")
    var rounds: Int = 5

    func validate() throws {
        guard events > 0 else { throw ValidationError("--events must be positive") }
        guard rounds > 0 else { throw ValidationError("--rounds must be positive") }
    }

    mutating func run() async throws {
        let lines = (0..<events).map { watchEventLine(index: $0) }
        let bytes = lines.reduce(0) { $0 + $1.count }
        print("watch-decode: \(events) events, average \(bytes / events) bytes per line")

        var checksum = 0
        let ours = try best(rounds) {
            for line in lines {
                let event = try WatchEvent(parsing: line)
                if event.type == .modified { checksum &+= 1 }
            }
        }
        let datas = lines.map { Data($0) }
        let foundation = try best(rounds) {
            for data in datas {
                let value = try JSONSerialization.jsonObject(with: data) as? [String: Any]
                if value?["type"] as? String == "MODIFIED" { checksum &+= 1 }
            }
        }
        let oursRate = Double(events) / ours
        let baseRate = Double(events) / foundation
        print(String(format: "  FledgeKubernetes WatchEvent  %10.0f events/s  (%6.1f MB/s)", oursRate, Double(bytes) / ours / 1e6))
        print(String(format: "  baseline JSONSerialization   %10.0f events/s  (%6.1f MB/s)", baseRate, Double(bytes) / foundation / 1e6))
        print(String(format: "  ratio: %.2f× the baseline; target ≥ 50,000 events/s: %@", oursRate / baseRate, oursRate >= 50_000 ? "met" : "NOT met"))
        if checksum == 0 { print("(no MODIFIED events?)") }
    }
}

/// Times `body` `rounds` times and returns the fastest, in seconds.
func best(_ rounds: Int, _ body: () throws -> Void) rethrows -> Double {
    var fastest = Double.infinity
    for _ in 0..<rounds {
        let start = ContinuousClock.now
        try body()
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        fastest = min(fastest, seconds)
    }
    return fastest
}

/// A realistic watch event: a Deployment as the API server sends it (managedFields included).
func watchEventLine(index: Int) -> [UInt8] {
    let type = ["ADDED", "MODIFIED", "MODIFIED", "DELETED"][index % 4]
    let object = deploymentObject(index: index, namespace: "team-\(index % 50)")
    return JSONValue.object(["type": .string(type), "object": object]).serialized()
}

func deploymentObject(index: Int, namespace: String) -> JSONValue {
    let name = "service-\(index)"
    return [
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": [
            "name": .string(name), "namespace": .string(namespace), "uid": .string("6f1c2b7e-0000-4000-8000-\(String(format: "%012d", index))"),
            "resourceVersion": .string(String(100_000 + index)), "generation": 4,
            "creationTimestamp": "2026-11-26T10:00:00Z",
            "labels": ["app": .string(name), "version": "v1", "team": "catalog"],
            "annotations": ["deployment.kubernetes.io/revision": "3", "fledge.dev/managed": "true"],
            "managedFields": [[
                "manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "apps/v1",
                "time": "2026-11-26T10:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": ["f:spec": ["f:replicas": [:], "f:template": ["f:spec": ["f:containers": [:]]]]],
            ]],
        ],
        "spec": [
            "replicas": 3, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "selector": ["matchLabels": ["app": .string(name), "version": "v1"]],
            "strategy": ["type": "RollingUpdate", "rollingUpdate": ["maxSurge": "25%", "maxUnavailable": "25%"]],
            "template": [
                "metadata": ["labels": ["app": .string(name), "version": "v1"]],
                "spec": [
                    "containers": [[
                        "name": "app", "image": .string("registry.example/\(name):1.4.\(index % 10)"),
                        "ports": [["containerPort": 8080, "protocol": "TCP"]],
                        "resources": ["requests": ["cpu": "100m", "memory": "128Mi"], "limits": ["memory": "256Mi"]],
                        "readinessProbe": ["httpGet": ["path": "/healthz", "port": 8080], "periodSeconds": 5],
                        "env": [["name": "LOG_LEVEL", "value": "info"], ["name": "RATIO", "value": "0.25"]],
                    ]],
                    "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                ],
            ],
        ],
        "status": [
            "observedGeneration": 4, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
            "conditions": [[
                "type": "Available", "status": "True", "lastUpdateTime": "2026-11-26T10:01:00Z",
                "lastTransitionTime": "2026-11-26T10:01:00Z", "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
            ]],
        ],
    ]
}
