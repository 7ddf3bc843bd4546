import FledgeCore
import FledgeHTTP
import FledgeJSON
import FledgeKubernetes
import FledgePrometheus
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The controller: watch caches in, `decide` in the middle, writes out. Level-triggered, as controller-runtime:
/// any change to a Rollout or to an object it names queues the Rollout; a reconcile reads only the caches, asks
/// the pure core what to do, executes the actions in order and writes the status. All progress lives in the
/// status, so a controller killed anywhere resumes where it stopped (Rule 7).
public final class Controller: Service, Sendable {
    public let configuration: ControllerConfiguration
    public let caches: Caches
    public let metrics: ControllerMetrics
    public let queue = WorkQueue()
    let client: KubernetesClient
    let analyzer: any MetricsProvider
    let webhooks: WebhookCaller
    let leader: LeaderElector?
    let writer: ClusterWriter
    let logger: Logger
    let now: @Sendable () -> Date
    let work: Mutex<[String: RolloutWork]> = Mutex([:])
    /// A watched object → the Rollouts that name it.
    let dependents = Mutex(DependentsIndex())
    let pendingAnalyses = Mutex<[(key: String, identity: Int, request: AnalysisRequest)]>([])
    let analysisSignal: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation)
    let pendingWebhooks = Mutex<[(key: String, identity: Int, call: WebhookCall)]>([])
    let webhookSignal: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation)
    let counters = Mutex(Counters())
    /// When this replica began deciding: its caches complete and, with leader election, the lease held (see
    /// `Analysis.decidingSince`).
    let decidingSince: DecidingSince

    /// What the controller did, for benchmarks and tests.
    public struct Counters: Sendable, Equatable {
        public var reconciles = 0
        /// Reconciles that called `decide` (the rest found their inputs unchanged).
        public var decisions = 0
        public var writes = 0
        public var statusWrites = 0
        public var analysisBatches = 0
    }

    /// - Parameters:
    ///   - analyzer: nil uses Prometheus (`configuration.prometheusURL` and each Rollout's own address).
    ///   - http: the transport for Prometheus and webhooks (libcurl).
    ///   - prometheus: the client for `configuration.prometheusURL` when it needs credentials, headers or a CA
    ///     (`fledge run --prometheus-*`); only that address gets them.
    ///   - writeGate: asked right before every write, after the lease; false skips the write. Fault injection: tests
    ///     use it to stop a controller after any number of writes.
    public init(
        client: KubernetesClient, configuration: ControllerConfiguration, http: any HTTPClient, prometheus: PrometheusClient? = nil,
        analyzer: (any MetricsProvider)? = nil,
        metrics: ControllerMetrics = ControllerMetrics(), logger: Logger = Logger(label: "fledge.controller"),
        now: @escaping @Sendable () -> Date = { Date() }, writeGate: (@Sendable () -> Bool)? = nil
    ) {
        self.client = client
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
        self.now = now
        caches = Caches(
            client: client, namespace: configuration.namespace, rolloutSelector: configuration.labelSelector, logger: logger, now: now)
        self.analyzer =
            analyzer
            ?? PrometheusAnalyzer(
                defaultAddress: configuration.prometheusURL, http: http, reporter: configuration.reporter, defaultClient: prometheus,
                requestTimeout: configuration.requestTimeout, logger: logger,
                onQuery: { [metrics] failed in metrics.prometheusQuery(failed: failed) })
        webhooks = WebhookCaller(http: http, logger: logger)
        analysisSignal = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        webhookSignal = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let queue = self.queue
        let caches = self.caches
        let decidingSince = DecidingSince()
        self.decidingSince = decidingSince
        if let election = configuration.leaderElection {
            leader = LeaderElector(
                client: client, configuration: election, identity: configuration.identity, logger: logger,
                onStartedLeading: {
                    decidingSince.raise(to: now())
                    // A new leader looks at everything: the old one may have stopped mid-way.
                    for key in caches.rollouts.keys { queue.add(key) }
                },
                onLeadershipChange: { [metrics] leading in metrics.leader.set(leading ? 1.0 : 0.0) })
        } else {
            leader = nil
            metrics.leader.set(1.0)
        }
        let leader = self.leader
        writer = ClusterWriter(
            client: client, caches: caches, fieldManager: configuration.fieldManager,
            mayWrite: { (leader?.canWrite ?? true) && (writeGate?() ?? true) },
            logger: logger)
    }

    /// Whether this replica may write now.
    public var canWrite: Bool { leader?.canWrite ?? true }

    /// Ready when every cache holds a complete list and can reach the API server: its watch is connected, or was
    /// less than `configuration.readinessGrace` ago.
    public var isReady: Bool { readiness.ready }

    /// Whether the replica is ready, and what `/readyz` says about it.
    public var readiness: (ready: Bool, message: String) {
        let informers = caches.all
        if let pending = informers.first(where: { !$0.hasSynced }) {
            return (false, "cache of \(pending.resource) not synced yet\(pending.lastError.map { ": \($0)" } ?? "")")
        }
        let date = now()
        let grace = Double(configuration.readinessGrace.components.seconds) + Double(configuration.readinessGrace.components.attoseconds) / 1e18
        for informer in informers {
            guard let since = informer.failingSince else { continue }
            let down = date.timeIntervalSince(since)
            if down >= grace {
                return (
                    false,
                    "cannot list or watch \(informer.resource) for \(Int(down))s (cache may be stale)\(informer.lastError.map { ": \($0)" } ?? "")"
                )
            }
        }
        return (true, "ok")
    }

    public var counts: Counters { counters.withLock { $0 } }

    // MARK: - Running

    public func run() async throws {
        logger.info(
            "controller starting",
            metadata: [
                "namespace": "\(configuration.namespace)", "selector": "\(configuration.labelSelector ?? "-")",
                "prometheus": "\(configuration.prometheusURL ?? "-")", "leaderElection": "\(configuration.leaderElection != nil)",
            ])
        // Graceful shutdown cancels everything: a reconcile cut short is no different from a crash, which the
        // status-only design survives (Rule 7).
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingDiscardingTaskGroup { group in
                    for informer in self.caches.all {
                        group.addTask { try await informer.run() }
                    }
                    if let leader = self.leader { group.addTask { try await leader.run() } }
                    group.addTask { await self.routeChanges(from: self.caches.rollouts, kind: nil) }
                    group.addTask { await self.routeChanges(from: self.caches.deployments, kind: .deployment) }
                    group.addTask { await self.routeChanges(from: self.caches.virtualServices, kind: .virtualService) }
                    group.addTask { await self.routeChanges(from: self.caches.destinationRules, kind: .destinationRule) }
                    group.addTask { await self.queue.runTimers() }
                    group.addTask { await self.runAnalyses() }
                    group.addTask { await self.runWebhooks() }
                    group.addTask { await self.runResync() }
                    group.addTask { await self.runMemoryTrim() }
                    for _ in 0..<max(1, self.configuration.workers) {
                        group.addTask { await self.runWorker() }
                    }
                    group.addTask {
                        // Wakes the workers, analysis and webhook loops when the group is cancelled.
                        await withTaskCancellationHandler {
                            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
                        } onCancel: {
                            self.queue.shutDown()
                            self.analysisSignal.continuation.finish()
                            self.webhookSignal.continuation.finish()
                        }
                    }
                }
            }
        } catch is CancellationError {
            // Shut down on request.
        }
        logger.info("controller stopped")
    }

    func runWorker() async {
        // Only after the caches are complete: deciding on a partial view could e.g. recreate a canary.
        for informer in caches.all { guard await informer.waitUntilSynced() else { return } }
        decidingSince.raise(to: now())
        ProcessMemory.releaseFreed()
        while let key = await queue.next() {
            await reconcile(key)
            queue.done(key)
        }
    }

    /// Turns cache changes into queued Rollout keys. Changes come as coalesced batches of keys: the first list of
    /// 10,000 objects must not leave an event queue of that size behind.
    func routeChanges(from informer: Informer, kind: DependentsIndex.Kind?) async {
        for await batch in informer.changedKeys(replayExisting: true) {
            for (key, change) in batch {
                let (namespace, name) = Informer.location(ofKey: key)
                if let kind {
                    for rollout in dependents.withLock({ $0.rollouts(naming: kind, namespace: namespace, name: name) }) {
                        bump(rollout)
                        queue.add(rollout)
                    }
                } else if change == .present {
                    bump(key)
                    queue.add(key)
                } else {
                    forget(key, namespace: namespace, name: name)
                }
            }
        }
    }

    /// Keeps the index from watched objects to the Rollouts that name them.
    func index(_ key: String, references: RolloutReferences?) {
        let old = work.withLock { w -> RolloutReferences? in
            let previous = w[key]?.references
            w[key, default: RolloutWork()].references = references
            return previous
        }
        guard old != references else { return }
        let name = Informer.location(ofKey: key).name
        dependents.withLock { $0.update(rollout: name, from: old, to: references) }
    }

    func forget(_ key: String, namespace: String, name: String) {
        index(key, references: nil)
        work.withLock { _ = $0.removeValue(forKey: key) }
        queue.forget(key)
        metrics.forget(namespace: namespace, rollout: name)
    }

    /// Looks at every Rollout now and then; those whose inputs did not change since they were last decided, and
    /// that asked for nothing, cost one comparison only.
    func runResync() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.resyncInterval)
            if Task.isCancelled { return }
            resyncPass()
            ProcessMemory.releaseFreed()
        }
    }

    /// One pass over every known Rollout: queues those whose inputs changed since their last decision (or that
    /// are in flight). Idle, settled rollouts cost one comparison each. Returns how many were queued.
    @discardableResult
    public func resyncPass() -> Int {
        let due = work.withLock { all in all.compactMap { key, entry in entry.settledAt == entry.inputVersion ? nil : key } }
        for key in due { queue.add(key) }
        return due.count
    }

    /// Once work quiets down after reconciles (start-up, rollouts moving), hands the freed memory back: checked every
    /// 5 s, trimming only when something was reconciled since the last trim and the queue is empty.
    func runMemoryTrim() async {
        var trimmedAt = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(5))
            let reconciles = counts.reconciles
            if reconciles != trimmedAt, queue.depth == 0 {
                ProcessMemory.releaseFreed()
                trimmedAt = reconciles
            }
        }
    }
}

/// The time a replica began deciding, raised when its caches are complete, whenever it takes the lease, and when the
/// wall clock jumps forward (to the decisions, as if nobody had looked for that long).
final class DecidingSince: Sendable {
    private let date = Mutex<Date?>(nil)
    /// The wall clock and the monotonic clock when last compared.
    private let reading = Mutex<(wall: Date, monotonic: ContinuousClock.Instant)?>(nil)

    /// Compares the wall clock with the monotonic one since the last call: when the wall clock ran ahead by more than
    /// `tolerance` (an NTP step, a VM resumed), raises the time to `wall` and returns the jump.
    func noticeJump(wall: Date, tolerance: TimeInterval = 5) -> TimeInterval? {
        let monotonic = ContinuousClock.now
        let jump = reading.withLock { last -> TimeInterval? in
            defer { last = (wall, monotonic) }
            guard let last else { return nil }
            let elapsed = monotonic - last.monotonic
            let jump = wall.timeIntervalSince(last.wall) - (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            return jump > tolerance ? jump : nil
        }
        if jump != nil, value != nil { raise(to: wall) }
        return jump
    }

    /// Sets it to `date` unless it is already later (the first worker to see the caches complete, a lease taken
    /// after that).
    func raise(to date: Date) {
        self.date.withLock { current in
            if current.map({ $0 < date }) ?? true { current = date }
        }
    }

    var value: Date? { date.withLock { $0 } }

    /// Whether the last status write found the API server unable to take it (no answer, 429, 5xx). While it is, every
    /// decision counts as a fresh start: the progress deadline waits for the grace after the API server is back.
    let statusWritesFailing = Mutex(false)
}
