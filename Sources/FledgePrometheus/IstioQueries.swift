/// The built-in Istio queries, as PromQL templates.
///
/// Variables, written `{{name}}` (spaces inside the braces allowed):
/// - `{{namespace}}`: the workload's namespace (`destination_workload_namespace`);
/// - `{{workload}}`: the Deployment name (`destination_workload`);
/// - `{{window}}`: a PromQL duration, e.g. `1m` (custom metrics may call it `{{interval}}`);
/// - `{{reporter}}`: which proxy reports, `destination` by default (the server side,
///   as Flagger's and Kiali's queries do).
///
/// They are Flagger's canonical Istio queries, with an exact `destination_workload`
/// match instead of a regular expression.
public enum IstioQueries {
    /// Non-5xx requests as a percentage of all requests.
    public static let successRateTemplate = """
        sum(rate(istio_requests_total{reporter="{{reporter}}",destination_workload_namespace="{{namespace}}",destination_workload="{{workload}}",response_code!~"5.*"}[{{window}}])) \
        / sum(rate(istio_requests_total{reporter="{{reporter}}",destination_workload_namespace="{{namespace}}",destination_workload="{{workload}}"}[{{window}}])) * 100
        """

    /// A latency percentile in milliseconds; `{{quantile}}` is e.g. `0.99`.
    public static let latencyTemplate = """
        histogram_quantile({{quantile}}, sum(rate(istio_request_duration_milliseconds_bucket{reporter="{{reporter}}",destination_workload_namespace="{{namespace}}",destination_workload="{{workload}}"}[{{window}}])) by (le))
        """

    /// Requests in the window, so analysis can tell "no traffic" from "bad traffic".
    public static let requestVolumeTemplate = """
        sum(increase(istio_requests_total{reporter="{{reporter}}",destination_workload_namespace="{{namespace}}",destination_workload="{{workload}}"}[{{window}}]))
        """

    public static func successRate(namespace: String, workload: String, window: String, reporter: String = "destination") throws(PromQLTemplate.Error) -> String {
        try PromQLTemplate.render(successRateTemplate, labels: ["namespace": namespace, "workload": workload, "reporter": reporter], window: window)
    }

    public static func latency(quantile: Double, namespace: String, workload: String, window: String, reporter: String = "destination") throws(PromQLTemplate.Error) -> String {
        guard quantile > 0, quantile < 1 else { throw PromQLTemplate.Error(message: "quantile \(quantile) is not between 0 and 1") }
        return try PromQLTemplate.render(
            latencyTemplate, labels: ["namespace": namespace, "workload": workload, "reporter": reporter],
            window: window, raw: ["quantile": "\(quantile)"])
    }

    public static func requestVolume(namespace: String, workload: String, window: String, reporter: String = "destination") throws(PromQLTemplate.Error) -> String {
        try PromQLTemplate.render(requestVolumeTemplate, labels: ["namespace": namespace, "workload": workload, "reporter": reporter], window: window)
    }
}

/// Fills `{{variable}}` placeholders in PromQL.
public enum PromQLTemplate {
    public struct Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// - Parameters:
    ///   - labels: values placed inside quoted label matchers; escaped for PromQL strings.
    ///   - window: a PromQL duration, available as `{{window}}` and `{{interval}}`.
    ///   - raw: values inserted as they are (numbers).
    public static func render(_ template: String, labels: [String: String], window: String, raw: [String: String] = [:]) throws(Error) -> String {
        guard isDuration(window) else {
            throw Error(message: "window \"\(window)\" is not a PromQL duration such as 30s, 1m or 1h30m")
        }
        var values = raw
        for (name, value) in labels { values[name] = escapeLabelValue(value) }
        values["window"] = window
        values["interval"] = window
        var output = ""
        var rest = template[...]
        while let open = rest.range(of: "{{") {
            output += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw Error(message: "unclosed \"{{\" in query template")
            }
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters()
            guard let value = values[name] else {
                let known = values.keys.sorted().joined(separator: ", ")
                throw Error(message: "unknown template variable {{\(name)}} (known: \(known))")
            }
            output += value
            rest = rest[close.upperBound...]
        }
        output += rest
        return output
    }

    /// PromQL duration: one or more number+unit pairs (ms, s, m, h, d, w, y).
    public static func isDuration(_ text: String) -> Bool {
        var rest = Substring(text)
        guard !rest.isEmpty else { return false }
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty else { return false }
            rest = rest.dropFirst(digits.count)
            if rest.hasPrefix("ms") {
                rest = rest.dropFirst(2)
            } else if let unit = rest.first, "smhdwy".contains(unit) {
                rest = rest.dropFirst()
            } else {
                return false
            }
        }
        return true
    }

    /// Escapes a value for a double-quoted PromQL string.
    public static func escapeLabelValue(_ value: String) -> String {
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }
}

extension Substring {
    fileprivate func trimmingCharacters() -> String {
        var slice = self
        while slice.first == " " { slice.removeFirst() }
        while slice.last == " " { slice.removeLast() }
        return String(slice)
    }
}
