import FledgeCore
import FledgeJSON
import FledgeKubernetes
import Foundation

/// Writes a manual request (`fledge.dev/<kind>: <token>`) and waits for the controller to record what it did
/// with it in `status.requests` (see `ManualRequest` in FledgeCore).
struct ManualRequestRunner {
    let cluster: Cluster
    let name: String
    let kind: ManualRequest
    let wait: RequestWaitOptions
    /// Further annotations written in the same merge patch (the abort reason); `.null` removes one.
    var extraAnnotations: [String: JSONValue] = [:]

    /// A token no earlier request of this Rollout has: the time to the millisecond plus random bits.
    static func freshToken(now: Date = Date()) -> String {
        let millis = Int64((now.timeIntervalSince1970 * 1000).rounded(.down))
        let stamp = Timestamp(seconds: millis / 1000).description.dropLast()  // drop the Z to add milliseconds
        let fraction = String(millis % 1000)
        let random = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        return "\(stamp).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)Z-\(random)"
    }

    /// Exit status: 0 accepted (or written with --no-wait), 1 refused, 2 no answer within the timeout.
    func run() async throws(CLIError) -> Int32 {
        let fetched = try await cluster.rollout(name)
        try fetched.requireNotDeleting(kind == .promoteFull ? "promote" : kind.rawValue)
        let token = Self.freshToken()
        // Ask the core first: a request it would refuse in this phase is refused here, with its reason, and not
        // written. What the controller answers later is what counts; this only spares a pointless write.
        if let observed = await cluster.observed(for: fetched.rollout),
            let predicted = CoreBridge.requestOutcome(kind, token: token, rollout: fetched.rollout, observed: observed, now: Date()),
            !predicted.accepted
        {
            StandardError.write("\(kind.command) refused: \(predicted.message)")
            return 1
        }
        var annotations: JSONObject = [kind.annotation: .string(token)]
        for (key, value) in extraAnnotations.sorted(by: { $0.key < $1.key }) { annotations[key] = value }
        do {
            _ = try await cluster.client.patch(
                .rollouts, namespace: cluster.namespace, name: name, .merge(["metadata": ["annotations": .object(annotations)]]),
                fieldManager: "fledge-cli")
        } catch {
            throw cluster.failure(error, rollout: name)
        }
        let subject = "rollout \"\(name)\" in namespace \"\(cluster.namespace)\""
        if wait.noWait {
            print("\(kind.command) requested for \(subject) (\(kind.annotation)=\(token))")
            return 0
        }
        let kind = self.kind
        let record = try await cluster.waitForRollout(name, timeout: wait.timeout) { fetched in
            fetched.status.requests.first { $0.kind == kind && $0.token == token }
        }
        guard let record else {
            StandardError.write(
                "no answer from the Fledge controller within \(RolloutDuration(milliseconds: wait.timeout.milliseconds)): the \(kind.command) request stays pending on \(subject) (\(kind.annotation)=\(token)); is the controller running?")
            return 2
        }
        if record.accepted {
            print("\(kind.command) accepted: \(record.message)")
            return 0
        }
        StandardError.write("\(kind.command) refused: \(record.message)")
        return 1
    }
}

extension ManualRequest {
    /// The request in the words of the command that asks for it: `promote --full` for `promote-full`.
    var command: String { self == .promoteFull ? "promote --full" : rawValue }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
