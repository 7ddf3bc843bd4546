import FledgeHTTP
import FledgeJSON

/// The one error type of FledgeKubernetes.
///
/// It says what failed (the verb, resource, namespace and name of an API call,
/// or the file and field of a configuration) and keeps the server's own words:
/// for an API error the `Status` object's `reason`, `message` and `code`, for a
/// transport failure the underlying `HTTPError`.
public struct KubernetesError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The API server answered with an error status (usually a `Status` object).
        case api
        /// The request never got an HTTP answer (refused, TLS, timeout, broken connection).
        case transport
        /// A kubeconfig, in-cluster file or credential plugin is missing or wrong.
        case configuration
        /// The server answered 2xx with something that is not the expected JSON.
        case invalidResponse
        /// The caller passed something unusable (an object without a name, a bad selector).
        case invalidArgument
    }

    public var kind: Kind
    /// HTTP status code of an `.api` error (409, 404, 410, 422, …).
    public var code: Int?
    /// The `Status.reason` (`Conflict`, `NotFound`, `AlreadyExists`, `Expired`, `Gone`, `Invalid`, `Forbidden`, …).
    public var reason: String?
    /// The server's `Status.message`, or our explanation for the other kinds.
    public var message: String
    /// `get`, `list`, `create`, `update`, `patch`, `delete`, `watch`, … for API calls.
    public var verb: String?
    /// The resource, e.g. `deployments.apps` or `virtualservices.networking.istio.io`.
    public var resource: String?
    public var namespace: String?
    public var name: String?
    /// For configuration errors: the file that is wrong and the field inside it.
    public var file: String?
    public var field: String?
    /// The whole `Status` object the server sent, when it sent one.
    public var status: JSONValue?
    /// The transport error, for `.transport` errors and for API errors seen by a stream.
    public var httpError: HTTPError?

    public init(
        kind: Kind, code: Int? = nil, reason: String? = nil, message: String,
        verb: String? = nil, resource: String? = nil, namespace: String? = nil, name: String? = nil,
        file: String? = nil, field: String? = nil, status: JSONValue? = nil, httpError: HTTPError? = nil
    ) {
        self.kind = kind
        self.code = code
        self.reason = reason
        self.message = message
        self.verb = verb
        self.resource = resource
        self.namespace = namespace
        self.name = name
        self.file = file
        self.field = field
        self.status = status
        self.httpError = httpError
    }

    static func configuration(_ message: String, file: String?, field: String? = nil) -> KubernetesError {
        KubernetesError(kind: .configuration, message: message, file: file, field: field)
    }

    /// 409 because the `resourceVersion` sent was stale: re-read and retry.
    public var isConflict: Bool { code == 409 && reason != "AlreadyExists" }
    public var isAlreadyExists: Bool { code == 409 && reason == "AlreadyExists" }
    public var isNotFound: Bool { code == 404 }
    /// 410: the requested `resourceVersion` is too old (watch or list must start again).
    public var isGone: Bool { code == 410 || reason == "Expired" || reason == "Gone" }
    /// The requested `resourceVersion` is newer than anything the server has: it lost state (restored from a backup,
    /// restarted empty) or is behind. 504 `Timeout` with the cause `ResourceVersionTooLarge` (older servers: only the
    /// message "Too large resource version"). Like a 410, answered by listing afresh without a resourceVersion.
    public var isResourceVersionTooLarge: Bool {
        let causes = status?["details"]?["causes"]?.arrayValue ?? []
        if causes.contains(where: { $0["reason"]?.stringValue == "ResourceVersionTooLarge" }) { return true }
        return (code == 504 || reason == "Timeout") && message.contains("Too large resource version")
    }
    /// The watch or list cannot continue from its resourceVersion (410 Gone/Expired, or too large): list again.
    public var needsRelist: Bool { isGone || isResourceVersionTooLarge }
    public var isUnauthorized: Bool { code == 401 }
    public var isForbidden: Bool { code == 403 }
    public var isInvalid: Bool { code == 422 }

    public var description: String {
        var text = ""
        if let verb {
            text += verb
            if let resource { text += " \(resource)" }
            if let name {
                text += " \(namespace.map { "\($0)/" } ?? "")\(name)"
            } else if let namespace {
                text += " in namespace \(namespace)"
            }
            text += ": "
        }
        if let file {
            text += file
            if let field { text += ": \(field)" }
            text += ": "
        }
        switch kind {
        case .api:
            var head = "HTTP \(code.map(String.init) ?? "?")"
            if let reason, !reason.isEmpty { head += " \(reason)" }
            text += message.isEmpty ? head : "\(head): \(message)"
        case .transport:
            text += message.isEmpty ? (httpError?.description ?? "transport failed") : message
        default:
            text += message
        }
        return text
    }
}

/// Where an API call was aimed, for error messages.
struct RequestContext: Sendable {
    var verb: String
    var resource: String
    var namespace: String?
    var name: String?

    func error(_ kind: KubernetesError.Kind, _ message: String) -> KubernetesError {
        KubernetesError(kind: kind, message: message, verb: verb, resource: resource, namespace: namespace, name: name)
    }

    func transport(_ error: HTTPError) -> KubernetesError {
        if case .status(let code) = error.kind {
            return apiError(code: code, body: error.body, httpError: error)
        }
        var wrapped = self.error(.transport, error.description)
        wrapped.httpError = error
        return wrapped
    }

    /// Decodes an error answer; a `Status` body keeps its reason, message and code.
    func apiError(code: Int, body: [UInt8], httpError: HTTPError? = nil) -> KubernetesError {
        var error = self.error(.api, "")
        error.code = code
        error.httpError = httpError
        if let status = try? JSONValue(parsing: body), status["kind"]?.stringValue == "Status" {
            error.status = status
            error.reason = status["reason"]?.stringValue
            error.message = status["message"]?.stringValue ?? ""
            if let statusCode = status["code"]?.intValue, statusCode != 0 { error.code = Int(statusCode) }
        } else {
            error.reason = defaultReason(code)
            let text = String(decoding: body.prefix(500), as: UTF8.self)
                .split(whereSeparator: \.isNewline).joined(separator: " ")
            error.message = text
        }
        return error
    }
}

private func defaultReason(_ code: Int) -> String? {
    switch code {
    case 400: return "BadRequest"
    case 401: return "Unauthorized"
    case 403: return "Forbidden"
    case 404: return "NotFound"
    case 405: return "MethodNotAllowed"
    case 409: return "Conflict"
    case 410: return "Gone"
    case 415: return "UnsupportedMediaType"
    case 422: return "Invalid"
    case 429: return "TooManyRequests"
    case 500: return "InternalError"
    case 503: return "ServiceUnavailable"
    case 504: return "Timeout"
    default: return nil
    }
}
