/// Istio-shaped time series written as OpenMetrics text for
/// `promtool tsdb create-blocks-from openmetrics`: deterministic data whose
/// answers tests (and the demo) know in advance.
public struct IstioWorkloadTraffic: Sendable {
    /// Requests per scrape step with one response code, all with the same latency profile.
    public struct RequestClass: Sendable {
        public var responseCode: Int
        /// Cumulative request counts per step at each latency bucket bound (ms), as in
        /// `_bucket{le=…}`; the last entry is the total for this class.
        public var cumulativeBuckets: [(le: Double, count: Int)]
        /// Added to `_sum` each step.
        public var latencySumMs: Double

        public init(responseCode: Int, cumulativeBuckets: [(le: Double, count: Int)], latencySumMs: Double) {
            self.responseCode = responseCode
            self.cumulativeBuckets = cumulativeBuckets
            self.latencySumMs = latencySumMs
        }

        public var count: Int { cumulativeBuckets.last?.count ?? 0 }
    }

    public var namespace: String
    public var workload: String
    public var version: String
    public var service: String
    public var reporter: String
    public var classes: [RequestClass]

    public init(namespace: String, workload: String, version: String, service: String, reporter: String = "destination", classes: [RequestClass]) {
        self.namespace = namespace
        self.workload = workload
        self.version = version
        self.service = service
        self.reporter = reporter
        self.classes = classes
    }
}

public enum IstioOpenMetrics {
    /// Istio's default buckets for `istio_request_duration_milliseconds`.
    public static let defaultBuckets: [Double] = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000]

    /// Counters that grow by each class's counts every `step` seconds, from `start` for `steps` steps.
    public static func render(_ workloads: [IstioWorkloadTraffic], start: Int, step: Int, steps: Int) -> String {
        var out = "# HELP istio_requests Total requests.\n# TYPE istio_requests counter\n"
        for workload in workloads {
            for requestClass in workload.classes {
                let labels = labelSet(workload, code: requestClass.responseCode)
                for i in 0...steps {
                    out += "istio_requests_total{\(labels)} \(requestClass.count * i) \(start + i * step)\n"
                }
            }
        }
        out += "# HELP istio_request_duration_milliseconds Request duration.\n# TYPE istio_request_duration_milliseconds histogram\n"
        for workload in workloads {
            for requestClass in workload.classes {
                let labels = labelSet(workload, code: requestClass.responseCode)
                for i in 0...steps {
                    let time = start + i * step
                    for bound in defaultBuckets {
                        let count = requestClass.cumulativeBuckets.last { $0.le <= bound }?.count ?? 0
                        out += "istio_request_duration_milliseconds_bucket{\(labels),le=\"\(format(bound))\"} \(count * i) \(time)\n"
                    }
                    out += "istio_request_duration_milliseconds_bucket{\(labels),le=\"+Inf\"} \(requestClass.count * i) \(time)\n"
                    out += "istio_request_duration_milliseconds_sum{\(labels)} \(format(requestClass.latencySumMs * Double(i))) \(time)\n"
                    out += "istio_request_duration_milliseconds_count{\(labels)} \(requestClass.count * i) \(time)\n"
                }
            }
        }
        out += "# EOF\n"
        return out
    }

    static func labelSet(_ workload: IstioWorkloadTraffic, code: Int) -> String {
        [
            ("reporter", workload.reporter),
            ("source_workload", "frontend"),
            ("source_workload_namespace", workload.namespace),
            ("destination_workload", workload.workload),
            ("destination_workload_namespace", workload.namespace),
            ("destination_service", workload.service),
            ("destination_version", workload.version),
            ("response_code", String(code)),
            ("connection_security_policy", workload.reporter == "destination" ? "mutual_tls" : "unknown"),
        ].map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ",")
    }

    static func format(_ value: Double) -> String {
        value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
    }
}

/// The sample data the demo and `fledge query` examples use: `product-service`
/// in `shop`, stable v1 healthy and fast, canary v2 with 5 % errors and a slow tail.
public enum ProductServiceSample {
    /// 2026-01-01T00:00:00Z.
    public static let start = 1_767_225_600
    public static let step = 15
    public static let steps = 240  // one hour
    /// An evaluation time inside the data, not on a sample boundary.
    public static var evaluationTime: Int { start + 30 * 60 + 7 }

    public static var workloads: [IstioWorkloadTraffic] {
        let service = "product-service.shop.svc.cluster.local"
        return [
            IstioWorkloadTraffic(
                namespace: "shop", workload: "product-service", version: "v1", service: service,
                classes: [
                    .init(responseCode: 200, cumulativeBuckets: [(25, 120), (50, 216), (100, 238), (250, 240)], latencySumMs: 240 * 30),
                ]),
            IstioWorkloadTraffic(
                namespace: "shop", workload: "product-service-canary", version: "v2", service: service,
                classes: [
                    .init(responseCode: 200, cumulativeBuckets: [(100, 100), (250, 110), (500, 114)], latencySumMs: 114 * 90),
                    .init(responseCode: 503, cumulativeBuckets: [(1000, 0), (2500, 6)], latencySumMs: 6 * 2000),
                ]),
            // The client-side view of the same traffic: queries must not count it twice.
            IstioWorkloadTraffic(
                namespace: "shop", workload: "product-service-canary", version: "v2", service: service, reporter: "source",
                classes: [.init(responseCode: 200, cumulativeBuckets: [(5, 50)], latencySumMs: 50 * 3)]),
        ]
    }

    public static var openMetrics: String { IstioOpenMetrics.render(workloads, start: start, step: step, steps: steps) }
}
