/// Requests, responses and configuration of Fledge's one HTTP client.
///
/// Every outbound call of the project (Prometheus, the Kubernetes API, webhooks)
/// goes through an `HTTPClient`; the real implementation is `CurlHTTPClient`.

/// An HTTP method.
public struct HTTPMethod: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let get = HTTPMethod(rawValue: "GET")
    public static let head = HTTPMethod(rawValue: "HEAD")
    public static let post = HTTPMethod(rawValue: "POST")
    public static let put = HTTPMethod(rawValue: "PUT")
    public static let patch = HTTPMethod(rawValue: "PATCH")
    public static let delete = HTTPMethod(rawValue: "DELETE")

    public var description: String { rawValue }
}

/// Ordered header fields; lookups ignore case as HTTP requires.
public struct HTTPHeaders: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(name: String, value: String)]

    public init() { fields = [] }
    public init(_ fields: [(String, String)]) { self.fields = fields.map { (name: $0.0, value: $0.1) } }
    public init(dictionaryLiteral elements: (String, String)...) { self.init(elements) }

    /// The first value of a field, or nil.
    public subscript(name: String) -> String? {
        let lowered = name.lowercased()
        return fields.first { $0.name.lowercased() == lowered }?.value
    }

    public mutating func add(_ name: String, _ value: String) { fields.append((name, value)) }

    /// Replaces every value of `name` with one value.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        fields.append((name, value))
    }

    public mutating func remove(_ name: String) {
        let lowered = name.lowercased()
        fields.removeAll { $0.name.lowercased() == lowered }
    }

    public func contains(_ name: String) -> Bool { self[name] != nil }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }
}

public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    public var url: String
    public var headers: HTTPHeaders
    public var body: [UInt8]?
    /// Total time allowed for this request; nil takes the client's default.
    /// `.zero` means no limit (long watches).
    public var timeout: Duration?

    public init(
        method: HTTPMethod = .get, url: String, headers: HTTPHeaders = [:],
        body: [UInt8]? = nil, timeout: Duration? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }

    /// A form-encoded POST (`application/x-www-form-urlencoded`).
    public static func form(url: String, fields: [(String, String)], headers: HTTPHeaders = [:]) -> HTTPRequest {
        var headers = headers
        headers.set("Content-Type", "application/x-www-form-urlencoded")
        let body = fields.map { "\(formEncode($0.0))=\(formEncode($0.1))" }.joined(separator: "&")
        return HTTPRequest(method: .post, url: url, headers: headers, body: Array(body.utf8))
    }
}

/// Percent-encodes a form field as `application/x-www-form-urlencoded` requires.
public func formEncode(_ value: String) -> String { percentEncode(value) }

/// Percent-encodes everything outside RFC 3986's unreserved characters, so the
/// value is safe as a URL path segment, a query value or a form field.
public func percentEncode(_ value: String) -> String {
    var out = ""
    out.reserveCapacity(value.utf8.count)
    for byte in value.utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "_"), UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            out += "%"
            out += String(byte >> 4, radix: 16, uppercase: true)
            out += String(byte & 0xF, radix: 16, uppercase: true)
        }
    }
    return out
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
    public var isSuccess: Bool { (200..<300).contains(status) }
}

/// A response whose body arrives as lines (a Kubernetes watch, a log stream).
///
/// Lines are raw bytes without the line break (`\n` or `\r\n`); a line split
/// across network chunks is delivered whole. Ending the iteration early, or
/// cancelling the consuming task, aborts the transfer.
public struct HTTPStreamingResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var lines: AsyncThrowingStream<[UInt8], any Error>
}

/// Where PEM material comes from.
public enum PEMSource: Sendable, Equatable {
    case file(String)
    case pem([UInt8])
}

public struct TLSOptions: Sendable, Equatable {
    /// CA bundle to verify the server with; nil uses the system's.
    public var certificateAuthority: PEMSource?
    public var clientCertificate: PEMSource?
    public var clientKey: PEMSource?
    /// Turns certificate and host verification off. Logged as a warning on every request.
    public var insecureSkipVerify: Bool

    public init(
        certificateAuthority: PEMSource? = nil, clientCertificate: PEMSource? = nil,
        clientKey: PEMSource? = nil, insecureSkipVerify: Bool = false
    ) {
        self.certificateAuthority = certificateAuthority
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.insecureSkipVerify = insecureSkipVerify
    }
}

public enum HTTPAuthorization: Sendable, Equatable {
    case bearer(String)
    case basic(username: String, password: String)

    public var headerValue: String {
        switch self {
        case .bearer(let token): return "Bearer \(token)"
        case .basic(let username, let password):
            return "Basic \(base64Encode(Array("\(username):\(password)".utf8)))"
        }
    }
}

public struct HTTPClientConfiguration: Sendable {
    public var tls: TLSOptions
    /// Added to every request that carries no Authorization header of its own.
    public var authorization: HTTPAuthorization?
    public var connectTimeout: Duration
    /// Default total time per request; `.zero` means no limit.
    public var timeout: Duration
    /// Responses larger than this fail with `.responseTooLarge` (streams: per line).
    public var maxResponseBytes: Int
    public var userAgent: String
    /// Added to every request that does not set the same field.
    public var defaultHeaders: HTTPHeaders
    /// Ask for gzip/deflate/br bodies. Off by default: on loopback and in-cluster
    /// links compression costs both sides more CPU than it saves.
    public var acceptCompression: Bool

    public init(
        tls: TLSOptions = TLSOptions(), authorization: HTTPAuthorization? = nil,
        connectTimeout: Duration = .seconds(10), timeout: Duration = .seconds(30),
        maxResponseBytes: Int = 64 << 20, userAgent: String = "fledge",
        defaultHeaders: HTTPHeaders = [:], acceptCompression: Bool = false
    ) {
        self.acceptCompression = acceptCompression
        self.tls = tls
        self.authorization = authorization
        self.connectTimeout = connectTimeout
        self.timeout = timeout
        self.maxResponseBytes = maxResponseBytes
        self.userAgent = userAgent
        self.defaultHeaders = defaultHeaders
    }
}

/// The boundary every consumer of HTTP depends on.
public protocol HTTPClient: Sendable {
    /// Sends a request and buffers the whole response, whatever its status.
    /// Throws `HTTPError` for transport failures, never for an HTTP status.
    func send(_ request: HTTPRequest) async throws -> HTTPResponse

    /// Sends a request and returns once the response head has arrived with a
    /// 2xx status; the body follows as lines. A non-2xx status throws
    /// `HTTPError` of kind `.status` carrying the body.
    func stream(_ request: HTTPRequest) async throws -> HTTPStreamingResponse
}

extension HTTPResponse {
    /// Throws `HTTPError.status` unless the status is 2xx.
    public func ensureSuccess(url: String, method: HTTPMethod = .get) throws -> HTTPResponse {
        guard isSuccess else {
            throw HTTPError(kind: .status(status), method: method, url: url, message: "", body: Array(body.prefix(HTTPError.keptBodyBytes)))
        }
        return self
    }
}

private let base64Alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

/// Base64 without Foundation, for Basic credentials.
func base64Encode(_ bytes: [UInt8]) -> String {
    var out = [UInt8]()
    out.reserveCapacity((bytes.count + 2) / 3 * 4)
    var index = 0
    while index < bytes.count {
        let b0 = bytes[index]
        let b1 = index + 1 < bytes.count ? bytes[index + 1] : 0
        let b2 = index + 2 < bytes.count ? bytes[index + 2] : 0
        out.append(base64Alphabet[Int(b0 >> 2)])
        out.append(base64Alphabet[Int((b0 & 0x3) << 4 | b1 >> 4)])
        out.append(index + 1 < bytes.count ? base64Alphabet[Int((b1 & 0xF) << 2 | b2 >> 6)] : UInt8(ascii: "="))
        out.append(index + 2 < bytes.count ? base64Alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
        index += 3
    }
    return String(decoding: out, as: UTF8.self)
}
