import ArgumentParser
import FledgeKubernetes
import FledgeMesh
import Foundation
import Logging
import ServiceLifecycle

/// `fledge simulate-mesh`: Istio-shaped traffic and metrics for one VirtualService, without Istio.
struct SimulateMeshCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate-mesh",
        abstract: "Simulate Istio traffic through a VirtualService and serve Istio's metrics for Prometheus.",
        discussion: """
            Watches the VirtualService (and the DestinationRules, Services and Deployments of its \
            namespace), sends --rps requests per second through its routes by their current weights, \
            answers each with the error rate and latency configured for the Deployment that receives \
            it, and serves istio_requests_total and istio_request_duration_milliseconds on /metrics \
            with Istio's labels, for both reporters. A subset whose labels select no ready pod gets \
            503s with response_flags="UH", reported by the source only.

              fledge simulate-mesh --kubeconfig sandbox.kubeconfig -n shop \\
                --virtual-service product-service --rps 200 \\
                --error-rate product-service-canary=0.05 \\
                --p99-ms product-service-canary=900

            Runs until interrupted (SIGINT/SIGTERM).
            """)

    @Option(help: ArgumentHelp("Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).", valueName: "file"))
    var kubeconfig: String?

    @Option(help: ArgumentHelp("The kubeconfig context to use (default: its current-context).", valueName: "name"))
    var context: String?

    @Option(name: .shortAndLong, help: "Namespace of the VirtualService and its workloads.")
    var namespace: String

    @Option(help: "The VirtualService whose routes the traffic follows.")
    var virtualService: String

    @Option(parsing: .unconditional, help: "Requests per second.")
    var rps: Double = 100

    @Option(parsing: .unconditional, help: "Share of requests (0-1) that carry the tag header (x-canary: true), for the header-match route.")
    var taggedShare: Double = 0

    @Option(help: "Header that tags requests, as NAME=VALUE.")
    var taggedHeader: String = "x-canary=true"

    @Option(help: "A workload's error rate (0-1), as DEPLOYMENT=RATE (repeatable).")
    var errorRate: [String] = []

    @Option(help: "A workload's p99 latency in milliseconds, as DEPLOYMENT=MS (repeatable; median defaults to a quarter).")
    var p99Ms: [String] = []

    @Option(help: "A workload's median latency in milliseconds, as DEPLOYMENT=MS (repeatable).")
    var medianMs: [String] = []

    @Option(help: "HTTP status of failed requests.")
    var errorCode: Int = 500

    @Option(help: "Port for /metrics on 127.0.0.1 (0 picks a free one).")
    var port: Int = 0

    @Option(help: "Seed of the random traffic, for reproducible runs.")
    var seed: UInt64 = 1

    @Option(help: "How requests arrive: poisson, or exact (expected counts, carried fractions).")
    var arrivals: ArrivalModel = .poisson

    @Option(parsing: .unconditional, help: "Milliseconds between ticks.")
    var tickMs: Int = 100

    func validate() throws {
        try KubernetesOptions.validateNamespace(namespace)
        _ = try meshConfiguration()
    }

    /// The simulator's configuration from the options; every error names its option.
    func meshConfiguration() throws -> MeshConfiguration {
        guard (1...60_000).contains(tickMs) else { throw ValidationError("--tick-ms must be from 1 to 60000 (a minute), got \(tickMs)") }
        var configuration = MeshConfiguration(
            namespace: namespace, virtualService: virtualService, requestsPerSecond: rps, taggedShare: taggedShare,
            arrivals: arrivals, seed: seed, tickInterval: .milliseconds(tickMs), metricsPort: port)
        let header = taggedHeader.split(separator: "=", maxSplits: 1)
        guard header.count == 2, !header[0].isEmpty else {
            throw ValidationError("--tagged-header: \"\(taggedHeader)\" is not NAME=VALUE")
        }
        configuration.taggedHeaderName = String(header[0])
        configuration.taggedHeaderValue = String(header[1])
        configuration.defaultBehaviour.errorCode = errorCode

        let errorRates = try Self.assignments(errorRate, option: "--error-rate")
        let p99s = try Self.assignments(p99Ms, option: "--p99-ms")
        let medians = try Self.assignments(medianMs, option: "--median-ms")
        // Checked here, where the flag is known: the median derived from a p99 would otherwise be named instead.
        for (option, latencies, quantity) in [("--p99-ms", p99s, "p99"), ("--median-ms", medians, "median")] {
            for (workload, ms) in latencies.sorted(by: { $0.key < $1.key }) where !(ms > 0 && ms <= Self.maximumLatencyMs) {
                throw ValidationError(
                    "\(option) \(workload): the \(quantity) latency must be above 0 and at most \(Int(Self.maximumLatencyMs)) ms (an hour), got \(QueryCommand.decimal(ms))")
            }
        }
        for workload in Set(errorRates.keys).union(p99s.keys).union(medians.keys) {
            var behaviour = configuration.defaultBehaviour
            if let rate = errorRates[workload] { behaviour.errorRate = rate }
            switch (medians[workload], p99s[workload]) {
            case let (median?, p99?): behaviour.latency = LatencyDistribution(medianMs: median, p99Ms: p99)
            case let (nil, p99?): behaviour.latency = LatencyDistribution(p99Ms: p99)
            case let (median?, nil): behaviour.latency = LatencyDistribution(medianMs: median, p99Ms: median * 4)
            case (nil, nil): break
            }
            configuration.behaviours[workload] = behaviour
        }
        do {
            try configuration.validate()
        } catch {
            // Name the options, not the configuration's fields.
            var message = error.message
            for (field, option) in [
                ("requestsPerSecond", "--rps"), ("taggedShare", "--tagged-share"), ("metricsPort", "--port"),
                ("defaultBehaviour", "--error-code"),
            ] {
                message = message.replacingOccurrences(of: field, with: option)
            }
            message = message.replacingOccurrences(of: "behaviour of ", with: "--error-rate/--p99-ms/--median-ms for ")
            throw ValidationError(message)
        }
        return configuration
    }

    /// The workloads given settings that match no Deployment, and are not the canary Fledge will make of one (a typo
    /// in a name otherwise changes nothing, silently), sorted.
    static func unmatched(_ workloads: [String], deployments: [String]) -> [String] {
        let known = Set(deployments)
        return workloads.filter { name in
            !known.contains(name) && !(name.hasSuffix("-canary") && known.contains(String(name.dropLast("-canary".count))))
        }.sorted()
    }

    /// The longest latency a workload may be given: an hour.
    static let maximumLatencyMs: Double = 3_600_000

    /// `NAME=NUMBER` options into a map.
    static func assignments(_ values: [String], option: String) throws -> [String: Double] {
        var out: [String: Double] = [:]
        for value in values {
            let parts = value.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty, let number = Double(parts[1]), number.isFinite else {
                throw ValidationError("\(option): \"\(value)\" is not DEPLOYMENT=NUMBER")
            }
            out[String(parts[0])] = number
        }
        return out
    }

    func run() async throws {
        let logger = Logger(label: "fledge.mesh")
        let configuration = try meshConfiguration()
        let client: KubernetesClient
        do {
            if let kubeconfig {
                client = KubernetesClient(configuration: try Kubeconfig.load(paths: [kubeconfig]).configuration(context: context))
            } else {
                client = try KubernetesClient.load(context: context)
            }
        } catch {
            // As the other commands: not a usage error (the flags parsed), one line naming the file and field.
            throw CLIError(kubernetes: error)
        }
        let simulator = try MeshSimulator(configuration: configuration, kubernetes: client, logger: logger)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: simulator), .init(service: Announcer(simulator: simulator))],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        do {
            try await group.run()
        } catch let error as MeshError where error.kind == .addressInUse {
            // As fledge run and fledge sandbox say it, naming the flag.
            throw CLIError("127.0.0.1:\(port) is already in use by another process; --port sets the port of /metrics: pick another, or 0 for a free one")
        }
    }

    /// Says where /metrics is once the simulator is ready, then idles until shutdown.
    struct Announcer: Service {
        let simulator: MeshSimulator

        func run() async throws {
            // A shutdown may come while the caches cannot fill (the API server unreachable): the group waits for
            // this service to end before it stops the simulator, so the wait must end with it.
            let simulator = self.simulator
            guard await cancelWhenGracefulShutdown({ await simulator.waitUntilReady() }) else {
                // The simulator stopped (its error ends the group) or a shutdown came: ending here first would make the
                // group report this service as finished unexpectedly instead of the simulator's error.
                try? await gracefulShutdown()
                return
            }
            let configuration = simulator.configuration
            var lines = "fledge simulate-mesh: metrics on \(simulator.metricsURL)  (Prometheus target \(simulator.metricsAddress))\n"
            lines += "fledge simulate-mesh: \(configuration.requestsPerSecond) req/s through \(configuration.namespace)/\(configuration.virtualService): "
            lines += MeshSimulator.describe(simulator.traffic.expectedShares(cluster: simulator.clusterState())) + "\n"
            lines += "fledge simulate-mesh: press Ctrl-C to stop\n"
            FileHandle.standardOutput.write(Data(lines.utf8))
            let deployments = simulator.clusterState().deployments.compactMap { $0[path: ["metadata", "name"]]?.stringValue }
            for name in SimulateMeshCommand.unmatched(Array(configuration.behaviours.keys), deployments: deployments) {
                StandardError.write(
                    "fledge simulate-mesh: warning: --error-rate/--p99-ms/--median-ms name \(name), which is neither a Deployment in \(configuration.namespace) nor the canary of one (DEPLOYMENT-canary): its settings apply to nothing")
            }
            try? await gracefulShutdown()
        }
    }
}

extension ArrivalModel: ExpressibleByArgument {}
