/// Every reason of an Event about a Rollout. `decide` can only record reasons listed here (its `event` takes one),
/// so this list is complete by construction; the README's table of Events is checked against it (a test fails when
/// a reason here is missing there). `actionFailed` and `writeConflict` are the controller's own: a decision it could not carry out, and writes that
/// keep conflicting.
public enum EventReason: String, CaseIterable, Sendable {
    // The rollout's course.
    case rolloutStarted = "RolloutStarted"
    case stageStarted = "StageStarted"
    case stageRestarted = "StageRestarted"
    case judgeAccepted = "JudgeAccepted"
    case awaitingApproval = "AwaitingApproval"
    case promoting = "Promoting"
    case rollingBack = "RollingBack"
    case rolloutSucceeded = "RolloutSucceeded"
    case rolloutFailed = "RolloutFailed"
    case rolloutAborted = "RolloutAborted"
    case rolloutHealthy = "RolloutHealthy"
    case newRevision = "NewRevision"
    case requestAccepted = "RequestAccepted"
    case requestRefused = "RequestRefused"
    // Analysis.
    case analysisFailed = "AnalysisFailed"
    case metricProviderError = "MetricProviderError"
    // The spec.
    case invalidSpec = "InvalidSpec"
    case specValid = "SpecValid"
    case targetInUse = "TargetInUse"
    // Traffic and weights.
    case trafficMoved = "TrafficMoved"
    case weightsRestored = "WeightsRestored"
    case weightsReset = "WeightsReset"
    case routesNotFound = "RoutesNotFound"
    case canaryRetired = "CanaryRetired"
    case deleting = "Deleting"
    // Why no weight may go to the canary (also the TrafficReady condition's reason).
    case stableNotFound = "StableNotFound"
    case stableNotReady = "StableNotReady"
    case canaryNotReady = "CanaryNotReady"
    case virtualServiceNotFound = "VirtualServiceNotFound"
    case destinationRuleNotFound = "DestinationRuleNotFound"
    case routeNotFound = "RouteNotFound"
    case routeNotManageable = "RouteNotManageable"
    case hostMismatch = "HostMismatch"
    case subsetNotFound = "SubsetNotFound"
    case subsetSelectsNoPods = "SubsetSelectsNoPods"
    case subsetWithoutLabels = "SubsetWithoutLabels"
    case subsetLabelMismatch = "SubsetLabelMismatch"
    case subsetsIdentical = "SubsetsIdentical"
    case selectorOverlap = "SelectorOverlap"
    // Notifications.
    case notificationFailed = "NotificationFailed"
    // The controller.
    case actionFailed = "ActionFailed"
    case writeConflict = "WriteConflict"

    /// The Event that ends a rollout in `phase` (`finish`'s phases: Succeeded, Failed, Aborted, Healthy).
    static func ended(in phase: Phase) -> EventReason {
        switch phase {
        case .succeeded: .rolloutSucceeded
        case .aborted: .rolloutAborted
        case .healthy: .rolloutHealthy
        default: .rolloutFailed
        }
    }
}

extension RolloutEvent {
    public init(type: Kind, reason: EventReason, message: String) {
        self.init(type: type, reason: reason.rawValue, message: message)
    }
}
