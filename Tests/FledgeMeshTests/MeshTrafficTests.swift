// The simulation without any IO: routing, weights, the header route, blackholes,
// error rates and the exposition format, all with fixed seeds.
import FledgeJSON
import FledgeSandbox
import Foundation
import Testing

@testable import FledgeMesh

/// The repository's rollouts/product-service manifests, plus a canary Deployment.
enum Seed {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static var manifests: [JSONValue] {
        get throws { try ManifestLoader.load(paths: [repository + "/rollouts/product-service"]) }
    }

    static func object(_ kind: String) throws -> JSONValue {
        try #require(try manifests.first { $0["kind"]?.stringValue == kind })
    }

    /// The seed's stable Deployment with `ready` replicas reported ready.
    static func stable(ready: Int64 = 3) throws -> JSONValue {
        var deployment = try object("Deployment")
        deployment["status"] = ["replicas": .int(ready), "readyReplicas": .int(ready)]
        return deployment
    }

    /// `product-service-canary`: the stable template with `version: v2`.
    static func canary(ready: Int64 = 1, version: String = "v2", name: String = "product-service-canary") throws -> JSONValue {
        var deployment = try object("Deployment")
        deployment[path: ["metadata", "name"]] = .string(name)
        deployment[path: ["spec", "selector", "matchLabels", "version"]] = .string(version)
        deployment[path: ["spec", "template", "metadata", "labels", "version"]] = .string(version)
        deployment["status"] = ["replicas": .int(ready), "readyReplicas": .int(ready)]
        return deployment
    }

    static func cluster(stableWeight: Int64 = 90, canaryWeight: Int64 = 10, deployments: [JSONValue]? = nil) throws -> MeshClusterState {
        var virtualService = try object("VirtualService")
        virtualService[path: ["spec", "http"]] = try weighted(virtualService, stable: stableWeight, canary: canaryWeight)
        return MeshClusterState(
            virtualService: virtualService, destinationRules: [try object("DestinationRule")], services: [try object("Service")],
            deployments: try deployments ?? [stable(), canary()])
    }

    /// The seed's routes with the managed route's weights replaced.
    static func weighted(_ virtualService: JSONValue, stable: Int64, canary: Int64) throws -> JSONValue {
        var http = try #require(virtualService[path: ["spec", "http"]]?.arrayValue)
        var route = try #require(http[1]["route"]?.arrayValue)
        route[0]["weight"] = .int(stable)
        route[1]["weight"] = .int(canary)
        http[1]["route"] = .array(route)
        return .array(http)
    }

    static func configuration(
        rps: Double = 100, tagged: Double = 0, arrivals: ArrivalModel = .exact, seed: UInt64 = 7
    ) -> MeshConfiguration {
        MeshConfiguration(
            namespace: "shop", virtualService: "product-service", requestsPerSecond: rps, taggedShare: tagged,
            arrivals: arrivals, seed: seed)
    }
}

@Suite struct MeshTrafficTests {
    @Test func exactArrivalsFollowTheManagedRouteWeights() throws {
        let traffic = try MeshTraffic(configuration: Seed.configuration())
        let cluster = try Seed.cluster()
        var sent = 0
        for _ in 0..<100 { sent += traffic.step(seconds: 0.1, cluster: cluster).total }
        #expect(sent == 1000)
        #expect(traffic.requestCount(workload: "product-service") == 900)
        #expect(traffic.requestCount(workload: "product-service-canary") == 100)
        // The caller's proxy reports the same requests.
        #expect(traffic.requestCount(reporter: "source", workload: "product-service") == 900)
        #expect(traffic.requestCount(reporter: "source", workload: "product-service-canary") == 100)
        #expect(traffic.requestCount(reporter: "source", workload: "unknown") == 0)
    }

    @Test func weightChangesMoveTheSplitFromTheNextStep() throws {
        let traffic = try MeshTraffic(configuration: Seed.configuration())
        traffic.step(seconds: 1, cluster: try Seed.cluster(stableWeight: 100, canaryWeight: 0))
        #expect(traffic.requestCount(workload: "product-service-canary") == 0)
        let tick = traffic.step(seconds: 1, cluster: try Seed.cluster(stableWeight: 25, canaryWeight: 75))
        #expect(tick.requests(toWorkload: "product-service-canary") == 75)
        #expect(tick.requests(toWorkload: "product-service") == 25)
    }

    @Test func taggedRequestsTakeTheHeaderRouteToTheCanary() throws {
        let traffic = try MeshTraffic(configuration: Seed.configuration(tagged: 0.2))
        let cluster = try Seed.cluster(stableWeight: 100, canaryWeight: 0)
        traffic.step(seconds: 10, cluster: cluster)
        // 20 % tagged all reach the canary; the rest follows 100/0.
        #expect(traffic.requestCount(workload: "product-service-canary") == 200)
        #expect(traffic.requestCount(workload: "product-service") == 800)
        let shares = traffic.expectedShares(cluster: try Seed.cluster())
        let canary = try #require(shares.first { $0.key.description == "product-service-canary" }?.value)
        #expect(abs(canary - (0.2 + 0.8 * 0.1)) < 1e-9)
    }

    @Test func aCanarySubsetWithoutReadyPodsIsBlackholedAs503UHOnTheSourceSide() throws {
        let traffic = try MeshTraffic(configuration: Seed.configuration())
        // The seed as it is: 90/10 with no canary pods (a canary Deployment at zero ready).
        let cluster = try Seed.cluster(deployments: [Seed.stable(), Seed.canary(ready: 0)])
        let tick = traffic.step(seconds: 10, cluster: cluster)
        let blackhole = MeshTarget.unavailable(service: "product-service.shop.svc.cluster.local", flag: "UH")
        #expect(tick.requests[blackhole] == 100)
        #expect(tick.failures[blackhole] == 100)
        #expect(traffic.requestCount(workload: "product-service-canary") == 0)
        #expect(traffic.requestCount(reporter: "source", workload: "product-service-canary") == 0)
        #expect(traffic.requestCount(reporter: "source", workload: "unknown", failuresOnly: true) == 100)
        #expect(traffic.requestCount(reporter: "destination", workload: "unknown") == 0)
        let series = try #require(traffic.series().first { $0.labels.destinationWorkload == "unknown" })
        #expect(series.labels.responseCode == 503)
        #expect(series.labels.responseFlags == "UH")
        #expect(series.labels.destinationVersion == "unknown")
        #expect(series.labels.destinationWorkloadNamespace == "unknown")
        #expect(series.labels.destinationService == "product-service.shop.svc.cluster.local")
    }

    @Test func aSubsetLabelTypoSelectsNoPodsAndIsBlackholed() throws {
        var cluster = try Seed.cluster()
        var rule = cluster.destinationRules[0]
        rule[path: ["spec", "subsets"]] = [
            ["name": "stable", "labels": ["version": "v1"]], ["name": "canary", "labels": ["version": "V2"]],
        ]
        cluster.destinationRules = [rule]
        let traffic = try MeshTraffic(configuration: Seed.configuration())
        let tick = traffic.step(seconds: 10, cluster: cluster)
        #expect(tick.requests[.unavailable(service: "product-service.shop.svc.cluster.local", flag: "UH")] == 100)
        #expect(tick.requests(toWorkload: "product-service") == 900)
    }

    @Test func aSubsetMissingFromTheDestinationRuleIsNoRouteCluster() throws {
        var cluster = try Seed.cluster()
        cluster.destinationRules[0][path: ["spec", "subsets"]] = [["name": "stable", "labels": ["version": "v1"]]]
        let traffic = try MeshTraffic(configuration: Seed.configuration())
        let tick = traffic.step(seconds: 10, cluster: cluster)
        #expect(tick.requests[.unavailable(service: "product-service.shop.svc.cluster.local", flag: "NR")] == 100)
    }

    @Test func noVirtualServiceMeansNoTraffic() throws {
        let traffic = try MeshTraffic(configuration: Seed.configuration())
        var cluster = try Seed.cluster()
        cluster.virtualService = nil
        let tick = traffic.step(seconds: 10, cluster: cluster)
        #expect(!tick.routed)
        #expect(tick.total == 0)
        #expect(traffic.series().isEmpty)
    }

    @Test func severalDeploymentsBehindOneSubsetShareByReadyReplicas() throws {
        let cluster = try Seed.cluster(
            stableWeight: 100, canaryWeight: 0,
            deployments: [Seed.stable(ready: 3), Seed.canary(ready: 1, version: "v1", name: "product-service-extra"), Seed.canary()])
        let traffic = try MeshTraffic(configuration: Seed.configuration())
        let tick = traffic.step(seconds: 10, cluster: cluster)
        #expect(tick.requests(toWorkload: "product-service") == 750)
        #expect(tick.requests(toWorkload: "product-service-extra") == 250)
    }

    @Test func errorRatesApplyPerWorkloadAndChangeAtRuntime() throws {
        var configuration = Seed.configuration()
        configuration.behaviours["product-service-canary"] = WorkloadBehaviour(errorRate: 0.1)
        let traffic = try MeshTraffic(configuration: configuration)
        let cluster = try Seed.cluster(stableWeight: 50, canaryWeight: 50)
        traffic.step(seconds: 20, cluster: cluster)
        #expect(traffic.requestCount(workload: "product-service-canary") == 1000)
        #expect(traffic.requestCount(workload: "product-service-canary", failuresOnly: true) == 100)
        #expect(traffic.requestCount(workload: "product-service", failuresOnly: true) == 0)

        try traffic.setBehaviour(workload: "product-service-canary", WorkloadBehaviour(errorRate: 0))
        try traffic.setBehaviour(workload: "product-service", WorkloadBehaviour(errorRate: 0.5, errorCode: 503))
        traffic.step(seconds: 20, cluster: cluster)
        #expect(traffic.requestCount(workload: "product-service-canary", failuresOnly: true) == 100)
        #expect(traffic.requestCount(workload: "product-service", failuresOnly: true) == 500)
        #expect(traffic.series().contains { $0.labels.destinationWorkload == "product-service" && $0.labels.responseCode == 503 })
    }

    @Test func poissonTrafficIsReproducibleFromTheSeed() throws {
        let cluster = try Seed.cluster()
        func run(seed: UInt64) throws -> (String, Int) {
            var configuration = Seed.configuration(rps: 500, arrivals: .poisson, seed: seed)
            configuration.behaviours["product-service-canary"] = WorkloadBehaviour(errorRate: 0.05)
            let traffic = try MeshTraffic(configuration: configuration)
            var total = 0
            for _ in 0..<200 { total += traffic.step(seconds: 0.1, cluster: cluster).total }
            return (traffic.metricsText(), total)
        }
        let (first, total) = try run(seed: 42)
        let (again, _) = try run(seed: 42)
        let (other, _) = try run(seed: 43)
        #expect(first == again)
        #expect(first != other)
        // 10,000 expected: Poisson's standard deviation is 100.
        #expect(abs(total - 10_000) < 500)
    }

    @Test func latenciesFollowTheLogNormalGivenByMedianAndP99() throws {
        var configuration = Seed.configuration(rps: 20_000)
        configuration.defaultBehaviour = WorkloadBehaviour(latency: LatencyDistribution(medianMs: 20, p99Ms: 100))
        let traffic = try MeshTraffic(configuration: configuration)
        traffic.step(seconds: 1, cluster: try Seed.cluster(stableWeight: 100, canaryWeight: 0))
        let samples = try ExpositionSample.parse(traffic.metricsText())
        let labels = "reporter=\"destination\""
        let count = try #require(samples.value("istio_request_duration_milliseconds_count", containing: labels))
        let at25 = try #require(samples.value("istio_request_duration_milliseconds_bucket", containing: labels, le: "25"))
        let at100 = try #require(samples.value("istio_request_duration_milliseconds_bucket", containing: labels, le: "100"))
        #expect(count == 20_000)
        // P(X ≤ 25) = Φ(ln(25/20) / σ) with σ = ln(100/20) / 2.326 → 0.627; P(X ≤ 100) = 0.99.
        #expect(abs(at25 / count - 0.627) < 0.02)
        #expect(abs(at100 / count - 0.99) < 0.005)
    }

    @Test func theExpositionIsWellFormedMonotonicAndUsesIstiosLabelsAndBuckets() throws {
        var configuration = Seed.configuration(tagged: 0.05)
        configuration.behaviours["product-service-canary"] = WorkloadBehaviour(errorRate: 0.2, latency: .init(medianMs: 100, p99Ms: 900))
        let traffic = try MeshTraffic(configuration: configuration)
        let cluster = try Seed.cluster(deployments: [Seed.stable(), Seed.canary(ready: 0)])
        traffic.step(seconds: 2, cluster: cluster)
        let before = try ExpositionSample.parse(traffic.metricsText())
        traffic.step(seconds: 2, cluster: try Seed.cluster())
        let text = traffic.metricsText()
        let after = try ExpositionSample.parse(text)

        #expect(text.contains("# TYPE istio_requests_total counter"))
        #expect(text.contains("# TYPE istio_request_duration_milliseconds histogram"))
        for name in [
            "reporter", "destination_workload", "destination_workload_namespace", "destination_service", "destination_version",
            "response_code", "source_workload", "connection_security_policy",
        ] {
            #expect(after.allSatisfy { $0.labels.contains("\(name)=\"") }, "every series carries \(name)")
        }
        #expect(after.contains { $0.labels.contains("reporter=\"destination\"") && $0.labels.contains("connection_security_policy=\"mutual_tls\"") })
        #expect(after.contains { $0.labels.contains("reporter=\"source\"") && $0.labels.contains("connection_security_policy=\"unknown\"") })
        // Counters never go down.
        for sample in before {
            let later = after.first { $0.name == sample.name && $0.labels == sample.labels }
            #expect(later.map { $0.value >= sample.value } == true, "\(sample.name){\(sample.labels)}")
        }
        // Buckets: Istio's default bounds, cumulative, +Inf equal to _count.
        let series = Set(after.filter { $0.name == "istio_request_duration_milliseconds_count" }.map(\.labels))
        #expect(!series.isEmpty)
        for labels in series {
            let buckets = after.filter { $0.name == "istio_request_duration_milliseconds_bucket" && $0.labels.hasPrefix(labels + ",le=") }
            let bounds = buckets.map { String($0.labels.dropFirst(labels.count + 5).dropLast()) }
            #expect(bounds == [
                "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "30000", "60000",
                "300000", "600000", "1800000", "3600000", "+Inf",
            ])
            let values = buckets.map(\.value)
            #expect(zip(values, values.dropFirst()).allSatisfy { $0 <= $1 })
            let count = after.first { $0.name == "istio_request_duration_milliseconds_count" && $0.labels == labels }?.value
            #expect(values.last == count)
            let requests = after.first { $0.name == "istio_requests_total" && $0.labels == labels }?.value
            #expect(requests == count)
        }
    }

    @Test func badConfigurationIsRejectedNamingTheField() throws {
        var configuration = Seed.configuration()
        configuration.behaviours["product-service-canary"] = WorkloadBehaviour(errorRate: 1.5)
        #expect(throws: MeshError.self) { try MeshTraffic(configuration: configuration) }
        do {
            _ = try MeshTraffic(configuration: configuration)
        } catch {
            #expect(error.message.contains("product-service-canary"))
            #expect(error.message.contains("error rate"))
        }
        var slow = Seed.configuration()
        slow.defaultBehaviour.latency = LatencyDistribution(medianMs: 100, p99Ms: 50)
        #expect(throws: MeshError.self) { try MeshTraffic(configuration: slow) }
        #expect(throws: MeshError.self) { try MeshTraffic(configuration: Seed.configuration(rps: -1)) }
        #expect(throws: MeshError.self) { try MeshTraffic(configuration: Seed.configuration(tagged: 2)) }
        let traffic = try MeshTraffic(configuration: Seed.configuration())
        #expect(throws: MeshError.self) { try traffic.setTaggedShare(-0.1) }
        #expect(throws: MeshError.self) { try traffic.setBehaviour(workload: "x", WorkloadBehaviour(errorRate: .nan)) }
    }
}

/// One line of Prometheus' text format, parsed just enough for the tests.
struct ExpositionSample: Equatable {
    var name: String
    /// The text between the braces.
    var labels: String
    var value: Double

    static func parse(_ text: String) throws -> [ExpositionSample] {
        var samples: [ExpositionSample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let open = try #require(line.firstIndex(of: "{"))
            let close = try #require(line.lastIndex(of: "}"))
            let value = try #require(Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces)))
            samples.append(
                ExpositionSample(name: String(line[..<open]), labels: String(line[line.index(after: open)..<close]), value: value))
        }
        return samples
    }
}

extension [ExpositionSample] {
    /// The sum over series whose labels contain `fragment` (and `le`, for buckets).
    func value(_ name: String, containing fragment: String, le: String? = nil) -> Double? {
        let matching = filter {
            $0.name == name && $0.labels.contains(fragment) && (le == nil || $0.labels.hasSuffix("le=\"\(le!)\""))
        }
        return matching.isEmpty ? nil : matching.reduce(0) { $0 + $1.value }
    }
}
