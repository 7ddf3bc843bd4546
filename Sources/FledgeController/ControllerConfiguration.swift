import FledgeKubernetes
import Foundation

/// How a controller instance runs. Defaults suit one replica watching every namespace.
public struct ControllerConfiguration: Sendable {
    /// Which namespaces to watch; `.named` shards a large estate across controller instances.
    public var namespace: NamespaceScope = .all
    /// Only Rollouts matching this label selector (another way to shard).
    public var labelSelector: String?
    /// The metrics server for Rollouts that do not name their own (`spec.analysis.prometheus.address`).
    public var prometheusURL: String?
    /// `reporter` label of the built-in Istio queries.
    public var reporter: String = "destination"
    /// Parallel reconciles (a key is never reconciled by two workers at once).
    public var workers: Int = 4
    /// Analysis requests arriving within this window go out as one batch of queries.
    public var analysisBatchWindow: Duration = .milliseconds(100)
    /// Every rollout is looked at this often even without a change; cheap, since unchanged inputs skip `decide`.
    public var resyncInterval: Duration = .seconds(60)
    /// Who this replica is, in the Lease and in Events.
    public var identity: String = ProcessInfo.processInfo.hostName
    /// nil: this replica always writes (a single replica). Otherwise only the lease holder writes.
    public var leaderElection: LeaderElectionConfiguration?
    /// `fieldManager` on writes and the Events' reporting controller.
    public var fieldManager: String = "fledge"
    /// Timeout of one Prometheus query (every Prometheus, also those a Rollout names; `--prometheus-timeout`).
    public var requestTimeout: Duration = .seconds(10)
    /// `/readyz` turns 503 once a cache has been unable to list or watch for this long. Shorter outages (a watch the
    /// server dropped, reconnected within moments) do not make the replica flap.
    public var readinessGrace: Duration = .seconds(30)

    public init() {}
}

public struct LeaderElectionConfiguration: Sendable {
    public var namespace: String
    public var leaseName: String = "fledge-controller"
    /// How long a lease lasts without renewal.
    public var leaseDuration: Duration = .seconds(15)
    /// The leader stops writing when it could not renew for this long, before the lease can pass to another.
    public var renewDeadline: Duration = .seconds(10)
    /// How often to try to acquire or renew.
    public var retryPeriod: Duration = .seconds(2)

    public init(namespace: String, leaseName: String = "fledge-controller") {
        self.namespace = namespace
        self.leaseName = leaseName
    }
}
