import FledgeHTTP

/// Why a Prometheus query gave no answer. Keeps Prometheus's own message.
public struct PrometheusError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Error, Sendable {
        /// The server could not be reached or the transfer failed.
        case transport(HTTPError)
        /// Prometheus answered `"status": "error"` with its `errorType` and `error`.
        case api(errorType: String, message: String)
        /// The answer was not the JSON the API documents (an HTML error page, truncated JSON…).
        case malformedResponse(String)
    }

    public var kind: Kind
    /// The Prometheus base URL.
    public var server: String
    public var query: String?

    public init(kind: Kind, server: String, query: String? = nil) {
        self.kind = kind
        self.server = server
        self.query = query
    }

    /// No answer came from the server (refused, timed out, TLS, connection broken): its other queries would fare
    /// no better right now.
    public var isTransport: Bool {
        if case .transport = kind { return true }
        return false
    }

    public var description: String {
        let subject = "Prometheus at \(server)"
        let about = query.map { " (query: \($0))" } ?? ""
        switch kind {
        case .transport(let error):
            var text = "\(subject): \(error.summary)"
            if !error.message.isEmpty { text += " (\(error.message))" }
            return text
        case .api(let errorType, let message):
            return "\(subject) rejected the query: \(errorType): \(message)\(about)"
        case .malformedResponse(let detail):
            return "\(subject) sent an unusable answer: \(detail)\(about)"
        }
    }
}
