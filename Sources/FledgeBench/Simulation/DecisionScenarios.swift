// The scenarios of the decision benchmark and the simulation of one scenario.
import FledgeJudge
import Foundation

enum LatencyCase: String, Sendable, CaseIterable {
    case unchanged = "unchanged"
    case p99Plus50 = "p99 +50%"
    case heavyTail = "heavy tail"
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

    static func all(traffic: [Double]) -> [DecisionScenario] {
        var result: [DecisionScenario] = []
        for rps in traffic {
            for baseline in [0.001, 0.01] {
                for multiplier in [1.0, 2, 5, 20] {
                    result.append(DecisionScenario(baselineErrorRate: baseline, errorMultiplier: multiplier, latency: .unchanged, requestsPerSecond: rps))
                }
                for latency in [LatencyCase.p99Plus50, .heavyTail] {
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
