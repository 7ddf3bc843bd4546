// The policies the decision benchmark replays on the same simulated traffic.
import FledgeJudge

/// How a policy decides after each of its analysis intervals.
enum DecisionRule: Sendable {
    /// Fledge's statistical judge.
    case judge(CanaryJudge)
    /// Flagger's documented rule: every interval, the canary's success rate must be at least
    /// `successRateMin` percent and its histogram p99 at most `latencyP99Max` ms (no data
    /// counts as a failed check); `threshold` failed checks roll back, a passed check moves
    /// one stage on (promoting after the last).
    case flagger(threshold: Int, successRateMin: Double, latencyP99Max: Double)
}

struct DecisionPolicy: Sendable {
    var name: String
    var intervalSeconds: Int
    var rule: DecisionRule
}

enum PolicyOutcome: Sendable, Equatable {
    case running
    case promoted(seconds: Int)
    case rolledBack(seconds: Int)
}

/// One policy's progress through one simulated rollout.
struct PolicyRun: Sendable {
    let policy: DecisionPolicy
    let stages: [Double]
    let bounds: [Double]
    var stage = 0
    var judgeState: JudgeState?
    var failedChecks = 0
    var intervalCanary: SimulatedCounts
    var intervalStable: SimulatedCounts
    var secondsInInterval = 0
    var outcome = PolicyOutcome.running
    /// Expected excess bad requests served by the canary so far.
    var exposure = 0.0
    var lastExplanation = ""

    init(policy: DecisionPolicy, stages: [Double], bounds: [Double]) {
        self.policy = policy
        self.stages = stages
        self.bounds = bounds
        intervalCanary = SimulatedCounts(bucketCount: bounds.count + 1)
        intervalStable = SimulatedCounts(bucketCount: bounds.count + 1)
        if case .judge(let judge) = policy.rule { judgeState = judge.initialState() }
    }

    var weight: Double { stages[stage] }

    /// Feeds one tick that ended at `now` seconds; `excessRate` is the canary's expected excess
    /// of bad requests per request.
    mutating func step(_ tick: SimulatedTick, seconds: Int, now: Int, excessRate: Double) throws {
        guard outcome == .running else { return }
        let (c, s) = tick.observe(weight: weight)
        exposure += Double(c.requests) * excessRate
        intervalCanary.add(c)
        intervalStable.add(s)
        secondsInInterval += seconds
        guard secondsInInterval >= policy.intervalSeconds else { return }
        defer {
            secondsInInterval = 0
            intervalCanary = SimulatedCounts(bucketCount: bounds.count + 1)
            intervalStable = SimulatedCounts(bucketCount: bounds.count + 1)
        }
        switch policy.rule {
        case .judge(let judge):
            let next = stage + 1 < stages.count ? stages[stage + 1] : 100
            let result = try judge.judge(
                canary: intervalCanary.sample(bounds: bounds), stable: intervalStable.sample(bounds: bounds),
                nextWeight: next, state: judgeState ?? judge.initialState())
            judgeState = result.state
            lastExplanation = result.verdict.explanation
            switch result.verdict.decision {
            case .rollback: outcome = .rolledBack(seconds: now)
            case .advance: advance(now: now)
            case .hold: break
            }
        case .flagger(let threshold, let successRateMin, let latencyP99Max):
            var passed = intervalCanary.requests > 0
            if passed {
                let successRate = 100 * Double(intervalCanary.requests - intervalCanary.errors) / Double(intervalCanary.requests)
                let p99 = try intervalCanary.sample(bounds: bounds).latency?.quantile(0.99) ?? .infinity
                passed = successRate >= successRateMin && p99 <= latencyP99Max
            }
            if passed {
                advance(now: now)
            } else {
                failedChecks += 1
                if failedChecks >= threshold { outcome = .rolledBack(seconds: now) }
            }
        }
    }

    mutating func advance(now: Int) {
        if stage + 1 < stages.count { stage += 1 } else { outcome = .promoted(seconds: now) }
    }
}
