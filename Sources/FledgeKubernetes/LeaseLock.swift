import FledgeJSON
import Foundation
import Synchronization

/// Leader election over a `coordination.k8s.io/v1` Lease, with client-go's semantics:
///
/// - A lease held by someone else counts as expired only when its record has not
///   changed for `leaseDuration` as observed by THIS process's clock (so clock
///   skew between replicas cannot hand the lease over early).
/// - Writes are conditional on the resourceVersion read; a conflict means another
///   candidate won the race, not an error.
/// - The holder should stop acting as leader at `validUntil` minus a margin
///   (renew well before `leaseDuration` runs out).
public final class LeaseLock: Sendable {
    public let client: KubernetesClient
    public let namespace: String
    public let name: String
    public let identity: String
    public let leaseDuration: Duration

    private struct Observation {
        var record: JSONValue?
        var observedAt: Date?
    }
    private let observation = Mutex(Observation())

    public init(client: KubernetesClient, namespace: String, name: String, identity: String, leaseDuration: Duration = .seconds(15)) {
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.leaseDuration = leaseDuration
    }

    public struct Outcome: Sendable {
        /// Whether this identity holds the lease now.
        public var isLeader: Bool
        /// Who holds it (nil or empty: nobody).
        public var holder: String?
        /// For the leader: when the lease runs out unless renewed (local clock).
        public var validUntil: Date?
        public var lease: Lease?
    }

    private var durationSeconds: Double {
        let parts = leaseDuration.components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }

    /// Acquires the lease if free or expired, renews it if already ours, and
    /// otherwise reports who holds it.
    public func tryAcquireOrRenew(now: Date) async throws(KubernetesError) -> Outcome {
        let nowText = formatRFC3339(now, microseconds: true)
        // Whole seconds from 1 to a year: never traps on an infinite or huge duration (NaN gives 1).
        let seconds = Int64(min(max(1, durationSeconds.rounded(.up)), 366 * 86_400))
        let existing: JSONValue
        do {
            existing = try await client.get(.leases, namespace: namespace, name: name)
        } catch where error.isNotFound {
            let lease: JSONValue = [
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": ["name": .string(name), "namespace": .string(namespace)],
                "spec": [
                    "holderIdentity": .string(identity), "leaseDurationSeconds": .int(seconds),
                    "acquireTime": .string(nowText), "renewTime": .string(nowText), "leaseTransitions": 0,
                ],
            ]
            do {
                let created = try await client.create(.leases, namespace: namespace, lease)
                remember(created, at: now)
                return Outcome(isLeader: true, holder: identity, validUntil: now.addingTimeInterval(durationSeconds), lease: Lease(created))
            } catch where error.isAlreadyExists || error.isConflict {
                return Outcome(isLeader: false, holder: nil, validUntil: nil, lease: nil)
            }
        }

        var lease = Lease(existing)
        let holder = lease.holderIdentity ?? ""
        let observedAt = observe(existing, at: now)
        let heldByOther = !holder.isEmpty && holder != identity
        if heldByOther {
            let duration = Double(lease.leaseDurationSeconds ?? Int64(durationSeconds))
            if observedAt.addingTimeInterval(duration) > now {
                return Outcome(isLeader: false, holder: holder, validUntil: nil, lease: lease)
            }
        }
        if holder == identity {
            lease.renewTime = nowText
        } else {
            lease.holderIdentity = identity
            lease.acquireTime = nowText
            lease.renewTime = nowText
            lease.leaseTransitions = (lease.leaseTransitions ?? 0) + 1
        }
        lease.leaseDurationSeconds = seconds
        do {
            let updated = try await client.update(.leases, namespace: namespace, lease.object)
            remember(updated, at: now)
            return Outcome(isLeader: true, holder: identity, validUntil: now.addingTimeInterval(durationSeconds), lease: Lease(updated))
        } catch where error.isConflict {
            return Outcome(isLeader: false, holder: nil, validUntil: nil, lease: nil)
        }
    }

    /// Gives the lease up (if ours) so another replica can take over at once.
    public func release(now: Date) async throws(KubernetesError) {
        let existing: JSONValue
        do {
            existing = try await client.get(.leases, namespace: namespace, name: name)
        } catch where error.isNotFound {
            return
        }
        var lease = Lease(existing)
        guard lease.holderIdentity == identity else { return }
        lease.holderIdentity = nil
        lease.leaseDurationSeconds = 1
        lease.renewTime = formatRFC3339(now, microseconds: true)
        do {
            let updated = try await client.update(.leases, namespace: namespace, lease.object)
            remember(updated, at: now)
        } catch where error.isConflict {
            // Someone else changed it: it is no longer ours to release.
        }
    }

    /// When the lease's spec was first seen in its current form (local clock).
    private func observe(_ lease: JSONValue, at now: Date) -> Date {
        observation.withLock { state in
            let spec = lease["spec"]
            if state.record != spec || state.observedAt == nil {
                state.record = spec
                state.observedAt = now
            }
            return state.observedAt!
        }
    }

    private func remember(_ lease: JSONValue, at now: Date) {
        observation.withLock { $0 = Observation(record: lease["spec"], observedAt: now) }
    }
}
