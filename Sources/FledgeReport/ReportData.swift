/// Everything a rollout report shows, gathered beforehand (see `ReportGatherer`) so that rendering is a pure
/// function of this value. Times are Unix seconds (with fractions: Events of one reconcile share a second).
public struct RolloutReportData: Sendable, Equatable {
    public var name: String
    public var namespace: String
    /// The revision rolled out (`status.revision`) and the one stable ran before it.
    public var revision: String?
    public var stableRevision: String?
    /// `status.phase`, e.g. `Failed`.
    public var phase: String
    /// `status.message`: the controller's last word on the rollout.
    public var message: String?
    public var stages: [ReportStage]
    /// The analysis interval as written in the spec (`2s`, `1m`), also the metric queries' window.
    public var analysisInterval: String?
    public var failureLimit: Int?
    /// The time range the timeline spans.
    public var start: Double
    public var end: Double
    /// The canary's share of traffic over time: each step holds until the next one (and the last until `end`).
    public var weightSteps: [WeightStep]
    public var metrics: [ReportMetric]
    public var markers: [DecisionMarker]
    /// Why metric series are missing (no Prometheus given, Prometheus unreachable…); nil when they were queried.
    public var seriesUnavailable: String?
    /// Other things the reader should know (Events not readable, invalid spec…).
    public var notes: [String]
    /// When the data was gathered; printed in the footer (the renderer reads no clock).
    public var generatedAt: Double

    public init(
        name: String, namespace: String, revision: String? = nil, stableRevision: String? = nil, phase: String, message: String? = nil,
        stages: [ReportStage] = [], analysisInterval: String? = nil, failureLimit: Int? = nil, start: Double, end: Double,
        weightSteps: [WeightStep] = [], metrics: [ReportMetric] = [], markers: [DecisionMarker] = [], seriesUnavailable: String? = nil,
        notes: [String] = [], generatedAt: Double
    ) {
        self.name = name
        self.namespace = namespace
        self.revision = revision
        self.stableRevision = stableRevision
        self.phase = phase
        self.message = message
        self.stages = stages
        self.analysisInterval = analysisInterval
        self.failureLimit = failureLimit
        self.start = start
        self.end = end
        self.weightSteps = weightSteps
        self.metrics = metrics
        self.markers = markers
        self.seriesUnavailable = seriesUnavailable
        self.notes = notes
        self.generatedAt = generatedAt
    }
}

/// One stage of the spec.
public struct ReportStage: Sendable, Equatable {
    public var weight: Int
    /// How long the stage holds, as written (`4s`, `5m`).
    public var hold: String
    public var manualApproval: Bool

    public init(weight: Int, hold: String, manualApproval: Bool = false) {
        self.weight = weight
        self.hold = hold
        self.manualApproval = manualApproval
    }
}

/// From `time` on, the canary receives `weight` percent of the traffic.
public struct WeightStep: Sendable, Equatable {
    public var time: Double
    public var weight: Int

    public init(time: Double, weight: Int) {
        self.time = time
        self.weight = weight
    }
}

public struct ReportPoint: Sendable, Equatable {
    public var time: Double
    public var value: Double

    public init(time: Double, value: Double) {
        self.time = time
        self.value = value
    }
}

/// A fixed threshold: the metric must stay at or above `value` (`min`) or at or below it (`max`).
public struct ReportThreshold: Sendable, Equatable {
    public enum Bound: String, Sendable, Equatable {
        case min, max
    }

    public var bound: Bound
    public var value: Double

    public init(_ bound: Bound, _ value: Double) {
        self.bound = bound
        self.value = value
    }

    /// Whether `value` breaks this threshold.
    public func isViolated(by sample: Double) -> Bool {
        bound == .min ? sample < value : sample > value
    }
}

/// One analysis metric over the rollout.
public struct ReportMetric: Sendable, Equatable {
    public var name: String
    /// Shown on the axis: `%`, `ms` or empty.
    public var unit: String
    public var thresholds: [ReportThreshold]
    /// The whole threshold as the controller states it, e.g. `>= 99` or `>= stable - 1`.
    public var thresholdText: String
    /// The canary's values from Prometheus (range query, same PromQL as the controller's).
    public var canary: [ReportPoint]
    /// Stable's values from the same query, for comparison; empty when not queried.
    public var stable: [ReportPoint]
    /// Values the controller judged at each check, read from its Events (AnalysisFailed) and `status.lastAnalysis`.
    public var checks: [ReportCheck]
    /// The PromQL behind `canary`.
    public var query: String?
    /// Why this metric's series is missing when the others are not (a failing custom query).
    public var seriesError: String?

    public init(
        name: String, unit: String = "", thresholds: [ReportThreshold] = [], thresholdText: String = "", canary: [ReportPoint] = [],
        stable: [ReportPoint] = [], checks: [ReportCheck] = [], query: String? = nil, seriesError: String? = nil
    ) {
        self.name = name
        self.unit = unit
        self.thresholds = thresholds
        self.thresholdText = thresholdText
        self.canary = canary
        self.stable = stable
        self.checks = checks
        self.query = query
        self.seriesError = seriesError
    }
}

/// A value the controller measured and judged at one analysis.
public struct ReportCheck: Sendable, Equatable {
    public var time: Double
    public var value: Double
    /// `Passed`, `Failed`, `Inconclusive` or `Error`.
    public var verdict: String

    public init(time: Double, value: Double, verdict: String) {
        self.time = time
        self.value = value
        self.verdict = verdict
    }
}

/// A decision of the controller, placed on the timeline.
public struct DecisionMarker: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        case started
        case stageAdvanced
        case checkFailed
        case judgeAccepted
        case awaitingApproval
        case promoted
        case succeeded
        case rolledBack
        case failed
        case aborted
        case other

        /// The label in the legend and the table.
        public var label: String {
            switch self {
            case .started: "started"
            case .stageAdvanced: "stage advanced"
            case .checkFailed: "check failed"
            case .judgeAccepted: "judge accepted"
            case .awaitingApproval: "paused for approval"
            case .promoted: "promoted"
            case .succeeded: "succeeded"
            case .rolledBack: "rolled back"
            case .failed: "failed"
            case .aborted: "aborted"
            case .other: "other event"
            }
        }
    }

    public var time: Double
    public var kind: Kind
    /// The Event's reason, e.g. `AnalysisFailed`.
    public var reason: String
    public var message: String
    /// How many times the Event was recorded (a repeated Event is one marker).
    public var count: Int

    public init(time: Double, kind: Kind, reason: String, message: String, count: Int = 1) {
        self.time = time
        self.kind = kind
        self.reason = reason
        self.message = message
        self.count = count
    }

    /// The kind of marker for an Event the controller writes (see FledgeCore's `decide`).
    public static func kind(forReason reason: String, message: String) -> Kind {
        switch reason {
        case "RolloutStarted": .started
        case "StageStarted": .stageAdvanced
        case "AnalysisFailed": .checkFailed
        case "JudgeAccepted": .judgeAccepted
        case "AwaitingApproval": .awaitingApproval
        case "Promoting": .promoted
        case "RolloutSucceeded": .succeeded
        // `RollingBack` carries the cause first: `Aborted: aborted by request`.
        case "RollingBack", "RollbackStarted": message.hasPrefix("Aborted:") ? .aborted : .rolledBack
        case "RolloutFailed": .failed
        case "RolloutAborted": .aborted
        default: .other
        }
    }
}
