import Foundation

/// The labels of one Istio series. The names are Istio's standard metric labels.
public struct IstioLabels: Hashable, Sendable, Comparable {
    public var reporter: String
    public var sourceWorkload: String
    public var sourceWorkloadNamespace: String
    public var destinationWorkload: String
    public var destinationWorkloadNamespace: String
    public var destinationService: String
    public var destinationServiceName: String
    public var destinationServiceNamespace: String
    public var destinationVersion: String
    public var responseCode: Int
    public var responseFlags: String
    public var connectionSecurityPolicy: String

    /// Name/value pairs in exposition order.
    public var pairs: [(String, String)] {
        [
            ("reporter", reporter),
            ("source_workload", sourceWorkload),
            ("source_workload_namespace", sourceWorkloadNamespace),
            ("destination_workload", destinationWorkload),
            ("destination_workload_namespace", destinationWorkloadNamespace),
            ("destination_service", destinationService),
            ("destination_service_name", destinationServiceName),
            ("destination_service_namespace", destinationServiceNamespace),
            ("destination_version", destinationVersion),
            ("response_code", String(responseCode)),
            ("response_flags", responseFlags),
            ("connection_security_policy", connectionSecurityPolicy),
        ]
    }

    var rendered: String { pairs.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") }

    public static func < (lhs: IstioLabels, rhs: IstioLabels) -> Bool { lhs.rendered < rhs.rendered }
}

/// The counters and histograms a mesh of Istio proxies would export, kept in memory
/// and rendered in Prometheus' text format. Every value only grows.
struct IstioMetrics: Sendable {
    /// Istio's default buckets for `istio_request_duration_milliseconds`.
    static let durationBuckets: [Double] = [
        0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1_800_000, 3_600_000,
    ]

    struct Series: Sendable {
        var requests: UInt64 = 0
        /// Per bucket (not cumulative); the last slot is above the largest bound.
        var buckets = [UInt64](repeating: 0, count: IstioMetrics.durationBuckets.count + 1)
        var sumMs: Double = 0
    }

    private(set) var series: [IstioLabels: Series] = [:]

    mutating func record(_ labels: IstioLabels, latencyMs: Double) {
        var entry = series[labels] ?? Series()
        entry.requests += 1
        let index = Self.durationBuckets.firstIndex { latencyMs <= $0 } ?? Self.durationBuckets.count
        entry.buckets[index] += 1
        entry.sumMs += latencyMs
        series[labels] = entry
    }

    /// Requests counted so far matching the filters.
    func requests(where include: (IstioLabels) -> Bool) -> UInt64 {
        series.reduce(0) { include($1.key) ? $0 + $1.value.requests : $0 }
    }

    /// Prometheus text exposition format 0.0.4.
    func render() -> String {
        let sorted = series.sorted { $0.key < $1.key }
        var out = "# HELP istio_requests_total Total requests (simulated by Fledge's mesh simulator).\n"
        out += "# TYPE istio_requests_total counter\n"
        for (labels, entry) in sorted {
            out += "istio_requests_total{\(labels.rendered)} \(entry.requests)\n"
        }
        out += "# HELP istio_request_duration_milliseconds Request duration (simulated by Fledge's mesh simulator).\n"
        out += "# TYPE istio_request_duration_milliseconds histogram\n"
        for (labels, entry) in sorted {
            let prefix = labels.rendered
            var cumulative: UInt64 = 0
            for (index, bound) in Self.durationBuckets.enumerated() {
                cumulative += entry.buckets[index]
                out += "istio_request_duration_milliseconds_bucket{\(prefix),le=\"\(format(bound))\"} \(cumulative)\n"
            }
            out += "istio_request_duration_milliseconds_bucket{\(prefix),le=\"+Inf\"} \(entry.requests)\n"
            out += "istio_request_duration_milliseconds_sum{\(prefix)} \(format(entry.sumMs))\n"
            out += "istio_request_duration_milliseconds_count{\(prefix)} \(entry.requests)\n"
        }
        return out
    }
}

private func escape(_ value: String) -> String {
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

private func format(_ value: Double) -> String {
    value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
}
