import FledgeJSON
import FledgeKubernetes
import Foundation
import Hummingbird
import LocalPrometheus
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A simulated Istio mesh in front of one VirtualService: it watches the
/// VirtualService, the DestinationRules, Services and Deployments of its namespace
/// through watch caches (so weight changes take effect within a tick), sends a
/// configurable request rate through the routes every tick, and serves what Istio's
/// proxies would export on `/metrics` for a real Prometheus to scrape.
///
/// ```swift
/// var configuration = MeshConfiguration(namespace: "shop", virtualService: "product-service", requestsPerSecond: 200)
/// configuration.behaviours["product-service-canary"] = WorkloadBehaviour(errorRate: 0.05)
/// let mesh = try MeshSimulator(configuration: configuration, kubernetes: client)
/// // Prometheus scrapes mesh.metricsAddress; run it in a ServiceGroup, or:
/// async let running: Void = mesh.run()
/// _ = await mesh.waitUntilReady()
/// try mesh.setBehaviour(workload: "product-service-canary", errorRate: 0, latency: .init(medianMs: 20, p99Ms: 90))
/// ```
///
/// See `MeshTraffic` for how requests are routed and which labels they carry.
public final class MeshSimulator: Service, Sendable {
    public typealias Configuration = MeshConfiguration

    public let configuration: MeshConfiguration
    /// The simulation the ticks drive; read counts or change rates through it.
    public let traffic: MeshTraffic
    /// The port `/metrics` listens on (chosen when the simulator is created if the configuration says 0).
    public let metricsPort: Int
    private let virtualServices: Informer
    private let destinationRules: Informer
    private let services: Informer
    private let deployments: Informer
    private let logger: Logger

    private struct Lifecycle {
        var listening = false
        var stopped = false
    }
    private let lifecycle = Mutex(Lifecycle())

    public init(configuration: MeshConfiguration, kubernetes: KubernetesClient, logger: Logger = Logger(label: "fledge.mesh"))
        throws(MeshError)
    {
        traffic = try MeshTraffic(configuration: configuration)
        self.configuration = configuration
        if configuration.metricsPort == 0 {
            guard configuration.metricsHost != "::1" else {
                throw MeshError(.invalidConfiguration, "metricsPort 0 (a free port) is only supported on 127.0.0.1; give a port for ::1")
            }
            do {
                metricsPort = try LoopbackPort.free()
            } catch {
                throw MeshError(.startup, "cannot find a free port for /metrics: \(error)")
            }
        } else {
            metricsPort = configuration.metricsPort
        }
        self.logger = logger
        let scope = NamespaceScope.named(configuration.namespace)
        var informerLogger = logger
        informerLogger[metadataKey: "component"] = "informer"
        func informer(_ resource: GroupVersionResource) -> Informer {
            Informer(
                client: kubernetes, resource: resource, namespace: scope, transform: Informer.dropManagedFields,
                logger: informerLogger)
        }
        virtualServices = informer(.virtualServices)
        destinationRules = informer(.destinationRules)
        services = informer(.services)
        deployments = informer(.deployments)
    }

    /// `host:port` for a Prometheus scrape target.
    public var metricsAddress: String {
        let host = configuration.metricsHost == "localhost" ? "127.0.0.1" : configuration.metricsHost
        return host.contains(":") ? "[\(host)]:\(metricsPort)" : "\(host):\(metricsPort)"
    }

    public var metricsURL: String { "http://\(metricsAddress)/metrics" }

    // MARK: - Running

    /// Serves `/metrics`, watches the cluster and ticks until cancelled or gracefully shut down.
    public func run() async throws {
        try await run(clock: ContinuousClock())
    }

    /// `run()` on another clock (each tick simulates `tickInterval`, on the clock's schedule).
    public func run<C: Clock>(clock: C) async throws where C.Duration == Duration {
        defer { lifecycle.withLock { $0.stopped = true } }
        let router = Router()
        let traffic = self.traffic
        router.get("metrics") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: traffic.metricsText())))
        }
        var appLogger = logger
        // Hummingbird logs a cancelled server as an error; a failed bind is thrown below anyway.
        appLogger.logLevel = .critical
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.metricsHost, port: metricsPort), serverName: "fledge-mesh"),
            onServerRunning: { [self] _ in self.lifecycle.withLock { $0.listening = true } },
            logger: appLogger)
        let informers = [virtualServices, destinationRules, services, deployments]
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                do {
                    try await app.run()
                } catch {
                    // The system's words, not NIO's "bind(descriptor:ptr:bytes:): … (errno: 98)".
                    if let error = error as? IOError {
                        let kind: MeshError.Kind = error.errnoCode == EADDRINUSE ? .addressInUse : .startup
                        throw MeshError(kind, "cannot serve /metrics on \(self.metricsAddress): \(String(cString: strerror(error.errnoCode)))")
                    }
                    throw MeshError(.startup, "cannot serve /metrics on \(self.metricsAddress): \(error)")
                }
            }
            for informer in informers {
                group.addTask { try await informer.run() }
            }
            group.addTask { await self.tick(clock: clock) }
        }
    }

    private func tick<C: Clock>(clock: C) async where C.Duration == Duration {
        let interval = configuration.tickInterval
        let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) * 1e-18
        await cancelWhenGracefulShutdown { [self] in
            var deadline = clock.now.advanced(by: interval)
            var routed = true
            var lastShares: [MeshTarget: Double] = [:]
            while !Task.isCancelled {
                do { try await clock.sleep(until: deadline, tolerance: nil) } catch { return }
                let cluster = clusterState()
                let tick = traffic.step(seconds: seconds, cluster: cluster)
                if tick.routed != routed {
                    routed = tick.routed
                    if routed {
                        logger.info("VirtualService found; sending traffic", metadata: metadata)
                    } else {
                        logger.warning("VirtualService not found; sending no traffic until it exists", metadata: metadata)
                    }
                }
                let shares = traffic.expectedShares(cluster: cluster)
                if shares != lastShares {
                    lastShares = shares
                    logger.info("traffic split changed", metadata: metadata.merging(["split": "\(Self.describe(shares))"]) { $1 })
                }
                deadline = deadline.advanced(by: interval)
                // After a long stall (a suspended laptop), carry on from now rather than catch up in a burst.
                if deadline.duration(to: clock.now) > interval * 10 { deadline = clock.now.advanced(by: interval) }
            }
        }
    }

    private var metadata: Logger.Metadata {
        ["namespace": "\(configuration.namespace)", "virtualService": "\(configuration.virtualService)"]
    }

    /// `product-service 90%, product-service-canary 10%`.
    public static func describe(_ shares: [MeshTarget: Double]) -> String {
        if shares.isEmpty { return "(no traffic)" }
        return shares.sorted { $0.key.sortKey < $1.key.sortKey }
            .map { "\($0.key) \(String(format: "%.1f", $0.value * 100))%" }
            .joined(separator: ", ")
    }

    /// Waits until the watch caches hold their first lists and `/metrics` listens.
    /// False if `run()` stopped (or the waiting task was cancelled) first.
    public func waitUntilReady() async -> Bool {
        for informer in [virtualServices, destinationRules, services, deployments] {
            guard await informer.waitUntilSynced() else { return false }
        }
        while true {
            let (listening, stopped) = lifecycle.withLock { ($0.listening, $0.stopped) }
            if listening { return true }
            if stopped || Task.isCancelled { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    // MARK: - Stepping and changing behaviour

    /// The cluster as the watch caches hold it (no API calls).
    public func clusterState() -> MeshClusterState {
        let namespace = configuration.namespace
        return MeshClusterState(
            virtualService: virtualServices.get(namespace: namespace, name: configuration.virtualService),
            destinationRules: destinationRules.list(namespace: namespace),
            services: services.list(namespace: namespace),
            deployments: deployments.list(namespace: namespace))
    }

    /// One tick by hand: `seconds` of traffic through the cluster as the caches hold it.
    @discardableResult
    public func step(seconds: Double) -> MeshTick {
        traffic.step(seconds: seconds, cluster: clusterState())
    }

    /// Changes how a workload (Deployment name) answers, from the next tick on.
    public func setBehaviour(workload: String, errorRate: Double, latency: LatencyDistribution) throws(MeshError) {
        let errorCode = traffic.behaviour(for: workload).errorCode
        try traffic.setBehaviour(workload: workload, WorkloadBehaviour(errorRate: errorRate, latency: latency, errorCode: errorCode))
    }

    public func setBehaviour(workload: String, _ behaviour: WorkloadBehaviour) throws(MeshError) {
        try traffic.setBehaviour(workload: workload, behaviour)
    }

    public func setRequestsPerSecond(_ rate: Double) throws(MeshError) { try traffic.setRequestsPerSecond(rate) }
    public func setTaggedShare(_ share: Double) throws(MeshError) { try traffic.setTaggedShare(share) }
}
