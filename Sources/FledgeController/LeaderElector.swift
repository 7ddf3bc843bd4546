import FledgeKubernetes
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Holds a Lease so that only one replica writes. The leader stops writing when it could not renew for
/// `renewDeadline`, which is shorter than the lease, so it has stopped before another replica may take over
/// (Rule 7). At that moment it also steps down: `fledge_leader` goes to 0, it logs why once, and it goes back to
/// acquiring like any standby.
public final class LeaderElector: Service, Sendable {
    public let configuration: LeaderElectionConfiguration
    public let identity: String
    private let lock: LeaseLock
    private let logger: Logger
    private let now: @Sendable () -> ContinuousClock.Instant
    private let onStartedLeading: @Sendable () -> Void
    private let onLeadershipChange: @Sendable (Bool) -> Void

    private struct State {
        var leading = false
        /// When the last successful renewal was sent (before the request, to err on the safe side).
        var renewedAt: ContinuousClock.Instant?
        /// The last failed round's error, until a round succeeds.
        var failure: String?
        /// The holder a standby last reported, and when (the report repeats after `standbyLogInterval`).
        var reportedHolder: String?
        var holderReportedAt: ContinuousClock.Instant?
        /// The failure last logged, and when (a repeating failure is logged again after `standbyLogInterval`).
        var reportedFailure: String?
        var failureReportedAt: ContinuousClock.Instant?
    }
    private let state = Mutex(State())

    /// - Parameter now: the clock deciding the renew deadline (tests move it by hand).
    public init(
        client: KubernetesClient, configuration: LeaderElectionConfiguration, identity: String, logger: Logger,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now },
        onStartedLeading: @escaping @Sendable () -> Void = {}, onLeadershipChange: @escaping @Sendable (Bool) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.identity = identity
        self.lock = LeaseLock(
            client: client, namespace: configuration.namespace, name: configuration.leaseName, identity: identity,
            leaseDuration: configuration.leaseDuration)
        self.logger = logger
        self.now = now
        self.onStartedLeading = onStartedLeading
        self.onLeadershipChange = onLeadershipChange
    }

    /// `namespace/name` of the Lease.
    public var lease: String { "\(configuration.namespace)/\(configuration.leaseName)" }

    /// True while this replica holds the lease and renewed it within `renewDeadline`.
    public var canWrite: Bool {
        state.withLock { s in
            guard s.leading, let renewed = s.renewedAt else { return false }
            return now() < renewed.advanced(by: configuration.renewDeadline)
        }
    }

    public var isLeader: Bool { canWrite }

    public func run() async throws {
        logger.info("electing a leader through a Lease", metadata: ["lease": "\(lease)", "identity": "\(identity)"])
        await cancelWhenGracefulShutdown { [self] in
            while !Task.isCancelled {
                await attempt()
                try? await Task.sleep(for: nextRoundDelay())
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

    /// `retryPeriod`, but a leader whose renew deadline comes sooner tries (and if need be steps down) at the
    /// deadline, so that `fledge_leader` drops when `canWrite` does, not up to a retry period later.
    func nextRoundDelay() -> Duration {
        let at = now()
        return state.withLock { s in
            guard s.leading, let renewed = s.renewedAt else { return configuration.retryPeriod }
            return max(.zero, min(configuration.retryPeriod, renewed.advanced(by: configuration.renewDeadline) - at))
        }
    }

    private struct RoundFailure: Error {
        var message: String
    }

    /// One acquire-or-renew round. A leader's round ends at its renew deadline at the latest, so that it steps
    /// down when it stops being allowed to write, not whenever a hung request gives up.
    func attempt() async {
        let sentAt = now()
        let deadline = state.withLock { s in s.leading ? s.renewedAt?.advanced(by: configuration.renewDeadline) : nil }
        let result: Result<LeaseLock.Outcome, RoundFailure>
        if let deadline, deadline <= sentAt {
            // Already past it (the previous round failed just before): no request can make this round count.
            result = .failure(
                RoundFailure(message: state.withLock { $0.failure } ?? "not renewed within the renew deadline (\(Self.seconds(configuration.renewDeadline)))"))
        } else {
            result = await round(until: deadline.map { $0 - sentAt })
        }
        // Shutdown: `run` steps down and releases the lease.
        if Task.isCancelled { return }
        switch result {
        case .success(let outcome): succeeded(outcome, sentAt: sentAt)
        case .failure(let failure): failed(failure.message)
        }
    }

    private func round(until remaining: Duration?) async -> Result<LeaseLock.Outcome, RoundFailure> {
        let lock = self.lock
        @Sendable func send() async -> Result<LeaseLock.Outcome, RoundFailure> {
            do {
                return .success(try await lock.tryAcquireOrRenew(now: Date()))
            } catch {
                return .failure(RoundFailure(message: "\(error)"))
            }
        }
        guard let remaining else { return await send() }
        let renewDeadline = configuration.renewDeadline
        return await withTaskGroup(of: Result<LeaseLock.Outcome, RoundFailure>?.self) { group in
            group.addTask { await send() }
            group.addTask {
                try? await Task.sleep(for: remaining)
                return nil
            }
            let first = await group.next() ?? nil
            // Cancelling the request aborts its transfer.
            group.cancelAll()
            if let first { return first }
            let earlier = state.withLock { $0.failure }.map { "; before that: \($0)" } ?? ""
            return .failure(RoundFailure(message: "the API server did not answer within the renew deadline (\(Self.seconds(renewDeadline)))\(earlier)"))
        }
    }

    private func succeeded(_ outcome: LeaseLock.Outcome, sentAt: ContinuousClock.Instant) {
        let at = now()
        let interval = configuration.standbyLogInterval
        let (started, stopped, reportHolder) = state.withLock { s -> (Bool, Bool, Bool) in
            let was = s.leading
            s.leading = outcome.isLeader
            s.failure = nil
            s.reportedFailure = nil
            if outcome.isLeader {
                s.renewedAt = sentAt
                s.reportedHolder = nil
                s.holderReportedAt = nil
                return (!was, false, false)
            }
            // nil: another candidate won a race for the lease just now; the next round says who.
            guard let holder = outcome.holder else { return (false, was, false) }
            let due = s.reportedHolder != holder || s.holderReportedAt.map { at >= $0.advanced(by: interval) } ?? true
            if due {
                s.reportedHolder = holder
                s.holderReportedAt = at
            }
            return (false, was, due)
        }
        if started {
            logger.info("became the leader", metadata: ["lease": "\(lease)"])
            onLeadershipChange(true)
            onStartedLeading()
        }
        if stopped {
            logger.warning("lost the leader lease to \(outcome.holder ?? "another replica")", metadata: ["lease": "\(lease)", "holder": "\(outcome.holder ?? "-")"])
            onLeadershipChange(false)
        }
        if reportHolder, let holder = outcome.holder {
            if holder.isEmpty {
                logger.info("waiting for the leader lease: nobody holds it", metadata: ["lease": "\(lease)"])
            } else {
                logger.info("waiting for the leader lease, held by \(holder)", metadata: ["lease": "\(lease)", "holder": "\(holder)"])
            }
        }
    }

    private func failed(_ message: String) {
        let at = now()
        let interval = configuration.standbyLogInterval
        enum Report { case lost(since: Duration), failure, none }
        let report = state.withLock { s -> Report in
            s.failure = message
            if s.leading, let renewed = s.renewedAt, at >= renewed.advanced(by: configuration.renewDeadline) {
                // The same rule as `canWrite`: past the renew deadline this replica no longer writes, so it no longer leads.
                s.leading = false
                s.reportedFailure = message
                s.failureReportedAt = at
                return .lost(since: at - renewed)
            }
            guard s.reportedFailure != message || s.failureReportedAt.map({ at >= $0.advanced(by: interval) }) ?? true else { return .none }
            s.reportedFailure = message
            s.failureReportedAt = at
            return .failure
        }
        switch report {
        case .lost(let since):
            logger.warning("lost the leader lease (last renewed \(Self.seconds(since)) ago): \(message)", metadata: ["lease": "\(lease)"])
            onLeadershipChange(false)
        case .failure:
            logger.warning("could not acquire or renew the leader lease", metadata: ["lease": "\(lease)", "error": "\(message)"])
        case .none:
            break
        }
    }

    /// `12.3 s`.
    static func seconds(_ duration: Duration) -> String {
        let parts = duration.components
        let value = Double(parts.seconds) + Double(parts.attoseconds) / 1e18
        return String(format: "%.1f s", value)
    }
}
