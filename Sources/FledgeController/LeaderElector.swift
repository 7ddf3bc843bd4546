import FledgeKubernetes
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Holds a Lease so that only one replica writes. The leader stops writing when it could not renew for
/// `renewDeadline`, which is shorter than the lease, so it has stopped before another replica may take over
/// (Rule 7).
public final class LeaderElector: Service, Sendable {
    public let configuration: LeaderElectionConfiguration
    private let lock: LeaseLock
    private let logger: Logger
    private let onStartedLeading: @Sendable () -> Void
    private let onLeadershipChange: @Sendable (Bool) -> Void

    private struct State {
        var leading = false
        /// When the last successful renewal was sent (before the request, to err on the safe side).
        var renewedAt: ContinuousClock.Instant?
    }
    private let state = Mutex(State())
    private let clock = ContinuousClock()

    public init(
        client: KubernetesClient, configuration: LeaderElectionConfiguration, identity: String, logger: Logger,
        onStartedLeading: @escaping @Sendable () -> Void = {}, onLeadershipChange: @escaping @Sendable (Bool) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.lock = LeaseLock(
            client: client, namespace: configuration.namespace, name: configuration.leaseName, identity: identity,
            leaseDuration: configuration.leaseDuration)
        self.logger = logger
        self.onStartedLeading = onStartedLeading
        self.onLeadershipChange = onLeadershipChange
    }

    /// True while this replica holds the lease and renewed it within `renewDeadline`.
    public var canWrite: Bool {
        state.withLock { s in
            guard s.leading, let renewed = s.renewedAt else { return false }
            return clock.now < renewed.advanced(by: configuration.renewDeadline)
        }
    }

    public var isLeader: Bool { canWrite }

    public func run() async throws {
        await cancelWhenGracefulShutdown { [self] in
            while !Task.isCancelled {
                await attempt()
                try? await Task.sleep(for: configuration.retryPeriod)
            }
        }
        let wasLeading = state.withLock { s in
            defer { s.leading = false }
            return s.leading
        }
        if wasLeading {
            onLeadershipChange(false)
            // Hand over at once instead of making the next leader wait a whole lease. Shutdown has usually cancelled
            // this task already, and a cancelled task's requests are cancelled before they are sent, so the release
            // runs in a task of its own (awaited here; the client's timeout bounds it).
            let lease = "\(configuration.namespace)/\(configuration.leaseName)"
            let release = Task.detached { [lock] in try await lock.release(now: Date()) }
            switch await release.result {
            case .success: logger.info("released the leader lease", metadata: ["lease": "\(lease)"])
            case .failure(let error):
                logger.warning(
                    "could not release the leader lease; the next leader waits for it to expire",
                    metadata: ["lease": "\(lease)", "error": "\(error)"])
            }
        }
    }

    /// One acquire-or-renew round.
    func attempt() async {
        let sentAt = clock.now
        let outcome: LeaseLock.Outcome?
        do {
            outcome = try await lock.tryAcquireOrRenew(now: Date())
        } catch {
            logger.warning("could not acquire or renew the lease", metadata: ["error": "\(error)"])
            outcome = nil
        }
        // A failed round keeps `renewedAt`: the leader keeps writing until `renewDeadline` runs out, not longer.
        guard let outcome else { return }
        let (started, stopped) = state.withLock { s -> (Bool, Bool) in
            let was = s.leading
            s.leading = outcome.isLeader
            if outcome.isLeader { s.renewedAt = sentAt }
            return (!was && outcome.isLeader, was && !outcome.isLeader)
        }
        if started {
            logger.info("became the leader", metadata: ["lease": "\(configuration.namespace)/\(configuration.leaseName)"])
            onLeadershipChange(true)
            onStartedLeading()
        }
        if stopped {
            logger.warning("lost the leader lease", metadata: ["holder": "\(outcome.holder ?? "-")"])
            onLeadershipChange(false)
        }
    }
}
