import FledgeCore
import FledgeJSON
import Testing

@Suite("Rollout validation and durations")
struct ValidationTests {
    @Test(arguments: [
        ("30s", Int64(30_000)), ("1m", 60_000), ("1h30m", 5_400_000), ("500ms", 500), ("2h", 7_200_000), ("1m30s250ms", 90_250), ("0s", 0),
    ])
    func durations(text: String, ms: Int64) throws {
        let d = try RolloutDuration(parsing: text)
        #expect(d.milliseconds == ms)
        #expect(try RolloutDuration(parsing: d.description) == d)
    }

    @Test(arguments: [
        ("", "is empty"), ("10", "has no unit"), ("10 s", "unknown unit ' s'"), ("1.5m", "unknown unit '.'"), ("30m1h", "largest first"),
        ("5d", "unknown unit 'd'"), ("-5s", "expected a number"), ("s", "expected a number"), ("9999999999s", "too large"), ("1m1m", "largest first"),
    ])
    func badDurations(text: String, reason: String) {
        #expect {
            try RolloutDuration(parsing: text)
        } throws: { error in
            "\(error)".contains(reason) && "\(error)".contains("'\(text)'")
        }
    }

    @Test func seedSpecIsValid() {
        #expect(seedSpec().validate() == [])
        guard case .success(let plan) = seedSpec().plan() else { return }
        #expect(plan.canaryDeployment == "product-service-canary")
        #expect(plan.stages.map(\.weight) == [10, 25, 50, 100])
        #expect(plan.analysis.interval == .seconds(10))
        #expect(plan.analysis.noData == .inconclusive)
        #expect(plan.analysis.providerErrorLimit == Defaults.providerErrorLimit)
    }

    @Test func defaultsApply() {
        let spec = RolloutSpec(target: TargetSpec(deployment: "web"), stages: [StageSpec(weight: 50)])
        guard case .success(let plan) = spec.plan() else {
            Issue.record("expected valid")
            return
        }
        #expect(plan.traffic.virtualService == "web")
        #expect(plan.traffic.destinationRule == "web")
        #expect(plan.traffic.stableSubset == "stable")
        #expect(plan.traffic.canarySubset == "canary")
        #expect(plan.stages[0].hold == Defaults.interval)
        #expect(plan.progressDeadline == .minutes(10))
        #expect(plan.change.isEmpty)
    }

    struct Bad: Sendable, CustomStringConvertible {
        var name: String
        var edit: @Sendable (inout RolloutSpec) -> Void
        var expected: String
        var description: String { name }
    }

    static let bad: [Bad] = [
        Bad(name: "decreasing stage", edit: { $0.stages = [StageSpec(weight: 10), StageSpec(weight: 50), StageSpec(weight: 40)] },
            expected: "spec.stages[2].weight: 40 is not above the previous stage's 50"),
        Bad(name: "equal stage", edit: { $0.stages = [StageSpec(weight: 10), StageSpec(weight: 10)] },
            expected: "spec.stages[1].weight: 10 is not above the previous stage's 10"),
        Bad(name: "weight over 100", edit: { $0.stages = [StageSpec(weight: 101)] }, expected: "spec.stages[0].weight: 101 is not within 1…100"),
        Bad(name: "weight 0", edit: { $0.stages = [StageSpec(weight: 0)] }, expected: "spec.stages[0].weight: 0 is not within 1…100"),
        Bad(name: "no stages", edit: { $0.stages = [] }, expected: "spec.stages: needs at least one stage"),
        Bad(name: "stage weight missing", edit: { $0.stages = [StageSpec(hold: "1m")] }, expected: "spec.stages[0].weight: is required"),
        Bad(name: "bad hold", edit: { $0.stages = [StageSpec(weight: 10, hold: "1 minute")] }, expected: "spec.stages[0].hold: '1 minute' is not a duration"),
        Bad(name: "bad approval", edit: { $0.stages = [StageSpec(weight: 10, approval: "yes")] }, expected: "spec.stages[0].approval: 'yes' is not one of auto, manual"),
        Bad(name: "bad interval", edit: { $0.analysis?.interval = "10" }, expected: "spec.analysis.interval: '10' is not a duration: '10' has no unit"),
        Bad(name: "interval under 1s", edit: { $0.analysis?.interval = "500ms" }, expected: "spec.analysis.interval: 500ms is shorter than 1s"),
        Bad(name: "failure limit 0", edit: { $0.analysis?.failureLimit = 0 }, expected: "spec.analysis.failureLimit: 0 is below 1"),
        Bad(name: "min requests 0", edit: { $0.analysis?.minRequests = 0 }, expected: "spec.analysis.minRequests: 0 is below 1"),
        Bad(name: "provider limit 0", edit: { $0.analysis?.providerErrorLimit = 0 }, expected: "spec.analysis.providerErrorLimit: 0 is below 1"),
        Bad(name: "no data policy", edit: { $0.analysis?.noData = "pass" }, expected: "spec.analysis.noData: 'pass' is not one of inconclusive, fail"),
        Bad(name: "unknown metric", edit: { $0.analysis?.metrics = [MetricSpec(name: "sucess-rate", min: 99)] },
            expected: "spec.analysis.metrics[0].name: unknown metric 'sucess-rate'"),
        Bad(name: "success rate max", edit: { $0.analysis?.metrics = [MetricSpec(name: "success-rate", max: 99)] },
            expected: "spec.analysis.metrics[0].min: success-rate needs min"),
        Bad(name: "success rate over 100", edit: { $0.analysis?.metrics = [MetricSpec(name: "success-rate", min: 120)] },
            expected: "spec.analysis.metrics[0].min: 120 is not a percentage within 0…100"),
        Bad(name: "latency without max", edit: { $0.analysis?.metrics = [MetricSpec(name: "latency-p99")] },
            expected: "spec.analysis.metrics[0].max: latency-p99 needs max (milliseconds)"),
        Bad(name: "custom without bounds", edit: { $0.analysis?.metrics = [MetricSpec(name: "errors", query: "sum(x)")] },
            expected: "spec.analysis.metrics[0]: a custom metric needs min or max"),
        Bad(name: "custom bad placeholder", edit: { $0.analysis?.metrics = [MetricSpec(name: "errors", query: "sum(x{ns=\"{{ns}}\"})", max: 1)] },
            expected: "spec.analysis.metrics[0].query: metric 'errors': unknown placeholder {{ns}}"),
        Bad(name: "duplicate metric", edit: { $0.analysis?.metrics = [MetricSpec(name: "success-rate", min: 99), MetricSpec(name: "success-rate", min: 98)] },
            expected: "spec.analysis.metrics[1].name: 'success-rate' is listed twice"),
        Bad(name: "ratio below 1", edit: { $0.analysis?.metrics = [MetricSpec(name: "latency-p99", max: 500, maxRatioToStable: 0.5)] },
            expected: "spec.analysis.metrics[0].maxRatioToStable: 0.5 is below 1"),
        Bad(name: "min above max", edit: { $0.analysis?.metrics = [MetricSpec(name: "x", query: "q", min: 5, max: 1)] },
            expected: "spec.analysis.metrics[0]: min 5 is above max 1"),
        Bad(name: "no target", edit: { $0.target = nil }, expected: "spec.target.deployment: is required"),
        Bad(name: "bad target", edit: { $0.target = TargetSpec(deployment: "Product_Service") }, expected: "spec.target.deployment: 'Product_Service' is not a valid Deployment name"),
        Bad(name: "same subsets", edit: { $0.traffic?.canarySubset = "stable" }, expected: "spec.traffic.canarySubset: 'stable' is the same as stableSubset"),
        Bad(name: "image and images", edit: { $0.canary = CanaryChange(image: "a:1", images: ["app=b:2"]) }, expected: "spec.canary: set either image or images, not both"),
        Bad(name: "bad container", edit: { $0.canary = CanaryChange(images: ["App=b:2"]) }, expected: "spec.canary.images[0]: 'App' is not a container name"),
        Bad(name: "empty image", edit: { $0.canary = CanaryChange(images: ["app="]) }, expected: "spec.canary.images[0]: 'app=' has no image after '='"),
        Bad(name: "same container twice", edit: { $0.canary = CanaryChange(images: ["app=a:1", "app=a:2"]) }, expected: "spec.canary.images[1]: container 'app' is changed twice"),
        Bad(name: "patch not object", edit: { $0.canary = CanaryChange(templatePatch: .string("x")) }, expected: "spec.canary.templatePatch: must be an object"),
        Bad(name: "patch is a whole manifest", edit: { $0.canary = CanaryChange(templatePatch: ["apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout", "spec": ["target": ["deployment": "x"]]]) },
            expected: "spec.canary.templatePatch: has apiVersion, kind at its top, where a pod template has only metadata and spec: this is a whole Rollout manifest, not a merge patch over the pod template"),
        Bad(name: "patch with pod fields at its top", edit: { $0.canary = CanaryChange(templatePatch: ["containers": [["name": "app", "image": "b:2"]]]) },
            expected: "spec.canary.templatePatch: has containers at its top, where a pod template has only metadata and spec: put pod fields under spec"),
        Bad(name: "deadline", edit: { $0.progressDeadline = "forever" }, expected: "spec.progressDeadline: 'forever' is not a duration"),
        Bad(name: "deadline under interval", edit: { $0.progressDeadline = "5s" }, expected: "spec.progressDeadline: 5s is shorter than the analysis interval 10s"),
        Bad(name: "webhook type", edit: { $0.webhooks = [WebhookSpec(name: "a", type: "pre", url: "http://x")] }, expected: "spec.webhooks[0].type: 'pre' is not one of"),
        Bad(name: "webhook url", edit: { $0.webhooks = [WebhookSpec(name: "a", type: "pre-rollout", url: "ftp://x")] }, expected: "spec.webhooks[0].url: 'ftp://x' is not an http"),
        Bad(name: "webhook timeout", edit: { $0.webhooks = [WebhookSpec(name: "a", type: "pre-rollout", url: "http://x", timeout: "1h")] },
            expected: "spec.webhooks[0].timeout: 1h is not within 1s…5m"),
    ]

    @Test(arguments: bad)
    func invalid(_ c: Bad) {
        var spec = seedSpec()
        c.edit(&spec)
        let issues = spec.validate().map(\.description)
        #expect(issues.contains { $0.hasPrefix(c.expected) }, "\(issues)")
    }

    @Test func imageAndImagesTogetherIsOneError() {
        var spec = seedSpec()
        spec.canary = CanaryChange(image: "a:1", images: ["app=b:2"])
        #expect(spec.validate().map(\.description) == ["spec.canary: set either image or images, not both"])
    }

    /// One rule and one message for the target's name: room for -canary and the canary's ReplicaSet suffix.
    @Test func targetNameLength() {
        func issues(_ name: String) -> [String] {
            var spec = seedSpec()
            spec.target = TargetSpec(deployment: name)
            return spec.validate().map(\.description).filter { $0.hasPrefix("spec.target.deployment") }
        }
        #expect(issues(String(repeating: "a", count: 235)) == [])
        #expect(issues(String(repeating: "a", count: 236)) == [
            "spec.target.deployment: is 236 characters long; at most 235: the canary's ReplicaSets are named <deployment>-canary-<pod-template-hash>, up to 18 characters more, and names end at 253",
        ])
        let bad = issues("Product_Service")
        #expect(bad.count == 1 && bad[0].contains("'Product_Service' is not a valid Deployment name") && bad[0].contains("at most 235 characters"), "\(bad)")
        #expect(issues(String(repeating: "a", count: 300)).count == 1)
    }

    @Test func everyProblemIsReportedAtOnce() {
        var spec = seedSpec()
        spec.stages = [StageSpec(weight: 50), StageSpec(weight: 40)]
        spec.analysis?.interval = "x"
        spec.analysis?.failureLimit = 0
        #expect(spec.validate().count == 3)
    }

    @Test func customQueryPlaceholders() throws {
        var spec = seedSpec()
        spec.analysis?.metrics = [
            MetricSpec(name: "checkout-errors", query: "sum(rate(errors{namespace=\"{{namespace}}\",workload=\"{{workload}}\"}[{{interval}}]))", max: 1)
        ]
        guard case .success(let plan) = spec.plan() else {
            Issue.record("expected valid")
            return
        }
        let q = plan.analysis.metrics[0].query(namespace: "shop", workload: "product-service-canary", interval: plan.analysis.interval)
        #expect(q == "sum(rate(errors{namespace=\"shop\",workload=\"product-service-canary\"}[10s]))")
    }

    /// Whitespace inside the braces is accepted by validation and replaced by substitution alike (it passed
    /// validation and was sent literally, so every interval had no data).
    @Test func placeholdersWithSpacesAreReplaced() throws {
        var spec = seedSpec()
        spec.analysis?.metrics = [
            MetricSpec(name: "errors", query: "sum(rate(errors{namespace=\"{{ namespace }}\",workload=\"{{\tworkload}}\"}[{{interval  }}]))", max: 1)
        ]
        let plan = try spec.plan().get()
        let q = plan.analysis.metrics[0].query(namespace: "shop", workload: "product-service-canary", interval: plan.analysis.interval)
        #expect(q == "sum(rate(errors{namespace=\"shop\",workload=\"product-service-canary\"}[10s]))")
    }

    @Test(arguments: [
        ("sum(x{ns=\"{{namespace}\"})", "spec.analysis.metrics[0].query: metric 'errors': '{{namespace}\"})' opens a placeholder that is never closed with }}"),
        ("sum(x{ns=\"{{namespace\"})", "spec.analysis.metrics[0].query: metric 'errors': '{{namespace\"})' opens a placeholder that is never closed"),
        ("sum(x{ns=\"{{namespace {{workload}}\"})", "spec.analysis.metrics[0].query: metric 'errors': '{{namespace' opens a placeholder that is never closed"),
        ("sum(x{ns=\"{{ }}\"})", "spec.analysis.metrics[0].query: metric 'errors': empty placeholder {{}}"),
        ("sum(x{ns=\"{{ Namespace }}\"})", "spec.analysis.metrics[0].query: metric 'errors': unknown placeholder {{Namespace}}"),
    ])
    func badPlaceholdersNameTheMetricAndTheField(query: String, expected: String) {
        var spec = seedSpec()
        spec.analysis?.metrics = [MetricSpec(name: "errors", query: query, max: 1)]
        let issues = spec.validate().map(\.description)
        #expect(issues.contains { $0.hasPrefix(expected) }, "\(issues)")
        #expect(issues.count == 1, "\(issues)")
    }

    @Test func theScannerSplitsTextAndPlaceholders() throws {
        let template = try QueryTemplate(parsing: "a{{ namespace }}b{{workload}}{{interval}}")
        #expect(template.parts == [.text("a"), .placeholder("namespace"), .text("b"), .placeholder("workload"), .placeholder("interval")])
        #expect(template.render(["namespace": "n", "workload": "w", "interval": "1m"]) == "anbw1m")
        #expect(try QueryTemplate(parsing: "no placeholders {a=\"}\"}").parts == [.text("no placeholders {a=\"}\"}")])
        #expect(try QueryTemplate(parsing: "").parts.isEmpty)
    }

    @Test func timestamps() {
        let t = Timestamp(seconds: 1_800_000_000)
        #expect(t.description == "2027-01-15T08:00:00Z")
        #expect(Timestamp(rfc3339: "2027-01-15T08:00:00Z") == t)
        #expect(Timestamp(rfc3339: "2027-01-15T09:00:00.123+01:00") == t)
        #expect(Timestamp(rfc3339: "1970-01-01T00:00:00Z")?.seconds == 0)
        #expect(Timestamp(rfc3339: "2024-02-29T12:00:00Z")?.description == "2024-02-29T12:00:00Z")
        #expect(Timestamp(rfc3339: "yesterday") == nil)
        #expect(Timestamp(rfc3339: "2024-13-01T00:00:00Z") == nil)
    }
}

@Suite("Rollout objects")
struct RolloutObjectTests {
    @Test func referencesUseDefaults() {
        var rollout = seedRollout(spec: RolloutSpec(target: TargetSpec(deployment: "web")))
        #expect(
            rollout.references
                == RolloutReferences(namespace: "shop", stableDeployment: "web", canaryDeployment: "web-canary", virtualService: "web", destinationRule: "web"))
        rollout.spec.target = nil
        #expect(rollout.references == nil)
    }

    @Test func pendingRequestsComeFromAnnotationsUntilSeen() {
        var rollout = seedRollout()
        rollout.metadata.annotations = ["fledge.dev/abort": "t1", "fledge.dev/promote": "t2", "other": "x"]
        #expect(rollout.pendingRequests.map(\.kind) == [.abort, .promote])
        var status = RolloutStatus()
        status.requests = [RequestRecord(kind: .abort, token: "t1", seenAt: Timestamp(seconds: 0), accepted: false, message: "")]
        rollout.status = status
        #expect(rollout.pendingRequests.map(\.kind) == [.promote])
        rollout.metadata.annotations?["fledge.dev/abort"] = "t3"
        #expect(rollout.pendingRequests.map(\.kind) == [.abort, .promote])
    }

    @Test func notARollout() throws {
        #expect(throws: RolloutDecodingError.self) { try Rollout(json: ["kind": "Deployment", "metadata": ["name": "x"]]) }
        #expect(throws: RolloutDecodingError.self) { try Rollout(json: ["kind": "Rollout", "metadata": ["generation": "x"]]) }
        #expect(throws: RolloutDecodingError.self) { try Rollout(json: "text") }
    }

    @Test func brokenStatusIsDroppedNotFatal() throws {
        var json = try JSONValue(encoding: seedRollout())
        json["status"] = ["phase": "Exploded"]
        let rollout = try Rollout(json: json)
        #expect(rollout.status == nil)
    }
}
