import FledgeCore
import FledgeKubernetes

/// Which Rollouts name a watched object, so that a change to a Deployment, VirtualService or DestinationRule
/// queues exactly the Rollouts it concerns.
///
/// Kept small because 10,000 Rollouts each name four objects. A Rollout only names objects in its own namespace,
/// so entries hold Rollout names, not keys. Entries are keyed by namespace and name alone, with the kinds as a
/// bit set: by default a Rollout's Deployment, VirtualService and DestinationRule share one name, hence one entry.
/// The canary Deployment is not indexed: it is always `<stable>-canary`, so it is found through its stable name.
struct DependentsIndex: Sendable {
    enum Kind: Sendable { case deployment, virtualService, destinationRule }

    /// The roles an object plays for one Rollout.
    private struct Roles: OptionSet, Sendable {
        let rawValue: UInt8
        static let stableDeployment = Roles(rawValue: 1)
        static let virtualService = Roles(rawValue: 2)
        static let destinationRule = Roles(rawValue: 4)
    }

    private struct Object: Hashable, Sendable {
        var namespace: String
        var name: String
    }

    private enum Dependents: Sendable {
        case one(String, Roles)
        case many([String: Roles])

        func rollouts(with role: Roles) -> [String] {
            switch self {
            case .one(let rollout, let roles): return roles.contains(role) ? [rollout] : []
            case .many(let all): return all.compactMap { $0.value.contains(role) ? $0.key : nil }
            }
        }
    }

    private var entries: [Object: Dependents] = [:]

    /// `namespace/name` keys of the Rollouts that name the object.
    func rollouts(naming kind: Kind, namespace: String, name: String) -> [String] {
        var names: [String]
        switch kind {
        case .deployment:
            names = entries[Object(namespace: namespace, name: name)]?.rollouts(with: .stableDeployment) ?? []
            if name.hasSuffix(RolloutReferences.canarySuffix) {
                let stable = String(name.dropLast(RolloutReferences.canarySuffix.count))
                names += entries[Object(namespace: namespace, name: stable)]?.rollouts(with: .stableDeployment) ?? []
            }
        case .virtualService:
            names = entries[Object(namespace: namespace, name: name)]?.rollouts(with: .virtualService) ?? []
        case .destinationRule:
            names = entries[Object(namespace: namespace, name: name)]?.rollouts(with: .destinationRule) ?? []
        }
        return names.map { Informer.key(namespace: namespace, name: $0) }
    }

    /// Replaces what `rollout` (its name, in `references.namespace`) names: `old` out, `new` in.
    mutating func update(rollout: String, from old: RolloutReferences?, to new: RolloutReferences?) {
        for (object, _) in Self.objects(old) { set(rollout, roles: [], at: object) }
        for (object, roles) in Self.objects(new) { set(rollout, roles: roles, at: object) }
    }

    var count: Int { entries.count }

    /// Sets (or, with no roles, removes) what `rollout` names at `object`.
    private mutating func set(_ rollout: String, roles: Roles, at object: Object) {
        var all: [String: Roles]
        switch entries.removeValue(forKey: object) {
        case nil: all = [:]
        case .one(let existing, let existingRoles): all = [existing: existingRoles]
        case .many(let existing): all = existing
        }
        all[rollout] = roles.isEmpty ? nil : roles
        if all.count == 1, let (only, onlyRoles) = all.first {
            entries[object] = .one(only, onlyRoles)
        } else if !all.isEmpty {
            entries[object] = .many(all)
        }
    }

    private static func objects(_ references: RolloutReferences?) -> [(Object, Roles)] {
        guard let r = references else { return [] }
        var roles: [String: Roles] = [:]
        roles[r.stableDeployment, default: []].insert(.stableDeployment)
        roles[r.virtualService, default: []].insert(.virtualService)
        if let former = r.formerVirtualService { roles[former, default: []].insert(.virtualService) }
        roles[r.destinationRule, default: []].insert(.destinationRule)
        return roles.map { (Object(namespace: r.namespace, name: $0.key), $0.value) }
    }
}
