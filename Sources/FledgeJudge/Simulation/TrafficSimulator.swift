// A simulated mesh for the decision benchmark and the guarantee tests: Poisson arrivals,
// Bernoulli errors, latencies from a distribution, counted into Istio's histogram buckets.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Istio's default `istio_request_duration_milliseconds` bucket bounds.
public let istioLatencyBounds: [Double] = [
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1_800_000, 3_600_000,
]

/// A latency distribution (milliseconds): a lognormal body, optionally mixed with a Pareto
/// tail (`tailWeight` of the requests).
public struct SimulatedLatency: Sendable, Equatable {
    public var median: Double
    public var sigma: Double
    public var tailWeight: Double
    public var tailScale: Double
    public var tailShape: Double

    public init(median: Double, sigma: Double, tailWeight: Double = 0, tailScale: Double = 100, tailShape: Double = 1.5) {
        self.median = median
        self.sigma = sigma
        self.tailWeight = tailWeight
        self.tailScale = tailScale
        self.tailShape = tailShape
    }

    /// P(latency ≤ x).
    public func cdf(_ x: Double) -> Double {
        guard x > 0 else { return 0 }
        let body = JudgeStatistics.normalCDF(log(x / median) / sigma)
        let tail = x < tailScale ? 0 : 1 - pow(tailScale / x, tailShape)
        return (1 - tailWeight) * body + tailWeight * tail
    }

    /// The p-quantile, by bisection on the distribution function.
    public func quantile(_ p: Double) -> Double {
        var low = 0.0, high = median
        while cdf(high) < p { high *= 2 }
        for _ in 0..<200 {
            let mid = (low + high) / 2
            if cdf(mid) < p { low = mid } else { high = mid }
        }
        return (low + high) / 2
    }

    /// The probability of each bucket: `bounds.count + 1` entries, the last above the last bound.
    public func bucketProbabilities(bounds: [Double]) -> [Double] {
        var result: [Double] = []
        var previous = 0.0
        for bound in bounds {
            let c = cdf(bound)
            result.append(max(0, c - previous))
            previous = c
        }
        result.append(max(0, 1 - previous))
        return result
    }
}

/// How one version of the service behaves.
public struct SimulatedVersion: Sendable, Equatable {
    public var errorRate: Double
    public var latency: SimulatedLatency
    public init(errorRate: Double, latency: SimulatedLatency) {
        self.errorRate = errorRate
        self.latency = latency
    }
}

/// What one version served over some time: requests, errors, per-bucket latency counts.
public struct SimulatedCounts: Sendable, Equatable {
    public var requests: Int
    public var errors: Int
    /// `bounds.count + 1` per-bucket counts (not cumulative).
    public var buckets: [Int]

    public init(bucketCount: Int) {
        requests = 0
        errors = 0
        buckets = Array(repeating: 0, count: bucketCount)
    }

    public mutating func add(_ other: SimulatedCounts) {
        requests += other.requests
        errors += other.errors
        for i in buckets.indices { buckets[i] += other.buckets[i] }
    }

    /// The counts as the judge's input.
    public func sample(bounds: [Double]) throws(JudgeError) -> JudgeSample {
        JudgeSample(
            requests: Double(requests), errors: Double(errors),
            latency: try JudgeHistogram(bounds: bounds, bucketCounts: buckets.map(Double.init)))
    }
}

/// One tick of traffic, shared by every policy replayed on it. Each request carries a
/// routing number u uniform in [0, 1); a policy with canary weight w sends it to the
/// canary when u < w. Requests are grouped into slices between consecutive weights of
/// interest, and each slice has the outcome it would have on the canary and on stable,
/// so every policy sees the same requests, whatever weight it is at.
public struct SimulatedTick: Sendable {
    /// Slice edges as fractions: [0, w1, w2, …, 1].
    public let edges: [Double]
    public let canary: [SimulatedCounts]
    public let stable: [SimulatedCounts]

    /// What a policy at canary weight `weight` (percent, one of the slice edges) observes.
    public func observe(weight: Double) -> (canary: SimulatedCounts, stable: SimulatedCounts) {
        let w = weight / 100
        let bucketCount = canary.first?.buckets.count ?? 0
        var c = SimulatedCounts(bucketCount: bucketCount), s = SimulatedCounts(bucketCount: bucketCount)
        for i in 0..<canary.count {
            if edges[i + 1] <= w + 1e-12 { c.add(canary[i]) } else { s.add(stable[i]) }
        }
        return (c, s)
    }

    /// Requests of the tick.
    public var requests: Int { canary.reduce(0) { $0 + $1.requests } }
}

/// Generates ticks of traffic for one canary/stable pair.
public struct TrafficSimulator: Sendable {
    public let requestsPerSecond: Double
    public let canary: SimulatedVersion
    public let stable: SimulatedVersion
    public let bounds: [Double]
    public let edges: [Double]
    let canaryBuckets: [Double]
    let stableBuckets: [Double]

    /// - Parameter weights: every canary weight (percent) a policy may use; 0 and 100 are added.
    public init(
        requestsPerSecond: Double, canary: SimulatedVersion, stable: SimulatedVersion,
        weights: [Double], bounds: [Double] = istioLatencyBounds
    ) {
        self.requestsPerSecond = requestsPerSecond
        self.canary = canary
        self.stable = stable
        self.bounds = bounds
        self.edges = Array(Set(weights.map { $0 / 100 } + [0, 1]).filter { $0 >= 0 && $0 <= 1 }).sorted()
        canaryBuckets = canary.latency.bucketProbabilities(bounds: bounds)
        stableBuckets = stable.latency.bucketProbabilities(bounds: bounds)
    }

    public func tick(seconds: Double, using rng: inout SplitMix64) -> SimulatedTick {
        let total = JudgeSampling.poisson(mean: requestsPerSecond * seconds, using: &rng)
        let widths = zip(edges.dropFirst(), edges).map { $0 - $1 }
        let perSlice = JudgeSampling.multinomial(trials: total, probabilities: widths, using: &rng)
        var c: [SimulatedCounts] = [], s: [SimulatedCounts] = []
        for n in perSlice {
            c.append(Self.serve(n, version: canary, buckets: canaryBuckets, using: &rng))
            s.append(Self.serve(n, version: stable, buckets: stableBuckets, using: &rng))
        }
        return SimulatedTick(edges: edges, canary: c, stable: s)
    }

    static func serve(_ n: Int, version: SimulatedVersion, buckets: [Double], using rng: inout SplitMix64) -> SimulatedCounts {
        var counts = SimulatedCounts(bucketCount: buckets.count)
        counts.requests = n
        counts.errors = JudgeSampling.binomial(trials: n, probability: version.errorRate, using: &rng)
        counts.buckets = JudgeSampling.multinomial(trials: n, probabilities: buckets, using: &rng)
        return counts
    }
}
