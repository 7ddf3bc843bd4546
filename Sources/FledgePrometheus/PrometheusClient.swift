import FledgeHTTP
import FledgeJSON
import Logging

/// A client for Prometheus's HTTP API (`/api/v1/query` and `/api/v1/query_range`).
public struct PrometheusClient: Sendable {
    /// Base URL, e.g. `http://prometheus.monitoring:9090` (a path prefix is kept).
    public let baseURL: String
    public let headers: HTTPHeaders
    /// Total time allowed for each query; nil takes the HTTP client's default.
    public let timeout: Duration?
    private let http: any HTTPClient
    private let logger: Logger

    /// - Parameters:
    ///   - headers: extra headers for every query (tenant ids, `Authorization`…).
    ///     Bearer and basic credentials belong in the HTTP client's configuration.
    ///   - timeout: total time allowed for each query (nil: the HTTP client's default).
    public init(
        baseURL: String, http: any HTTPClient, headers: HTTPHeaders = [:], timeout: Duration? = nil,
        logger: Logger = Logger(label: "fledge.prometheus")
    ) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.http = http
        self.headers = headers
        self.timeout = timeout
        self.logger = logger
    }

    /// Runs an instant query, at `time` (Unix seconds) or now.
    ///
    /// The query travels as a POST form, so PromQL of any length works.
    public func query(_ promql: String, at time: Double? = nil) async throws(PrometheusError) -> QueryResult {
        var fields = [("query", promql)]
        if let time { fields.append(("time", PrometheusTime.format(time))) }
        return try await post("/api/v1/query", fields: fields, promql: promql)
    }

    /// Runs a range query (`/api/v1/query_range`): the query evaluated every `step` seconds from `start` to `end`
    /// (Unix seconds), answered as a matrix. Also a POST form.
    public func queryRange(_ promql: String, start: Double, end: Double, step: Double) async throws(PrometheusError) -> QueryResult {
        // Checked here so the caller gets the field named, not Prometheus's parse error.
        guard step > 0, step.isFinite else {
            throw PrometheusError(kind: .malformedResponse("range query step \(step) must be a positive number of seconds (not sent)"), server: baseURL, query: promql)
        }
        guard start.isFinite, end.isFinite, end >= start else {
            throw PrometheusError(kind: .malformedResponse("range query end \(end) is before start \(start) (not sent)"), server: baseURL, query: promql)
        }
        let fields = [
            ("query", promql), ("start", PrometheusTime.format(start)), ("end", PrometheusTime.format(end)),
            ("step", PrometheusTime.format(step)),
        ]
        return try await post("/api/v1/query_range", fields: fields, promql: promql)
    }

    private func post(_ path: String, fields: [(String, String)], promql: String) async throws(PrometheusError) -> QueryResult {
        var requestHeaders = headers
        requestHeaders.set("Accept", "application/json")
        var request = HTTPRequest.form(url: baseURL + path, fields: fields, headers: requestHeaders)
        request.timeout = timeout
        let response: HTTPResponse
        do {
            response = try await http.send(request)
        } catch let error as HTTPError {
            throw PrometheusError(kind: .transport(error), server: baseURL, query: promql)
        } catch {
            throw PrometheusError(kind: .transport(HTTPError(kind: .cancelled, method: .post, url: request.url, message: "\(error)")), server: baseURL, query: promql)
        }
        do {
            let decoded = try PrometheusResponse.decode(status: response.status, body: response.body)
            for warning in decoded.warnings {
                logger.warning("Prometheus warned about a query", metadata: ["server": "\(baseURL)", "query": "\(promql)", "warning": "\(warning)"])
            }
            return decoded.result
        } catch let kind {
            throw PrometheusError(kind: kind, server: baseURL, query: promql)
        }
    }
}

/// Parsing of the API's JSON envelope, kept apart from IO so it can be tested on any bytes.
public enum PrometheusResponse {
    public struct Decoded: Sendable, Equatable {
        public var result: QueryResult
        public var warnings: [String]
    }

    public static func decode(status: Int, body: [UInt8]) throws(PrometheusError.Kind) -> Decoded {
        let json: JSONValue
        do {
            json = try JSONValue(parsing: body)
        } catch {
            throw .malformedResponse("HTTP \(status), not JSON (\(error.message) at byte \(error.offset)): \(start(of: body))")
        }
        guard case .object = json else { throw .malformedResponse("HTTP \(status), expected a JSON object: \(start(of: body))") }
        switch json["status"]?.stringValue {
        case "success":
            guard (200..<300).contains(status) else {
                throw .malformedResponse("HTTP \(status) with a success body: \(start(of: body))")
            }
        case "error":
            throw .api(errorType: json["errorType"]?.stringValue ?? "unknown", message: json["error"]?.stringValue ?? "(no message)")
        default:
            throw .malformedResponse("HTTP \(status), no \"status\" field: \(start(of: body))")
        }
        guard let data = json["data"], let resultType = data["resultType"]?.stringValue, let result = data["result"] else {
            throw .malformedResponse("missing data.resultType or data.result")
        }
        let warnings = json["warnings"]?.arrayValue?.compactMap(\.stringValue) ?? []
        switch resultType {
        case "vector":
            guard let items = result.arrayValue else { throw .malformedResponse("data.result of a vector is not an array") }
            var samples: [InstantSample] = []
            samples.reserveCapacity(items.count)
            for (i, item) in items.enumerated() {
                samples.append(InstantSample(
                    labels: try labels(item["metric"], at: "data.result[\(i)].metric"),
                    point: try point(item["value"], at: "data.result[\(i)].value")))
            }
            return Decoded(result: .vector(samples), warnings: warnings)
        case "scalar":
            return Decoded(result: .scalar(try point(result, at: "data.result")), warnings: warnings)
        case "matrix":
            guard let items = result.arrayValue else { throw .malformedResponse("data.result of a matrix is not an array") }
            var series: [RangeSeries] = []
            for (i, item) in items.enumerated() {
                guard let values = item["values"]?.arrayValue else {
                    throw .malformedResponse("data.result[\(i)].values is missing")
                }
                var points: [SamplePoint] = []
                for (j, value) in values.enumerated() {
                    points.append(try point(value, at: "data.result[\(i)].values[\(j)]"))
                }
                series.append(RangeSeries(labels: try labels(item["metric"], at: "data.result[\(i)].metric"), points: points))
            }
            return Decoded(result: .matrix(series), warnings: warnings)
        case "string":
            guard let pair = result.arrayValue, pair.count == 2, let time = pair[0].doubleValue, let text = pair[1].stringValue else {
                throw .malformedResponse("data.result of a string is not [time, \"text\"]")
            }
            return Decoded(result: .string(timestamp: time, value: text), warnings: warnings)
        default:
            throw .malformedResponse("unknown resultType \"\(resultType)\"")
        }
    }

    private static func labels(_ value: JSONValue?, at path: String) throws(PrometheusError.Kind) -> [String: String] {
        guard let value else { return [:] }
        guard let object = value.objectValue else { throw .malformedResponse("\(path) is not an object") }
        var labels: [String: String] = [:]
        for (name, labelValue) in object {
            guard let text = labelValue.stringValue else { throw .malformedResponse("\(path).\(name) is not a string") }
            labels[name] = text
        }
        return labels
    }

    private static func point(_ value: JSONValue?, at path: String) throws(PrometheusError.Kind) -> SamplePoint {
        guard let pair = value?.arrayValue, pair.count == 2, let time = pair[0].doubleValue else {
            throw .malformedResponse("\(path) is not [time, \"value\"]")
        }
        guard let text = pair[1].stringValue, let number = parseSampleValue(text) else {
            throw .malformedResponse("\(path) has an unreadable sample value \(pair[1])")
        }
        return SamplePoint(timestamp: time, value: number)
    }

    /// Prometheus's float notation: decimal, `NaN`, `+Inf`, `-Inf`.
    public static func parseSampleValue(_ text: String) -> Double? {
        switch text {
        case "NaN": return .nan
        case "+Inf", "Inf": return .infinity
        case "-Inf": return -.infinity
        default:
            guard let first = text.utf8.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+")
                || first == UInt8(ascii: ".") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first)
            else { return nil }
            return Double(text)
        }
    }

    private static func start(of body: [UInt8]) -> String {
        let text = String(decoding: body.prefix(160), as: UTF8.self).split(whereSeparator: \.isNewline).joined(separator: " ")
        return text.isEmpty ? "(empty body)" : text + (body.count > 160 ? "…" : "")
    }
}
