/// What went wrong with an HTTP call, and where.
public struct HTTPError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The URL or request could not be used (malformed URL, unsupported scheme).
        case invalidRequest
        /// The host name did not resolve.
        case dnsFailure
        /// Nothing listens on the port.
        case connectionRefused
        /// Connecting failed for another reason (unreachable network, reset).
        case connectionFailed
        case timeout
        /// The TLS handshake failed; `message` says which certificate problem.
        case tls
        /// The server answered with a non-2xx status; `body` keeps its start.
        case status(Int)
        /// The response exceeded the configured cap.
        case responseTooLarge(limit: Int)
        case cancelled
        /// The connection broke during the transfer, or the server sent something unusable.
        case transfer
    }

    /// How much of an error body is kept: enough for a Kubernetes `Status` or a Prometheus error.
    public static let keptBodyBytes = 64 * 1024

    public var kind: Kind
    public var method: HTTPMethod
    public var url: String
    /// libcurl's own explanation, when there is one.
    public var message: String
    /// The start of the response body for `.status` errors.
    public var body: [UInt8]

    public init(kind: Kind, method: HTTPMethod, url: String, message: String, body: [UInt8] = []) {
        self.kind = kind
        self.method = method
        self.url = url
        self.message = message
        self.body = body
    }

    public var summary: String {
        switch kind {
        case .invalidRequest: return "invalid request"
        case .dnsFailure: return "host name did not resolve"
        case .connectionRefused: return "connection refused"
        case .connectionFailed: return "could not connect"
        case .timeout: return "timed out"
        case .tls: return "TLS handshake failed"
        case .status(let code): return "HTTP \(code)"
        case .responseTooLarge(let limit): return "response larger than the \(limit)-byte limit"
        case .cancelled: return "cancelled"
        case .transfer: return "transfer failed"
        }
    }

    public var description: String {
        var text = "\(method) \(url): \(summary)"
        if !message.isEmpty { text += " (\(message))" }
        if case .status = kind, !body.isEmpty {
            let start = String(decoding: body.prefix(200), as: UTF8.self)
                .split(whereSeparator: \.isNewline).joined(separator: " ")
            text += ": \(start)\(body.count > 200 ? "…" : "")"
        }
        return text
    }
}
