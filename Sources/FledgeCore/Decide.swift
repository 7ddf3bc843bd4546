import FledgeJSON
import FledgeJudge

/// Decides what a Rollout needs next. Pure and deterministic: the same inputs give the same decision; no IO,
/// no clock (time comes in as `now`).
///
/// ## Phases
///
/// ```
///            spec.canary changes (revision ≠ stable's)
///  Healthy ───────────────────────────────▶ Initializing ──canary ready, traffic checks,──▶ Progressing
///  Succeeded                                 │  ▲           pre-rollout hooks pass          │ stage i: set weight,
///  Failed/Aborted (other revision)          │  │                                         │ read it back, hold,
///                                             │  └── a new revision (any in-flight phase):    │ analyse every interval
///                                             │      weight back to 0, then start over       │
///                                             │                                 manual stage ▼      ▲ promote
///                                             │                                           Paused ─────┘
///                                             │                 after the last stage (or promote-full)
///                                             │                              ▼
///                                             │   Promoting: write the canary template into stable, wait ready
///                                             │                              ▼
///                                             │   Finalising: weight 0, canary scaled to 0 ──▶ Succeeded
///                                             ▼
///  failureLimit failed checks, providerErrorLimit provider errors in a row, progressDeadline passed,
///  canary pods gone, pre-rollout hook failed ──▶ RollingBack (weight 0 first, then canary to 0) ──▶ Failed
///  abort request ──▶ RollingBack ──▶ Aborted
/// ```
///
/// The rules of docs/design.md hold: only managed routes' weights change and always sum to 100 (1); weight goes to
/// the canary only when both subsets exist, select the right pods and the canary's pods are ready (2); the
/// weight in status is the one `observed` shows (3); Failed and Aborted send nothing to the canary (4); no
/// data is never a pass and no stage passes without `minRequests` (5); provider errors hold up to
/// `providerErrorLimit` (6); everything lives in status (7); with nothing changed no write is asked for (8).
///
/// An invalid spec sets condition `SpecValid=False` (reason `InvalidSpec`) with every error and changes nothing else.
public func decide(rollout: Rollout, observed: Observed, analysis: Analysis, now: Timestamp) -> Decision {
    var engine = Engine(rollout: rollout, observed: observed, analysis: analysis, now: now)
    engine.run()
    // Derived from the phase and stage wherever the decision left them, so no path can forget it. With an invalid
    // spec the rollout holds at its stage, counted among the stages the spec lists now, as `fledge list` counts them
    // (not the count of the last valid spec, which `kubectl get` would show next to an edited spec).
    let stages = engine.plan?.stages.count ?? rollout.spec.stages?.count
    engine.status.stageProgress = RolloutStatus.stageProgress(phase: engine.status.phase, stage: engine.status.stage, stages: stages)
    return Decision(status: engine.status, actions: engine.actions)
}

struct Engine {
    let rollout: Rollout
    let observed: Observed
    let analysis: Analysis
    let now: Timestamp
    let generation: Int64?
    var status: RolloutStatus
    var actions: [Action] = []
    /// The weight the previous status recorded, before this reconcile.
    let previousWeight: Int
    /// The spec changed since the last decision (`metadata.generation` moved past `status.observedGeneration`).
    let specChanged: Bool

    // Filled by prepare().
    var plan: RolloutPlan!
    var managed: [HTTPRouteView] = []
    var trafficError: TrafficError?
    var observedWeight: Int?
    var stableLabels: [String: String]?
    var canaryLabels: [String: String]?
    var effective: JSONValue = .null
    var wanted = ""
    var stableRevision = ""
    /// Why `wanted` cannot be worked out this time (stable Deployment missing, canary template invalid).
    var revisionUnknown: String?
    /// When a webhook that failed is due to be asked again.
    var webhookRetryAt: Timestamp?
    /// Set only when the spec does not validate: the routes its `spec.traffic` names, with the defaults (see `traffic`).
    var fallbackTraffic: TrafficPlan?

    init(rollout: Rollout, observed: Observed, analysis: Analysis, now: Timestamp) {
        self.rollout = rollout
        self.observed = observed
        self.analysis = analysis
        self.now = now
        generation = rollout.metadata.generation
        status = rollout.status ?? RolloutStatus()
        previousWeight = status.canaryWeight
        specChanged = status.observedGeneration.map { $0 != rollout.metadata.generation } ?? true
    }

    // MARK: - Entry

    mutating func run() {
        status.observedGeneration = generation
        bringFutureTimesToNow()
        let planned = rollout.plan()
        if rollout.metadata.deletionTimestamp != nil {
            switch planned {
            case .success(let plan): self.plan = plan
            case .failure: fallbackTraffic = rollout.spec.namedTraffic
            }
            finishDeletion()
            return
        }
        switch planned {
        case .failure(let errors):
            let message = errors.issues.map(\.description).joined(separator: "; ")
            let before = status.condition(ConditionType.specValid)
            status.setCondition(ConditionType.specValid, .false, reason: "InvalidSpec", message: message, generation: generation, now: now)
            if before?.status != .false || before?.message != message {
                event(.warning, .invalidSpec, message)
            }
            continueWithoutPlan(message)
            return
        case .success(let plan):
            self.plan = plan
        }
        if let owner = observed.canary?.owningRollout, owner != rollout.metadata.name {
            // Two Rollouts naming one Deployment would take turns scaling and routing its canary. The one that made
            // the canary keeps it; this one writes nothing until the conflict is resolved.
            let message =
                "canary Deployment \(plan.canaryDeployment) belongs to Rollout \(owner), which also targets Deployment \(plan.target); this Rollout changes nothing while it does (give spec.target.deployment another Deployment, or delete one of the two Rollouts)"
            let before = status.condition(ConditionType.specValid)
            status.setCondition(ConditionType.specValid, .false, reason: "TargetInUse", message: message, generation: generation, now: now)
            status.message = message
            if before?.message != message { event(.warning, .targetInUse, message) }
            return
        }
        if status.condition(ConditionType.specValid)?.status == .false {
            event(.normal, .specValid, "the spec is valid again")
        }
        status.setCondition(ConditionType.specValid, .true, reason: "Valid", message: "the spec is valid", generation: generation, now: now)

        if movingFormerTrafficBack() { return }
        guard prepare() else {
            if let revisionUnknown { continueWithoutRevision(revisionUnknown) }
            recordRoutedTraffic()
            return
        }
        handleNewRevision()
        handleRequests()
        for _ in 0..<12 {
            let before = (status.phase, status.stage)
            let proceed = step()
            if !proceed || (status.phase, status.stage) == before { break }
        }
        deliverNotifications()
        keepFinalizerWhileTrafficMayReachTheCanary()
        recordRoutedTraffic()
        retireFormerCanary()
        scheduleWakeUp()
    }

    /// Times in status later than now mean the clock went back (an NTP step, a new leader whose clock is behind the
    /// old one's). Left as they are, the next analysis would wait until the clock caught up, and a canary serving
    /// traffic would go unjudged that long; so they become now: the analysis, the hold and the deadline count from
    /// now.
    mutating func bringFutureTimesToNow() {
        if let t = status.lastAnalysisAt, t > now { status.lastAnalysisAt = now }
        if let t = status.stageStartedAt, t > now { status.stageStartedAt = now }
        if let t = status.lastProgressAt, t > now { status.lastProgressAt = now }
    }

    /// Remembers the canary Deployment this Rollout made; one made for an earlier `spec.target.deployment` is scaled
    /// to zero once no managed route gives the canary weight (its pods may still be what the canary subset selects),
    /// and forgotten once it is at zero or gone.
    mutating func retireFormerCanary() {
        guard let references = rollout.references else { return }
        if let former = observed.formerCanary, former.name == status.canaryDeployment, former.name != references.canaryDeployment {
            guard former.replicas > 0, former.owningRollout == rollout.metadata.name else {
                status.canaryDeployment = nil
                return
            }
            if observedWeight == 0 || observed.virtualService == nil, !actions.contains(where: { ($0.weightChange?.canaryWeight ?? 0) > 0 }) {
                actions.append(.scaleCanary(deployment: former.name, replicas: 0))
                event(
                    .normal, .canaryRetired,
                    "spec.target.deployment is now \(references.stableDeployment): scaling \(former.name), the canary of the previous target, to zero")
            }
            return
        }
        if status.canaryDeployment != nil, observed.formerCanary == nil, status.canaryDeployment != references.canaryDeployment {
            status.canaryDeployment = nil  // Gone (or never seen): nothing to retire.
        }
        if observed.canary != nil || actions.contains(where: { if case .ensureCanaryDeployment = $0 { true } else { false } }) {
            status.canaryDeployment = references.canaryDeployment
        }
    }

    // MARK: - Routes the spec no longer names

    /// Remembers the routes that may carry canary weight after this decision (a weight read back there, or one this
    /// decision writes), and forgets them once they are read back at 0. Routes that cannot be read keep the record.
    mutating func recordRoutedTraffic() {
        let writesWeight = actions.contains { ($0.weightChange?.canaryWeight ?? 0) > 0 }
        if writesWeight || (!managed.isEmpty && observedWeight != 0) {
            status.routedTraffic = RoutedTraffic(traffic, host: serviceHost)
        } else if observed.virtualService == nil || !managed.isEmpty {
            status.routedTraffic = nil
        }
    }

    /// `spec.traffic` changed (another VirtualService, other routes or subsets) while the routes it named before still
    /// send the canary traffic: that weight goes back to stable first, before anything else happens, or it would
    /// stay on a canary that the rollout later scales to zero (Rules 2 and 4). True while there is such weight.
    mutating func movingFormerTrafficBack() -> Bool {
        guard let former = status.routedTraffic, !former.isRouted(by: traffic) else { return false }
        let formerTraffic = former.traffic
        let vs = former.virtualService == traffic.virtualService ? observed.virtualService : observed.formerVirtualService
        guard let vs else {
            status.routedTraffic = nil  // Deleted: nothing routes through it any more.
            return false
        }
        let place = "route\(former.routes.count == 1 ? "" : "s") \(former.routes.isEmpty ? "" : former.routes.joined(separator: ", ") + " ")of VirtualService \(former.virtualService) (subsets \(former.stableSubset)/\(former.canarySubset))"
        var routes = routesReachingTheCanary(of: vs, traffic: formerTraffic, host: former.host, namespace: namespace)
        if former.virtualService == traffic.virtualService, former.stableSubset == traffic.stableSubset,
            former.canarySubset == traffic.canarySubset,
            case .success(let current) = managedRoutes(of: vs, traffic: traffic, host: serviceHost, namespace: namespace)
        {
            // Routes the spec still manages, now by name, keep their weight: the rollout goes on with them.
            let stillManaged = Set(current.map(\.id))
            routes.removeAll { stillManaged.contains($0.id) }
        }
        if routes.isEmpty {
            status.routedTraffic = nil
            return false
        }
        let ids = routes.map(\.id)
        actions.append(
            .setWeights(
                WeightChange(
                    stableWeight: 100, canaryWeight: 0, routes: ids,
                    virtualService: settingWeights(of: vs, routes: routes, traffic: formerTraffic, canaryWeight: 0))))
        let message =
            "spec.traffic no longer names \(place): moving the canary's weight on route\(ids.count == 1 ? "" : "s") \(ids.joined(separator: ", ")) back to stable first"
        // A rollback's message says why it rolls back, and becomes the outcome's.
        if status.phase != .rollingBack { status.message = message }
        event(.normal, .trafficMoved, message)
        if !holdsFinalizer { actions.insert(.setFinalizer(true), at: 0) }
        return true
    }

    // MARK: - Deletion

    var holdsFinalizer: Bool { rollout.metadata.finalizers?.contains(Finalizers.traffic) == true }

    /// A rollout in flight carries the finalizer, so that deleting it cannot leave weight on a canary that is about
    /// to be garbage-collected; it comes off once the rollout is idle with no weight on the canary (an idle Rollout
    /// deletes at once, also with no controller running). Added before any weight moves in the same decision. It
    /// stays while a post-rollout notification is owed (delivered or given up within `progressDeadline` of the end),
    /// so that deleting a Rollout that just ended does not drop its notification with its status.
    mutating func keepFinalizerWhileTrafficMayReachTheCanary() {
        let movingWeight = actions.contains { ($0.weightChange?.canaryWeight ?? 0) > 0 }
        let inFlight = !status.phase.isIdle || movingWeight
        if inFlight, !holdsFinalizer {
            actions.insert(.setFinalizer(true), at: 0)
        } else if !inFlight, holdsFinalizer, status.pendingNotifications == nil, observedWeight == 0 || (observedWeight == nil && managed.isEmpty),
            !actions.contains(where: { $0.weightChange != nil })
        {
            actions.append(.setFinalizer(false))
        }
    }

    /// The Rollout is being deleted: take the weight off the canary, deliver the post-rollout notifications still owed,
    /// then let the deletion finish. Nothing else happens (no new stage, no promotion).
    mutating func finishDeletion() {
        guard holdsFinalizer else { return }
        if plan != nil || fallbackTraffic != nil {
            if movingFormerTrafficBack() { return }
            readRoutes()
            findRoutesStillReachingTheCanary()
            if observedWeight != 0, !managed.isEmpty {
                setWeights(0)
                status.message = "deleting: moving all traffic back to stable first"
                event(.normal, .deleting, "the Rollout is being deleted: moving the canary's \(observedWeight.map { "\($0)%" } ?? "traffic") back to stable")
                return
            }
        }
        if deliveringNotificationsBeforeDeletion() { return }
        status.message = "deleting: no traffic on the canary"
        actions.append(.setFinalizer(false))
    }

    /// A notification owed holds the deletion as it holds an idle Rollout's finalizer: it goes with the status, and
    /// whoever waits for it (a pipeline, a chat channel) would never hear how the rollout ended. Bounded: a call that
    /// fails once `progressDeadline` has passed since the end is given up (`NotificationFailed`). Without a plan (a
    /// spec that does not validate) none can be called, and waiting for a fix would hold the deletion without end:
    /// given up at once, with the same Warning. True while one is owed.
    mutating func deliveringNotificationsBeforeDeletion() -> Bool {
        guard let owed = status.pendingNotifications, !owed.isEmpty else { return false }
        guard let plan else {
            for note in owed {
                event(
                    .warning, .notificationFailed,
                    "post-rollout webhook \(note.webhook) (\(note.phase.rawValue), revision \(note.revision)) not called: the Rollout was deleted while its spec does not validate")
            }
            status.pendingNotifications = nil
            return false
        }
        deliverNotifications()
        guard let still = status.pendingNotifications, !still.isEmpty else { return false }
        status.message =
            "deleting: waiting for post-rollout webhook\(still.count == 1 ? "" : "s") \(still.map(\.webhook).joined(separator: ", ")) to answer 2xx (given up once a call fails \(plan.progressDeadline) after the end)"
        if let webhookRetryAt, webhookRetryAt > now {
            actions.append(.requeue(after: RolloutDuration(milliseconds: webhookRetryAt.milliseconds(since: now))))
        }
        return true
    }

    /// Reads the observations. False when nothing can be decided (stable Deployment missing, template error).
    mutating func prepare() -> Bool {
        readRoutes()
        if let w = observedWeight { status.canaryWeight = w }
        // Nothing routes through a VirtualService that does not exist (routes elsewhere were moved back first).
        if observed.virtualService == nil { status.canaryWeight = 0 }
        if let dr = observed.destinationRule {
            let all = subsets(of: dr)
            stableLabels = all.first { $0.name == plan.traffic.stableSubset }?.labels
            canaryLabels = all.first { $0.name == plan.traffic.canarySubset }?.labels
        }

        guard let stable = observed.stable else {
            setTraffic(false, .stableNotFound, "Deployment \(plan.target) not found" + keepingTrafficNote)
            hold("Deployment \(plan.target) not found")
            revisionUnknown = "Deployment \(plan.target) not found"
            return false
        }
        do {
            effective = try effectiveTemplate(
                stable: stable.template, change: plan.change, keepingLabels: stable.selectorKeys.union((stableLabels ?? [:]).keys))
        } catch {
            status.setCondition(ConditionType.progressing, .false, reason: "InvalidCanary", message: error.message, generation: generation, now: now)
            status.message = error.message
            revisionUnknown = error.message
            return false
        }
        stableRevision = stable.revision
        wanted = effective == stable.template ? stableRevision : revision(of: effective)
        status.stableRevision = stableRevision
        return true
    }

    /// Finds the managed routes and the weight they give the canary (nil when they disagree or cannot be read).
    mutating func readRoutes() {
        if let vs = observed.virtualService {
            switch managedRoutes(of: vs, traffic: traffic, host: serviceHost, namespace: namespace) {
            case .success(let routes):
                managed = routes
                let weights = routes.map { $0.canaryWeight(stableSubset: traffic.stableSubset, canarySubset: traffic.canarySubset) }
                if let first = weights.first, let w = first, weights.allSatisfy({ $0 == w }) { observedWeight = w }
            case .failure(let error): trafficError = error
            }
        } else {
            trafficError = TrafficError(reason: .virtualServiceNotFound, message: "VirtualService \(traffic.virtualService) not found")
        }
    }

    var namespace: String { rollout.metadata.namespace ?? "default" }

    /// The DestinationRule's host, fully qualified; else the one recorded with the routes the canary was given
    /// weight on. Routes to other services are never managed by default.
    var serviceHost: String? {
        if let host = observed.destinationRule?[path: ["spec", "host"]]?.stringValue, !host.contains("*") {
            return qualifiedHost(host, namespace: namespace)
        }
        return status.routedTraffic.flatMap { $0.isRouted(by: traffic) ? $0.host : nil }
    }

    /// The routes and subsets to move weight on: the plan's, or, for a Rollout being deleted whose spec no longer
    /// validates, what its spec.traffic names with the defaults.
    var traffic: TrafficPlan { fallbackTraffic ?? plan.traffic }

    /// The weight must come off the canary (rolling back, finalising, idle, deleting), but the routes the spec names
    /// cannot be read. A VirtualService that does not exist routes nothing; otherwise every route of it that still
    /// splits between the two subsets carries the canary's traffic, and the canary is about to lose its pods: those
    /// are the routes to move back (Rules 2 and 4), whatever their names are now.
    mutating func findRoutesStillReachingTheCanary() {
        guard managed.isEmpty, let error = trafficError else { return }
        guard let vs = observed.virtualService else {
            observedWeight = 0
            status.canaryWeight = 0
            return
        }
        let carrying = routesReachingTheCanary(of: vs, traffic: traffic, host: serviceHost, namespace: namespace)
        managed = carrying
        if carrying.isEmpty {
            observedWeight = 0
            status.canaryWeight = 0
        } else {
            let weights = Set(carrying.map { $0.canaryWeight(stableSubset: traffic.stableSubset, canarySubset: traffic.canarySubset) })
            observedWeight = weights.count == 1 ? weights.first! : nil
            event(
                .warning, .routesNotFound,
                "\(error.message); route\(carrying.count == 1 ? "" : "s") \(carrying.map(\.id).joined(separator: ", ")) still split\(carrying.count == 1 ? "s" : "") between subsets \(traffic.stableSubset) and \(traffic.canarySubset): moving \(carrying.count == 1 ? "it" : "them") back to stable")
        }
    }

    /// Without a revision (the stable Deployment is gone, or the canary cannot be built from it) nothing can start,
    /// advance or promote; a rollout in flight must still answer an abort, fail at its progress deadline and finish
    /// its rollback, taking the weight off the canary (Rule 4). Other requests are refused with the reason.
    mutating func continueWithoutRevision(_ problem: String) {
        wanted = status.revision ?? ""
        stableRevision = status.stableRevision ?? ""
        handleRequests()
        if [.initializing, .progressing].contains(status.phase) { _ = deadlinePassed() }
        if status.phase == .rollingBack { _ = rollingBack() }
        safetyWeightsToStable()
        deliverNotifications()
        keepFinalizerWhileTrafficMayReachTheCanary()
        retireFormerCanary()
        scheduleWakeUp()
    }

    /// The spec does not validate: nothing can start, advance or promote, and those requests are answered with the
    /// reason rather than left waiting. A rollout in flight can still be aborted, and a rollback still finishes, on
    /// the routes the spec names (moving first any weight left where it named before): the way out of a broken spec
    /// must not depend on fixing it (Rule 4).
    mutating func continueWithoutPlan(_ problem: String) {
        fallbackTraffic = rollout.spec.namedTraffic
        wanted = status.revision ?? ""
        stableRevision = status.stableRevision ?? ""
        revisionUnknown =
            "the spec is invalid (\(problem)); fix it first, abort the rollout (fledge abort), or delete the Rollout (its traffic goes back to stable before it goes)"
        handleRequests()
        if !status.phase.isIdle, status.phase != .rollingBack { hold("the spec is invalid: \(problem)") }
        guard fallbackTraffic != nil else { return }
        if movingFormerTrafficBack() { return }
        readRoutes()
        if let w = observedWeight { status.canaryWeight = w }
        if status.phase == .rollingBack { _ = rollingBack() }
        keepFinalizerWhileTrafficMayReachTheCanary()
        recordRoutedTraffic()
        retireFormerCanary()
    }

    /// In phases that must send nothing to the canary, moves the weight back even when little else is known. A
    /// rollback in progress does this itself (`rollingBack`), only once stable can take the traffic.
    mutating func safetyWeightsToStable() {
        if [.failed, .aborted, .healthy, .succeeded].contains(status.phase) { findRoutesStillReachingTheCanary() }
        if [.failed, .aborted, .healthy, .succeeded].contains(status.phase), observedWeight != 0, !managed.isEmpty {
            setWeights(0)
        }
    }

    // MARK: - New revisions and manual requests

    mutating func handleNewRevision() {
        guard !status.phase.isIdle, let current = status.revision, current != wanted else {
            if !status.phase.isIdle, status.revision == nil { status.revision = wanted }
            return
        }
        if status.phase == .promoting || status.phase == .finalising, wanted == stableRevision {
            // The stable Deployment already has the wanted template (as the API server normalised it).
            status.revision = wanted
            return
        }
        // A rollback under way had already decided how its revision ends (Aborted by request, Failed with its reason):
        // that is its outcome, not Superseded. The clean-up of a reverted spec.canary was recorded when it began.
        let decided = status.phase == .rollingBack ? status.rollbackTo : nil
        let replaced = decided.map { ", whose rollback (\($0.rawValue): \(status.message ?? "rolled back")) had not finished," } ?? " in flight"
        if let decided, decided != .healthy {
            record(outcome: decided.rawValue, reason: status.condition(ConditionType.progressing)?.reason ?? "RolledBack", message: status.message ?? "rolled back")
            oweNotifications(decided)
        } else if decided == nil {
            record(
                outcome: "Superseded", reason: "NewRevision",
                message: wanted == stableRevision
                    ? "spec.canary set back to the stable revision \(wanted) mid-rollout of \(current)" : "revision \(wanted) replaced \(current) mid-rollout")
        }
        if wanted == stableRevision {
            // Not a new rollout: spec.canary was set back to what stable runs, which cancels the one in flight.
            event(
                .normal, .newRevision,
                "spec.canary was set back to the stable revision \(wanted): revision \(current)\(decided == nil ? " is cancelled" : replaced), traffic goes back to stable and the rollout ends without promotion")
            status.revision = wanted
            beginRollback(to: .healthy, reason: "CanaryReverted", message: "spec.canary now matches the stable Deployment; cleaning up the canary")
        } else {
            event(
                .normal, .newRevision,
                decided == .healthy
                    ? "revision \(wanted) starts while the canary of a cancelled rollout is cleaned up: traffic back to stable, then starting over"
                    : "revision \(wanted) replaces \(current)\(replaced): traffic back to stable, then starting over")
            start()
        }
    }

    mutating func handleRequests(refusingAll reason: String? = nil) {
        for (kind, token) in rollout.pendingRequests {
            let (accepted, message) = reason.map { (false, $0) } ?? apply(kind)
            status.requests.removeAll { $0.kind == kind }
            status.requests.append(RequestRecord(kind: kind, token: token, seenAt: now, accepted: accepted, message: message))
            status.requests.sort { $0.kind.rawValue < $1.kind.rawValue }
            event(accepted ? .normal : .warning, accepted ? .requestAccepted : .requestRefused, "\(kind.rawValue): \(message)")
        }
    }

    mutating func apply(_ kind: ManualRequest) -> (Bool, String) {
        let phase = status.phase
        if let revisionUnknown, kind != .abort { return (false, "cannot \(kind.rawValue) now: \(revisionUnknown)") }
        switch kind {
        case .abort:
            switch phase {
            case .initializing, .progressing, .paused:
                beginRollback(to: .aborted, reason: "Aborted", message: rollout.abortReason.map { "aborted by request: \($0)" } ?? "aborted by request")
                return (true, "rolling back revision \(status.revision ?? wanted)")
            case .promoting, .finalising:
                return (false, "the canary is already being promoted (\(phase.rawValue)); change spec.canary to roll back")
            case .rollingBack: return (false, "already rolling back")
            default: return (false, "no rollout in progress (\(phase.rawValue))")
            }
        case .retry:
            guard phase == .failed || phase == .aborted else {
                return (false, "only a Failed or Aborted rollout can be retried (phase \(phase.rawValue))")
            }
            guard wanted != stableRevision else {
                return (false, "nothing to retry: the stable Deployment already runs revision \(wanted)")
            }
            start(retrying: true)
            return (true, "retrying revision \(wanted)")
        case .promote:
            switch phase {
            case .progressing, .paused:
                let stage = status.stage ?? 0
                if status.canaryWeight != plan.stages[min(stage, plan.stages.count - 1)].weight,
                    let blocked = status.condition(ConditionType.trafficReady), blocked.status == .false
                {
                    // Approving a stage that does not serve its weight would skip it once traffic can flow again.
                    return (false, "stage \(stage + 1) does not serve its weight: \(blocked.message); promote once it does, or promote --full")
                }
                status.approvedStage = stage
                if phase == .progressing {
                    // Paused means the stage passed and waits for approval; Progressing means it is skipped.
                    status.promotedStages = Array(Set(status.promotedStages ?? []).union([stage])).sorted()
                }
                return (true, "stage \(stage + 1) of \(plan.stages.count) (\(plan.stages[stage].weight)%) promoted")
            case .initializing: return (false, "the canary is not serving yet; no stage to promote")
            default: return (false, "no stage to promote (\(phase.rawValue))")
            }
        case .promoteFull:
            switch phase {
            case .progressing, .paused:
                enter(.promoting)
                status.message = "promote --full requested: promoting revision \(wanted)"
                return (true, "skipping the remaining stages; promoting revision \(wanted)")
            case .initializing: return (false, "the canary is not serving yet; wait for Progressing")
            default: return (false, "nothing to promote (\(phase.rawValue))")
            }
        }
    }

    // MARK: - Phases

    /// One step of the machine. Returns false when it asked for a write or must wait.
    mutating func step() -> Bool {
        switch status.phase {
        case .healthy, .succeeded, .failed, .aborted: return idle()
        case .initializing: return initializing()
        case .progressing, .paused: return progressing()
        case .promoting: return promoting()
        case .finalising: return finalising()
        case .rollingBack: return rollingBack()
        }
    }

    mutating func idle() -> Bool {
        if wanted == stableRevision {
            if status.phase == .failed || status.phase == .aborted {
                enter(.healthy)
            }
            if status.phase == .healthy {
                status.revision = wanted
                status.message = "stable runs revision \(wanted)"
            }
        } else if !((status.phase == .failed || status.phase == .aborted) && status.revision == wanted) {
            start()
            return true
        }
        let stableOK = checkTraffic(canary: false)
        if status.phase == .failed || status.phase == .aborted { findRoutesStillReachingTheCanary() }
        // Nothing in flight: everything to stable, canary scaled down. Healthy and Succeeded move weight only to a
        // stable subset that selects ready pods (Rule 2); Failed and Aborted take it off the canary regardless (Rule 4).
        if observedWeight != 0, !managed.isEmpty {
            if stableOK || status.phase == .failed || status.phase == .aborted {
                setWeights(0, because: "nothing is in flight")
            }
            return false
        }
        if observedWeight == 0, let canary = observed.canary, canary.replicas > 0 {
            actions.append(.scaleCanary(deployment: plan.canaryDeployment, replicas: 0))
        }
        return false
    }

    mutating func initializing() -> Bool {
        if deadlinePassed() { return true }
        if observedWeight != 0 {
            guard !managed.isEmpty else {
                // TrafficReady=False and the message say why (a subset named otherwise comes before the routes).
                if checkTraffic(canary: false) { return hold(trafficError?.message ?? "no managed route") }
                return false
            }
            // The canary of the revision before keeps its share until stable can take it (Rule 2): a new revision
            // must not turn stable's outage into a total one.
            if stableCannotServe() { return hold(status.condition(ConditionType.trafficReady)?.message ?? "stable has no ready pods") }
            setWeights(0, because: "a new revision starts from stable")
            return false
        }
        guard let stableLabels, let canaryLabels else {
            checkTraffic(canary: false)
            return false
        }
        let stable = observed.stable!
        let replicas = plan.change.replicas ?? max(1, stable.replicas)
        let desired = CanaryDeploymentSpec(
            name: plan.canaryDeployment,
            template: canaryTemplate(effective: effective, stableLabels: stableLabels, canaryLabels: canaryLabels),
            selector: canarySelector(stable: stable.selector, stableLabels: stableLabels, canaryLabels: canaryLabels),
            replicas: replicas, revision: wanted, settings: stable.settings,
            labels: canaryMetadata(stable.labels, canaryLabels: canaryLabels), annotations: canaryMetadata(stable.annotations))
        // Up to date: this revision, these replicas, stable's rollout settings and metadata as they are now (a canary
        // made by an older Fledge, or before stable's changed, gets them with the next revision), and the labels and
        // selector the subsets ask for now (a DestinationRule fixed after the canary was made changes them).
        if let canary = observed.canary, desired.isMet(by: canary), firstMismatch(canaryLabels, canary.podLabels) == nil {
        } else {
            // The canary's labels and selector come from the subsets: a DestinationRule that cannot route (a typo in
            // a subset label, no stable pods selected) is fixed first, or the typo would be baked into the canary.
            guard checkTraffic(canary: false) else { return false }
            actions.append(.ensureCanaryDeployment(desired))
            // One left from an earlier revision (at zero replicas) is updated, not created.
            let (verb, being) = observed.canary == nil ? ("creating", "being created") : ("updating", "being updated")
            status.message = "\(verb) canary Deployment \(plan.canaryDeployment) for revision \(wanted)"
            setTraffic(false, .canaryNotReady, "canary Deployment \(plan.canaryDeployment) is \(being) for revision \(wanted)", expected: true)
            return false
        }
        guard checkTraffic(canary: true) else { return false }
        // Pre-rollout hooks, once per revision.
        for hook in plan.webhooks where hook.type == .preRollout {
            switch gate(hook, stage: nil) {
            case .passed: continue
            case .waiting: return false
            case .failed(let message):
                beginRollback(to: .failed, reason: "PreRolloutWebhookFailed", message: "pre-rollout webhook \(hook.name) failed: \(message)")
                return true
            }
        }
        enterStage(0)
        return true
    }

    mutating func progressing() -> Bool {
        let recorded = status.stage ?? 0
        var index = min(recorded, plan.stages.count - 1)
        if status.phase == .progressing, deadlinePassed() { return true }
        if status.stageStartedAt != nil,
            recorded >= plan.stages.count || (specChanged && observedWeight == previousWeight && observedWeight != plan.stages[index].weight)
        {
            // spec.stages was edited under a stage in progress (fewer stages, or another weight at this position):
            // what was held, measured or approved was for the old stage. The rollout goes on at the last stage whose
            // weight is not above what the canary serves now (never more traffic than was approved), from its start,
            // gates included.
            let serving = observedWeight ?? previousWeight
            index = plan.stages.lastIndex { $0.weight <= serving } ?? 0
            restartStage(index, because: recorded >= plan.stages.count ? "it now has \(plan.stages.count)" : "stage \(recorded + 1) is now \(plan.stages[min(recorded, plan.stages.count - 1)].weight)%")
        }
        status.stage = index
        let stage = plan.stages[index]

        if observedWeight != stage.weight {
            // Weight not (yet) where this stage wants it.
            if (observedWeight ?? 0) > 0, observed.canary.map({ $0.readyReplicas == 0 }) ?? true {
                beginRollback(to: .failed, reason: "CanaryUnavailable", message: "canary Deployment \(plan.canaryDeployment) has no ready pods")
                return true
            }
            guard checkTraffic(canary: true) else { return false }
            if previousWeight == stage.weight, status.stageStartedAt != nil {
                if status.routedTraffic == nil {
                    // The weight went back to stable because spec.traffic now names other routes (TrafficMoved).
                    event(.normal, .trafficMoved, "stage \(index + 1)/\(plan.stages.count): moving \(stage.weight)% to the routes spec.traffic names now")
                } else {
                    event(.warning, .weightsRestored, "managed routes were changed to \(observedWeight.map { "\($0)%" } ?? "an irregular split") outside Fledge; restoring \(stage.weight)%")
                }
            }
            setWeights(stage.weight)
            status.message = "stage \(index + 1)/\(plan.stages.count): setting canary weight \(stage.weight)%"
            return false
        }
        // The weight is confirmed by the observation.
        if status.stageStartedAt == nil {
            status.stageStartedAt = now
            status.lastProgressAt = now
            event(.normal, .stageStarted, "stage \(index + 1)/\(plan.stages.count): \(stage.weight)% of traffic on revision \(wanted)")
        }
        guard checkTraffic(canary: true) else {
            if let stable = observed.stable, let (reason, problem) = stableCannotTakeTraffic(stable) {
                // Stable cannot take traffic (no ready pods, or its subset selects none of them), not the canary:
                // stable's share already reaches no pod. A rollback would send the canary's share there too (so it could
                // not move it: Rule 2) and would fail a canary for stable's outage; advancing would give the canary
                // traffic no analysis approved. So the stage holds, unanalysed (there is no stable to compare with),
                // until stable can take traffic again or the progress deadline ends it.
                setTraffic(false, reason, problem)
                status.message =
                    "holding stage \(index + 1)/\(plan.stages.count) at \(stage.weight)%: \(problem); the canary keeps its \(stage.weight)% (moving it to stable would send it to no pod), and nothing advances, is analysed or rolls back until stable can take traffic again or progressDeadline (\(plan.progressDeadline)) passes"
                setProgressing(true, reason.rawValue, status.message!)
                return false
            }
            // The canary serves but no longer passes Rule 2 (pods gone, subset edited): take its traffic away.
            let message = status.condition(ConditionType.trafficReady)?.message ?? "traffic checks failed"
            beginRollback(to: .failed, reason: "CanaryUnavailable", message: message)
            return true
        }
        if judgeLatest() { return true }

        let approved = status.approvedStage == index
        let started = status.stageStartedAt!
        let holdDone = now >= started + stage.hold
        let required = max(1, Int(stage.hold.milliseconds / plan.analysis.interval.milliseconds))
        if !approved {
            let judgeAllows = judgeAllowsAdvance(stage: index)
            guard holdDone, status.passedChecks >= required, judgeAllows else {
                status.message =
                    "stage \(index + 1)/\(plan.stages.count) at \(stage.weight)%: \(min(status.passedChecks, required))/\(required) passing checks, hold \(stage.hold)"
                // Only a measurement of this stage (a whole interval after it began) speaks for it: the previous stage's
                // last one, judged in the second this stage's weight was confirmed, is not (status showed its "advance to
                // 25%" under stage 2 at 25% for an interval).
                let ofThisStage = started + plan.analysis.interval
                if let last = status.condition(ConditionType.analysis), let at = status.lastAnalysisAt, at >= ofThisStage,
                    last.status != .true, last.reason != Verdict.inconclusive.rawValue || judgeAllows
                {
                    // Why the checks do not add up (a provider error, no data, a failed check) is said here, not
                    // only in the Analysis condition.
                    status.message! += "; last interval \(last.reason): \(last.message)"
                } else if !judgeAllows {
                    let judged = (status.lastAnalysis ?? []).first { $0.name == "judge" && $0.time >= ofThisStage }
                    status.message! += "; judge: "
                        + (judged?.message ?? "holding until counts of this stage are judged")
                }
                if status.phase == .paused { status.phase = .progressing }
                setProgressing(true, "Analysing", status.message!)
                requestAnalysisIfDue()
                return false
            }
            for hook in plan.webhooks where hook.type == .stageGate {
                switch gate(hook, stage: index) {
                case .passed: continue
                case .waiting:
                    requestAnalysisIfDue()
                    return false
                case .failed(let message):
                    status.message = "stage gate \(hook.name) holds stage \(index + 1): \(message)"
                    setProgressing(true, "StageGateHolding", status.message!)
                    requestAnalysisIfDue()
                    return false
                }
            }
            if stage.manualApproval {
                if status.phase != .paused {
                    status.phase = .paused
                    event(.normal, .awaitingApproval, "stage \(index + 1)/\(plan.stages.count) at \(stage.weight)% passed; waiting for `fledge promote`")
                }
                status.message = "stage \(index + 1)/\(plan.stages.count) at \(stage.weight)% waits for approval (fledge promote)"
                setProgressing(true, "AwaitingApproval", status.message!)
                requestAnalysisIfDue()
                return false
            }
        }
        if index + 1 < plan.stages.count {
            enterStage(index + 1)
        } else {
            enter(.promoting)
            event(.normal, .promoting, "\(stagesDone()); promoting revision \(wanted) into Deployment \(plan.target)")
        }
        return true
    }

    /// `all 4 stages passed`, or `4 stages done, stage 3 promoted by request` when `fledge promote` advanced some
    /// before their hold and checks were done.
    func stagesDone() -> String {
        let promoted = (status.promotedStages ?? []).filter { $0 < plan.stages.count }.map { String($0 + 1) }
        let count = plan.stages.count
        guard !promoted.isEmpty else { return count == 1 ? "the stage passed" : "all \(count) stages passed" }
        if count == 1 { return "the stage was promoted by request" }
        let names = promoted.count == 1 ? "stage \(promoted[0])" : "stages \(promoted.dropLast().joined(separator: ", ")) and \(promoted.last!)"
        return "\(count) stages done, \(names) promoted by request"
    }

    mutating func promoting() -> Bool {
        let stable = observed.stable!
        if stableRevision != wanted {
            actions.append(.writeStableTemplate(deployment: plan.target, template: effective, revision: wanted))
            status.message = "writing revision \(wanted) into Deployment \(plan.target)"
            setProgressing(true, "Promoting", status.message!)
            return false
        }
        guard stable.isRolledOut else {
            status.message = "waiting for Deployment \(plan.target): \(stable.readyReplicas)/\(stable.replicas) ready on revision \(wanted)"
            setProgressing(true, "Promoting", status.message!)
            return false
        }
        enter(.finalising)
        return true
    }

    mutating func finalising() -> Bool {
        findRoutesStillReachingTheCanary()
        if observedWeight != 0 {
            guard !managed.isEmpty else { return hold(trafficError?.message ?? "no managed route") }
            if stableCannotServe() { return hold("Deployment \(plan.target) has no ready pods to take the canary's traffic") }
            setWeights(0)
            status.message = "moving all traffic back to Deployment \(plan.target)"
            return false
        }
        if let canary = observed.canary, canary.replicas > 0 {
            actions.append(.scaleCanary(deployment: plan.canaryDeployment, replicas: 0))
            status.message = "scaling canary Deployment \(plan.canaryDeployment) to zero"
            return false
        }
        finish(.succeeded, reason: "Promoted", message: "revision \(wanted) promoted into Deployment \(plan.target)")
        return true
    }

    mutating func rollingBack() -> Bool {
        findRoutesStillReachingTheCanary()
        if observedWeight != 0 {
            guard !managed.isEmpty else { return hold(trafficError?.message ?? "no managed route") }
            if stableCannotServe() { return false }
            setWeights(0)
            return false
        }
        if let canary = observed.canary, canary.replicas > 0 {
            actions.append(.scaleCanary(deployment: canary.name, replicas: 0))
            return false
        }
        let end = status.rollbackTo ?? .failed
        let reason = status.condition(ConditionType.progressing)?.reason ?? "RolledBack"
        let message = status.message ?? "rolled back"
        finish(end, reason: reason, message: message)
        return true
    }

    // MARK: - Transitions

    /// `retrying`: `fledge retry` starts the same revision again after it failed or was aborted, and says so.
    mutating func start(retrying: Bool = false) {
        status.phase = .initializing
        status.revision = wanted
        status.stage = nil
        status.startedAt = now
        status.stageStartedAt = nil
        status.lastProgressAt = now
        status.lastAnalysisAt = nil
        status.passedChecks = 0
        status.failedChecks = 0
        status.inconclusiveChecks = 0
        status.errorChecks = 0
        status.lastAnalysis = nil
        status.rollbackTo = nil
        status.approvedStage = nil
        status.promotedStages = nil
        status.passedWebhooks = []
        status.judge = nil
        status.judgeAcceptedStage = nil
        status.message = "\(retrying ? "retrying" : "starting") revision \(wanted) (stable runs \(stableRevision))"
        status.removeCondition(ConditionType.analysis)
        setProgressing(true, retrying ? "Retrying" : "NewRevision", status.message!)
        event(
            .normal, .rolloutStarted,
            retrying
                ? "revision \(wanted) rolling out again over Deployment \(plan.target) (retry; stable revision \(stableRevision))"
                : "revision \(wanted) rolling out over Deployment \(plan.target) (stable revision \(stableRevision))")
    }

    mutating func enterStage(_ index: Int) {
        status.phase = .progressing
        status.stage = index
        status.stageStartedAt = nil
        status.passedChecks = 0
        status.lastProgressAt = now
        status.message = "stage \(index + 1)/\(plan.stages.count): setting canary weight \(plan.stages[index].weight)%"
        setProgressing(true, "StageAdvanced", status.message!)
    }

    mutating func restartStage(_ index: Int, because reason: String) {
        if let approved = status.approvedStage, approved >= index { status.approvedStage = nil }
        if let accepted = status.judgeAcceptedStage, accepted >= index { status.judgeAcceptedStage = nil }
        if let promoted = status.promotedStages {
            let kept = promoted.filter { $0 < index }
            status.promotedStages = kept.isEmpty ? nil : kept
        }
        event(.normal, .stageRestarted, "spec.stages changed (\(reason)): stage \(index + 1)/\(plan.stages.count) at \(plan.stages[index].weight)% starts over")
        enterStage(index)
    }

    mutating func enter(_ phase: Phase) {
        status.phase = phase
        if phase != .progressing && phase != .paused { status.stageStartedAt = nil }
        status.lastProgressAt = now
        setProgressing(!phase.isIdle, phase.rawValue, "phase \(phase.rawValue)")
    }

    mutating func beginRollback(to end: Phase, reason: String, message: String) {
        status.phase = .rollingBack
        status.rollbackTo = end
        status.stageStartedAt = nil
        status.message = message
        setProgressing(false, reason, message)
        event(end == .healthy ? .normal : .warning, .rollingBack, "\(reason): \(message)")
    }

    mutating func finish(_ phase: Phase, reason: String, message: String) {
        status.phase = phase
        status.stage = nil
        status.stageStartedAt = nil
        status.rollbackTo = nil
        status.approvedStage = nil
        status.promotedStages = nil
        status.message = message
        if phase != .healthy {
            record(outcome: phase.rawValue, reason: reason, message: message)
        }
        setProgressing(false, phase == .succeeded ? "Succeeded" : reason, message)
        event(phase == .succeeded || phase == .healthy ? .normal : .warning, .ended(in: phase), message)
        oweNotifications(phase)
    }

    /// Owed in status first, then called (deliverNotifications): a controller killed between the two still calls.
    /// Without a plan (the spec does not validate) no hook can be called.
    mutating func oweNotifications(_ phase: Phase) {
        for hook in plan?.webhooks ?? [] where hook.type == .postRollout {
            let note = PendingNotification(webhook: hook.name, revision: status.revision ?? wanted, phase: phase, endedAt: now)
            var pending = status.pendingNotifications ?? []
            pending.removeAll { $0.id == note.id }
            pending.append(note)
            status.pendingNotifications = pending
        }
    }

    /// Calls the post-rollout webhooks that are owed, until each answers 2xx: again every `analysis.interval` after a
    /// call that failed; given up (Event `NotificationFailed`) when a call fails once `progressDeadline` has passed since
    /// the rollout ended (so at least once, also by a controller that was down meanwhile). A webhook no longer in the
    /// spec is not owed any more.
    mutating func deliverNotifications() {
        guard let pending = status.pendingNotifications, !pending.isEmpty, let plan else { return }
        var kept: [PendingNotification] = []
        for note in pending {
            guard let hook = plan.webhooks.first(where: { $0.type == .postRollout && $0.name == note.webhook }) else { continue }
            if let outcome = analysis.webhooks[note.id] {
                if outcome.passed { continue }
                if outcome.time >= note.endedAt + plan.progressDeadline {
                    event(
                        .warning, .notificationFailed,
                        "post-rollout webhook \(hook.name) (\(note.phase.rawValue), revision \(note.revision)) gave no 2xx answer within \(plan.progressDeadline) of the end; not called again: \(outcome.message)")
                    continue
                }
                let retryAt = outcome.time + plan.analysis.interval
                // An answer from the future: the clock went back since; asked again now rather than when it catches up.
                if now < retryAt, outcome.time <= now {
                    webhookRetryAt = min(webhookRetryAt ?? retryAt, retryAt)
                    kept.append(note)
                    continue
                }
            }
            actions.append(.callWebhook(notificationCall(hook, note)))
            kept.append(note)
        }
        status.pendingNotifications = kept.isEmpty ? nil : kept
    }

    /// A post-rollout call: the body says how the rollout ended, whatever the Rollout does now.
    func notificationCall(_ hook: WebhookPlan, _ note: PendingNotification) -> WebhookCall {
        var call = webhookCall(hook, id: note.id, stage: nil)
        call.body["phase"] = .string(note.phase.rawValue)
        call.body["revision"] = .string(note.revision)
        return call
    }

    mutating func record(outcome: String, reason: String, message: String) {
        let rev = status.revision ?? wanted
        status.history.append(
            HistoryEntry(revision: rev, outcome: outcome, reason: reason, message: message, startedAt: status.startedAt, finishedAt: now))
        if status.history.count > RolloutStatus.historyLimit {
            status.history.removeFirst(status.history.count - RolloutStatus.historyLimit)
        }
    }

    // MARK: - Analysis

    /// Judges `analysis.latest` when it is new and measured inside the current stage. True when it rolled back.
    ///
    /// With counts of both workloads the statistical judge runs first: conclusive harm rolls back at once (before
    /// `failureLimit`); its permission to advance is recorded in `judgeAcceptedStage`; while it holds, an interval
    /// whose metrics passed is Inconclusive (the metrics' pass still counts towards the stage's passing checks).
    /// The metrics' thresholds keep their meaning as guardrails.
    mutating func judgeLatest() -> Bool {
        guard let latest = analysis.latest, let started = status.stageStartedAt else { return false }
        // Not one from after now either: it was measured before the clock went back, and judged then (see
        // bringFutureTimesToNow, which would otherwise let it count again and again).
        guard isUnjudged(latest, stageStartedAt: started), latest.time <= now else { return false }
        let index = status.stage ?? 0
        let judged = judgeInterval(plan, status: status, result: latest)
        let (verdict, guardrails, metrics, summary) = (judged.verdict, judged.checks, judged.metrics, judged.summary)
        if case .judged(let judgeVerdict, let state)? = judged.judge {
            status.judge = state
            switch judgeVerdict.decision {
            case .rollback:
                status.lastAnalysis = metrics
                status.lastAnalysisAt = latest.time
                status.failedChecks += 1
                status.errorChecks = 0
                status.setCondition(ConditionType.analysis, .false, reason: "HarmConclusive", message: summary, generation: generation, now: now)
                beginRollback(to: .failed, reason: "HarmConclusive", message: judgeVerdict.explanation)
                return true
            case .advance:
                if status.judgeAcceptedStage != index {
                    status.judgeAcceptedStage = index
                    event(.normal, .judgeAccepted, "stage \(index + 1)/\(plan.stages.count): \(judgeVerdict.explanation)")
                }
            case .hold:
                break
            }
        } else if case .notCompared(_, let state)? = judged.judge {
            // Kept, so the stage waits for the judge's permission as for any hold.
            status.judge = state
        }
        status.lastAnalysis = metrics
        status.lastAnalysisAt = latest.time
        status.setCondition(
            ConditionType.analysis, verdict == .passed ? .true : .false, reason: verdict.rawValue, message: summary, generation: generation,
            now: now)
        switch verdict {
        case .passed:
            status.passedChecks += 1
            status.errorChecks = 0
            status.lastProgressAt = now
        case .inconclusive where guardrails == .passed:
            // The guardrails passed; only the judge's evidence is missing.
            status.passedChecks += 1
            status.inconclusiveChecks += 1
            status.errorChecks = 0
        case .failed:
            status.failedChecks += 1
            status.errorChecks = 0
            event(.warning, .analysisFailed, "check failed (\(status.failedChecks)/\(plan.analysis.failureLimit)): \(summary)")
            if status.failedChecks >= plan.analysis.failureLimit {
                beginRollback(
                    to: .failed, reason: "AnalysisFailed",
                    message: "\(status.failedChecks) failed checks (failureLimit \(plan.analysis.failureLimit)); last: \(summary)")
                return true
            }
        case .inconclusive:
            status.inconclusiveChecks += 1
            status.errorChecks = 0
        case .error:
            status.errorChecks += 1
            event(.warning, .metricProviderError, "provider error (\(status.errorChecks)/\(plan.analysis.providerErrorLimit) in a row): \(summary)")
            if status.errorChecks >= plan.analysis.providerErrorLimit {
                beginRollback(
                    to: .failed, reason: "MetricProviderUnavailable",
                    message: "\(status.errorChecks) analysis intervals in a row without metrics (providerErrorLimit \(plan.analysis.providerErrorLimit)); last: \(summary)")
                return true
            }
        }
        return false
    }

    /// While the judge runs, a stage advances only with its permission.
    func judgeAllowsAdvance(stage index: Int) -> Bool {
        guard plan.analysis.judge.enabled, status.judge != nil, plan.stages[index].weight < 100 else { return true }
        return status.judgeAcceptedStage == index
    }

    var nextAnalysisAt: Timestamp? {
        guard let started = status.stageStartedAt else { return nil }
        let first = started + plan.analysis.interval
        guard let last = status.lastAnalysisAt, last >= first else { return first }
        return last + plan.analysis.interval
    }

    mutating func requestAnalysisIfDue() {
        guard let due = nextAnalysisAt, now >= due else { return }
        actions.append(
            .runAnalysis(
                AnalysisRequest(
                    namespace: rollout.metadata.namespace ?? "default", canaryWorkload: plan.canaryDeployment, stableWorkload: plan.target,
                    window: plan.analysis.interval, metrics: plan.analysis.metrics,
                    needsStable: plan.analysis.metrics.contains { $0.maxDecreaseFromStable != nil || $0.maxRatioToStable != nil },
                    prometheusAddress: plan.analysis.prometheusAddress,
                    needsCounts: plan.analysis.judge.enabled && plan.stages[min(status.stage ?? 0, plan.stages.count - 1)].weight < 100)))
    }

    /// A requeue for the earliest time-driven change: the next analysis, the end of a hold, the progress deadline.
    mutating func scheduleWakeUp() {
        var times: [Timestamp] = []
        // A webhook that failed (a stage gate that said no, an unreachable pre-rollout hook, a notification owed also
        // after the rollout ended) is asked again then.
        if let webhookRetryAt { times.append(webhookRetryAt) }
        guard !status.phase.isIdle else {
            if let next = times.filter({ $0 > now }).min() {
                actions.append(.requeue(after: RolloutDuration(milliseconds: next.milliseconds(since: now))))
            }
            return
        }
        if status.phase == .progressing || status.phase == .paused, let stage = status.stage, stage < plan.stages.count {
            if let due = nextAnalysisAt { times.append(due) }
            if let started = status.stageStartedAt { times.append(started + plan.stages[stage].hold) }
        }
        if [.initializing, .progressing].contains(status.phase), let last = status.lastProgressAt {
            times.append(last + plan.progressDeadline + .seconds(1))
            // The deadline passed while no controller looked: it is checked again once the grace is over.
            if let since = analysis.decidingSince { times.append(since + deadlineGrace + .seconds(1)) }
        }
        guard let next = times.filter({ $0 > now }).min() else { return }
        actions.append(.requeue(after: RolloutDuration(milliseconds: next.milliseconds(since: now))))
    }

    mutating func deadlinePassed() -> Bool {
        guard let last = status.lastProgressAt, now.milliseconds(since: last) > plan.progressDeadline.milliseconds else { return false }
        // A controller that was down longer than the deadline must not blame the canary for the time nobody looked:
        // it first looks (a canary that became ready meanwhile) and measures (an analysis is due at once).
        if let since = analysis.decidingSince, now < since + deadlineGrace { return false }
        // A check of this stage measured within the deadline is judged first, though its answer came after it (a query
        // takes time, at most an interval here): if it passed, that is progress made when it was measured.
        if status.phase == .progressing, let latest = analysis.latest, let started = status.stageStartedAt,
            isUnjudged(latest, stageStartedAt: started),
            latest.time.milliseconds(since: last) <= plan.progressDeadline.milliseconds,
            now.milliseconds(since: latest.time) <= plan.analysis.interval.milliseconds
        {
            return false
        }
        beginRollback(
            to: .failed, reason: "ProgressDeadlineExceeded",
            message: "no progress for \(plan.progressDeadline) (progressDeadline) in phase \(status.phase.rawValue): \(status.message ?? "")")
        return true
    }

    /// Whether `latest` is a measurement of this stage (a whole interval after it began) not yet judged.
    func isUnjudged(_ latest: IntervalResult, stageStartedAt started: Timestamp) -> Bool {
        latest.time >= started + plan.analysis.interval && latest.time > (status.lastAnalysisAt ?? Timestamp(seconds: .min))
    }

    /// How long a controller that just began deciding waits before a progress deadline that passed while no
    /// controller was looking ends the rollout: two analysis intervals (one measurement due at once, and its answer).
    var deadlineGrace: RolloutDuration {
        RolloutDuration(milliseconds: plan.analysis.interval.milliseconds * 2)
    }

    // MARK: - Webhooks

    enum GateResult { case passed, waiting, failed(String) }

    mutating func gate(_ hook: WebhookPlan, stage: Int?) -> GateResult {
        let id = "\(hook.type.rawValue)/\(hook.name)/\(wanted)" + (stage.map { "/\($0)" } ?? "")
        if status.passedWebhooks.contains(id) { return .passed }
        guard let outcome = analysis.webhooks[id] else {
            actions.append(.callWebhook(webhookCall(hook, id: id, stage: stage)))
            status.message = "waiting for \(hook.type.rawValue) webhook \(hook.name)"
            return .waiting
        }
        if outcome.passed {
            status.passedWebhooks.append(id)
            return .passed
        }
        // A stage gate that said no, or a pre-rollout hook that could not be reached (a blip must not fail the
        // rollout; its progressDeadline bounds the wait), is asked again every interval.
        let retried = hook.type == .stageGate || (hook.type == .preRollout && !outcome.answered)
        if retried {
            // An answer from the future: the clock went back since; asked again now rather than when it catches up.
            if now >= outcome.time + plan.analysis.interval || outcome.time > now {
                actions.append(.callWebhook(webhookCall(hook, id: id, stage: stage)))
            } else {
                webhookRetryAt = outcome.time + plan.analysis.interval
            }
        }
        if hook.type == .preRollout, !outcome.answered {
            status.message = "waiting for pre-rollout webhook \(hook.name), retried every \(plan.analysis.interval) until the progressDeadline: \(outcome.message)"
            return .waiting
        }
        return .failed(outcome.message)
    }

    func webhookCall(_ hook: WebhookPlan, id: String, stage: Int?) -> WebhookCall {
        var body: JSONValue = [
            "name": .string(rollout.metadata.name), "namespace": .string(rollout.metadata.namespace ?? "default"),
            "type": .string(hook.type.rawValue), "phase": .string(status.phase.rawValue), "revision": .string(wanted),
            "stableRevision": .string(stableRevision), "canaryWeight": .int(Int64(status.canaryWeight)),
        ]
        if let stage { body["stage"] = .int(Int64(stage)) }
        return WebhookCall(id: id, name: hook.name, type: hook.type, url: hook.url, timeout: hook.timeout, body: body)
    }

    // MARK: - Traffic

    /// Rule 2. With `canary: false` only the stable side is checked. Sets the TrafficReady condition.
    @discardableResult
    mutating func checkTraffic(canary checkCanary: Bool) -> Bool {
        // The subsets first: routes are found by the subset names, so a DestinationRule whose subsets are named
        // otherwise (v1/v2) explains why no route is found, and says which names to put in spec.traffic.
        if let dr = observed.destinationRule {
            let names = subsets(of: dr).map { "'\($0.name)'" }
            for (field, name, labels) in [("stableSubset", plan.traffic.stableSubset, stableLabels), ("canarySubset", plan.traffic.canarySubset, canaryLabels)]
            where labels == nil {
                return setTraffic(
                    false, .subsetNotFound,
                    "DestinationRule \(plan.traffic.destinationRule) has no subset '\(name)' (it has \(names.isEmpty ? "none" : names.joined(separator: ", "))): check spec.traffic.\(field)")
            }
        }
        if let trafficError { return setTraffic(false, trafficError.reason, trafficError.message) }
        guard observed.destinationRule != nil else {
            return setTraffic(false, .destinationRuleNotFound, "DestinationRule \(plan.traffic.destinationRule) not found")
        }
        guard let stableLabels, let canaryLabels else { return false }  // Said above.
        let dr = plan.traffic.destinationRule
        if let mismatch = routeToAnotherHost() { return setTraffic(false, .hostMismatch, mismatch) }
        let stable = observed.stable!
        if let miss = firstMismatch(stableLabels, stable.podLabels) { return setTraffic(false, .subsetSelectsNoPods, stableSubsetMismatch(miss)) }
        if stableLabels.isEmpty || canaryLabels.isEmpty {
            return setTraffic(false, .subsetWithoutLabels, "subsets '\(plan.traffic.stableSubset)' and '\(plan.traffic.canarySubset)' of DestinationRule \(dr) both need labels")
        }
        if Set(stableLabels.keys) != Set(canaryLabels.keys) {
            let odd = Set(canaryLabels.keys).symmetricDifference(Set(stableLabels.keys)).sorted()
            return setTraffic(
                false, .subsetLabelMismatch,
                "subset '\(plan.traffic.canarySubset)' selects on labels [\(canaryLabels.keys.sorted().joined(separator: ", "))] but subset '\(plan.traffic.stableSubset)' on [\(stableLabels.keys.sorted().joined(separator: ", "))] (check label \(odd.joined(separator: ", ")) of DestinationRule \(dr) for a typo)")
        }
        if stableLabels == canaryLabels {
            return setTraffic(false, .subsetsIdentical, "subsets '\(plan.traffic.stableSubset)' and '\(plan.traffic.canarySubset)' of DestinationRule \(dr) select the same labels\(identicalSubsetsHint)")
        }
        if stable.readyReplicas < 1 {
            return setTraffic(false, .stableNotReady, stableNotReadyMessage(stable))
        }
        if checkCanary {
            guard let canary = observed.canary else {
                return setTraffic(false, .canaryNotReady, "canary Deployment \(plan.canaryDeployment) not found")
            }
            guard canary.revisionAnnotation == wanted else {
                return setTraffic(false, .canaryNotReady, "canary Deployment \(plan.canaryDeployment) is not yet at revision \(wanted)")
            }
            if let miss = firstMismatch(canaryLabels, canary.podLabels) {
                return setTraffic(
                    false, .subsetSelectsNoPods,
                    "subset '\(plan.traffic.canarySubset)' of DestinationRule \(dr) selects label \(miss.key)=\(miss.wanted) but the canary pods have \(miss.actual.map { "\(miss.key)=\($0)" } ?? "no label \(miss.key)")")
            }
            if stable.selects(canary.podLabels) {
                return setTraffic(
                    false, .selectorOverlap,
                    "the selector of Deployment \(plan.target) (\(stable.selectorText)) also selects the canary's pods; it needs the stable subset's label (\(labelText(stableLabels))), and as a Deployment's selector cannot change, the Deployment must be created again with it")
            }
            if status.phase == .initializing, !canary.isRolledOut {
                // Counted on the revision being rolled out: the pods of the one before may still be ready. Ready pods
                // that are not yet available wait out minReadySeconds (it said "3/3 pods ready" while they did).
                let ready = canary.readyOnLatestSpec
                let waiting =
                    ready >= canary.replicas && canary.availableReplicas < canary.replicas
                    ? ", \(canary.availableReplicas)/\(canary.replicas) available (minReadySeconds: \(canary.settings.minReadySeconds))" : ""
                return setTraffic(
                    false, .canaryNotReady,
                    "canary Deployment \(plan.canaryDeployment): \(ready)/\(canary.replicas) pods ready on revision \(wanted)\(waiting)",
                    expected: true)
            }
            if status.phase != .initializing, canary.readyReplicas < 1 {
                return setTraffic(false, .canaryNotReady, "canary Deployment \(plan.canaryDeployment): \(canary.readyReplicas)/\(canary.replicas) pods ready")
            }
        }
        return trafficReady(
            checkCanary ? "subsets select ready pods of \(plan.target) and \(plan.canaryDeployment)" : "subset '\(plan.traffic.stableSubset)' selects ready pods of \(plan.target)")
    }

    /// Rule 2 holds on the way back too: the canary's weight goes back to stable only when stable has a ready pod to
    /// take it; until then the canary keeps its traffic (and its pods), and TrafficReady says why. Moving it anyway
    /// would turn a partial outage (stable deleted or down) into a total one. Not for a spec that does not validate
    /// (no plan: the target it names may be the mistake) nor for a Rollout being deleted (its canary goes with it).
    mutating func stableCannotServe() -> Bool {
        guard plan != nil else { return false }
        // The weight is on the canary of a former spec.target, whose stable side this Rollout no longer watches.
        if let recorded = status.canaryDeployment, recorded != plan.canaryDeployment { return false }
        guard let stable = observed.stable else { return true }  // prepare() reported StableNotFound.
        guard let (reason, problem) = stableCannotTakeTraffic(stable) else { return false }
        setTraffic(false, reason, problem + keepingTrafficNote)
        return true
    }

    /// Why weight sent to the stable subset would reach no pod: the subset is gone from the DestinationRule (while the
    /// canary's is not: with the whole DestinationRule gone neither side routes, and the weight may as well move) or
    /// selects no pod of the stable Deployment, or that has no ready pod. Nil when stable can take traffic.
    func stableCannotTakeTraffic(_ stable: ObservedDeployment) -> (EventReason, String)? {
        if observed.destinationRule != nil {
            guard let stableLabels else {
                return (.subsetNotFound, "DestinationRule \(plan.traffic.destinationRule) has no subset '\(plan.traffic.stableSubset)' (spec.traffic.stableSubset)")
            }
            if let miss = firstMismatch(stableLabels, stable.podLabels) { return (.subsetSelectsNoPods, stableSubsetMismatch(miss)) }
        }
        if stable.readyReplicas < 1 { return (.stableNotReady, stableNotReadyMessage(stable)) }
        return nil
    }

    func stableSubsetMismatch(_ miss: (key: String, wanted: String, actual: String?)) -> String {
        "subset '\(plan.traffic.stableSubset)' of DestinationRule \(plan.traffic.destinationRule) selects label \(miss.key)=\(miss.wanted) but the pods of Deployment \(plan.target) have \(miss.actual.map { "\(miss.key)=\($0)" } ?? "no label \(miss.key)")"
    }

    /// `stable Deployment product-service has no ready pods (scaled to 0)`: which side, and why when it is plain.
    func stableNotReadyMessage(_ stable: ObservedDeployment) -> String {
        "stable Deployment \(plan.target) has no ready pods (\(stable.replicas == 0 ? "scaled to 0" : "0/\(stable.replicas) ready"))"
    }

    /// Said while a rollback, the end of a promotion or the start of a new revision over the canary of the one before
    /// waits for stable to have ready pods.
    var keepingTrafficNote: String {
        guard [.rollingBack, .finalising, .initializing].contains(status.phase), status.canaryWeight > 0 else { return "" }
        return "; the canary keeps its \(status.canaryWeight)% until stable can take it (moving that traffic now would send it to no pod)"
    }

    /// A managed route whose destination is another service than the DestinationRule's host: the subsets do not
    /// apply there, and weight sent to the canary subset would reach no pod (Rule 2). Nil when all agree.
    func routeToAnotherHost() -> String? {
        guard let host = observed.destinationRule?[path: ["spec", "host"]]?.stringValue, !host.contains("*") else { return nil }
        let wanted = qualifiedHost(host, namespace: namespace)
        for route in managed {
            for destination in route.destinations {
                guard let other = destination.host, !sameService(qualifiedHost(other, namespace: namespace), wanted) else { continue }
                return "route \(route.id) of VirtualService \(traffic.virtualService) sends to host \(other), but DestinationRule \(plan.traffic.destinationRule) is for host \(host): its subsets do not apply there"
            }
        }
        return nil
    }

    @discardableResult
    /// `expected`: a step of a normal rollout (the canary being made), reported as a Normal Event, not a Warning.
    mutating func setTraffic(_ ok: Bool, _ reason: EventReason, _ message: String, expected: Bool = false) -> Bool {
        let before = status.condition(ConditionType.trafficReady)
        status.setCondition(
            ConditionType.trafficReady, ok ? .true : .false, reason: reason.rawValue, message: message, generation: generation, now: now)
        if !ok, before?.message != message { event(expected ? .normal : .warning, reason, message) }
        if !ok, !status.phase.isIdle, status.phase != .rollingBack { status.message = "holding: \(message)" }
        return ok
    }

    /// TrafficReady=True (`Ready`, no Event).
    mutating func trafficReady(_ message: String) -> Bool {
        status.setCondition(ConditionType.trafficReady, .true, reason: "Ready", message: message, generation: generation, now: now)
        return true
    }

    mutating func setWeights(_ canaryWeight: Int, because reason: String? = nil) {
        guard let vs = observed.virtualService, !managed.isEmpty else { return }
        let written = settingWeights(of: vs, routes: managed, traffic: traffic, canaryWeight: canaryWeight)
        actions.removeAll { $0.weightChange != nil }
        // A write that changes nothing confirms nothing either: never ask for one (Rule 8).
        guard written != vs else { return }
        let change = WeightChange(
            stableWeight: 100 - canaryWeight, canaryWeight: canaryWeight, routes: managed.map(\.id), virtualService: written)
        actions.append(.setWeights(change))
        if let reason {
            event(
                .normal, .weightsReset,
                "routes \(managed.map(\.id).joined(separator: ", ")) sent \(observedWeight.map { "\($0)%" } ?? "an irregular split") to subset \(traffic.canarySubset); moving it to \(canaryWeight)% because \(reason)")
        }
    }

    mutating func setProgressing(_ ok: Bool, _ reason: String, _ message: String) {
        status.setCondition(ConditionType.progressing, ok ? .true : .false, reason: reason, message: message, generation: generation, now: now)
    }

    @discardableResult
    mutating func hold(_ message: String) -> Bool {
        // A rollback's message says why it rolls back, and becomes the outcome's.
        if !status.phase.isIdle, status.phase != .rollingBack { status.message = "holding: \(message)" }
        return false
    }

    mutating func event(_ type: RolloutEvent.Kind, _ reason: EventReason, _ message: String) {
        actions.append(.emitEvent(RolloutEvent(type: type, reason: reason, message: message)))
    }
}
