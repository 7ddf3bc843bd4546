import FledgeJSON
import FledgeKubernetes
import Foundation
import Logging

/// The watch caches the controller reads from: zero API reads per tick in steady state. Compact (objects kept
/// serialized): 10,000 rollouts and their objects must fit the memory budget, and a reconcile reads only four.
public struct Caches: Sendable {
    public let rollouts: Informer
    public let deployments: Informer
    public let virtualServices: Informer
    public let destinationRules: Informer

    /// - Parameter now: the clock the informers note the start of a connection failure with (readiness).
    public init(
        client: KubernetesClient, namespace: NamespaceScope, rolloutSelector: String?, logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        rollouts = Informer(
            client: client, resource: .rollouts, namespace: namespace, labelSelector: rolloutSelector,
            transform: Informer.dropManagedFields, compact: true, logger: logger, now: now)
        // Only what decisions and merge patches need: never written back whole, so trimming loses nothing.
        deployments = Informer(
            client: client, resource: .deployments, namespace: namespace, transform: Caches.trimDeployment, compact: true, logger: logger,
            now: now)
        virtualServices = Informer(
            client: client, resource: .virtualServices, namespace: namespace, transform: Informer.dropManagedFields, compact: true,
            logger: logger, now: now)
        destinationRules = Informer(
            client: client, resource: .destinationRules, namespace: namespace, transform: Informer.dropManagedFields, compact: true,
            logger: logger, now: now)
    }

    /// The cache of `resource` (as a `KubernetesError` names it, e.g. `deployments.apps`), if the controller keeps one.
    public func informer(for resource: String) -> Informer? {
        all.first { $0.resource.description == resource }
    }

    public var all: [Informer] { [rollouts, deployments, virtualServices, destinationRules] }

    public var hasSynced: Bool { all.allSatisfy(\.hasSynced) }

    /// Drops what a Deployment carries that Fledge never reads (managed fields, the last-applied copy of the whole
    /// object, status conditions), so 10,000 of them fit the memory budget.
    public static let trimDeployment: @Sendable (JSONValue) -> JSONValue = { object in
        var object = object
        if object["metadata"]?["managedFields"] != nil { object[path: ["metadata", "managedFields"]] = nil }
        if object["metadata"]?["annotations"]?["kubectl.kubernetes.io/last-applied-configuration"] != nil {
            object[path: ["metadata", "annotations", "kubectl.kubernetes.io/last-applied-configuration"]] = nil
        }
        if object["status"]?["conditions"] != nil { object[path: ["status", "conditions"]] = nil }
        return object
    }
}

extension Informer {
    /// Puts what the API server answered to our own write into the cache, so the next reconcile does not decide
    /// again from the version before it. Skipped when the cache already moved past `replacing` (the watch
    /// delivered a newer version). Safe because our writes are conditional on `replacing`'s resourceVersion.
    func inject(_ written: JSONValue, replacing base: JSONValue?) {
        guard let name = written["metadata"]?["name"]?.stringValue else { return }
        let namespace = written["metadata"]?["namespace"]?.stringValue
        let cached = get(namespace: namespace, name: name)
        let cachedVersion = cached?["metadata"]?["resourceVersion"]
        if let base {
            guard cachedVersion == base["metadata"]?["resourceVersion"] else { return }
        } else if cached != nil {
            return
        }
        apply(.modified(written))
    }

    func remove(_ object: JSONValue) {
        apply(.deleted(object))
    }
}
