import Foundation
import Synchronization

/// What one step of the simulation sent where.
public struct MeshTick: Sendable, Equatable {
    public var seconds: Double
    /// Requests per target in this step.
    public var requests: [MeshTarget: Int]
    /// Of those, the ones answered with a 4xx or 5xx.
    public var failures: [MeshTarget: Int]
    /// False when the VirtualService was not found: nothing was sent.
    public var routed: Bool

    public var total: Int { requests.values.reduce(0, +) }

    /// Requests a workload (Deployment name) received in this step.
    public func requests(toWorkload name: String) -> Int {
        requests.reduce(0) { if case .workload(name, _, _) = $1.key { $0 + $1.value } else { $0 } }
    }
}

/// The simulation itself, without any IO: given what the cluster looks like, it
/// generates a step's requests, answers them as each workload is configured to, and
/// counts them as Istio's proxies would. `MeshSimulator` drives it from watch caches
/// and a clock; tests drive it directly with `step(seconds:cluster:)`.
///
/// Both reporters are counted, as in a real mesh: `reporter="source"` (the caller's
/// proxy, `connection_security_policy="unknown"`) for every request, and
/// `reporter="destination"` (the workload's proxy, `mutual_tls`) for requests that
/// reached a pod. Requests Envoy cannot deliver — a subset whose labels select no
/// ready pod (`response_flags="UH"`), a subset or Service that does not exist (`NR`) —
/// are answered 503 by the caller's proxy, so they exist only as `reporter="source"`
/// series with `destination_workload`, `destination_workload_namespace` and
/// `destination_version` set to `"unknown"` and `destination_service` naming the host:
/// a blackholed canary never shows up under the canary's workload name, exactly as
/// in Istio. A request no route matches is a source-reported 404 `NR`.
public final class MeshTraffic: Sendable {
    public let configuration: MeshConfiguration

    private struct State {
        var requestsPerSecond: Double
        var taggedShare: Double
        var behaviours: [String: WorkloadBehaviour]
        var defaultBehaviour: WorkloadBehaviour
        var random: MeshRandom
        /// Fractions of requests and errors carried to the next step (`.exact` arrivals).
        var requestCarry: [MeshTarget: Double] = [:]
        var errorCarry: [String: Double] = [:]
        var metrics = IstioMetrics()
        var elapsedSeconds: Double = 0
    }

    private let state: Mutex<State>

    public init(configuration: MeshConfiguration) throws(MeshError) {
        try configuration.validate()
        self.configuration = configuration
        state = Mutex(
            State(
                requestsPerSecond: configuration.requestsPerSecond, taggedShare: configuration.taggedShare,
                behaviours: configuration.behaviours, defaultBehaviour: configuration.defaultBehaviour,
                random: MeshRandom(seed: configuration.seed)))
    }

    // MARK: - Changing the traffic at runtime

    /// Changes how a workload (Deployment name) answers from the next step on.
    public func setBehaviour(workload: String, _ behaviour: WorkloadBehaviour) throws(MeshError) {
        try behaviour.validate("behaviour of \(workload)")
        state.withLock { $0.behaviours[workload] = behaviour }
    }

    public func behaviour(for workload: String) -> WorkloadBehaviour {
        state.withLock { $0.behaviours[workload] ?? $0.defaultBehaviour }
    }

    public var requestsPerSecond: Double { state.withLock { $0.requestsPerSecond } }

    public func setRequestsPerSecond(_ rate: Double) throws(MeshError) {
        try MeshConfiguration.validateRate(rate)
        state.withLock { $0.requestsPerSecond = rate }
    }

    public var taggedShare: Double { state.withLock { $0.taggedShare } }

    public func setTaggedShare(_ share: Double) throws(MeshError) {
        try MeshConfiguration.validateShare(share)
        state.withLock { $0.taggedShare = share }
    }

    /// Simulated seconds so far.
    public var elapsedSeconds: Double { state.withLock { $0.elapsedSeconds } }

    // MARK: - Simulating

    /// The share of all requests (0…1) each target receives with the cluster as it is
    /// now and the current tagged share: what the counts converge to.
    public func expectedShares(cluster: MeshClusterState) -> [MeshTarget: Double] {
        let router = MeshRouter(namespace: configuration.namespace, clusterDomain: configuration.clusterDomain, state: cluster)
        let tagged = taggedShare
        var shares: [MeshTarget: Double] = [:]
        if tagged > 0 {
            let headers = [configuration.taggedHeaderName.lowercased(): configuration.taggedHeaderValue]
            for (target, share) in router.targets(headers: headers) { shares[target, default: 0] += tagged * share }
        }
        if tagged < 1 {
            for (target, share) in router.targets(headers: [:]) { shares[target, default: 0] += (1 - tagged) * share }
        }
        return shares
    }

    /// Sends `seconds` worth of traffic through the cluster as it is now.
    @discardableResult
    public func step(seconds: Double, cluster: MeshClusterState) -> MeshTick {
        let router = MeshRouter(namespace: configuration.namespace, clusterDomain: configuration.clusterDomain, state: cluster)
        let configuration = self.configuration
        return state.withLock { state in
            var tick = MeshTick(seconds: seconds, requests: [:], failures: [:], routed: cluster.virtualService != nil)
            guard seconds > 0 else { return tick }
            state.elapsedSeconds += seconds
            guard tick.routed else { return tick }

            let requests = state.requestsPerSecond * seconds
            let tagged = requests * state.taggedShare
            var expected: [MeshTarget: Double] = [:]
            if tagged > 0 {
                let headers = [configuration.taggedHeaderName.lowercased(): configuration.taggedHeaderValue]
                for (target, share) in router.targets(headers: headers) { expected[target, default: 0] += tagged * share }
            }
            if requests - tagged > 0 {
                for (target, share) in router.targets(headers: [:]) { expected[target, default: 0] += (requests - tagged) * share }
            }
            // A fixed order, so that a seed always gives the same traffic.
            for (target, mean) in expected.sorted(by: { $0.key.sortKey < $1.key.sortKey }) {
                let count: Int
                switch configuration.arrivals {
                case .poisson:
                    count = state.random.nextPoisson(mean)
                case .exact:
                    let due = state.requestCarry[target, default: 0] + mean
                    count = Int((due + 1e-9).rounded(.down))
                    state.requestCarry[target] = due - Double(count)
                }
                guard count > 0 else { continue }
                tick.requests[target] = count
                let failed = answer(target, count: count, state: &state)
                if failed > 0 { tick.failures[target] = failed }
            }
            return tick
        }
    }

    /// Answers `count` requests to one target and records them; returns how many failed.
    private func answer(_ target: MeshTarget, count: Int, state: inout State) -> Int {
        let namespace = configuration.namespace
        let source = configuration.sourceWorkload
        let sourceNamespace = configuration.sourceNamespace ?? namespace
        switch target {
        case .workload(let name, let version, let service):
            let behaviour = state.behaviours[name] ?? state.defaultBehaviour
            var errors = 0
            switch configuration.arrivals {
            case .exact:
                let due = state.errorCarry[name, default: 0] + Double(count) * behaviour.errorRate
                errors = min(count, Int((due + 1e-9).rounded(.down)))
                state.errorCarry[name] = due - Double(errors)
            case .poisson:
                for _ in 0..<count where state.random.nextUnit() < behaviour.errorRate { errors += 1 }
            }
            for index in 0..<count {
                let code = index < errors ? behaviour.errorCode : 200
                let latency = behaviour.latency.sample(&state.random)
                var labels = IstioLabels(
                    reporter: "destination", sourceWorkload: source, sourceWorkloadNamespace: sourceNamespace,
                    destinationWorkload: name, destinationWorkloadNamespace: namespace, destinationService: service,
                    destinationServiceName: serviceName(service), destinationServiceNamespace: namespace,
                    destinationVersion: version, responseCode: code, responseFlags: "-",
                    connectionSecurityPolicy: "mutual_tls")
                state.metrics.record(labels, latencyMs: latency)
                labels.reporter = "source"
                labels.connectionSecurityPolicy = "unknown"
                state.metrics.record(labels, latencyMs: latency)
            }
            return errors
        case .unavailable(let service, let flag):
            recordLocalReply(service: service, code: 503, flag: flag, count: count, state: &state)
            return count
        case .noRoute(let service):
            recordLocalReply(service: service, code: 404, flag: "NR", count: count, state: &state)
            return count
        }
    }

    /// A reply Envoy makes itself on the caller's side: only the source reports it.
    private func recordLocalReply(service: String, code: Int, flag: String, count: Int, state: inout State) {
        let labels = IstioLabels(
            reporter: "source", sourceWorkload: configuration.sourceWorkload,
            sourceWorkloadNamespace: configuration.sourceNamespace ?? configuration.namespace,
            destinationWorkload: "unknown", destinationWorkloadNamespace: "unknown", destinationService: service,
            destinationServiceName: serviceName(service), destinationServiceNamespace: serviceNamespace(service),
            destinationVersion: "unknown", responseCode: code, responseFlags: flag, connectionSecurityPolicy: "unknown")
        for _ in 0..<count {
            // Envoy answers at once: well under a millisecond.
            state.metrics.record(labels, latencyMs: 0.1 + 0.4 * state.random.nextUnit())
        }
    }

    private func serviceName(_ service: String) -> String { String(service.split(separator: ".").first ?? "") }

    private func serviceNamespace(_ service: String) -> String {
        let parts = service.split(separator: ".")
        return parts.count > 1 ? String(parts[1]) : configuration.namespace
    }

    // MARK: - Reading

    /// The `/metrics` page: Prometheus text format 0.0.4.
    public func metricsText() -> String { state.withLock { $0.metrics.render() } }

    /// Requests counted so far by one reporter, optionally for one workload (Deployment
    /// name, or "unknown" for requests Envoy answered itself) and only failures (≥ 400).
    public func requestCount(reporter: String = "destination", workload: String? = nil, failuresOnly: Bool = false) -> UInt64 {
        state.withLock { state in
            state.metrics.requests { labels in
                labels.reporter == reporter && (workload == nil || labels.destinationWorkload == workload)
                    && (!failuresOnly || labels.responseCode >= 400)
            }
        }
    }

    /// Every series counted so far with its request count.
    public func series() -> [(labels: IstioLabels, requests: UInt64)] {
        state.withLock { $0.metrics.series.map { ($0.key, $0.value.requests) }.sorted { $0.labels < $1.labels } }
    }
}

extension MeshTarget {
    var sortKey: String {
        switch self {
        case .workload(let name, _, let service): return "0 \(service) \(name)"
        case .unavailable(let service, let flag): return "1 \(service) \(flag)"
        case .noRoute(let service): return "2 \(service)"
        }
    }
}
