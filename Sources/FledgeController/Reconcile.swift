import FledgeCore
import FledgeJSON
import FledgeKubernetes
import Foundation
import Logging

/// What the controller keeps in memory per Rollout. None of it is progress (that lives in status): losing it
/// costs at most one extra measurement or webhook call.
///
/// The work table has an entry per Rollout, and most of 10,000 Rollouts are idle: the entry itself holds only
/// the counters; what the Rollout names and what only rollouts in flight (or failing) need sit behind references.
struct RolloutWork: Sendable {
    /// Bumped whenever anything a decision reads changes: the Rollout, an object it names (watch events), a
    /// measurement or a webhook answer.
    var inputVersion: UInt64 = 0
    /// The `inputVersion` of the last decision that asked for nothing at all: until it moves, deciding again would
    /// give the same answer, so a pass over idle rollouts costs one comparison each.
    var settledAt: UInt64?
    /// Which object under this name the in-memory state belongs to (a hash of `metadata.uid`; 0 before the first
    /// reconcile): a Rollout deleted and created again under the same name starts afresh.
    var identity = 0
    /// What the Rollout names.
    var references: RolloutReferences? {
        get { referencesBox?.value }
        set { referencesBox = newValue.map(Box.init) }
    }
    private var referencesBox: Box<RolloutReferences>?
    private var inFlightBox: Box<InFlight>?

    /// What only a rollout in flight or failing has.
    private struct InFlight: Sendable {
        var latest: IntervalResult?
        var analysisInFlight = false
        var webhookOutcomes: [String: WebhookOutcome] = [:]
        var webhooksInFlight: Set<String> = []
        var failures = 0
        var lastFailure: String?
        var revision: String?
        var conflicts = 0

        var isEmpty: Bool {
            latest == nil && !analysisInFlight && webhookOutcomes.isEmpty && webhooksInFlight.isEmpty && failures == 0
                && lastFailure == nil && revision == nil && conflicts == 0
        }
    }

    private var inFlight: InFlight {
        get { inFlightBox?.value ?? InFlight() }
        set { inFlightBox = newValue.isEmpty ? nil : Box(newValue) }
    }

    /// The newest measurement, handed to `decide` until it has judged it.
    var latest: IntervalResult? {
        get { inFlight.latest }
        set { inFlight.latest = newValue }
    }
    var analysisInFlight: Bool {
        get { inFlight.analysisInFlight }
        set { inFlight.analysisInFlight = newValue }
    }
    var webhookOutcomes: [String: WebhookOutcome] {
        get { inFlight.webhookOutcomes }
        set { inFlight.webhookOutcomes = newValue }
    }
    var webhooksInFlight: Set<String> {
        get { inFlight.webhooksInFlight }
        set { inFlight.webhooksInFlight = newValue }
    }
    /// Consecutive failed reconciles, for backoff.
    var failures: Int {
        get { inFlight.failures }
        set { inFlight.failures = newValue }
    }
    var lastFailure: String? {
        get { inFlight.lastFailure }
        set { inFlight.lastFailure = newValue }
    }
    /// Consecutive writes refused with 409 Conflict (the object changed since the cache's version).
    var conflicts: Int {
        get { inFlight.conflicts }
        set { inFlight.conflicts = newValue }
    }
    /// The revision the in-memory measurements belong to (nil while idle: they keep none).
    var revision: String? {
        get { inFlight.revision }
        set { inFlight.revision = newValue }
    }

    /// Drops what belonged to another object under the same name. Requests still in flight are dropped with it:
    /// their answers carry the old identity and are not taken.
    mutating func startAfresh(identity: Int) {
        inFlightBox = nil
        settledAt = nil
        self.identity = identity
    }

    static func identity(of rollout: Rollout) -> Int {
        let hash = rollout.metadata.uid?.hashValue ?? 1
        return hash == 0 ? 1 : hash
    }
}

/// An immutable value behind a reference, to keep a rarely set large value out of a struct's inline storage.
final class Box<Value: Sendable>: Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// The condition the controller (not the core) sets when executing a decision failed.
public let reconciledCondition = "Reconciled"

extension Controller {
    /// Notes that an input of `key`'s decision changed.
    func bump(_ key: String) {
        work.withLock { $0[key, default: RolloutWork()].inputVersion &+= 1 }
    }

    /// One level-triggered reconcile of one Rollout.
    func reconcile(_ key: String) async {
        let started = ContinuousClock.now
        defer { metrics.reconcileDuration.recordNanoseconds(Int64((ContinuousClock.now - started).components.attoseconds / 1_000_000_000 + (ContinuousClock.now - started).components.seconds * 1_000_000_000)) }
        counters.withLock { $0.reconciles += 1 }
        let (inputVersion, settledAt) = work.withLock { ($0[key]?.inputVersion ?? 0, $0[key]?.settledAt) }
        if settledAt == inputVersion { return }
        guard let object = caches.rollouts.get(key: key) else {
            // Deleted. Its entry may be back (a reconcile that was running when it was deleted re-indexed it): drop
            // it, or every resync pass would queue it again.
            let (namespace, name) = Informer.location(ofKey: key)
            forget(key, namespace: namespace, name: name)
            return
        }
        guard let rollout = decoded(key, object) else { return }
        let references = rollout.references
        index(key, references: references)
        // Only the leader decides: a decision asks for writes, and a standby must not make any.
        guard canWrite else { return }

        let namespace = rollout.metadata.namespace ?? "default"
        let observed = Observed(
            stableDeployment: references.flatMap { caches.deployments.get(namespace: namespace, name: $0.stableDeployment) },
            canaryDeployment: references.flatMap { caches.deployments.get(namespace: namespace, name: $0.canaryDeployment) },
            virtualService: references.flatMap { caches.virtualServices.get(namespace: namespace, name: $0.virtualService) },
            destinationRule: references.flatMap { caches.destinationRules.get(namespace: namespace, name: $0.destinationRule) },
            formerVirtualService: references?.formerVirtualService.flatMap { caches.virtualServices.get(namespace: namespace, name: $0) },
            formerCanaryDeployment: references?.formerCanaryDeployment.flatMap { caches.deployments.get(namespace: namespace, name: $0) })
        let identity = RolloutWork.identity(of: rollout)
        let (memory, replaced) = work.withLock { w -> (RolloutWork, Bool) in
            var entry = w[key] ?? RolloutWork()
            // The same name, another object (deleted and created again, perhaps within one batch of watch events):
            // nothing measured or answered for the old one may count for it.
            let replaced = entry.identity != 0 && entry.identity != identity
            if entry.identity != identity {
                entry.startAfresh(identity: identity)
                w[key] = entry
            }
            return (entry, replaced)
        }
        if replaced { metrics.forget(namespace: namespace, rollout: rollout.metadata.name) }
        let date = now()
        // While the API server cannot take status writes, no progress can be recorded: like time no controller ran, it
        // is not held against a progress deadline until the grace after it is back has passed.
        if decidingSince.statusWritesFailing.withLock({ $0 }) { decidingSince.raise(to: date) }
        if let jump = decidingSince.noticeJump(wall: date) {
            // Time the clock skipped is not the canary's: the progress deadline gives it a grace, as after a restart.
            logger.warning("the wall clock jumped forward", metadata: ["seconds": "\(Int(jump))"])
        }
        let decision = decide(
            rollout: rollout, observed: observed, analysis: Analysis(latest: memory.latest, webhooks: memory.webhookOutcomes, decidingSince: decidingSince.value.map(Timestamp.init)),
            now: Timestamp(date))
        counters.withLock { $0.decisions += 1 }
        // Measurements and webhook answers belong to one revision; idle rollouts keep none. The answers of post-rollout
        // notifications still owed are kept (their ids name the end they tell of), and only those: a retry of the same
        // revision asks its gates again. Settled before this decision's requests go out, so an answer that comes back
        // while this reconcile is still writing is kept.
        let owesNotifications = !(decision.status.pendingNotifications ?? []).isEmpty
        let revision = decision.status.phase.isIdle ? nil : decision.status.revision
        work.withLock { w in
            guard var entry = w[key], entry.identity == identity else { return }
            let kept = owesNotifications ? entry.webhookOutcomes.filter { $0.key.hasPrefix("post-rollout/") } : [:]
            let stale = revision == nil ? entry.revision != nil || entry.latest != nil || entry.webhookOutcomes != kept : entry.revision != revision
            guard stale else { return }
            entry.latest = nil
            entry.webhookOutcomes = kept
            entry.revision = revision
            w[key] = entry
        }

        // Intent first: the status is written before the actions it asks for. A controller killed in between
        // finds the decision in status and repeats the (idempotent) actions; the weight in status is still only
        // what the cluster was read back with (Rule 3).
        // A `Reconciled=False` from a failed write stays until the actions succeed, so it can be seen meanwhile.
        var status = decision.status
        // The decision's Events go into status with it, and are recorded only once that write succeeded: killed between
        // the two, the next controller finds them owed there (the next decision, made from the status written, does not
        // ask for them again). A Rollout that emitted nothing writes nothing for it.
        let carried = rollout.status?.pendingEvents ?? []
        let asked = decision.actions.compactMap { action -> RolloutEvent? in
            if case .emitEvent(let event) = action { event } else { nil }
        }
        status.pendingEvents = Self.pendingEvents(carried: carried, asked: asked, about: object, at: date)
        var current = object
        let statusWritten = status != rollout.status
        if statusWritten {
            do {
                current = try await writeCounted(status, of: object)
                decidingSince.statusWritesFailing.withLock { $0 = false }
            } catch {
                if error.isServerUnavailable {
                    decidingSince.statusWritesFailing.withLock { $0 = true }
                    decidingSince.raise(to: date)
                }
                await handle(error, key: key, rollout: rollout, object: object)
                return
            }
        }

        let events = status.pendingEvents ?? []
        var failure: ControllerError?
        // Letting the Rollout go comes last, after its Events: once the finalizer is off it may be gone, and
        // whoever watched it end (a report, `fledge status --watch`) reads those Events.
        let release = decision.actions.filter { $0 == .setFinalizer(false) }
        for action in decision.actions where action != .setFinalizer(false) {
            switch action {
            case .emitEvent:
                break  // owed in status.pendingEvents, recorded below
            case .runAnalysis(let request):
                submitAnalysis(key, identity: identity, request)
            case .callWebhook(let call):
                submitWebhook(key, identity: identity, call)
            case .requeue(let after):
                queue.add(key, after: .milliseconds(max(after.milliseconds, 0)))
            case .ensureCanaryDeployment, .setWeights, .writeStableTemplate, .scaleCanary, .setFinalizer:
                // In order, stopping at the first failure: weight 0 must land before the canary is scaled down.
                guard failure == nil, let references else { continue }
                do {
                    if let updated = try await executeCounted(action, rollout: current, references: references) { current = updated }
                } catch {
                    failure = error
                }
            }
        }
        // The Events owed are in status now (written above, or there already), so they can be recorded whatever the
        // other writes do.
        let recorded = await record(events, carried: carried, about: current)
        if let failure {
            // Recorded now: the next decision will not ask for them again (a rollback begun, a request answered), and
            // they show while the write is retried. They stay owed in the status the failure is written on, so a decision
            // whose status did not change, made again on the retry Events and all, finds them and records none twice.
            recordMetrics(namespace: namespace, name: rollout.metadata.name, old: rollout.status, new: status)
            var updated = rollout
            updated.status = status
            await handle(failure, key: key, rollout: updated, object: current)
            return
        }
        // From here on a failure is recorded on top of the status this decision wrote, never on the one it was decided
        // from: that would put an older status back (a stage undone, a rollout that ended ending again).
        var written = rollout
        written.status = status
        // Events recorded are owed no more: one more status write, only for a decision that asked for Events (or left a
        // failure to clear). One the API could not take (no answer, 429/5xx) stays owed and is tried again soon.
        let stillOwed = events.filter { !recorded.contains($0.name) }
        if !stillOwed.isEmpty { queue.add(key, after: .seconds(5)) }
        if status.condition(reconciledCondition) != nil || (status.pendingEvents ?? []) != stillOwed {
            status.removeCondition(reconciledCondition)
            status.pendingEvents = stillOwed.isEmpty ? nil : stillOwed
            do {
                current = try await writeCounted(status, of: current)
            } catch {
                await handle(error, key: key, rollout: written, object: current)
                return
            }
            written.status = status
        }
        for action in release {
            // Not while Events are owed: once the finalizer is off the Rollout, and its status with them, may be gone.
            guard let references, stillOwed.isEmpty else { break }
            do {
                try await executeCounted(action, rollout: current, references: references)
            } catch {
                await handle(error, key: key, rollout: written, object: current)
                return
            }
        }
        recordMetrics(namespace: namespace, name: rollout.metadata.name, old: rollout.status, new: status)
        // Events still owed are tried again at the requeue above, which must not find the Rollout settled.
        let asksNothing = decision.actions.isEmpty && status == rollout.status && stillOwed.isEmpty
        work.withLock { w in
            // Gone: the Rollout was deleted while this reconcile ran.
            guard var entry = w[key], entry.identity == identity else { return }
            entry.failures = 0
            entry.lastFailure = nil
            entry.conflicts = 0
            entry.settledAt = asksNothing ? inputVersion : nil
            w[key] = entry
        }
        // canaryWeight is what status records: the weight read back before this decision. A weight this decision wrote
        // is said apart (weightWritten), or the line after a start (the seed's 10 % put back to 0) or a stage's write
        // showed the weight from before it as the outcome.
        let weightWritten = decision.actions.compactMap(\.weightChange).last?.canaryWeight
        if !events.isEmpty || status.phase != rollout.status?.phase || weightWritten != nil {
            var metadata: Logger.Metadata = [
                "rollout": "\(rollout.metadata.name)", "namespace": "\(namespace)", "revision": "\(status.revision ?? "-")",
                "phase": "\(status.phase.rawValue)", "canaryWeight": "\(status.canaryWeight)",
                "events": "\(events.map(\.reason).joined(separator: ","))",
            ]
            if let weightWritten { metadata["weightWritten"] = "\(weightWritten)" }
            logger.info("reconciled", metadata: metadata)
        }
    }

    /// The Events owed after a decision: those still owed from before (a controller killed before it recorded them, or
    /// a write that failed), then the ones the decision asks for, each given its Event name and time now. One the
    /// decision asks for again, alike in type, reason and message, is the one already owed (a decision whose status did
    /// not change is made again after a failure, Events and all): it keeps its name, so it is not recorded twice.
    static func pendingEvents(carried: [PendingEvent], asked: [RolloutEvent], about object: JSONValue, at date: Date) -> [PendingEvent]? {
        var owed = carried
        var unmatched = carried
        for event in asked {
            if let i = unmatched.firstIndex(where: { $0.event == event }) {
                unmatched.remove(at: i)
                continue
            }
            owed.append(
                PendingEvent(
                    name: EventRecord.uniqueName(regarding: object, time: date), type: event.type, reason: event.reason, message: event.message,
                    time: EventRecord.formatTime(date)))
        }
        return owed.isEmpty ? nil : owed
    }

    /// Records the owed Events in order; returns the names of those done with (recorded, or refused for good).
    func record(_ events: [PendingEvent], carried: [PendingEvent], about rollout: JSONValue) async -> Set<String> {
        var done: Set<String> = []
        for event in events {
            let owedBefore = carried.contains { $0.name == event.name }
            if await writer.record(event, about: rollout, identity: configuration.identity, lookFirst: owedBefore) { done.insert(event.name) }
        }
        return done
    }

    /// Writes a Rollout's status, counted for the tests and `/metrics`.
    func writeCounted(_ status: RolloutStatus, of object: JSONValue) async throws(ControllerError) -> JSONValue {
        let written = try await writer.writeStatus(status, of: object)
        counters.withLock { $0.statusWrites += 1 }
        metrics.kubernetesWrites.increment()
        return written
    }

    /// Carries out one of a decision's cluster writes, counted likewise.
    @discardableResult
    func executeCounted(_ action: Action, rollout: JSONValue, references: RolloutReferences) async throws(ControllerError) -> JSONValue? {
        let updated = try await writer.execute(action, rollout: rollout, references: references)
        counters.withLock { $0.writes += 1 }
        metrics.kubernetesWrites.increment()
        return updated
    }

    /// Decodes the cached Rollout (not kept: idle rollouts are never decoded again, and memory is the budget).
    func decoded(_ key: String, _ object: JSONValue) -> Rollout? {
        do {
            return try Rollout(json: object)
        } catch {
            logger.error("cannot read Rollout", metadata: ["rollout": "\(key)", "error": "\(error)"])
            return nil
        }
    }

    /// A failed write: conflicts retry soon (see `handleConflict`); anything else backs off, is logged, shows in a
    /// `Reconciled=False` condition and a Warning Event when the error changes.
    func handle(_ error: ControllerError, key: String, rollout: Rollout, object: JSONValue) async {
        if case .kubernetes(let action, let k) = error { metrics.kubernetesFailure(k, action: action) }
        if case .kubernetes(_, let k) = error, k.isConflict {
            await handleConflict(k, key: key, object: object)
            return
        }
        if case .notLeader = error { return }
        // A write to an object the cache has but the server does not: the cache is stale (its delete event was
        // missed); drop the object so the next decision sees the cluster as it is.
        if case .kubernetes(_, let k) = error, k.isNotFound, let name = k.name, let informer = k.resource.flatMap({ caches.informer(for: $0) }) {
            await refresh(informer, namespace: k.namespace, name: name)
        }
        let (failures, changed) = work.withLock { w -> (Int, Bool) in
            // A Rollout deleted while its reconcile ran gets no entry back.
            guard var entry = w[key] else { return (0, false) }
            entry.failures += 1
            entry.settledAt = nil
            let changed = entry.lastFailure != error.description
            entry.lastFailure = error.description
            w[key] = entry
            return (entry.failures, changed)
        }
        let delay = Duration.milliseconds(min(30_000, 250 << min(failures, 7)))
        queue.add(key, after: delay)
        logger.warning(
            "reconcile failed", metadata: ["rollout": "\(key)", "error": "\(error)", "attempt": "\(failures)", "retryIn": "\(delay)"])
        // Written when the error is new, or when the condition is not (yet) in the status this reconcile wrote.
        var status = rollout.status ?? RolloutStatus()
        if changed || status.condition(reconciledCondition)?.message != error.description {
            status.setCondition(
                reconciledCondition, .false, reason: EventReason.actionFailed.rawValue, message: error.description, generation: rollout.metadata.generation,
                now: Timestamp(now()))
            _ = try? await writer.writeStatus(status, of: object)
        }
        guard changed else { return }
        await writer.recordEvent(
            RolloutEvent(type: .warning, reason: .actionFailed, message: error.description), about: object,
            identity: configuration.identity, now: now())
    }

    /// Conflicts after which the controller warns (log and Event) and relists the conflicting resource.
    static let conflictWarningThreshold = 3

    /// A write refused with 409 Conflict: the object changed since the version the decision was made from. Usually
    /// another writer raced us and the watch brings the newer object within moments, so the first conflict only
    /// retries after 100 ms. Again and again means the cache is not catching up (a watch stuck on a server that lost
    /// its state, say after a restore from a backup): from the second one the conflicting object is read from the API
    /// into the cache, at the threshold the controller warns and relists that resource, and the retries back off
    /// (100 ms doubling to 10 s). Reads happen only here, never in the steady state.
    func handleConflict(_ error: KubernetesError, key: String, object: JSONValue) async {
        let conflicts = work.withLock { w -> Int in
            guard var entry = w[key] else { return 0 }
            entry.conflicts += 1
            entry.settledAt = nil
            w[key] = entry
            return entry.conflicts
        }
        // A Rollout deleted while its reconcile ran: nothing to retry.
        guard conflicts > 0 else { return }
        let informer = error.resource.flatMap { caches.informer(for: $0) }
        if conflicts >= 2, let informer, let name = error.name {
            await refresh(informer, namespace: error.namespace, name: name)
        }
        let delay = Duration.milliseconds(min(10_000, 100 << min(conflicts - 1, 7)))
        if conflicts == Self.conflictWarningThreshold || (conflicts > Self.conflictWarningThreshold && conflicts % 10 == 0) {
            logger.warning(
                "writes keep conflicting; re-reading from the API server",
                metadata: [
                    "rollout": "\(key)", "conflicts": "\(conflicts)", "error": "\(error)", "retryIn": "\(delay)",
                    "relisting": "\(informer?.resource.description ?? "-")",
                ])
            informer?.requestRelist()
        }
        if conflicts == Self.conflictWarningThreshold {
            await writer.recordEvent(
                RolloutEvent(
                    type: .warning, reason: .writeConflict,
                    message: "\(conflicts) writes in a row refused with 409 Conflict (last: \(error)); the controller re-reads the objects and retries"),
                about: object, identity: configuration.identity, now: now())
        }
        queue.add(key, after: delay)
    }

    /// Reads one object from the API server into its cache (or drops it from the cache when it is gone). Only a
    /// cache that was behind changes, and so queues its Rollouts at once; one that was right keeps the backoff.
    func refresh(_ informer: Informer, namespace: String?, name: String) async {
        let cached = informer.get(namespace: namespace, name: name)
        let cachedVersion = cached?["metadata"]?["resourceVersion"]?.stringValue
        do {
            let fresh = try await client.get(informer.resource, namespace: namespace, name: name)
            let version = fresh["metadata"]?["resourceVersion"]?.stringValue
            guard version != cachedVersion else { return }
            logger.info(
                "the cache was behind the API server; re-read the object",
                metadata: [
                    "object": "\(informer.resource) \(namespace ?? "")/\(name)", "cachedResourceVersion": "\(cachedVersion ?? "-")",
                    "resourceVersion": "\(version ?? "-")",
                ])
            informer.apply(.modified(fresh))
        } catch where error.isNotFound {
            guard let cached else { return }
            logger.info(
                "the cache was behind the API server; the object is gone",
                metadata: ["object": "\(informer.resource) \(namespace ?? "")/\(name)", "cachedResourceVersion": "\(cachedVersion ?? "-")"])
            informer.remove(cached)
        } catch {
            logger.warning("could not re-read a conflicting object", metadata: ["object": "\(informer.resource) \(namespace ?? "")/\(name)", "error": "\(error)"])
        }
    }

    func recordMetrics(namespace: String, name: String, old: RolloutStatus?, new: RolloutStatus) {
        metrics.record(namespace: namespace, rollout: name, status: new)
        guard let at = new.lastAnalysisAt, at != old?.lastAnalysisAt else { return }
        for result in new.lastAnalysis ?? [] {
            metrics.analysisCheck(namespace: namespace, rollout: name, metric: result.name, verdict: result.verdict.rawValue)
        }
    }

    /// Hands an answer (a measurement, a webhook outcome) to the Rollout that asked and queues it; not to one
    /// deleted meanwhile, nor to another object created again under its name.
    func deliver(to key: String, identity: Int, _ answer: (inout RolloutWork) -> Void) {
        let taken = work.withLock { w -> Bool in
            guard var entry = w[key], entry.identity == identity else { return false }
            answer(&entry)
            entry.inputVersion &+= 1
            w[key] = entry
            return true
        }
        if taken { queue.add(key) }
    }

    // MARK: - Analysis

    func submitAnalysis(_ key: String, identity: Int, _ request: AnalysisRequest) {
        let submit = work.withLock { w -> Bool in
            guard w[key]?.identity == identity, w[key]?.analysisInFlight != true else { return false }
            w[key]?.analysisInFlight = true
            return true
        }
        guard submit else { return }
        pendingAnalyses.withLock { $0.append((key, identity, request)) }
        analysisSignal.continuation.yield()
    }

    /// Collects the analysis requests of one batch window and measures them together: the built-in metrics of
    /// any number of rollouts cost a constant number of queries. Batches run side by side, and each result is handed
    /// over as soon as its server answered: rollouts on a healthy Prometheus never wait for a hanging one. (A rollout
    /// has at most one measurement in flight, so a hanging server's rollouts do not pile up requests meanwhile.)
    func runAnalyses() async {
        await withDiscardingTaskGroup { group in
            for await _ in analysisSignal.stream {
                try? await Task.sleep(for: configuration.analysisBatchWindow)
                let batch = pendingAnalyses.withLock { pending in
                    defer { pending.removeAll() }
                    return pending
                }
                guard !batch.isEmpty else { continue }
                counters.withLock { $0.analysisBatches += 1 }
                let time = now()
                group.addTask {
                    await self.analyzer.measure(batch.map(\.request), at: time) { indices, results in
                        for (i, result) in zip(indices, results) {
                            let (key, identity, _) = batch[i]
                            self.deliver(to: key, identity: identity) {
                                $0.latest = result
                                $0.analysisInFlight = false
                            }
                        }
                    }
                }
            }
        }
    }

    // MARK: - Webhooks

    func submitWebhook(_ key: String, identity: Int, _ call: WebhookCall) {
        let submit = work.withLock { w -> Bool in
            // The core asks again for a gate that failed once its retry is due; a passed one is never asked again.
            guard w[key]?.identity == identity, w[key]?.webhooksInFlight.contains(call.id) != true,
                w[key]?.webhookOutcomes[call.id]?.passed != true
            else { return false }
            w[key]?.webhooksInFlight.insert(call.id)
            return true
        }
        guard submit else { return }
        pendingWebhooks.withLock { $0.append((key, identity, call)) }
        webhookSignal.continuation.yield()
    }

    func runWebhooks() async {
        for await _ in webhookSignal.stream {
            let calls = pendingWebhooks.withLock { pending in
                defer { pending.removeAll() }
                return pending
            }
            await withDiscardingTaskGroup { group in
                for (key, identity, call) in calls {
                    group.addTask {
                        let outcome = await self.webhooks.call(call, now: self.now)
                        self.deliver(to: key, identity: identity) {
                            $0.webhookOutcomes[call.id] = outcome
                            $0.webhooksInFlight.remove(call.id)
                        }
                    }
                }
            }
        }
    }
}
