import ArgumentParser
import FledgeController
import FledgeHTTP
import FledgeKubernetes
import Foundation
import Logging
import ServiceLifecycle

/// `fledge run`: the controller, in the foreground until SIGTERM/SIGINT.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the rollout controller.",
        discussion: """
            Watches Rollouts and the Deployments, VirtualServices and DestinationRules they name, and drives each \
            rollout through its stages, promoting or rolling back as the metrics dictate. Uses the in-cluster \
            service account, or the kubeconfig like kubectl. Serves /healthz, /readyz and /metrics on --metrics-port.

              fledge run --prometheus http://prometheus.istio-system:9090 --leader-elect
            """)

    @Option(help: ArgumentHelp("Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).", valueName: "file"))
    var kubeconfig: String?

    @Option(help: ArgumentHelp("The kubeconfig context to use (default: its current-context).", valueName: "name"))
    var context: String?

    @Option(help: "Prometheus URL for Rollouts that do not name their own.")
    var prometheus: String?

    /// Credentials and TLS for `--prometheus` only: a Rollout naming its own Prometheus never receives them.
    @OptionGroup var prometheusAccess: PrometheusAccessOptions

    // `.unconditional`: the documented `--metrics-port -1` is the value, not a short option named 1.
    @Option(parsing: .unconditional, help: "Port for /healthz, /readyz and /metrics (0 picks a free port; -1 turns the server off).")
    var metricsPort: Int = 8080

    @Option(help: "Address the metrics server listens on.")
    var metricsHost: String = "0.0.0.0"

    @Option(name: [.customShort("n"), .long], help: "Only watch this namespace (default: all namespaces).")
    var namespace: String?

    @Option(name: [.customShort("l"), .long], help: "Only Rollouts matching this label selector (shard a large estate).")
    var selector: String?

    @Flag(help: "Elect a leader through a Lease so that only one replica writes.")
    var leaderElect = false

    @Option(
        help: """
            Namespace of the leader Lease (default: $POD_NAMESPACE, else the namespace of the kubeconfig's context or of the \
            service account; never the watched -n namespace).
            """)
    var leaderElectNamespace: String?

    @Option(
        help: """
            Name of the leader Lease (default: fledge-controller; with -n or -l, fledge-controller- and a hash of the namespace and \
            selector, so that each shard elects its own leader).
            """)
    var leaseName: String?

    @Option(help: "This replica's name in the Lease and in Events (default: $POD_NAME, else <host name>-<process id>).")
    var identity: String?

    @Option(help: "Parallel reconciles.")
    var workers: Int = 4

    @Option(help: "Log format: logfmt or json.")
    var logFormat: String = "logfmt"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard (-1...65535).contains(metricsPort) else {
            throw ValidationError("--metrics-port must be between -1 and 65535, got \(metricsPort)")
        }
        guard StructuredLogHandler.Format(rawValue: logFormat) != nil else {
            throw ValidationError("--log-format must be logfmt or json, got '\(logFormat)'")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; got '\(logLevel)'")
        }
        try KubernetesOptions.validateNamespace(namespace)
        guard workers >= 1, workers <= 64 else { throw ValidationError("--workers must be between 1 and 64, got \(workers)") }
        try prometheusAccess.validate(optionalURL: prometheus)
        if let selector {
            // The API server answers a bad selector with 400 on every list, which the watches would retry forever.
            do {
                _ = try LabelSelector(parsing: selector)
            } catch {
                throw ValidationError("--selector: \(error.message)")
            }
        }
        if let leaseName, !Self.isDNSSubdomain(leaseName) {
            throw ValidationError(
                "--lease-name must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters), got '\(leaseName)'")
        }
        if let leaderElectNamespace, !Self.isDNSLabel(leaderElectNamespace) {
            throw ValidationError(
                "--leader-elect-namespace must be a namespace name (lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters), got '\(leaderElectNamespace)'")
        }
        if let kubeconfig, !FileManager.default.fileExists(atPath: kubeconfig) {
            throw ValidationError("--kubeconfig \(kubeconfig): no such file")
        }
    }

    /// This replica's name: `--identity`, else `$POD_NAME` (the downward API in deploy/deployment.yaml), else
    /// `<host name>-<process id>`.
    func resolvedIdentity(environment: [String: String], hostName: String, processID: Int32) -> String {
        identity ?? environment["POD_NAME"].flatMap { $0.isEmpty ? nil : $0 } ?? "\(hostName)-\(processID)"
    }

    /// The Lease this replica elects through. Its namespace is `--leader-elect-namespace`, else `$POD_NAMESPACE`,
    /// else `ownNamespace` (the kubeconfig context's or the service account's): the controller's own namespace,
    /// where its RBAC lets it write Leases, never the namespace it watches. Its name is `--lease-name`, else one per
    /// shard (`LeaderElectionConfiguration.defaultLeaseName`), so that shards never wait on each other's leader.
    func leaderElection(environment: [String: String], ownNamespace: String) -> LeaderElectionConfiguration {
        LeaderElectionConfiguration(
            namespace: leaderElectNamespace ?? environment["POD_NAMESPACE"].flatMap { $0.isEmpty ? nil : $0 } ?? ownNamespace,
            leaseName: leaseName
                ?? LeaderElectionConfiguration.defaultLeaseName(namespace: namespace.map { .named($0) } ?? .all, labelSelector: selector))
    }

    /// A DNS-1123 label: what a namespace name must be.
    static func isDNSLabel(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        func alphanumeric(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) }
        guard let first = bytes.first, let last = bytes.last, bytes.count <= 63 else { return false }
        return alphanumeric(first) && alphanumeric(last) && bytes.allSatisfy { alphanumeric($0) || $0 == 0x2D }
    }

    /// A DNS-1123 subdomain: what a Lease's name must be.
    static func isDNSSubdomain(_ text: String) -> Bool {
        text.utf8.count <= 253 && text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { isDNSLabel(String($0)) }
    }

    func run() async throws {
        let format = StructuredLogHandler.Format(rawValue: logFormat)!
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { StructuredLogHandler(label: $0, format: format, level: level) }
        let logger = Logger(label: "fledge.controller")

        var environment = ProcessInfo.processInfo.environment
        if let kubeconfig { environment["KUBECONFIG"] = kubeconfig }
        let kubernetes: KubernetesConfiguration
        do {
            kubernetes = try KubernetesConfiguration.load(context: context, environment: environment)
        } catch {
            // Said as the other commands say it ("kubeconfig: FILE: contexts: …").
            throw CLIError(kubernetes: error)
        }
        let client = KubernetesClient(configuration: kubernetes, logger: logger)

        var configuration = ControllerConfiguration()
        configuration.namespace = namespace.map { .named($0) } ?? .all
        configuration.labelSelector = selector
        configuration.prometheusURL = prometheus
        // Every Prometheus gets --prometheus-timeout, also those a Rollout names (spec.analysis.prometheus.address).
        configuration.requestTimeout = prometheusAccess.requestTimeout
        configuration.workers = workers
        let env = ProcessInfo.processInfo.environment
        configuration.identity = resolvedIdentity(
            environment: env, hostName: ProcessInfo.processInfo.hostName, processID: ProcessInfo.processInfo.processIdentifier)
        if leaderElect {
            configuration.leaderElection = leaderElection(environment: env, ownNamespace: kubernetes.namespace)
        }
        let controller = Controller(
            client: client, configuration: configuration, http: CurlHTTPClient(logger: logger),
            prometheus: prometheus.map { prometheusAccess.makeClient(url: $0, logger: logger) }, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: controller)]
        if metricsPort >= 0 {
            let host = metricsHost
            services.append(
                .init(
                    service: HealthServer(
                        controller: controller, host: host, port: metricsPort, logger: logger,
                        onBound: { port in logger.info("serving /healthz, /readyz and /metrics", metadata: ["address": "\(host):\(port)"]) })))
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch let error as HealthServer.ListenError {
            throw CLIError(
                error.addressInUse
                    ? "\(error.host):\(error.port) is already in use by another process; --metrics-port sets the port of /healthz, /readyz and /metrics: pick another, 0 for a free one, or -1 to turn the server off"
                    : "cannot listen on \(error.host):\(error.port) for /healthz, /readyz and /metrics: \(error.reason) (--metrics-host sets the address, --metrics-port the port; -1 turns the server off)")
        }
    }
}
