import FledgeKubernetes
import FledgePrometheus

/// What went wrong while executing a decision. Keeps the server's own message.
public enum ControllerError: Error, Sendable, CustomStringConvertible {
    /// A Kubernetes call failed; the error keeps the API server's `Status`.
    case kubernetes(action: String, KubernetesError)
    /// A write went through but reading it back showed something else (Rule 3).
    case readBackMismatch(action: String, detail: String)
    /// An object the action needs is not in the cache (yet).
    case missingObject(action: String, kind: String, name: String)
    /// The lease was lost (or not renewed in time) before the write.
    case notLeader(action: String)
    /// The cluster is in a state Fledge will not change by itself; the message says what a person should do.
    case needsAction(action: String, message: String)

    public var description: String {
        switch self {
        case .kubernetes(let action, let error): return "\(action): \(error)"
        case .readBackMismatch(let action, let detail): return "\(action): read back \(detail)"
        case .missingObject(let action, let kind, let name): return "\(action): \(kind) \(name) not found"
        case .notLeader(let action): return "\(action): not the leader; write skipped"
        case .needsAction(let action, let message): return "\(action): \(message)"
        }
    }

    /// The API server could not take the request at all: no answer, or 429/5xx (down, overloaded, etcd full).
    public var isServerUnavailable: Bool {
        guard case .kubernetes(_, let error) = self else { return false }
        if error.kind == .transport { return true }
        return error.kind == .api && (error.code == 429 || (error.code ?? 0) >= 500)
    }

    public var isConflict: Bool {
        if case .kubernetes(_, let error) = self { return error.isConflict }
        return false
    }
}
