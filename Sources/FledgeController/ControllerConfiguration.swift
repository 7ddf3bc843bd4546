import Crypto
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
    /// Where the Lease lives: the controller's own namespace, never the one it watches.
    public var namespace: String
    public var leaseName: String = LeaderElectionConfiguration.unshardedLeaseName
    /// How long a lease lasts without renewal.
    public var leaseDuration: Duration = .seconds(15)
    /// The leader stops writing when it could not renew for this long, before the lease can pass to another.
    public var renewDeadline: Duration = .seconds(10)
    /// How often to try to acquire or renew.
    public var retryPeriod: Duration = .seconds(2)
    /// A standby says who holds the lease when the holder changes, and again after this long; a failure that
    /// keeps repeating is logged again after this long.
    public var standbyLogInterval: Duration = .seconds(60)

    public init(namespace: String, leaseName: String = "fledge-controller") {
        self.namespace = namespace
        self.leaseName = leaseName
    }
}

extension LeaderElectionConfiguration {
    /// The Lease of a controller that watches every Rollout.
    public static let unshardedLeaseName = "fledge-controller"

    /// The default Lease of a shard: `fledge-controller` when unsharded, else `fledge-controller-` and ten hex
    /// digits of a SHA-256 of the namespace and the label selector. Shards (`-n`, `-l`) must not share a Lease, or
    /// only one of them would ever write; the replicas of one shard derive the same name. The selector is taken
    /// in a canonical form (requirements sorted), so `a=1,b=2` and `b=2, a=1` are the same shard.
    public static func defaultLeaseName(namespace: NamespaceScope, labelSelector: String?) -> String {
        let watched: String? =
            switch namespace {
            case .named(let name): name
            case .all, .default: nil
            }
        let selector = labelSelector.flatMap(canonicalSelector)
        guard watched != nil || selector != nil else { return unshardedLeaseName }
        let key = "namespace=\(watched ?? "")\nselector=\(selector ?? "")"
        let digest = SHA256.hash(data: Array(key.utf8))
        let hex = digest.prefix(5).map { byte in
            let text = String(byte, radix: 16)
            return byte < 16 ? "0" + text : text
        }.joined()
        return unshardedLeaseName + "-" + hex
    }

    /// nil for a selector that selects everything.
    private static func canonicalSelector(_ text: String) -> String? {
        guard let parsed = try? LabelSelector(parsing: text) else {
            // `fledge run` refuses a selector it cannot parse; anything else is taken as written.
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            return trimmed.isEmpty ? nil : trimmed
        }
        let requirements = Set(parsed.requirements.map { LabelSelector(requirements: [$0]).description })
        return requirements.isEmpty ? nil : requirements.sorted().joined(separator: ",")
    }
}
