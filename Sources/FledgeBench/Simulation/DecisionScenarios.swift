// The scenarios of the decision benchmark and the simulation of one scenario.
import FledgeJudge
import Foundation

enum LatencyCase: String, Sendable, CaseIterable {
    case unchanged = "unchanged"
    case p99Plus50 = "p99 +50%"
    case heavyTail = "heavy tail"

    /// How `--latency` spells it.
    var argument: String {
        switch self {
        case .unchanged: "unchanged"
        case .p99Plus50: "p99+50"
        case .heavyTail: "heavy-tail"
        }
    }

    /// `--latency`'s word, or the name the report prints (`p99 +50%`).
    init?(argument: String) {
        let word = argument.trimmingCharacters(in: .whitespaces).lowercased()
        guard let found = LatencyCase.allCases.first(where: { $0.argument == word || $0.rawValue == word }) else { return nil }
        self = found
    }
}

struct DecisionScenario: Sendable {
    var baselineErrorRate: Double
    var errorMultiplier: Double
    var latency: LatencyCase
    var requestsPerSecond: Double

    /// Stable: median 50 ms, lognormal σ 0.6 (p99 ≈ 202 ms).
    static let stableLatency = SimulatedLatency(median: 50, sigma: 0.6)

    var isGood: Bool { errorMultiplier == 1 && latency == .unchanged }

    var stable: SimulatedVersion { SimulatedVersion(errorRate: baselineErrorRate, latency: Self.stableLatency) }

    var canary: SimulatedVersion {
        let latency: SimulatedLatency
        switch self.latency {
        case .unchanged: latency = Self.stableLatency
        // Same median, p99 1.5× stable's: σ' = σ + ln 1.5 / z₀.₉₉.
        case .p99Plus50:
            let z = JudgeStatistics.normalQuantile(0.99)
            latency = SimulatedLatency(median: 50, sigma: 0.6 + log(1.5) / z)
        // 5 % of requests from a Pareto tail (scale 100 ms, shape 1.2).
        case .heavyTail: latency = SimulatedLatency(median: 50, sigma: 0.6, tailWeight: 0.05, tailScale: 100, tailShape: 1.2)
        }
        return SimulatedVersion(errorRate: baselineErrorRate * errorMultiplier, latency: latency)
    }

    /// Expected excess bad requests (failed, or slower than stable's p99) per canary request.
    var excessRate: Double {
        let p99 = Self.stableLatency.quantile(0.99)
        let slower = (1 - canary.latency.cdf(p99)) - 0.01
        return canary.errorRate - stable.errorRate + max(0, slower)
    }

    var label: String {
        "\(percent(baselineErrorRate)) ×\(number(errorMultiplier)), latency \(latency.rawValue), \(number(requestsPerSecond)) req/s"
    }

    static let defaultBaselineErrorRates: [Double] = [0.001, 0.01]
    static let defaultErrorMultipliers: [Double] = [1, 2, 5, 20]

    /// The scenarios, one degradation at a time as issue 8 lists them: for every request rate and baseline error
    /// rate, each canary error multiplier with stable's latency (when `latencies` has `unchanged`), then each
    /// other latency shape with the canary's errors ×1. ×1 with unchanged latency is the good canary.
    static func all(
        traffic: [Double], baselineErrorRates: [Double] = defaultBaselineErrorRates, errorMultipliers: [Double] = defaultErrorMultipliers,
        latencies: [LatencyCase] = LatencyCase.allCases
    ) -> [DecisionScenario] {
        var result: [DecisionScenario] = []
        for rps in traffic {
            for baseline in baselineErrorRates {
                if latencies.contains(.unchanged) {
                    for multiplier in errorMultipliers {
                        result.append(DecisionScenario(baselineErrorRate: baseline, errorMultiplier: multiplier, latency: .unchanged, requestsPerSecond: rps))
                    }
                }
                for latency in LatencyCase.allCases where latency != .unchanged && latencies.contains(latency) {
                    result.append(DecisionScenario(baselineErrorRate: baseline, errorMultiplier: 1, latency: latency, requestsPerSecond: rps))
                }
            }
        }
        return result
    }
}

/// What one policy did in one run.
struct RunResult: Sendable {
    var outcome: PolicyOutcome
    var exposure: Double
}

/// Simulates `runs` rollouts of one scenario; every policy sees the same traffic in each run.
func simulate(
    _ scenario: DecisionScenario, policies: [DecisionPolicy], stages: [Double], runs: Int, seed: SplitMix64,
    horizonSeconds: Int
) throws -> [[RunResult]] {
    let simulator = TrafficSimulator(
        requestsPerSecond: scenario.requestsPerSecond, canary: scenario.canary, stable: scenario.stable, weights: stages)
    let tickSeconds = policies.map(\.intervalSeconds).reduce(0, gcd)
    let excess = scenario.excessRate
    var results: [[RunResult]] = Array(repeating: [], count: policies.count)
    for run in 0..<runs {
        var rng = seed.split(UInt64(run))
        var active = policies.map { PolicyRun(policy: $0, stages: stages, bounds: simulator.bounds) }
        var now = 0
        while now < horizonSeconds, active.contains(where: { $0.outcome == .running }) {
            let tick = simulator.tick(seconds: Double(tickSeconds), using: &rng)
            now += tickSeconds
            for i in active.indices { try active[i].step(tick, seconds: tickSeconds, now: now, excessRate: excess) }
        }
        for (i, policyRun) in active.enumerated() {
            var exposure = policyRun.exposure
            switch policyRun.outcome {
            // After promotion every request is the canary's, until the horizon.
            case .promoted(let at): exposure += Double(max(0, horizonSeconds - at)) * scenario.requestsPerSecond * excess
            // Still at a canary weight at the horizon: the exposure so far is what it is.
            case .running, .rolledBack: break
            }
            results[i].append(RunResult(outcome: policyRun.outcome, exposure: exposure))
        }
    }
    return results
}

func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

// MARK: - What any policy could achieve

/// An information bound: how many canary requests any policy needs before it can decide with the
/// judge's error guarantees, however clever. By the data-processing inequality, a policy that acts
/// (rolls back, or promotes) with probability ≥ 1/2 under one hypothesis and ≤ α under another has
/// seen data whose Kullback–Leibler divergence between the two is at least d(1/2 ‖ α), the binary
/// divergence; by Wald's identity that divergence is E[canary requests] × the divergence per canary
/// request (stable's requests look the same under both hypotheses). The bound even grants the policy
/// exact knowledge of stable's behaviour, so real policies need more.
enum InformationBound {
    /// d(p ‖ q) for Bernoulli distributions, in nats.
    static func binaryDivergence(_ p: Double, _ q: Double) -> Double {
        func term(_ a: Double, _ b: Double) -> Double { a == 0 ? 0 : a * log(a / b) }
        return term(p, q) + term(1 - p, 1 - q)
    }

    /// Divergence per request of `a` from `b`: the 5xx outcome and the latency bucket (independent in the
    /// simulation), as Istio's histogram shows them.
    static func divergencePerRequest(_ a: SimulatedVersion, from b: SimulatedVersion) -> Double {
        let pa = a.latency.bucketProbabilities(bounds: istioLatencyBounds)
        let pb = b.latency.bucketProbabilities(bounds: istioLatencyBounds)
        var latency = 0.0
        for (x, y) in zip(pa, pb) where x > 0 { latency += x * log(x / max(y, 1e-300)) }
        return binaryDivergence(a.errorRate, b.errorRate) + latency
    }

    /// Canary requests a bad canary must serve, on average, before any policy with at most
    /// `falseRollbackRate` false rollbacks rolls it back in half of the runs.
    static func requestsToRollBack(_ scenario: DecisionScenario, falseRollbackRate: Double) -> Double {
        binaryDivergence(0.5, falseRollbackRate) / divergencePerRequest(scenario.canary, from: scenario.stable)
    }

    /// Canary requests (all at weights below 100 %) a good canary must serve before any policy that
    /// promotes a canary at the error margin with probability at most `falsePromotionRate` promotes it in
    /// half of the runs. The canary at the margin: stable's rate × the ratio margin or + the absolute
    /// margin, whichever is larger (the closest canary the judge must not promote).
    static func requestsToPromote(_ scenario: DecisionScenario, judge: JudgeConfiguration) -> Double {
        let p = scenario.baselineErrorRate
        let margin = max(p * judge.errorRateRatioMargin, p + judge.errorRateAbsoluteMargin)
        let atMargin = SimulatedVersion(errorRate: margin, latency: scenario.stable.latency)
        return binaryDivergence(0.5, judge.falsePromotionRate) / divergencePerRequest(scenario.stable, from: atMargin)
    }
}
