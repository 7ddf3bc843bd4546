import ArgumentParser
import FledgeController
import FledgeCore
import FledgeHTTP
import FledgeJSON
import FledgeKubernetes
import FledgeMesh
import FledgeSandbox
import Foundation
import LocalPrometheus
import Logging
import ServiceLifecycle

/// `fledge demo`: a whole rollout on one machine, no cluster: API server, mesh, Prometheus and controller in one process.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Watch Fledge roll out product-service on this machine, with no cluster.",
        discussion: """
            Starts, in this process, a Kubernetes API server (TLS, token) loaded with deploy/crds and \
            rollouts/product-service/, a simulated Istio mesh sending --rps requests per second through the \
            VirtualService, a real Prometheus scraping the mesh and the controller every second, and the Fledge \
            controller; then triggers a rollout of product-service to --image and shows it live (as \
            `fledge status --watch`) until the canary is promoted or rolled back. Every server and process it \
            started is stopped at the end, and on Ctrl-C or SIGTERM.

              fledge demo                            # promoted about 90 s in
              fledge demo --canary-error-rate 0.05   # rolled back
              fledge demo --canary-p99-ms 900        # rolled back
              fledge demo --hold 2s --interval 2s    # quicker

            and meanwhile, in another terminal:

              KUBECONFIG=fledge-demo.kubeconfig kubectl get rollouts -n shop -w

            The rollout keeps the seed's timings (holds 20s, analysis every 10s); --hold and --interval shorten \
            them, for a quicker look or for tests. Needs Debian's prometheus package (./scripts/setup.sh, or \
            sudo apt-get install prometheus). With -o json the live view goes to stderr and the last line on \
            stdout is a summary: {"rollout": …, "phase": …, "revision": …, "stableImage": …, "canaryWeight": …, \
            "durationSeconds": …}.

            Exit status: 0 when the rollout ran to an end (Succeeded, Failed or Aborted: a rollback is a \
            successful demo, check the phase); 1 on an error (prometheus missing, a server that cannot start, \
            bad manifests); 2 when --timeout passed first; 130 when interrupted (SIGINT or SIGTERM); \(usageErrorExit).
            """)

    @Option(help: ArgumentHelp("The canary's image: the change the demo rolls out.", valueName: "image"))
    var image: String = "registry.example/product-service:2.0.0"

    @Option(parsing: .unconditional, help: ArgumentHelp("Share of the canary's requests (0-1) that fail with 500 (e.g. 0.05 for a rollback).", valueName: "rate"))
    var canaryErrorRate: Double = 0

    @Option(parsing: .unconditional, help: ArgumentHelp("The canary's p99 latency in ms (e.g. 900 for a rollback; default: as stable, 100).", valueName: "ms"))
    var canaryP99Ms: Double?

    @Option(parsing: .unconditional, help: ArgumentHelp("Requests per second through the mesh. Enough for the statistical judge to accept each stage within its hold.", valueName: "rps"))
    var rps: Double = DemoCommand.defaultRequestsPerSecond

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("Override every stage's hold (the seed's is 20s), e.g. 2s for a quick run.", valueName: "duration"),
        transform: parseDuration)
    var hold: Duration?

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("Override the analysis interval (the seed's is 10s; at least 2s: Prometheus scrapes every second).", valueName: "duration"),
        transform: parseDuration)
    var interval: Duration?

    @Option(help: ArgumentHelp("Where to write the kubeconfig for kubectl (removed when the demo ends).", valueName: "file"))
    var kubeconfigOut: String = "fledge-demo.kubeconfig"

    @Option(help: ArgumentHelp("Folder holding deploy/crds and rollouts/product-service (default: the current folder, else the source checkout).", valueName: "folder"))
    var manifests: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Give up after this long and exit 2 (default: 10m).", valueName: "duration"), transform: parseDuration)
    var timeout: Duration = .seconds(600)

    @Option(name: [.short, .customLong("output")], help: "table: the live view on stdout; json: the live view on stderr, a JSON summary last on stdout.")
    var output: OutputFormat = .table

    @Option(help: "Log level of the servers (logs go to stderr): trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "error"

    /// The judge at its default margins needs some 2,700 canary requests (no errors on either side) to accept the first
    /// stage: at 2000 req/s the 10 % stage gets them in about 14 s, within the seed's 20 s hold. Cheap: the mesh
    /// counts requests per tick, it does not send them.
    static let defaultRequestsPerSecond: Double = 2000

    /// The context name in the demo's kubeconfig, which also marks a file as the demo's own.
    static let kubeconfigContext = "fledge-demo"

    func validate() throws {
        guard image.isEmpty == false, !image.contains(where: \.isWhitespace) else { throw ValidationError("--image: must be an image reference without spaces") }
        guard (0...1).contains(canaryErrorRate) else { throw ValidationError("--canary-error-rate must be between 0 and 1, got \(canaryErrorRate)") }
        if let canaryP99Ms, !(canaryP99Ms > 0 && canaryP99Ms <= 3_600_000) {
            throw ValidationError("--canary-p99-ms must be above 0 and at most 3600000 (an hour), got \(QueryCommand.decimal(canaryP99Ms))")
        }
        guard rps > 0, rps <= 100_000 else { throw ValidationError("--rps must be above 0 and at most 100000, got \(rps)") }
        if let hold, hold < .seconds(1) { throw ValidationError("--hold must be at least 1s") }
        if let interval, interval < .seconds(2) {
            throw ValidationError("--interval must be at least 2s: Prometheus scrapes every second, and a rate needs two scrapes in its window")
        }
        guard timeout > .zero else { throw ValidationError("--timeout: must be above 0") }
        guard !kubeconfigOut.isEmpty else { throw ValidationError("--kubeconfig-out: must not be empty") }
        // The report is written next to the kubeconfig, so this checks its folder too.
        if let problem = OutputFile.problem(kubeconfigOut) { throw ValidationError("--kubeconfig-out: \(problem)") }
        // The demo removes its kubeconfig at the end: never overwrite (and then delete) someone's own kubeconfig.
        if let existing = FileManager.default.contents(atPath: kubeconfigOut),
            !String(decoding: existing, as: UTF8.self).contains("current-context: \(DemoCommand.kubeconfigContext)")
        {
            throw ValidationError("--kubeconfig-out \(kubeconfigOut): the file exists and is not a kubeconfig fledge demo wrote; choose another path")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; got '\(logLevel)'")
        }
        if let manifests { _ = try DemoManifests.folder(given: manifests) }
    }

    func run() async throws {
        // Before anything starts: without prometheus there is no demo.
        guard DemoCommand.findOnPath("prometheus") != nil else {
            throw CLIError(
                "fledge demo needs Prometheus, and `prometheus` is not on PATH. Install it with ./scripts/setup.sh (from the Fledge checkout) or `sudo apt-get install prometheus`, then run fledge demo again")
        }
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "fledge.demo")
        let root = try DemoManifests.folder(given: manifests)
        let objects = try DemoManifests.load(root: root, hold: hold, interval: interval)

        // Ports are chosen up front so that every client, scrape target and kubeconfig can be made before the
        // servers start, and all of them run in one service group.
        let apiPort = try LoopbackPort.free()
        let metricsPort = try LoopbackPort.free()
        let token = SandboxCommand.randomToken()
        var sandboxConfiguration = SandboxServer.Configuration(
            port: apiPort, tokens: [token: .admin("fledge-demo")], rolloutDelay: .seconds(1))
        sandboxConfiguration.tls = try SandboxCertificates.generate()
        let sandbox = SandboxServer(configuration: sandboxConfiguration, logger: logger)
        try await sandbox.store.apply(objects.filter { $0["kind"]?.stringValue == "CustomResourceDefinition" })
        try await sandbox.store.apply(objects.filter { $0["kind"]?.stringValue != "CustomResourceDefinition" })
        await sandbox.store.settleDeployments()

        let kubeconfigPath = URL(fileURLWithPath: kubeconfigOut).standardizedFileURL.path
        do {
            try OutputFile.write(
                Data(sandbox.kubeconfig(token: token, namespace: DemoDriver.namespace, contextName: DemoCommand.kubeconfigContext).utf8),
                to: kubeconfigPath)
        } catch let error as CLIError {
            throw CLIError("--kubeconfig-out: \(error.message)")
        }
        defer { try? FileManager.default.removeItem(atPath: kubeconfigPath) }
        let client: KubernetesClient
        do {
            client = KubernetesClient(configuration: try Kubeconfig.load(paths: [kubeconfigPath]).configuration(), logger: logger)
        } catch {
            throw CLIError(kubernetes: error)
        }

        var meshConfiguration = MeshConfiguration(
            namespace: DemoDriver.namespace, virtualService: DemoDriver.rollout, requestsPerSecond: rps, seed: 7)
        var canary = WorkloadBehaviour(errorRate: canaryErrorRate)
        if let canaryP99Ms { canary.latency = LatencyDistribution(p99Ms: canaryP99Ms) }
        meshConfiguration.behaviours = [DemoDriver.rollout + "-canary": canary]
        let mesh: MeshSimulator
        do {
            try meshConfiguration.validate()
            mesh = try MeshSimulator(configuration: meshConfiguration, kubernetes: client, logger: logger)
        } catch {
            throw CLIError("the mesh simulator cannot start: \(error.message)")
        }

        let prometheusPort = try LoopbackPort.free()
        let prometheus = try PrometheusServer(
            configuration: .init(
                scrapeTargets: [.init(job: "mesh", address: mesh.metricsAddress), .init(job: "fledge", address: "127.0.0.1:\(metricsPort)")],
                scrapeInterval: "1s", port: prometheusPort))
        // Also stopped here, whatever happens in the group (stop() is idempotent).
        defer { prometheus.stop() }
        let prometheusService = PrometheusService(server: prometheus)

        var controllerConfiguration = ControllerConfiguration()
        controllerConfiguration.namespace = .named(DemoDriver.namespace)
        controllerConfiguration.prometheusURL = "http://127.0.0.1:\(prometheusPort)"
        controllerConfiguration.identity = "fledge-demo"
        controllerConfiguration.workers = 2
        let controller = Controller(client: client, configuration: controllerConfiguration, http: CurlHTTPClient(logger: logger), logger: logger)
        let health = HealthServer(controller: controller, host: "127.0.0.1", port: metricsPort, logger: logger)

        let driver = DemoDriver(
            cluster: Cluster(client: client, namespace: DemoDriver.namespace), sandbox: sandbox, mesh: mesh, prometheus: prometheusService,
            controller: controller, image: image, kubeconfigPath: kubeconfigPath, metricsURL: "http://127.0.0.1:\(metricsPort)/metrics",
            timeout: timeout, json: output == .json)

        // Shut down in reverse order: the driver, then the controller and the mesh, Prometheus, and last the API
        // server they all watch.
        var group = ServiceGroupConfiguration(
            services: [
                .init(service: sandbox),
                .init(service: prometheusService),
                .init(service: mesh),
                .init(service: controller),
                .init(service: health),
                .init(service: driver, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        // Open watches can hold a server's graceful shutdown; after this, the rest is cancelled.
        group.maximumGracefulShutdownDuration = .seconds(10)
        group.maximumCancellationDuration = .seconds(5)
        try await ServiceGroup(configuration: group).run()
        prometheus.stop()

        switch driver.outcome {
        case .finished(let summary):
            if output == .json { print(summary.json) }
        case .timedOut(let phase):
            StandardError.write("the rollout did not end within \(RolloutDuration(milliseconds: timeout.milliseconds)) (phase \(phase)); everything was stopped")
            throw ExitCode(2)
        case .failed(let error):
            throw error
        case .interrupted, nil:
            StandardError.write("fledge demo: interrupted; every server and process it started was stopped")
            throw ExitCode(130)
        }
    }

    /// The executable a shell would run for `name`: the first match on PATH.
    static func findOnPath(_ name: String, path: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
        for directory in (path ?? "").split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
