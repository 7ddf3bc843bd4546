import FledgeCore
import FledgeJSON
import FledgeKubernetes

/// One Event about a Rollout, from `events.k8s.io/v1` (what the controller's `recordEvent` writes, `regarding`) or
/// core `v1` (`involvedObject`), which a real API server serves from the same storage.
struct EventLine: Sendable {
    var key: String
    var time: Timestamp?
    /// Seconds with their fraction, then the resourceVersion: Events of one reconcile share a second.
    var order: (Double, Int64)
    var type: String
    var reason: String
    var message: String
    var count: Int

    /// Reads either API version's Event.
    init?(_ event: JSONValue) {
        guard let summary = EventSummary(event) else { return nil }
        key = summary.key
        let text = summary.times.first { Timestamp(rfc3339: $0) != nil }
        time = text.flatMap { Timestamp(rfc3339: $0) }
        var fraction = 0.0
        if let text, let dot = text.firstIndex(of: ".") {
            let digits = text[text.index(after: dot)...].prefix { $0.isNumber }
            fraction = Double("0." + digits) ?? 0
        }
        order = (Double(time?.seconds ?? 0) + fraction, summary.resourceVersion)
        type = summary.type
        reason = summary.reason
        message = summary.message
        count = summary.count
    }
}

extension Cluster {
    /// The Rollout's Events, oldest first, at most `limit`; a failure (RBAC may allow Rollouts but not Events) is
    /// returned, not thrown, so the status still shows.
    func events(for rollout: FetchedRollout, limit: Int = 10) async -> Result<[EventLine], CLIError> {
        let uid = rollout.rollout.metadata.uid
        var lines: [String: EventLine] = [:]
        var failure: CLIError?
        var answered = false
        for (resource, field) in [(GroupVersionResource.events, "regarding"), (.coreEvents, "involvedObject")] {
            let selector = "\(field).kind=Rollout,\(field).name=\(rollout.name)"
            let items: [JSONValue]
            do {
                items = try await listEvents(resource, namespace: rollout.namespace, fieldSelector: selector)
            } catch {
                failure = failure ?? CLIError(kubernetes: error, server: server)
                continue
            }
            answered = true
            for item in items {
                let about = item[field]
                guard about?["kind"]?.stringValue == "Rollout", about?["name"]?.stringValue == rollout.name else { continue }
                // An Event about an earlier Rollout of the same name has another uid.
                if let uid, let theirs = about?["uid"]?.stringValue, !theirs.isEmpty, theirs != uid { continue }
                if let line = EventLine(item) { lines[line.key] = line }
            }
        }
        if !answered, let failure { return .failure(failure) }
        let sorted = lines.values.sorted { ($0.order.0, $0.order.1, $0.key) < ($1.order.0, $1.order.1, $1.key) }
        return .success(Array(sorted.suffix(limit)))
    }

    private func listEvents(_ resource: GroupVersionResource, namespace: String, fieldSelector: String) async throws(KubernetesError) -> [JSONValue] {
        do {
            return try await client.listAll(resource, namespace: .named(namespace), fieldSelector: fieldSelector).items
        } catch where error.code == 400 {
            // A server that does not index this field: filter here instead.
            return try await client.listAll(resource, namespace: .named(namespace)).items
        }
    }
}
