import Foundation
import FledgeJSON
import FledgeJudge

/// One problem in a spec: the field path and what rule it breaks,
/// e.g. `spec.stages[2].weight: 40 is not above the previous stage's 50`.
public struct ValidationIssue: Sendable, Hashable, Codable, CustomStringConvertible {
    public var path: String
    public var message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}

/// Every problem of an invalid spec.
public struct ValidationErrors: Error, Sendable, Equatable, CustomStringConvertible {
    public var issues: [ValidationIssue]
    public var description: String { issues.map(\.description).joined(separator: "; ") }
}

extension TrafficSpec {
    /// The problems of `spec.traffic.routes` entries (index, name): empty names and names listed twice. Also used by
    /// lint on the entries that are strings when another entry is not, so that every bad entry is reported at once.
    public static func routeIssues(_ routes: [(index: Int, name: String)]) -> [ValidationIssue] {
        var out: [ValidationIssue] = []
        var seen: Set<String> = []
        for (i, r) in routes {
            if r.isEmpty { out.append(ValidationIssue(path: "spec.traffic.routes[\(i)]", message: "is empty")) }
            if !seen.insert(r).inserted { out.append(ValidationIssue(path: "spec.traffic.routes[\(i)]", message: "'\(r)' is listed twice")) }
        }
        return out
    }
}

/// A checked spec with every default applied. Built by `RolloutSpec.plan()`.
public struct RolloutPlan: Sendable, Equatable {
    public var target: String
    /// `<target>-canary`.
    public var canaryDeployment: String
    public var change: CanaryPlan
    public var traffic: TrafficPlan
    public var stages: [StagePlan]
    public var analysis: AnalysisPlan
    public var progressDeadline: RolloutDuration
    public var webhooks: [WebhookPlan]
}

public struct CanaryPlan: Sendable, Equatable {
    public var templatePatch: JSONValue?
    public var images: [ImageChange]
    public var replicas: Int?
    public init(templatePatch: JSONValue? = nil, images: [ImageChange] = [], replicas: Int? = nil) {
        self.templatePatch = templatePatch
        self.images = images
        self.replicas = replicas
    }
    /// True when the spec asks for no change at all.
    public var isEmpty: Bool { templatePatch == nil && images.isEmpty }
}

public struct ImageChange: Sendable, Equatable {
    /// nil: the template's only container.
    public var container: String?
    public var image: String

    /// Parses `[CONTAINER=]IMAGE`.
    public init(parsing text: String) throws(ValidationIssueMessage) {
        let trimmed = text
        guard !trimmed.isEmpty else { throw ValidationIssueMessage("is empty; expected [CONTAINER=]IMAGE") }
        guard !trimmed.contains(where: { $0 == " " || $0 == "\t" || $0 == "\n" }) else {
            throw ValidationIssueMessage("'\(text)' contains whitespace; expected [CONTAINER=]IMAGE")
        }
        if let eq = trimmed.firstIndex(of: "=") {
            let name = String(trimmed[..<eq])
            let image = String(trimmed[trimmed.index(after: eq)...])
            guard isDNSLabel(name) else {
                throw ValidationIssueMessage("'\(name)' is not a container name (lowercase letters, digits and '-', at most 63)")
            }
            guard !image.isEmpty else { throw ValidationIssueMessage("'\(text)' has no image after '='") }
            container = name
            self.image = image
        } else {
            container = nil
            image = trimmed
        }
    }

    public init(container: String?, image: String) {
        self.container = container
        self.image = image
    }
}

/// A message without its path (the caller knows the path).
public struct ValidationIssueMessage: Error, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

public struct TrafficPlan: Sendable, Equatable {
    public var virtualService: String
    /// Empty: every route whose destinations are exactly the two subsets.
    public var routes: [String]
    public var destinationRule: String
    public var stableSubset: String
    public var canarySubset: String

    public init(virtualService: String, routes: [String] = [], destinationRule: String, stableSubset: String, canarySubset: String) {
        self.virtualService = virtualService
        self.routes = routes
        self.destinationRule = destinationRule
        self.stableSubset = stableSubset
        self.canarySubset = canarySubset
    }
}

public struct StagePlan: Sendable, Equatable {
    public var weight: Int
    public var hold: RolloutDuration
    public var manualApproval: Bool
}

public enum NoDataPolicy: String, Sendable, Equatable {
    case inconclusive, fail
}

public struct AnalysisPlan: Sendable, Equatable {
    public var interval: RolloutDuration
    public var failureLimit: Int
    public var minRequests: Int
    public var noData: NoDataPolicy
    public var providerErrorLimit: Int
    public var metrics: [MetricPlan]
    public var prometheusAddress: String?
    /// The statistical judge; it acts only on intervals whose result carries counts of both workloads.
    public var judge: JudgePlan
}

/// `spec.analysis.judge` checked, with defaults.
public struct JudgePlan: Sendable, Equatable {
    public var enabled: Bool
    public var configuration: JudgeConfiguration
    public init(enabled: Bool = true, configuration: JudgeConfiguration = .default) {
        self.enabled = enabled
        self.configuration = configuration
    }
}

public struct MetricPlan: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Percent of requests that were not 5xx.
        case successRate
        /// Latency percentile in milliseconds (50, 90 or 99).
        case latency(percentile: Int)
        /// A PromQL template.
        case custom(query: String)
    }
    public var name: String
    public var kind: Kind
    public var min: Double?
    public var max: Double?
    public var maxDecreaseFromStable: Double?
    public var maxRatioToStable: Double?

    /// The PromQL for a custom metric with its placeholders filled in; nil for built-ins.
    public func query(namespace: String, workload: String, interval: RolloutDuration) -> String? {
        guard case .custom(let template) = kind else { return nil }
        // Validation scanned the template with the same QueryTemplate, so this parses; an unvalidated plan's bad
        // template is sent as written, and Prometheus's answer names the problem.
        guard let parsed = try? QueryTemplate(parsing: template) else { return template }
        return parsed.render(["namespace": namespace, "workload": workload, "interval": interval.description])
    }
}

public enum WebhookType: String, Sendable, Equatable, CaseIterable {
    case preRollout = "pre-rollout"
    case stageGate = "stage-gate"
    case postRollout = "post-rollout"
}

public struct WebhookPlan: Sendable, Equatable {
    public var name: String
    public var type: WebhookType
    public var url: String
    public var timeout: RolloutDuration
}

public enum Defaults {
    public static let interval = RolloutDuration.seconds(30)
    public static let failureLimit = 3
    public static let minRequests = 10
    public static let providerErrorLimit = 5
    public static let progressDeadline = RolloutDuration.minutes(10)
    public static let webhookTimeout = RolloutDuration.seconds(10)
    public static let stableSubset = "stable"
    public static let canarySubset = "canary"
}

/// Built-in metric names.
public let builtInMetrics = ["success-rate", "latency-p50", "latency-p90", "latency-p99"]

extension RolloutSpec {
    /// Every problem of this spec, each with its field path (`spec.…`) and rule. Empty when valid.
    public func validate() -> [ValidationIssue] {
        switch plan() {
        case .success: return []
        case .failure(let errors): return errors.issues
        }
    }

    /// The checked spec with defaults, or every problem found.
    /// The traffic this spec names, with the defaults, whether or not the rest of it validates (nil without a
    /// target): where a Rollout being deleted still has to move its weight back from.
    public var namedTraffic: TrafficPlan? {
        guard let target = target?.deployment, !target.isEmpty else { return nil }
        return TrafficPlan(
            virtualService: traffic?.virtualService ?? target, routes: traffic?.routes ?? [], destinationRule: traffic?.destinationRule ?? target,
            stableSubset: traffic?.stableSubset ?? Defaults.stableSubset, canarySubset: traffic?.canarySubset ?? Defaults.canarySubset)
    }

    public func plan() -> Result<RolloutPlan, ValidationErrors> {
        var issues: [ValidationIssue] = []
        func issue(_ path: String, _ message: String) { issues.append(ValidationIssue(path: path, message: message)) }
        func duration(_ text: String?, _ path: String, default value: RolloutDuration) -> RolloutDuration {
            guard let text else { return value }
            do {
                return try RolloutDuration(parsing: text)
            } catch {
                issue(path, error.description)
                return value
            }
        }
        func name(_ value: String?, _ path: String, default fallback: String? = nil) -> String {
            guard let value else {
                if let fallback { return fallback }
                issue(path, "is required")
                return ""
            }
            if !isDNSSubdomain(value) {
                issue(path, "'\(value)' is not a valid name (lowercase letters, digits, '-' and '.', at most 253)")
            }
            return value
        }

        // target: a Deployment name with room for the canary's and its ReplicaSets' suffixes (one rule, one message).
        let target = self.target?.deployment ?? ""
        if self.target?.deployment == nil {
            issue("spec.target.deployment", "is required")
        } else if !isDNSSubdomain(target) || target.utf8.count > RolloutReferences.maxTargetLength {
            let limit = RolloutReferences.maxTargetLength
            let why = "the canary's ReplicaSets are named <deployment>-canary-<pod-template-hash>, up to \(253 - limit) characters more, and names end at 253"
            issue(
                "spec.target.deployment",
                isDNSSubdomain(target)
                    ? "is \(target.utf8.count) characters long; at most \(limit): \(why)"
                    : "'\(target)' is not a valid Deployment name (lowercase letters, digits, '-' and '.', at most \(limit) characters: \(why))")
        }

        // canary
        var images: [ImageChange] = []
        var patch: JSONValue?
        if let canary {
            if canary.image != nil, canary.images != nil {
                issue("spec.canary", "set either image or images, not both")
            }
            var texts: [(String, String)] = []
            if let image = canary.image { texts.append((image, "spec.canary.image")) }
            for (i, image) in (canary.images ?? []).enumerated() { texts.append((image, "spec.canary.images[\(i)]")) }
            var seen: Set<String> = []
            for (text, path) in texts {
                do {
                    let change = try ImageChange(parsing: text)
                    let key = change.container ?? ""
                    if !seen.insert(key).inserted {
                        issue(path, change.container.map { "container '\($0)' is changed twice" } ?? "more than one image without a container name")
                    }
                    images.append(change)
                } catch {
                    issue(path, error.message)
                }
            }
            // (With both image and images set, the first error says it all.)
            if images.count > 1, canary.image == nil || canary.images == nil, images.contains(where: { $0.container == nil }) {
                issue("spec.canary.images", "with several images, each needs a container name: CONTAINER=IMAGE")
            }
            if let p = canary.templatePatch {
                if case .object(let fields) = p {
                    patch = p
                    // A pod template has only these two: anything else would be merged in as junk the API server
                    // drops (a whole manifest given as the patch rolls out the stable pod under a new revision).
                    let stray = fields.keys.filter { $0 != "metadata" && $0 != "spec" }
                    if !stray.isEmpty {
                        let kind = fields["kind"]?.stringValue
                        let hint = kind.map { "this is a whole \($0) manifest, not a merge patch over the pod template" } ?? "put pod fields under spec"
                        issue(
                            "spec.canary.templatePatch",
                            "has \(stray.joined(separator: ", ")) at its top, where a pod template has only metadata and spec: \(hint)")
                    }
                } else if !p.isNull {
                    issue("spec.canary.templatePatch", "must be an object (a JSON merge patch over the pod template), found \(p.typeNameWithArticle)")
                }
            }
            if let r = canary.replicas, r < 1 || r > 1000 { issue("spec.canary.replicas", "\(r) is not within 1…1000") }
        }

        // traffic
        let t = traffic ?? TrafficSpec()
        let vs = name(t.virtualService, "spec.traffic.virtualService", default: target)
        let dr = name(t.destinationRule, "spec.traffic.destinationRule", default: target)
        let stableSubset = t.stableSubset ?? Defaults.stableSubset
        let canarySubset = t.canarySubset ?? Defaults.canarySubset
        if !isDNSLabel(stableSubset) { issue("spec.traffic.stableSubset", "'\(stableSubset)' is not a valid subset name") }
        if !isDNSLabel(canarySubset) { issue("spec.traffic.canarySubset", "'\(canarySubset)' is not a valid subset name") }
        if stableSubset == canarySubset {
            issue("spec.traffic.canarySubset", "'\(canarySubset)' is the same as stableSubset; the two slots need different subsets")
        }
        let routes = t.routes ?? []
        issues += TrafficSpec.routeIssues(routes.enumerated().map { ($0.offset, $0.element) })

        // analysis
        let a = analysis ?? AnalysisSpec()
        let interval = duration(a.interval, "spec.analysis.interval", default: Defaults.interval)
        if interval < .seconds(1) { issue("spec.analysis.interval", "\(interval) is shorter than 1s") }
        let failureLimit = a.failureLimit ?? Defaults.failureLimit
        if failureLimit < 1 { issue("spec.analysis.failureLimit", "\(failureLimit) is below 1") }
        let minRequests = a.minRequests ?? Defaults.minRequests
        if minRequests < 1 {
            issue("spec.analysis.minRequests", "\(minRequests) is below 1; a canary that gets no traffic is never promoted")
        }
        var noData = NoDataPolicy.inconclusive
        if let text = a.noData {
            if let p = NoDataPolicy(rawValue: text) { noData = p } else {
                issue("spec.analysis.noData", "'\(text)' is not one of inconclusive, fail")
            }
        }
        let providerErrorLimit = a.providerErrorLimit ?? Defaults.providerErrorLimit
        if providerErrorLimit < 1 { issue("spec.analysis.providerErrorLimit", "\(providerErrorLimit) is below 1") }
        if let address = a.prometheus?.address, !(address.hasPrefix("http://") || address.hasPrefix("https://")) {
            issue("spec.analysis.prometheus.address", "'\(address)' is not an http:// or https:// URL")
        }
        let judgeSpec = a.judge ?? JudgeSpec()
        var judgeConfiguration = JudgeConfiguration.default
        // Each field is checked on its own, so every bad one is reported with its path.
        let judgeFields: [(String, Double?, WritableKeyPath<JudgeConfiguration, Double>)] = [
            ("falseRollbackRate", judgeSpec.falseRollbackRate, \.falseRollbackRate),
            ("falsePromotionRate", judgeSpec.falsePromotionRate, \.falsePromotionRate),
            ("errorRateRatioMargin", judgeSpec.errorRateRatioMargin, \.errorRateRatioMargin),
            ("errorRateAbsoluteMargin", judgeSpec.errorRateAbsoluteMargin, \.errorRateAbsoluteMargin),
            ("latencyTailRatioMargin", judgeSpec.latencyTailRatioMargin, \.latencyTailRatioMargin),
            ("latencyTailAbsoluteMargin", judgeSpec.latencyTailAbsoluteMargin, \.latencyTailAbsoluteMargin),
            ("latencyTailShare", judgeSpec.latencyTailShare, \.latencyTailShare),
            ("latencyBoundarySamples", judgeSpec.latencyBoundarySamples, \.latencyBoundarySamples),
        ]
        for (field, value, keyPath) in judgeFields {
            guard let value else { continue }
            var single = JudgeConfiguration.default
            single[keyPath: keyPath] = value
            do {
                try single.validate()
                judgeConfiguration[keyPath: keyPath] = value
            } catch {
                issue("spec.analysis.judge.\(field)", error.problem)
            }
        }
        let judgePlan = JudgePlan(enabled: judgeSpec.enabled ?? true, configuration: judgeConfiguration)

        var metrics: [MetricPlan] = []
        var metricNames: Set<String> = []
        for (i, m) in (a.metrics ?? []).enumerated() {
            let path = "spec.analysis.metrics[\(i)]"
            guard let metricName = m.name, !metricName.isEmpty else {
                issue("\(path).name", "is required")
                continue
            }
            if !metricNames.insert(metricName).inserted { issue("\(path).name", "'\(metricName)' is listed twice") }
            let kind: MetricPlan.Kind
            if let query = m.query {
                if query.trimmingWhitespace().isEmpty { issue("\(path).query", "is empty") }
                do {
                    _ = try QueryTemplate(parsing: query)
                } catch {
                    issue("\(path).query", "metric '\(metricName)': \(error.message)")
                }
                kind = .custom(query: query)
                if m.min == nil, m.max == nil { issue(path, "a custom metric needs min or max") }
            } else {
                switch metricName {
                case "success-rate":
                    kind = .successRate
                    if m.min == nil { issue("\(path).min", "success-rate needs min (percent of non-5xx responses)") }
                    if m.max != nil { issue("\(path).max", "success-rate is judged by min, not max") }
                    if m.maxRatioToStable != nil { issue("\(path).maxRatioToStable", "success-rate is compared with maxDecreaseFromStable") }
                case "latency-p50", "latency-p90", "latency-p99":
                    kind = .latency(percentile: Int(metricName.dropFirst("latency-p".count))!)
                    if m.max == nil { issue("\(path).max", "\(metricName) needs max (milliseconds)") }
                    if m.min != nil { issue("\(path).min", "\(metricName) is judged by max, not min") }
                    if m.maxDecreaseFromStable != nil { issue("\(path).maxDecreaseFromStable", "\(metricName) is compared with maxRatioToStable") }
                default:
                    issue("\(path).name", "unknown metric '\(metricName)': built-ins are \(builtInMetrics.joined(separator: ", ")); a custom metric needs a query")
                    continue
                }
            }
            if case .successRate = kind, let min = m.min, !(0...100).contains(min) { issue("\(path).min", "\(fmt(min)) is not a percentage within 0…100") }
            if case .latency = kind, let max = m.max, max <= 0 { issue("\(path).max", "\(fmt(max)) ms is not above 0") }
            if let min = m.min, let max = m.max, min > max { issue(path, "min \(fmt(min)) is above max \(fmt(max))") }
            if let d = m.maxDecreaseFromStable, d < 0 { issue("\(path).maxDecreaseFromStable", "\(fmt(d)) is negative") }
            if let r = m.maxRatioToStable, r < 1 { issue("\(path).maxRatioToStable", "\(fmt(r)) is below 1 (the canary would have to beat stable)") }
            for (value, field) in [(m.min, "min"), (m.max, "max"), (m.maxDecreaseFromStable, "maxDecreaseFromStable"), (m.maxRatioToStable, "maxRatioToStable")] {
                if let v = value, !v.isFinite { issue("\(path).\(field)", "is not a finite number") }
            }
            metrics.append(
                MetricPlan(name: metricName, kind: kind, min: m.min, max: m.max, maxDecreaseFromStable: m.maxDecreaseFromStable, maxRatioToStable: m.maxRatioToStable))
        }

        // stages
        var stages: [StagePlan] = []
        if let specStages = self.stages, !specStages.isEmpty {
            if specStages.count > 50 { issue("spec.stages", "has \(specStages.count) stages; at most 50") }
            var previous: Int?
            for (i, s) in specStages.enumerated() {
                let path = "spec.stages[\(i)]"
                guard let weight = s.weight else {
                    issue("\(path).weight", "is required")
                    continue
                }
                if !(1...100).contains(weight) {
                    issue("\(path).weight", "\(weight) is not within 1…100")
                } else if let previous, weight <= previous {
                    issue("\(path).weight", "\(weight) is not above the previous stage's \(previous)")
                }
                previous = weight
                let hold = duration(s.hold, "\(path).hold", default: interval)
                var manual = false
                switch s.approval {
                case nil, "auto": break
                case "manual": manual = true
                case let other?: issue("\(path).approval", "'\(other)' is not one of auto, manual")
                }
                stages.append(StagePlan(weight: weight, hold: hold, manualApproval: manual))
            }
        } else {
            issue("spec.stages", "needs at least one stage, e.g. [{weight: 10, hold: 1m}, {weight: 50, hold: 2m}]")
        }

        // A passing check is progress: the default leaves room for two intervals, or a long interval (15m) would end
        // every rollout before its first check.
        let deadline = duration(
            progressDeadline, "spec.progressDeadline",
            default: max(Defaults.progressDeadline, RolloutDuration(milliseconds: 2 * interval.milliseconds)))
        if progressDeadline != nil, deadline < interval {
            issue("spec.progressDeadline", "\(deadline) is shorter than the analysis interval \(interval)")
        }

        var webhooks: [WebhookPlan] = []
        var hookNames: Set<String> = []
        for (i, w) in (self.webhooks ?? []).enumerated() {
            let path = "spec.webhooks[\(i)]"
            let hookName = w.name ?? ""
            if hookName.isEmpty { issue("\(path).name", "is required") } else if !hookNames.insert(hookName).inserted {
                issue("\(path).name", "'\(hookName)' is listed twice")
            }
            var type = WebhookType.preRollout
            if let text = w.type {
                if let t = WebhookType(rawValue: text) { type = t } else {
                    issue("\(path).type", "'\(text)' is not one of \(WebhookType.allCases.map(\.rawValue).joined(separator: ", "))")
                }
            } else {
                issue("\(path).type", "is required (\(WebhookType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            let url = w.url ?? ""
            if url.isEmpty { issue("\(path).url", "is required") } else if !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
                issue("\(path).url", "'\(url)' is not an http:// or https:// URL")
            }
            let timeout = duration(w.timeout, "\(path).timeout", default: Defaults.webhookTimeout)
            if timeout < .seconds(1) || timeout > .minutes(5) { issue("\(path).timeout", "\(timeout) is not within 1s…5m") }
            webhooks.append(WebhookPlan(name: hookName, type: type, url: url, timeout: timeout))
        }

        guard issues.isEmpty else { return .failure(ValidationErrors(issues: issues)) }
        return .success(
            RolloutPlan(
                target: target, canaryDeployment: RolloutReferences.canaryDeployment(of: target),
                change: CanaryPlan(templatePatch: patch, images: images, replicas: canary?.replicas),
                traffic: TrafficPlan(virtualService: vs, routes: routes, destinationRule: dr, stableSubset: stableSubset, canarySubset: canarySubset),
                stages: stages,
                analysis: AnalysisPlan(
                    interval: interval, failureLimit: failureLimit, minRequests: minRequests, noData: noData,
                    providerErrorLimit: providerErrorLimit, metrics: metrics, prometheusAddress: a.prometheus?.address,
                    judge: judgePlan),
                progressDeadline: deadline, webhooks: webhooks))
    }
}

/// A number as people write it: `99`, `0.5`.
func fmt(_ d: Double) -> String {
    if d.rounded() == d, abs(d) < 1e15 { return String(Int64(d)) }
    return String(d)
}

/// Kubernetes' DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit.
func isDNSLabel(_ s: String) -> Bool {
    s.utf8.count <= 63 && isDNSLabelText(Substring(s))
}

func isDNSLabelText(_ s: Substring) -> Bool {
    let bytes = Array(s.utf8)
    guard let first = bytes.first, let last = bytes.last else { return false }
    func ok(_ c: UInt8) -> Bool { (c >= 97 && c <= 122) || (c >= 48 && c <= 57) }
    return ok(first) && ok(last) && bytes.allSatisfy { ok($0) || $0 == 45 }
}

/// Kubernetes' DNS-1123 subdomain, the rule for object names: at most 253 characters, '.'-separated parts as in a
/// label. Kubernetes sets no length per part (DNS would), so a 100-character Deployment name without dots is valid.
func isDNSSubdomain(_ s: String) -> Bool {
    guard !s.isEmpty, s.utf8.count <= 253 else { return false }
    return s.split(separator: ".", omittingEmptySubsequences: false).allSatisfy(isDNSLabelText)
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars.drop { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        var s = String(String.UnicodeScalarView(scalars))
        while let last = s.unicodeScalars.last, last == " " || last == "\t" || last == "\n" || last == "\r" { s.unicodeScalars.removeLast() }
        return s
    }
}
