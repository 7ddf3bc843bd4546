import FledgeJSON
import FledgeKubernetes

extension CLIError {
    /// A server that speaks the other protocol than the URL's scheme answers in ways that do not say so: an HTTPS
    /// server closes a plain request without a reply, a plain one fails the TLS handshake ("wrong version number").
    static func schemeHint(server: String?, cause: String) -> String {
        guard let server else { return "" }
        if server.hasPrefix("http://"), cause.contains("Empty reply from server") {
            return "; does it serve HTTPS? The URL says http://"
        }
        if server.hasPrefix("https://"), cause.contains("wrong version number") {
            return "; does it serve plain HTTP? The URL says https://"
        }
        return ""
    }

    /// One line a user can act on, from any FledgeKubernetes failure: which server could not be reached, that the
    /// credentials were refused, which verb on which resource RBAC forbids (the server's own words), or the
    /// kubeconfig field that is wrong.
    init(kubernetes error: KubernetesError, server: String? = nil) {
        let target = server.map { " at \($0)" } ?? ""
        switch error.kind {
        case .configuration:
            self.init("kubeconfig: \(error)")
        case .transport:
            let cause = error.httpError.map { http in http.message.isEmpty ? http.summary : "\(http.summary) (\(http.message))" } ?? error.message
            self.init("cannot reach the Kubernetes API server\(target): \(cause)\(Self.schemeHint(server: server, cause: cause))")
        case .api where error.isUnauthorized:
            let detail = error.message.isEmpty ? "" : " (\(error.message))"
            self.init(
                "the Kubernetes API server\(target) rejected the credentials: 401 Unauthorized\(detail); the token is invalid or expired, log in again or check the kubeconfig's user")
        case .api where error.isForbidden:
            // The Status message names the user, the verb, the resource, its API group and the namespace.
            let what = [error.verb, error.resource].compactMap { $0 }.joined(separator: " ")
            let scope = error.namespace.map { " in namespace \"\($0)\"" } ?? ""
            let message = error.message.isEmpty ? "cannot \(what)\(scope)" : error.message
            self.init("forbidden by RBAC: \(message)")
        default:
            self.init("\(error)")
        }
    }
}

extension Cluster {
    /// The CLIError for a failed call on `rollout`; a 404 on the rollout itself says which one and where.
    func failure(_ error: KubernetesError, rollout name: String? = nil) -> CLIError {
        if error.isNotFound, let name, error.resource == GroupVersionResource.rollouts.description {
            // The object is missing, or the whole resource type is (no CRD installed).
            if error.status?[path: ["details", "name"]] == nil, error.message.contains("could not find the requested resource") {
                return CLIError(
                    "the server at \(server) does not serve rollouts.fledge.dev/v1alpha1: is the Fledge CRD installed? (kubectl apply -f deploy/crds/rollouts.fledge.dev.yaml)")
            }
            return CLIError("rollout \"\(name)\" not found in namespace \"\(namespace)\"")
        }
        return CLIError(kubernetes: error, server: server)
    }
}
