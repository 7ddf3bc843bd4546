import FledgeJudge

/// The phase of a Rollout. See docs/phases.md and `decide(rollout:observed:analysis:now:)` for the machine.
public enum Phase: String, Codable, Sendable, CaseIterable {
    /// Nothing in flight: the stable Deployment runs the wanted revision, all traffic on stable.
    case healthy = "Healthy"
    /// A new revision: traffic back to stable, the canary Deployment created and waited for, pre-rollout hooks.
    case initializing = "Initializing"
    /// Stepping through the stages, analysing every interval.
    case progressing = "Progressing"
    /// A manual-approval stage finished its hold and waits for a promote request.
    case paused = "Paused"
    /// The canary template is written into the stable Deployment; waiting until it is ready.
    case promoting = "Promoting"
    /// Traffic back to stable, canary scaled to zero.
    case finalising = "Finalising"
    case succeeded = "Succeeded"
    /// Canary weight to 0 first, then the canary scaled to zero; ends Failed or Aborted.
    case rollingBack = "RollingBack"
    case failed = "Failed"
    case aborted = "Aborted"

    /// No rollout in flight.
    public var isIdle: Bool { [.healthy, .succeeded, .failed, .aborted].contains(self) }
}

/// Which routes of which VirtualService carry the canary's weight: the part of a `TrafficPlan` that moving weight
/// needs (the DestinationRule plays no part in moving it back to stable).
public struct RoutedTraffic: Codable, Sendable, Equatable {
    public var virtualService: String
    /// The route names `spec.traffic.routes` listed; empty: every route whose destinations are exactly the two subsets.
    public var routes: [String]
    public var stableSubset: String
    public var canarySubset: String
    /// The service the routes send to (the DestinationRule's host, fully qualified) when it was known: only routes
    /// to it are moved when the named ones cannot be found.
    public var host: String?

    public init(_ traffic: TrafficPlan, host: String? = nil) {
        virtualService = traffic.virtualService
        routes = traffic.routes
        stableSubset = traffic.stableSubset
        canarySubset = traffic.canarySubset
        self.host = host
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        virtualService = try c.decode(String.self, forKey: .virtualService)
        routes = try c.decodeIfPresent([String].self, forKey: .routes) ?? []
        stableSubset = try c.decode(String.self, forKey: .stableSubset)
        canarySubset = try c.decode(String.self, forKey: .canarySubset)
        host = try c.decodeIfPresent(String.self, forKey: .host)
    }

    /// To read and write these routes with.
    public var traffic: TrafficPlan {
        TrafficPlan(virtualService: virtualService, routes: routes, destinationRule: "", stableSubset: stableSubset, canarySubset: canarySubset)
    }

    /// Whether `traffic` moves weight on exactly these routes.
    public func isRouted(by traffic: TrafficPlan) -> Bool {
        virtualService == traffic.virtualService && routes == traffic.routes && stableSubset == traffic.stableSubset
            && canarySubset == traffic.canarySubset
    }
}

/// A post-rollout webhook owed a call: the rollout ended (`phase`) at `endedAt`. Called every `analysis.interval`
/// until it answers 2xx, for at most `progressDeadline` after the first failed call.
public struct PendingNotification: Codable, Sendable, Equatable {
    /// The name of the post-rollout webhook in `spec.webhooks`.
    public var webhook: String
    /// The revision that was rolled out.
    public var revision: String
    /// How it ended: Succeeded, Failed, Aborted, or Healthy (spec.canary set back to stable).
    public var phase: Phase
    public var endedAt: Timestamp

    public init(webhook: String, revision: String, phase: Phase, endedAt: Timestamp) {
        self.webhook = webhook
        self.revision = revision
        self.phase = phase
        self.endedAt = endedAt
    }

    /// The `WebhookCall.id` of its calls (the end time keeps two ends of one revision apart, a retried one say).
    public var id: String { "post-rollout/\(webhook)/\(revision)/\(phase.rawValue)/\(endedAt.seconds)" }
}

/// An Event a decision asked for, written to status together with that decision and recorded after it under this
/// fixed name; the controller's next status write clears it once recorded. A controller killed between the status
/// write and the Event finds it here and records it then, and recording one that exists already is answered 409
/// AlreadyExists: each Event of a decision exists once, whatever point the controller was killed at.
public struct PendingEvent: Codable, Sendable, Equatable {
    /// The Event's `metadata.name` (`<rollout>.<hex>`, chosen once when the decision was made).
    public var name: String
    public var type: RolloutEvent.Kind
    public var reason: String
    public var message: String
    /// When the decision was made (RFC 3339 with microseconds, the Event's `eventTime`).
    public var time: String

    public init(name: String, type: RolloutEvent.Kind, reason: String, message: String, time: String) {
        self.name = name
        self.type = type
        self.reason = reason
        self.message = message
        self.time = time
    }

    public var event: RolloutEvent { RolloutEvent(type: type, reason: reason, message: message) }
}

/// `status` of a Rollout. Every bit of progress lives here, so a restarted controller resumes where it stopped.
public struct RolloutStatus: Codable, Sendable, Equatable {
    public var phase: Phase
    /// `metadata.generation` of the spec this status was computed from.
    public var observedGeneration: Int64?
    /// Revision (see `revision(of:)`) of the canary template in flight, or of the last rollout.
    public var revision: String?
    /// Revision of the stable Deployment's current pod template.
    public var stableRevision: String?
    /// Index into `spec.stages` while Progressing or Paused.
    public var stage: Int?
    /// The stage for people, `2/4` (1-based, of `spec.stages`), while Progressing or Paused; nil otherwise.
    /// `kubectl get rollouts` shows it in the Stage column, as `fledge list` does; machines read `stage`.
    public var stageProgress: String?
    /// The canary weight the managed routes were last read back with (Rule 3).
    public var canaryWeight: Int
    /// A one-line summary of why the rollout is where it is.
    public var message: String?
    public var startedAt: Timestamp?
    /// When the current stage's weight was confirmed by reading it back; the hold counts from here.
    public var stageStartedAt: Timestamp?
    /// The last progress (phase or stage entered, a passing check), for `progressDeadline`.
    public var lastProgressAt: Timestamp?
    /// Time of the last analysis result that was judged.
    public var lastAnalysisAt: Timestamp?
    /// Passing checks in the current stage.
    public var passedChecks: Int
    /// Failed checks in this rollout (rolls back at `failureLimit`).
    public var failedChecks: Int
    /// Inconclusive checks in this rollout (no data, too few requests).
    public var inconclusiveChecks: Int
    /// Consecutive checks with a metric-provider error (rolls back at `providerErrorLimit`).
    public var errorChecks: Int
    public var lastAnalysis: [MetricResult]?
    public var conditions: [Condition]
    /// Finished rollouts, oldest first, at most `RolloutStatus.historyLimit`.
    public var history: [HistoryEntry]
    /// Manual requests seen (see `ManualRequest`).
    public var requests: [RequestRecord]
    /// While RollingBack: the phase it ends in (Failed or Aborted).
    public var rollbackTo: Phase?
    /// Stage whose manual approval was given.
    public var approvedStage: Int?
    /// Stages of this rollout (indexes into `spec.stages`) that `fledge promote` advanced before their hold and
    /// checks were done, so the Promoting Event does not claim they passed. Nil when none.
    public var promotedStages: [Int]?
    /// Webhook calls that passed in this rollout (their `WebhookCall.id`s).
    public var passedWebhooks: [String]
    /// The statistical judge's evidence so far in this rollout (nil until an interval brought counts). Carried
    /// across stages and restarts; reset when a revision starts.
    public var judge: JudgeState?
    /// The stage whose advance the judge has allowed: the canary was shown not worse than the margins at the next
    /// stage's weight (or at 100 % for the last stage).
    public var judgeAcceptedStage: Int?
    /// The routes the canary was last given weight on, kept until they are read back at 0: when `spec.traffic`
    /// changes (another VirtualService, other routes or subsets) while they still send the canary traffic, that
    /// weight is moved back to stable before anything else, instead of staying on a canary that later goes away.
    public var routedTraffic: RoutedTraffic?
    /// The canary Deployment this Rollout made (`<target>-canary`). When `spec.target.deployment` changes, the one
    /// named here is scaled to zero once no managed route sends the canary traffic, instead of running on unowned.
    public var canaryDeployment: String?
    /// Post-rollout notifications not delivered yet (no 2xx answer). Kept in status, not in memory, so that a
    /// controller killed right after a rollout ended, or a receiver that was down, still gets them. Nil when none.
    public var pendingNotifications: [PendingNotification]?
    /// Events of the last decision not yet known to be recorded (see `PendingEvent`). Nil when none: set only from a
    /// decision that asked for Events until they are recorded, so a Rollout that emits nothing never writes for it.
    public var pendingEvents: [PendingEvent]?

    public static let historyLimit = 10

    public init(phase: Phase = .healthy) {
        self.phase = phase
        canaryWeight = 0
        passedChecks = 0
        failedChecks = 0
        inconclusiveChecks = 0
        errorChecks = 0
        conditions = []
        history = []
        requests = []
        passedWebhooks = []
    }

    enum CodingKeys: String, CodingKey {
        case phase, observedGeneration, revision, stableRevision, stage, stageProgress, canaryWeight, message, startedAt, stageStartedAt
        case lastProgressAt, lastAnalysisAt, passedChecks, failedChecks, inconclusiveChecks, errorChecks, lastAnalysis
        case conditions, history, requests, rollbackTo, approvedStage, promotedStages, passedWebhooks, judge, judgeAcceptedStage
        case routedTraffic, canaryDeployment, pendingNotifications, pendingEvents
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        phase = try c.decodeIfPresent(Phase.self, forKey: .phase) ?? .healthy
        observedGeneration = try c.decodeIfPresent(Int64.self, forKey: .observedGeneration)
        revision = try c.decodeIfPresent(String.self, forKey: .revision)
        stableRevision = try c.decodeIfPresent(String.self, forKey: .stableRevision)
        stage = try c.decodeIfPresent(Int.self, forKey: .stage)
        stageProgress = try c.decodeIfPresent(String.self, forKey: .stageProgress)
        canaryWeight = try c.decodeIfPresent(Int.self, forKey: .canaryWeight) ?? 0
        message = try c.decodeIfPresent(String.self, forKey: .message)
        startedAt = try c.decodeIfPresent(Timestamp.self, forKey: .startedAt)
        stageStartedAt = try c.decodeIfPresent(Timestamp.self, forKey: .stageStartedAt)
        lastProgressAt = try c.decodeIfPresent(Timestamp.self, forKey: .lastProgressAt)
        lastAnalysisAt = try c.decodeIfPresent(Timestamp.self, forKey: .lastAnalysisAt)
        passedChecks = try c.decodeIfPresent(Int.self, forKey: .passedChecks) ?? 0
        failedChecks = try c.decodeIfPresent(Int.self, forKey: .failedChecks) ?? 0
        inconclusiveChecks = try c.decodeIfPresent(Int.self, forKey: .inconclusiveChecks) ?? 0
        errorChecks = try c.decodeIfPresent(Int.self, forKey: .errorChecks) ?? 0
        lastAnalysis = try c.decodeIfPresent([MetricResult].self, forKey: .lastAnalysis)
        conditions = try c.decodeIfPresent([Condition].self, forKey: .conditions) ?? []
        history = try c.decodeIfPresent([HistoryEntry].self, forKey: .history) ?? []
        requests = try c.decodeIfPresent([RequestRecord].self, forKey: .requests) ?? []
        rollbackTo = try c.decodeIfPresent(Phase.self, forKey: .rollbackTo)
        approvedStage = try c.decodeIfPresent(Int.self, forKey: .approvedStage)
        promotedStages = try c.decodeIfPresent([Int].self, forKey: .promotedStages)
        passedWebhooks = try c.decodeIfPresent([String].self, forKey: .passedWebhooks) ?? []
        judge = try c.decodeIfPresent(JudgeState.self, forKey: .judge)
        judgeAcceptedStage = try c.decodeIfPresent(Int.self, forKey: .judgeAcceptedStage)
        routedTraffic = try c.decodeIfPresent(RoutedTraffic.self, forKey: .routedTraffic)
        canaryDeployment = try c.decodeIfPresent(String.self, forKey: .canaryDeployment)
        pendingNotifications = try c.decodeIfPresent([PendingNotification].self, forKey: .pendingNotifications)
        pendingEvents = try c.decodeIfPresent([PendingEvent].self, forKey: .pendingEvents)
    }

    /// `2/4`: the 1-based stage of `stages` while Progressing or Paused at a stage, nil otherwise. What
    /// `status.stageProgress` holds and `fledge list` shows. `stages` is the number of stages the spec lists; when it
    /// lists none, or fewer than the stage the rollout holds at (an invalid edit mid-rollout), there is no stage of
    /// the spec to show, and nil (the CRD's pattern for the field is digits/digits).
    public static func stageProgress(phase: Phase, stage: Int?, stages: Int?) -> String? {
        guard phase == .progressing || phase == .paused, let stage, let stages, stage >= 0, stage < stages else { return nil }
        return "\(stage + 1)/\(stages)"
    }

    public func condition(_ type: String) -> Condition? { conditions.first { $0.type == type } }

    /// Sets a condition; `lastTransitionTime` only moves when `status` flips.
    public mutating func setCondition(
        _ type: String, _ status: ConditionStatus, reason: String, message: String, generation: Int64?, now: Timestamp
    ) {
        if let i = conditions.firstIndex(where: { $0.type == type }) {
            var c = conditions[i]
            if c.status != status { c.lastTransitionTime = now }
            c.status = status
            c.reason = reason
            c.message = message
            c.observedGeneration = generation
            conditions[i] = c
        } else {
            conditions.append(
                Condition(type: type, status: status, reason: reason, message: message, lastTransitionTime: now, observedGeneration: generation))
        }
    }

    public mutating func removeCondition(_ type: String) { conditions.removeAll { $0.type == type } }
}

public enum ConditionStatus: String, Codable, Sendable {
    case `true` = "True"
    case `false` = "False"
    case unknown = "Unknown"
}

/// A Kubernetes-style condition. Types Fledge sets: see `ConditionType`.
public struct Condition: Codable, Sendable, Equatable {
    public var type: String
    public var status: ConditionStatus
    public var reason: String
    public var message: String
    public var lastTransitionTime: Timestamp
    public var observedGeneration: Int64?

    public init(
        type: String, status: ConditionStatus, reason: String, message: String, lastTransitionTime: Timestamp,
        observedGeneration: Int64?
    ) {
        self.type = type
        self.status = status
        self.reason = reason
        self.message = message
        self.lastTransitionTime = lastTransitionTime
        self.observedGeneration = observedGeneration
    }
}

public enum ConditionType {
    /// False with reason `InvalidSpec` and every validation error when the spec is invalid.
    public static let specValid = "SpecValid"
    /// Whether weight may go to the canary (Rule 2): subsets exist, select the right pods, pods ready.
    public static let trafficReady = "TrafficReady"
    /// True while a rollout moves; False with the reason it stopped (deadline, failure, waiting).
    public static let progressing = "Progressing"
    /// The last analysis interval's verdict, with the numbers.
    public static let analysis = "Analysis"
}

/// The judgement of one metric in one analysis interval.
public struct MetricResult: Codable, Sendable, Equatable {
    public var name: String
    public var value: Double?
    public var stableValue: Double?
    /// The rule it was judged by, e.g. `>= 99`, `<= 500`, `<= 1.2 × stable`.
    public var threshold: String
    public var verdict: Verdict
    /// Why, for anything but a pass: `no data`, `12 requests < minRequests 50`, the provider's error.
    public var message: String?
    public var requests: Int64?
    public var time: Timestamp
    /// For the judge's results (`judge-errors`, `judge-latency`): every number behind the verdict (counts per
    /// side since the analysis started, ratio, confidence bounds, e-values and their thresholds).
    public var evidence: JudgeEvidence?

    public init(
        name: String, value: Double?, stableValue: Double?, threshold: String, verdict: Verdict, message: String?,
        requests: Int64?, time: Timestamp, evidence: JudgeEvidence? = nil
    ) {
        self.name = name
        self.value = value
        self.stableValue = stableValue
        self.threshold = threshold
        self.verdict = verdict
        self.message = message
        self.requests = requests
        self.time = time
        self.evidence = evidence
    }
}

public enum Verdict: String, Codable, Sendable {
    case passed = "Passed"
    case failed = "Failed"
    case inconclusive = "Inconclusive"
    case error = "Error"
}

/// A finished (or superseded) rollout.
public struct HistoryEntry: Codable, Sendable, Equatable {
    public var revision: String
    /// `Succeeded`, `Failed`, `Aborted` or `Superseded`.
    public var outcome: String
    public var reason: String
    public var message: String?
    public var startedAt: Timestamp?
    public var finishedAt: Timestamp

    public init(revision: String, outcome: String, reason: String, message: String?, startedAt: Timestamp?, finishedAt: Timestamp) {
        self.revision = revision
        self.outcome = outcome
        self.reason = reason
        self.message = message
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }
}

/// A manual request the controller has seen, and what it did with it.
public struct RequestRecord: Codable, Sendable, Equatable {
    public var kind: ManualRequest
    /// The annotation's value when it was seen.
    public var token: String
    public var seenAt: Timestamp
    public var accepted: Bool
    public var message: String

    public init(kind: ManualRequest, token: String, seenAt: Timestamp, accepted: Bool, message: String) {
        self.kind = kind
        self.token = token
        self.seenAt = seenAt
        self.accepted = accepted
        self.message = message
    }
}

/// Manual requests. The CLI writes one as an annotation on the Rollout, `fledge.dev/<kind>: <token>`, with a
/// fresh token each time (the CLI uses the current RFC 3339 time). Annotations do not bump
/// `metadata.generation` and need no status write access. The controller acts on a request when its token
/// differs from the one recorded in `status.requests` for that kind, and records it (accepted or refused with
/// a reason) there.
///
/// - `promote`: approve a Paused stage, or end the current stage now and go to the next.
/// - `promote-full`: skip the remaining stages and analysis and promote now.
/// - `abort`: roll back now and end `Aborted`.
/// - `retry`: start a Failed or Aborted rollout of the same revision again.
public enum ManualRequest: String, Codable, Sendable, CaseIterable {
    case promote
    case promoteFull = "promote-full"
    case abort
    case retry

    /// The annotation the CLI writes: `fledge.dev/promote`, `fledge.dev/promote-full`, `fledge.dev/abort`, `fledge.dev/retry`.
    public var annotation: String { "fledge.dev/\(rawValue)" }

    /// Why an abort was asked for (`fledge abort --reason`), written with the abort request; the abort's Events,
    /// `status.message` and the history entry carry it.
    public static let abortReasonAnnotation = "fledge.dev/abort-reason"
}
