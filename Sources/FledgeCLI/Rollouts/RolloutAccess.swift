import FledgeCore
import FledgeJSON
import FledgeKubernetes
import Foundation

/// A Rollout as the server returned it (every field kept, for `-o json|yaml` and patches) and as FledgeCore reads it.
struct FetchedRollout: Sendable {
    var object: JSONValue
    var rollout: Rollout

    init(_ object: JSONValue) throws(CLIError) {
        self.object = object
        do {
            rollout = try Rollout(json: object)
        } catch {
            throw CLIError("the server returned a Rollout Fledge cannot read: \(error)")
        }
    }

    var name: String { rollout.metadata.name }
    var namespace: String { rollout.metadata.namespace ?? "default" }
    var resourceVersion: String? { object[path: ["metadata", "resourceVersion"]]?.stringValue }
    var status: RolloutStatus { rollout.status ?? RolloutStatus() }

    /// Refuses to change a Rollout that is being deleted: whatever is written now never runs.
    func requireNotDeleting(_ what: String) throws(CLIError) {
        guard let since = rollout.metadata.deletionTimestamp else { return }
        throw CLIError(
            "rollout \"\(name)\" in namespace \"\(namespace)\" is being deleted (since \(since); the controller moves its traffic back to stable first), so there is nothing to \(what)")
    }

    /// Whether `status` describes the current spec: the controller has seen `metadata.generation`. Until then the
    /// phase may belong to the previous spec (right after `fledge trigger`).
    var statusIsCurrent: Bool {
        guard let status = rollout.status else { return false }
        guard let generation = rollout.metadata.generation else { return true }
        return (status.observedGeneration ?? 0) >= generation
    }
}

extension Cluster {
    func rollout(_ name: String) async throws(CLIError) -> FetchedRollout {
        let object: JSONValue
        do {
            object = try await client.get(.rollouts, namespace: namespace, name: name)
        } catch {
            throw failure(error, rollout: name)
        }
        return try FetchedRollout(object)
    }

    /// The objects `decide` looks at for `rollout`, read now. Nil when they cannot be read (RBAC, network): callers
    /// then skip what they wanted to predict with the core instead of failing.
    func observed(for rollout: Rollout) async -> Observed? {
        guard let references = rollout.references else { return nil }
        func optional(_ resource: GroupVersionResource, _ name: String) async throws(KubernetesError) -> JSONValue? {
            do {
                return try await client.get(resource, namespace: references.namespace, name: name)
            } catch where error.isNotFound {
                return nil
            }
        }
        do {
            return Observed(
                stableDeployment: try await optional(.deployments, references.stableDeployment),
                canaryDeployment: try await optional(.deployments, references.canaryDeployment),
                virtualService: try await optional(.virtualServices, references.virtualService),
                destinationRule: try await optional(.destinationRules, references.destinationRule))
        } catch {
            return nil
        }
    }

    /// Watches one Rollout until `check` returns a value for it, or `timeout` passes (nil). The current object is
    /// checked first. Network failures are retried (the watch resumes); 401, 403 and a deleted Rollout end it.
    func waitForRollout<T: Sendable>(
        _ name: String, timeout: Duration?, onChange: @escaping @Sendable (FetchedRollout) async throws(CLIError) -> T?
    ) async throws(CLIError) -> T? {
        let client = self.client
        let namespace = self.namespace
        do {
            return try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask {
                    let stream = client.listWatch(
                        .rollouts, namespace: .named(namespace), fieldSelector: "metadata.name=\(name)",
                        options: ListWatchOptions(backoff: Backoff(initial: .milliseconds(200), maximum: .seconds(5)), watchTimeoutSeconds: 60))
                    for try await event in stream {
                        var objects: [JSONValue] = []
                        switch event {
                        case .resync(let items, _):
                            guard !items.isEmpty else { throw CLIError("rollout \"\(name)\" not found in namespace \"\(namespace)\"") }
                            objects = items
                        case .added(let object), .modified(let object): objects = [object]
                        case .deleted: throw CLIError("rollout \"\(name)\" in namespace \"\(namespace)\" was deleted")
                        case .bookmark, .resyncPage: continue
                        case .failure(let error, let retryIn):
                            if error.isUnauthorized || error.isForbidden || error.kind == .configuration { throw self.failure(error, rollout: name) }
                            // Say why nothing moves, then keep watching.
                            StandardError.write("warning: \(self.failure(error, rollout: name).message); retrying in \(RolloutDuration(milliseconds: retryIn.milliseconds))")
                            continue
                        }
                        for object in objects {
                            if let result = try await onChange(try FetchedRollout(object)) { return result }
                        }
                    }
                    return nil
                }
                if let timeout {
                    group.addTask {
                        try await Task.sleep(for: timeout)
                        return nil
                    }
                }
                // The first child to finish decides: a result, a failure, or the timeout (nil).
                let first = try await group.next() ?? nil
                group.cancelAll()
                return first
            }
        } catch let error as CLIError {
            throw error
        } catch is CancellationError {
            return nil
        } catch {
            throw CLIError("\(error)")
        }
    }
}
