import FledgeJSON

/// The one error type of the sandbox: either an API error answered to the client as a Kubernetes
/// `Status` (with the real server's reason and message), or a problem starting or seeding the server.
public enum SandboxError: Error, Sendable, CustomStringConvertible {
    /// An API failure: HTTP code, Status reason, message, and `details`.
    case status(code: Int, reason: String, message: String, details: JSONValue?)
    /// A manifest could not be loaded: the file (or "<input>") and what is wrong.
    case manifest(source: String, message: String)
    /// The server could not start (TLS material, ...).
    case startup(String)
    /// The server could not listen on its address: the system's reason, and whether another socket holds the port.
    case cannotListen(host: String, port: Int, reason: String, addressInUse: Bool)

    public var description: String {
        switch self {
        case .status(let code, let reason, let message, _): return "\(message) (\(reason), HTTP \(code))"
        case .manifest(let source, let message): return "\(source): \(message)"
        case .startup(let message): return "sandbox could not start: \(message)"
        case .cannotListen(let host, let port, let reason, _): return "sandbox could not start: cannot listen on \(host):\(port): \(reason)"
        }
    }

    /// The HTTP status code an API failure is answered with.
    public var code: Int {
        if case .status(let code, _, _, _) = self { return code }
        return 500
    }

    /// The Kubernetes `Status` object for this error.
    public var statusObject: JSONValue {
        switch self {
        case .status(let code, let reason, let message, let details):
            var object: JSONValue = [
                "kind": "Status", "apiVersion": "v1", "metadata": [:], "status": "Failure",
                "message": .string(message), "reason": .string(reason),
            ]
            if let details { object["details"] = details }
            object["code"] = .int(Int64(code))
            return object
        default:
            return [
                "kind": "Status", "apiVersion": "v1", "metadata": [:], "status": "Failure",
                "message": .string(description), "reason": "InternalError", "code": 500,
            ]
        }
    }

    static func details(_ name: String?, _ resource: GroupResource) -> JSONValue {
        var details: JSONValue = [:]
        if let name { details["name"] = .string(name) }
        if !resource.group.isEmpty { details["group"] = .string(resource.group) }
        details["kind"] = .string(resource.resource)
        return details
    }

    static func notFound(_ resource: GroupResource, _ name: String) -> SandboxError {
        .status(
            code: 404, reason: "NotFound", message: "\(resource) \"\(name)\" not found",
            details: details(name, resource))
    }

    static func alreadyExists(_ resource: GroupResource, _ name: String) -> SandboxError {
        .status(
            code: 409, reason: "AlreadyExists", message: "\(resource) \"\(name)\" already exists",
            details: details(name, resource))
    }

    static func conflict(_ resource: GroupResource, _ name: String) -> SandboxError {
        .status(
            code: 409, reason: "Conflict",
            message: "Operation cannot be fulfilled on \(resource) \"\(name)\": the object has been modified; please apply your changes to the latest version and try again",
            details: details(name, resource))
    }

    static func badRequest(_ message: String) -> SandboxError {
        .status(code: 400, reason: "BadRequest", message: message, details: nil)
    }

    /// 422 Invalid. `detailsKind` (and `group`) go into the details when they differ from the message's kind, as
    /// where the real server names a resource there.
    static func invalid(
        kind: String, name: String, causes: [(String, String)], group: String = "", detailsKind: String? = nil
    ) -> SandboxError {
        let summary = causes.map { (cause: (String, String)) -> String in "\(cause.0): \(cause.1)" }.joined(separator: ", ")
        let listed: String = causes.count == 1 ? summary : "[\(summary)]"
        let message = "\(kind) \"\(name)\" is invalid: \(listed)"
        var causeObjects: [JSONValue] = []
        for (field, message) in causes {
            var cause: JSONObject = [:]
            cause["reason"] = "FieldValueInvalid"
            cause["message"] = .string(message)
            cause["field"] = .string(field)
            causeObjects.append(.object(cause))
        }
        return .status(
            code: 422, reason: "Invalid", message: message,
            details: group.isEmpty
                ? ["name": .string(name), "kind": .string(detailsKind ?? kind), "causes": .array(causeObjects)]
                : ["name": .string(name), "group": .string(group), "kind": .string(detailsKind ?? kind), "causes": .array(causeObjects)])
    }

    static func unsupportedPatch(_ given: String, custom: Bool) -> SandboxError {
        var types = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
        if !custom { types.append("application/strategic-merge-patch+json") }
        return unsupportedMediaType(given, accepted: types)
    }

    /// 415 for a body the sandbox cannot read, naming its type (the real server's message, plus the type). The
    /// sandbox reads JSON and YAML only: protobuf, which kubectl 1.32 sends for built-in types it creates itself
    /// (`kubectl create namespace|configmap|deployment …`), gets the way round it too; client-go does not retry a
    /// protobuf request as JSON after a 415 (it does so for CBOR only).
    static func unsupportedMediaType(_ given: String, accepted: [String], detail: String? = nil) -> SandboxError {
        var message = "the body of the request was in an unknown format (\(given.isEmpty ? "no Content-Type" : given)) - accepted media types include: \(accepted.joined(separator: ", "))"
        if given == "application/vnd.kubernetes.protobuf" {
            message += "; " + (detail ?? "the Fledge sandbox reads protobuf, which kubectl sends for built-in objects it builds itself, only when"
                + " creating \(ProtobufObjects.readableKinds)")
                + ": send it as YAML instead, e.g. kubectl create … --dry-run=client -o yaml | kubectl create -f -"
        }
        return .status(code: 415, reason: "UnsupportedMediaType", message: message, details: nil)
    }

    static func unprocessable(_ message: String) -> SandboxError {
        .status(code: 422, reason: "Invalid", message: message, details: nil)
    }

    static func methodNotAllowed(_ message: String) -> SandboxError {
        .status(code: 405, reason: "MethodNotAllowed", message: message, details: nil)
    }

    static func gone(_ message: String) -> SandboxError {
        .status(code: 410, reason: "Expired", message: message, details: nil)
    }

    /// A list or watch from a resourceVersion the server has not reached (it lost state: restored from a backup,
    /// restarted empty): the real server's 504 `Timeout` with the cause `ResourceVersionTooLarge`, which client-go's
    /// reflector answers by listing again without a resourceVersion.
    static func resourceVersionTooLarge(_ requested: Int64, current: Int64) -> SandboxError {
        .status(
            code: 504, reason: "Timeout", message: "Timeout: Too large resource version: \(requested), current: \(current)",
            details: ["causes": [["reason": "ResourceVersionTooLarge", "message": "Too large resource version"]], "retryAfterSeconds": 1])
    }

    static func internalError(_ message: String) -> SandboxError {
        .status(code: 500, reason: "InternalError", message: message, details: nil)
    }

    static let unauthorized = SandboxError.status(code: 401, reason: "Unauthorized", message: "Unauthorized", details: nil)

    static func pathNotFound(_ path: String) -> SandboxError {
        .status(code: 404, reason: "NotFound", message: "the server could not find the requested resource", details: nil)
    }
}
