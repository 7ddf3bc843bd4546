import ArgumentParser
import FledgeCore
import FledgeJSON
import Foundation

/// `fledge-bench decide`: CPU time of one `decide` pass over many rollouts, idle and in flight, against the
/// baseline of reading each Rollout object from JSON (which the controller does anyway).
struct DecideBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decide", abstract: "CPU time of decide() over N rollouts (idle and progressing).")

    @Option(help: "Number of rollouts.")
    var count = 10_000

    @Option(help: "Passes; the best is reported.")
    var passes = 5

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard passes >= 1 else { throw ValidationError("--passes must be at least 1") }
    }

    func run() throws {
        let world = BenchWorld()
        let idle = (0..<count).map { world.rollout(index: $0, phase: .healthy) }
        let progressing = (0..<count).map { world.rollout(index: $0, phase: .progressing) }
        let objects = try idle.map { try JSONValue(encoding: $0) }
        let now = Timestamp(seconds: 1_800_000_100)
        let observedIdle = world.observed(weight: 0)
        let observedBusy = world.observed(weight: 10)

        var sink = 0
        let baseline = best(passes) {
            for o in objects { if let r = try? Rollout(json: o) { sink &+= r.metadata.name.count } }
        }
        let idleTime = best(passes) {
            for r in idle { sink &+= decide(rollout: r, observed: observedIdle, analysis: .none, now: now).actions.count }
        }
        let busyTime = best(passes) {
            for r in progressing { sink &+= decide(rollout: r, observed: observedBusy, analysis: .none, now: now).actions.count }
        }
        let idleWrites = idle.prefix(100).map { decide(rollout: $0, observed: observedIdle, analysis: .none, now: now).writes.count }.reduce(0, +)
        print("rollouts: \(count) (best of \(passes) passes, CPU time)")
        print(String(format: "baseline  Rollout(json:) read: %8.1f ms  (%5.1f µs each)", baseline * 1000, baseline / Double(count) * 1e6))
        print(String(format: "decide    idle (Healthy):     %8.1f ms  (%5.1f µs each, %.2f× baseline)", idleTime * 1000, idleTime / Double(count) * 1e6, idleTime / baseline))
        print(String(format: "decide    Progressing:        %8.1f ms  (%5.1f µs each, %.2f× baseline)", busyTime * 1000, busyTime / Double(count) * 1e6, busyTime / baseline))
        print("writes asked for by 100 idle, settled rollouts: \(idleWrites)")
        if sink == 42 { print("") }
    }

    func best(_ passes: Int, _ body: () -> Void) -> Double {
        var best = Double.infinity
        for _ in 0..<passes {
            let start = cpuSeconds()
            body()
            best = min(best, cpuSeconds() - start)
        }
        return best
    }

    func cpuSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// The seed's product-service objects, settled.
struct BenchWorld {
    let template: JSONValue = [
        "metadata": ["labels": ["app": "product-service", "version": "v1"]],
        "spec": ["containers": [["name": "product-service", "image": "registry.example/product-service:1.0.0", "ports": [["containerPort": 8080]]]]],
    ]

    func virtualService(weight: Int64) -> JSONValue {
        [
            "metadata": ["name": "product-service"],
            "spec": [
                "hosts": ["product-service"],
                "http": [
                    ["match": [["headers": ["x-canary": ["exact": "true"]]]], "route": [["destination": ["host": "product-service", "subset": "canary"]]]],
                    [
                        "route": [
                            ["destination": ["host": "product-service", "subset": "stable"], "weight": .int(100 - weight)],
                            ["destination": ["host": "product-service", "subset": "canary"], "weight": .int(weight)],
                        ]
                    ],
                ],
            ],
        ]
    }

    let destinationRule: JSONValue = [
        "metadata": ["name": "product-service"],
        "spec": ["host": "product-service", "subsets": [["name": "stable", "labels": ["version": "v1"]], ["name": "canary", "labels": ["version": "v2"]]]],
    ]

    func observed(weight: Int64) -> Observed {
        let stable = ObservedDeployment(
            name: "product-service", template: template, selector: ["app": "product-service", "version": "v1"], replicas: 3, readyReplicas: 3,
            updatedReplicas: 3, availableReplicas: 3)
        var canaryTemplate = template
        canaryTemplate[path: ["metadata", "labels", "version"]] = "v2"
        canaryTemplate[path: ["spec", "containers"]] = [["name": "product-service", "image": "registry.example/product-service:2.0.0", "ports": [["containerPort": 8080]]]]
        var effective = template
        effective[path: ["spec", "containers"]] = canaryTemplate[path: ["spec", "containers"]]
        let canary = ObservedDeployment(
            name: "product-service-canary", template: canaryTemplate, selector: ["app": "product-service", "version": "v2"], replicas: weight > 0 ? 3 : 0,
            readyReplicas: weight > 0 ? 3 : 0, updatedReplicas: weight > 0 ? 3 : 0, availableReplicas: weight > 0 ? 3 : 0,
            revisionAnnotation: revision(of: effective))
        return Observed(stable: stable, canary: canary, virtualService: virtualService(weight: weight), destinationRule: destinationRule)
    }

    func rollout(index: Int, phase: Phase) -> Rollout {
        let spec = RolloutSpec(
            target: TargetSpec(deployment: "product-service"),
            canary: CanaryChange(image: phase == .healthy ? "registry.example/product-service:1.0.0" : "registry.example/product-service:2.0.0"),
            stages: [StageSpec(weight: 10, hold: "20s"), StageSpec(weight: 25, hold: "20s"), StageSpec(weight: 50, hold: "20s"), StageSpec(weight: 100, hold: "20s")],
            analysis: AnalysisSpec(
                interval: "10s", failureLimit: 3, minRequests: 20,
                metrics: [MetricSpec(name: "success-rate", min: 99), MetricSpec(name: "latency-p99", max: 500)]))
        var rollout = Rollout(metadata: ObjectMeta(name: "product-service-\(index)", namespace: "shop", generation: 1), spec: spec)
        // Settle the status the way the controller would have left it.
        let now = Timestamp(seconds: 1_800_000_000)
        var decision = decide(rollout: rollout, observed: observed(weight: phase == .healthy ? 0 : 10), analysis: .none, now: now)
        rollout.status = decision.status
        decision = decide(rollout: rollout, observed: observed(weight: phase == .healthy ? 0 : 10), analysis: .none, now: now)
        rollout.status = decision.status
        return rollout
    }
}
