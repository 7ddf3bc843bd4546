import Foundation

/// A log-normal latency distribution given by its median and 99th percentile,
/// the two numbers people quote about latency.
public struct LatencyDistribution: Sendable, Equatable, CustomStringConvertible {
    public var medianMs: Double
    public var p99Ms: Double

    /// The standard normal's 99th percentile: p99 = median · exp(σ · z99).
    static let z99 = 2.326_347_874_040_841

    public init(medianMs: Double, p99Ms: Double) {
        self.medianMs = medianMs
        self.p99Ms = p99Ms
    }

    /// A median of a quarter of the p99, a typical service's spread.
    public init(p99Ms: Double) {
        self.init(medianMs: p99Ms / 4, p99Ms: p99Ms)
    }

    public func validate(_ field: String) throws(MeshError) {
        guard medianMs.isFinite, medianMs > 0 else {
            throw MeshError(.invalidConfiguration, "\(field): median latency must be a positive number of milliseconds, got \(medianMs)")
        }
        guard p99Ms.isFinite, p99Ms >= medianMs else {
            throw MeshError(.invalidConfiguration, "\(field): p99 latency (\(p99Ms) ms) must be at least the median (\(medianMs) ms)")
        }
    }

    /// σ of the underlying normal distribution.
    var sigma: Double { log(p99Ms / medianMs) / Self.z99 }

    /// One latency in milliseconds.
    func sample(_ random: inout MeshRandom) -> Double {
        medianMs * exp(sigma * random.nextGaussian())
    }

    public var description: String { "median \(medianMs) ms, p99 \(p99Ms) ms" }
}

/// How one workload (a Deployment, by name) answers the requests it receives.
public struct WorkloadBehaviour: Sendable, Equatable {
    /// Share of requests answered with `errorCode`, 0…1.
    public var errorRate: Double
    public var latency: LatencyDistribution
    /// The status of failed requests (a 5xx, so that Istio's success rate counts it).
    public var errorCode: Int

    public init(errorRate: Double = 0, latency: LatencyDistribution = LatencyDistribution(medianMs: 20, p99Ms: 100), errorCode: Int = 500) {
        self.errorRate = errorRate
        self.latency = latency
        self.errorCode = errorCode
    }

    public func validate(_ field: String) throws(MeshError) {
        guard errorRate.isFinite, (0...1).contains(errorRate) else {
            throw MeshError(.invalidConfiguration, "\(field): error rate must be between 0 and 1, got \(errorRate)")
        }
        guard (100...599).contains(errorCode) else {
            throw MeshError(.invalidConfiguration, "\(field): error code \(errorCode) is not an HTTP status")
        }
        try latency.validate(field)
    }
}

/// How requests arrive within a tick.
public enum ArrivalModel: String, Sendable, Equatable, CaseIterable {
    /// Poisson-distributed counts and independent errors, from the seeded generator.
    case poisson
    /// Exactly the expected counts and error shares, fractions carried to the next tick:
    /// every total is predictable, only latencies are random.
    case exact
}

/// What the simulator generates, and where it serves `/metrics`.
public struct MeshConfiguration: Sendable, Equatable {
    /// Namespace of the VirtualService, DestinationRules, Services and Deployments.
    public var namespace: String
    /// The VirtualService whose routes the traffic follows.
    public var virtualService: String
    public var requestsPerSecond: Double = 100
    /// Share of requests (0…1) that carry the tag header, which the seed's header-match route sends to the canary.
    public var taggedShare: Double = 0
    public var taggedHeaderName: String = "x-canary"
    public var taggedHeaderValue: String = "true"
    public var arrivals: ArrivalModel = .poisson
    public var seed: UInt64 = 1
    /// How often `run()` generates traffic.
    public var tickInterval: Duration = .milliseconds(100)
    /// Behaviour of every workload not named in `behaviours`.
    public var defaultBehaviour: WorkloadBehaviour = WorkloadBehaviour()
    /// Deployment name → behaviour.
    public var behaviours: [String: WorkloadBehaviour] = [:]
    /// The calling workload, as Istio labels it (`source_workload`).
    public var sourceWorkload: String = "frontend"
    /// nil: the simulated namespace.
    public var sourceNamespace: String? = nil
    public var clusterDomain: String = "cluster.local"
    /// `/metrics` listens here; only loopback addresses are accepted.
    public var metricsHost: String = "127.0.0.1"
    /// 0 picks a free port when the simulator is created.
    public var metricsPort: Int = 0

    public init(
        namespace: String, virtualService: String, requestsPerSecond: Double = 100, taggedShare: Double = 0,
        arrivals: ArrivalModel = .poisson, seed: UInt64 = 1, tickInterval: Duration = .milliseconds(100),
        defaultBehaviour: WorkloadBehaviour = WorkloadBehaviour(), behaviours: [String: WorkloadBehaviour] = [:],
        metricsPort: Int = 0
    ) {
        self.namespace = namespace
        self.virtualService = virtualService
        self.requestsPerSecond = requestsPerSecond
        self.taggedShare = taggedShare
        self.arrivals = arrivals
        self.seed = seed
        self.tickInterval = tickInterval
        self.defaultBehaviour = defaultBehaviour
        self.behaviours = behaviours
        self.metricsPort = metricsPort
    }

    /// The behaviour a workload gets.
    public func behaviour(for workload: String) -> WorkloadBehaviour { behaviours[workload] ?? defaultBehaviour }

    public func validate() throws(MeshError) {
        guard !namespace.isEmpty else { throw MeshError(.invalidConfiguration, "namespace must not be empty") }
        guard !virtualService.isEmpty else { throw MeshError(.invalidConfiguration, "virtualService must not be empty") }
        try Self.validateRate(requestsPerSecond)
        try Self.validateShare(taggedShare)
        guard !taggedHeaderName.isEmpty else { throw MeshError(.invalidConfiguration, "taggedHeaderName must not be empty") }
        guard tickInterval > .zero else {
            throw MeshError(.invalidConfiguration, "tickInterval must be positive, got \(tickInterval)")
        }
        try defaultBehaviour.validate("defaultBehaviour")
        for (workload, behaviour) in behaviours { try behaviour.validate("behaviour of \(workload)") }
        guard ["127.0.0.1", "::1", "localhost"].contains(metricsHost) else {
            throw MeshError(.invalidConfiguration, "metricsHost must be a loopback address (127.0.0.1, ::1 or localhost), got \(metricsHost)")
        }
        guard (0...65535).contains(metricsPort) else {
            throw MeshError(.invalidConfiguration, "metricsPort must be between 0 and 65535, got \(metricsPort)")
        }
    }

    static func validateRate(_ rate: Double) throws(MeshError) {
        guard rate.isFinite, rate >= 0, rate <= 1_000_000 else {
            throw MeshError(.invalidConfiguration, "requestsPerSecond must be between 0 and 1000000, got \(rate)")
        }
    }

    static func validateShare(_ share: Double) throws(MeshError) {
        guard share.isFinite, (0...1).contains(share) else {
            throw MeshError(.invalidConfiguration, "taggedShare must be between 0 and 1, got \(share)")
        }
    }
}
