import FledgeJSON

/// The parts of `metadata` Fledge reads.
public struct ObjectMeta: Codable, Sendable, Equatable {
    public var name: String
    public var namespace: String?
    public var uid: String?
    public var generation: Int64?
    public var labels: [String: String]?
    public var annotations: [String: String]?
    public var finalizers: [String]?
    /// Set by the API server when the object is deleted while finalizers remain.
    public var deletionTimestamp: String?

    public init(
        name: String, namespace: String? = nil, uid: String? = nil, generation: Int64? = nil,
        labels: [String: String]? = nil, annotations: [String: String]? = nil, finalizers: [String]? = nil,
        deletionTimestamp: String? = nil
    ) {
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.generation = generation
        self.labels = labels
        self.annotations = annotations
        self.finalizers = finalizers
        self.deletionTimestamp = deletionTimestamp
    }
}

public enum Finalizers {
    /// On a Rollout while traffic may reach its canary: deleting the Rollout first moves that traffic back to
    /// stable (on a cluster the canary Deployment is garbage-collected with its owner, and a weight left on it
    /// would send requests to no pod).
    public static let traffic = "fledge.dev/traffic"
}

/// A Rollout object: `apiVersion: fledge.dev/v1alpha1`, `kind: Rollout`.
public struct Rollout: Codable, Sendable, Equatable {
    public static let apiVersion = "fledge.dev/v1alpha1"
    public static let kind = "Rollout"

    public var metadata: ObjectMeta
    public var spec: RolloutSpec
    public var status: RolloutStatus?
    /// Problems met while decoding `spec` from JSON (a string where a number belongs…), one per field. A field that
    /// does not decode is read as absent, so the rest of `spec` is still there to check; `plan()` reports these
    /// and the rest together. Not encoded.
    public var specDecodingIssues: [ValidationIssue] = []
    /// The paths (`spec.stages[0].weight`) of the optional fields read as absent because of `specDecodingIssues`.
    public internal(set) var specFieldsReadAsAbsent: [String] = []

    public init(metadata: ObjectMeta, spec: RolloutSpec, status: RolloutStatus? = nil) {
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }

    enum CodingKeys: String, CodingKey { case apiVersion, kind, metadata, spec, status }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        metadata = try c.decode(ObjectMeta.self, forKey: .metadata)
        spec = try c.decodeIfPresent(RolloutSpec.self, forKey: .spec) ?? RolloutSpec()
        status = try c.decodeIfPresent(RolloutStatus.self, forKey: .status)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Rollout.apiVersion, forKey: .apiVersion)
        try c.encode(Rollout.kind, forKey: .kind)
        try c.encode(metadata, forKey: .metadata)
        try c.encode(spec, forKey: .spec)
        try c.encodeIfPresent(status, forKey: .status)
    }

    /// Reads a Rollout object. Throws only when `metadata` is unusable; a spec that does not decode is kept
    /// as `specDecodingIssues` (so the controller can report it), and a status that does not decode is
    /// dropped (the controller starts over from the cluster's state).
    public init(json: JSONValue) throws(RolloutDecodingError) {
        guard case .object = json else { throw RolloutDecodingError(path: "", message: "expected an object, found \(json.typeNameWithArticle)") }
        if let kind = json["kind"]?.stringValue, kind != Rollout.kind {
            throw RolloutDecodingError(path: "kind", message: "expected Rollout, found \(kind)")
        }
        guard let metadataJSON = json["metadata"], !metadataJSON.isNull else { throw RolloutDecodingError(path: "metadata", message: "is required") }
        do {
            metadata = try JSONValueDecoder.decode(ObjectMeta.self, from: metadataJSON)
        } catch {
            throw RolloutDecodingError(path: "metadata" + codingPathText(error), message: decodingMessage(error))
        }
        if let specJSON = json["spec"], !specJSON.isNull {
            do {
                // Each field of the wrong type is read as absent and reported, so one does not hide the others.
                let (decoded, problems) = try JSONValueDecoder.decodeCollectingProblems(RolloutSpec.self, from: Rollout.durationsAsText(specJSON))
                spec = decoded
                specDecodingIssues = problems.map { ValidationIssue(path: "spec" + codingPathText($0.error), message: decodingMessage($0.error)) }
                specFieldsReadAsAbsent = problems.map { "spec" + codingPathText($0.absentField) }
            } catch {
                spec = RolloutSpec()
                specDecodingIssues = [ValidationIssue(path: "spec" + codingPathText(error), message: decodingMessage(error))]
                specFieldsReadAsAbsent = ["spec"]
            }
        } else {
            spec = RolloutSpec()
        }
        if let statusJSON = json["status"], !statusJSON.isNull {
            status = try? statusJSON.decode(RolloutStatus.self)
        } else {
            status = nil
        }
    }

    /// YAML turns `interval: 10` into a number; keep it as text so validation can say what is wrong with it
    /// (`'10' has no unit`) instead of failing the whole decode.
    static func durationsAsText(_ spec: JSONValue) -> JSONValue {
        func text(_ v: JSONValue?) -> JSONValue? {
            switch v {
            case .int(let i)?: return .string(String(i))
            case .double(let d)?: return .string(fmt(d))
            default: return v
            }
        }
        var s = spec
        if s["progressDeadline"] != nil { s["progressDeadline"] = text(s["progressDeadline"]) }
        if s[path: ["analysis", "interval"]] != nil { s[path: ["analysis", "interval"]] = text(s[path: ["analysis", "interval"]]) }
        for (list, field) in [("stages", "hold"), ("webhooks", "timeout")] {
            if case .array(var items)? = s[list] {
                for i in items.indices where items[i][field] != nil { items[i][field] = text(items[i][field]) }
                s[list] = .array(items)
            }
        }
        return s
    }

    /// Every problem of the spec at once: the fields that did not decode, then what `spec.plan()` finds in the
    /// rest. A field that did not decode was read as absent; what `spec.plan()` says about it (`is required`) is
    /// left out.
    public func plan() -> Result<RolloutPlan, ValidationErrors> {
        let planned = spec.plan()
        guard !specDecodingIssues.isEmpty else { return planned }
        var issues = specDecodingIssues
        if case .failure(let errors) = planned {
            issues += errors.issues.filter { issue in !specFieldsReadAsAbsent.contains { isPath(issue.path, within: $0) } }
        }
        return .failure(ValidationErrors(issues: issues))
    }

    /// The `fledge.dev/abort-reason` annotation as one line (whitespace runs, line breaks included, become one
    /// space) of at most `abortReasonLimit` characters; nil when absent or blank.
    public var abortReason: String? {
        guard let raw = metadata.annotations?[ManualRequest.abortReasonAnnotation] else { return nil }
        let words = raw.split(whereSeparator: { $0.isWhitespace || $0.isNewline })
        guard !words.isEmpty else { return nil }
        let line = words.joined(separator: " ")
        return line.count <= Self.abortReasonLimit ? line : String(line.prefix(Self.abortReasonLimit - 1)) + "…"
    }

    /// Characters of an abort reason that go into Events and `status.message` (an Event's note holds at most 1 kB).
    public static let abortReasonLimit = 256

    /// Manual requests whose annotation token differs from the one last recorded in status, in the order
    /// abort, retry, promote-full, promote.
    public var pendingRequests: [(kind: ManualRequest, token: String)] {
        let annotations = metadata.annotations ?? [:]
        let seen = status?.requests ?? []
        return [ManualRequest.abort, .retry, .promoteFull, .promote].compactMap { kind in
            guard let token = annotations[kind.annotation], !token.isEmpty else { return nil }
            if seen.contains(where: { $0.kind == kind && $0.token == token }) { return nil }
            return (kind, token)
        }
    }
}

public struct RolloutDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { path.isEmpty ? "Rollout: \(message)" : "\(path): \(message)" }
}

/// `spec.stages[0].weight` is within `spec.stages` and `spec.stages[0]`, and within itself.
func isPath(_ path: String, within field: String) -> Bool {
    path == field || path.hasPrefix(field + ".") || path.hasPrefix(field + "[")
}

/// `.stages[2].weight` from a DecodingError's coding path.
func codingPathText(_ error: any Error) -> String {
    switch error as? DecodingError {
    case .typeMismatch(_, let ctx), .valueNotFound(_, let ctx), .dataCorrupted(let ctx): return codingPathText(ctx.codingPath)
    case .keyNotFound(let key, let ctx): return codingPathText(ctx.codingPath + [key])
    default: return ""
    }
}

func codingPathText(_ path: [any CodingKey]) -> String {
    path.map { key in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }.joined()
}

/// What is wrong, for a path: JSONValueDecoder's errors carry it (`expected an integer, found 50.5`), as do the
/// `init(from:)` of Timestamp and RolloutDuration.
func decodingMessage(_ error: any Error) -> String {
    switch error as? DecodingError {
    case .typeMismatch(_, let ctx), .dataCorrupted(let ctx): return ctx.debugDescription
    case .valueNotFound: return "must not be null"
    case .keyNotFound: return "is required"
    default: return "\(error)"
    }
}

/// The objects a Rollout reads and writes, in its namespace.
public struct RolloutReferences: Sendable, Hashable {
    public var namespace: String
    public var stableDeployment: String
    /// `<stableDeployment>-canary` (`canaryDeployment(of:)`), owned by Fledge.
    public var canaryDeployment: String
    public var virtualService: String
    public var destinationRule: String
    /// The VirtualService that may still carry canary weight from before `spec.traffic` changed
    /// (`status.routedTraffic`), when it is not `virtualService`.
    public var formerVirtualService: String?
    /// The canary Deployment this Rollout made for an earlier target (`status.canaryDeployment`), when it is not
    /// `canaryDeployment`.
    public var formerCanaryDeployment: String?

    /// What the canary Deployment's name adds to the stable one's.
    public static let canarySuffix = "-canary"

    /// The longest `spec.target.deployment` whose canary can run: Kubernetes names end at 253 characters, the
    /// canary Deployment is `<target>-canary` (7 more) and its ReplicaSets `<target>-canary-<pod-template-hash>`
    /// (the hash is a 32-bit number, up to 10 digits, so 11 more). A longer canary Deployment is refused by the API
    /// server (over 246), or is created and never gets a ReplicaSet, so never a pod (236 to 246).
    public static let maxTargetLength = 253 - canarySuffix.count - 11

    /// The canary Deployment Fledge owns for the stable Deployment `target`.
    public static func canaryDeployment(of target: String) -> String { target + canarySuffix }

    public init(
        namespace: String, stableDeployment: String, canaryDeployment: String, virtualService: String, destinationRule: String,
        formerVirtualService: String? = nil, formerCanaryDeployment: String? = nil
    ) {
        self.namespace = namespace
        self.stableDeployment = stableDeployment
        self.canaryDeployment = canaryDeployment
        self.virtualService = virtualService
        self.destinationRule = destinationRule
        self.formerVirtualService = formerVirtualService == virtualService ? nil : formerVirtualService
        self.formerCanaryDeployment = formerCanaryDeployment == canaryDeployment ? nil : formerCanaryDeployment
    }
}

extension Rollout {
    /// What to watch for this Rollout, with the spec's defaults, also when the rest of the spec is invalid;
    /// nil without `spec.target.deployment`.
    public var references: RolloutReferences? {
        guard let target = spec.target?.deployment, !target.isEmpty else { return nil }
        return RolloutReferences(
            namespace: metadata.namespace ?? "default", stableDeployment: target, canaryDeployment: RolloutReferences.canaryDeployment(of: target),
            virtualService: spec.traffic?.virtualService ?? target, destinationRule: spec.traffic?.destinationRule ?? target,
            formerVirtualService: status?.routedTraffic?.virtualService, formerCanaryDeployment: status?.canaryDeployment)
    }
}
